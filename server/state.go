package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"raftkv/kv"
)

// stateMachine is everything the log builds: the KV store and the member list. Its
// snapshot is both, so a member restored from a snapshot lists members too.
type stateMachine struct {
	store *kv.Store
	mu    struct {
		sync.RWMutex
		members map[uint64]member
	}
}

// newStateMachine returns an empty state machine whose store keeps its values in a
// file in valueDir (unlinked at once: nothing is left there), off the Go heap.
func newStateMachine(cfg kv.Config, valueDir string, initial []member) (*stateMachine, error) {
	store, err := kv.NewFileBackedStore(cfg, valueDir)
	if err != nil {
		return nil, err
	}
	sm := &stateMachine{store: store}
	sm.mu.members = map[uint64]member{}
	for _, m := range initial {
		sm.mu.members[m.ID] = m
	}
	return sm, nil
}

// setMember records a member's published attributes. Members are fixed at bootstrap,
// so attributes of an unknown id are ignored.
func (sm *stateMachine) setMember(m member) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	old, ok := sm.mu.members[m.ID]
	if !ok {
		return
	}
	old.Name, old.ClientURLs = m.Name, m.ClientURLs
	sm.mu.members[m.ID] = old
}

func (sm *stateMachine) members() []member {
	sm.mu.RLock()
	defer sm.mu.RUnlock()
	out := make([]member, 0, len(sm.mu.members))
	for _, m := range sm.mu.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// snapshotMagic opens every state machine snapshot, with its format version.
var snapshotMagic = []byte("RKVSM1")

// errSnapshotWrite wraps the errors of the writer a snapshot goes to, to tell them
// from the state machine's own.
var errSnapshotWrite = errors.New("server: writing snapshot")

// writeSnapshot writes the state machine's snapshot to w and returns its size.
func (sm *stateMachine) writeSnapshot(w io.Writer) (int64, error) {
	frozen, err := sm.freeze()
	if err != nil {
		return 0, err
	}
	defer frozen.release()
	return frozen.writeTo(w)
}

// frozenState is the state machine as of one applied index, to be written out while
// the apply loop goes on (kv.SnapshotView): the member records, encoded, and a view
// of the store.
type frozenState struct {
	head []byte
	view *kv.SnapshotView
}

// freeze takes a frozenState; release it when done.
func (sm *stateMachine) freeze() (*frozenState, error) {
	members := sm.members()
	b := append([]byte(nil), snapshotMagic...)
	b = binary.AppendUvarint(b, uint64(len(members)))
	for i := range members {
		rec := members[i].encode()
		b = binary.AppendUvarint(b, uint64(len(rec)))
		b = append(b, rec...)
	}
	view, err := sm.store.SnapshotView()
	if err != nil {
		return nil, err
	}
	return &frozenState{head: b, view: view}, nil
}

// writeTo writes the snapshot to w and returns its size.
func (f *frozenState) writeTo(w io.Writer) (int64, error) {
	ew := &errWrapWriter{w: w}
	if _, err := ew.Write(f.head); err != nil {
		return 0, err
	}
	n, err := f.view.WriteTo(ew)
	if ew.err != nil {
		return 0, ew.err
	}
	return int64(len(f.head)) + n, err
}

func (f *frozenState) release() { f.view.Release() }

// errWrapWriter marks the errors of w with errSnapshotWrite.
type errWrapWriter struct {
	w   io.Writer
	err error
}

func (e *errWrapWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%w: %w", errSnapshotWrite, err)
	}
	if err != nil {
		return n, e.err
	}
	return n, nil
}

func (sm *stateMachine) restore(data []byte) error {
	if len(data) < len(snapshotMagic) || string(data[:len(snapshotMagic)]) != string(snapshotMagic) {
		return fmt.Errorf("server: snapshot does not start with %q; it was not written by this raftkv version", snapshotMagic)
	}
	data = data[len(snapshotMagic):]
	n, data, ok := readUvarint(data)
	if !ok || n > 1<<16 {
		return fmt.Errorf("server: snapshot member count is corrupt")
	}
	members := map[uint64]member{}
	for range n {
		var size uint64
		if size, data, ok = readUvarint(data); !ok || size > uint64(len(data)) {
			return fmt.Errorf("server: snapshot member record is corrupt")
		}
		m, _, err := decodeMember(data[:size])
		if err != nil {
			return err
		}
		members[m.ID] = m
		data = data[size:]
	}
	if err := sm.store.Restore(data); err != nil {
		return err
	}
	sm.mu.Lock()
	sm.mu.members = members
	sm.mu.Unlock()
	return nil
}
