package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

type faultKind string

// The faults the nemesis makes, one at a time: it makes one, holds it, heals it, and
// measures how long the cluster takes to recover before it makes the next.
const (
	// partitionOne cuts one member (the leader half the time) off from every peer.
	partitionOne faultKind = "partition-one"
	// partitionSplit splits the members into a minority of two (holding the leader
	// half the time) and a majority of three.
	partitionSplit faultKind = "partition-split"
	// partitionBridge makes two majorities of three that share one member, the
	// bridge: {a b c} and {c d e}. Each side has a quorum only with c, which sees
	// both; a and e never see each other.
	partitionBridge faultKind = "partition-bridge"
	// pause freezes one or two members (docker pause, the cgroup freezer): their
	// sockets stay open and nothing answers, the case that breaks leader leases; a
	// paused leader wakes up believing it still leads.
	pause faultKind = "pause"
	// kill sends SIGKILL to one or two members (docker kill) and restarts them on
	// their data dirs at the heal (docker start).
	kill faultKind = "kill"
	// diskFull fills a member's data dir from the host and writes large values
	// through the cluster, so that the member runs out of space; the heal frees the
	// space and restarts the member if it stopped.
	diskFull faultKind = "disk-full"

	// readdress moves one member (the leader half the time) to another address on the
	// peer networks while it runs (docker network disconnect, then connect with another
	// --ip), as a DHCP renewal or a VM migration might; the heal does nothing, and the
	// member stays at its new address (the next readdress of it moves it back). The
	// member's old streams then carry packets that never come back: the transport's
	// AckTimeout (TCP_USER_TIMEOUT, 3 s) closes them and the streams are redialled.
	readdress faultKind = "readdress"
)

// allFaultKinds are the kinds a run draws from unless -chaos.faults says otherwise.
var allFaultKinds = []faultKind{partitionOne, partitionSplit, partitionBridge, pause, kill, diskFull, readdress}

const allFaultKindsText = "partition-one,partition-split,partition-bridge,pause,kill,disk-full,readdress"

func parseFaultKinds(list string) ([]faultKind, error) {
	if list == "" {
		return slices.Clone(allFaultKinds), nil
	}
	var kinds []faultKind
	for _, name := range strings.Split(list, ",") {
		kind := faultKind(strings.TrimSpace(name))
		if !slices.Contains(allFaultKinds, kind) {
			return nil, fmt.Errorf("-chaos.faults: unknown fault kind %q; use some of %s", name, allFaultKindsText)
		}
		kinds = append(kinds, kind)
	}
	return kinds, nil
}

// A fault in force.
type fault struct {
	kind faultKind
	what string // for the log: which members, and which led
	// victims are the members whose recovery is measured after the heal.
	victims []*member
	// mayStop are the members the fault may stop (killed, or out of disk); any other
	// member found stopped after the heal crashed, which fails the run.
	mayStop []*member
	heal    func() (observed string)
}

// faultRecord is one fault's figures.
type faultRecord struct {
	Kind faultKind `json:"kind"`
	What string    `json:"what"`
	// At is when the fault began, since the nemesis started; Held how long it lasted.
	At   time.Duration `json:"at_ns"`
	Held time.Duration `json:"held_ns"`
	// HealTook is how long the docker commands of the heal took.
	HealTook time.Duration `json:"heal_took_ns"`
	// WriteRecovery is the time from the heal to the first write the cluster took;
	// MemberRecovery the time from the heal until every victim answered a
	// linearizable read itself.
	WriteRecovery  time.Duration `json:"write_recovery_ns"`
	MemberRecovery time.Duration `json:"member_recovery_ns"`
	// Outage is the longest time from the fault's start to the first write after
	// its heal in which the clients had no write acknowledged: how long the fault
	// kept the cluster from taking writes.
	Outage time.Duration `json:"outage_ns"`
	// Observed is what the heal found (a member that had exited, and why), and
	// what became of a disk-full victim that exited only after the heal looked.
	Observed string `json:"observed,omitempty"`

	start, recovered time.Time
}

type nemesis struct {
	c       *cluster
	rng     *rand.Rand
	kinds   []faultKind
	holdMax time.Duration
	// probe is a client of every member, for the recovery writes and the disk-full
	// fault's large values.
	probe   *clientv3.Client
	start   time.Time
	faults  int
	crashes []string // members found stopped that no fault stopped
}

