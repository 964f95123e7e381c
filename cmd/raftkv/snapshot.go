package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"raftkv/internal/durable"
	"raftkv/kv"
	"raftkv/server"
)

// The snapshot commands: etcdctl snapshot save and etcdutl snapshot restore|status,
// for raftkv's backups (server/backup.go). A backup saved by etcdctl from raftkv
// and one saved here are the same bytes.
func (a *app) newSnapshotCommand(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot <subcommand>",
		Short: "save a backup of the store, check one (status), restore one into a new cluster, or write one as etcd's database (to-etcd)",
		Args:  subcommandArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.newSnapshotSaveCommand(c), a.newSnapshotRestoreCommand(), a.newSnapshotStatusCommand(),
		a.newSnapshotToEtcdCommand())
	return cmd
}

// untilInterrupted runs fn, a command's work on backup files. On SIGINT or SIGTERM
// it removes the temporary files of an etcd backup being read (which fn would
// remove only as it returns) and returns at once, the command then exiting.
func untilInterrupted(fn func() error) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case s := <-sig:
		server.RemoveTempFiles()
		return fmt.Errorf("interrupted by %v", s)
	}
}

func (a *app) newSnapshotToEtcdCommand() *cobra.Command {
	var skipHashCheck bool
	cmd := &cobra.Command{
		Use:   "to-etcd BACKUP OUT",
		Short: "write a raftkv backup as etcd's database, for etcdutl snapshot restore (the way back to etcd)",
		Long: "OUT, which must not exist, gets every key with its retained history, the compaction revision,\n" +
			"the leases, users, roles and permissions of BACKUP, in etcd's bbolt schema with a SHA-256 trailer:\n" +
			"the file etcdctl snapshot save writes against etcd. Restore it with etcdutl snapshot restore OUT ...\n" +
			"It sorts the changes by revision in a temporary directory under $TMPDIR (about BACKUP's size).",
		Args: exactArgs("BACKUP", "OUT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkBackupPath(args[0]); err != nil {
				return err
			}
			var info server.BackupInfo
			err := untilInterrupted(func() (err error) {
				info, err = server.WriteEtcdBackup(args[0], args[1], skipHashCheck)
				return err
			})
			if err != nil {
				return err
			}
			compacted := "never compacted"
			if info.CompactRevision > 0 {
				compacted = fmt.Sprintf("compacted at %d", info.CompactRevision)
			}
			fmt.Fprintf(a.stdout, "wrote %s: etcd's database at revision %d (%d keys, %s)\n",
				args[1], info.Revision, info.TotalKeys, compacted)
			return nil
		},
	}
	cmd.Flags().BoolVar(&skipHashCheck, "skip-hash-check", false, "Read a backup without checking its SHA-256 trailer.")
	return cmd
}

func (a *app) newSnapshotSaveCommand(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "stream a backup of the store from the first endpoint that answers into FILE",
		Long: "The backup is of one revision, every key with its retained history, the leases and auth,\n" +
			"with a SHA-256 trailer, as etcdctl snapshot save writes it. Raise --command-timeout for a large store.",
		Args: exactArgs("FILE"),
	}
	c.register(cmd, "simple")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		path := args[0]
		part := path + ".part"
		if err := checkSaveTarget(path, part); err != nil {
			return err
		}
		var size int64
		var fileErr error // a failure of the local file, which no other endpoint mends
		err := c.first(cmd, true, func(ctx context.Context, conn *grpc.ClientConn) error {
			var err error
			size, fileErr, err = saveSnapshot(ctx, conn, part)
			if fileErr != nil {
				return fileErr
			}
			return err
		})
		if fileErr != nil {
			_ = os.Remove(part)
			return fmt.Errorf("cannot write the backup to %s: %v", path, fileErr)
		}
		if err != nil {
			_ = os.Remove(part)
			return err
		}
		if size%512 != sha256.Size {
			_ = os.Remove(part)
			return fmt.Errorf("the member sent %d bytes, without the SHA-256 trailer a backup ends with", size)
		}
		if err := os.Rename(part, path); err != nil {
			return err
		}
		if err := durable.SyncDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("%s: saved, but the fsync of its directory failed: %w", path, err)
		}
		fmt.Fprintf(a.stdout, "Snapshot saved at %s\n", path)
		return nil
	}
	return cmd
}

