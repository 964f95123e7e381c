package server

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Every log entry the server proposes is an envelope: a kind byte, the proposing
// member's request id (so a waiting request recognises its own entry, wherever it was
// proposed), and the payload.
//
//	kind(1) | uvarint requestID | payload
const (
	// kindKV carries an encoded kv.Command.
	kindKV byte = 1
	// kindMember carries a member's attributes (name and URLs), published by each
	// member when it starts so every member can list them.
	kindMember byte = 2
)

var errBadEnvelope = errors.New("server: log entry is not a valid envelope")

func encodeEnvelope(kind byte, requestID uint64, payload []byte) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(payload))
	b = append(b, kind)
	b = binary.AppendUvarint(b, requestID)
	return append(b, payload...)
}

func decodeEnvelope(data []byte) (kind byte, requestID uint64, payload []byte, err error) {
	if len(data) < 2 {
		return 0, 0, nil, errBadEnvelope
	}
	kind = data[0]
	requestID, n := binary.Uvarint(data[1:])
	if n <= 0 {
		return 0, 0, nil, errBadEnvelope
	}
	return kind, requestID, data[1+n:], nil
}

// member is what the cluster knows of one member.
type member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
}

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
	return b
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
