package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Range paging. A range is read in pages of at most pageTargetBytes of keys and
// values, each page starting just after the last key of the one before and read at
// the first page's revision, so that the listing is one consistent snapshot however
// long it is, and neither the member nor the CLI ever holds more than a page. The
// page size is counted in keys (RangeRequest.Limit), so it is adapted page by page to
// the mean size of the keys read so far; the first page is small, since a page of
// 16 keys of the largest value etcd takes by default (1.5 MiB) is 24 MiB.
const (
	pageTargetBytes = 4 << 20
	firstPageKeys   = 16
	maxPageKeys     = 10000
)

func (a *app) newGetCommand(c *clientFlags) *cobra.Command {
	var (
		r                   keyRangeFlags
		limit, rev          int64
		keysOnly, valueOnly bool
		consistency         string
	)
	cmd := &cobra.Command{
		Use:   "get KEY [RANGE_END]",
		Short: "read a key, or the keys of a range or prefix",
		Long: "A range is read in pages (each page starts after the last key of the one before, at the\n" +
			"revision of the first page), so a range of any size is printed with bounded memory.\n" +
			"With -w json each page is printed as one RangeResponse, on a line of its own.",
		Args: keyArgs,
	}
	c.register(cmd, "simple", "json")
	r.register(cmd, "Get")
	numberVar(cmd.Flags(), &limit, "limit", 0, "keys", "Most keys to print; 0 for no limit.")
	numberVar(cmd.Flags(), &rev, "rev", 0, "revisions", "Read at this revision; 0 for the newest.")
	cmd.Flags().BoolVar(&keysOnly, "keys-only", false, "Print only the keys.")
	cmd.Flags().BoolVar(&valueOnly, "print-value-only", false, "Print only the values.")
	cmd.Flags().StringVar(&consistency, "consistency", "l", "Linearizable (l) or serializable (s): a serializable read is served by the member asked, without a quorum.")
	cmd.RunE = func(cmd *cobra.Command, args []string) (err error) {
		key, end, err := r.keys(args)
		if err != nil {
			return err
		}
		if consistency != "l" && consistency != "s" {
			return usageErrorf("--consistency %q: use l (linearizable) or s (serializable)", consistency)
		}
		if limit < 0 || rev < 0 {
			return usageErrorf("--limit %d and --rev %d cannot be negative", limit, rev)
		}
		out := bufio.NewWriterSize(a.stdout, 256<<10)
		defer flushOnReturn(out, &err)
		p := &pager{
			key: key, end: end, rev: rev, remaining: limit, pageKeys: firstPageKeys,
			serializable: consistency == "s", keysOnly: keysOnly,
			print: func(resp *pb.RangeResponse) error {
				if c.writeOut == "json" {
					return printJSON(out, resp)
				}
				for _, kv := range resp.Kvs {
					if !valueOnly {
						out.Write(kv.Key)
						out.WriteByte('\n')
					}
					if !valueOnly || !keysOnly {
						out.Write(kv.Value)
						out.WriteByte('\n')
					}
				}
				return nil
			},
		}
		return c.first(cmd, true, func(ctx context.Context, conn *grpc.ClientConn) error {
			return p.run(ctx, pb.NewKVClient(conn))
		})
	}
	return cmd
}

// pager reads a range page by page; see pageTargetBytes. It keeps its place across
// endpoints: if one fails mid-range, the next goes on from the same key and revision.
type pager struct {
	key, end     []byte
	rev          int64 // the first page's revision, once read
	remaining    int64 // keys still to print, 0 for no limit
	pageKeys     int64
	serializable bool
	keysOnly     bool
	print        func(*pb.RangeResponse) error
}

func (p *pager) run(ctx context.Context, kv pb.KVClient) error {
	for {
		limit := p.pageKeys
		if p.end == nil {
			limit = p.remaining // one key: no paging
		} else if p.remaining > 0 && p.remaining < limit {
			limit = p.remaining
		}
		resp, err := kv.Range(ctx, &pb.RangeRequest{
			Key: p.key, RangeEnd: p.end, Limit: limit, Revision: p.rev,
			Serializable: p.serializable, KeysOnly: p.keysOnly,
		})
		if status.Code(err) == codes.ResourceExhausted && p.end != nil && limit > 1 {
			// A page of larger keys than the ones before: ask for fewer.
			p.pageKeys = max(1, limit/4)
			continue
		}
		if err != nil {
			return err
		}
		if p.rev == 0 {
			p.rev = resp.Header.GetRevision()
		}
		if err := p.print(resp); err != nil {
			return &printError{err}
		}
		n := int64(len(resp.Kvs))
		if p.end == nil || !resp.More {
			return nil
		}
		if n == 0 {
			return errors.New("the member answered more=true with no keys; it may limit responses to less than one key")
		}
		if p.remaining > 0 {
			if p.remaining -= n; p.remaining == 0 {
				return nil
			}
		}
		p.key = append(append([]byte(nil), resp.Kvs[n-1].Key...), 0)
		var pageBytes int64
		for _, kv := range resp.Kvs {
			pageBytes += int64(len(kv.Key) + len(kv.Value))
		}
		p.pageKeys = max(1, min(pageTargetBytes/max(1, pageBytes/n), 4*p.pageKeys, maxPageKeys))
	}
}

// printError is a failure to write the output (a closed pipe): no endpoint can fix it.
type printError struct{ err error }

func (e *printError) Error() string { return fmt.Sprintf("writing the output: %v", e.err) }
