package server

import (
	"context"
	"io"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Under auth the maintenance calls need what etcd's do: Status and listing the
// alarms any user, everything else (Snapshot, Hash, HashKV, MoveLeader, Defragment,
// changing alarms, Downgrade) the root role; root gets them all.
func TestMaintenanceNeedsRootUnderAuth(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.BcryptCost = 4 })
	ctx := testCtx(t)
	setupRootAndAlice(t, ctx, pb.NewAuthClient(members[0].conn))
	auth := pb.NewAuthClient(members[0].conn)
	alice := withToken(ctx, authenticate(t, ctx, auth, "alice", "alicepw"))
	root := withToken(ctx, authenticate(t, ctx, auth, "root", "rootpw"))
	mc := pb.NewMaintenanceClient(members[0].conn)
	snapshot := func(ctx context.Context) error {
		stream, err := mc.Snapshot(ctx, &pb.SnapshotRequest{})
		if err != nil {
			return err
		}
		for {
			if _, err := stream.Recv(); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		}
	}
	rootOnly := map[string]func(ctx context.Context) error{
		"Snapshot":   snapshot,
		"Hash":       func(ctx context.Context) error { _, err := mc.Hash(ctx, &pb.HashRequest{}); return err },
		"HashKV":     func(ctx context.Context) error { _, err := mc.HashKV(ctx, &pb.HashKVRequest{}); return err },
		"Defragment": func(ctx context.Context) error { _, err := mc.Defragment(ctx, &pb.DefragmentRequest{}); return err },
		"MoveLeader": func(ctx context.Context) error {
			_, err := mc.MoveLeader(ctx, &pb.MoveLeaderRequest{TargetID: members[0].srv.ID()})
			return err
		},
		"Downgrade CANCEL": func(ctx context.Context) error {
			_, err := mc.Downgrade(ctx, &pb.DowngradeRequest{Action: pb.DowngradeRequest_CANCEL})
			return err
		},
		"Alarm DEACTIVATE": func(ctx context.Context) error {
			_, err := mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, Alarm: pb.AlarmType_NOSPACE})
			return err
		},
	}
	anyUser := map[string]func(ctx context.Context) error{
		"Status":    func(ctx context.Context) error { _, err := mc.Status(ctx, &pb.StatusRequest{}); return err },
		"Alarm GET": func(ctx context.Context) error { _, err := mc.Alarm(ctx, &pb.AlarmRequest{}); return err },
	}
	for name, call := range rootOnly {
		wantStatus(t, name+" as alice", call(alice), rpctypes.ErrGRPCPermissionDenied)
		wantStatus(t, name+" without a user", call(ctx), rpctypes.ErrGRPCUserEmpty)
		if err := call(root); err != nil {
			t.Errorf("%s as root: %v", name, err)
		}
	}
	for name, call := range anyUser {
		if err := call(alice); err != nil {
			t.Errorf("%s as alice: %v", name, err)
		}
	}
}
