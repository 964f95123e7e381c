package server

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"raftkv/kv"
	"raftkv/raft"
	"raftkv/storage"
)

// Snapshots on the engine (issue 13). The store's engine is the state machine's
// durable state, so a Raft snapshot no longer carries the state: its data is a marker
// that says where the state is.
//
//   - A local snapshot (log compaction) makes the engine durable (kv.Store.Flush) and
//     records a snapshot with the marker snapLocal, truncating the log, at the
//     applied index the flush covers less the catch-up entries (compactLog). The log
//     is truncated only up to that index: the engine writes without fsync, and after
//     a crash it holds exactly its last flush, from which the log must still replay
//     every later entry.
//   - A leader sends a lagging follower the snapshot at its store's durable applied
//     index (sendingStorage), and for its body the engine itself: the transport asks
//     snapshotStream for the body of a MsgSnap and streams the store's chunks
//     (kv.Store.WriteSnapshot, a pebble snapshot at the current applied index, which
//     is at or past the Raft snapshot's). The follower writes the records into
//     sstables in kv-in as they arrive (receiveSnapshot) and Raft gets the marker
//     snapReceived naming them; when the snapshot applies, the store ingests them,
//     is made durable, and the tables are removed. Neither end holds more than a
//     chunk, and a table's index, in memory.
//   - Entries the store already holds (its applied index is past the Raft snapshot's,
//     as a body the leader sent at its own applied index is, see reconcileStore) are
//     skipped by the store
//     (kv.ErrAlreadyApplied); the member list and alarms are idempotent sets
//     replayed in order, so they end where the store's record has them.
//
// Older members wrote the whole state into the snapshot (RKVSM1/RKVSM2 followed by
// the store's own snapshot); such a snapshot is imported into the engine once.

var (
	// snapshotMagic opens every snapshot marker, with its format version.
	snapshotMagic = []byte("RKVSM3")
	// The whole-state formats of older versions: RKVSM2 has the alarms after the
	// members, RKVSM1 has none. Read, never written.
	snapshotMagicV2 = []byte("RKVSM2")
	snapshotMagicV1 = []byte("RKVSM1")
)

// Marker kinds, the byte after snapshotMagic.
const (
	// snapLocal: the engine's durable state covers the snapshot's index.
	snapLocal byte = 'L'
	// snapReceived: followed by the name of the body in kv-in (a directory of
	// tables, or a stream file of an older version) that a leader sent; the store
	// is restored from it when the snapshot applies.
	snapReceived byte = 'R'
)

// Names under the member directory.
const (
	storeDirName   = "kv"
	inboundDirName = "kv-in"
	// metaServerState is the store record holding the member list and alarms.
	metaServerState = "server"
	// metaClusterID is the store record holding the cluster id it belongs to.
	metaClusterID = "cluster"
	// metaRestoredFrom is the store record of the received snapshot it was last
	// restored from: the snapshot's Raft index and the applied index of the body
	// (the leader's store at its own applied index, past the snapshot's), 8 bytes
	// big-endian each. Until this member's log holds the entries in between, its
	// store is ahead of its log for this reason alone (reconcileStore).
	metaRestoredFrom = "restored-from"
)

func storeDir(memberDir string) string   { return filepath.Join(memberDir, storeDirName) }
func inboundDir(memberDir string) string { return filepath.Join(memberDir, inboundDirName) }

func localSnapshotData() []byte { return append(bytes.Clone(snapshotMagic), snapLocal) }

func receivedSnapshotData(name string) []byte {
	return append(append(bytes.Clone(snapshotMagic), snapReceived), name...)
}

// snapshotKind returns a snapshot's marker kind and, for snapReceived, the file name;
// kind 0 is a whole-state snapshot of an older version.
func snapshotKind(data []byte) (kind byte, name string, err error) {
	switch {
	case bytes.HasPrefix(data, snapshotMagic) && len(data) > len(snapshotMagic):
		kind, rest := data[len(snapshotMagic)], data[len(snapshotMagic)+1:]
		switch {
		case kind == snapLocal && len(rest) == 0:
			return kind, "", nil
		case kind == snapReceived && validInboundName(string(rest)):
			return kind, string(rest), nil
		}
	case bytes.HasPrefix(data, snapshotMagicV2), bytes.HasPrefix(data, snapshotMagicV1):
		return 0, "", nil
	}
	return 0, "", fmt.Errorf("server: snapshot data %q is no snapshot marker of this raftkv version", data[:min(len(data), 16)])
}