// recoveryTimeout bounds the wait for the cluster to take a write, and for a victim
// to answer, after a heal: far above the few seconds either takes, so that only a
// cluster that does not recover fails the run, not a loaded machine.
const recoveryTimeout = 60 * time.Second

func newNemesis(c *cluster, seed uint64, kinds []faultKind, holdMax time.Duration) *nemesis {
	return &nemesis{c: c, rng: rand.New(rand.NewPCG(seed, 0x6e656d65)), kinds: kinds, holdMax: holdMax,
		probe: c.newClient(c.endpoints()...)}
}

// run makes faults until duration has passed and every kind was made at least once,
// and returns their records. Kinds are drawn as from a shuffled deck, one deck after
// the other. Every fault is healed when it returns. On a loaded machine docker
// commands take seconds, so a short run may take longer than duration to deal its
// first deck: the coverage of every kind is what a short run is for.
func (n *nemesis) run(duration time.Duration) []faultRecord {
	t := n.c.t
	n.start = time.Now()
	var records []faultRecord
	var deck []faultKind
	for {
		if interrupted.Err() != nil {
			n.c.t.Errorf("interrupted after %d faults; every fault is healed", len(records))
			return records
		}
		gap := time.Second + time.Duration(n.rng.Int64N(int64(time.Second)))
		hold := n.holdMax/3 + time.Duration(n.rng.Int64N(int64(n.holdMax*2/3)))
		if time.Since(n.start)+gap+hold > duration && len(records) >= len(n.kinds) {
			return records
		}
		time.Sleep(gap)
		if len(deck) == 0 {
			deck = slices.Clone(n.kinds)
			n.rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
		}
		kind := deck[0]
		deck = deck[1:]

		faultStart := time.Now()
		at := faultStart.Sub(n.start)
		f := n.inject(kind)
		t.Logf("nemesis %6.1fs: %s: %s; holding it %v", at.Seconds(), kind, f.what, hold.Round(time.Millisecond))
		time.Sleep(hold)
		healStart := time.Now()
		observed := f.heal()
		// Recovery counts from the end of the heal: a docker start alone takes about a
		// second, and more on a loaded machine.
		healed := time.Now()
		rec := faultRecord{Kind: kind, What: f.what, At: at, Held: healStart.Sub(faultStart),
			HealTook: healed.Sub(healStart), Observed: observed, start: faultStart}
		rec.WriteRecovery = n.waitWrite(healed, kind)
		rec.recovered = healed.Add(rec.WriteRecovery)
		var late []string
		rec.MemberRecovery, late = n.waitMembers(healed, kind, f.victims, f.mayStop)
		late = append(late, n.checkRunning(f.mayStop)...)
		if len(late) > 0 {
			// The heal saw such a victim still running; the record also says
			// what became of it.
			if observed != "" {
				late = append([]string{observed}, late...)
			}
			observed = strings.Join(late, "; ")
			rec.Observed = observed
		}
		msg := fmt.Sprintf("nemesis %6.1fs: healed %s in %v; then a write after %v, every victim answering after %v",
			time.Since(n.start).Seconds(), kind, rec.HealTook.Round(time.Millisecond),
			rec.WriteRecovery.Round(time.Millisecond), rec.MemberRecovery.Round(time.Millisecond))
		if observed != "" {
			msg += "; " + observed
		}
		t.Log(msg)
		records = append(records, rec)
		n.faults++
	}
}