// checkDataDir refuses a --data-dir that restore cannot create, a file or a path
// under one, before the backup is read.
func checkDataDir(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil {
			switch {
			case st.IsDir():
				return nil
			case p == dir:
				return usageErrorf("--data-dir %q is a file, not a directory; restore creates the data dir: name one that does not exist", dir)
			}
			return usageErrorf("--data-dir %q cannot be created: %s is a file; name a data dir whose parents are directories", dir, p)
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

// checkBackupPath refuses a backup FILE that is a directory, which the backup
// reader would call a file of the wrong size.
func checkBackupPath(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return usageErrorf("%s is a directory, not a backup; give the file raftkv or etcdctl snapshot save wrote", path)
	}
	return nil
}

// checkSaveTarget refuses a FILE that snapshot save cannot write, before any
// endpoint is dialled: its directory missing or not a directory, FILE a directory,
// or the directory not writable (the temporary FILE.part is created there).
func checkSaveTarget(path, part string) error {
	dir := filepath.Dir(path)
	switch st, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return usageErrorf("cannot save to %s: directory %s does not exist; create it, or give a path in an existing directory", path, dir)
	case err != nil:
		return fmt.Errorf("cannot save to %s: %v", path, err)
	case !st.IsDir():
		return usageErrorf("cannot save to %s: %s is not a directory; give a path in a directory", path, dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return usageErrorf("cannot save to %s: it is a directory; give a file name, e.g. %s", path, filepath.Join(path, "snapshot.db"))
	}
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cannot save to %s: cannot create a file in %s: %v", path, dir, unwrapPath(err))
	}
	return f.Close()
}

// saveSnapshot writes the Snapshot stream to path, synced, and returns its size.
// fileErr is a failure to write path; err, one of the stream.
func saveSnapshot(ctx context.Context, conn *grpc.ClientConn, path string) (size int64, fileErr, err error) {
	stream, err := pb.NewMaintenanceClient(conn).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		return 0, nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, unwrapPath(err), nil
	}
	defer f.Close()
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return size, nil, err
		}
		n, err := f.Write(resp.Blob)
		size += int64(n)
		if err != nil {
			return size, unwrapPath(err), nil
		}
	}
	if err := f.Sync(); err != nil {
		return size, unwrapPath(err), nil
	}
	return size, unwrapPath(f.Close()), nil
}