// validInboundName accepts only the names receiveSnapshot makes (and made before
// it wrote tables): a snapshot's data must not point outside kv-in.
func validInboundName(name string) bool {
	return (strings.HasSuffix(name, inboundTablesSuffix) || strings.HasSuffix(name, inboundStreamSuffix)) &&
		filepath.Base(name) == name && !strings.HasPrefix(name, ".")
}

// encodeServerState encodes the member list and the alarms: the store record
// metaServerState.
func (sm *stateMachine) encodeServerState() []byte {
	b := append(bytes.Clone(snapshotMagicV2), encodeMembers(sm.allMembers())...)
	return sm.alarms.encode(b)
}

// decodeServerState reads what encodeServerState (or an older version's whole-state
// snapshot) wrote, and returns what follows it.
func decodeServerState(data []byte) (map[uint64]member, map[alarmKey]struct{}, []byte, error) {
	hasAlarms := bytes.HasPrefix(data, snapshotMagicV2)
	if !hasAlarms && !bytes.HasPrefix(data, snapshotMagicV1) {
		return nil, nil, nil, fmt.Errorf("server: member record does not start with %q", snapshotMagicV2)
	}
	list, data, err := decodeMembers(data[len(snapshotMagicV2):])
	if err != nil {
		return nil, nil, nil, err
	}
	members := make(map[uint64]member, len(list))
	for _, m := range list {
		members[m.ID] = m
	}
	alarms := map[alarmKey]struct{}{}
	if hasAlarms {
		if alarms, data, err = decodeAlarms(data); err != nil {
			return nil, nil, nil, err
		}
	}
	return members, alarms, data, nil
}

// loadServerState reads the member list and alarms from the store; a store without
// them (a new one) starts with initial and no alarm.
func (sm *stateMachine) loadServerState(initial []member) error {
	b, err := sm.store.Meta(metaServerState)
	if err != nil {
		return err
	}
	members := map[uint64]member{}
	alarms := map[alarmKey]struct{}{}
	if b == nil {
		for _, m := range initial {
			members[m.ID] = m
		}
	} else if members, alarms, _, err = decodeServerState(b); err != nil {
		return fmt.Errorf("server: the store in %s: %w", storeDir(sm.dir), err)
	}
	sm.alarms.replace(alarms)
	sm.mu.Lock()
	sm.mu.members = members
	sm.mu.Unlock()
	return nil
}

// applyServerState applies entry index, which changed the member list or the alarms:
// the new record goes into the store in the batch that moves its applied index. An
// entry the store already holds is skipped.
func (sm *stateMachine) applyServerState(index uint64) error {
	err := sm.store.ApplyMeta(index, metaServerState, sm.encodeServerState())
	if errors.Is(err, kv.ErrAlreadyApplied) {
		return nil
	}
	return err
}

// restore replaces the state machine with a snapshot's, as of index.
func (sm *stateMachine) restore(index uint64, data []byte) error {
	kind, name, err := snapshotKind(data)
	if err != nil {
		return err
	}
	switch kind {
	case snapLocal:
		// The engine is this snapshot: Raft hands it over only if the store is behind
		// it (Config.Applied), which reconcileStore refuses at start.
		if a := sm.store.AppliedIndex(); a < index {
			return fmt.Errorf("server: the store in %s has applied index %d, behind the snapshot at %d that the log was truncated to",
				storeDir(sm.dir), a, index)
		}
		return nil
	case snapReceived:
		return sm.restoreReceived(index, name)
	}
	// An older version's whole-state snapshot: import it once.
	members, alarms, rest, err := decodeServerState(data)
	if err != nil {
		return fmt.Errorf("server: snapshot at %d: %w", index, err)
	}
	if err := sm.store.Restore(rest); err != nil {
		return err
	}
	sm.alarms.replace(alarms)
	sm.mu.Lock()
	sm.mu.members = members
	sm.mu.Unlock()
	if err := sm.store.SetMeta(metaServerState, sm.encodeServerState()); err != nil {
		return err
	}
	_, err = sm.store.Flush()
	return err
}

