package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// errCompacted is a watch that cannot go on: the revisions it must start from are
// compacted away.
var errCompacted = errors.New("the revisions to watch from are compacted")

func (a *app) newWatchCommand(c *clientFlags) *cobra.Command {
	var (
		r      keyRangeFlags
		rev    int64
		prevKV bool
	)
	cmd := &cobra.Command{
		Use:   "watch KEY [RANGE_END]",
		Short: "print the changes of a key, a range or a prefix as they happen",
		Long: "Prints each event as etcdctl watch does (PUT or DELETE, then the key and the value, after\n" +
			"the previous key and value with --prev-kv) until Ctrl-C or SIGTERM. When a member fails the\n" +
			"watch goes on through the next endpoint from the revision after the last one printed, so\n" +
			"no event is missed or printed twice. If those revisions have been compacted, the command\n" +
			"exits with status 1 naming the compaction's revision.",
		Example: "  raftkv watch foo\n  raftkv watch --prefix app/ --prev-kv\n  raftkv watch foo --rev 1    # the key's whole history, then go on live",
		Args:    keyArgs,
	}
	c.register(cmd, "simple")
	r.register(cmd, "Watch")
	numberVar(cmd.Flags(), &rev, "rev", 0, "revisions", "Revision to start watching from; 0 for the changes from now on.")
	cmd.Flags().BoolVar(&prevKV, "prev-kv", false, "Print each event's previous key and value.")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		key, end, err := r.keys(args)
		if err != nil {
			return err
		}
		if rev < 0 {
			return usageErrorf("--rev %d cannot be negative; use 0 for now", rev)
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		w := &watcher{c: c, out: bufio.NewWriter(a.stdout), warn: a.stderr,
			req: &pb.WatchCreateRequest{Key: key, RangeEnd: end, StartRevision: rev, PrevKv: prevKV}}
		return w.run(ctx)
	}
	return cmd
}

// watcher runs one watch through the endpoints in turn, resuming after a failure
// from the revision after the last it printed.
type watcher struct {
	c    *clientFlags
	out  *bufio.Writer
	warn io.Writer
	req  *pb.WatchCreateRequest
	// next is the revision to resume from: 0 until the first answer of a watch from
	// now, then one past the last revision the watch covered.
	next int64
}

// watchRetryPause is the pause after every endpoint failed in turn.
const watchRetryPause = time.Second

func (w *watcher) run(ctx context.Context) error {
	w.next = w.req.StartRevision
	for answered := false; ; {
		var errs endpointErrors
		for _, ep := range w.c.endpoints {
			sawAnswer, err := w.through(ctx, ep)
			answered = answered || sawAnswer
			var pe *printError
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, errCompacted), errors.As(err, &pe):
				return err
			}
			err = w.c.rpcError(err)
			errs = append(errs, endpointError{ep, err})
			if answered {
				fmt.Fprintf(w.warn, "watch through %s failed: %v; resuming from revision %d through the next endpoint\n", ep, err, w.next)
			}
		}
		if !answered {
			// No member ever answered: the endpoints are wrong, not failing.
			return errs
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(watchRetryPause):
		}
	}
}

// through watches through the endpoint ep until ctx ends or something fails, and
// reports whether the member answered the watch's creation.
func (w *watcher) through(ctx context.Context, ep string) (answered bool, err error) {
	conn, err := w.c.dial(ctx, ep)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		return false, err
	}
	create := proto.Clone(w.req).(*pb.WatchCreateRequest)
	create.StartRevision = w.next
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: create}}); err != nil {
		return false, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return answered, err
		}
		answered = true
		if resp.CompactRevision != 0 {
			return true, fmt.Errorf("%w: watching from revision %d, but the history before revision %d is compacted; "+
				"read the current state with get and watch from its revision + 1, or from --rev %d",
				errCompacted, w.next, resp.CompactRevision, resp.CompactRevision)
		}
		if resp.Canceled {
			return true, fmt.Errorf("the member canceled the watch: %s", resp.CancelReason)
		}
		if resp.Created && w.next == 0 {
			w.next = resp.Header.GetRevision() + 1
		}
		if err := w.print(resp.Events); err != nil {
			return true, &printError{err}
		}
		if n := len(resp.Events); n > 0 {
			w.next = resp.Events[n-1].Kv.ModRevision + 1
		}
	}
}

// print writes events as etcdctl's simple format does.
func (w *watcher) print(events []*mvccpb.Event) error {
	for _, ev := range events {
		fmt.Fprintln(w.out, ev.Type)
		for _, kv := range []*mvccpb.KeyValue{ev.PrevKv, ev.Kv} {
			if kv != nil {
				w.out.Write(kv.Key)
				w.out.WriteByte('\n')
				w.out.Write(kv.Value)
				w.out.WriteByte('\n')
			}
		}
	}
	return w.out.Flush()
}
