package server

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/kv"
	"raftkv/raft"
)

// TestStateMachineSnapshotRoundTrip: a store streamed by one member and restored by
// another from the file it received brings the members, the alarms and every
// revision of every key.
func TestStateMachineSnapshotRoundTrip(t *testing.T) {
	initial := []member{{ID: 1, Name: "a", PeerURLs: []string{"http://p1"}}, {ID: 2, Name: "b", PeerURLs: []string{"http://p2"}}}
	sm, err := newStateMachine(kv.Config{}, t.TempDir(), initial, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.store.Close()
	for i := range 500 {
		cmd := kv.Command{Put: &kv.PutRequest{Key: fmt.Appendf(nil, "k%02d", i%40), Value: bytes.Repeat([]byte{byte(i)}, i)}}
		data, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if res := sm.store.Apply(uint64(i+1), data); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	sm.setMember(member{ID: 2, Name: "b", ClientURLs: []string{"http://c2"}})
	sm.alarms.apply(pb.AlarmRequest_ACTIVATE, alarmKey{2, pb.AlarmType_NOSPACE})
	if err := sm.applyServerState(501); err != nil {
		t.Fatal(err)
	}

	restored, err := newStateMachine(kv.Config{}, t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.store.Close()
	snap := raft.Snapshot{Index: 400, Term: 1}
	if err := os.MkdirAll(inboundDir(restored.dir), 0o700); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := sm.store.WriteSnapshot(pw)
		pw.CloseWithError(err)
	}()
	if _, err := restored.store.WriteSnapshotTables(pr, filepath.Join(inboundDir(restored.dir), inboundName(snap))); err != nil {
		t.Fatal(err)
	}
	if err := restored.restore(snap.Index, receivedSnapshotData(inboundName(snap))); err != nil {
		t.Fatal(err)
	}
	if got, want := restored.members(), sm.members(); !reflect.DeepEqual(got, want) {
		t.Fatalf("members after restore %+v, want %+v", got, want)
	}
	if got, want := restored.alarms.list(), sm.alarms.list(); !reflect.DeepEqual(got, want) {
		t.Fatalf("alarms after restore %v, want %v", got, want)
	}
	if got := restored.store.AppliedIndex(); got != 501 {
		t.Fatalf("applied index after restore %d, want 501", got)
	}
	for _, rev := range []int64{2, 250, 501} {
		r := &kv.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Revision: rev}
		want, err1 := sm.store.Range(r)
		got, err2 := restored.store.Range(r)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("range at %d after restore differs (%v, %v)", rev, err1, err2)
		}
	}

	// Reopened, the store still has the member list and alarms it was restored with.
	dir := restored.dir
	if err := restored.store.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := newStateMachine(kv.Config{}, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.store.Close()
	if got, want := reopened.members(), sm.members(); !reflect.DeepEqual(got, want) {
		t.Fatalf("members after reopening %+v, want %+v", got, want)
	}
}

// TestStateMachineRefusesForeignSnapshotData: snapshot data that is no marker of
// this version, or names a file outside kv-in, is refused.
func TestStateMachineRefusesForeignSnapshotData(t *testing.T) {
	sm, err := newStateMachine(kv.Config{}, t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.store.Close()
	for _, data := range [][]byte{[]byte("hello"), receivedSnapshotData("../x.snap"), receivedSnapshotData("x.db"), append(localSnapshotData(), 'x')} {
		if err := sm.restore(5, data); err == nil || !strings.Contains(err.Error(), "no snapshot marker") {
			t.Errorf("restore(%q) = %v, want a refusal", data, err)
		}
	}
}
