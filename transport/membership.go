package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Membership at run time. The server tells the Transport of every configuration
// change it applies (UpdatePeer, RemovePeer). Two things here serve it besides:
//
//   - A removed node is refused. RemovePeer remembers the id, closes its inbound
//     stream and refuses its next handshakes with removedReason, so that a node
//     removed while it was cut off (which never applies its own removal) neither
//     reaches this node's Raft with its term nor waits in silence: its transport
//     recognises the refusal and calls Config.OnRemoved, and the server stops.
//   - A node that joins a running cluster does not know the cluster's id nor its own
//     member id (the leader chose them). FetchCluster asks a member over a stream of
//     kind streamCluster, which the receiver answers, whatever cluster the asker
//     thinks it is in, with its cluster id and Config.ClusterInfo (the member list,
//     in the server's encoding), as etcd's joining member asks its peers' /members.

// removedReason is the refusal a removed node's handshakes get; its transport looks
// for it.
const removedReason = "was removed from the cluster; it must not rejoin with its old data"

func (t *Transport) isRemovedPeer(id uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.removed[id]
}

// noteRefusal calls OnRemoved the first time a peer refuses this node as removed.
func (t *Transport) noteRefusal(by uint64, err error) {
	if err == nil || !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), removedReason) {
		return
	}
	if t.isRemoved.Swap(true) {
		return
	}
	t.logger.Warn("transport: a peer refuses this node: it was removed from the cluster", "peer", hexID(by))
	if t.cfg.OnRemoved != nil {
		t.cfg.OnRemoved(by)
	}
}

// maxClusterInfoBytes bounds what FetchCluster reads.
const maxClusterInfoBytes = 4 << 20

// answerCluster answers a cluster stream from node from: accepted, then the cluster
// id and ClusterInfo.
func (t *Transport) answerCluster(conn net.Conn, from uint64) {
	var info []byte
	if t.cfg.ClusterInfo != nil {
		info = t.cfg.ClusterInfo()
	}
	payload := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(info)), t.cfg.ClusterID)
	payload = append(payload, info...)
	if len(payload) > maxClusterInfoBytes {
		writeStatus(conn, fmt.Errorf("the cluster's description is %d bytes, over the limit %d", len(payload), maxClusterInfoBytes))
		return
	}
	if err := writeStatus(conn, nil); err != nil {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(t.cfg.IOTimeout))
	frame := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	putFrameHeader(frame, frameCluster, payload)
	if _, err := conn.Write(append(frame, payload...)); err != nil {
		t.logger.Debug("transport: answering a cluster stream failed", "from", hexID(from), "err", err)
		return
	}
	t.logger.Info("transport: told a joining node what this cluster is", "from", hexID(from), "remote", conn.RemoteAddr().String())
}

// FetchCluster asks the node whose peer listener is at addr ("host:port", or
// "https://host:port", dialled with tlsConfig) for its cluster's id and
// Config.ClusterInfo, on behalf of node from (its id as far as it knows). ctx bounds
// the whole exchange.
func FetchCluster(ctx context.Context, addr string, tlsConfig *tls.Config, from uint64) (clusterID uint64, info []byte, err error) {
	if from == 0 {
		return 0, nil, fmt.Errorf("transport: FetchCluster needs a non-zero id for the asking node")
	}
	hostPort, isTLS := splitAddr(addr)
	if err := checkAddr(hostPort); err != nil {
		return 0, nil, fmt.Errorf("transport: FetchCluster(%q): %v", addr, err)
	}
	if isTLS && tlsConfig == nil {
		return 0, nil, fmt.Errorf("transport: FetchCluster(%q): an https:// peer, and no TLS settings to dial it with", addr)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	stop := afterFuncClose(ctx, conn)
	defer stop()
	if isTLS {
		tc, err := dialTLS(ctx, conn, hostPort, tlsConfig)
		if err != nil {
			return 0, nil, err
		}
		conn = tc
		defer conn.Close()
	}
	hs := handshake{kind: streamCluster, from: from}.marshal()
	if _, err := conn.Write(hs[:]); err != nil {
		return 0, nil, fmt.Errorf("asking %s for its cluster: %w", addr, err)
	}
	fr := &frameReader{r: conn, maxPayload: maxClusterInfoBytes}
	if err := readStatus(fr); err != nil {
		var refused *errRefused
		if errors.As(err, &refused) {
			err = fmt.Errorf("%w: %s", ErrHandshake, refused.reason)
		}
		return 0, nil, fmt.Errorf("asking %s for its cluster: %w", addr, err)
	}
	typ, payload, err := fr.next()
	if err != nil {
		return 0, nil, fmt.Errorf("asking %s for its cluster: %w", addr, err)
	}
	if typ != frameCluster || len(payload) < 8 {
		return 0, nil, fmt.Errorf("asking %s for its cluster: %w: %s frame of %d bytes", addr, ErrCorruptFrame, typ, len(payload))
	}
	return binary.BigEndian.Uint64(payload), payload[8:], nil
}
