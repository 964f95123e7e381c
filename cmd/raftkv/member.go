package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// The member commands are etcdctl's, with its sentences ("Member %16x added to
// cluster %16x") and member list's table; after member add, the settings the new
// member starts with, as etcdctl prints ETCD_NAME and the rest, in raftkv's
// variables and as flags.

func (a *app) newMemberCommand(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member <subcommand>",
		Short: "add, remove, update, promote and list the members of the cluster",
		Long: "Membership changes go to the leader, one at a time. To replace a failed member: remove it, add\n" +
			"the new one (add prints how to start it), then start it on an empty data dir. Member ids are\n" +
			"hexadecimal, as 'raftkv member list' prints them.",
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.newMemberAddCommand(c), a.newMemberRemoveCommand(c), a.newMemberUpdateCommand(c),
		a.newMemberPromoteCommand(c), a.newMemberListCommand(c))
	return cmd
}

// parseMemberID reads a member id as etcdctl does: hexadecimal.
func parseMemberID(arg string) (uint64, error) {
	id, err := strconv.ParseUint(arg, 16, 64)
	if err != nil || id == 0 {
		return 0, usageErrorf("bad member ID %q: expecting a hexadecimal id as 'raftkv member list' prints it, e.g. 8e9e05c52164694d", arg)
	}
	return id, nil
}

// splitMemberURLs reads a comma-separated --peer-urls, and checks each URL as the
// server will (scheme://host:port and nothing more), so that a mistake is named
// here rather than answered with the server's "given member URLs are invalid".
// whose says whose URLs they are, for the error when there are none: "the new
// member's", "the member's new".
func splitMemberURLs(flag, v, whose string) ([]string, error) {
	var urls []string
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			if err := checkMemberURL(u); err != nil {
				return nil, usageErrorf("--%s: %v", flag, err)
			}
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil, usageErrorf("member peer urls not provided: give --%s with %s peer URLs, e.g. --%s http://10.0.0.4:2380", flag, whose, flag)
	}
	return urls, nil
}

// checkMemberURL checks a member's peer URL: http:// or https://, a host and a port,
// no path, query or fragment.
func checkMemberURL(raw string) error {
	if err := needScheme(raw); err != nil {
		return err
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL: %v", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme %q is not served; use http:// or https://", raw, u.Scheme)
	case u.Hostname() == "" || u.Port() == "":
		return fmt.Errorf("%q needs a host and a port, like http://10.0.0.4:2380", raw)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q has more than scheme://host:port; give only that, like http://10.0.0.4:2380", raw)
	}
	if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %s in %q is not a TCP port; use 1-65535", u.Port(), raw)
	}
	return nil
}

func (a *app) newMemberAddCommand(c *clientFlags) *cobra.Command {
	var peerURLs string
	var isLearner bool
	cmd := &cobra.Command{
		Use:   "add NAME --peer-urls URL[,URL...]",
		Short: "add a member (a voter, or a learner with --learner); print how to start it",
		Long: "The member is added to the configuration at once; start it next, on an empty data dir, with the\n" +
			"settings printed (--initial-cluster-state existing). A voter counts towards the quorum from the\n" +
			"moment it is added, started or not: add a learner, let it catch up, and promote it to avoid that.",
		Args: exactArgs("NAME"),
	}
	c.register(cmd, "simple", "json")
	cmd.Flags().StringVar(&peerURLs, "peer-urls", "", "Comma-separated peer URLs of the new member.")
	cmd.Flags().BoolVar(&isLearner, "learner", false, "Add the member as a learner: it gets the log but does not vote until promoted.")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		urls, err := splitMemberURLs("peer-urls", peerURLs, "the new member's")
		if err != nil {
			return err
		}
		return c.first(cmd, false, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewClusterClient(conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: urls, IsLearner: isLearner})
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			printMemberAdded(a.stdout, args[0], urls, resp)
			return nil
		})
	}
	return cmd
}

// printMemberAdded prints etcdctl's sentence and the new member's start settings.
func printMemberAdded(w io.Writer, name string, urls []string, resp *pb.MemberAddResponse) {
	as := " "
	if resp.Member.IsLearner {
		as = " as learner "
	}
	fmt.Fprintf(w, "Member %16x added%sto cluster %16x\n\n", resp.Member.ID, as, resp.Header.ClusterId)
	var initial []string
	for _, m := range resp.Members {
		n := m.Name
		if m.ID == resp.Member.ID {
			n = name
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	cluster, peers := strings.Join(initial, ","), strings.Join(urls, ",")
	fmt.Fprintf(w, "RAFTKV_NAME=%q\n", name)
	fmt.Fprintf(w, "RAFTKV_INITIAL_CLUSTER=%q\n", cluster)
	fmt.Fprintf(w, "RAFTKV_INITIAL_ADVERTISE_PEER_URLS=%q\n", peers)
	fmt.Fprintf(w, "RAFTKV_INITIAL_CLUSTER_STATE=\"existing\"\n\n")
	fmt.Fprintf(w, "or, as flags (with an empty --data-dir, and the cluster's --initial-cluster-token if it is not the default):\n")
	fmt.Fprintf(w, "raftkv --name %s --initial-advertise-peer-urls %s --listen-peer-urls %s --initial-cluster %s --initial-cluster-state existing\n",
		name, peers, peers, cluster)
}

func (a *app) newMemberRemoveCommand(c *clientFlags) *cobra.Command {
	return a.newMemberIDCommand(c, "remove", "removed from",
		"remove a member; a removed member stops and must not be restarted on its data dir",
		func(ctx context.Context, cc pb.ClusterClient, id uint64) (any, *pb.ResponseHeader, error) {
			resp, err := cc.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: id})
			return resp, resp.GetHeader(), err
		})
}

