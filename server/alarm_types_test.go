package server

import (
	"bytes"
	"maps"
	"math"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// etcd keeps an alarm of any type a client raises, negative ones too; so does the
// state machine, through the log and through a snapshot, and NOSPACE and CORRUPT
// keep the encoding they always had.
func TestAlarmsOfAnyTypeAreKept(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	ctx := testCtx(t)
	mc := pb.NewMaintenanceClient(members[0].conn)
	self := members[0].srv.ID()
	for _, typ := range []pb.AlarmType{-1, 9, math.MinInt32, math.MaxInt32} {
		resp, err := mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: self, Alarm: typ})
		if err != nil || len(resp.Alarms) != 1 || resp.Alarms[0].Alarm != typ {
			t.Fatalf("activating alarm type %d: %v, %v", typ, resp, err)
		}
	}
	if _, err := mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: self, Alarm: -1}); err != nil {
		t.Fatal(err)
	}
	list, err := mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	if err != nil {
		t.Fatal(err)
	}
	var got []pb.AlarmType
	for _, a := range list.Alarms {
		got = append(got, a.Alarm)
	}
	if want := []pb.AlarmType{math.MinInt32, 9, math.MaxInt32}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("alarms listed: %v, want %v", got, want)
	}

	var table alarmTable
	for _, k := range []alarmKey{{1, pb.AlarmType_NOSPACE}, {2, pb.AlarmType_CORRUPT}, {3, -1}, {4, math.MinInt32}, {5, math.MaxInt32}} {
		table.apply(pb.AlarmRequest_ACTIVATE, k)
	}
	enc := table.encode(nil)
	if !bytes.HasPrefix(enc, []byte{5, 1, 1, 2, 2}) {
		t.Fatalf("NOSPACE and CORRUPT encode as %x, want their one-byte types as before", enc[:5])
	}
	set, rest, err := decodeAlarms(enc)
	if err != nil || len(rest) != 0 || !maps.Equal(set, table.set) {
		t.Fatalf("decodeAlarms(encode) = %v, %q, %v; want %v", set, rest, err, table.set)
	}
}
