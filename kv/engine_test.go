package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func openTestEngine(t testing.TB, dir string, fs vfs.FS) *engine {
	t.Helper()
	// A newest-version cache of 4 of the models' 32 keys: puts find their key's
	// newest version in it, in their own write, or by a seek, all often. Values
	// of 4 bytes or more are separated: the model's values ("v%d" of the entry's
	// index) are inline for the first 99 entries and separated after.
	e, err := openEngine(dir, engineConfig{CacheBytes: 4 << 20, MemTableBytes: 2 << 20, NewestCacheKeys: 4, SeparateValueBytes: 4, FS: fs})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	return e
}

// TestEngineKeyOrder checks that escaping keeps user-key order, with any bytes in
// the keys, and that every version of a key sorts newest first, between the
// key's bounds and before the next key's.
func TestEngineKeyOrder(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineKeyOrder)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	alphabet := []byte{0x00, 0x01, 0x02, 'a', 0xfe, 0xff}
	keys := [][]byte{{}}
	for range 300 {
		k := make([]byte, rng.IntN(5))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		keys = append(keys, k)
	}
	type encoded struct {
		key []byte
		rev int64
		enc []byte
	}
	var all []encoded
	for _, k := range keys {
		for _, rev := range []int64{1, 2, 300, 1 << 40} {
			all = append(all, encoded{k, rev, versionKey(nil, k, rev, 0)})
		}
		if got := unescapeKey(versionPrefix(nil, k)); !bytes.Equal(got, k) {
			t.Fatalf("unescape(escape(%x)) = %x", k, got)
		}
	}
	slices.SortFunc(all, func(a, b encoded) int { return bytes.Compare(a.enc, b.enc) })
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		c := bytes.Compare(a.key, b.key)
		if c > 0 || (c == 0 && a.rev < b.rev) {
			t.Fatalf("encoded order puts %x@%d before %x@%d", a.key, a.rev, b.key, b.rev)
		}
	}
	for _, k := range keys {
		for _, other := range keys {
			lo, hi := rangeBounds(k, other)
			in := bytes.Compare(versionKey(nil, k, 5, 0), lo) >= 0 && bytes.Compare(versionKey(nil, k, 5, 0), hi) < 0
			// An empty end selects the key alone, "\x00" every key from it.
			want := len(other) == 0 || bytes.Equal(other, []byte{0}) || bytes.Compare(k, other) < 0
			if in != want {
				t.Fatalf("key %x in bounds of [%x, %x) = %v, want %v", k, k, other, in, want)
			}
		}
	}
}

// TestEngineImmediateSuccessorBoundsAPrefix checks the comparer's
// ImmediateSuccessor against the keys it bounds: for every key's version prefix,
// the successor is a whole prefix (Split) above every version of that key and no
// higher than any version of the next key, which is what pebble needs of the
// span it truncates range deletions to in a SeekPrefixGE.
func TestEngineImmediateSuccessorBoundsAPrefix(t *testing.T) {
	keys := [][]byte{{}, {0}, {0, 0}, {0, 1}, {0xff}, []byte("a"), []byte("a\x00"), []byte("a\x00\x01"), []byte("a\x01"), []byte("b")}
	slices.SortFunc(keys, bytes.Compare)
	cmp := engineComparer.Compare
	for i, k := range keys {
		p := versionPrefix(nil, k)
		succ := engineComparer.ImmediateSuccessor(nil, p)
		if engineComparer.Split(succ) != len(succ) || cmp(p, succ) >= 0 {
			t.Fatalf("ImmediateSuccessor(%x) = %x: not a prefix above it", p, succ)
		}
		for _, rev := range []int64{1, 2, 300, 1 << 40, 1<<63 - 1} {
			for _, sub := range []uint32{0, 1, 1<<32 - 1} {
				if v := versionKey(nil, k, rev, sub); cmp(v, succ) >= 0 {
					t.Fatalf("version %x of key %x is not below ImmediateSuccessor(%x) = %x", v, k, p, succ)
				}
				if i+1 < len(keys) {
					if next := versionKey(nil, keys[i+1], rev, sub); cmp(succ, next) > 0 {
						t.Fatalf("ImmediateSuccessor(%x) = %x is above %x, a version of the next key %x", p, succ, next, keys[i+1])
					}
				}
			}
		}
	}
	// Other keys have no suffix: the default.
	if got := engineComparer.ImmediateSuccessor(nil, []byte("m-meta")); !bytes.Equal(got, []byte("m-meta\x00")) {
		t.Fatalf("ImmediateSuccessor of a meta key = %q", got)
	}
}

// engineModel drives the engine and the reference store (ref_test.go) with the
// same commands; the session and proposal tests drive a Store beside the engine
// instead, to compare the tables each rebuilds.
type engineModel struct {
	t     *testing.T
	rng   *rand.Rand
	e     *engine
	ref   *refStore
	s     *Store
	index uint64
	// lastKey is the key of the last put drawn: compares favour it, as they
	// tell the state before a revision from the state after it.
	lastKey []byte
}

func (m *engineModel) key() []byte {
	// Few keys, some sharing prefixes and holding zero bytes, so that keys are
	// rewritten, deleted and recreated often.
	return []byte(fmt.Sprintf("k%d\x00%d", m.rng.IntN(4), m.rng.IntN(6)))[:2+m.rng.IntN(3)]
}

// beginWrite begins a blind or an indexed write at random: a put or a
// DeleteRange must come out the same from either.
func (m *engineModel) beginWrite() *engineWrite {
	if m.rng.IntN(2) == 0 {
		return m.e.beginBlindWrite()
	}
	return m.e.beginWrite()
}

// revisions returns the revision and the compaction revision of what the model
// compares the engine with.
func (m *engineModel) revisions() (rev, compactRev int64) {
	if m.ref != nil {
		return m.ref.rev, m.ref.compactRev
	}
	return m.s.Revision(), m.s.CompactRevision()
}

