package server

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"raftkv/storage"
)

// backupMember starts one member holding about 2 MiB, and a Maintenance client
// whose flow-control windows are 64 KiB (no BDP growth): a stream it does not
// read blocks the server's Send after a few chunks.
func backupMember(t *testing.T) (*testMember, pb.MaintenanceClient) {
	t.Helper()
	m := startTestCluster(t, 1, nil)[0]
	value := make([]byte, 16<<10)
	for i := range 128 {
		retry(t, func(ctx context.Context) error {
			_, err := m.client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%03d", i), Value: value})
			return err
		})
	}
	conn, err := grpc.NewClient(m.cfg.ListenClientURLs[0][len("http://"):],
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return m, pb.NewMaintenanceClient(conn)
}

// openSpools counts the backup spool files this process holds open for m.
func openSpools(t *testing.T, m *testMember) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	prefix := filepath.Join(m.cfg.DataDir, "member", "backup-")
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, prefix) {
			n++
		}
	}
	return n
}

// readSnapshot reads a Snapshot stream to its end and returns the bytes.
func readSnapshot(stream pb.Maintenance_SnapshotClient) (int64, error) {
	var n int64
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += int64(len(resp.Blob))
	}
}

// At most backupSpoolSlots Snapshot calls hold a copy of the store at once: a
// further caller waits for a slot, and is answered with why when its deadline
// passes first. Clients that stopped reading hold their slots and spool files
// only until backupSendStall passes without progress: their streams end, the
// files close, and a waiting caller then gets its whole backup.
func TestSnapshotSpoolsBoundedAndStalledStreamsEnded(t *testing.T) {
	defer func(d time.Duration) { backupSendStall = d }(backupSendStall)
	// Long enough that the stalled streams outlive the short call below, which
	// has a deadline of its own long enough for the server's answer to beat it
	// (the server gives up a tenth early) on a loaded machine.
	backupSendStall = 8 * time.Second
	m, mc := backupMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var stalled []pb.Maintenance_SnapshotClient
	for range backupSpoolSlots {
		stream, err := mc.Snapshot(ctx, &pb.SnapshotRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil { // spooled, and sending
			t.Fatal(err)
		}
		stalled = append(stalled, stream) // and read no further
	}
	if n := openSpools(t, m); n != backupSpoolSlots {
		t.Fatalf("%d spool files open for %d streams, want %d", n, backupSpoolSlots, backupSpoolSlots)
	}

	// One more, with a short deadline: it waits, spools nothing, and says why.
	short, cancelShort := context.WithTimeout(ctx, 4*time.Second)
	defer cancelShort()
	stream, err := mc.Snapshot(short, &pb.SnapshotRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "snapshot slots") {
		t.Fatalf("a Snapshot past the slots: %v, want DeadlineExceeded naming the snapshot slots", err)
	}
	if n := openSpools(t, m); n != backupSpoolSlots {
		t.Fatalf("%d spool files open, want %d", n, backupSpoolSlots)
	}

	// One without a deadline waits until the stalled streams are ended, then
	// gets its backup whole.
	waiting, err := mc.Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	n, err := readSnapshot(waiting)
	if err != nil || n < 2<<20 {
		t.Fatalf("the waiting Snapshot read %d bytes: %v", n, err)
	}
	// It began at least 4 s into the stalled streams' 8 s, so it waited for
	// their end unless it took a slot they held.
	if waited := time.Since(started); waited < time.Second {
		t.Fatalf("the waiting Snapshot was served after %v, before the stalled streams were ended", waited)
	}
	for i, s := range stalled {
		if _, err := readSnapshot(s); status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "took none of it") {
			t.Fatalf("stalled stream %d: %v, want it ended as stalled", i, err)
		}
	}
	if err := waitFor(20*time.Second, func() bool { return openSpools(t, m) == 0 }); err != nil {
		t.Fatalf("the spool files of the ended streams: %v", err)
	}
}

// A Snapshot whose copy of the store would leave the data dir's file system less
// than backupSpoolReserve free is refused up front, naming the bytes needed and
// available, as is one that finds the space gone while it writes; neither holds
// a file or a slot afterwards.
func TestSnapshotRefusedWithoutSpace(t *testing.T) {
	m, mc := backupMember(t)
	defer func(f func(string) (storage.DiskUsage, error), every int64) {
		diskUsage, backupSpoolCheckBytes = f, every
	}(diskUsage, backupSpoolCheckBytes)
	const free = 1000
	diskUsage = func(string) (storage.DiskUsage, error) {
		return storage.DiskUsage{Total: 1 << 40, Free: backupSpoolReserve + free}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range backupSpoolSlots + 1 { // a slot held after a refusal would block the last
		stream, err := mc.Snapshot(ctx, &pb.SnapshotRequest{})
		if err == nil {
			_, err = readSnapshot(stream)
		}
		want := fmt.Sprintf("the file system has %d available", backupSpoolReserve+free)
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "needs about") ||
			!strings.Contains(err.Error(), want) {
			t.Fatalf("a Snapshot without the space for its copy: %v, want ResourceExhausted naming the bytes needed and %q", err, want)
		}
	}
	// Room at the start, gone while it writes.
	backupSpoolCheckBytes = 64 << 10
	calls := 0
	diskUsage = func(string) (storage.DiskUsage, error) {
		calls++
		if calls == 1 {
			return storage.DiskUsage{Total: 1 << 40, Free: 1 << 40}, nil
		}
		return storage.DiskUsage{Total: 1 << 40, Free: backupSpoolReserve + free}, nil
	}
	stream, err := mc.Snapshot(ctx, &pb.SnapshotRequest{})
	if err == nil {
		_, err = readSnapshot(stream)
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "no space for the snapshot") {
		t.Fatalf("a Snapshot whose disk filled while it spooled: %v, want ResourceExhausted", err)
	}
	if n := openSpools(t, m); n != 0 {
		t.Fatalf("%d spool files open after the refusals", n)
	}
	diskUsage = func(string) (storage.DiskUsage, error) { return storage.DiskUsage{Total: 1 << 40, Free: 1 << 40}, nil }
	stream, err = mc.Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := readSnapshot(stream); err != nil || n < 2<<20 {
		t.Fatalf("a Snapshot with room, after the refusals: %d bytes, %v", n, err)
	}
	// A small volume keeps an eighth of itself free, not backupSpoolReserve: a
	// 256 MiB one with 96 MiB free takes a backup of a few MiB.
	diskUsage = func(string) (storage.DiskUsage, error) {
		return storage.DiskUsage{Total: 256 << 20, Free: 96 << 20}, nil
	}
	stream, err = mc.Snapshot(ctx, &pb.SnapshotRequest{})
	if err == nil {
		_, err = readSnapshot(stream)
	}
	if err != nil {
		t.Fatalf("a Snapshot on a 256 MiB volume with 96 MiB free: %v", err)
	}
}
