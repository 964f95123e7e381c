package sim

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// tracef writes one trace line stamped with the virtual time, if tracing is on.
func (c *Cluster) tracef(format string, args ...any) {
	if c.trace == nil {
		return
	}
	fmt.Fprintf(c.trace, "%10.3fs  %s\n", c.now.Seconds(), fmt.Sprintf(format, args...))
}

// logger returns a slog.Logger for node id's core that writes into the trace, stamped
// with virtual rather than wall-clock time.
func (c *Cluster) logger(id uint64) *slog.Logger {
	return slog.New(&traceHandler{cluster: c, prefix: fmt.Sprintf("n%d raft:", id)})
}

// traceHandler is a slog.Handler that formats records as trace lines.
type traceHandler struct {
	cluster *Cluster
	prefix  string
	attrs   string
}

func (h *traceHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *traceHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix)
	b.WriteString(" ")
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.cluster.tracef("%s", b.String())
	return nil
}

func (h *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clone := *h
	for _, a := range attrs {
		clone.attrs += fmt.Sprintf(" %s=%v", a.Key, a.Value)
	}
	return &clone
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	clone := *h
	clone.prefix += " " + name + ":"
	return &clone
}
