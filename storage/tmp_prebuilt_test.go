package storage

import (
	"os"
	"testing"
)

func BenchmarkTmpOpenPrebuilt(b *testing.B) {
	dir := "/work/tmp-recovery/data"
	opts := Options{ClusterID: testClusterID}
	if _, err := os.Stat(dir); err != nil {
		buildBenchWAL(b, dir, opts, 1<<30)
	}
	for b.Loop() {
		s, err := Open(NewOSFS(), dir, opts)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
