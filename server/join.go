package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"raftkv/internal/durable"
	"raftkv/storage"
	"raftkv/transport"
)

// A member's identity (its cluster id, its member id, and the member list it started
// from) is decided once, when its data dir is new, and recorded there
// (bootstrapFile); every later start reads it and ignores --initial-cluster, as etcd
// ignores it for a member with data. It is decided one of two ways:
//
//   - Bootstrap (--initial-cluster-state new): from --initial-cluster and
//     --initial-cluster-token, the same on every initial member.
//   - Join (--initial-cluster-state existing, an empty data dir): the member was
//     added first (MemberAdd, which chose its id), and its --initial-cluster lists
//     the running members and itself, as `etcdctl member add` prints. It asks the
//     running members' peer URLs what the cluster is (transport.FetchCluster), finds
//     itself by its peer URLs, and starts with an empty log and no bootstrap
//     configuration: the leader sends it the log, or a snapshot, from which it learns
//     the configuration and the state.
//
// A data dir from before this file existed has none; it is written then from
// --initial-cluster, which is what that member bootstrapped from.

const bootstrapFile = "cluster.json"

// joinTimeout bounds a joining member's search for a running member to ask, and
// joinNotListedWait how long it keeps asking members that answer without listing it.
const (
	joinTimeout       = 20 * time.Second
	joinNotListedWait = 5 * time.Second
)

type bootstrapRecord struct {
	ClusterID string `json:"cluster_id"`
	MemberID  string `json:"member_id"`
	// Joined: the member joined a running cluster; it has no bootstrap
	// configuration (raft.Config.Peers).
	Joined  bool            `json:"joined"`
	Members []bootstrapPeer `json:"members"`
}

type bootstrapPeer struct {
	ID        string   `json:"id"`
	Name      string   `json:"name,omitempty"`
	PeerURLs  []string `json:"peer_urls"`
	IsLearner bool     `json:"is_learner,omitempty"`
	IsRemoved bool     `json:"is_removed,omitempty"`
}

func bootstrapPath(dataDir string) string { return filepath.Join(dataDir, "member", bootstrapFile) }

// readBootstrap returns the record in dataDir, or nil if there is none.
func readBootstrap(dataDir string) (*bootstrapRecord, error) {
	path := bootstrapPath(dataDir)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading this member's cluster record: %w", err)
	}
	rec := &bootstrapRecord{}
	if err := json.Unmarshal(data, rec); err != nil {
		return nil, fmt.Errorf("%s does not parse (%v); it records this member's cluster and id, written when the data dir was new: "+
			"restore it from a backup of the data dir", path, err)
	}
	return rec, nil
}

// writeBootstrap records rec in dataDir durably.
func writeBootstrap(dataDir string, rec *bootstrapRecord) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	path := bootstrapPath(dataDir)
	if err := durable.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(path, append(data, '\n'), 0o644)
}

// recordOf is the record of the member list s holds now.
func (s *Server) recordOf(joined bool) *bootstrapRecord {
	return newBootstrapRecord(s.clusterID, s.id, joined, s.peers)
}

func newBootstrapRecord(clusterID, self uint64, joined bool, peers map[uint64]member) *bootstrapRecord {
	rec := &bootstrapRecord{ClusterID: hexID(clusterID), MemberID: hexID(self), Joined: joined}
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		m := peers[id]
		rec.Members = append(rec.Members, bootstrapPeer{ID: hexID(id), Name: m.Name, PeerURLs: m.PeerURLs,
			IsLearner: m.IsLearner, IsRemoved: m.isRemoved})
	}
	return rec
}

// useBootstrap makes rec the member's identity and returns raft's bootstrap voters
// (none for a member that joined).
func (s *Server) useBootstrap(rec *bootstrapRecord) ([]uint64, error) {
	bad := func(what, v string) error {
		return fmt.Errorf("%s: %s %q is not a non-zero hex id; restore the file from a backup of the data dir",
			bootstrapPath(s.cfg.DataDir), what, v)
	}
	var err error
	if s.clusterID, err = strconv.ParseUint(rec.ClusterID, 16, 64); err != nil || s.clusterID == 0 {
		return nil, bad("cluster_id", rec.ClusterID)
	}
	if s.id, err = strconv.ParseUint(rec.MemberID, 16, 64); err != nil || s.id == 0 {
		return nil, bad("member_id", rec.MemberID)
	}
	s.peers = map[uint64]member{}
	var voters []uint64
	for _, p := range rec.Members {
		id, err := strconv.ParseUint(p.ID, 16, 64)
		if err != nil || id == 0 {
			return nil, bad("member id", p.ID)
		}
		s.peers[id] = member{ID: id, Name: p.Name, PeerURLs: p.PeerURLs, IsLearner: p.IsLearner, isRemoved: p.IsRemoved}
		if !p.IsLearner && !p.IsRemoved {
			voters = append(voters, id)
		}
	}
	s.logger = s.cfg.Logger.With("member", hexID(s.id), "name", s.cfg.Name)
	if rec.Joined {
		return nil, nil
	}
	return voters, nil
}