// step applies one random command to both and fails the test if they disagree
// on its outcome.
func (m *engineModel) step() {
	m.index++
	cmd := m.randomCommand()
	res := m.ref.apply(m.index, cmd)
	got := m.applyToEngine(cmd)
	if g, w := formatResult(got), formatResult(res); g != w {
		m.t.Fatalf("index %d: %s:\nengine %s\nref    %s", m.index, formatCommand(cmd), g, w)
	}
	if m.e.rev != m.ref.rev || m.e.compactRev != m.ref.compactRev || m.e.appliedIndex != m.ref.applied {
		m.t.Fatalf("index %d: engine at rev %d compact %d applied %d, ref at %d %d %d", m.index,
			m.e.rev, m.e.compactRev, m.e.appliedIndex, m.ref.rev, m.ref.compactRev, m.ref.applied)
	}
}

// randomCommand draws a valid command: puts with any flags and leases 0 to 3,
// deletes of one key or a range, compactions, lease grants and revokes.
func (m *engineModel) randomCommand() *Command {
	switch op := m.rng.IntN(100); {
	case op < 50:
		p := &PutRequest{Key: m.key(), Value: fmt.Appendf(nil, "v%d", m.index), Lease: m.rng.Int64N(4)}
		m.lastKey = p.Key
		if m.rng.IntN(5) == 0 {
			p.Value = nil
		}
		p.PrevKv = m.rng.IntN(3) == 0
		if m.rng.IntN(8) == 0 {
			p.IgnoreValue, p.Value = true, nil
		}
		if m.rng.IntN(8) == 0 {
			p.IgnoreLease, p.Lease = true, 0
		}
		return &Command{Put: p}
	case op < 75:
		d := &DeleteRangeRequest{Key: m.key(), RangeEnd: m.key(), PrevKv: m.rng.IntN(2) == 0}
		switch m.rng.IntN(3) {
		case 0:
			d.RangeEnd = nil
		case 1:
			d.RangeEnd = []byte{0}
		}
		return &Command{DeleteRange: d}
	case op < 80:
		cur, compacted := m.revisions()
		rev := compacted + 1 + m.rng.Int64N(max(1, cur-compacted+1))
		return &Command{Compact: &CompactionRequest{Revision: rev}}
	case op < 88:
		return &Command{Txn: m.randomTxn(2)}
	case op < 91:
		var cps []LeaseCheckpoint
		for range 1 + m.rng.IntN(3) {
			cps = append(cps, LeaseCheckpoint{ID: 1 + m.rng.Int64N(3), RemainingTTL: m.rng.Int64N(50) - 5})
		}
		return &Command{LeaseCheckpoint: &LeaseCheckpointRequest{Checkpoints: cps}}
	case op < 95:
		return &Command{LeaseGrant: &LeaseGrantRequest{ID: 1 + m.rng.Int64N(3), TTL: 1 + m.rng.Int64N(100)}}
	default:
		return &Command{LeaseRevoke: &LeaseRevokeRequest{ID: 1 + m.rng.Int64N(3)}}
	}
}

// randomTxn draws a txn with compares of every target and ops of every kind, with
// nested txns down to depth more levels. Keys may repeat, which checkTxn refuses
// alike in both.
func (m *engineModel) randomTxn(depth int) *TxnRequest {
	r := &TxnRequest{}
	for range m.rng.IntN(3) {
		c := Compare{Key: m.key(), Result: CompareResult(m.rng.IntN(4)), Target: CompareTarget(m.rng.IntN(5))}
		if m.lastKey != nil && m.rng.IntN(2) == 0 {
			c.Key = m.lastKey
		}
		if m.rng.IntN(4) == 0 {
			c.RangeEnd = m.key()
		}
		cur, _ := m.revisions()
		switch c.Target {
		case CompareVersion:
			c.Version = m.rng.Int64N(3)
		case CompareCreate:
			c.CreateRevision = cur - m.rng.Int64N(3)
		case CompareMod:
			c.ModRevision = cur - m.rng.Int64N(3)
		case CompareValue:
			c.Value = fmt.Appendf(nil, "v%d", int64(m.index)-1-m.rng.Int64N(3))
		case CompareLease:
			c.Lease = m.rng.Int64N(4)
		}
		r.Compare = append(r.Compare, c)
	}
	ops := func() []RequestOp {
		var out []RequestOp
		for range m.rng.IntN(4) {
			switch k := m.rng.IntN(10); {
			case k < 3:
				rr := m.randomRange()
				rr.Revision = 0
				out = append(out, RequestOp{Range: rr})
			case k < 7:
				out = append(out, RequestOp{Put: &PutRequest{Key: m.key(), Value: fmt.Appendf(nil, "t%d", m.index),
					Lease: m.rng.Int64N(4), PrevKv: m.rng.IntN(2) == 0}})
			case k < 9:
				out = append(out, RequestOp{DeleteRange: &DeleteRangeRequest{Key: m.key(), PrevKv: m.rng.IntN(2) == 0}})
			default:
				if depth > 0 {
					out = append(out, RequestOp{Txn: m.randomTxn(depth - 1)})
				}
			}
		}
		return out
	}
	r.Success, r.Failure = ops(), ops()
	return r
}

// applyToEngine applies cmd to the engine as entry m.index, in one batch.
func (m *engineModel) applyToEngine(cmd *Command) Result {
	w := m.beginWrite()
	if cmd.Txn != nil {
		w.abort()
		w = m.e.beginWrite() // a txn reads after it writes
	}
	res := w.execute(cmd)
	if res.Err != nil {
		// A failed command changes nothing but the applied index.
		w.abort()
		w = m.e.beginWrite()
	}
	if err := w.commit(m.index); err != nil {
		m.t.Fatal(err)
	}
	return res
}

// execute runs one command in w as the store does (state.execute), with the
// default limits and auth off.
func (w *engineWrite) execute(cmd *Command) Result {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		panic(err)
	}
	return (&state{cfg: cfg, e: w.e}).execute(w, cmd)
}

