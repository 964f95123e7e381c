package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// The big data set, shared by the big workload (big-1m-1k) and the data scenarios
// (--data-scenarios): keys "big" + %08x of 0..n-1, each with a 1 KiB value derived
// from the key's number, so that a reader can check every byte of every key without
// keeping the data. The values are pseudo-random bytes: a store that compresses its
// blocks (pebble does) holds the full gigabyte, as it would with real data.
const (
	bigValueBytes  = 1024
	bigKeyPrefix   = "big"
	defaultBigKeys = 1_000_000
	// loadBatchPuts is the puts per Txn while loading: below both systems' default
	// --max-txn-ops (128), and about 100 KiB per request, far below the default
	// --max-request-bytes (1.5 MiB).
	loadBatchPuts = 100
	// loadConcurrency is how many Txns are in flight while loading, over loadConns
	// connections: enough to keep the leader's fsyncs batched.
	loadConcurrency = 32
	loadConns       = 8
	// verifyPageKeys is the keys per Range while reading the data back (~500 KiB).
	verifyPageKeys = 500
)

func bigKey(i int) string { return fmt.Sprintf("%s%08x", bigKeyPrefix, i) }

// bigKeyIndex is bigKey's inverse; ok is false for a key not of the data set.
func bigKeyIndex(key []byte) (int, bool) {
	hex, found := bytes.CutPrefix(key, []byte(bigKeyPrefix))
	if !found {
		return 0, false
	}
	i, err := strconv.ParseUint(string(hex), 16, 32)
	return int(i), err == nil
}

// bigValue returns key i's value: bigValueBytes of a PCG stream seeded by i.
func bigValue(i int) []byte {
	rng := rand.NewPCG(uint64(i), 0x9e3779b97f4a7c15)
	b := make([]byte, bigValueBytes)
	for j := 0; j < len(b); j += 8 {
		binary.LittleEndian.PutUint64(b[j:], rng.Uint64())
	}
	return b
}

// bigLabel names a data set of n keys for tables: 1,000,000 keys is "1m", 102,400 is
// "102k", 2,000 is "2k".
func bigLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dm", n/1_000_000)
	case n >= 1000:
		return fmt.Sprintf("%dk", n/1000)
	default:
		return strconv.Itoa(n)
	}
}

// parseDataSize reads --data-size: a number of bytes with a binary suffix (KiB, MiB,
// GiB) or none. The data set holds size/1 KiB keys.
func parseDataSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size: give a positive number of bytes with KiB, MiB or GiB, e.g. 100MiB", s)
	}
	return n * mult, nil
}

// loadStats says how loading went.
type loadStats struct {
	keys         int
	duration     time.Duration
	lastRevision int64 // the revision of the last Txn to commit
}

// loadBig writes keys 0..n-1 of the data set through endpoint, loadBatchPuts keys per
// Txn with loadConcurrency Txns in flight, printing progress to stderr every 15s.
func loadBig(ctx context.Context, endpoint string, n int) (loadStats, error) {
	conns, err := dialConns(endpoint, loadConns)
	if err != nil {
		return loadStats{}, err
	}
	defer closeConns(conns)
	start := time.Now()
	batches := (n + loadBatchPuts - 1) / loadBatchPuts
	var nextBatch, doneKeys, lastRev atomic.Int64
	var firstErr error
	var errOnce sync.Once
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := range loadConcurrency {
		cli := conns[w%len(conns)]
		wg.Go(func() {
			for lctx.Err() == nil {
				b := int(nextBatch.Add(1) - 1)
				if b >= batches {
					return
				}
				var ops []clientv3.Op
				for i := b * loadBatchPuts; i < min((b+1)*loadBatchPuts, n); i++ {
					ops = append(ops, clientv3.OpPut(bigKey(i), string(bigValue(i))))
				}
				resp, err := commitLoadBatch(lctx, cli, ops)
				if err != nil {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("loading keys %d-%d: %w", b*loadBatchPuts, b*loadBatchPuts+len(ops)-1, err)
						cancel()
					})
					return
				}
				doneKeys.Add(int64(len(ops)))
				for rev := resp.Header.Revision; ; {
					old := lastRev.Load()
					if rev <= old || lastRev.CompareAndSwap(old, rev) {
						break
					}
				}
			}
		})
	}
	progressDone := make(chan struct{})
	go func() {
		tick := time.NewTicker(15 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-tick.C:
				fmt.Fprintf(os.Stderr, "    loaded %d/%d keys in %.0fs\n", doneKeys.Load(), n, time.Since(start).Seconds())
			}
		}
	}()
	wg.Wait()
	close(progressDone)
	if firstErr != nil {
		return loadStats{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return loadStats{}, err
	}
	return loadStats{keys: n, duration: time.Since(start), lastRevision: lastRev.Load()}, nil
}

