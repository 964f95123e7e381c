package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The health endpoints answer as etcd 3.7's do (etcdhttp/health.go), so that load
// balancers, Kubernetes probes and etcd's tooling read them unchanged:
//
//   - /health: JSON {"health":"true","reason":""} with 200, or "false" and a reason
//     with 503: an active alarm ("ALARM NOSPACE"; ?exclude=NOSPACE ignores it), no
//     leader ("RAFT NO LEADER"), or a failed read ("RANGE ERROR:..."). The read is
//     linearizable, so it checks that a quorum answers; ?serializable=true reads
//     locally and skips the leader check, checking this member alone.
//   - /livez: the member serves local reads (serializable_read).
//   - /readyz: no corruption alarm (data_corruption), local reads (serializable_read),
//     a quorum (linearizable_read), and not a learner (non_learner).
//
// /livez and /readyz answer "ok" with 200, with each check's line first under
// ?verbose, or each check's line with 503 if one failed; ?exclude=NAME leaves a check
// out, and /readyz/NAME runs one alone.
//
// None of them waits on Raft for longer than healthTimeout: a member that lost its
// quorum answers unhealthy within it, not after a client request's timeout (etcd
// gives its /health read the whole request timeout, about 7 s by default, longer
// than a probe usually waits). The leader is read from raft.Node.Observe, which never
// waits for the run loop.

// healthTimeout bounds each health request's wait for a linearizable read.
const healthTimeout = time.Second

// healthCheck is one named check of /livez or /readyz; nil error means it passed.
type healthCheck struct {
	name string
	run  func(ctx context.Context) error
}

// healthEndpoints serves the health endpoints of one member.
type healthEndpoints struct {
	s      *Server
	logger *slog.Logger

	livez, readyz []healthCheck

	// etcd's health metrics.
	healthSuccess, healthFailures prometheus.Counter
	checkResult                   *prometheus.GaugeVec
	checks                        *prometheus.CounterVec
}

func newHealthEndpoints(s *Server, registry *prometheus.Registry) *healthEndpoints {
	h := &healthEndpoints{
		s:      s,
		logger: s.logger,
		healthSuccess: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_health_success", Help: "The total number of successful health checks",
		}),
		healthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_health_failures", Help: "The total number of failed health checks",
		}),
		checkResult: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcd_server_healthcheck", Help: "The result of each kind of healthcheck.",
		}, []string{"type", "name"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_server_healthchecks_total", Help: "The total number of each kind of healthcheck.",
		}, []string{"type", "name", "status"}),
	}
	registry.MustRegister(h.healthSuccess, h.healthFailures, h.checkResult, h.checks)
	serializable := healthCheck{"serializable_read", func(ctx context.Context) error { return s.healthRead(ctx, true) }}
	h.livez = []healthCheck{serializable}
	h.readyz = []healthCheck{
		{"data_corruption", func(context.Context) error {
			for _, a := range s.activeAlarms() {
				if a.Alarm == pb.AlarmType_CORRUPT {
					return fmt.Errorf("alarm activated: %s", a.Alarm)
				}
			}
			return nil
		}},
		serializable,
		{"linearizable_read", func(ctx context.Context) error { return s.healthRead(ctx, false) }},
		{"non_learner", func(context.Context) error {
			if s.learner.Load() {
				return errors.New("not supported for learner")
			}
			return nil
		}},
	}
	return h
}

// healthRead is etcd's health read: a Range of one key, keys only, linearizable
// unless serializable. (etcd's reads the empty key, which the store refuses as a
// request: any one key does.) A linearizable read that cannot finish before ctx's deadline
// fails with "no leader" or "request timed out".
func (s *Server) healthRead(ctx context.Context, serializable bool) error {
	if !serializable {
		if err := s.linearizableRead(ctx); errors.Is(err, context.DeadlineExceeded) {
			// healthTimeout, shorter than RequestTimeout, passed first: name the
			// likely cause rather than the probe's own deadline.
			return s.contextError(ctx)
		} else if err != nil {
			return err
		}
	}
	_, err := s.sm.store.RangeLimited(rangeFromPB(&pb.RangeRequest{Key: []byte("health"), KeysOnly: true, Limit: 1}), int64(s.cfg.MaxResponseBytes))
	return err
}