func formatCommand(cmd *Command) string {
	switch {
	case cmd.Put != nil:
		return fmt.Sprintf("put %+v", *cmd.Put)
	case cmd.DeleteRange != nil:
		return fmt.Sprintf("delete %+v", *cmd.DeleteRange)
	case cmd.Compact != nil:
		return fmt.Sprintf("compact %+v", *cmd.Compact)
	case cmd.Txn != nil:
		return fmt.Sprintf("txn %+v", *cmd.Txn)
	case cmd.LeaseGrant != nil:
		return fmt.Sprintf("grant %+v", *cmd.LeaseGrant)
	case cmd.LeaseRevoke != nil:
		return fmt.Sprintf("revoke %+v", *cmd.LeaseRevoke)
	case cmd.LeaseCheckpoint != nil:
		return fmt.Sprintf("checkpoint %+v", *cmd.LeaseCheckpoint)
	}
	return "?"
}

// formatResult prints the parts of a Result the engine model produces, with
// pointed-to values rather than addresses.
func formatResult(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "err %v", r.Err)
	if r.Put != nil {
		fmt.Fprintf(&b, " put rev %d", r.Put.Header.Revision)
		if r.Put.PrevKv != nil {
			fmt.Fprintf(&b, " prev %+v", *r.Put.PrevKv)
		}
	}
	if r.DeleteRange != nil {
		fmt.Fprintf(&b, " delete %+v", *r.DeleteRange)
	}
	if r.Compact != nil {
		fmt.Fprintf(&b, " compact %+v", *r.Compact)
	}
	if r.Txn != nil {
		b.WriteString(" txn ")
		formatTxn(&b, r.Txn)
	}
	if r.LeaseGrant != nil {
		fmt.Fprintf(&b, " grant %+v", *r.LeaseGrant)
	}
	if r.LeaseRevoke != nil {
		fmt.Fprintf(&b, " revoke %+v", *r.LeaseRevoke)
	}
	if r.LeaseCheckpoint != nil {
		fmt.Fprintf(&b, " checkpoint %+v", *r.LeaseCheckpoint)
	}
	return b.String()
}

// checkReads compares ranges at every readable revision, the leases, the
// version records compaction retains, and the history with the reference.
func (m *engineModel) checkReads(e *engine) {
	m.t.Helper()
	ref := m.ref
	for rev := max(1, ref.compactRev); rev <= ref.rev; rev++ {
		for _, r := range []struct{ key, end []byte }{{[]byte{0}, []byte{0}}, {[]byte("k1"), nil}, {[]byte("k1"), []byte("k2")}, {[]byte("k2\x00"), []byte("k3")}} {
			want := ref.rangeAt(r.key, r.end, rev)
			var got []KeyValue
			if err := e.scan(r.key, r.end, rev, true, func(kv KeyValue) bool { got = append(got, kv); return true }); err != nil {
				m.t.Fatalf("engine scan at %d: %v", rev, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				m.t.Fatalf("index %d: range [%q, %q) at %d:\nengine %v\nref    %v", m.index, r.key, r.end, rev, got, want)
			}
		}
	}
	leases, err := e.leases()
	if err != nil {
		m.t.Fatal(err)
	}
	if fmt.Sprint(leases) != fmt.Sprint(ref.leaseList()) {
		m.t.Fatalf("index %d: leases:\nengine %v\nref    %v", m.index, leases, ref.leaseList())
	}
	for id := int64(1); id <= 3; id++ {
		keys, err := e.leaseKeys(id)
		if err != nil {
			m.t.Fatal(err)
		}
		want := ref.leaseKeys(id)
		if _, ok := ref.leases[id]; !ok {
			want = nil
		}
		if fmt.Sprintf("%q", keys) != fmt.Sprintf("%q", want) {
			m.t.Fatalf("index %d: keys of lease %d:\nengine %q\nref    %q", m.index, id, keys, want)
		}
	}
	// Compaction must drop history, not only hide it.
	if got, want := countVersionRecords(m.t, e), ref.retainedRecords(); got != want {
		m.t.Fatalf("index %d: the engine holds %d version records, the reference retains %d", m.index, got, want)
	}
	if got, want := e.keys, int64(len(ref.retainedKeys())); got != want {
		m.t.Fatalf("index %d: the engine counts %d keys, the reference retains %d", m.index, got, want)
	}
	checkLiveBytes(m.t, e)
	checkValueRecords(m.t, e)
	from := max(ref.compactRev, 1)
	got, gotErr := e.events(&EventsRequest{FromRevision: from, PrevKv: true})
	want, wantErr := ref.events(&EventsRequest{FromRevision: from, PrevKv: true})
	if g, w := formatEvents(got, gotErr), formatEvents(want, wantErr); g != w {
		m.t.Fatalf("index %d: events from %d:\nengine %s\nref    %s", m.index, from, g, w)
	}
}

// TestEngineMatchesStore applies the same random puts, deletes, txns, lease
// commands and compactions to the engine and to the reference store
// (ref_test.go), and checks that every range at every readable revision, the
// leases, the records retained and the history agree after each command.
func TestEngineMatchesStore(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineMatchesStore)", seed)
	e := openTestEngine(t, t.TempDir(), nil)
	defer e.close()
	m := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 1)), e: e, ref: newRefStore()}
	for range 400 {
		m.step()
		m.checkReads(e)
	}
}

