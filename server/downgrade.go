package server

import (
	"context"
	"fmt"

	"github.com/coreos/go-semver/semver"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"raftkv/version"
)

// Maintenance.Downgrade (etcdctl downgrade validate|enable|cancel). etcd lowers its
// cluster version one minor at a time, so that members of the release below can
// join and take over its data. raftkv has one storage version and no such protocol,
// but it checks a request as etcd does and answers what etcd answers wherever that
// does not depend on downgrading: the same errors for a target version that is not
// one (etcd's format: major.minor.patch as semver, or major.minor) or is not the one
// minor below the cluster version, and the same success for a cancel, which with no
// downgrade under way changes nothing in etcd either. A VALIDATE or ENABLE of the one
// target etcd would take is refused (downgradeRefusal), naming the way to run an
// older etcd on the data instead.

// clusterVersion is the cluster version raftkv reports, as etcd's: major.minor of the
// etcd API version it speaks.
func clusterVersion() *semver.Version {
	v := semver.New(version.APIVersion)
	return &semver.Version{Major: v.Major, Minor: v.Minor}
}

func (m *maintenanceService) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	// Root only under auth, as etcd's.
	if err := m.s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	cv := clusterVersion()
	resp := func() *pb.DowngradeResponse {
		return &pb.DowngradeResponse{
			Header:  m.s.header().pb(m.s.sm.store.Revision()),
			Version: fmt.Sprintf("%d.%d", cv.Major, cv.Minor),
		}
	}
	switch r.Action {
	case pb.DowngradeRequest_VALIDATE, pb.DowngradeRequest_ENABLE:
		target, err := downgradeTarget(r.Version)
		if err != nil {
			return nil, err
		}
		if target.Major != cv.Major || target.Minor != cv.Minor-1 {
			return nil, rpctypes.ErrGRPCInvalidDowngradeTargetVersion
		}
		return nil, downgradeRefusal(target)
	case pb.DowngradeRequest_CANCEL:
		// etcd answers a cancel with no downgrade under way as one that cancelled
		// it; raftkv never has one under way.
		return resp(), nil
	default:
		// etcd's answer to an action it does not know (its error has no gRPC
		// code of its own, so gRPC's Unknown).
		return nil, status.Error(codes.Unknown, "etcdserver: unknown method")
	}
}

// downgradeTarget parses a downgrade's target version as etcd does, to its major and
// minor: a semantic version ("3.6.0", "3.6.2-rc.0") or a major.minor ("3.6");
// anything else ("v3.6", "3", "bad", "") is refused with etcd's error.
func downgradeTarget(v string) (*semver.Version, error) {
	ver, err := semver.NewVersion(v)
	if err != nil {
		if ver, err = semver.NewVersion(v + ".0"); err != nil {
			return nil, rpctypes.ErrGRPCWrongDowngradeVersionFormat
		}
	}
	return &semver.Version{Major: ver.Major, Minor: ver.Minor}, nil
}

// downgradeRefusal is raftkv's answer to a downgrade etcd would validate or start.
func downgradeRefusal(target *semver.Version) error {
	return status.Errorf(codes.Unimplemented,
		"raftkv cannot downgrade to %d.%d: it has one storage version and no downgrade protocol; "+
			"to run etcd %d.%d on this data, convert a backup with raftkv snapshot to-etcd and restore it with etcdutl",
		target.Major, target.Minor, target.Major, target.Minor)
}