// newMemberIDCommand builds a member subcommand that takes one member ID, makes one
// Cluster call with it and prints etcdctl's sentence ("Member ID <done> cluster ID")
// or, with -w json, the response.
func (a *app) newMemberIDCommand(c *clientFlags, name, done, short string,
	call func(context.Context, pb.ClusterClient, uint64) (any, *pb.ResponseHeader, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  exactArgs("ID"),
	}
	c.register(cmd, "simple", "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := parseMemberID(args[0])
		if err != nil {
			return err
		}
		return c.first(cmd, false, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, header, err := call(ctx, pb.NewClusterClient(conn), id)
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			fmt.Fprintf(a.stdout, "Member %16x %s cluster %16x\n", id, done, header.GetClusterId())
			return nil
		})
	}
	return cmd
}

func (a *app) newMemberUpdateCommand(c *clientFlags) *cobra.Command {
	var peerURLs string
	cmd := &cobra.Command{
		Use:   "update ID --peer-urls URL[,URL...]",
		Short: "change a member's peer URLs",
		Args:  exactArgs("ID"),
	}
	c.register(cmd, "simple", "json")
	cmd.Flags().StringVar(&peerURLs, "peer-urls", "", "Comma-separated new peer URLs of the member.")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := parseMemberID(args[0])
		if err != nil {
			return err
		}
		urls, err := splitMemberURLs("peer-urls", peerURLs, "the member's new")
		if err != nil {
			return err
		}
		return c.first(cmd, false, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewClusterClient(conn).MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: id, PeerURLs: urls})
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			fmt.Fprintf(a.stdout, "Member %16x updated in cluster %16x\n", id, resp.Header.ClusterId)
			return nil
		})
	}
	return cmd
}

func (a *app) newMemberPromoteCommand(c *clientFlags) *cobra.Command {
	return a.newMemberIDCommand(c, "promote", "promoted in",
		"make a learner a voter, once it has caught up with the leader",
		func(ctx context.Context, cc pb.ClusterClient, id uint64) (any, *pb.ResponseHeader, error) {
			resp, err := cc.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: id})
			return resp, resp.GetHeader(), err
		})
}

func (a *app) newMemberListCommand(c *clientFlags) *cobra.Command {
	var linearizable bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list the members: id, status, name, peer and client URLs, learner or not",
		Long: "A member added but not started yet is listed as unstarted, with no name and no client URLs.\n" +
			"--consistency l (the default, as etcdctl's) asks the leader for the latest list; s is the\n" +
			"endpoint's own list, which a member cut off from the leader still answers.",
		Args: exactArgs(),
	}
	c.register(cmd, "table", "simple", "json")
	var consistency string
	cmd.Flags().StringVar(&consistency, "consistency", "l", "Linearizable (l) or serializable (s), as etcdctl's member list.")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch consistency {
		case "l":
			linearizable = true
		case "s":
		default:
			return usageErrorf("--consistency %q: use l (linearizable) or s (serializable)", consistency)
		}
		return c.first(cmd, true, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewClusterClient(conn).MemberList(ctx, &pb.MemberListRequest{Linearizable: linearizable})
			if err != nil {
				return err
			}
			switch c.writeOut {
			case "json":
				return printJSON(a.stdout, resp)
			case "simple":
				for _, m := range resp.Members {
					fmt.Fprintf(a.stdout, "%s\n", strings.Join(memberRow(m), ", "))
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tNAME\tPEER ADDRS\tCLIENT ADDRS\tIS LEARNER")
			for _, m := range resp.Members {
				fmt.Fprintln(tw, strings.Join(memberRow(m), "\t"))
			}
			return tw.Flush()
		})
	}
	return cmd
}

// memberRow is a member as etcdctl's member list prints it.
func memberRow(m *pb.Member) []string {
	status := "started"
	if m.Name == "" {
		status = "unstarted"
	}
	return []string{fmt.Sprintf("%x", m.ID), status, m.Name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","),
		strconv.FormatBool(m.IsLearner)}
}
