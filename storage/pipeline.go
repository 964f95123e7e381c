package storage

import (
	"errors"
	"fmt"
	"io"
)

// Recovery streams each segment through a window of bounded size (segReader) rather
// than read it whole: what it keeps of an entry is where it lies (entryRef), and the
// entries the log cache is to hold are read back from the files at the end. The
// memory recovery takes is then the window (two chunks, or one record and a chunk if a
// record is larger) and the refs, whatever the size of the log.

// readChunk is how much of a segment recovery reads at a time.
const readChunk = 1 << 20

// segReader reads a segment's bytes [0, limit) through a window.
type segReader struct {
	f     File
	path  string
	limit int64
	buf   []byte // the file's bytes [off, off+len(buf))
	off   int64
}

// newSegReader reads f's bytes [0, limit).
func newSegReader(f File, path string, limit int64) *segReader {
	return &segReader{f: f, path: path, limit: limit}
}

// view returns the window with the file's bytes [at, at+n) in it, clipped at limit,
// and the file offset of the window's first byte. Reading forward, it keeps nothing
// before at.
func (r *segReader) view(at, n int64) ([]byte, int64, error) {
	want := min(at+n, r.limit)
	end := r.off + int64(len(r.buf))
	if at >= r.off && want <= end {
		return r.buf, r.off, nil
	}
	// Move what is still needed to the start of the window, which holds what is
	// wanted and a chunk more, then fill it up to its end (or limit) with one read.
	var kept []byte
	if at >= r.off && at < end {
		kept = r.buf[at-r.off:]
	}
	size := int(min(max(want-at+readChunk, 2*readChunk), r.limit-at))
	nb := r.buf[:0]
	if cap(nb) < size || cap(nb) > 4*readChunk && size <= 2*readChunk {
		// Grow for a large record, or shrink back after one.
		nb = make([]byte, 0, size)
	}
	nb = nb[:copy(nb[:cap(nb)], kept)] // copy moves overlapping bytes correctly
	r.buf, r.off = nb, at
	fill := min(int64(cap(nb)), r.limit-at)
	if m := fill - int64(len(nb)); m > 0 {
		if _, err := r.f.ReadAt(nb[len(nb):fill], at+int64(len(nb))); err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("storage: reading WAL segment %s: %w", r.path, err)
		}
		r.buf = nb[:fill]
	}
	return r.buf, r.off, nil
}

// replaySegments replays segs, each with its end known, in order into r.
func replaySegments(segs []*segmentFile, seed uint32, r *replay) error {
	for i, s := range segs {
		if err := replaySegment(s, s.end, i == 0, seed, true, r); err != nil {
			return err
		}
		if i == 0 {
			reserveLog(r, segs, s.end)
		}
	}
	return nil
}

// reserveLog sizes the replayed log once, from the density of entries in the first
// segment, rather than grow (and copy, and fault in) a large array step by step.
func reserveLog(r *replay, segs []*segmentFile, firstBytes int64) {
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
