package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const defaultEndpoints = "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"

func runClient(command string, args []string) int {
	fs := flag.NewFlagSet("raftkv "+command, flag.ContinueOnError)
	endpoints := fs.String("endpoints", defaultEndpoints, "comma-separated client endpoints (host:port)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to try before giving up")
	prefix := fs.Bool("prefix", false, "get/del: every key with KEY as prefix")
	if err := fs.Parse(reorderFlags(args)); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	want := map[string]int{"put": 2, "get": 1, "del": 1, "status": 0}[command]
	if fs.NArg() != want {
		fmt.Fprintf(os.Stderr, "raftkv %s: takes %d argument(s), got %d; see raftkv help\n", command, want, fs.NArg())
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var lastErr error
	for _, ep := range splitURLs(*endpoints) {
		ep = strings.TrimPrefix(ep, "http://")
		conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			lastErr = err
			continue
		}
		err = clientCommand(ctx, conn, ep, command, fs.Args(), *prefix)
		conn.Close()
		if err == nil {
			if command != "status" {
				return 0
			}
			continue
		}
		lastErr = fmt.Errorf("%s: %w", ep, err)
		if command == "status" {
			fmt.Fprintf(os.Stderr, "%v\n", lastErr)
		}
	}
	if command == "status" && lastErr == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "raftkv %s: %v\n", command, lastErr)
	return 1
}

func clientCommand(ctx context.Context, conn *grpc.ClientConn, ep, command string, args []string, prefix bool) error {
	kvc := pb.NewKVClient(conn)
	// An empty key with --prefix means every key, as in etcdctl: ["\x00", "\x00").
	keyOf := func(key string) []byte {
		if prefix && key == "" {
			return []byte{0}
		}
		return []byte(key)
	}
	rangeEnd := func(key string) []byte {
		if !prefix {
			return nil
		}
		return prefixEnd([]byte(key))
	}
	switch command {
	case "put":
		if _, err := kvc.Put(ctx, &pb.PutRequest{Key: []byte(args[0]), Value: []byte(args[1])}, grpc.WaitForReady(true)); err != nil {
			return err
		}
		fmt.Println("OK")
	case "get":
		resp, err := kvc.Range(ctx, &pb.RangeRequest{Key: keyOf(args[0]), RangeEnd: rangeEnd(args[0])}, grpc.WaitForReady(true))
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			fmt.Printf("%s\n%s\n", kv.Key, kv.Value)
		}
	case "del":
		resp, err := kvc.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: keyOf(args[0]), RangeEnd: rangeEnd(args[0])}, grpc.WaitForReady(true))
		if err != nil {
			return err
		}
		fmt.Println(resp.Deleted)
	case "status":
		resp, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{})
		if err != nil {
			return err
		}
		fmt.Printf("%s, member %x, leader %x, term %d, raft index %d, applied %d, revision %d\n",
			ep, resp.Header.MemberId, resp.Leader, resp.RaftTerm, resp.RaftIndex, resp.RaftAppliedIndex, resp.Header.Revision)
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

// reorderFlags moves flags after positional arguments to the front, so that
// "raftkv get foo --prefix" works as etcdctl users expect.
func reorderFlags(args []string) []string {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && a != "--prefix" && a != "-prefix" && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
			continue
		}
		positional = append(positional, a)
	}
	return append(flags, positional...)
}