// restoreReceived replaces the store with the body a leader sent, saved as name in
// kv-in (tables to ingest; a stream file from an older version), makes it durable
// and removes it (and older ones).
func (sm *stateMachine) restoreReceived(index uint64, name string) error {
	path := filepath.Join(inboundDir(sm.dir), name)
	if _, err := sm.fs.Stat(path); err != nil {
		return fmt.Errorf("server: the snapshot at index %d that the leader sent is missing: %w", index, err)
	}
	// The record of what the body left goes to disk with the restored state
	// (reconcileStore trusts a store ahead of the log only with it).
	rec := &kv.RestoreRecord{Name: metaRestoredFrom, Value: binary.BigEndian.AppendUint64(nil, index)}
	var err error
	if strings.HasSuffix(name, inboundTablesSuffix) {
		err = sm.store.RestoreFromTables(path, rec)
	} else {
		err = restoreStreamFile(sm.fs, sm.store, path, rec)
	}
	if err != nil {
		return fmt.Errorf("server: restoring the snapshot at index %d from %s: %w", index, path, err)
	}
	if a := sm.store.AppliedIndex(); a < index {
		return fmt.Errorf("server: the snapshot at index %d in %s holds a store applied only to %d", index, path, a)
	}
	if err := sm.loadServerState(nil); err != nil {
		return err
	}
	if _, err := sm.store.Flush(); err != nil {
		return err
	}
	// Only bodies up to this one: the transport may have saved a newer one (or be
	// writing it) while this one was restored, and Raft hands that over next.
	sm.removeInbound(func(n string) bool {
		i, ok := inboundIndex(n)
		return ok && i <= index
	})
	return nil
}

// openStateMachine opens the member's state machine in memberDir (newStateMachine),
// once the bodies a crash cut off while they were received are removed
// (removeCutReceives).
// A store that a crash cut off while it restored a snapshot body the leader sent
// (kv.ErrRestoreCutOff) is restored again from that body, if the log's newest
// snapshot names it and it is still in kv-in: the start then goes on as after that
// restore (reconcileStore). Any other store cut off mid-restore is refused.
func (s *Server) openStateMachine(cfg kv.Config, memberDir string, initial []member, fs vfs.FS) (*stateMachine, error) {
	s.removeCutReceives(memberDir, fs)
	sm, err := newStateMachine(cfg, memberDir, initial, fs)
	if !errors.Is(err, kv.ErrRestoreCutOff) {
		return sm, err
	}
	cutOff := err
	snap, err := s.storage.Snapshot()
	if err != nil {
		return nil, err
	}
	kind, name, err := snapshotKind(snap.Data)
	if snap.IsEmpty() || err != nil || kind != snapReceived {
		return nil, fmt.Errorf("%w; the log names no snapshot body the leader sent to restore it from", cutOff)
	}
	if fs == nil {
		fs = vfs.Default
	}
	path := filepath.Join(inboundDir(memberDir), name)
	if _, err := fs.Stat(path); err != nil {
		return nil, fmt.Errorf("%w; the body of the snapshot at index %d that the log names is gone: %w", cutOff, snap.Index, err)
	}
	store, err := kv.OpenStoreToRestoreFS(cfg, storeDir(memberDir), fs)
	if err != nil {
		return nil, err
	}
	s.logger.Warn("the store was cut off while it restored a snapshot the leader sent; restoring it again from the body",
		"store", storeDir(memberDir), "snapshot", snap.Index, "body", path)
	sm = &stateMachine{store: store, dir: memberDir, fs: fs}
	if err := sm.restoreReceived(snap.Index, name); err != nil {
		_ = store.Close()
		return nil, err
	}
	return sm, nil
}

// inboundReceivingPrefix starts the name in kv-in of a body being received
// (receiveSnapshot), renamed to its inboundName once whole and synced.
const inboundReceivingPrefix = ".recv-"

// removeCutReceives removes from kv-in the bodies a kill or power loss cut off
// while they were being received: ".recv-" directories of tables (a file of an
// older version), each up to the store's size. No snapshot names them (their
// names are no inboundName, and validInboundName refuses a snapshot that would),
// so nothing else ever removes them, as storage removes its own *.tmp files when
// it opens. The start calls it before the transport can receive a body; a failure
// to remove one is logged, not fatal.
func (s *Server) removeCutReceives(memberDir string, fs vfs.FS) {
	if fs == nil {
		fs = vfs.Default
	}
	dir := inboundDir(memberDir)
	names, err := fs.List(dir)
	if err != nil {
		return // no kv-in: no body was ever received
	}
	for _, name := range names {
		if !strings.HasPrefix(name, inboundReceivingPrefix) {
			continue
		}
		path := filepath.Join(dir, name)
		size := treeSize(fs, path)
		if err := fs.RemoveAll(path); err != nil {
			s.logger.Warn("could not remove a snapshot body whose receiving was cut off", "body", path, "bytes", size, "err", err)
			continue
		}
		s.logger.Info("removed a snapshot body whose receiving was cut off (by a crash or a kill)", "body", path, "bytes", size)
	}
}

