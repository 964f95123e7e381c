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
// and refuses, saying why, a stream of another cluster, one meant for another node, or
// one from a node that is not one of its peers (see Membership).
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
// A frame's length is a claim until its bytes arrive: a reader allocates a large
// payload in steps as it comes (half MaxFrameBytes first, growing fourfold), so a peer that sends
// a header and stalls costs a step, not MaxFrameBytes. A message stream may be idle
// for as long as its peer has nothing to say, but once a frame has begun to arrive
// each read of the rest must return within Config.IOTimeout, or the stream is closed
// (logged at WARN). The deadline is set only for a frame not already whole in the
// read buffer, so a stream of small messages sets none.
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
// address and the reason, on both sides. Whoever reaches the port sets the rate of
// refusals, so each distinct reason is logged at most once every 10 s, the next line
// counting those left out (refusal_log.go); Stats.StreamsRefused counts them all.
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
// heartbeats. After the handshake the sender sends a header frame (what the body is,
// its size if known, and the message), and the receiver accepts or refuses it. Then
// comes the body, of a length the sender need not know up front:
//
//	chunk   frames of at most Config.SnapshotChunkBytes, each with its frame CRC
//	end     the body's size (uint64) and the CRC-32C of all of it (uint32)
//	abort   instead of the end, if the sender cannot produce the rest: its reason
//
// and the receiver answers with a status: the snapshot was handed to Handler.Step, or
// why not. It may answer early, refusing in the middle of the body; the sender reads
// while it writes, stops, and logs the reason. The sender then calls
// Handler.ReportSnapshot with the outcome. One snapshot at a time goes to each peer;
// a MsgSnap that comes while one is on its way is dropped unreported (the one in
// flight reports). A receiver takes one snapshot at a time from each peer and two in
// all (a leader's, and its deposed predecessor's still on its way); it refuses
// another at the handshake, saying why, and the sender logs the reason and reports
// the snapshot failed, so that its Raft sends another later.
//
// Where the body comes from and goes to is the application's choice. With
// Config.SnapshotStream and SnapshotReceiver set (on every member), the header
// carries the message with its small Data (a marker), the body is the stream the
// application produces (a database snapshot, read as it goes), and the receiver's
// hook consumes it as it arrives and returns the Data that the message delivered to
// raft carries. Neither end then holds more than about one chunk of the body,
// whatever its size; the receiver counts it against Config.MaxSnapshotBytes as it
// comes. With the hooks nil, the body is the message's Snapshot.Data and the
// receiver collects it in memory (its size is in the header, so one over
// MaxSnapshotBytes is refused before it is sent). Both ways share the same frames
// and code. The receiver's hook sees each chunk only after its CRC matched, and
// io.EOF only after the end frame matched the whole; a body cut, corrupt, aborted or
// over the limit is a read error, and the message is not delivered.
//
// # Membership
//
// UpdatePeer and RemovePeer follow the cluster's configuration as the server applies
// it, and a node takes streams only from its peers: a made-up sender id is refused at
// the handshake, naming it, and takes no place among the inbound streams. A member
// just added is taken once the receiver's UpdatePeer has added it; until then its
// dialler is refused and retries with backoff, as after any refusal. A removed
// peer's streams are refused with a reason its own transport recognises
// (Config.OnRemoved), so a node removed while cut off learns it. A node
// joining a running cluster asks a member what the cluster is (FetchCluster, a
// stream of kind "cluster" answered with the cluster id and Config.ClusterInfo).
// See membership.go.
//
// # Round trips and bytes
//
// With Config.OnRoundTrip set, every dial reports the time from its handshake to the
// receiver's status, and a probe connection (a handshake answered and closed) is
// dialled to each peer every Config.ProbeInterval, so that a monitor sees the round
// trip of a stream that has been up for days. Stats counts the bytes of the message
// and snapshot frames sent to and received from each peer. These are what the server exports as etcd's
// peer_round_trip_time_seconds and peer_sent/received_bytes_total.
package transport
