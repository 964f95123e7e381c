package transport

import (
	"log/slog"
	"sync"
	"time"
)

// refusalLog keeps refusals from flooding the log: whoever can reach the peer port
// sets the rate of refused connections (a stranger, a removed member that keeps
// redialling, a peer with the wrong certificate), so each distinct refusal is
// logged at WARN at most once per refusalLogEvery, the next line saying how many
// were left out. StreamsRefused counts them all.
type refusalLog struct {
	mu      sync.Mutex
	reasons map[string]*refusalCount
}

type refusalCount struct {
	logged     time.Time
	suppressed int
}

// refusalLogEvery is how often one refusal is logged again.
var refusalLogEvery = 10 * time.Second

// maxRefusalReasons bounds the reasons remembered; past it they are forgotten
// together (at worst one line more each).
const maxRefusalReasons = 256

// warn logs msg with args unless the same reason was logged within refusalLogEvery.
func (r *refusalLog) warn(logger *slog.Logger, reason, msg string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	if r.reasons == nil || len(r.reasons) >= maxRefusalReasons {
		r.reasons = make(map[string]*refusalCount)
	}
	c := r.reasons[reason]
	if c != nil && now.Sub(c.logged) < refusalLogEvery {
		c.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := 0
	if c == nil {
		c = &refusalCount{}
		r.reasons[reason] = c
	} else {
		suppressed = c.suppressed
	}
	c.logged, c.suppressed = now, 0
	r.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "same_refusals_not_logged", suppressed)
	}
	logger.Warn(msg, args...)
}