// unwrapPath strips the *fs.PathError of a write to FILE.part, which names the
// temporary file rather than the FILE the user gave.
func unwrapPath(err error) error {
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (a *app) newSnapshotRestoreCommand() *cobra.Command {
	var (
		cfg            server.RestoreConfig
		initialCluster string
		peerURLs       string
	)
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "build a data dir for one member of a new cluster from a backup (etcdutl snapshot restore)",
		Long: "Run it once per member, each with its own --name and --data-dir and the same --initial-cluster\n" +
			"and --initial-cluster-token, then start each member with those flags. The new cluster has a\n" +
			"new cluster id, the store as of the backup's revision, and the membership --initial-cluster gives.\n" +
			"FILE is a backup of raftkv's or of etcd's (etcdctl snapshot save against etcd): restoring etcd's\n" +
			"migrates its keys with their history, leases, users and roles into raftkv.",
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.BackendSeparateValueBytes < -1 {
				// The member's own refusal of the flag (server.Config's check).
				return usageErrorf("--backend-separate-value-bytes %d is out of range; give a size in bytes (1 or more), "+
					"0 for the default (%d) or -1 to keep every value with its version", cfg.BackendSeparateValueBytes, kv.DefaultSeparateValueBytes)
			}
			cfg.BackupPath = args[0]
			if cfg.Name == "" {
				cfg.Name = "default"
			}
			if peerURLs == "" {
				peerURLs = "http://127.0.0.1:2380"
			}
			cfg.InitialAdvertisePeerURLs = splitURLs(peerURLs)
			if initialCluster == "" {
				initialCluster = cfg.Name + "=" + peerURLs
			}
			cfg.InitialCluster = map[string][]string{}
			for _, part := range splitURLs(initialCluster) {
				name, u, ok := strings.Cut(part, "=")
				if !ok || name == "" || u == "" {
					return usageErrorf("--initial-cluster entry %q is not name=URL", part)
				}
				if err := checkURLs("initial-cluster", u); err != nil {
					return &usageError{err}
				}
				cfg.InitialCluster[name] = append(cfg.InitialCluster[name], u)
			}
			if cfg.DataDir == "" {
				cfg.DataDir = cfg.Name + ".raftkv"
			}
			if err := checkDataDir(cfg.DataDir); err != nil {
				return err
			}
			if err := checkBackupPath(cfg.BackupPath); err != nil {
				return err
			}
			var res server.RestoreResult
			err := untilInterrupted(func() (err error) {
				res, err = server.Restore(cfg)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "restored snapshot at revision %d (%d keys) into %s: member %x of new cluster %x\n",
				res.Revision, res.Keys, cfg.DataDir, res.MemberID, res.ClusterID)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.DataDir, "data-dir", "", "Path to the data directory to create (default: ${name}.raftkv); must not exist or be empty.")
	fs.StringVar(&cfg.Name, "name", "default", "Human-readable name for this member.")
	fs.StringVar(&initialCluster, "initial-cluster", "", "Initial cluster configuration: name=peerURL,... (default: ${name}=${initial-advertise-peer-urls}).")
	fs.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", server.DefaultInitialClusterToken, "Initial cluster token for the new cluster.")
	fs.StringVar(&peerURLs, "initial-advertise-peer-urls", "http://127.0.0.1:2380", "This member's peer URLs, as in --initial-cluster; the default is a member's own.")
	fs.BoolVar(&cfg.SkipHashCheck, "skip-hash-check", false, "Restore without checking the backup's SHA-256 trailer (needed for a file without one).")
	numberVar(fs, &cfg.BackendSeparateValueBytes, "backend-separate-value-bytes", 0, "bytes", "The --backend-separate-value-bytes the member will run with: restored values of at least\nthis many bytes are stored apart from their keys' version records (0: 128; -1: none).")
	return cmd
}

func (a *app) newSnapshotStatusCommand() *cobra.Command {
	var (
		writeOut      string
		skipHashCheck bool
	)
	cmd := &cobra.Command{
		Use:   "status FILE",
		Short: "check a backup (raftkv's or etcd's) and show its hash, revision, keys and size (etcdutl snapshot status)",
		Long: "TOTAL KEYS counts the keys with history in the backup (etcdutl counts the records of every bucket);\n" +
			"HASH is the first 4 bytes of the SHA-256 trailer (etcdutl prints a CRC-32 of the buckets), - for a file\n" +
			"without one; FORMAT is raftkv or etcd.",
		Args: exactArgs("FILE"),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if writeOut != "table" && writeOut != "json" {
				return usageErrorf("-w %q: %s prints table or json", writeOut, cmd.CommandPath())
			}
			return checkBackupPath(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var info server.BackupInfo
			err := untilInterrupted(func() (err error) {
				info, err = server.ReadBackupInfo(args[0], skipHashCheck)
				return err
			})
			if err != nil {
				return err
			}
			hash, hashNum := "-", uint32(0)
			if len(info.Hash) >= 4 {
				hash, hashNum = fmt.Sprintf("%x", info.Hash[:4]), binary.BigEndian.Uint32(info.Hash)
			}
			if writeOut == "json" {
				// A number, as etcdutl's.
				return printJSON(a.stdout, map[string]any{"hash": hashNum, "revision": info.Revision, "totalKey": info.TotalKeys,
					"totalSize": info.Size, "compactRevision": info.CompactRevision, "sha256": fmt.Sprintf("%x", info.Hash),
					"format": info.Format})
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HASH\tREVISION\tTOTAL KEYS\tTOTAL SIZE\tCOMPACT REVISION\tFORMAT")
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\n", hash, info.Revision, info.TotalKeys, humanBytes(info.Size), info.CompactRevision, info.Format)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&writeOut, "write-out", "w", "table", "Output format: table or json.")
	cmd.Flags().BoolVar(&skipHashCheck, "skip-hash-check", false, "Read a backup without checking its SHA-256 trailer (needed for a file without one, such as a copy of etcd's member/snap/db).")
	return cmd
}
