package server

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/metadata"
)

// A revoke retried under its session (client id and sequence) after the lease was
// granted again under the same id is answered from the session table, as applied
// before; the lessor must not take that old answer as the new lease's revoke. It
// did: it dropped the new lease's timer, and the lease, listed and holding its
// keys, never expired.
func TestRetriedRevokeLeavesTheLeaseGrantedSinceToExpire(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	m := promotedLeader(t, members)
	leases := pb.NewLeaseClient(m.conn)
	const id = 77
	grant(t, m, id, 2)
	session := metadata.AppendToOutgoingContext(testCtx(t), MetadataClientID, "9", MetadataSequence, "1")
	if _, err := leases.LeaseRevoke(session, &pb.LeaseRevokeRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	grant(t, m, id, 2)
	if _, err := leases.LeaseRevoke(session, &pb.LeaseRevokeRequest{ID: id}); err != nil {
		t.Fatalf("the revoke retried under its session: %v; want its first answer again", err)
	}
	if resp, err := leases.LeaseTimeToLive(testCtx(t), &pb.LeaseTimeToLiveRequest{ID: id}); err != nil || resp.TTL <= 0 {
		t.Fatalf("the lease granted again, after the retried revoke: TTL %d, %v; want it alive (the retry was answered, not applied)", resp.GetTTL(), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := leases.LeaseLeases(testCtx(t), &pb.LeaseLeasesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Leases) == 0 {
			return
		}
		if time.Now().After(deadline) {
			ttl, _ := leases.LeaseTimeToLive(context.Background(), &pb.LeaseTimeToLiveRequest{ID: id})
			t.Fatalf("lease %d of TTL 2 s still listed 10 s after it was granted again (time-to-live %d)", id, ttl.GetTTL())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
