package kv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// A store reopened from its directory holds what its last Flush made durable:
// the keys, the applied index and term, and the server records; what was applied
// after the flush is gone (the raft log holds it), whole entries only.
func TestOpenStoreReopensAtFlushedIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(Config{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta("identity", []byte("cluster 7")); err != nil {
		t.Fatal(err)
	}
	s.SetTerm(3)
	mustPut(t, s, "a", "1")
	if err := s.ApplyMeta(s.AppliedIndex()+1, "members", []byte("m1")); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyMeta(s.AppliedIndex(), "members", []byte("m2")); !errors.Is(err, ErrAlreadyApplied) {
		t.Fatalf("ApplyMeta at the applied index: %v, want ErrAlreadyApplied", err)
	}
	s.SetTerm(4)
	mustPut(t, s, "b", "2")
	flushed, err := s.Flush()
	if err != nil {
		t.Fatal(err)
	}
	if flushed != s.AppliedIndex() || s.AppliedTerm() != 4 {
		t.Fatalf("Flush says %d, applied %d term %d; want the applied index, term 4", flushed, s.AppliedIndex(), s.AppliedTerm())
	}
	wantRev := s.Revision()
	mustPut(t, s, "c", "lost") // not flushed: a crash loses it
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenStore(Config{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.AppliedIndex() != flushed || r.AppliedTerm() != 4 || r.Revision() != wantRev {
		t.Fatalf("reopened at index %d term %d revision %d; want %d, 4, %d", r.AppliedIndex(), r.AppliedTerm(), r.Revision(), flushed, wantRev)
	}
	for name, want := range map[string]string{"identity": "cluster 7", "members": "m1", "absent": ""} {
		got, err := r.Meta(name)
		if err != nil || string(got) != want || (want == "" && got != nil) {
			t.Fatalf("record %q after reopen: %q, %v; want %q", name, got, err, want)
		}
	}
	wantKV(t, "a after reopen", get(t, r, "a", 0), "a", "1", 2, 2, 1)
	if get(t, r, "c", 0) != nil {
		t.Fatal("a put applied after the last flush survived the close")
	}
	// The log replays from the flushed index on.
	if res := r.Apply(flushed, nil); !errors.Is(res.Err, ErrAlreadyApplied) {
		t.Fatalf("Apply at the flushed index: %v", res.Err)
	}
	mustPut(t, r, "c", "again")
}

// A store whose engine files are damaged, or whose restore was cut off, is
// refused at open with the directory and the reason.
func TestOpenStoreRefusesBrokenEngines(t *testing.T) {
	t.Run("cut off restore", func(t *testing.T) {
		src := snapshotFixture(t)
		snap, err := src.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		s, err := OpenStore(Config{}, dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RestoreFrom(bytes.NewReader(snap[:len(snap)/2]), nil); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("restore of half a stream: %v", err)
		}
		s.mu.st.e.db.Flush() // what a background flush may do before a crash
		s.Close()
		if _, err := OpenStore(Config{}, dir); !errors.Is(err, ErrCorruptEngine) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "restore") {
			t.Fatalf("open after a cut restore: %v, want ErrCorruptEngine naming %s and the restore", err, dir)
		}
	})
	t.Run("damaged manifest", func(t *testing.T) {
		dir := t.TempDir()
		s, err := OpenStore(Config{}, dir)
		if err != nil {
			t.Fatal(err)
		}
		mustPut(t, s, "a", "1")
		if _, err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
		if len(manifests) == 0 {
			t.Fatal("no manifest in the engine's directory")
		}
		for _, m := range manifests {
			if err := os.WriteFile(m, bytes.Repeat([]byte{0xa5}, 300), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := OpenStore(Config{}, dir); err == nil || !strings.Contains(err.Error(), dir) {
			if err == nil {
				r.Close()
			}
			t.Fatalf("open with a damaged manifest: %v, want an error naming %s", err, dir)
		}
	})
}

func TestConfigRejectsBadEngineSizes(t *testing.T) {
	for _, cfg := range []Config{{CacheBytes: 1000}, {MemTableBytes: -1}, {MemTableBytes: 2 << 30}} {
		_, err := NewStore(cfg)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "give between") || !strings.Contains(err.Error(), "Bytes") {
			t.Errorf("store with %+v: %v, want ErrInvalidConfig naming the field and the range", cfg, err)
		}
	}
	if c, err := (Config{}).withDefaults(); err != nil || c.CacheBytes != defaultEngineCacheBytes || c.MemTableBytes != defaultEngineMemTableBytes {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
}

// A disk that fills stops the store with ErrEngineFailed wrapping ENOSPC, from
// Flush and from every Apply after it, without a panic.
func TestStoreStopsOnFullDisk(t *testing.T) {
	s, full := openFillingStore(t)
	defer s.Close()
	value := bytes.Repeat([]byte("v"), 1000)
	for i := range 100 {
		apply(t, s, &Command{Put: &PutRequest{Key: []byte{byte(i)}, Value: value}})
	}
	for range 2 { // RangeAs's second read is answered from the point-read caches
		if resp, err := s.RangeAs(AuthInfo{}, &RangeRequest{Key: []byte{5}}, 0); err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("Range of a key put: %v, %v", resp, err)
		}
	}
	full.Store(true)
	_, err := s.Flush()
	if !errors.Is(err, ErrEngineFailed) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush on a full disk: %v, want ErrEngineFailed and ENOSPC", err)
	}
	data, err := (&Command{Put: &PutRequest{Key: []byte("k"), Value: value}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	index := s.AppliedIndex()
	for range 3 {
		res := s.Apply(index+1, data)
		if !errors.Is(res.Err, ErrEngineFailed) || !errors.Is(res.Err, syscall.ENOSPC) {
			t.Fatalf("Apply after the disk filled: %v, want ErrEngineFailed and ENOSPC", res.Err)
		}
	}
	if s.AppliedIndex() != index {
		t.Fatalf("a failed store moved its applied index from %d to %d", index, s.AppliedIndex())
	}
	// The refused put is not in the store, and the member may count its entry
	// applied before it stops: a read must fail, not answer without it (chaos
	// seed 9127 saw a linearizable get answer a value overwritten before it began).
	if resp, err := s.Range(&RangeRequest{Key: []byte("k")}); !errors.Is(err, ErrEngineFailed) {
		t.Fatalf("Range after a refused Apply: %v, %v; want ErrEngineFailed", resp, err)
	}
	if resp, err := s.RangeAs(AuthInfo{}, &RangeRequest{Key: []byte{5}}, 0); !errors.Is(err, ErrEngineFailed) {
		t.Fatalf("RangeAs of a cached key after a refused Apply: %d keys, %v; want ErrEngineFailed, not the cache's answer",
			len(resp.Kvs), err)
	}
	if resp, err := s.Txn(&TxnRequest{Success: []RequestOp{{Range: &RangeRequest{Key: []byte("k")}}}}); !errors.Is(err, ErrEngineFailed) {
		t.Fatalf("read-only Txn after a refused Apply: %v, %v; want ErrEngineFailed", resp, err)
	}
}

// Without a Flush, a background flush that fails stops Apply too.
func TestStoreStopsWhenABackgroundFlushFails(t *testing.T) {
	s, full := openFillingStore(t)
	defer s.Close()
	full.Store(true)
	value := bytes.Repeat([]byte("v"), 4000)
	var err2 error
	// 300 puts of 4000 bytes fill the 1 MiB memtable: a flush starts, and fails;
	// then Apply fails, at once or once pebble has reported the failure.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; err2 == nil; i++ {
		if time.Now().After(deadline) {
			t.Fatal("Apply still succeeds 20 s after the disk filled")
		}
		var data []byte
		if i < 300 {
			var err error
			data, err = (&Command{Put: &PutRequest{Key: []byte{byte(i), byte(i >> 8)}, Value: value}}).Encode()
			if err != nil {
				t.Fatal(err)
			}
		}
		err2 = s.Apply(s.AppliedIndex()+1, data).Err
	}
	if !errors.Is(err2, ErrEngineFailed) || !errors.Is(err2, syscall.ENOSPC) {
		t.Fatalf("Apply on a full disk: %v, want ErrEngineFailed and ENOSPC", err2)
	}
}

// Reads run beside Apply and each sees one revision: a txn writes two keys
// together, and every range of both, at the revision in its header, finds them
// equal and no key changed after that revision.
func TestReadsSeeOneRevisionWhileApplying(t *testing.T) {
	s := newTestStoreOn(t, Config{}, "mem")
	mustTxn(t, s, &TxnRequest{Success: []RequestOp{putOp("a", "0"), putOp("b", "0")}})
	done := make(chan struct{})
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				resp, err := s.Range(&RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})
				if err != nil {
					errs <- err
					return
				}
				if len(resp.Kvs) != 2 || !bytes.Equal(resp.Kvs[0].Value, resp.Kvs[1].Value) ||
					resp.Kvs[0].ModRevision > resp.Header.Revision || resp.Kvs[0].ModRevision != resp.Kvs[1].ModRevision {
					errs <- fmt.Errorf("a range at revision %d read %v", resp.Header.Revision, describe(resp.Kvs))
					return
				}
			}
		}()
	}
	for i := range 2000 {
		v := fmt.Sprint(i)
		mustTxn(t, s, &TxnRequest{Success: []RequestOp{putOp("a", v), putOp("b", v)}})
		if i%500 == 0 {
			apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision() - 1}})
		}
	}
	close(done)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// openFillingStore opens a store with a 1 MiB memtable on a file system whose disk