// treeSize is the size of the files at path, a file or a directory (one level of
// files, as WriteSnapshotTables writes; deeper ones are counted too).
func treeSize(fs vfs.FS, path string) int64 {
	info, err := fs.Stat(path)
	if err != nil {
		return 0
	}
	if !info.IsDir() {
		return info.Size()
	}
	names, err := fs.List(path)
	if err != nil {
		return 0
	}
	var n int64
	for _, name := range names {
		n += treeSize(fs, filepath.Join(path, name))
	}
	return n
}

// restoreStreamFile restores store from a stream body saved whole in a file, as
// members before the tables saved them.
func restoreStreamFile(fs vfs.FS, store *kv.Store, path string, rec *kv.RestoreRecord) error {
	f, err := fs.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return store.RestoreFrom(f, rec)
}

// The suffixes of the bodies in kv-in: a directory of tables
// (kv.Store.WriteSnapshotTables), or a stream saved whole (before the tables; still
// restored, for a member upgraded between receiving a body and applying it).
const (
	inboundTablesSuffix = ".tables"
	inboundStreamSuffix = ".snap"
)

// inboundName is the name of the body of the snapshot at index in term.
func inboundName(snap raft.Snapshot) string {
	return fmt.Sprintf("%016x-%016x%s", snap.Term, snap.Index, inboundTablesSuffix)
}

// inboundIndex is the snapshot index an inbound body's name names; false for any
// other name (a body still being received).
func inboundIndex(name string) (uint64, bool) {
	var term, index uint64
	for _, suffix := range []string{inboundTablesSuffix, inboundStreamSuffix} {
		if len(name) != 33+len(suffix) || !strings.HasSuffix(name, suffix) {
			continue
		}
		if _, err := fmt.Sscanf(name[:33], "%016x-%016x", &term, &index); err != nil {
			return 0, false
		}
		return index, true
	}
	return 0, false
}

// removeInbound removes the bodies in kv-in that drop says to.
func (sm *stateMachine) removeInbound(drop func(name string) bool) {
	dir := inboundDir(sm.dir)
	names, err := sm.fs.List(dir)
	if err != nil {
		return
	}
	for _, name := range names {
		if drop(name) {
			_ = sm.fs.RemoveAll(filepath.Join(dir, name))
		}
	}
}

// removeStaleInbound removes the bodies in kv-in of snapshots at or below applied,
// the index this member has applied. Raft installs a snapshot only past its commit
// index, which is at or past applied, so such a body will never be restored: it is
// one Raft refused as stale when it arrived (a leader sent it twice, or the member
// caught up from the log while it was on its way), which nothing else removes
// before the next restore or restart, and which can be as large as the store. A
// body that was restored is removed by the restore itself (restoreReceived). The
// apply loop calls this as it starts a local snapshot, every SnapshotCount entries,
// as etcd releases the snapshot files it received when it saves a snapshot. It
// runs on the apply loop, which is also the only one to restore a body. applied must
// be the index the loop applied, not the store's applied index: a store restored
// from a body is past the log, and Raft may still install a later snapshot below
// the store's index, whose body must stay.
func (s *Server) removeStaleInbound(applied uint64) {
	s.sm.removeInbound(func(name string) bool {
		i, ok := inboundIndex(name)
		if !ok || i > applied {
			return false
		}
		s.logger.Info("removing a snapshot body that Raft did not install: the member applied past it",
			"body", filepath.Join(inboundDir(s.sm.dir), name), "snapshot", i, "applied", applied)
		return true
	})
}

// syncInbound makes kv-in's entries durable.
func (sm *stateMachine) syncInbound() error { return kv.SyncDir(sm.fs, inboundDir(sm.dir)) }

// snapshotStream is the transport's SnapshotStream: the body of a snapshot this
// member sends to node to is its store, streamed as of its current applied index
// (at or past snap's, whose marker says the engine covers it). The log is held at
// snap's index from now until to has caught up past it (outboundSnapshots).
func (s *Server) snapshotStream(to uint64, snap raft.Snapshot) (io.ReadCloser, error) {
	if a := s.sm.store.AppliedIndex(); a < snap.Index {
		return nil, fmt.Errorf("server: the store has applied %d, behind the snapshot at %d", a, snap.Index)
	}
	pin := s.snapshotsOut.hold(to, snap.Index)
	pr, pw := io.Pipe()
	s.goTracked(func() {
		_, err := s.sm.store.WriteSnapshot(pw)
		_ = pw.CloseWithError(err)
	})
	return &pinnedStream{ReadCloser: pr, pin: pin, out: &s.snapshotsOut}, nil
}

