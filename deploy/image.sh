#!/usr/bin/env bash
# Builds raftkv as a static binary (CGO_ENABLED=0) and the FROM scratch image of
# deploy/Dockerfile around it, in one step.
#
#   deploy/image.sh [TAG]      # TAG defaults to raftkv:dev
#
# GOARCH may be set to build for another architecture than the host's (the image's
# platform follows it). Needs Go and a Docker engine; pulls nothing.
set -euo pipefail

tag=${1:-raftkv:dev}
if [ $# -gt 1 ]; then
	echo "usage: $0 [TAG]   (one image tag, default raftkv:dev; got $# arguments)" >&2
	exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)

context=$(mktemp -d "${TMPDIR:-/tmp}/raftkv-image.XXXXXX")
trap 'rm -rf "$context"' EXIT

# -s -w drop the symbol table and DWARF (stack traces still name every function and
# line). No -trimpath: it changes the build cache key of every package, so a build
# could not reuse the cache of `go build`/`go test` and took 100 s instead of 30 s
# on a 2-core machine whose cache held only those builds. The binary records its commit (vcs.revision).
(cd "$repo" && CGO_ENABLED=0 GOOS=linux go build -ldflags='-s -w' -o "$context/raftkv" ./cmd/raftkv)
mkdir "$context/data"

arch=$(cd "$repo" && go env GOARCH)
# DOCKER_BUILDKIT=0: BuildKit is not always installed (the legacy builder is the one
# every engine has), and this build needs nothing BuildKit adds.
# Its output (and its notice that the legacy builder is deprecated) is shown only if
# the build fails.
if ! out=$(DOCKER_BUILDKIT=0 docker build --platform "linux/$arch" -f "$repo/deploy/Dockerfile" -t "$tag" "$context" 2>&1); then
	echo "$out" >&2
	echo "$0: docker build of $tag failed (output above)" >&2
	exit 1
fi
echo "built $tag ($(du -h "$context/raftkv" | cut -f1) binary, linux/$arch)"