// loadAttempts and loadTxnTimeout bound one batch of the load: a store that writes a
// full snapshot of a gigabyte may stall a Txn for longer than a workload's request
// timeout, and a batch of puts of fixed values can simply be sent again.
const (
	loadAttempts   = 3
	loadTxnTimeout = time.Minute
)

// commitLoadBatch commits one Txn of ops, trying again on failure.
func commitLoadBatch(ctx context.Context, cli *clientv3.Client, ops []clientv3.Op) (*clientv3.TxnResponse, error) {
	var err error
	for attempt := 1; attempt <= loadAttempts; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, loadTxnTimeout)
		var resp *clientv3.TxnResponse
		resp, err = cli.Txn(rctx).Then(ops...).Commit()
		cancel()
		if err == nil || ctx.Err() != nil {
			return resp, err
		}
		time.Sleep(time.Second)
	}
	return nil, fmt.Errorf("%d attempts: %w", loadAttempts, err)
}

// verifyResult is what reading the data set back found.
type verifyResult struct {
	ok, wrong, missing int
	duration           time.Duration
	// pages is the Ranges answered; firstPage and lastPage how long the first and
	// the last of them took, slowestPage the longest, which started at key
	// slowestFrom. A page's time growing with the keys after it (the first page
	// slowest) says the member walks the rest of the range for every page.
	pages                            int
	firstPage, lastPage, slowestPage time.Duration
	slowestFrom                      int
}

func (v verifyResult) String() string {
	return fmt.Sprintf("%d of %d keys read back intact (%d wrong, %d missing)%s", v.ok, v.ok+v.wrong+v.missing, v.wrong, v.missing, v.pageTimes())
}

// pageTimes describes the pages' times for a note, empty before the first page.
func (v verifyResult) pageTimes() string {
	if v.pages == 0 {
		return ""
	}
	return fmt.Sprintf("; %d pages of %d keys: first %s, last %s, slowest %s from key %d",
		v.pages, verifyPageKeys, v.firstPage.Round(time.Millisecond), v.lastPage.Round(time.Millisecond),
		v.slowestPage.Round(time.Millisecond), v.slowestFrom)
}

