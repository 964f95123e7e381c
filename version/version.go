// Package version says which raftkv this is and which etcd API it speaks, for
// `raftkv --version`, Maintenance.Status and the logs.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is raftkv's own release version.
const Version = "0.2.0"

// APIVersion is the etcd v3 API version whose protos and behaviour raftkv serves. It is
// what Maintenance.Status reports as the server version: clients and tools (etcdctl,
// Kubernetes) compare it with etcd release versions to decide which features to use.
const APIVersion = "3.7.3"

// GitSHA returns the commit the binary was built from, as the Go toolchain stamped it
// (`go build` in a git checkout), with "-dirty" if the tree had changes, or "unknown"
// (`go run`, `go test`, or a build outside a checkout).
func GitSHA() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var sha, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			sha = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if sha == "" {
		return "unknown"
	}
	return sha + dirty
}

// String is the multi-line text of `raftkv --version`, in etcd's layout.
func String() string {
	return fmt.Sprintf("raftkv Version: %s\netcd API Version: %s\nGit SHA: %s\nGo Version: %s\nGo OS/Arch: %s/%s\n",
		Version, APIVersion, GitSHA(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