// healthStatus is /health's answer.
type healthStatus struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

func (h *healthEndpoints) install(mux *http.ServeMux) {
	mux.HandleFunc("/health", h.serveHealth)
	for _, group := range []struct {
		kind   string
		checks []healthCheck
	}{{"livez", h.livez}, {"readyz", h.readyz}} {
		mux.HandleFunc("/"+group.kind, func(w http.ResponseWriter, r *http.Request) {
			excluded := queryValues(r, "exclude")
			var run []healthCheck
			for _, c := range group.checks {
				if !excluded[c.name] {
					run = append(run, c)
				}
				delete(excluded, c.name)
			}
			if len(excluded) > 0 {
				h.logger.Debug("health: asked to exclude checks that do not exist", "path", r.URL.Path, "checks", keys(excluded))
			}
			h.serveChecks(w, r, group.kind, run)
		})
		for _, c := range group.checks {
			mux.HandleFunc("/"+group.kind+"/"+c.name, func(w http.ResponseWriter, r *http.Request) {
				h.serveChecks(w, r, group.kind, []healthCheck{c})
			})
		}
	}
}

// onlyGET answers 405 to anything but GET, as etcd does, and reports whether the
// request is a GET.
func onlyGET(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}

func (h *healthEndpoints) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	st := h.check(ctx, queryValues(r, "exclude"), r.URL.Query().Get("serializable") == "true")
	body, _ := json.Marshal(st)
	if st.Health != "true" {
		h.healthFailures.Inc()
		h.logger.Warn("serving /health false", "reason", st.Reason)
		http.Error(w, string(body), http.StatusServiceUnavailable)
		return
	}
	h.healthSuccess.Inc()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// check is /health's verdict: alarms, then the leader, then a read.
func (h *healthEndpoints) check(ctx context.Context, excludedAlarms map[string]bool, serializable bool) healthStatus {
	for _, a := range h.s.activeAlarms() {
		if excludedAlarms[a.Alarm.String()] {
			continue
		}
		switch a.Alarm {
		case pb.AlarmType_NOSPACE:
			return healthStatus{Health: "false", Reason: "ALARM NOSPACE"}
		case pb.AlarmType_CORRUPT:
			return healthStatus{Health: "false", Reason: "ALARM CORRUPT"}
		default:
			return healthStatus{Health: "false", Reason: "ALARM UNKNOWN"}
		}
	}
	if !serializable && h.s.node.Observe().Lead == 0 {
		return healthStatus{Health: "false", Reason: "RAFT NO LEADER"}
	}
	if err := h.s.healthRead(ctx, serializable); err != nil {
		return healthStatus{Health: "false", Reason: "RANGE ERROR:" + err.Error()}
	}
	return healthStatus{Health: "true"}
}

// serveChecks runs checks and answers as etcd's /livez and /readyz do.
func (h *healthEndpoints) serveChecks(w http.ResponseWriter, r *http.Request, kind string, checks []healthCheck) {
	if !onlyGET(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	var report strings.Builder
	failed := false
	for _, c := range checks {
		status := "success"
		if err := c.run(ctx); err != nil {
			failed, status = true, "error"
			fmt.Fprintf(&report, "[-]%s failed: %v\n", c.name, err)
		} else {
			fmt.Fprintf(&report, "[+]%s ok\n", c.name)
		}
		h.checkResult.WithLabelValues(kind, c.name).Set(boolFloat(status == "success"))
		h.checks.WithLabelValues(kind, c.name, status).Inc()
	}
	if failed {
		h.logger.Warn("health check failed", "path", r.URL.Path, "report", report.String())
		http.Error(w, report.String(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		_, _ = fmt.Fprint(w, report.String())
	}
	_, _ = fmt.Fprint(w, "ok\n")
}

// queryValues returns the non-empty values of a query parameter, as a set.
func queryValues(r *http.Request, name string) map[string]bool {
	set := map[string]bool{}
	for _, v := range r.URL.Query()[name] {
		if v != "" {
			set[v] = true
		}
	}
	return set
}

func keys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}
