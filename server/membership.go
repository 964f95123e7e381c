package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Membership changes go through the Cluster service (cluster.go); this file is
// --force-new-cluster, etcd's disaster recovery. A member restarted with it becomes
// the only voter of its cluster: with its data, its cluster id and its member id, it
// elects itself and takes writes, after the others are lost for good. Its log may end
// in entries the old cluster never committed; it commits them, as a new leader of the
// old cluster could have (their clients heard no answer, so either outcome is allowed).
//
// It works while Raft's configuration is not in the log (raft.Config.Peers, before
// any change through the Cluster service): the new one is recorded in the data dir (membershipFile) before the node starts, and every later
// start reads it: the member stays a cluster of one with or without the flag, and its
// --initial-cluster no longer matters. The other members must never be restarted on
// their old data: two of three would still make a quorum of the old cluster, and the
// two clusters would each accept writes.

// membershipFile, in the data dir, records a membership forced by --force-new-cluster.
const membershipFile = "membership"

// membership is the cluster's id and its voters.
type membership struct {
	clusterID uint64
	voters    []uint64
}

func membershipPath(dataDir string) string { return filepath.Join(dataDir, "member", membershipFile) }

// readMembership returns the membership recorded in dataDir, or nil if none is.
func readMembership(dataDir string) (*membership, error) {
	path := membershipPath(dataDir)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the membership recorded by --force-new-cluster: %w", err)
	}
	m := &membership{}
	fields := strings.Fields(string(data))
	if len(fields) < 4 || fields[0] != "cluster" || fields[2] != "voters" {
		return nil, fmt.Errorf("%s is not a membership record (want \"cluster <id> voters <id>...\"); "+
			"it was written by --force-new-cluster, restore it or start with --force-new-cluster again", path)
	}
	if m.clusterID, err = strconv.ParseUint(fields[1], 16, 64); err != nil || m.clusterID == 0 {
		return nil, fmt.Errorf("%s: cluster id %q is not a non-zero hex number", path, fields[1])
	}
	for _, f := range fields[3:] {
		id, err := strconv.ParseUint(f, 16, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%s: voter id %q is not a non-zero hex number", path, f)
		}
		m.voters = append(m.voters, id)
	}
	return m, nil
}

// writeMembership records m in dataDir durably: a temporary file, synced, renamed
// into place, and the directory synced.
func writeMembership(dataDir string, m membership) error {
	path := membershipPath(dataDir)
	var b strings.Builder
	fmt.Fprintf(&b, "cluster %x\nvoters", m.clusterID)
	for _, id := range m.voters {
		fmt.Fprintf(&b, " %x", id)
	}
	b.WriteString("\n")
	tmp := path + ".tmp"
	err := func() error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteString(b.String())
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err == nil {
			err = syncDir(filepath.Dir(path))
		}
		return err
	}()
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("recording the membership forced by --force-new-cluster in %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// useMembership makes m the member's cluster: its id, and its voters as the peers.
// It returns the voters.
func (s *Server) useMembership(m *membership) ([]uint64, error) {
	if !slices.Contains(m.voters, s.id) {
		return nil, fmt.Errorf("%s records a cluster of members %x, which does not include this member (%x): "+
			"its peer URLs or --initial-cluster-token differ from when it ran with --force-new-cluster",
			membershipPath(s.cfg.DataDir), m.voters, s.id)
	}
	s.clusterID = m.clusterID
	s.forcedVoters = slices.Clone(m.voters)
	for id := range s.peers {
		if !slices.Contains(m.voters, id) {
			delete(s.peers, id)
		}
	}
	return slices.Clone(m.voters), nil
}
