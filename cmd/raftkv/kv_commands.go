package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// keyRangeFlags select a range of keys as etcdctl's get and del do.
type keyRangeFlags struct {
	prefix, fromKey bool
}

func (r *keyRangeFlags) register(cmd *cobra.Command, verb string) {
	cmd.Flags().BoolVar(&r.prefix, "prefix", false, verb+" every key that starts with KEY (\"\" for every key).")
	cmd.Flags().BoolVar(&r.fromKey, "from-key", false, verb+" every key from KEY on, in byte order.")
}

// keys returns the [key, rangeEnd) of the command's arguments, as etcdctl reads them.
func (r *keyRangeFlags) keys(args []string) (key, end []byte, err error) {
	key = []byte(args[0])
	switch {
	case r.prefix && r.fromKey:
		return nil, nil, usageErrorf("--prefix and --from-key cannot both be given")
	case len(args) > 1 && (r.prefix || r.fromKey):
		return nil, nil, usageErrorf("a range end %q cannot go with --prefix or --from-key", args[1])
	case len(args) > 1:
		end = []byte(args[1])
	case r.prefix && len(key) == 0, r.fromKey && len(key) == 0:
		// An empty key with --prefix or --from-key means every key, as in
		// etcdctl: ["\x00", "\x00").
		key, end = []byte{0}, []byte{0}
	case r.prefix:
		end = prefixEnd(key)
	case r.fromKey:
		end = []byte{0}
	}
	return key, end, nil
}

// keyArgs takes KEY and an optional RANGE_END.
func keyArgs(cmd *cobra.Command, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return usageErrorf("%s takes KEY and an optional RANGE_END, got %d arguments: %q", cmd.CommandPath(), len(args), args)
	}
	return nil
}

// prefixEnd is the range end that selects every key with the given prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

func (a *app) newPutCommand(c *clientFlags) *cobra.Command {
	var (
		prevKV bool
		lease  string
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "write a key",
		Args:  exactArgs("KEY", "VALUE"),
	}
	c.register(cmd, "simple", "json")
	cmd.Flags().BoolVar(&prevKV, "prev-kv", false, "Print the key's previous value.")
	cmd.Flags().StringVar(&lease, "lease", "0", "Attach the key to this lease (hexadecimal, as 'raftkv lease grant' prints it): it is deleted with the lease.")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		leaseID, err := parseLeaseID(lease)
		if err != nil {
			return err
		}
		return c.first(cmd, false, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewKVClient(conn).Put(ctx, &pb.PutRequest{Key: []byte(args[0]), Value: []byte(args[1]), PrevKv: prevKV, Lease: leaseID})
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			fmt.Fprintln(a.stdout, "OK")
			if resp.PrevKv != nil {
				fmt.Fprintf(a.stdout, "%s\n%s\n", resp.PrevKv.Key, resp.PrevKv.Value)
			}
			return nil
		})
	}
	return cmd
}

func (a *app) newDelCommand(c *clientFlags) *cobra.Command {
	var r keyRangeFlags
	cmd := &cobra.Command{
		Use:   "del KEY [RANGE_END]",
		Short: "delete a key, or the keys of a range or prefix",
		Args:  keyArgs,
	}
	c.register(cmd, "simple", "json")
	r.register(cmd, "Delete")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		key, end, err := r.keys(args)
		if err != nil {
			return err
		}
		return c.first(cmd, false, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewKVClient(conn).DeleteRange(ctx, &pb.DeleteRangeRequest{Key: key, RangeEnd: end})
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			fmt.Fprintln(a.stdout, resp.Deleted)
			return nil
		})
	}
	return cmd
}

// printJSON prints a response as etcdctl's -w json does: encoding/json of the
// protobuf struct (bytes in base64).
func printJSON(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// flushOnReturn flushes a buffered writer, keeping the first error.
func flushOnReturn(w *bufio.Writer, err *error) {
	if ferr := w.Flush(); *err == nil {
		*err = ferr
	}
}
