package transport

import "errors"

// Expected conditions, testable with errors.Is. Most surface in logs and in the
// reasons a stream is closed; Serve returns ErrClosed.
var (
	// ErrClosed: the Transport has been closed.
	ErrClosed = errors.New("transport: closed")
	// ErrFrameTooLarge: a frame's length is above Config.MaxFrameBytes. The reader
	// closes the stream without reading the payload.
	ErrFrameTooLarge = errors.New("transport: frame larger than the limit")
	// ErrCorruptFrame: a frame failed its checksum, has an unknown type, does not
	// decode, or breaks the protocol (a message addressed to another node, a chunk
	// past the announced snapshot size). The reader closes the stream.
	ErrCorruptFrame = errors.New("transport: corrupt frame")
	// ErrHandshake: a stream's handshake was malformed or refused (wrong magic,
	// protocol version, cluster id or node id). The refusal names the reason.
	ErrHandshake = errors.New("transport: handshake refused")
	// ErrSnapshotTooLarge: a snapshot is larger than the receiver's
	// Config.MaxSnapshotBytes.
	ErrSnapshotTooLarge = errors.New("transport: snapshot larger than the limit")
	// ErrSnapshotFailed: the receiver reported that it could not take a snapshot.
	ErrSnapshotFailed = errors.New("transport: snapshot refused by the receiver")
	// ErrSnapshotAborted: the sender gave up on a snapshot's body part way (its
	// Config.SnapshotStream failed); the receiver's body read fails with it and the
	// sender's reason.
	ErrSnapshotAborted = errors.New("transport: snapshot abandoned by the sender")
	// ErrSnapshotHooks: one end streams snapshot bodies through the
	// Config.SnapshotStream and SnapshotReceiver hooks and the other does not; the
	// receiver refuses the snapshot before its body is sent.
	ErrSnapshotHooks = errors.New("transport: snapshot hooks set on one end only")
	// ErrUnknownPeer: Request named a node that is not a peer of this Transport.
	ErrUnknownPeer = errors.New("transport: not a peer")
	// ErrRequestRefused: the receiver of a Request refused it (its OnRequest failed,
	// or it answers no requests). The error carries the receiver's reason.
	ErrRequestRefused = errors.New("transport: request refused by the receiver")

	// errStalled: a frame began to arrive on a message stream and the rest did not
	// come within Config.IOTimeout (stallReader); the stream is closed.
	errStalled = errors.New("transport: peer stalled in the middle of a frame")
	// errSnapshotBusy: a snapshot stream refused at its handshake because one from
	// the same sender is still being received, or maxSnapshotReceives are. The
	// sender's dial fails with ErrHandshake and this text; it reports the snapshot
	// failed, and its Raft sends another later.
	errSnapshotBusy = errors.New("busy with other snapshots")
)
