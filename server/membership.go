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

// --force-new-cluster, etcd's disaster recovery: a member restarted with it becomes
// the only voter of its cluster. With its data, its cluster id and its member id, it
// elects itself and takes writes, after the others are lost for good. Its log may end
// in entries the old cluster never committed; it commits them, as a new leader of the
// old cluster could have (their clients heard no answer, so either outcome is allowed).
// The other members must never be restarted on their old data: two of three would
// still make a quorum of the old cluster, and the two clusters would each accept
// writes.
//
// The new configuration is committed in the member's own log (force.go), so later
// starts keep it with or without the flag. Versions before that recorded it in a file
// of the data dir instead (membershipFile), which only a bootstrap configuration
// allowed; a data dir with that file is still read here, and keeps working.

// membershipFile, in the data dir, records a membership forced by --force-new-cluster
// (by versions before force.go).
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
