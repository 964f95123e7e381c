package server

import (
	"context"
	"fmt"
	"io"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A learner serves what etcd's serves, Status, serializable Range and the Snapshot
// stream, and refuses the rest with etcd's error before anything else; its Status
// says it is a learner and its /readyz fails non_learner. Promoted, it serves all.
func TestLearnerServesOnlyWhatEtcdsServes(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	ctx := testCtx(t)
	if _, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	learner := joiningMember(t, members, "m1")
	added, err := pb.NewClusterClient(members[0].conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: learner.cfg.ListenPeerURLs, IsLearner: true})
	if err != nil {
		t.Fatal(err)
	}
	learner.start(t)
	retry(t, func(context.Context) error {
		if !learner.srv.learner.Load() {
			return fmt.Errorf("the learner has not applied its own addition")
		}
		return nil
	})
	refused := func(what string, err error) {
		t.Helper()
		if got, want := status.Convert(err), status.Convert(rpctypes.ErrGRPCNotSupportedForLearner); got.Code() != want.Code() || got.Message() != want.Message() {
			t.Errorf("%s on a learner: %v, want %v", what, err, rpctypes.ErrGRPCNotSupportedForLearner)
		}
	}
	kv, mc := learner.client, pb.NewMaintenanceClient(learner.conn)
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("w")})
	refused("Put", err)
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
	refused("linearizable Range", err)
	_, err = pb.NewClusterClient(learner.conn).MemberList(ctx, &pb.MemberListRequest{})
	refused("MemberList", err)
	watch, err := pb.NewWatchClient(learner.conn).Watch(ctx)
	if err == nil {
		_, err = watch.Recv()
	}
	refused("Watch", err)
	stream, err := kv.RangeStream(ctx, &pb.RangeRequest{Key: []byte("k"), Serializable: true})
	if err == nil {
		_, err = stream.Recv()
	}
	refused("RangeStream", err)
	// Not an etcd method: Unimplemented, as on any member (etcd's gRPC server
	// answers it before its learner check).
	if err := invokeAny(t, learner.conn, "/no.Such/Method"); status.Code(err) != codes.Unimplemented {
		t.Errorf("an unknown method on a learner: %v, want Unimplemented", err)
	}

	retry(t, func(ctx context.Context) error {
		resp, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Serializable: true})
		if err == nil && len(resp.Kvs) != 1 {
			err = fmt.Errorf("serializable Range on the learner: %d keys, want 1", len(resp.Kvs))
		}
		return err
	})
	st, err := mc.Status(ctx, &pb.StatusRequest{})
	if err != nil || !st.IsLearner {
		t.Fatalf("Status on the learner: %v, %v; want IsLearner", st, err)
	}
	snap, err := mc.Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := snap.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("Snapshot from the learner: %v", err)
		}
	}
	if code, body := httpGet(t, learner.cfg.ListenClientURLs[0]+"/readyz/non_learner"); code != 503 {
		t.Errorf("/readyz/non_learner on the learner: %d %q, want 503", code, body)
	}

	retry(t, func(ctx context.Context) error {
		_, err := pb.NewClusterClient(members[0].conn).MemberPromote(ctx, &pb.MemberPromoteRequest{ID: added.Member.ID})
		return err
	})
	retry(t, func(ctx context.Context) error {
		_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("w")})
		return err
	})
	if st, err := mc.Status(ctx, &pb.StatusRequest{}); err != nil || st.IsLearner {
		t.Fatalf("Status after the promotion: %v, %v; want not a learner", st, err)
	}
}
