package server

import (
	"context"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"raftkv/version"
)

type maintenanceService struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

func (m *maintenanceService) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	if err := m.s.requireUser(ctx); err != nil {
		return nil, err
	}
	st := m.s.node.Status()
	// etcd reports its bbolt file and the part of it in use; the store's counterpart
	// is its engine's tables and the records in use (kv.Sizes). The WAL is not part
	// of it, as etcd's is not of its database size. Tools divide by it, so it is
	// never 0.
	sizes := m.s.sm.store.Sizes()
	resp := &pb.StatusResponse{
		DbSize:      max(sizes.TotalBytes, 1),
		DbSizeInUse: max(sizes.InUseBytes, 1),
		Header:      m.s.header().pb(m.s.sm.store.Revision()),
		// Clients read Version as the etcd release they talk to and pick features by
		// it (clientv3's and Kubernetes' version checks, etcdctl's output), so it is
		// the etcd API version raftkv speaks; raftkv's own version would read as an
		// etcd from 2013. StorageVersion, which etcd derives from its release the same
		// way (major.minor.0), follows it.
		Version:          version.APIVersion,
		StorageVersion:   storageVersion(version.APIVersion),
		Leader:           st.Lead,
		RaftIndex:        st.Commit,
		RaftTerm:         st.Term,
		RaftAppliedIndex: m.s.applied.get(),
		IsLearner:        m.s.learner.Load(),
		// etcd's --quota-backend-bytes as configured (the default filled in; below
		// 0, no quota), which etcdctl endpoint status prints as QUOTA.
		DbSizeQuota: m.s.cfg.QuotaBackendBytes,
		// As etcd's, which has a downgrade to report; raftkv never downgrades.
		DowngradeInfo: &pb.DowngradeInfo{Enabled: false},
	}
	// As etcd: "no leader" while the member knows none, then the raised alarms, in
	// the protobuf text of each AlarmMember (etcdctl endpoint status prints them as
	// ERRORS).
	if st.Lead == 0 {
		resp.Errors = append(resp.Errors, rpctypes.ErrNoLeader.Error())
	}
	for _, a := range m.s.activeAlarms() {
		resp.Errors = append(resp.Errors, a.String())
	}
	return resp, nil
}

// storageVersion returns "major.minor.0" of an etcd version "major.minor.patch".
func storageVersion(apiVersion string) string {
	parts := strings.SplitN(apiVersion, ".", 3)
	if len(parts) < 2 {
		return apiVersion
	}
	return parts[0] + "." + parts[1] + ".0"
}
