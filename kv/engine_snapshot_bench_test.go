package kv

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var restoreBenchMiB = flag.Int("kv.restore-mib", 64, "BenchmarkEngineSnapshotRestore: MiB of 1 KiB values in the store")

// BenchmarkEngineSnapshotRestore measures the two ends of a catch-up by snapshot on
// a store of -kv.restore-mib MiB of 1 KiB random values (the bench's big data set):
// the sender's WriteSnapshot into a file, and the receiver's RestoreFrom of that
// file into an empty store, as a new member does. MB/s is of snapshot bytes; the
// write and restore seconds are reported apart.
func BenchmarkEngineSnapshotRestore(b *testing.B) {
	src := newTestStore(b, Config{})
	keys := *restoreBenchMiB << 10
	value := make([]byte, 1<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		apply(b, src, &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "big/%08d", i), Value: value}})
	}
	path := filepath.Join(b.TempDir(), "body")
	b.ResetTimer()
	var writeSecs, restoreSecs float64
	for range b.N {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		w := bufio.NewWriterSize(f, 1<<20)
		n, err := src.WriteSnapshot(w)
		if err == nil {
			err = w.Flush()
		}
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		writeSecs += time.Since(began).Seconds()
		b.SetBytes(n)

		b.StopTimer()
		dst := newTestStore(b, Config{})
		f, err = os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		began = time.Now()
		err = dst.RestoreFrom(f, nil)
		restoreSecs += time.Since(began).Seconds()
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if dst.AppliedIndex() != src.AppliedIndex() {
			b.Fatalf("restored at %d, want %d", dst.AppliedIndex(), src.AppliedIndex())
		}
		b.StopTimer()
		dst.Close()
		b.StartTimer()
	}
	b.ReportMetric(writeSecs/float64(b.N), "write-s")
	b.ReportMetric(restoreSecs/float64(b.N), "restore-s")
}