// pinnedStream is a snapshot body whose Close tells outboundSnapshots the sending
// ended (the transport closes it once the receiver has answered).
type pinnedStream struct {
	io.ReadCloser
	pin  *snapshotPin
	out  *outboundSnapshots
	once sync.Once
}

func (p *pinnedStream) Close() error {
	p.once.Do(func() { p.out.sent(p.pin, time.Now()) })
	return p.ReadCloser.Close()
}

// outboundSnapshots keeps the entries right after a snapshot this member sends
// until the receiver has them. The receiver of a snapshot at index S goes on from
// the log at S+1; if a compaction truncated the log past S while the body was on
// its way (seconds for a large store, under writes), the leader would have to send
// another snapshot, and under steady writes maybe forever. So compactLog truncates
// no further than S while a snapshot at S is being sent to a peer, and after that
// no further than the peer's log (its Match, S at first) until it has caught up to
// the truncation point (from then on the catch-up entries serve it), the peer
// leaves the configuration or this member stops leading, or snapshotPinTimeout
// has passed since the sending ended (the peer went away or cannot keep up). etcd only pauses compaction while a snapshot is in flight
// (EtcdServer.compactRaftLog) and counts on its catch-up entries for the rest.
// At most one pin per peer: the transport sends one snapshot at a time to a peer,
// and a new one supersedes the last.
type outboundSnapshots struct {
	mu   sync.Mutex
	pins map[uint64]*snapshotPin
}

type snapshotPin struct {
	index uint64
	// sentAt is when the sending ended; zero while it goes on.
	sentAt time.Time
}

// snapshotPinTimeout bounds how long a sent snapshot holds the log back when the
// leader does not see its receiver catch up. Long enough for a receiver to restore
// a large body before it answers; a peer that takes longer gets another snapshot.
const snapshotPinTimeout = time.Minute

func (o *outboundSnapshots) hold(to, index uint64) *snapshotPin {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pins == nil {
		o.pins = map[uint64]*snapshotPin{}
	}
	pin := &snapshotPin{index: index}
	o.pins[to] = pin
	return pin
}

func (o *outboundSnapshots) sent(pin *snapshotPin, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	pin.sentAt = now
}

// limit returns index lowered to the lowest snapshot still held, dropping the pins
// whose peer caught up (progress is the leader's view of each peer's log; nil if
// this member does not lead) or whose time is up.
func (o *outboundSnapshots) limit(index uint64, progress []raft.PeerProgress, now time.Time) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	match := make(map[uint64]uint64, len(progress))
	for _, p := range progress {
		match[p.ID] = p.Match
		if p.PendingSnapshot > 0 {
			// Chosen by Raft, and maybe not yet asked for by the transport, which
			// dials the receiver first: no pin yet (TestOutboundSnapshotsLimitHoldsAChosenSnapshot).
			index = min(index, p.PendingSnapshot)
		}
	}
	for to, pin := range o.pins {
		if pin.sentAt.IsZero() {
			index = min(index, pin.index)
			continue
		}
		m, ok := match[to]
		if !ok || now.Sub(pin.sentAt) > snapshotPinTimeout {
			delete(o.pins, to)
			continue
		}
		// The receiver goes on from its log's end (the snapshot's index at first):
		// nothing it has not got is dropped until it has caught up to index.
		held := max(pin.index, m)
		if held >= index {
			delete(o.pins, to)
			continue
		}
		index = held
	}
	return index
}