// is full (every create and write fails with ENOSPC) once full is set.
func openFillingStore(t *testing.T) (*Store, *atomic.Bool) {
	t.Helper()
	full := new(atomic.Bool)
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && (op.Kind == errorfs.OpCreate || op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt) {
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		}
		return nil
	}))
	s, err := openStore(Config{MemTableBytes: 1 << 20}, "/full", fs)
	if err != nil {
		t.Fatal(err)
	}
	return s, full
}

// Flush holds the store's lock only to start the engine's flush: Apply goes on
// while the flush writes its table (a log compaction must not stall applying),
// and the index Flush returns is the one applied when it began, durable once it
// returns, not the later entry's.
func TestApplyGoesOnWhileFlushWrites(t *testing.T) {
	var armed atomic.Bool
	blocked, release := make(chan struct{}, 1), make(chan struct{})
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") && armed.CompareAndSwap(true, false) {
			blocked <- struct{}{}
			<-release
		}
		return nil
	}))
	s, err := openStore(Config{}, "/flushing", fs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustPut(t, s, "a", "1")
	flushedIndex := s.AppliedIndex()
	next, err := (&Command{Put: &PutRequest{Key: []byte("b"), Value: []byte("2")}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	type flushResult struct {
		index uint64
		err   error
	}
	flushed := make(chan flushResult, 1)
	armed.Store(true)
	go func() {
		index, err := s.Flush()
		flushed <- flushResult{index, err}
	}()
	<-blocked // the flush is creating its table, and waits for release
	applied := make(chan Result, 1)
	go func() { applied <- s.Apply(flushedIndex+1, next) }()
	select {
	case res := <-applied:
		if res.Err != nil {
			t.Errorf("Apply during a flush: %v", res.Err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		<-flushed
		<-applied
		t.Fatal("Apply waited for a flush that was blocked writing its table")
	}
	close(release)
	if r := <-flushed; r.err != nil || r.index != flushedIndex {
		t.Fatalf("Flush = %d, %v; want %d (the index applied when it began), nil", r.index, r.err, flushedIndex)
	}
	resp, err := s.Range(&RangeRequest{Key: []byte("b")})
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Fatalf("Range b after the flush: %+v, %v; want value 2", resp, err)
	}
}

// A read the engine fails (an I/O error, a corrupt block) fails the request with
// ErrEngineFailed and the cause rather than panicking, and stops the store as a
// failed write does: Failed is closed, Failure says why, and Apply refuses every
// entry from then on.
func TestFailedReadStopsTheStore(t *testing.T) {
	reads := map[string]func(s *Store) error{
		"range of one key": func(s *Store) error {
			_, err := s.Range(&RangeRequest{Key: []byte("k0001")})
			return err
		},
		"range of a prefix": func(s *Store) error {
			_, err := s.Range(&RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
			return err
		},
		"range by value": func(s *Store) error {
			_, err := s.Range(&RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), SortTarget: SortByValue})
			return err
		},
		"count": func(s *Store) error {
			_, err := s.Range(&RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true})
			return err
		},
		"read-only txn": func(s *Store) error {
			_, err := s.TxnAs(AuthInfo{}, &TxnRequest{
				Compare: []Compare{{Key: []byte("k0002"), Target: CompareValue, Result: CompareEqual, Value: []byte("v")}},
				Success: []RequestOp{rangeOp("k", "l")}}, 0)
			return err
		},
		"leases": func(s *Store) error {
			if leases := s.Leases(); leases != nil {
				return fmt.Errorf("Leases() = %v from a failing disk", leases)
			}
			return s.Failure()
		},
		"events": func(s *Store) error {
			_, err := s.Events(&EventsRequest{FromRevision: 1, PrevKv: true})
			return err
		},
		// What a backup and the hash write out: an error, never a short list.
		"snapshot view's leases": func(s *Store) error {
			v, err := s.SnapshotView()
			if err != nil {
				return err
			}
			defer v.Release()
			leases, err := v.Leases()
			if leases != nil {
				return fmt.Errorf("SnapshotView.Leases() = %d leases from a failing disk", len(leases))
			}
			return err
		},
		"snapshot view's keys": func(s *Store) error {
			v, err := s.SnapshotView()
			if err != nil {
				return err
			}
			defer v.Release()
			return v.EachKey(func(*KeyHistory) error { return nil })
		},
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			var failing atomic.Bool
			fs := tableReadsFailWhile(&failing)
			// Reopened, the store holds no block of the keys in memory: a read goes
			// to the files.
			s := reopenedCold(t, fs, "/damaged", func(s *Store) {
				for i := range 100 {
					mustPut(t, s, fmt.Sprintf("k%04d", i), strings.Repeat("v", 100))
				}
				if _, err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				// Leases in a table of their own, in more blocks than the one that
				// opening the store reads (the applied index, after them).
				for id := range int64(300) {
					if res := apply(t, s, &Command{LeaseGrant: &LeaseGrantRequest{ID: id + 1, TTL: 60}}); res.Err != nil {
						t.Fatal(res.Err)
					}
				}
			})
			defer s.Close()
			select {
			case <-s.Failed():
				t.Fatalf("the store failed before any read failed: %v", s.Failure())
			default:
			}
			failing.Store(true)
			err := read(s)
			if !errors.Is(err, ErrEngineFailed) || !errors.Is(err, errorfs.ErrInjected) || !strings.Contains(err.Error(), `"/damaged"`) {
				t.Fatalf("read from a failing disk: %v; want ErrEngineFailed wrapping the injected error, naming the engine's directory", err)
			}
			select {
			case <-s.Failed():
			default:
				t.Fatal("Failed is not closed after a read failed")
			}
			if err := s.Failure(); !errors.Is(err, ErrEngineFailed) || !errors.Is(err, errorfs.ErrInjected) {
				t.Fatalf("Failure() = %v; want ErrEngineFailed wrapping the injected error", err)
			}
			failing.Store(false)
			if res := apply(t, s, &Command{Put: &PutRequest{Key: []byte("after"), Value: []byte("x")}}); !errors.Is(res.Err, ErrEngineFailed) {
				t.Fatalf("Apply after a failed read: %v; want ErrEngineFailed", res.Err)
			}
		})
	}
}

// tableReadsFailWhile returns a file system in memory whose reads of table files
// fail (errorfs.ErrInjected) while failing is set.
func tableReadsFailWhile(failing *atomic.Bool) vfs.FS {
	return errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileRead || op.Kind == errorfs.OpFileReadAt) && strings.HasSuffix(op.Path, ".sst") {
			return errorfs.ErrInjected
		}
		return nil
	}))
}

// reopenedCold opens a store in dir on fs, lets fill write to it, flushes and
// closes it, and opens it again: nothing fill wrote is in memory, so reads of it
// go to the files.
func reopenedCold(t *testing.T, fs vfs.FS, dir string, fill func(*Store)) *Store {
	t.Helper()
	s, err := openStore(Config{}, dir, fs)
	if err != nil {
		t.Fatal(err)
	}
	fill(s)
	if _, err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = openStore(Config{}, dir, fs); err != nil {
		t.Fatal(err)
	}
	return s
}