func (n *nemesis) inject(kind faultKind) fault {
	c := n.c
	switch kind {
	case partitionOne:
		victim := n.pick(1)[0]
		var others []int
		for i, m := range c.members {
			if m != victim {
				others = append(others, i)
			}
		}
		return n.partition(kind, partition{others}, []*member{victim})
	case partitionSplit:
		minority := n.pick(2)
		var minorityIdx, majorityIdx []int
		for i, m := range c.members {
			if slices.Contains(minority, m) {
				minorityIdx = append(minorityIdx, i)
			} else {
				majorityIdx = append(majorityIdx, i)
			}
		}
		return n.partition(kind, partition{minorityIdx, majorityIdx}, minority)
	case partitionBridge:
		perm := n.rng.Perm(memberCount)
		p := partition{slices.Sorted(slices.Values(perm[:3])), slices.Sorted(slices.Values(perm[2:]))}
		var victims []*member
		for i, m := range c.members {
			if i != perm[2] {
				victims = append(victims, m)
			}
		}
		f := n.partition(kind, p, victims)
		f.what += fmt.Sprintf(", bridge %s", c.members[perm[2]].name)
		return f
	case pause:
		victims := n.pick(n.oneOrTwo())
		what := n.describe(victims)
		for _, m := range victims {
			n.docker("pause", m.container)
		}
		return fault{kind: kind, what: what, victims: victims, heal: func() string {
			for _, m := range victims {
				n.docker("unpause", m.container)
			}
			return ""
		}}
	case kill:
		victims := n.pick(n.oneOrTwo())
		what := n.describe(victims)
		for _, m := range victims {
			n.docker("kill", "--signal", "KILL", m.container)
		}
		return fault{kind: kind, what: what, victims: victims, mayStop: victims, heal: func() string {
			for _, m := range victims {
				c.start(m)
			}
			return ""
		}}
	case diskFull:
		return n.fillDisk()
	case readdress:
		victim := n.pick(1)[0]
		what := n.describe([]*member{victim})
		c.readdress(victim)
		what += fmt.Sprintf(", now at %s", c.peerNets[0].address(victim))
		return fault{kind: kind, what: what, victims: []*member{victim}, heal: func() string { return "" }}
	}
	panic(fmt.Sprintf("nemesis: no fault of kind %q", kind))
}

// partition makes p and returns the fault that undoes it.
func (n *nemesis) partition(kind faultKind, p partition, victims []*member) fault {
	what := p.String()
	if l := n.leaderName(); l != "" {
		what += ", leader " + l
	}
	n.c.setPartition(p)
	return fault{kind: kind, what: what, victims: victims, heal: func() string {
		n.c.setPartition(whole())
		return ""
	}}
}

// fillDisk fills one member's data dir (a tmpfs of its own) and writes large values
// through the cluster: a member appends values to a file and flushes it every few
// hundred KiB, so the values make the full member write, and fail.
func (n *nemesis) fillDisk() fault {
	t := n.c.t
	victim := n.pick(1)[0]
	what := n.describe([]*member{victim})
	path := filepath.Join(victim.dataDir, fillFile)
	filled, err := fillUntilFull(path)
	if err != nil {
		t.Fatalf("filling %s's data dir: %v", victim.name, err)
	}
	what += fmt.Sprintf(", %d MiB written to fill it", filled>>20)
	value := strings.Repeat("v", 256<<10)
	for i := range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		// The outcome does not matter: the values are there to make the member write.
		_, _ = n.probe.Put(ctx, fmt.Sprintf("chaos/ballast/%d/%d", n.faults, i), value)
		cancel()
	}
	return fault{kind: diskFull, what: what, victims: []*member{victim}, mayStop: []*member{victim}, heal: func() string {
		if err := os.Remove(path); err != nil {
			t.Fatalf("freeing %s's data dir: %v", victim.name, err)
		}
		status, code := n.c.state(victim)
		if status != "exited" {
			return fmt.Sprintf("%s kept running (%s) with its disk full", victim.name, status)
		}
		observed := fmt.Sprintf("%s had exited with code %d: %s", victim.name, code, n.c.panicLine(victim))
		n.c.start(victim)
		return observed
	}}
}

// exitDiskFull is the exit status of a member that stopped on a full disk
// (cmd/raftkv's exitDiskFull).
const exitDiskFull = 4

// fillUntilFull writes zeros to a new file at path until the file system has no room
// left, and returns how many bytes it wrote.
func fillUntilFull(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	var written int64
	for {
		w, err := f.Write(chunk)
		written += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return written, nil
		}
		if err != nil {
			return written, err
		}
	}
}

// pick returns k distinct members, the first of them the leader half the time (when
// one is known): faults at the leader are the ones that test elections.
func (n *nemesis) pick(k int) []*member {
	members := slices.Clone(n.c.members)
	n.rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	if n.rng.IntN(2) == 0 {
		if l := n.c.leader(); l != nil {
			i := slices.Index(members, l)
			members[0], members[i] = members[i], members[0]
		}
	}
	return members[:k]
}

