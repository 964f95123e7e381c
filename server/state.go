package server

import (
	"cmp"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"raftkv/kv"
)

// stateMachine is everything the log builds: the KV store, the member list and the
// alarms. All of it lives in the store's engine (kv.OpenStore), the member list and
// alarms as one server record written in the batch of the entry that changed them
// (applyServerState), so the engine's applied index covers all three and a restart
// replays the log only after it (snapshot.go).
type stateMachine struct {
	store *kv.Store
	// dir is the member directory: the engine is in dir/kv, snapshots received from
	// a leader wait in dir/kv-in (snapshot.go).
	dir string
	// fs is the file system of the engine and of kv-in, whose tables the engine
	// writes and ingests: the OS's unless a test gives another.
	fs vfs.FS
	// alarms are the raised alarms (alarm.go).
	alarms alarmTable
	mu     struct {
		sync.RWMutex
		members map[uint64]member
	}
}

// newStateMachine opens the state machine kept in memberDir (its engine's files on
// fs; nil is the operating system's), creating an empty one whose member list is
// initial if there is none.
func newStateMachine(cfg kv.Config, memberDir string, initial []member, fs vfs.FS) (*stateMachine, error) {
	store, err := kv.OpenStoreFS(cfg, storeDir(memberDir), fs)
	if err != nil {
		return nil, err
	}
	if fs == nil {
		fs = vfs.Default
	}
	sm := &stateMachine{store: store, dir: memberDir, fs: fs}
	if err := sm.loadServerState(initial); err != nil {
		_ = store.Close()
		return nil, err
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