// receiveSnapshot is the transport's SnapshotReceiver: it writes the body of the
// snapshot a leader sends into tables in kv-in as it arrives
// (kv.Store.WriteSnapshotTables, synced), and names them in the data Raft gets;
// the snapshot then applies by ingesting them. A failed or cut body leaves
// nothing.
func (s *Server) receiveSnapshot(from uint64, snap raft.Snapshot, body io.Reader) ([]byte, error) {
	dir := inboundDir(s.sm.dir)
	if err := s.sm.fs.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// kv-in's own entry, made by the first body: a crash must not lose the
	// directory of a body the log names once Raft persists the snapshot.
	if err := kv.SyncDir(s.sm.fs, s.sm.dir); err != nil {
		return nil, err
	}
	name := inboundName(snap)
	var random [8]byte
	_, _ = rand.Read(random[:])
	tmp := filepath.Join(dir, fmt.Sprintf("%s%x", inboundReceivingPrefix, random))
	n, err := s.sm.store.WriteSnapshotTables(body, tmp)
	if err != nil {
		return nil, fmt.Errorf("server: receiving the snapshot at index %d from %x after %d bytes: %w", snap.Index, from, n, err)
	}
	final := filepath.Join(dir, name)
	if _, err := s.sm.fs.Stat(final); err == nil {
		// The same snapshot, received before and not yet applied (the apply loop
		// may be ingesting it now): that body serves as well as this one, once
		// its name in kv-in is durable. An earlier receive whose sync failed
		// removed it (below), but a sync of kv-in here costs little and answers
		// for the name whatever left it. If it fails the body stays: an earlier
		// receive may have answered with it, and Raft persisted the marker, or
		// the apply loop may be ingesting it; the member stops.
		_ = s.sm.fs.RemoveAll(tmp)
		if err := s.sm.syncInbound(); err != nil {
			return nil, s.failedInboundSync(snap, "", err)
		}
		return receivedSnapshotData(name), nil
	}
	if err := s.sm.fs.Rename(tmp, final); err != nil {
		_ = s.sm.fs.RemoveAll(tmp)
		return nil, err
	}
	if err := s.sm.syncInbound(); err != nil {
		return nil, s.failedInboundSync(snap, final, err)
	}
	s.logger.Info("snapshot body received", "index", snap.Index, "term", snap.Term, "from", hexID(from), "bytes", n)
	return receivedSnapshotData(name), nil
}

// failedInboundSync handles a failed fsync of kv-in after a body took its final
// name: whether the name is durable is unknown, and a later sync need not say
// (the kernel may have dropped the dirty state with the error). The body is
// removed, so that a resend of the snapshot writes and syncs it afresh rather
// than answering from a name that may not survive a power cut, and the receive
// fails, so that Raft persists no marker naming it. As for any failed sync of
// the member's state, the member stops (stopOnFatal).
//
// final is "" where the body must stay (the "already there" branch).
func (s *Server) failedInboundSync(snap raft.Snapshot, final string, err error) error {
	if final != "" {
		_ = s.sm.fs.RemoveAll(final)
	}
	err = fmt.Errorf("server: fsync of %s after receiving the snapshot at index %d: %w", inboundDir(s.sm.dir), snap.Index, err)
	s.stopOnFatal(err)
	return err
}

// compactLog is a local snapshot: it makes the store durable and truncates the log
// up to the applied index that is now durable (and stored in the log: a store
// restored from a leader's body may be past it), less SnapshotCatchUpEntries, and
// no further than a snapshot this member is sending (outboundSnapshots). The kept
// entries serve a follower that is a little behind, or that installed a snapshot
// while writes went on, from the log: as etcd keeps them (its compaction index is
// the snapshot's less --snapshot-catchup-entries, and it compacts nothing while
// the snapshot index is not past them). The snapshot Raft sends a follower is the
// one at the truncation point; its body is the store as of when it is sent.
func (s *Server) compactLog() error {
	durable, err := s.sm.store.Flush()
	if err != nil {
		return err
	}
	last, err := s.storage.LastIndex()
	if err != nil {
		return err
	}
	index := min(durable, last)
	if err := s.recordDurableSnapshot(index); err != nil {
		return err
	}
	if durable > last {
		// A store restored from a leader's body, past the log: the received snapshot
		// stays the log's newest until the log catches up (reconcileStore).
		return nil
	}
	if index <= s.cfg.SnapshotCatchUpEntries {
		return nil
	}
	index -= s.cfg.SnapshotCatchUpEntries
	index = s.snapshotsOut.limit(index, s.node.MembershipStatus().Progress, time.Now())
	if first, err := s.storage.FirstIndex(); err != nil || index < first {
		return err // nothing new to truncate
	}
	membership, err := s.node.MembershipAt(index)
	if err != nil {
		return err
	}
	_, err = s.storage.CreateSnapshotFrom(index, membership, func(w io.Writer) error {
		_, err := w.Write(localSnapshotData())
		return err
	})
	if errors.Is(err, raft.ErrSnapOutOfDate) {
		return nil // a snapshot from the leader at or past index arrived meanwhile
	}
	return err
}

// sendingStorage is the log storage as Raft sees it, but for the snapshot a leader
// sends a follower (LoadSnapshot): the one at the store's durable applied index
// that compactLog last recorded, past the log's truncation point by the catch-up
// entries, rather than the one at the truncation point. A snapshot here is only a
// marker (the body is the store, streamed at its applied index, at or past it),
// so any durable applied index still in the log serves; sending the newest
// spares the follower the catch-up entries it would otherwise fetch after the
// body, though its store already holds them (measured: 5000 entries of 100-key
// transactions, 500 MiB, after a 1 GiB body). This is etcd's arrangement too: it
// sends its snapshot at the snapshot index and keeps the catch-up entries before
// it.
type sendingStorage struct {
	*storage.Storage
	s *Server
}