// TestEngineCrashKeepsFlushedState writes through the engine on a file system that
// loses what was not synced, crashes it after every command, and checks that the
// engine reopens at the applied index of its last flush with exactly the state
// the store had at that index: no entry half applied, none after the flush kept.
func TestEngineCrashKeepsFlushedState(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineCrashKeepsFlushedState)", seed)
	fs := vfs.NewCrashableMem()
	e := openTestEngine(t, "db", fs)
	defer e.close()
	m := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 2)), e: e}
	// flushRng decides when to flush, apart from m.rng, so that a replay of the
	// commands draws the same ones.
	flushRng := rand.New(rand.NewPCG(seed, 3))
	var lastFlushed uint64
	replay := func(upTo uint64, seedCopy uint64) *refStore {
		rm := &engineModel{t: t, rng: rand.New(rand.NewPCG(seedCopy, 2)), e: openTestEngine(t, "replay", vfs.NewMem()), ref: newRefStore()}
		defer rm.e.close()
		for rm.index < upTo {
			rm.step()
		}
		return rm.ref
	}
	m.ref = newRefStore()
	for i := range 120 {
		m.step()
		if flushRng.IntN(8) == 0 {
			idx, err := e.flush()
			if err != nil {
				t.Fatal(err)
			}
			if idx != m.index {
				t.Fatalf("flush says applied index %d, engine applied %d", idx, m.index)
			}
			lastFlushed = idx
		}
		if i%10 != 9 {
			continue
		}
		crashed := openTestEngine(t, "db", fs.CrashClone(vfs.CrashCloneCfg{}))
		if crashed.appliedIndex != lastFlushed {
			t.Fatalf("after a crash at index %d the engine holds applied index %d, want the flushed %d", m.index, crashed.appliedIndex, lastFlushed)
		}
		// The state at the flushed index, rebuilt by replaying the same commands.
		want := replay(lastFlushed, seed)
		check := &engineModel{t: t, ref: want, index: lastFlushed}
		check.checkReads(crashed)
		if err := crashed.close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEngineConfigRejectsBadSizes(t *testing.T) {
	for _, cfg := range []engineConfig{{CacheBytes: 1000}, {MemTableBytes: -1}, {MemTableBytes: 2 << 30}} {
		_, err := openEngine(t.TempDir(), cfg)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "give between") {
			t.Errorf("open with %+v: %v, want ErrInvalidConfig saying the range", cfg, err)
		}
	}
}

// TestEngineRefusesForeignFormat checks that a database whose layout format this
// build does not know is refused at open with the directory and the reason.
func TestEngineRefusesForeignFormat(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir, nil)
	b := e.db.NewBatch()
	_ = b.Set(metaFormat, []byte{9}, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if _, err := e.flush(); err != nil {
		t.Fatal(err)
	}
	e.close()
	_, err := openEngine(dir, engineConfig{})
	if !errors.Is(err, ErrCorruptEngine) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("open of a format-9 engine: %v, want ErrCorruptEngine naming %s", err, dir)
	}
}

