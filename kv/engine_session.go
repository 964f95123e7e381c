package kv

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Client sessions in the engine (session.go has their semantics). The table stays
// in memory, bounded by Config.MaxSessions, and each change to it is a record
// written in the batch of the entry that made it:
//
//	'c' clientID:8 -> lastUsed:uvarint seq:uvarint result (codec_result.go)
//
// lastUsed is the log index of the client's last use, so that opening the engine
// rebuilds the table in the same least-recently-used order every replica keeps:
// each entry uses at most one session, so the indexes never tie. An evicted
// client's record is deleted in the same batch as the use that evicted it.

const engineSessionPrefix = 'c'

func sessionKey(clientID uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{engineSessionPrefix}, clientID)
}

// applySession is state.applyCommand's session logic for the engine: it answers
// a retry from sessions, or runs execute and records its result, writing what
// changed into w as entry index.
func (w *engineWrite) applySession(sessions *sessionTable, cmd *Command, index uint64, execute func() Result) Result {
	if cmd.ClientID != 0 {
		if sess := sessions.get(cmd.ClientID); sess != nil {
			switch {
			case cmd.Seq == sess.seq:
				sessions.touch(sess)
				w.writeSession(sess.clientID, sess.seq, &sess.result, index)
				return sess.result
			case cmd.Seq < sess.seq:
				sessions.touch(sess)
				w.writeSession(sess.clientID, sess.seq, &sess.result, index)
				return Result{Err: ErrStaleSequence}
			}
		}
	}
	res := execute()
	if cmd.ClientID != 0 {
		if evicted := sessions.record(cmd.ClientID, cmd.Seq, res); evicted != 0 {
			_ = w.b.Delete(sessionKey(evicted), nil)
		}
		w.writeSession(cmd.ClientID, cmd.Seq, &res, index)
	}
	return res
}

func (w *engineWrite) writeSession(clientID, seq uint64, res *Result, lastUsed uint64) {
	var e encoder
	e.uvarint(lastUsed)
	e.uvarint(seq)
	e.result(res)
	if e.err != nil {
		panic(fmt.Sprintf("kv: encoding the session of client %d: %v", clientID, e.err))
	}
	_ = w.b.Set(sessionKey(clientID), e.buf, nil)
}

// loadSessions reads the session records into a table of at most maxSessions,
// least recently used first, as they were when written.
func (e *engine) loadSessions(maxSessions int) (sessionTable, error) {
	t := newSessionTable(maxSessions)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{engineSessionPrefix}, UpperBound: []byte{engineSessionPrefix + 1}})
	if err != nil {
		return t, err
	}
	defer it.Close()
	type stored struct {
		clientID, lastUsed, seq uint64
		result                  Result
	}
	var all []stored
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		d := decoder{buf: it.Value(), copyBytes: true}
		s := stored{lastUsed: d.uvarint(), seq: d.uvarint()}
		s.result = d.result()
		d.end()
		if len(k) != 9 || d.err != nil {
			return t, fmt.Errorf("%w: session record %x: %v", ErrCorruptEngine, k, d.err)
		}
		s.clientID = binary.BigEndian.Uint64(k[1:])
		all = append(all, s)
	}
	if err := it.Error(); err != nil {
		return t, err
	}
	if len(all) > maxSessions {
		return t, fmt.Errorf("%w: %d sessions but MaxSessions is %d; every replica must run with the same Config",
			ErrCorruptEngine, len(all), maxSessions)
	}
	slices.SortFunc(all, func(a, b stored) int { return cmp.Compare(a.lastUsed, b.lastUsed) })
	for _, s := range all {
		t.record(s.clientID, s.seq, s.result)
	}
	return t, nil
}
