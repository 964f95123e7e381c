package server

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
	"raftkv/watch"
)

// This file is the Watch service: it turns one gRPC stream's requests into calls on a
// watch.Stream and sends what the stream queues, as etcd's watch server does. The
// watch package does the work; this is the protocol.

type watchService struct {
	pb.UnimplementedWatchServer
	s *Server
}

// flushWatchesBeforeCompaction hands the watchers every event applied so far when
// the entry data is a compaction, which would drop the events the hub has not read
// yet (watch.Hub.Flush). Peeking costs a look at the envelope and two bytes.
func (s *Server) flushWatchesBeforeCompaction(data []byte) {
	if env, err := decodeEnvelope(data); err == nil && env.kind == kindKV && kv.IsCompaction(env.payload) {
		s.watches.Flush()
	}
}

// errWatchMemberStopping ends the watch streams of a member that stops. Unavailable
// makes clientv3 resume each watch on another endpoint from the revision after the
// last one it received.
var errWatchMemberStopping = status.Error(codes.Unavailable, "raftkv: this member is stopping; watch on another member")

func (w *watchService) Watch(stream pb.Watch_WatchServer) error {
	ctx := stream.Context()
	ws := w.s.watches.NewStream()
	defer ws.Close()
	recvErr := make(chan error, 1)
	go func() {
		err := w.recvLoop(stream, ws)
		if err != nil {
			// A broken stream: end the send side too.
			recvErr <- err
			ws.Close()
		}
	}()
	maxBytes := w.s.cfg.MaxRequestBytes + grpcOverheadBytes
	for {
		r, ok := ws.Next(ctx)
		if !ok {
			break
		}
		resp := w.toPB(&r)
		var err error
		if r.Fragment {
			err = sendFragments(resp, maxBytes, stream.Send)
		} else {
			err = stream.Send(resp)
		}
		if err != nil {
			return err
		}
	}
	select {
	case err := <-recvErr:
		return err
	default:
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return errWatchMemberStopping
}

// recvLoop reads the client's requests until the stream ends. The client closing
// its side (io.EOF) ends nothing: the watches go on, as in etcd.
func (w *watchService) recvLoop(stream pb.Watch_WatchServer, ws *watch.Stream) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if c := u.CreateRequest; c != nil {
				cr := watch.CreateRequest{Key: c.Key, RangeEnd: c.RangeEnd, StartRevision: c.StartRevision,
					WatchID: c.WatchId, PrevKv: c.PrevKv, ProgressNotify: c.ProgressNotify, Fragment: c.Fragment}
				// etcd checks the sender may read the range before anything but a
				// negative start revision, which the stream refuses first.
				if c.StartRevision >= 0 {
					if reason := w.createRefused(ctx, c.Key, c.RangeEnd); reason != "" {
						if ws.Refuse(ctx, reason) != nil {
							return nil
						}
						continue
					}
				}
				for _, f := range c.Filters {
					switch f {
					case pb.WatchCreateRequest_NOPUT:
						cr.NoPut = true
					case pb.WatchCreateRequest_NODELETE:
						cr.NoDelete = true
					}
				}
				if ws.Create(ctx, cr) != nil {
					return nil // the stream is closing
				}
			}
		case *pb.WatchRequest_CancelRequest:
			if c := u.CancelRequest; c != nil && ws.Cancel(ctx, c.WatchId) != nil {
				return nil
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest != nil {
				ws.RequestProgress()
			}
		default:
			// An unknown request does not end the stream, as in etcd.
			w.s.logger.Debug("ignoring a watch request of unknown type", "type", u)
		}
	}
}

// createRefused says why the call's sender may not watch [key, rangeEnd), in the
// words etcd's cancel reason uses (a gRPC status's text), or "" if it may. etcd
// checks a watch once, when it is created, and so does this.
func (w *watchService) createRefused(ctx context.Context, key, rangeEnd []byte) string {
	if len(key) == 0 {
		key = []byte{0} // the smallest key, as the stream reads it
	}
	sender, err := w.s.sender(ctx)
	if err == nil {
		err = w.s.sm.store.CheckRead(sender, key, rangeEnd)
	}
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errInvalidAuthToken):
		return rpctypes.ErrGRPCInvalidAuthToken.Error()
	case errors.Is(err, kv.ErrAuthOldRevision):
		return rpctypes.ErrGRPCAuthOldRevision.Error()
	case errors.Is(err, kv.ErrUserEmpty):
		return rpctypes.ErrGRPCUserEmpty.Error()
	}
	return rpctypes.ErrGRPCPermissionDenied.Error()
}

// toPB converts a response, with the events' PrevKv only if the watcher asked.
func (w *watchService) toPB(r *watch.Response) *pb.WatchResponse {
	out := &pb.WatchResponse{Header: w.s.header().pb(r.Revision), WatchId: r.WatchID, Created: r.Created,
		Canceled: r.Canceled, CompactRevision: r.CompactRevision, CancelReason: r.CancelReason}
	if len(r.Events) == 0 {
		return out
	}
	// One allocation for the events and one for their kvs, instead of two per event.
	events := make([]mvccpb.Event, len(r.Events))
	kvs := make([]mvccpb.KeyValue, len(r.Events))
	out.Events = make([]*mvccpb.Event, len(r.Events))
	for i, ev := range r.Events {
		kvs[i] = mvccpb.KeyValue{Key: ev.Kv.Key, CreateRevision: ev.Kv.CreateRevision, ModRevision: ev.Kv.ModRevision,
			Version: ev.Kv.Version, Value: ev.Kv.Value, Lease: ev.Kv.Lease}
		events[i].Kv = &kvs[i]
		if ev.Type == kv.EventDelete {
			events[i].Type = mvccpb.Event_DELETE
		}
		if r.PrevKv && ev.PrevKv != nil {
			events[i].PrevKv = kvToPB(ev.PrevKv)
		}
		out.Events[i] = &events[i]
	}
	return out
}

// sendFragments sends wr whole if it is under maxBytes or holds one event, else in
// pieces under maxBytes (each of at least one event), every piece but the last
// marked Fragment: etcd's rule, with the pieces' sizes added up rather than each
// piece re-measured as it grows.
func sendFragments(wr *pb.WatchResponse, maxBytes int, send func(*pb.WatchResponse) error) error {
	if proto.Size(wr) < maxBytes || len(wr.Events) < 2 {
		return send(wr)
	}
	next := 0
	for next < len(wr.Events) {
		// A new message each time: Send may keep it queued after it returns.
		cur := &pb.WatchResponse{Header: wr.Header, WatchId: wr.WatchId, Created: wr.Created, Canceled: wr.Canceled,
			CompactRevision: wr.CompactRevision, CancelReason: wr.CancelReason, Fragment: true}
		size := proto.Size(cur)
		first := next
		for next < len(wr.Events) {
			n := proto.Size(wr.Events[next])
			// The event's field: tag, length, bytes.
			size += protowire.SizeTag(watchResponseEventsField) + protowire.SizeBytes(n)
			if next > first && size >= maxBytes {
				break
			}
			next++
		}
		cur.Events = wr.Events[first:next]
		if next == len(wr.Events) {
			cur.Fragment = false
		}
		if err := send(cur); err != nil {
			return err
		}
	}
	return nil
}

// watchResponseEventsField is the field number of WatchResponse.events.
const watchResponseEventsField = 11
