package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"raftkv/storage"
)

// Any error wrapping ENOSPC (here as the kv engine would report it) stops the member
// with the one disk-full line naming its data dir; the first cause wins.
func TestStopOnFatalDescribesAnyFullDisk(t *testing.T) {
	m := startTestCluster(t, 1, nil)[0]
	engineErr := &os.PathError{Op: "write", Path: filepath.Join(m.cfg.DataDir, "member", "kv", "000012.sst"), Err: syscall.ENOSPC}
	m.srv.stopOnFatal(fmt.Errorf("pebble: flushing the memtable: %w", engineErr))
	m.srv.stopOnFatal(errors.New("a later failure")) // ignored: the first is the one to fix
	select {
	case <-m.srv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after stopOnFatal")
	}
	err := m.srv.Err()
	var nse *storage.NoSpaceError
	if !errors.As(err, &nse) || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, storage.ErrDiskFull) {
		t.Fatalf("Err after a full disk: %v (%T); want a *storage.NoSpaceError wrapping ENOSPC", err, err)
	}
	msg := err.Error()
	for _, want := range []string{"disk full", filepath.Join(m.cfg.DataDir, "member"), "000012.sst", "free", "restart"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stop line %q lacks %q", msg, want)
		}
	}
	if nse.Usage.Total == 0 {
		t.Errorf("stop line %q does not say how large and how free the file system is", msg)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("stop line spans lines: %q", msg)
	}
}

// Other fatal errors pass through as they are.
func TestStopOnFatalKeepsOtherErrors(t *testing.T) {
	m := startTestCluster(t, 1, nil)[0]
	cause := errors.New("kv: applying entry 12: engine closed")
	m.srv.stopOnFatal(cause)
	<-m.srv.Done()
	if err := m.srv.Err(); err != cause {
		t.Fatalf("Err: %v; want the error stopOnFatal got", err)
	}
}

// The storage's disk-full error is the stop line as it is, without the layers that
// passed it on.
func TestStopOnFatalUnwrapsStorageDiskFull(t *testing.T) {
	m := startTestCluster(t, 1, nil)[0]
	wal := filepath.Join(m.cfg.DataDir, "member", "wal", "0000000000000001.wal")
	nse := storage.NewNoSpaceError(storage.NewOSFS(), "write at offset 4096 of WAL segment", wal, 8192,
		&os.PathError{Op: "write", Path: wal, Err: syscall.ENOSPC})
	m.srv.stopOnFatal(fmt.Errorf("raft: waiting for a write to be durable: %w", nse))
	<-m.srv.Done()
	err := m.srv.Err()
	if err != error(nse) {
		t.Fatalf("Err: %v; want the storage's disk-full error itself", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "disk full: write at offset 4096 of WAL segment "+wal+" needed 8.0 KiB, but the file system") {
		t.Errorf("stop line %q; want it to start with what was written, where, and how much it needed", msg)
	}
}
