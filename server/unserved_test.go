package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Every method of the etcd v3 API is reachable; a call to any other method answers
// Unimplemented with a message naming the method and listing what raftkv serves.
func TestUnservedMethodsSayWhatIsServed(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	conn := members[0].conn
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	// Maintenance's list follows servedMethods, which grows as issue 14 lands.
	servedList := "Auth (AuthDisable, AuthEnable, AuthStatus, Authenticate, RoleAdd, RoleDelete, RoleGet, " +
		"RoleGrantPermission, RoleList, RoleRevokePermission, UserAdd, UserChangePassword, UserDelete, UserGet, " +
		"UserGrantRole, UserList, UserRevokeRole), Cluster (MemberAdd, MemberList, MemberPromote, MemberRemove, MemberUpdate), KV (Compact, DeleteRange, Put, Range, RangeStream, Txn), " +
		"Lease (LeaseGrant, LeaseKeepAlive, LeaseLeases, LeaseRevoke, LeaseTimeToLive), Maintenance (" +
		strings.Join(slices.Sorted(slices.Values(servedMethods["etcdserverpb.Maintenance"])), ", ") + "), Watch (Watch), " +
		"Election (Campaign, Leader, Observe, Proclaim, Resign), Lock (Lock, Unlock)"
	descs := []grpc.ServiceDesc{pb.KV_ServiceDesc, pb.Watch_ServiceDesc, pb.Lease_ServiceDesc, pb.Cluster_ServiceDesc,
		pb.Maintenance_ServiceDesc, pb.Auth_ServiceDesc}
	var unservedCount int
	for _, desc := range descs {
		var names []string
		for _, m := range desc.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range desc.Streams {
			names = append(names, s.StreamName)
		}
		for _, name := range names {
			full := "/" + desc.ServiceName + "/" + name
			short := strings.TrimPrefix(desc.ServiceName, "etcdserverpb.") + "." + name
			if desc.ServiceName == "etcdserverpb.Watch" {
				continue // served: its stream stays open after the client's EOF, as etcd's does (server/watch_test.go)
			}
			err := invokeAny(t, conn, full)
			if slices.Contains(servedMethods[desc.ServiceName], name) {
				if status.Code(err) == codes.Unimplemented {
					t.Errorf("%s is served but answers %v", short, err)
				}
				continue
			}
			unservedCount++
			st := status.Convert(err)
			if st.Code() != codes.Unimplemented {
				t.Errorf("%s: got %v, want Unimplemented", short, err)
				continue
			}
			if !strings.Contains(st.Message(), "raftkv does not serve "+short+": ") ||
				!strings.HasSuffix(st.Message(), "raftkv serves "+servedList) {
				t.Errorf("%s: message %q does not name the method and list what raftkv serves (%s)", short, st.Message(), servedList)
			}
		}
	}
	// Every method of etcd's services is served now (Downgrade last, downgrade.go);
	// a method outside them, of a registered service or not, still hears why and
	// what is served.
	if unservedCount != 0 {
		t.Errorf("%d methods of etcd's API are not served; unservedReasons should say why", unservedCount)
	}
	for full, short := range map[string]string{
		"/no.Such/Method":             "no.Such.Method",
		"/etcdserverpb.KV/NoSuchCall": "KV.NoSuchCall",
	} {
		st := status.Convert(invokeAny(t, conn, full))
		want := "raftkv does not serve " + short + ": it is not part of the etcd v3 API raftkv implements. raftkv serves " + servedList
		if st.Code() != codes.Unimplemented || st.Message() != want {
			t.Errorf("%s: %v %q, want Unimplemented %q", full, st.Code(), st.Message(), want)
		}
	}
}

// invokeAny calls the method as a unary RPC with an empty message (valid for every
// etcd request type) and returns its error. A streaming method gets the same frame
// and answers the same way when it is not served.
func invokeAny(t *testing.T, conn *grpc.ClientConn, fullMethod string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, fullMethod)
	if err != nil {
		return err
	}
	// The server may answer before it reads the request: SendMsg then fails with
	// io.EOF, and RecvMsg has the status (grpc.ClientStream's contract).
	if err := stream.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.RecvMsg(&emptypb.Empty{})
}