// TestEngineReadsFormat1 opens an engine of layout format 1, whose values are
// all inline, as the last release wrote it: the new build reads its values,
// marks it format 2 before it writes (so that the old build refuses it
// thereafter), separates the values it writes from then on, and compacts both
// kinds. A snapshot stream of format 1 restores too.
func TestEngineReadsFormat1(t *testing.T) {
	dir := t.TempDir()
	old, err := openEngine(dir, engineConfig{SeparateValueBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 300)
	mustEngineApply(t, old, 1, &Command{Put: &PutRequest{Key: []byte("a"), Value: big}})
	mustEngineApply(t, old, 2, &Command{Put: &PutRequest{Key: []byte("b"), Value: []byte("small")}})
	if err := old.db.Set(metaFormat, binary.AppendUvarint(nil, 1), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if got := countRecordsIn(t, old.db, &pebble.IterOptions{LowerBound: []byte{engineValuePrefix}, UpperBound: []byte{engineValuePrefix + 1}}); got != 0 {
		t.Fatalf("an engine that separates nothing holds %d value records", got)
	}
	var stream bytes.Buffer
	snap := old.snapshot()
	if _, err := snap.writeTo(&stream); err != nil {
		t.Fatal(err)
	}
	_ = snap.close()
	// The stream's header says format 2 (this build's); make it format 1's.
	raw := stream.Bytes()
	raw[len(engineSnapshotMagic)] = 1
	if _, err := old.flush(); err != nil {
		t.Fatal(err)
	}
	old.close()

	e := openTestEngine(t, dir, nil) // separates values of 4 bytes or more
	defer e.close()
	format, err := e.getMeta(metaFormat)
	if err != nil || !bytes.Equal(format, binary.AppendUvarint(nil, engineFormat)) {
		t.Fatalf("format after open: %x, %v; want %d", format, err, engineFormat)
	}
	if kv, ok, err := e.get([]byte("a"), e.rev, true); err != nil || !ok || !bytes.Equal(kv.Value, big) {
		t.Fatalf("a from format 1: %q, %v, %v", kv.Value, ok, err)
	}
	mustEngineApply(t, e, 3, &Command{Put: &PutRequest{Key: []byte("a"), Value: []byte("newer")}})
	if got := countRecordsIn(t, e.db, &pebble.IterOptions{LowerBound: []byte{engineValuePrefix}, UpperBound: []byte{engineValuePrefix + 1}}); got != 1 {
		t.Fatalf("%d value records after a put of 5 bytes, want 1", got)
	}
	if kv, ok, err := e.get([]byte("a"), e.rev, true); err != nil || !ok || string(kv.Value) != "newer" || kv.Version != 2 {
		t.Fatalf("a after a separated put: %+v, %v, %v", kv, ok, err)
	}
	if err := e.compact(e.rev, 4); err != nil {
		t.Fatal(err)
	}
	checkLiveBytes(t, e)
	checkValueRecords(t, e)
	if got := countVersionRecords(t, e); got != 2 {
		t.Fatalf("%d version records after compacting, want 2", got)
	}

	dst, err := openEngineForRestore(t.TempDir(), engineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.close()
	if err := dst.restore(bytes.NewReader(raw), true, nil); err != nil {
		t.Fatalf("restore of a format 1 stream: %v", err)
	}
	if kv, ok, err := dst.get([]byte("a"), dst.rev, true); err != nil || !ok || !bytes.Equal(kv.Value, big) {
		t.Fatalf("a restored from format 1: %q, %v, %v", kv.Value, ok, err)
	}
}

// TestEngineSnapshotRestores streams a snapshot of an engine, taken while writes
// go on, into another engine, and checks that the copy reads exactly as the store
// did at the snapshot's applied index, that chunks bound the stream's pieces, and
// that a damaged or cut stream is refused and leaves an engine that will not open.
func TestEngineSnapshotRestores(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineSnapshotRestores)", seed)
	src := openTestEngine(t, t.TempDir(), nil)
	defer src.close()
	m := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 4)), e: src, ref: newRefStore()}
	for range 300 {
		m.step()
	}
	// A large value, so the stream has several chunks.
	big := bytes.Repeat([]byte("v"), engineSnapshotChunkBytes+10)
	m.index++
	m.ref.apply(m.index, &Command{Put: &PutRequest{Key: []byte("big"), Value: big}})
	w := src.beginWrite()
	if _, err := w.put([]byte("big"), big, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.commit(m.index); err != nil {
		t.Fatal(err)
	}
	view := src.snapshot()
	atSnapshot := m.index
	for range 50 { // writes after the snapshot are not in it
		m.step()
	}
	var stream bytes.Buffer
	n, err := view.writeTo(&stream)
	view.close()
	if err != nil || n != int64(stream.Len()) {
		t.Fatalf("writeTo: %d bytes, err %v; buffer holds %d", n, err, stream.Len())
	}
	dir := t.TempDir()
	dst := openTestEngine(t, dir, nil)
	if err := dst.restore(bytes.NewReader(stream.Bytes()), true, nil); err != nil {
		t.Fatal(err)
	}
	if dst.appliedIndex != atSnapshot {
		t.Fatalf("restored engine at applied index %d, snapshot taken at %d", dst.appliedIndex, atSnapshot)
	}
	want := newRefStore()
	replay := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 4)), e: openTestEngine(t, t.TempDir(), nil), ref: want}
	for range 300 {
		replay.step()
	}
	replay.index++
	want.apply(replay.index, &Command{Put: &PutRequest{Key: []byte("big"), Value: big}})
	replay.e.close()
	(&engineModel{t: t, ref: want, index: atSnapshot}).checkReads(dst)

	// Damage one byte in the middle: the chunk's CRC catches it.
	bad := bytes.Clone(stream.Bytes())
	bad[len(bad)/2] ^= 0x40
	if err := dst.restore(bytes.NewReader(bad), true, nil); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("restore of a damaged stream: %v, want ErrCorruptSnapshot", err)
	}
	// Had part of the restore reached the disk (a memtable flushed), the marker went
	// with it, as it was committed first.
	if _, err := dst.flush(); err != nil {
		t.Fatal(err)
	}
	dst.close()
	if _, err := openEngine(dir, engineConfig{}); !errors.Is(err, ErrCorruptEngine) || !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("open after a failed restore: %v, want ErrCorruptEngine saying the restore was cut off", err)
	}
	// A cut stream fails the same way; a whole one then restores the engine.
	again := openTestEngineAllowingRestore(t, dir)
	defer again.close()
	if err := again.restore(bytes.NewReader(stream.Bytes()[:stream.Len()-3]), true, nil); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("restore of a cut stream: %v, want ErrCorruptSnapshot", err)
	}
	if err := again.restore(bytes.NewReader(stream.Bytes()), true, nil); err != nil {
		t.Fatal(err)
	}
	(&engineModel{t: t, ref: want, index: atSnapshot}).checkReads(again)
}

// openTestEngineAllowingRestore opens an engine whose restore was cut off, as a
// member would to restore into it again.
func openTestEngineAllowingRestore(t *testing.T, dir string) *engine {
	t.Helper()
	e, err := openEngineForRestore(dir, engineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// randomRange draws a range request over the model's keys with any of etcd's
// options, at a revision that may be compacted, current or in the future.
func (m *engineModel) randomRange() *RangeRequest {
	r := &RangeRequest{Key: m.key()}
	switch m.rng.IntN(4) {
	case 0: // one key
	case 1:
		r.RangeEnd = []byte{0}
	default:
		r.RangeEnd = m.key()
	}
	if m.rng.IntN(3) == 0 {
		r.Key = []byte{0}
	}
	if m.rng.IntN(3) == 0 {
		r.Limit = m.rng.Int64N(4)
	}
	cur, _ := m.revisions()
	if m.rng.IntN(2) == 0 {
		r.Revision = m.rng.Int64N(cur + 2)
	}
	r.SortOrder = SortOrder(m.rng.IntN(3))
	r.SortTarget = SortTarget(m.rng.IntN(5))
	r.KeysOnly = m.rng.IntN(5) == 0
	r.CountOnly = m.rng.IntN(8) == 0
	if m.rng.IntN(4) == 0 {
		r.MinModRevision = m.rng.Int64N(cur + 1)
	}
	if m.rng.IntN(4) == 0 {
		r.MaxCreateRevision = m.rng.Int64N(cur + 1)
	}
	return r
}

// TestEngineRangeMatchesStore checks the engine's range reads, with every option
// etcd's Range has and a response byte budget, against the reference's, as
// random commands change both.
func TestEngineRangeMatchesStore(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineRangeMatchesStore)", seed)
	e := openTestEngine(t, t.TempDir(), nil)
	defer e.close()
	m := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 5)), e: e, ref: newRefStore()}
	compared, tooLarge := 0, 0
	for range 300 {
		m.step()
		for range 10 {
			r := m.randomRange()
			var budget int64
			if m.rng.IntN(3) == 0 {
				budget = 1 + m.rng.Int64N(60)
			}
			var want *RangeResponse
			wantErr := checkRange(r)
			if wantErr == nil {
				want, wantErr = m.ref.rangeRequest(r, m.ref.rev, newBudget(budget))
			}
			got, gotErr := e.rangeLimited(r, budget)
			if fmt.Sprint(got, gotErr) != fmt.Sprint(want, wantErr) {
				t.Fatalf("index %d: range %+v within %d bytes:\nengine %+v %v\nref    %+v %v", m.index, r, budget, got, gotErr, want, wantErr)
			}
			compared++
			if errors.Is(wantErr, ErrResponseTooLarge) {
				tooLarge++
			}
		}
	}
	if tooLarge == 0 {
		t.Fatalf("none of %d ranges passed its byte budget: the test does not reach that path", compared)
	}
}

