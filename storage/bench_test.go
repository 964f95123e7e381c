package storage

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"raftkv/raft"
)

// Benchmarks run on the real disk, with fsync on. The directory defaults to a temp
// dir; -bench.dir puts them on another disk.
//
//	go test -run XXX -bench . ./storage/
//	go test -run XXX -bench Recovery ./storage/ -recovery.mib=1024   # the 1 GiB case
//
// RAFTKV_RECOVERY_MIB=1024 in the environment does the same as -recovery.mib.
var (
	benchDir    = flag.String("bench.dir", "", "directory for the disk benchmarks (default: a temp dir)")
	recoveryMiB = flag.Int("recovery.mib", envInt("RAFTKV_RECOVERY_MIB", 64), "size in MiB of the WAL BenchmarkRecovery reopens")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchDirFor(b *testing.B) string {
	if *benchDir == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(*benchDir, "raftkv-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

const benchEntryBytes = 256

// BenchmarkAppend measures Save of batches of 256-byte entries (one fdatasync per
// batch) against the raw floor of the same disk, measured in the same run: the same
// bytes written with one plain pwrite and one fdatasync per batch to one preallocated
// file. The two alternate in rounds so that drift in the disk's speed hits both.
// wal/raw is the WAL's throughput as a fraction of the floor's.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchmarkAppend(b, batch) })
	}
}

func benchmarkAppend(b *testing.B, batch int) {
	dir := benchDirFor(b)
	counter := NewFaultFS(NewOSFS()) // counts fdatasyncs, fails nothing
	s, err := Open(counter, filepath.Join(dir, "data"), Options{ClusterID: testClusterID})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	payload := make([]byte, benchEntryBytes)
	for i := range payload {
		payload[i] = byte(i)
	}
	seed := clusterSeed(testClusterID)
	sample := make([]raft.Entry, batch)
	for i := range sample {
		sample[i] = raft.Entry{Term: 1, Index: 1<<20 + uint64(i), Data: payload}
	}
	rawBatch := appendBatchRecord(nil, seed, sample, nil, nil) // the bytes one Save writes
	raw, err := os.Create(filepath.Join(dir, "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	rawFile, err := newOSFile(raw)
	if err != nil {
		b.Fatal(err)
	}
	if err := rawFile.Preallocate(int64(b.N) * int64(len(rawBatch))); err != nil {
		b.Fatal(err)
	}
	if err := rawFile.Sync(); err != nil {
		b.Fatal(err)
	}

	// Rounds are short and alternate which side goes first, so that the disk's
	// moods (other tenants, write-back) fall on both alike.
	const round = 4
	next := uint64(1)
	pool := make([]raft.Entry, round*batch)
	var walTime, rawTime time.Duration
	var rawOff int64
	walRound := func(n int) {
		start := time.Now()
		for i := range n {
			if err := s.Save(raft.HardState{}, pool[i*batch:(i+1)*batch:(i+1)*batch]); err != nil {
				b.Fatal(err)
			}
		}
		walTime += time.Since(start)
	}
	rawRound := func(n int) {
		start := time.Now()
		for range n {
			if _, err := rawFile.WriteAt(rawBatch, rawOff); err != nil {
				b.Fatal(err)
			}
			rawOff += int64(len(rawBatch))
			if err := rawFile.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		rawTime += time.Since(start)
	}
	syncsBefore := counter.Calls(OpSync)
	b.ResetTimer()
	for done, r := 0, 0; done < b.N; r++ {
		n := min(round, b.N-done)
		b.StopTimer()
		pool = make([]raft.Entry, round*batch) // the storage keeps the saved ones
		for i := range pool[:n*batch] {
			pool[i] = raft.Entry{Term: 1, Index: next + uint64(i), Data: payload}
		}
		next += uint64(n * batch)
		if r%2 == 1 {
			rawRound(n)
		}
		b.StartTimer()
		walRound(n)
		b.StopTimer()
		if r%2 == 0 {
			rawRound(n)
		}
		if next%(1<<16) < uint64(n*batch) {
			// Bound the log in memory and on disk, outside the measurement.
			if err := s.Save(raft.HardState{Term: 1, Commit: next - 1}, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := s.CreateSnapshot(next-1, raft.Membership{}, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		done += n
	}
	b.StopTimer()
	syncs := counter.Calls(OpSync) - syncsBefore
	records := float64(b.N * batch)
	bytes := float64(b.N) * float64(len(rawBatch))
	walRate, rawRate := records/walTime.Seconds(), records/rawTime.Seconds()
	b.ReportMetric(walRate, "records/s")
	b.ReportMetric(bytes/walTime.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(b.N)/walTime.Seconds(), "fsyncs/s")
	b.ReportMetric(rawRate, "raw-records/s")
	b.ReportMetric(walRate/rawRate, "wal/raw")
	b.Logf("batch %d, %d batches: WAL %.0f records/s, raw floor %.0f records/s, ratio %.3f (%d fdatasyncs, %.0f bytes per batch)",
		batch, b.N, walRate, rawRate, walRate/rawRate, syncs, bytes/float64(b.N))
}

// BenchmarkRecovery measures Open of a WAL of -recovery.mib MiB (default 64) of
// 256-byte entries against reading the same files sequentially from the same disk.
// cache=warm leaves the files in the page cache for both; cache=cold drops them from
// it (posix_fadvise DONTNEED) before each measurement of either. open/read is the
// ratio of the two times; the goal is under 2.
func BenchmarkRecovery(b *testing.B) {
	dir := benchDirFor(b)
	dataDir := filepath.Join(dir, "data")
	opts := Options{ClusterID: testClusterID}
	walBytes := buildBenchWAL(b, dataDir, opts, int64(*recoveryMiB)<<20)
	files, _ := filepath.Glob(filepath.Join(dataDir, "wal", "*"+segmentExt))
	for _, cold := range []bool{false, true} {
		name := "cache=warm"
		if cold {
			name = "cache=cold"
		}
		b.Run(fmt.Sprintf("%s/MiB=%d", name, *recoveryMiB), func(b *testing.B) {
			var openTime, readTime time.Duration
			var read int64
			for b.Loop() {
				if cold {
					dropCache(b, files)
				}
				start := time.Now()
				s, err := Open(NewOSFS(), dataDir, opts)
				if err != nil {
					b.Fatal(err)
				}
				openTime += time.Since(start)
				if last, _ := s.LastIndex(); last == 0 {
					b.Fatal("recovered an empty log")
				}
				s.Close()

				b.StopTimer()
				if cold {
					dropCache(b, files)
				}
				start = time.Now()
				read = readSequentially(b, files)
				readTime += time.Since(start)
				b.StartTimer()
			}
			b.ReportMetric(float64(walBytes)/1e6/(openTime.Seconds()/float64(b.N)), "MB/s")
			b.ReportMetric(openTime.Seconds()/readTime.Seconds(), "open/read")
			b.Logf("%s: open %v, sequential read of the %d MB of segment files %v, ratio %.2f",
				name, openTime/time.Duration(b.N), read>>20, readTime/time.Duration(b.N), openTime.Seconds()/readTime.Seconds())
		})
	}
}

// buildBenchWAL writes a WAL holding about size bytes of records, and returns the
// number of record bytes.
func buildBenchWAL(b *testing.B, dir string, opts Options, size int64) int64 {
	b.Helper()
	s, err := Open(NewOSFS(), dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := make([]byte, benchEntryBytes)
	var written int64
	next := uint64(1)
	for written < size {
		ents := make([]raft.Entry, 1024)
		for i := range ents {
			ents[i] = raft.Entry{Term: 1, Index: next, Data: payload}
			next++
		}
		written += int64(len(appendBatchRecord(nil, 0, ents, nil, nil)))
		if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: next - 1}, ents); err != nil {
			b.Fatal(err)
		}
	}
	return written
}

func readSequentially(b *testing.B, files []string) int64 {
	buf := make([]byte, 1<<20)
	var total int64
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		for {
			n, err := f.Read(buf)
			total += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
	return total
}

// dropCache evicts files from the page cache (they are clean: every byte was synced).
func dropCache(b *testing.B, files []string) {
	const fadvDontNeed = 4
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
			b.Fatalf("fadvise %s: %v", name, errno)
		}
		f.Close()
	}
}

// BenchmarkRawNodeStart measures raft.NewRawNode on a Storage reopened on a log of
// -recovery.mib MiB (default 64) of 256-byte entries with no snapshot: the core reads
// the whole log once to find its configuration entries (raft.loadConf), on top of
// what Open already read. It reports the start beside the Open before it.
func BenchmarkRawNodeStart(b *testing.B) {
	dir := benchDirFor(b)
	dataDir := filepath.Join(dir, "data")
	opts := Options{ClusterID: testClusterID}
	walBytes := buildBenchWAL(b, dataDir, opts, int64(*recoveryMiB)<<20)
	var openTime, startTime time.Duration
	for b.Loop() {
		begin := time.Now()
		s, err := Open(NewOSFS(), dataDir, opts)
		if err != nil {
			b.Fatal(err)
		}
		openTime += time.Since(begin)
		begin = time.Now()
		if _, err := raft.NewRawNode(raft.Config{ID: 1, Peers: []uint64{1}, Storage: s}); err != nil {
			b.Fatal(err)
		}
		startTime += time.Since(begin)
		s.Close()
	}
	b.ReportMetric(float64(walBytes)/1e6/(startTime.Seconds()/float64(b.N)), "MB/s")
	b.ReportMetric(startTime.Seconds()/openTime.Seconds(), "start/open")
	b.Logf("%d MB of log: Open %v, NewRawNode %v", walBytes>>20, openTime/time.Duration(b.N), startTime/time.Duration(b.N))
}
