package storage

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// walMemberMarker is the file in the WAL dir that names the member whose log and
// hard state (its term and vote) the WAL holds, when Options.MemberID is set. A WAL
// of another member of the same cluster passes every other check (its cluster id
// and terms agree), and a node started on it would take that member's vote as its
// own and could vote twice in a term (Raft §5.2 allows one vote per term).
const walMemberMarker = "member"

// checkWALMember refuses a WAL that is another member's than id: a WAL dir that
// records another member, or segments whose headers name one (format 3, segment.go;
// recovery has checked that they all name the same). It records id in a WAL dir that
// records none (a new WAL, or one written before the record was). Nothing is checked
// when id is 0.
func (s *Storage) checkWALMember(id uint64, rec *walRecovery) error {
	if id == 0 {
		return nil
	}
	refuse := func(other uint64, source string) error {
		return fmt.Errorf("storage: the WAL in %s holds the log and votes of member %x (%s), but this node is member %x; "+
			"start member %x on it, or give this node its own data dir (or --wal-dir)", s.walDir, other, source, id, other)
	}
	if rec.memberID != 0 && rec.memberID != id {
		return refuse(rec.memberID, rec.memberSegment)
	}
	path := filepath.Join(s.walDir, walMemberMarker)
	value, found, err := readMarker(s.fs, path, "a WAL member record")
	if err != nil {
		return err
	}
	if !found {
		record := strconv.FormatUint(id, 16)
		if err := writeMarker(s.fs, s.walDir, walMemberMarker, record); err != nil {
			return fatalError(s.fs, "recording the WAL's member in", path, int64(len(record)+1), err)
		}
		return nil
	}
	recorded, err := strconv.ParseUint(value, 16, 64)
	if err != nil || recorded == 0 {
		return fmt.Errorf("storage: %s records %q, not a member id in hex", path, value)
	}
	if recorded != id {
		return refuse(recorded, path)
	}
	return nil
}

// WALDir is the directory that holds the WAL's segments.
func (s *Storage) WALDir() string { return s.walDir }

// OlderBuildsWAL reports whether, as Open found it, only older builds had written
// records to the WAL: it has segments of a format before the one this build writes
// (3), and no record past a segment's start in one of format 3. Open itself starts a
// segment of format 3 on such a WAL but writes no record in it (unless it adopts a
// snapshot file whose record was lost), so a start that fails before anything is
// appended leaves it true; the first entry, hard state or snapshot this build
// appends ends it.
func (s *Storage) OlderBuildsWAL() bool { return s.olderBuildsWAL }

// IsBookkeeping reports whether a file of a WAL or snapshot directory is one of
// storage's own records rather than a log segment or a snapshot: a lock, the member
// record, or a temporary file a crash left. A directory with nothing else holds no
// state of the node.
func IsBookkeeping(name string) bool {
	return name == lockFileName || name == walMemberMarker || strings.HasSuffix(name, tmpSuffix)
}
