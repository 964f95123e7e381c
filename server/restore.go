package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"raftkv/internal/durable"
	"raftkv/kv"
	"raftkv/raft"
	"raftkv/storage"
)

// RestoreConfig says where and as what member to restore a backup, as etcdutl
// snapshot restore's flags do.
type RestoreConfig struct {
	// BackupPath is the backup file (raftkv snapshot save, etcdctl snapshot save).
	BackupPath string
	// DataDir must not exist, or be empty: restore creates it.
	DataDir string
	// Name, InitialCluster, InitialClusterToken and InitialAdvertisePeerURLs are the
	// flags the member will be started with; the new cluster's membership and id
	// come from them, so every member of it is restored with the same ones.
	Name                     string
	InitialCluster           map[string][]string
	InitialClusterToken      string
	InitialAdvertisePeerURLs []string
	// SkipHashCheck restores a backup without checking its SHA-256 trailer (or one
	// that has none).
	SkipHashCheck bool
	// BackendSeparateValueBytes is the member's --backend-separate-value-bytes
	// (kv.Config.SeparateValueBytes), so that the restored store keeps its values
	// as the member will write its own; 0 takes kv's default, -1 separates none.
	BackendSeparateValueBytes int
	Logger                    *slog.Logger
}

// restoreIndex and restoreTerm are the Raft position of a restored store: the
// snapshot every member of the new cluster starts from. All members restore the
// same backup with the same flags, so all hold the same snapshot at the same index,
// and their logs match from there (Log Matching, §5.3).
const (
	restoreIndex = 1
	restoreTerm  = 1
)

// RestoreResult says what a restore built.
type RestoreResult struct {
	MemberID, ClusterID uint64
	Revision            int64
	Keys                uint64
}

// Restore builds a fresh data dir for member cfg.Name of a new cluster from a
// backup: the store as of the backup's revision (every key's retained history,
// the compaction revision, leases and auth), with the membership cfg's flags give.
// The member is then started with those same flags. Like etcdutl, it refuses a
// data dir that exists and is not empty, and a backup whose checksum does not
// match; on error it leaves no data dir behind (in an existing empty one, nothing
// it wrote).
func Restore(cfg RestoreConfig) (res RestoreResult, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InitialClusterToken == "" {
		cfg.InitialClusterToken = DefaultInitialClusterToken
	}
	if cfg.DataDir == "" {
		return res, errors.New("--data-dir is required: the directory the restored member will start from")
	}
	urls, ok := cfg.InitialCluster[cfg.Name]
	if !ok {
		return res, fmt.Errorf("--name %q is not in --initial-cluster %v; name this member as --initial-cluster does", cfg.Name,
			slices.Sorted(maps.Keys(cfg.InitialCluster)))
	}
	if len(cfg.InitialAdvertisePeerURLs) > 0 &&
		!slices.Equal(slices.Sorted(slices.Values(urls)), slices.Sorted(slices.Values(cfg.InitialAdvertisePeerURLs))) {
		return res, fmt.Errorf("--initial-advertise-peer-urls %v differ from %v, which --initial-cluster gives member %q; make them the same",
			cfg.InitialAdvertisePeerURLs, urls, cfg.Name)
	}
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 {
		return res, fmt.Errorf("--data-dir %q exists and is not empty; restore builds a new data dir: name one that does not exist", cfg.DataDir)
	}
	peers := map[uint64]member{}
	var ids []uint64
	for name, u := range cfg.InitialCluster {
		id := memberID(u, cfg.InitialClusterToken)
		if other, dup := peers[id]; dup {
			return res, fmt.Errorf("--initial-cluster: members %q and %q have the same peer URLs %v", name, other.Name, u)
		}
		peers[id] = member{ID: id, Name: name, PeerURLs: slices.Clone(u)}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	res.MemberID, res.ClusterID = memberID(urls, cfg.InitialClusterToken), clusterID(ids, cfg.InitialClusterToken)

	f, br, err := openBackup(cfg.BackupPath, cfg.SkipHashCheck, "restore")
	if err != nil {
		return res, err
	}
	defer f.Close()

	// Everything restore writes is under member/ (the bootstrap record too): on an
	// error, remove the topmost directory it made, the data dir itself or, in an
	// existing empty one, member/, so that the same restore can be run again.
	memberDir := filepath.Join(cfg.DataDir, "member")
	created := missingDirs(memberDir)
	defer func() {
		if err != nil && len(created) > 0 {
			_ = os.RemoveAll(created[0])
		}
	}()
	if err := durable.MkdirAll(memberDir, 0o700); err != nil {
		return res, err
	}
	initial := make([]member, 0, len(peers))
	for _, m := range peers {
		initial = append(initial, m)
	}
	sm, err := newStateMachine(kv.Config{SeparateValueBytes: cfg.BackendSeparateValueBytes}, memberDir, initial, nil)
	if err != nil {
		return res, err
	}
	defer sm.store.Close()
	info := br.info
	if err = br.importInto(sm.store, restoreIndex); err != nil {
		return res, fmt.Errorf("%s: %w", cfg.BackupPath, err)
	}
	if err := sm.store.SetMeta(metaServerState, sm.encodeServerState()); err != nil {
		return res, err
	}
	if err := sm.store.SetMeta(metaClusterID, binary.BigEndian.AppendUint64(nil, res.ClusterID)); err != nil {
		return res, err
	}
	if _, err := sm.store.Flush(); err != nil {
		return res, err
	}
	st, err := storage.Open(storage.NewOSFS(), memberDir, storage.Options{ClusterID: res.ClusterID, MemberID: res.MemberID, Logger: cfg.Logger})
	if err != nil {
		return res, err
	}
	err = st.ApplySnapshot(raft.Snapshot{Index: restoreIndex, Term: restoreTerm, Membership: raft.Membership{Voters: ids},
		Data: localSnapshotData()})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, err
	}
	// The member's identity is the restore's, as etcdutl's is: its start reads it
	// and ignores --initial-cluster and the other bootstrap flags (join.go).
	if err = writeBootstrap(cfg.DataDir, newBootstrapRecord(res.ClusterID, res.MemberID, false, peers)); err != nil {
		return res, err
	}
	res.Revision, res.Keys = info.Revision, info.TotalKeys
	return res, nil
}