func (st *sendingStorage) LoadSnapshot() (raft.Snapshot, error) {
	snap, err := st.Storage.LoadSnapshot()
	if err != nil {
		return snap, err
	}
	if d := st.s.durableSnap.Load(); d != nil && d.Index > snap.Index {
		return *d, nil
	}
	return snap, nil
}

// recordDurableSnapshot records the snapshot at index, durable in the store and
// still in the log, for sendingStorage.
func (s *Server) recordDurableSnapshot(index uint64) error {
	if d := s.durableSnap.Load(); d != nil && d.Index >= index {
		return nil
	}
	first, err := s.storage.FirstIndex()
	if err != nil || index < first {
		return err // at or behind the log's own snapshot
	}
	term, err := s.storage.Term(index)
	if err != nil {
		return err
	}
	membership, err := s.node.MembershipAt(index)
	if err != nil {
		return err
	}
	s.durableSnap.Store(&raft.Snapshot{Index: index, Term: term, Membership: membership, Data: localSnapshotData()})
	return nil
}

// reconcileStore checks, before Raft starts, that the store and the log are of one
// history, and returns the applied index Raft is to start from (raft.Config.Applied).
//
//   - A store of another cluster is refused.
//   - A store behind a local snapshot lost what the log was truncated past: refused
//     (it was replaced, or the file system lost flushed data).
//   - A store ahead of the log is refused, with one exception: Raft hands a member
//     only entries durable in its own log, and a received snapshot only once
//     persisted (raft/node_ready.go), so applying never gets the store ahead of its
//     log. A store that is was applied from another log: a WAL of another data dir,
//     an older copy of this one, or a file system that lost synced writes; and that
//     log's hard state (term, vote) is not the one this member promised from (Raft
//     §5.2: one vote per term). The exception: a store restored from the body of
//     the received snapshot the log ends with (metaRestoredFrom) is the leader's
//     store at the leader's applied index, past the snapshot's, until the log holds
//     the entries in between; those are committed, so the log restarts after the
//     store, at its applied index and term.
//   - A store within the log must agree with it on the term of its applied entry.
func (s *Server) reconcileStore() (uint64, error) {
	st := s.sm.store
	dir := storeDir(s.sm.dir)
	id := binary.BigEndian.AppendUint64(nil, s.clusterID)
	got, err := st.Meta(metaClusterID)
	if err != nil {
		return 0, err
	}
	switch {
	case got == nil:
		if err := st.SetMeta(metaClusterID, id); err != nil {
			return 0, err
		}
	case !bytes.Equal(got, id):
		other := fmt.Sprintf("%x", got)
		if len(got) == 8 {
			other = hexID(binary.BigEndian.Uint64(got))
		}
		return 0, fmt.Errorf("server: the store in %s belongs to cluster %s, this member's log to cluster %s: "+
			"the data dir mixes two clusters' files; restore the member from a backup or remove and re-add it",
			dir, other, hexID(s.clusterID))
	}
	applied, term := st.AppliedIndex(), st.AppliedTerm()
	snap, err := s.storage.Snapshot()
	if err != nil {
		return 0, err
	}
	last, err := s.storage.LastIndex()
	if err != nil {
		return 0, err
	}
	if !snap.IsEmpty() {
		kind, name, err := snapshotKind(snap.Data)
		if err != nil {
			return 0, err
		}
		// Bodies of snapshots that are not the stored one were superseded.
		s.sm.removeInbound(func(n string) bool { return kind != snapReceived || n != name || applied >= snap.Index })
		if applied < snap.Index {
			switch kind {
			case snapLocal:
				return 0, fmt.Errorf("server: the store in %s has applied index %d, but the log was truncated to index %d "+
					"once the store was durable there: the store lost data (replaced, or a file system that lost flushed writes); "+
					"restore the member from a backup or remove and re-add it", dir, applied, snap.Index)
			case snapReceived:
				if _, err := s.sm.fs.Stat(filepath.Join(inboundDir(s.sm.dir), name)); err != nil {
					return 0, fmt.Errorf("server: the snapshot at index %d the leader sent is to be restored from %s: %w",
						snap.Index, filepath.Join(inboundDir(s.sm.dir), name), err)
				}
			}
			return applied, nil // Raft hands the snapshot over first
		}
	} else {
		s.sm.removeInbound(func(string) bool { return true })
	}
	if applied == 0 {
		return 0, nil
	}
	if applied > last {
		lastTerm, err := s.storage.Term(last)
		if err != nil {
			return 0, err
		}
		// A store restored from the leader's body that the log names, or one
		// that a build before this rule left (see below), is trusted ahead.
		restored := restoredFromLogsSnapshot(st, snap, applied)
		olderBuild := !restored && s.storage.OlderBuildsWAL()
		if !restored && !olderBuild {
			return 0, fmt.Errorf("server: the store in %s has applied index %d of term %d, past the log's end at %d of term %d: "+
				"a member applies only what its own log holds durably, so the log in %s is not the one the store was applied from "+
				"(another data dir's, an older copy of this one, or a file system that lost synced writes); "+
				"restore the member from a backup or remove and re-add it",
				dir, applied, term, last, lastTerm, s.storage.WALDir())
		}
		if term < lastTerm {
			return 0, fmt.Errorf("server: the store in %s has applied index %d of term %d, past the log's end at %d of term %d: "+
				"a later index cannot have an earlier term, so the store and the log are of different histories", dir, applied, term, last, lastTerm)
		}
		err = s.storage.ApplySnapshot(raft.Snapshot{Index: applied, Term: term, Membership: s.sm.membership(), Data: localSnapshotData()})
		if err != nil {
			return 0, err
		}
		if olderBuild {
			// A build before the rule applied committed entries before its own
			// write of them, and recorded no restored-from: its store may be ahead
			// after a crash, or after a clean stop soon after a received snapshot.
			// Accepted as that build accepted it, until this build first writes to
			// the log (ApplySnapshot, next, does).
			s.logger.Warn("the store is ahead of the log, which only a build before this one has written: "+
				"such a build could leave it so; the log restarts after the store (accepted until this build first writes to the log)",
				"store", dir, "store_applied", applied, "log_last", last, "wal", s.storage.WALDir())
		} else {
			s.logger.Info("the store, restored from the leader's snapshot body, is ahead of the log: the log restarts after the store",
				"store_applied", applied, "log_last", last, "snapshot", snap.Index, "term", term)
		}
		return applied, nil
	}
	if term != 0 && applied > snap.Index {
		logTerm, err := s.storage.Term(applied)
		if err != nil {
			return 0, err
		}
		if logTerm != term {
			return 0, fmt.Errorf("server: the store in %s applied index %d in term %d, but the log's entry %d is of term %d: "+
				"the store and the log are of different histories", dir, applied, term, applied, logTerm)
		}
	}
	return applied, nil
}