// verifyBig reads keys 0..n-1 back from endpoint with serializable Ranges of
// verifyPageKeys keys (so the member that endpoint names answers from its own store)
// and compares every value with bigValue.
func verifyBig(ctx context.Context, endpoint string, n int) (verifyResult, error) {
	conns, err := dialConns(endpoint, 1)
	if err != nil {
		return verifyResult{}, err
	}
	defer closeConns(conns)
	start := time.Now()
	var res verifyResult
	next := 0 // the index the next key should have
	from, end := bigKey(0), bigKey(n)
	for from != "" {
		pageStart := time.Now()
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		resp, err := conns[0].Get(rctx, from, clientv3.WithRange(end), clientv3.WithLimit(verifyPageKeys), clientv3.WithSerializable())
		cancel()
		if err != nil {
			return res, fmt.Errorf("reading keys from %s back after %d keys: %w", from, next, err)
		}
		took := time.Since(pageStart)
		if res.pages == 0 {
			res.firstPage = took
		}
		if took > res.slowestPage {
			res.slowestPage, res.slowestFrom = took, next
		}
		res.lastPage = took
		res.pages++
		for _, kv := range resp.Kvs {
			i, ok := bigKeyIndex(kv.Key)
			if !ok || i < next || i >= n {
				return res, fmt.Errorf("the range [%s, %s) answered key %q out of order (after key %d)", bigKey(0), end, kv.Key, next-1)
			}
			res.missing += i - next
			if bytes.Equal(kv.Value, bigValue(i)) {
				res.ok++
			} else {
				res.wrong++
			}
			next = i + 1
		}
		from = ""
		if resp.More && len(resp.Kvs) > 0 {
			from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
	res.missing += n - next
	res.duration = time.Since(start)
	return res, nil
}

// errMemberExited: the member being waited for exited.
var errMemberExited = errors.New("the member exited")

// waitFirstRead polls m with serializable Gets of key until one answers value at a
// revision of at least minRevision, and returns when that answer arrived. It returns
// errMemberExited if m's process exits, and an error after timeout. It uses a gRPC
// connection of its own that retries every 20 ms, so that the reconnection backoff
// of a client that found the port closed does not add seconds to the measurement.
func waitFirstRead(ctx context.Context, m *member, key string, value []byte, minRevision int64, timeout time.Duration) (time.Time, error) {
	conn, err := grpc.NewClient(m.endpoint(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.2, MaxDelay: 20 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	kv := pb.NewKVClient(conn)
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		if m.hasExited() {
			return time.Time{}, errMemberExited
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s served no read of %s at revision %d or later within %v; last answer: %v", m.name, key, minRevision, timeout, lastErr)
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := kv.Range(rctx, &pb.RangeRequest{Key: []byte(key), Serializable: true})
		cancel()
		switch {
		case ctx.Err() != nil:
			return time.Time{}, ctx.Err()
		case err != nil:
			lastErr = err
		case len(resp.Kvs) == 0:
			lastErr = fmt.Errorf("no key %s at revision %d", key, resp.Header.Revision)
		case !bytes.Equal(resp.Kvs[0].Value, value):
			lastErr = fmt.Errorf("key %s has a value of %d bytes that is not the one written", key, len(resp.Kvs[0].Value))
		case resp.Header.Revision < minRevision:
			lastErr = fmt.Errorf("revision %d, behind %d", resp.Header.Revision, minRevision)
		default:
			return time.Now(), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rssWatcher samples a process's VmHWM every 100 ms until it exits or stop is
// called, so that the peak of a process that is then killed (by the OOM killer) is
// known.
type rssWatcher struct {
	peakKiB atomic.Uint64
	stopCh  chan struct{}
	done    chan struct{}
}

func watchRSS(m *member) *rssWatcher {
	w := &rssWatcher{stopCh: make(chan struct{}), done: make(chan struct{})}
	pid, exited := m.cmd.Process.Pid, m.exited
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if s, err := readProc(pid); err == nil {
				w.peakKiB.Store(max(w.peakKiB.Load(), s.peakRSSKiB))
			}
			select {
			case <-tick.C:
			case <-exited:
				return
			case <-w.stopCh:
				return
			}
		}
	}()
	return w
}

// stop ends the sampling and returns the peak in MiB, with one last sample if the
// process is still there.
func (w *rssWatcher) stop(m *member) float64 {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
	}
	<-w.done
	if s, err := readProc(m.cmd.Process.Pid); err == nil && !m.hasExited() {
		w.peakKiB.Store(max(w.peakKiB.Load(), s.peakRSSKiB))
	}
	return round2(kibToMiB(w.peakKiB.Load()))
}

// dataLoad is how loading the big data set went.
type dataLoad struct {
	Keys         int     `json:"keys"`
	Seconds      float64 `json:"seconds"`
	LastRevision int64   `json:"last_revision,omitempty"`
	// CPUSeconds is all members' CPU while loading; CPUMicrosPerKey divides it by the
	// keys loaded.
	CPUSeconds      float64 `json:"members_cpu_s"`
	CPUMicrosPerKey float64 `json:"members_cpu_us_per_key"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"` // the largest member's VmHWM once loaded
}

// loadBigMeasured loads n keys of the data set through the leader and samples every
// member's CPU and memory around it.
func loadBigMeasured(ctx context.Context, c *cluster, leader *member, n int) (*dataLoad, error) {
	before, err := c.sample()
	if err != nil {
		return nil, err
	}
	ls, err := loadBig(ctx, leader.endpoint(), n)
	if err != nil {
		if aliveErr := c.checkAlive(); aliveErr != nil {
			return nil, fmt.Errorf("%w\n%w", err, aliveErr)
		}
		return nil, err
	}
	after, err := c.sample()
	if err != nil {
		return nil, err
	}
	dl := &dataLoad{Keys: n, Seconds: round2(ls.duration.Seconds()), LastRevision: ls.lastRevision}
	for i := range after {
		dl.CPUSeconds += after[i].cpuSeconds() - before[i].cpuSeconds()
		dl.PeakRSSMiB = max(dl.PeakRSSMiB, round2(kibToMiB(after[i].peakRSSKiB)))
	}
	dl.CPUSeconds = round2(dl.CPUSeconds)
	dl.CPUMicrosPerKey = round2(dl.CPUSeconds * 1e6 / float64(n))
	return dl, nil
}

// bigQuotaArgs raise both systems' space quota to 8 GiB (etcd's largest recommended)
// for the big data set: 1 GiB of values, plus the overwrites of the mixed phase that
// neither system compacts by default, would come near the default 2 GiB.
var bigQuotaArgs = []string{"--quota-backend-bytes", strconv.Itoa(8 << 30)}

// workloadClusterArgs are the members' extra flags for a run of these workloads.
func workloadClusterArgs(ws []workload) []string {
	for _, w := range ws {
		if w.op == opBigMixed {
			return bigQuotaArgs
		}
	}
	return nil
}