// oneOrTwo draws how many members a pause or a kill takes: two (a quorum of 3 of 5
// left) a third of the time.
func (n *nemesis) oneOrTwo() int {
	if n.rng.IntN(3) == 0 {
		return 2
	}
	return 1
}

func (n *nemesis) leaderName() string {
	if l := n.c.leader(); l != nil {
		return l.name
	}
	return ""
}

// describe names the members and says which one led before the fault.
func (n *nemesis) describe(victims []*member) string {
	var names []string
	for _, m := range victims {
		names = append(names, m.name)
	}
	out := strings.Join(names, " ")
	if l := n.leaderName(); l != "" {
		out += ", leader " + l
	}
	return out
}

func (n *nemesis) docker(args ...string) {
	n.c.t.Helper()
	if _, err := docker(context.Background(), args...); err != nil {
		n.c.t.Fatal(err)
	}
}

// waitWrite returns the time from healed until a put through any member succeeded.
func (n *nemesis) waitWrite(healed time.Time, kind faultKind) time.Duration {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := n.probe.Put(ctx, "chaos/probe", fmt.Sprintf("after fault %d", n.faults))
		cancel()
		if err == nil {
			return time.Since(healed)
		}
		if time.Since(healed) > recoveryTimeout {
			n.c.t.Fatalf("the cluster took no write within %v after the heal of %s: %v", recoveryTimeout, kind, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMembers returns the time from healed until every victim answered a
// linearizable read through its own endpoint: it has rejoined and caught up. A
// disk-full victim that stops on its full disk (exit status 4) only after the heal
// looked (it was still stopping: handing its leadership off, letting requests in
// flight finish) is started again here; seed 20261205 had m5 exit 2 s after the
// heal looked, and nothing started it again. Any other exit is left for the run to
// fail on, as a victim that never answers. It returns, besides the time, a line
// for each victim it started again.
func (n *nemesis) waitMembers(healed time.Time, kind faultKind, victims, mayStop []*member) (time.Duration, []string) {
	var late []string
	for _, m := range victims {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := m.cli.Get(ctx, "chaos/probe")
			cancel()
			if err == nil {
				break
			}
			if kind == diskFull && slices.Contains(mayStop, m) {
				if status, code := n.c.state(m); status == "exited" && code == exitDiskFull {
					late = append(late, n.startAgainAfterDiskFull(m, code, ""))
				}
			}
			if time.Since(healed) > recoveryTimeout {
				n.c.t.Fatalf("%s answered no read within %v after the heal of %s: %v", m.name, recoveryTimeout, kind, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return time.Since(healed), late
}

// checkRunning restarts, and records as a crash, any member that stopped though no
// fault could stop it; a member the fault may stop that has stopped on a full disk
// (exit status 4) is restarted without being recorded as a crash, and returned as
// a line for the fault's record.
func (n *nemesis) checkRunning(mayStop []*member) []string {
	var late []string
	for _, m := range n.c.members {
		status, code := n.c.state(m)
		if slices.Contains(mayStop, m) && status == "exited" && code == exitDiskFull {
			// Stopped on a full disk, late (see waitMembers): not a crash.
			late = append(late, n.startAgainAfterDiskFull(m, code, " after answering"))
			continue
		}
		if status == "running" || slices.Contains(mayStop, m) {
			continue
		}
		crash := fmt.Sprintf("%s was %s (exit code %d) after fault %d: %s", m.name, status, code, n.faults, n.c.panicLine(m))
		n.c.t.Errorf("a member crashed: %s", crash)
		n.crashes = append(n.crashes, crash)
		if status == "exited" {
			n.c.start(m)
		}
	}
	return late
}

// startAgainAfterDiskFull starts again a victim that stopped on its full disk after
// the heal looked, and returns the line the fault's record gets for it; when says
// at what point it was found stopped ("" right after the heal).
func (n *nemesis) startAgainAfterDiskFull(m *member, code int, when string) string {
	line := fmt.Sprintf("%s then exited with code %d%s: %s", m.name, code, when, n.c.panicLine(m))
	n.c.t.Logf("nemesis: %s; starting it again", line)
	n.c.start(m)
	return line
}
