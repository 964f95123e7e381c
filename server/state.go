package server

import (
	"bytes"
	"cmp"
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
	// alarms are the raised alarms (alarm.go), in the snapshot since RKVSM2.
	alarms alarmTable
	mu     struct {
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

// setMember records a member's published attributes (its name and client URLs).
// Attributes of an id that is not a member, or was removed, are ignored: the member
// is added by a configuration change, which carries its peer URLs.
func (sm *stateMachine) setMember(m member) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	old, ok := sm.mu.members[m.ID]
	if !ok || old.isRemoved {
		return
	}
	old.Name, old.ClientURLs = m.Name, m.ClientURLs
	sm.mu.members[m.ID] = old
}

// addMember records a member added by a configuration change. A member already
// listed (a log replayed over a member list that has it) keeps its published
// attributes.
func (sm *stateMachine) addMember(m member) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if old, ok := sm.mu.members[m.ID]; ok && !old.isRemoved {
		old.IsLearner = m.IsLearner
		if len(m.PeerURLs) > 0 {
			old.PeerURLs = m.PeerURLs
		}
		sm.mu.members[m.ID] = old
		return
	}
	m.isRemoved = false
	sm.mu.members[m.ID] = m
}

// promoteMember makes learner id a voter; it reports false if id is no member.
func (sm *stateMachine) promoteMember(id uint64) bool {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	m, ok := sm.mu.members[id]
	if !ok || m.isRemoved {
		return false
	}
	m.IsLearner = false
	sm.mu.members[id] = m
	return true
}

// removeMember marks id removed.
func (sm *stateMachine) removeMember(id uint64) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	m := sm.mu.members[id]
	m.ID, m.isRemoved, m.IsLearner = id, true, false
	sm.mu.members[id] = m
}

// updatePeerURLs sets member id's peer URLs; it reports false if id is no member.
func (sm *stateMachine) updatePeerURLs(id uint64, urls []string) bool {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	m, ok := sm.mu.members[id]
	if !ok || m.isRemoved {
		return false
	}
	m.PeerURLs = urls
	sm.mu.members[id] = m
	return true
}

// member returns member id, if it is one (not removed).
func (sm *stateMachine) member(id uint64) (member, bool) {
	sm.mu.RLock()
	defer sm.mu.RUnlock()
	m, ok := sm.mu.members[id]
	return m, ok && !m.isRemoved
}

// anyMember returns record id, removed or not.
func (sm *stateMachine) anyMember(id uint64) (member, bool) {
	sm.mu.RLock()
	defer sm.mu.RUnlock()
	m, ok := sm.mu.members[id]
	return m, ok
}

// members returns the members, removed ones left out, by ascending id.
func (sm *stateMachine) members() []member {
	return slices.DeleteFunc(sm.allMembers(), func(m member) bool { return m.isRemoved })
}

// allMembers returns the members and the removed ones, by ascending id.
func (sm *stateMachine) allMembers() []member {
	sm.mu.RLock()
	defer sm.mu.RUnlock()
	out := make([]member, 0, len(sm.mu.members))
	for _, m := range sm.mu.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// snapshotMagic opens every state machine snapshot, with its format version:
// RKVSM2 has the alarms after the members; an RKVSM1 snapshot restores with none.
var (
	snapshotMagic   = []byte("RKVSM2")
	snapshotMagicV1 = []byte("RKVSM1")
)

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
	b := append(append([]byte(nil), snapshotMagic...), encodeMembers(sm.allMembers())...)
	b = sm.alarms.encode(b)
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
	hasAlarms := bytes.HasPrefix(data, snapshotMagic)
	if !hasAlarms && !bytes.HasPrefix(data, snapshotMagicV1) {
		return fmt.Errorf("server: snapshot does not start with %q; it was not written by this raftkv version", snapshotMagic)
	}
	list, data, err := decodeMembers(data[len(snapshotMagic):])
	if err != nil {
		return fmt.Errorf("server: snapshot: %w", err)
	}
	members := make(map[uint64]member, len(list))
	for _, m := range list {
		members[m.ID] = m
	}
	alarms := map[alarmKey]struct{}{}
	if hasAlarms {
		if alarms, data, err = decodeAlarms(data); err != nil {
			return err
		}
	}
	if err := sm.store.Restore(data); err != nil {
		return err
	}
	sm.alarms.replace(alarms)
	sm.mu.Lock()
	sm.mu.members = members
	sm.mu.Unlock()
	return nil
}
