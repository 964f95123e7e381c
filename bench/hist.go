package main

import (
	"math"
	"math/bits"
	"time"
)

// Histogram counts latencies in log-linear buckets, as HdrHistogram does: values below
// 128ns have a bucket each, and every power-of-two range above that is split into 64
// equal buckets, so a bucket is at most 1/64 of its lower bound wide and a reported
// percentile (the bucket's midpoint) is within 0.8% of the true value. It is 16 KiB, so
// each client goroutine owns one and records without locks; Merge combines them.
//
// Values of 2^37ns (137s) and more land in the last bucket; Max still reports them.
type Histogram struct {
	counts   [histBucketCount]uint64
	total    uint64
	sumNanos float64
	minNanos int64
	maxNanos int64
}

const (
	histSubBucketBits  = 7
	histSubBucketCount = 1 << histSubBucketBits // exact buckets below this value, in ns
	histSubBucketHalf  = histSubBucketCount / 2 // buckets per power of two above it
	histMaxShift       = 30                     // covers values below 2^(7+30) ns
	histBucketCount    = histSubBucketCount + histMaxShift*histSubBucketHalf
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{minNanos: math.MaxInt64}
}

// bucketIndex returns the bucket that holds v nanoseconds.
func bucketIndex(v int64) int {
	if v < histSubBucketCount {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - histSubBucketBits
	if shift > histMaxShift {
		return histBucketCount - 1
	}
	top := int(v >> shift) // in [64, 128)
	return histSubBucketCount + (shift-1)*histSubBucketHalf + (top - histSubBucketHalf)
}

// bucketBounds returns the values [low, high) that bucket i holds.
func bucketBounds(i int) (low, high int64) {
	if i < histSubBucketCount {
		return int64(i), int64(i) + 1
	}
	k := i - histSubBucketCount
	shift := k/histSubBucketHalf + 1
	top := int64(k%histSubBucketHalf + histSubBucketHalf)
	return top << shift, (top + 1) << shift
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[bucketIndex(v)]++
	h.total++
	h.sumNanos += float64(v)
	h.minNanos = min(h.minNanos, v)
	h.maxNanos = max(h.maxNanos, v)
}

// Merge adds every count of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sumNanos += o.sumNanos
	h.minNanos = min(h.minNanos, o.minNanos)
	h.maxNanos = max(h.maxNanos, o.maxNanos)
}

// Count returns the number of recorded latencies.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest recorded latency, exactly.
func (h *Histogram) Max() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.maxNanos)
}

// Mean returns the average recorded latency.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sumNanos / float64(h.total))
}

// Percentile returns the latency that p percent of the recorded ones do not exceed
// (the nearest-rank definition), to the histogram's precision; 0 when empty.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	// The epsilon keeps float error from pushing an exact rank (99.9% of 100000) up by one.
	rank := uint64(math.Ceil(p*float64(h.total)/100 - 1e-9))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, high := bucketBounds(i)
			mid := low + (high-1-low)/2
			return time.Duration(min(max(mid, h.minNanos), h.maxNanos))
		}
	}
	return time.Duration(h.maxNanos)
}
