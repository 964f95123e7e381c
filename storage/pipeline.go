package storage

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Recovery replays the segments before the last through a pipeline, a chunk at a
// time, so that the work on one chunk overlaps the next's:
//
//   - the faulter goroutine allocates each segment's buffer and touches a byte of
//     every page of the next chunk, so that its pages are mapped before the read needs
//     them (a read into fresh memory takes a page fault per 4 KiB page, which on a
//     virtual machine costs microseconds);
//   - the reader goroutine reads each chunk from the file into its place;
//   - the caller's goroutine verifies, decodes and replays each record as soon as its
//     bytes have arrived, while they are still in the CPU's caches.
//
// Both goroutines end, and are waited for, before replaySegments returns.

// pipelineChunk is how much of a segment moves through the pipeline at a time.
const pipelineChunk = 4 << 20

// chunk is a piece of segment seg: bytes [from, to) of buf.
type chunk struct {
	seg      int
	buf      []byte
	from, to int64
	err      error // the read failed
}

// replaySegments replays segs, each with its end known, in order into r.
func replaySegments(segs []*segmentFile, seed uint32, r *replay) error {
	faulted := make(chan chunk, 2)
	read := make(chan chunk, 4)
	done := make(chan struct{})
	send := func(ch chan<- chunk, c chunk) bool {
		select {
		case ch <- c:
			return true
		case <-done:
			return false
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Go(func() {
		defer close(faulted)
		for i, s := range segs {
			buf := make([]byte, s.end)
			for from := int64(0); from < s.end; from += pipelineChunk {
				to := min(from+pipelineChunk, s.end)
				for p := from; p < to; p += 4096 {
					buf[p] = 0
				}
				if !send(faulted, chunk{seg: i, buf: buf, from: from, to: to}) {
					return
				}
			}
		}
	})
	wg.Go(func() {
		defer close(read)
		for c := range faulted {
			s := segs[c.seg]
			if _, err := s.f.ReadAt(c.buf[c.from:c.to], c.from); err != nil && !errors.Is(err, io.EOF) {
				c.err = fmt.Errorf("storage: reading WAL segment %s: %w", s.path, err)
			}
			if !send(read, c) || c.err != nil {
				return
			}
		}
	})

	for i, s := range segs {
		var buf []byte
		var have int64 // buf[:have] holds the file's bytes
		readable := func(n int64) ([]byte, error) {
			for have < n {
				c, ok := <-read
				if !ok {
					return nil, fmt.Errorf("storage: reading WAL segment %s: the reader stopped", s.path)
				}
				if c.err != nil {
					return nil, c.err
				}
				buf, have = c.buf, c.to
			}
			return buf[:have], nil
		}
		if _, err := readable(1); err != nil {
			return err
		}
		if err := replayRecords(buf, s, i == 0, seed, true, readable, r); err != nil {
			return err
		}
		if i == 0 {
			reserveLog(r, segs, len(buf))
		}
	}
	return nil
}

// reserveLog sizes the replayed log once, from the density of entries in the first
// segment, rather than grow (and copy, and fault in) a large array step by step.
func reserveLog(r *replay, segs []*segmentFile, firstBytes int) {
	var total int64
	for _, s := range segs {
		total += s.end
	}
	want := int(float64(len(r.refs))/float64(max(firstBytes, 1))*float64(total)*1.05) + 1024
	if want > cap(r.refs) {
		grown := make([]entryRef, len(r.refs), want)
		copy(grown, r.refs)
		r.refs = grown
	}
}