// TestEngineEventsMatchStore checks the engine's history reads, with key filters,
// previous values and both limits, against the reference's, as random commands
// change both.
func TestEngineEventsMatchStore(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineEventsMatchStore)", seed)
	e := openTestEngine(t, t.TempDir(), nil)
	defer e.close()
	ref := newRefStore()
	m := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 6)), e: e, ref: ref}
	cut := 0
	for range 300 {
		m.step()
		for range 5 {
			r := &EventsRequest{
				FromRevision: ref.compactRev - 1 + m.rng.Int64N(ref.rev-ref.compactRev+3),
				PrevKv:       m.rng.IntN(2) == 0,
			}
			if m.rng.IntN(3) == 0 {
				r.ToRevision = m.rng.Int64N(ref.rev + 2)
			}
			if m.rng.IntN(3) == 0 {
				r.MaxEvents = 1 + m.rng.IntN(3)
			}
			if m.rng.IntN(4) == 0 {
				r.MaxBytes = 1 + m.rng.IntN(40)
			}
			if m.rng.IntN(3) == 0 {
				prefix := m.key()[:2]
				r.Contains = func(key []byte) bool { return bytes.HasPrefix(key, prefix) }
			}
			want, wantErr := ref.events(r)
			got, gotErr := e.events(r)
			if g, w := formatEvents(got, gotErr), formatEvents(want, wantErr); g != w {
				t.Fatalf("index %d: events %+v:\nengine %s\nref    %s", m.index, r, g, w)
			}
			to := r.ToRevision
			if to <= 0 || to > ref.rev {
				to = ref.rev
			}
			if wantErr == nil && want.NextRevision <= to {
				cut++
			}
		}
	}
	if cut == 0 {
		t.Fatal("no read was cut short by its limits: the test does not reach that path")
	}
}

// formatEvents prints an Events answer with the previous values, not their
// addresses.
func formatEvents(resp *EventsResponse, err error) string {
	if resp == nil {
		return fmt.Sprint(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "next %d rev %d compact %d err %v:", resp.NextRevision, resp.Revision, resp.CompactRevision, err)
	for _, ev := range resp.Events {
		fmt.Fprintf(&b, " %d%+v", ev.Type, ev.Kv)
		if ev.PrevKv != nil {
			fmt.Fprintf(&b, " prev%+v", *ev.PrevKv)
		}
	}
	return b.String()
}

func formatTxn(b *strings.Builder, t *TxnResponse) {
	fmt.Fprintf(b, "{rev %d ok %v", t.Header.Revision, t.Succeeded)
	for _, op := range t.Responses {
		switch {
		case op.Range != nil:
			fmt.Fprintf(b, " range %+v", *op.Range)
		case op.Put != nil:
			fmt.Fprintf(b, " put %d", op.Put.Header.Revision)
			if op.Put.PrevKv != nil {
				fmt.Fprintf(b, " prev %+v", *op.Put.PrevKv)
			}
		case op.DeleteRange != nil:
			fmt.Fprintf(b, " delete %+v", *op.DeleteRange)
		case op.Txn != nil:
			b.WriteString(" txn ")
			formatTxn(b, op.Txn)
		}
	}
	b.WriteString("}")
}

// TestEngineTxnMatchesStore runs a mix heavy in txns (compares of every target,
// nested txns, ranges that see the txn's own writes) through the engine and the
// reference, comparing every result and then the state.
func TestEngineTxnMatchesStore(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineTxnMatchesStore)", seed)
	e := openTestEngine(t, t.TempDir(), nil)
	defer e.close()
	m := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 7)), e: e, ref: newRefStore()}
	succeeded, failed := 0, 0
	for i := range 1500 {
		if i%2 == 0 {
			m.step()
			continue
		}
		m.index++
		cmd := &Command{Txn: m.randomTxn(2)}
		res := m.ref.apply(m.index, cmd)
		got := m.applyToEngine(cmd)
		if g, w := formatResult(got), formatResult(res); g != w {
			t.Fatalf("index %d: %s:\nengine %s\nref    %s", m.index, formatCommand(cmd), g, w)
		}
		if res.Txn != nil && len(cmd.Txn.Compare) > 0 {
			if res.Txn.Succeeded {
				succeeded++
			} else {
				failed++
			}
		}
	}
	m.checkReads(e)
	if succeeded < 20 || failed < 20 {
		t.Fatalf("txns with compares: %d succeeded, %d failed; the test needs both", succeeded, failed)
	}
}

