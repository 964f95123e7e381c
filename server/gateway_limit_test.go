package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
)

// The limiter passes a stream of values each within the bound, whatever their
// total, and cuts the first value past it, counting strings' escaped quotes and
// brackets as the string's bytes, not as nesting.
func TestJSONMessageLimiter(t *testing.T) {
	small := `{"create_request":{"key":"YQ==","range_end":"Yg=="}}` // 52 bytes
	for _, tc := range []struct {
		name, body string
		limit      int64
		values     int  // decoded before the end
		tooLarge   bool // the read fails with errStreamMessageTooLarge
	}{
		{"many small values", strings.Repeat(small+"\n", 1000), 53, 1000, false},
		{"one value a byte over", small, 51, 0, true},
		{"whitespace before a value counts", strings.Repeat(small+strings.Repeat(" ", 100), 3), 152, 3, false},
		{"whitespace past the bound is cut", strings.Repeat(small+strings.Repeat(" ", 100), 3), 151, 1, true},
		{"whitespace before the first value", strings.Repeat("\n", 60) + small, 100, 0, true},
		{"escapes and brackets inside a string", `{"k":"\"}{[\\"}` + ` {"k":"x"}`, 15, 2, false},
		{"a nested value counts whole", `{"a":{"b":{"c":"` + strings.Repeat("x", 200) + `"}}}`, 100, 0, true},
		{"a long top-level number", strings.Repeat("1", 200), 100, 0, true},
		{"the second value too large", small + `{"k":"` + strings.Repeat("x", 100) + `"}`, 60, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec := json.NewDecoder(newJSONMessageLimiter(strings.NewReader(tc.body), tc.limit))
			values := 0
			var err error
			for {
				var v any
				if err = dec.Decode(&v); err != nil {
					break
				}
				values++
			}
			if values != tc.values || errors.Is(err, errStreamMessageTooLarge) != tc.tooLarge {
				t.Fatalf("decoded %d values, then %v; want %d values and too large %v", values, err, tc.values, tc.tooLarge)
			}
			if !tc.tooLarge && err != io.EOF {
				t.Fatalf("ended with %v, want EOF", err)
			}
		})
	}
}

// Endless whitespace after a value is cut as an endless value is: the decoder
// would hold it while it waits for the next value.
func TestJSONMessageLimiterEndlessWhitespace(t *testing.T) {
	counting := &countingReader{r: io.MultiReader(strings.NewReader(`{"k":"v"}`), infiniteByte(' '))}
	cut := 0
	l := newJSONMessageLimiter(counting, 1<<20)
	l.onCut = func() { cut++ }
	dec := json.NewDecoder(l)
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("the value before the spaces: %v", err)
	}
	if err := dec.Decode(&v); !errors.Is(err, errStreamMessageTooLarge) || cut != 1 {
		t.Fatalf("endless spaces: %v, onCut called %d times; want errStreamMessageTooLarge and one call", err, cut)
	}
	if counting.n > 2<<20 {
		t.Fatalf("read %d bytes of endless spaces with a 1 MiB bound", counting.n)
	}
}

// An endless value is cut at the bound, having read no more than the bound and one
// read's buffer: the decoder behind it never holds more.
func TestJSONMessageLimiterEndlessValue(t *testing.T) {
	endless := io.MultiReader(strings.NewReader(`{"key":"`), infiniteByte('x'))
	counting := &countingReader{r: endless}
	dec := json.NewDecoder(newJSONMessageLimiter(counting, 1<<20))
	var v any
	if err := dec.Decode(&v); !errors.Is(err, errStreamMessageTooLarge) {
		t.Fatalf("an endless value: %v, want errStreamMessageTooLarge", err)
	}
	if counting.n > 2<<20 {
		t.Fatalf("read %d bytes of an endless value with a 1 MiB bound", counting.n)
	}
}

// infiniteByte reads as the byte repeated without end.
type infiniteByte byte

func (b infiniteByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	atomic.AddInt64(&c.n, int64(n))
	return n, err
}

// BenchmarkJSONMessageLimiter prints the limiter's cost a byte beside the
// decoder's over the same watch requests.
func BenchmarkJSONMessageLimiter(b *testing.B) {
	body := bytes.Repeat([]byte(`{"create_request":{"key":"YQ==","range_end":"Yg==","start_revision":"12"}}`+"\n"), 1000)
	b.Run("limiter", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := io.Copy(io.Discard, newJSONMessageLimiter(bytes.NewReader(body), 1<<20)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			dec := json.NewDecoder(bytes.NewReader(body))
			for {
				var v map[string]any
				if err := dec.Decode(&v); err != nil {
					break
				}
			}
		}
	})
}
