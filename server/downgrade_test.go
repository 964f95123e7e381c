package server

import (
	"net/http"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Downgrade answers as etcd 3.7.3 does (seen against the embedded etcd) where that
// does not depend on downgrading: etcd's errors for a target that is not a version
// or not 3.6, a cancel that succeeds with the cluster version, etcd's Unknown for
// an action it does not know; a VALIDATE or ENABLE of 3.6, which etcd takes, is
// refused saying why and what to do instead.
func TestDowngradeAnswersAsEtcd(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	mc := pb.NewMaintenanceClient(members[0].conn)
	ctx := testCtx(t)
	const (
		format = "etcdserver: wrong downgrade target version format"
		target = "etcdserver: invalid downgrade target version"
	)
	validate, enable := pb.DowngradeRequest_VALIDATE, pb.DowngradeRequest_ENABLE
	for _, c := range []struct {
		action  pb.DowngradeRequest_DowngradeAction
		version string
		code    codes.Code
		message string // a prefix for the refusal
	}{
		{validate, "", codes.InvalidArgument, format},
		{validate, "bad", codes.InvalidArgument, format},
		{enable, "v3.6", codes.InvalidArgument, format},
		{validate, "3", codes.InvalidArgument, format},
		{validate, "3.5", codes.InvalidArgument, target},
		{enable, "3.5.0", codes.InvalidArgument, target},
		{validate, "3.7", codes.InvalidArgument, target},
		{validate, "4.0", codes.InvalidArgument, target},
		{pb.DowngradeRequest_DowngradeAction(7), "3.6", codes.Unknown, "etcdserver: unknown method"},
		{validate, "3.6", codes.Unimplemented, "raftkv cannot downgrade to 3.6: "},
		{enable, "3.6.1", codes.Unimplemented, "raftkv cannot downgrade to 3.6: "},
		{enable, "3.6", codes.Unimplemented, "raftkv cannot downgrade to 3.6: "},
	} {
		_, err := mc.Downgrade(ctx, &pb.DowngradeRequest{Action: c.action, Version: c.version})
		st := status.Convert(err)
		exact := c.code != codes.Unimplemented
		if st.Code() != c.code || (exact && st.Message() != c.message) || !strings.HasPrefix(st.Message(), c.message) {
			t.Errorf("%v %q: %v %q, want %v %q", c.action, c.version, st.Code(), st.Message(), c.code, c.message)
		}
		if !exact && !strings.Contains(st.Message(), "raftkv snapshot to-etcd") {
			t.Errorf("%v %q: the refusal %q does not say what to do instead", c.action, c.version, st.Message())
		}
	}
	// A cancel, with nothing to cancel, twice and with any version, as etcd's.
	for _, v := range []string{"", "bad"} {
		resp, err := mc.Downgrade(ctx, &pb.DowngradeRequest{Action: pb.DowngradeRequest_CANCEL, Version: v})
		if err != nil || resp.Version != "3.7" || resp.Header == nil || resp.Header.Revision != 1 {
			t.Fatalf("cancel %q: %v, %v; want version 3.7 and a header at revision 1", v, resp, err)
		}
	}

	// Over the gateway: an empty body is a VALIDATE of "", 400 with etcd's code 3.
	base := members[0].cfg.ListenClientURLs[0]
	code, body := gatewayPost(t, base, "/v3/maintenance/downgrade", ``, "")
	if !isGatewayError(code, body, http.StatusBadRequest, 3, format) {
		t.Errorf("downgrade with an empty body: %d %s, want etcd's 400 code 3 %q", code, body, format)
	}
	if v := gatewayJSON(t, base, "/v3/maintenance/downgrade", `{"action":"CANCEL"}`, "")["version"]; v != "3.7" {
		t.Errorf("cancel over the gateway: version %v, want 3.7", v)
	}
}