// TestEngineSessionsSurviveReopen applies commands from a few clients, with
// retries, stale sequence numbers and more clients than the table holds, to the
// store and to the engine with its session records, and checks every result, then
// that the engine reopened rebuilds the store's table: the same clients, their
// last sequence numbers and results, in the same eviction order.
func TestEngineSessionsSurviveReopen(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineSessionsSurviveReopen)", seed)
	const maxSessions = 3
	s, err := NewStore(Config{MaxSessions: maxSessions})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	e := openTestEngine(t, dir, nil)
	m := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 8)), e: e, s: s}
	sessions := newSessionTable(maxSessions)
	seqs := map[uint64]uint64{}
	retries, stale := 0, 0
	for range 400 {
		m.index++
		cmd := m.randomCommand()
		cmd.ClientID = 1 + m.rng.Uint64N(5)
		switch seq := seqs[cmd.ClientID]; {
		case seq > 0 && m.rng.IntN(4) == 0:
			cmd.Seq = seq
			retries++
		case seq > 1 && m.rng.IntN(10) == 0:
			cmd.Seq = seq - 1
			stale++
		default:
			cmd.Seq = seq + 1
			seqs[cmd.ClientID] = cmd.Seq
		}
		res := s.ApplyCommand(m.index, cmd)
		w := e.beginWrite()
		got := w.applySession(&sessions, cmd, m.index, func() Result { return w.execute(cmd) })
		if err := w.commit(m.index); err != nil {
			t.Fatal(err)
		}
		if g, w := formatResult(got), formatResult(res); g != w {
			t.Fatalf("index %d: client %d seq %d %s:\nengine %s\nstore  %s", m.index, cmd.ClientID, cmd.Seq, formatCommand(cmd), g, w)
		}
	}
	if retries == 0 || stale == 0 {
		t.Fatalf("%d retries and %d stale commands: the test needs both", retries, stale)
	}
	if _, err := e.flush(); err != nil {
		t.Fatal(err)
	}
	e.close()
	e = openTestEngine(t, dir, nil)
	defer e.close()
	loaded, err := e.loadSessions(maxSessions)
	if err != nil {
		t.Fatal(err)
	}
	list := func(t *sessionTable) []string {
		var out []string
		t.oldestFirst(func(s *session) {
			out = append(out, fmt.Sprintf("client %d seq %d %s", s.clientID, s.seq, formatResult(s.result)))
		})
		return out
	}
	if got, want := list(&loaded), list(&s.mu.st.sessions); !slices.Equal(got, want) {
		t.Fatalf("sessions after reopen:\nengine %q\nstore  %q", got, want)
	}
}

// TestEngineAuthSurvivesReopen records the auth state of a store with users,
// roles, permissions and auth enabled, reopens the engine, and checks that the
// state read back encodes to the same bytes, and that an engine with no record
// reads the state of a new cluster.
func TestEngineAuthSurvivesReopen(t *testing.T) {
	s := newTestStore(t, Config{})
	setupAuth(t, s)
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: UserAdd, Name: "svc", NoPassword: true})
	dir := t.TempDir()
	e := openTestEngine(t, dir, nil)
	fresh, err := e.loadAuth()
	if err != nil || fresh.enabled || len(fresh.users) != 0 || fresh.revision != 1 {
		t.Fatalf("auth of an engine without a record: %+v, %v; want disabled, no users, revision 1", fresh, err)
	}
	w := e.beginWrite()
	w.writeAuth(&s.mu.st.auth)
	if err := w.commit(1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.flush(); err != nil {
		t.Fatal(err)
	}
	e.close()
	e = openTestEngine(t, dir, nil)
	defer e.close()
	got, err := e.loadAuth()
	if err != nil {
		t.Fatal(err)
	}
	var want, have encoder
	s.mu.st.auth.encode(&want)
	got.encode(&have)
	if !bytes.Equal(want.buf, have.buf) || !got.enabled {
		t.Fatalf("auth after reopen encodes to %x (enabled %v), the store's to %x", have.buf, got.enabled, want.buf)
	}
}

// TestEngineProposalsSurviveReopen applies proposals from more proposers than
// the table keeps, with copies, expired ones and rising floors, to the store
// (ApplyOnce) and to the engine with its proposal records, checks every result,
// and then that the engine reopened rebuilds the store's table: the proposers in
// eviction order, their floors, and the results they keep.
func TestEngineProposalsSurviveReopen(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: set seed in TestEngineProposalsSurviveReopen)", seed)
	cfg := Config{MaxProposers: 3, MaxProposalResults: 4}
	s, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	e := openTestEngine(t, dir, nil)
	m := &engineModel{t: t, rng: rand.New(rand.NewPCG(seed, 9)), e: e, s: s}
	table := newProposalTable(cfg.MaxProposers, cfg.MaxProposalResults)
	next := map[uint64]uint64{} // each proposer's next new seq
	lowest := map[uint64]uint64{}
	var copies, expired int
	for range 500 {
		m.index++
		cmd := m.randomCommand()
		data, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		id := ProposalID{Proposer: 1 + m.rng.Uint64N(4)}
		switch n := next[id.Proposer]; {
		case n > 1 && m.rng.IntN(3) == 0: // a copy of an earlier proposal, maybe expired
			id.Seq = 1 + m.rng.Uint64N(n-1)
		default:
			id.Seq = max(n, 1)
			next[id.Proposer] = id.Seq + 1
		}
		if m.rng.IntN(4) == 0 {
			lowest[id.Proposer] = min(lowest[id.Proposer]+1+m.rng.Uint64N(2), next[id.Proposer])
		}
		id.LowestPending = lowest[id.Proposer]
		res := s.ApplyOnce(m.index, id, data)
		w := e.beginWrite()
		got := w.applyOnce(&table, id, m.index, func() Result { return w.execute(cmd) })
		if err := w.commit(m.index); err != nil {
			t.Fatal(err)
		}
		if g, w := formatResult(got), formatResult(res); g != w {
			t.Fatalf("index %d: proposal %+v %s:\nengine %s\nstore  %s", m.index, id, formatCommand(cmd), g, w)
		}
		switch {
		case errors.Is(res.Err, ErrProposalExpired):
			expired++
		case id.Seq < next[id.Proposer]-1:
			copies++
		}
	}
	if copies == 0 || expired == 0 {
		t.Fatalf("%d copies and %d expired proposals: the test needs both", copies, expired)
	}
	if _, err := e.flush(); err != nil {
		t.Fatal(err)
	}
	e.close()
	e = openTestEngine(t, dir, nil)
	defer e.close()
	loaded, err := e.loadProposals(cfg.MaxProposers, cfg.MaxProposalResults)
	if err != nil {
		t.Fatal(err)
	}
	list := func(t *proposalTable) []string {
		var out []string
		t.oldestFirst(func(p *proposer) {
			s := fmt.Sprintf("proposer %d floor %d:", p.id, p.lowest)
			for _, r := range p.results {
				s += fmt.Sprintf(" %d=%s", r.seq, formatResult(r.result))
			}
			out = append(out, s)
		})
		return out
	}
	if got, want := list(&loaded), list(&s.mu.st.proposals); !slices.Equal(got, want) {
		t.Fatalf("proposals after reopen:\nengine %q\nstore  %q", got, want)
	}
}

