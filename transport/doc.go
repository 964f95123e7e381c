// Package transport carries Raft messages between raftkv nodes over TCP: one
// long-lived, batched and pipelined stream per peer, and snapshots streamed in chunks.
//
// # Streams
//
// Each Transport dials one outbound stream to every peer and accepts the streams its
// peers dial to it (Serve). A stream carries messages one way only, so a request
// travels on the sender's stream and its answer on the receiver's. The dialer opens
// with a fixed 30-byte handshake (magic "RKVP", protocol version, stream kind, cluster
// id, its own id, the id it means to reach); the receiver answers with a status frame
// and refuses, saying why, a stream of another cluster or one meant for another node.
//
// After the handshake come frames:
//
//	length  uint32, big-endian: bytes of payload, at most Config.MaxFrameBytes
//	type    1 byte
//	crc     uint32, big-endian: CRC-32C (Castagnoli) of the type byte and the payload
//	payload length bytes; for a message frame, the raft.Message encoding
//
// A reader that meets a frame it cannot accept (over the size limit, failing its
// checksum, of an unknown type, not decoding as a message, addressed to another node
// or claiming another sender) closes that stream and logs the reason; the dialer
// reconnects. Decoding never panics; FuzzReadFrame checks that.
//
// Besides Raft's streams, Request asks a peer a question and waits for its answer
// (Config.OnRequest), on a connection of kind "request" with the same handshake and
// TLS, so the peer trusts the request as it trusts the asker's Raft messages (the
// server forwards membership changes to the leader this way).
//
// # TLS
//
// A peer whose address is "https://host:port" is dialled with TLS (Config.TLS), and
// a listener made by tls.NewListener, given to Serve, accepts TLS: the TLS handshake
// comes first, within Config.IOTimeout on the accepting side and DialTimeout on the
// dialling side, and the stream handshake and frames then run inside it unchanged.
// Which certificates are accepted is for the tls.Config to say (the server builds it
// from etcd's --peer-* flags); a refused handshake is logged at WARN with the remote
// address and the reason, on both sides.
//
// # Sending
//
// Send never blocks. It puts each message on its peer's bounded queue
// (Config.SendQueueLen) and drops it if the queue is full: Raft retries what is lost.
// One writer goroutine per peer encodes everything queued into a buffered writer and
// flushes when the queue is momentarily empty, so a busy stream costs one system call
// per batch, not per message. A broken stream or a failed dial is reported to
// Handler.ReportUnreachable (at most every 100ms per peer) and redialled with
// exponential backoff and jitter; messages queued while the peer is down are dropped.
//
// # Snapshots
//
// A MsgSnap goes on a connection of its own, so a snapshot of gigabytes never holds up
// heartbeats. Its data is sent in chunks of Config.SnapshotChunkBytes followed by a
// CRC-32C of the whole; the receiver reassembles it (refusing more than
// Config.MaxSnapshotBytes), checks the CRC, hands the whole message to Handler.Step and
// acknowledges. The sender then calls Handler.ReportSnapshot with the outcome. One
// snapshot at a time goes to each peer.
//
// # Membership
//
// UpdatePeer and RemovePeer follow the cluster's configuration as the server applies
// it. A removed peer's streams are refused with a reason its own transport
// recognises (Config.OnRemoved), so a node removed while cut off learns it. A node
// joining a running cluster asks a member what the cluster is (FetchCluster, a
// stream of kind "cluster" answered with the cluster id and Config.ClusterInfo).
// See membership.go.
//
// # Round trips and bytes
//
// With Config.OnRoundTrip set, every dial reports the time from its handshake to the
// receiver's status, and a probe connection (a handshake answered and closed) is
// dialled to each peer every Config.ProbeInterval, so that a monitor sees the round
// trip of a stream that has been up for days. Stats counts the message bytes sent to
// and received from each peer. These are what the server exports as etcd's
// peer_round_trip_time_seconds and peer_sent/received_bytes_total.
package transport
