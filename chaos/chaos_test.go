package chaos

import (
	"encoding/json"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"raftkv/chaos/kvmodel"
)

// report is what -chaos.json writes: the run's figures.
type report struct {
	Seed          uint64         `json:"seed"`
	Duration      time.Duration  `json:"duration_ns"`
	Clients       int            `json:"clients"`
	Operations    map[string]int `json:"operations"`
	Faults        []faultRecord  `json:"faults"`
	Crashes       []string       `json:"crashes,omitempty"`
	Porcupine     string         `json:"porcupine"`
	CheckTime     time.Duration  `json:"check_ns"`
	LostWrites    int            `json:"lost_writes"`
	ConvergedIn   time.Duration  `json:"converged_ns"`
	Watch         watchReport    `json:"watch"`
	WallTime      time.Duration  `json:"wall_ns"`
	GoMaxProcs    int            `json:"gomaxprocs"`
	StartedAtUnix int64          `json:"started_at_unix"`
}

// TestChaos runs the workload on a 5-member cluster in containers while the nemesis
// makes faults and watchers on every member watch the workload's keys, then checks
// the verdicts: the history (with a final read of every key) is linearizable, no
// acknowledged write is lost, every member holds the same state, no member crashed
// but those a fault stopped, the cluster took a write within recoveryTimeout of every
// heal, and every write that took effect reached every watcher once, in revision
// order, with no gap. It logs the recovery times by fault kind and the watchers'
// figures.
func TestChaos(t *testing.T) {
	requireDocker(t)
	wallStart := time.Now()
	duration := *durationFlag
	if duration == 0 {
		duration = 60 * time.Second
		if testing.Short() {
			duration = 30 * time.Second
		}
	}
	hold := *holdFlag
	if hold == 0 {
		hold = 6 * time.Second
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	kinds, err := parseFaultKinds(*faultsFlag)
	if err != nil {
		t.Fatal(err)
	}
	if hold < 300*time.Millisecond || *clientsFlag < 1 {
		t.Fatalf("-chaos.hold %v must be at least 300ms and -chaos.clients %d at least 1", hold, *clientsFlag)
	}
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < duration+5*time.Minute {
		t.Fatalf("-chaos.duration %v does not fit in go test's -timeout with 5 minutes to start, check and clean up (%v left); pass -timeout=%v",
			duration, time.Until(deadline).Round(time.Second), (duration + 10*time.Minute).Round(time.Minute))
	}
	t.Logf("seed %d; the same choices of faults, victims and calls again (timing aside): go test -run TestChaos -chaos.seed=%d -chaos.duration=%v",
		seed, seed, duration)

	runID := newRunID(t)
	image := testImage(t, runID)
	c := startCluster(t, image, runID, *snapshotCountFlag)
	t.Logf("run %s: 5 members of %s up in %v", runID, image, time.Since(wallStart).Round(time.Millisecond))
	if !c.canFillDisk {
		kinds = slices.DeleteFunc(kinds, func(k faultKind) bool { return k == diskFull })
		if len(kinds) == 0 {
			t.Skip("skipped: only disk-full was asked for, and it needs root")
		}
	}

	watchers := startWatchers(c, seed)
	w := startWorkload(c, *clientsFlag, seed)
	// Also when the nemesis fails the test: the clients stop before the cluster goes.
	t.Cleanup(w.stopAndWait)
	n := newNemesis(c, seed, kinds, hold)
	records := n.run(duration)
	w.stopAndWait()

	history := w.history()
	final, finalKeys, finalOps := finalReads(c, n.probe, history, *clientsFlag, w.now)
	counts := opCounts(history)
	t.Logf("%d calls in %v with %d faults: %v", len(history), time.Since(w.start).Round(time.Second), len(records), counts)
	if len(history) < 100*int(duration/time.Minute+1) {
		t.Fatalf("only %d calls completed; too few for the verdicts to mean something", len(history))
	}
	setOutages(records, history, w.start)
	history = append(history, finalOps...)

	rep := report{Seed: seed, Duration: duration, Clients: *clientsFlag, Operations: counts, Faults: records,
		Crashes: n.crashes, GoMaxProcs: runtime.GOMAXPROCS(0), StartedAtUnix: wallStart.Unix()}

	lost := kvmodel.LostWrites(history, final)
	rep.LostWrites = len(lost)
	for i, l := range lost {
		if i == 10 {
			t.Errorf("... and %d more lost writes", len(lost)-i)
			break
		}
		t.Errorf("acknowledged write lost: %s", l)
	}

	checkStart := time.Now()
	result, info := porcupine.CheckOperationsVerbose(kvmodel.Model, history, 5*time.Minute)
	rep.Porcupine, rep.CheckTime = string(result), time.Since(checkStart)
	t.Logf("porcupine: %s over %d calls in %v", result, len(history), rep.CheckTime.Round(time.Millisecond))
	if result != porcupine.Ok {
		f, err := os.CreateTemp("", "raftkv-chaos-*.html")
		if err == nil {
			f.Close()
			if err = porcupine.VisualizePath(kvmodel.Model, info, f.Name()); err == nil {
				t.Logf("the history, drawn: %s", f.Name())
			}
		}
		if err != nil {
			t.Logf("drawing the history: %v", err)
		}
		t.Errorf("the history is not linearizable (porcupine: %s); seed %d", result, seed)
	}

	rep.Watch = checkWatches(t, watchers, history, finalKeys)

	rep.ConvergedIn = checkConverged(c, n.probe)
	n.checkRunning(nil)
	rep.Crashes = n.crashes
	t.Logf("every member holds the cluster's state, %v after the clients stopped", rep.ConvergedIn.Round(time.Millisecond))
	for _, r := range records {
		if r.Observed != "" {
			t.Logf("observed at %.1fs (%s): %s", r.At.Seconds(), r.Kind, r.Observed)
		}
	}
	t.Logf("recovery after each heal:\n%s", recoveryTable(records))

	rep.WallTime = time.Since(wallStart)
	if *jsonFlag != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonFlag, append(data, '\n'), 0o644)
		}
		if err != nil {
			t.Errorf("writing -chaos.json %s: %v", *jsonFlag, err)
		}
	}
}