// countVersionRecords counts the version records in e.
func countVersionRecords(t testing.TB, e *engine) int {
	return countRecordsIn(t, e.db, &pebble.IterOptions{LowerBound: []byte{engineVersionPrefix}, UpperBound: []byte{engineVersionPrefix + 1}})
}

// checkValueRecords fails unless the engine's value records are exactly those
// its version records refer to, each of the length its version says: a value
// compaction left behind, or one a version lost, fails it.
func checkValueRecords(t testing.TB, e *engine) {
	t.Helper()
	referred := map[string]int{}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{engineVersionPrefix}, UpperBound: []byte{engineVersionPrefix + 1}})
	if err != nil {
		t.Fatal(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		rec, err := decodeVersionRecord(it.Value())
		if err != nil {
			t.Fatal(err)
		}
		if rec.separated {
			_, rev, sub := splitVersionKey(it.Key())
			referred[string(valueKey(nil, rev, sub))] = rec.separatedLen
		}
	}
	it.Close()
	it, err = e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{engineValuePrefix}, UpperBound: []byte{engineValuePrefix + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	held := 0
	for valid := it.First(); valid; valid = it.Next() {
		n, ok := referred[string(it.Key())]
		if !ok || n != len(it.Value()) {
			t.Fatalf("value record %x of %d bytes: referred to %v, with length %d", it.Key(), len(it.Value()), ok, n)
		}
		held++
	}
	if held != len(referred) {
		t.Fatalf("%d value records, %d referred to", held, len(referred))
	}
}

// mustEngineApply applies cmd to e as entry index, failing the test on any error.
func mustEngineApply(t testing.TB, e *engine, index uint64, cmd *Command) {
	t.Helper()
	w := e.beginWrite()
	if res := w.execute(cmd); res.Err != nil {
		w.abort()
		t.Fatalf("entry %d: %v", index, res.Err)
	}
	if err := w.commit(index); err != nil {
		t.Fatal(err)
	}
}

// TestRangeReadsOnlyTheValuesItReturns: a page of a range finds the key after
// its Limit, to tell More, but reads no value of it: a separated value beyond the
// page is neither read (outside the response's budget) nor a failure if it is
// unreadable.
func TestRangeReadsOnlyTheValuesItReturns(t *testing.T) {
	e := openTestEngine(t, t.TempDir(), nil) // separates values of 4 bytes or more
	defer e.close()
	for i, k := range []string{"a", "b", "c"} {
		mustEngineApply(t, e, uint64(i+1), &Command{Put: &PutRequest{Key: []byte(k), Value: []byte("0123456789")}})
	}
	// b was put at revision 3, as the first change of its revision.
	if err := e.db.Delete(valueKey(nil, 3, 0), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	resp, err := engineRangeAt(e.db, &RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1}, e.rev, e.compactRev, newBudget(0))
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "0123456789" || !resp.More || resp.Count != 3 {
		t.Fatalf("a page of one key before an unreadable value: %+v, %v", resp, err)
	}
	if _, err := engineRangeAt(e.db, &RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 2}, e.rev, e.compactRev, newBudget(0)); !errors.Is(err, ErrCorruptEngine) {
		t.Fatalf("a page that returns the unreadable value: %v, want ErrCorruptEngine", err)
	}
}

// A range that does not return keys in its walk's order reads their values after
// the walk, with one iterator per kind: each value must still be there and be the
// length its version record gave, else the engine is corrupt.
func TestRangeOutOfKeyOrderChecksTheValuesItReads(t *testing.T) {
	e := openTestEngine(t, t.TempDir(), nil) // separates values of 4 bytes or more
	defer e.close()
	for i, c := range []struct{ k, v string }{{"a", "abc"}, {"b", "0123456789"}, {"c", "xy"}, {"d", "9876543210"}} {
		mustEngineApply(t, e, uint64(i+1), &Command{Put: &PutRequest{Key: []byte(c.k), Value: []byte(c.v)}})
	}
	descend := &RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), SortOrder: SortDescend}
	resp, err := engineRangeAt(e.db, descend, e.rev, e.compactRev, newBudget(0))
	if err != nil || len(resp.Kvs) != 4 {
		t.Fatalf("descending range: %+v, %v", resp, err)
	}
	for i, want := range []string{"9876543210", "xy", "0123456789", "abc"} {
		if string(resp.Kvs[i].Value) != want {
			t.Fatalf("descending range: value %d is %q, want %q", i, resp.Kvs[i].Value, want)
		}
	}
	// An inline value whose version record no longer says what the walk read.
	for _, bad := range []rangeEntry{
		{kv: KeyValue{Key: []byte("a"), ModRevision: 2}, valueLen: 4},         // another length
		{kv: KeyValue{Key: []byte("a"), ModRevision: 2}, valueLen: 3, sub: 1}, // no such change
		{kv: KeyValue{Key: []byte("a"), ModRevision: 3}, valueLen: 3},         // b's revision
	} {
		if err := readInlineValues(e.db, []rangeEntry{bad}); !errors.Is(err, ErrCorruptEngine) {
			t.Errorf("inline value of %+v: %v, want ErrCorruptEngine", bad, err)
		}
	}
	// A separated value gone: d was put at revision 5.
	if err := e.db.Delete(valueKey(nil, 5, 0), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if _, err := engineRangeAt(e.db, descend, e.rev, e.compactRev, newBudget(0)); !errors.Is(err, ErrCorruptEngine) {
		t.Fatalf("descending range over a missing value: %v, want ErrCorruptEngine", err)
	}
}
