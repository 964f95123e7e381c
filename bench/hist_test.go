package main

import (
	"flag"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var histSeed = flag.Uint64("seed", 0, "seed for the randomized histogram test; 0 picks one from the clock")

func TestBucketsTileTheRange(t *testing.T) {
	// Every bucket starts where the previous one ended, and a value maps to the bucket
	// whose bounds hold it.
	_, prevHigh := bucketBounds(0)
	for i := 1; i < histBucketCount; i++ {
		low, high := bucketBounds(i)
		if low != prevHigh || high <= low {
			t.Fatalf("bucket %d is [%d, %d), previous ended at %d", i, low, high, prevHigh)
		}
		for _, v := range []int64{low, (low + high) / 2, high - 1} {
			if got := bucketIndex(v); got != i {
				t.Fatalf("bucketIndex(%d) = %d, want %d (bounds [%d, %d))", v, got, i, low, high)
			}
		}
		prevHigh = high
	}
	if got := bucketIndex(1 << 62); got != histBucketCount-1 {
		t.Fatalf("a huge value went to bucket %d, want the last (%d)", got, histBucketCount-1)
	}
	if got := bucketIndex(-5); got != 0 {
		t.Fatalf("a negative value went to bucket %d, want 0", got)
	}
}

func TestPercentileMatchesExactWithinPrecision(t *testing.T) {
	seed := *histSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test -run TestPercentileMatchesExactWithinPrecision -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	h := NewHistogram()
	var exact []int64
	for range 100_000 {
		// Log-normal-ish latencies from ~20µs to ~200ms, like a real run.
		v := int64(20_000 * (1 + rng.ExpFloat64()*rng.ExpFloat64()*50))
		h.Record(time.Duration(v))
		exact = append(exact, v)
	}
	slices.Sort(exact)
	for _, p := range []float64{1, 50, 90, 99, 99.9, 100} {
		rank := int(math.Ceil(p*float64(len(exact))/100 - 1e-9)) // nearest rank, 1-based
		want := float64(exact[max(rank, 1)-1])
		got := float64(h.Percentile(p))
		if rel := (got - want) / want; rel > 0.008 || rel < -0.008 {
			t.Errorf("p%v = %v, exact %v: off by %.2f%%, more than 0.8%%", p, time.Duration(got), time.Duration(want), rel*100)
		}
	}
	if h.Max() != time.Duration(exact[len(exact)-1]) {
		t.Errorf("Max = %v, want %v", h.Max(), time.Duration(exact[len(exact)-1]))
	}
}

func TestPercentileSmallSamples(t *testing.T) {
	h := NewHistogram()
	if h.Percentile(50) != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatal("an empty histogram reports non-zero values")
	}
	for _, ms := range []int{1, 2, 3, 4, 100} {
		h.Record(time.Duration(ms) * time.Millisecond)
	}
	near := func(got, want time.Duration) bool {
		return got >= want-want/100 && got <= want+want/100
	}
	if got := h.Percentile(50); !near(got, 3*time.Millisecond) {
		t.Errorf("p50 of 1,2,3,4,100ms = %v, want about 3ms", got)
	}
	if got := h.Percentile(99); got != 100*time.Millisecond {
		t.Errorf("p99 of 1,2,3,4,100ms = %v, want 100ms (clamped to the max)", got)
	}
	if got := h.Percentile(0); !near(got, time.Millisecond) {
		t.Errorf("p0 = %v, want about 1ms", got)
	}
}

func TestMergeEqualsRecordingIntoOne(t *testing.T) {
	a, b, both := NewHistogram(), NewHistogram(), NewHistogram()
	for i := range 1000 {
		d := time.Duration(i*i) * time.Microsecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		both.Record(d)
	}
	a.Merge(b)
	if *a != *both {
		t.Fatalf("merged histogram differs from one recorded directly: p50 %v vs %v, count %d vs %d",
			a.Percentile(50), both.Percentile(50), a.Count(), both.Count())
	}
	empty := NewHistogram()
	empty.Merge(NewHistogram())
	if empty.Count() != 0 || empty.Max() != 0 {
		t.Fatal("merging two empty histograms is not empty")
	}
}
