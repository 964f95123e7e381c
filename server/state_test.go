package server

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"raftkv/kv"
)

// TestStateMachineSnapshotRoundTrip: a streamed snapshot restores the members and
// every revision of every key into a fresh state machine.
func TestStateMachineSnapshotRoundTrip(t *testing.T) {
	initial := []member{{ID: 1, Name: "a", PeerURLs: []string{"http://p1"}}, {ID: 2, Name: "b", PeerURLs: []string{"http://p2"}}}
	sm, err := newStateMachine(kv.Config{}, t.TempDir(), initial)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.store.Close()
	sm.setMember(member{ID: 2, Name: "b", ClientURLs: []string{"http://c2"}})
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
	var buf bytes.Buffer
	n, err := sm.writeSnapshot(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("writeSnapshot: %d bytes written, %d reported, %v", buf.Len(), n, err)
	}

	restored, err := newStateMachine(kv.Config{}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.store.Close()
	if err := restored.restore(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got, want := restored.members(), sm.members(); !reflect.DeepEqual(got, want) {
		t.Fatalf("members after restore %+v, want %+v", got, want)
	}
	for _, rev := range []int64{2, 250, 501} {
		r := &kv.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Revision: rev}
		want, err1 := sm.store.Range(r)
		got, err2 := restored.store.Range(r)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("range at %d after restore differs (%v, %v)", rev, err1, err2)
		}
	}
}

// TestStateMachineSnapshotWriteError: a failing writer's error comes back marked as
// the writer's, so the server tells it from a broken state machine.
func TestStateMachineSnapshotWriteError(t *testing.T) {
	sm, err := newStateMachine(kv.Config{}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.store.Close()
	diskFull := errors.New("disk full")
	_, err = sm.writeSnapshot(failingWriter{diskFull})
	if !errors.Is(err, errSnapshotWrite) || !errors.Is(err, diskFull) {
		t.Fatalf("writeSnapshot to a failing writer: %v, want errSnapshotWrite wrapping the cause", err)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }
