package server

import (
	"context"
	"io/fs"
	"path/filepath"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Version is the raftkv version reported by Maintenance.Status.
const Version = "0.1.0"

type maintenanceService struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

func (m *maintenanceService) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	st := m.s.node.Status()
	// etcd reports its database file; ours is the data dir. Tools divide by it, so
	// it is never 0.
	dbSize := max(dirSize(m.s.cfg.DataDir), 1)
	return &pb.StatusResponse{
		DbSize:           dbSize,
		DbSizeInUse:      dbSize,
		Header:           m.s.header().pb(m.s.sm.store.Revision()),
		Version:          Version,
		Leader:           st.Lead,
		RaftIndex:        st.Commit,
		RaftTerm:         st.Term,
		RaftAppliedIndex: m.s.applied.get(),
		StorageVersion:   Version,
	}, nil
}

// Alarm answers that no alarm is raised: raftkv raises none (a full disk stops the
// member instead). etcdctl endpoint health asks for them.
func (m *maintenanceService) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if r.Action != pb.AlarmRequest_GET {
		return nil, status.Error(codes.Unimplemented, "raftkv raises no alarms, so it has none to activate or deactivate")
	}
	return &pb.AlarmResponse{Header: m.s.header().pb(m.s.sm.store.Revision())}, nil
}

// dirSize returns the bytes of the files under dir.
func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

type clusterService struct {
	pb.UnimplementedClusterServer
	s *Server
}

func (c *clusterService) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := c.s.linearizableRead(ctx); err != nil {
			return nil, toGRPC(err)
		}
	}
	resp := &pb.MemberListResponse{Header: c.s.header().pb(c.s.sm.store.Revision())}
	for _, m := range c.s.sm.members() {
		resp.Members = append(resp.Members, &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs})
	}
	return resp, nil
}
