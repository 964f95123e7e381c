package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func wantCodeMsg(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if st, _ := status.FromError(err); st.Code() != code || st.Message() != msg {
		t.Fatalf("%s: got %v, want %v %q", what, err, code, msg)
	}
}

// alarmsOn waits until m lists want (nil: none) and returns them.
func alarmsOn(t *testing.T, m *testMember, want []*pb.AlarmMember) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := pb.NewMaintenanceClient(m.conn).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
		cancel()
		if err == nil && fmt.Sprint(resp.Alarms) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lists alarms %v (%v), want %v", m.cfg.Name, resp.GetAlarms(), err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Past --quota-backend-bytes a put fails with etcd's "database space exceeded" and
// raises the NOSPACE alarm on every member; from then on puts and lease grants are
// refused everywhere, reads, deletes and compaction go on; after compaction makes
// room, disarming the alarm restores writes.
func TestQuotaRaisesNoSpaceUntilDisarmed(t *testing.T) {
	const quota = 256 << 10
	members := startTestCluster(t, 3, func(c *Config) { c.QuotaBackendBytes = quota })
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	value := make([]byte, 4096)
	var err error
	puts := 0
	for ; puts < 200; puts++ {
		if _, err = members[0].client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%03d", puts), Value: value}); err != nil {
			break
		}
	}
	wantCodeMsg(t, fmt.Sprintf("put %d past a %d-byte quota", puts, quota), err, codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded")
	if puts < quota/len(value)/2 {
		t.Fatalf("refused after %d puts of %d bytes, far below the %d-byte quota", puts, len(value), quota)
	}
	raised := []*pb.AlarmMember{{MemberID: members[0].srv.ID(), Alarm: pb.AlarmType_NOSPACE}}
	for _, m := range members {
		alarmsOn(t, m, raised)
	}
	// Refused on every member, even where the quota check alone would let it through:
	// the replicated alarm refuses it at apply.
	_, err = members[2].client.Put(ctx, &pb.PutRequest{Key: []byte("small"), Value: []byte("x")})
	wantCodeMsg(t, "put under NOSPACE", err, codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded")
	_, err = pb.NewLeaseClient(members[1].conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
	wantCodeMsg(t, "lease grant under NOSPACE", err, codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded")
	st, err := pb.NewMaintenanceClient(members[1].conn).Status(ctx, &pb.StatusRequest{})
	if err != nil || len(st.Errors) != 1 || st.Errors[0] != raised[0].String() {
		t.Fatalf("Status errors %q (%v), want the alarm %q", st.GetErrors(), err, raised[0].String())
	}
	if got, err := members[1].client.Range(ctx, &pb.RangeRequest{Key: []byte("k000")}); err != nil || len(got.Kvs) != 1 {
		t.Fatalf("read under NOSPACE: %v, %v", got, err)
	}
	del, err := members[1].client.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	if err != nil || del.Deleted != int64(puts) {
		t.Fatalf("delete under NOSPACE: %v, %v", del, err)
	}
	if _, err := members[1].client.Compact(ctx, &pb.CompactionRequest{Revision: del.Header.Revision}); err != nil {
		t.Fatalf("compact under NOSPACE: %v", err)
	}
	// As etcd's, each member's space returns with its own defragment
	// (etcdctl defrag --cluster): until then its engine still holds what the
	// compaction dropped.
	for _, m := range members {
		if _, err := pb.NewMaintenanceClient(m.conn).Defragment(ctx, &pb.DefragmentRequest{}); err != nil {
			t.Fatalf("defragment %s: %v", m.cfg.Name, err)
		}
	}
	// Still refused until disarmed.
	_, err = members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("small"), Value: []byte("x")})
	wantCodeMsg(t, "put after compaction, before disarm", err, codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded")
	resp, err := pb.NewMaintenanceClient(members[2].conn).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE,
		MemberID: raised[0].MemberID, Alarm: pb.AlarmType_NOSPACE})
	if err != nil || fmt.Sprint(resp.Alarms) != fmt.Sprint(raised) {
		t.Fatalf("disarm: %v, %v; want the alarm disarmed in the answer", resp, err)
	}
	for _, m := range members {
		alarmsOn(t, m, nil)
	}
	if _, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("small"), Value: []byte("x")}); err != nil {
		t.Fatalf("put after disarm: %v", err)
	}
}
