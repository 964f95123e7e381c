package server

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Every log entry the server proposes is an envelope: a kind byte, who proposed it
// and its number among that proposer's proposals (so a waiting request recognises its
// own entry, wherever it was proposed), and the payload. A proposal forwarded to the
// leader may be sent again (see proposeResending); its envelope is marked resendable
// and carries the proposer's lowest pending number, which the state machine needs to
// apply it at most once (kv.ProposalID).
//
//	v2: kind|envelopeV2[|resendable](1) proposer(8, big-endian) uvarint seq
//	    [uvarint lowestPending, if resendable] payload
//	v1: kind(1) uvarint requestID payload
//
// Version 1 is what members before it wrote; it is still read, as an entry of no
// proposer this member knows.
const (
	// kindKV carries an encoded kv.Command.
	kindKV byte = 1
	// kindMember carries a member's attributes (name and URLs), published by each
	// member when it starts so every member can list them.
	kindMember byte = 2
	// kindConf is the envelope in a configuration change's Context (members.go):
	// its payload is the member record the change adds, or names.
	kindConf byte = 3
	// kindMemberUpdate carries a member's new peer URLs (MemberUpdate): an ordinary
	// entry, as the change leaves Raft's configuration as it is.
	kindMemberUpdate byte = 4

	// envelopeV2 and envelopeResendable are flags in the kind byte.
	envelopeV2         byte = 0x40
	envelopeResendable byte = 0x80
	kindMask           byte = 0x3f
)

var errBadEnvelope = errors.New("server: log entry is not a valid envelope")

// envelope is a decoded log entry.
type envelope struct {
	kind byte
	// proposer is the proposing server's random id (Server.proposer), 0 for a
	// version 1 entry; seq numbers the proposer's proposals.
	proposer, seq uint64
	// resendable: the proposer may put copies of this entry in the log; it carries
	// lowestPending, the lowest seq the proposer still waited for when it sent it.
	resendable    bool
	lowestPending uint64
	payload       []byte
}

func encodeEnvelope(e envelope) []byte {
	b := make([]byte, 0, 1+8+2*binary.MaxVarintLen64+len(e.payload))
	head := e.kind | envelopeV2
	if e.resendable {
		head |= envelopeResendable
	}
	b = append(b, head)
	b = binary.BigEndian.AppendUint64(b, e.proposer)
	b = binary.AppendUvarint(b, e.seq)
	if e.resendable {
		b = binary.AppendUvarint(b, e.lowestPending)
	}
	return append(b, e.payload...)
}

func decodeEnvelope(data []byte) (envelope, error) {
	if len(data) < 2 {
		return envelope{}, errBadEnvelope
	}
	head := data[0]
	e := envelope{kind: head & kindMask}
	if head&envelopeV2 == 0 {
		requestID, n := binary.Uvarint(data[1:])
		if n <= 0 || head&envelopeResendable != 0 {
			return envelope{}, errBadEnvelope
		}
		e.seq, e.payload = requestID, data[1+n:]
		return e, nil
	}
	if len(data) < 1+8+1 {
		return envelope{}, errBadEnvelope
	}
	e.proposer = binary.BigEndian.Uint64(data[1:9])
	rest := data[9:]
	var ok bool
	if e.seq, rest, ok = readUvarint(rest); !ok {
		return envelope{}, errBadEnvelope
	}
	if head&envelopeResendable != 0 {
		e.resendable = true
		if e.lowestPending, rest, ok = readUvarint(rest); !ok {
			return envelope{}, errBadEnvelope
		}
	}
	e.payload = rest
	return e, nil
}

// member is what the cluster knows of one member.
type member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	// IsLearner: a member that receives the log but does not vote.
	IsLearner bool
	// isRemoved marks a member removed from the cluster: kept, as etcd keeps its
	// removed ids, so its streams stay refused (members.go); never listed.
	isRemoved bool
}

// Flags in a member record's last byte, which records before them lack.
const (
	memberFlagLearner byte = 1 << 0
	memberFlagRemoved byte = 1 << 1
)

const maxMemberURLs = 64

func (m *member) encode() []byte {
	b := binary.AppendUvarint(nil, m.ID)
	b = appendString(b, m.Name)
	for _, urls := range [][]string{m.PeerURLs, m.ClientURLs} {
		b = binary.AppendUvarint(b, uint64(len(urls)))
		for _, u := range urls {
			b = appendString(b, u)
		}
	}
	var flags byte
	if m.IsLearner {
		flags |= memberFlagLearner
	}
	if m.isRemoved {
		flags |= memberFlagRemoved
	}
	return append(b, flags)
}

func decodeMember(data []byte) (member, []byte, error) {
	var m member
	var ok bool
	if m.ID, data, ok = readUvarint(data); !ok {
		return m, nil, fmt.Errorf("server: member record: bad id")
	}
	if m.Name, data, ok = readString(data); !ok {
		return m, nil, fmt.Errorf("server: member %x record: bad name", m.ID)
	}
	for _, urls := range []*[]string{&m.PeerURLs, &m.ClientURLs} {
		var n uint64
		if n, data, ok = readUvarint(data); !ok || n > maxMemberURLs {
			return m, nil, fmt.Errorf("server: member %x record: bad URL count", m.ID)
		}
		for range n {
			var u string
			if u, data, ok = readString(data); !ok {
				return m, nil, fmt.Errorf("server: member %x record: bad URL", m.ID)
			}
			*urls = append(*urls, u)
		}
	}
	if len(data) > 0 {
		m.IsLearner = data[0]&memberFlagLearner != 0
		m.isRemoved = data[0]&memberFlagRemoved != 0
		data = data[1:]
	}
	return m, data, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readUvarint(data []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(data)
	if n <= 0 {
		return 0, nil, false
	}
	return v, data[n:], true
}

func readString(data []byte) (string, []byte, bool) {
	n, rest, ok := readUvarint(data)
	if !ok || n > uint64(len(rest)) {
		return "", nil, false
	}
	return string(rest[:n]), rest[n:], true
}
