package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"raftkv/server"
	"raftkv/storage"
)

// The snapshot commands: etcdctl snapshot save and etcdutl snapshot restore|status,
// for raftkv's backups (server/backup.go). A backup saved by etcdctl from raftkv
// and one saved here are the same bytes.
func (a *app) newSnapshotCommand(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "save a backup of the store, show what one holds, restore one into a new cluster",
		Args:  exactArgs(),
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
		var size int64
		err := c.first(cmd, true, func(ctx context.Context, conn *grpc.ClientConn) error {
			var err error
			size, err = saveSnapshot(ctx, conn, part)
			return err
		})
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
		if err := storage.NewOSFS().SyncDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("%s: saved, but the fsync of its directory failed: %w", path, err)
		}
		fmt.Fprintf(a.stdout, "Snapshot saved at %s\n", path)
		return nil
	}
	return cmd
}

// saveSnapshot writes the Snapshot stream to path, synced, and returns its size.
func saveSnapshot(ctx context.Context, conn *grpc.ClientConn, path string) (int64, error) {
	stream, err := pb.NewMaintenanceClient(conn).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size int64
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return size, err
		}
		n, err := f.Write(resp.Blob)
		size += int64(n)
		if err != nil {
			return size, err
		}
	}
	if err := f.Sync(); err != nil {
		return size, err
	}
	return size, f.Close()
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