// hasState reports whether the data dir (or the WAL dir) holds a log or snapshots:
// storage's own records (its locks, the WAL's member record, temporary files) do
// not count, so a first start that failed after writing one joins again.
func hasState(cfg Config) bool {
	dirs := []string{filepath.Join(cfg.DataDir, "member", "wal"), filepath.Join(cfg.DataDir, "member", "snap")}
	if cfg.WALDir != "" {
		dirs = append(dirs, cfg.WALDir)
	}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !storage.IsBookkeeping(e.Name()) {
				return true
			}
		}
	}
	return false
}

// join asks the running members named in --initial-cluster what the cluster is,
// and finds this member in it by its peer URLs.
func (s *Server) join() (*bootstrapRecord, error) {
	if len(s.cfg.InitialCluster) < 2 {
		return nil, fmt.Errorf("--initial-cluster-state existing, but --data-dir %q holds no state of this member and "+
			"--initial-cluster names no other member to join the cluster through: list the running members and this one, "+
			"as `raftkv member add` prints", s.cfg.DataDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
	defer cancel()
	var lastErr error
	// A member that does not list this one may not have applied its addition yet
	// (a follower behind the leader): ask the others, and again, for a while.
	var notListedSince time.Time
	for {
		for _, name := range slices.Sorted(maps.Keys(s.cfg.InitialCluster)) {
			if name == s.cfg.Name {
				continue
			}
			for _, u := range s.cfg.InitialCluster[name] {
				addr, err := peerAddr(u)
				if err != nil {
					return nil, err
				}
				actx, acancel := context.WithTimeout(ctx, 3*time.Second)
				clusterID, info, err := transport.FetchCluster(actx, addr, s.tls.peerDial, s.id)
				acancel()
				if err != nil {
					lastErr = fmt.Errorf("member %q at %s: %w", name, u, err)
					continue
				}
				members, _, err := decodeMembers(info)
				if err != nil {
					lastErr = fmt.Errorf("member %q at %s answered a member list that does not decode: %w", name, u, err)
					continue
				}
				rec, err := s.findSelf(clusterID, members, u)
				if err == nil {
					return rec, nil
				}
				if notListedSince.IsZero() {
					notListedSince = time.Now()
				}
				if time.Since(notListedSince) > joinNotListedWait {
					return nil, err
				}
				lastErr = err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("--initial-cluster-state existing with an empty data dir: no member of --initial-cluster answered "+
				"within %v to tell this member the cluster it joins (last: %v); list the running members' peer URLs in --initial-cluster",
				joinTimeout, lastErr)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// findSelf picks this member's record from the member list a running member (asked
// at url) gave.
func (s *Server) findSelf(clusterID uint64, members []member, url string) (*bootstrapRecord, error) {
	own := s.cfg.InitialCluster[s.cfg.Name]
	s.peers = map[uint64]member{}
	var self *member
	for i, m := range members {
		s.peers[m.ID] = m
		if !m.isRemoved && samePeerURLs(m.PeerURLs, own) {
			self = &members[i]
		}
	}
	if self == nil {
		return nil, fmt.Errorf("--initial-cluster-state existing: the cluster %x (asked at %s) has no member with this member's "+
			"peer URLs %s; add it first (raftkv member add %s --peer-urls %s, or etcdctl member add), then start it",
			clusterID, url, strings.Join(own, ","), s.cfg.Name, strings.Join(own, ","))
	}
	s.id, s.clusterID = self.ID, clusterID
	s.logger = s.cfg.Logger.With("member", hexID(s.id), "name", s.cfg.Name)
	s.logger.Info("joining a running cluster", "cluster", hexID(clusterID), "asked", url, "members", len(members))
	return s.recordOf(true), nil
}