// restoredFromLogsSnapshot reports whether a store at applied index applied is just
// what the leader's body it was last restored from left (metaRestoredFrom), and the
// log's newest snapshot, snap, is a received one at or past that body's snapshot
// (a later one may be persisted and not yet restored). A store that applied anything
// since, applied it from entries its own log held durably, and is not ahead of a log
// that is its own; compactLog truncates nothing while the store is ahead, so the
// received snapshot stays the log's newest until the log catches up.
func restoredFromLogsSnapshot(st *kv.Store, snap raft.Snapshot, applied uint64) bool {
	if snap.IsEmpty() {
		return false
	}
	kind, _, err := snapshotKind(snap.Data)
	if err != nil || kind != snapReceived {
		return false
	}
	got, err := st.Meta(metaRestoredFrom)
	if err != nil || len(got) != 16 {
		return false
	}
	from, body := binary.BigEndian.Uint64(got[:8]), binary.BigEndian.Uint64(got[8:])
	return from <= snap.Index && applied == body
}

// membership is the Raft configuration the member list gives.
func (sm *stateMachine) membership() raft.Membership {
	var m raft.Membership
	for _, rec := range sm.members() {
		if rec.IsLearner {
			m.Learners = append(m.Learners, rec.ID)
		} else {
			m.Voters = append(m.Voters, rec.ID)
		}
	}
	return m
}

// storeFailed stops the member after its store failed to apply entry index: the
// engine refuses every later write (kv.ErrEngineFailed), and a member that went on
// would answer from a state the others have moved past (stopOnFatal; a full disk's
// is the one line the member stops with). From index on, the apply loop counts no
// entry applied and reads waiting for an index fail (appliedNotifier.halt), so no
// read waits its way past the gap.
func (s *Server) storeFailed(index uint64, err error) {
	s.applied.halt() // before the apply loop would count index applied
	s.stopOnFatal(fmt.Errorf("server: the store failed to apply entry %d: %w", index, err))
}
