package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func (a *app) newStatusCommand(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show each endpoint's member, role, term, index and DB size, and name the leader",
		Long: "Every endpoint is asked at once. The command succeeds when a quorum of the cluster's members\n" +
			"answered; the others are listed as unreachable. With the default endpoints, the ones that do\n" +
			"not answer and are not members of the cluster that does are left out, so that the command\n" +
			"also works against a single member started with no flags.",
		Args: exactArgs(),
	}
	c.register(cmd, "table", "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), c.commandTimeout)
		defer cancel()
		rows := make([]statusRow, len(c.endpoints))
		var wg sync.WaitGroup
		for i, ep := range c.endpoints {
			wg.Go(func() { rows[i] = c.status(ctx, ep) })
		}
		wg.Wait()
		report := newStatusReport(rows, c.endpointsGiven)
		if report.answered == 0 {
			var errs endpointErrors
			for _, r := range rows {
				errs = append(errs, endpointError{r.Endpoint, r.err})
			}
			for _, r := range rows {
				if msg := fmt.Sprint(r.err); strings.Contains(msg, "user name is empty") || strings.Contains(msg, "invalid auth token") {
					return fmt.Errorf("%w\nthe members run with authentication on: give --user NAME:PASSWORD (or --user NAME and --password)", errs)
				}
			}
			if !c.endpointsGiven && !errs.allRefused() { // a refusal everywhere has the hint already
				return fmt.Errorf("%w\nis a member running? Start one with 'raftkv' or a local cluster with 'raftkv cluster', or give --endpoints", errs)
			}
			return errs
		}
		var err error
		if c.writeOut == "json" {
			err = printJSON(a.stdout, report.rows)
		} else {
			err = report.printTable(a.stdout)
		}
		if err != nil {
			return err
		}
		return report.quorumError()
	}
	return cmd
}

// statusRow is one endpoint's answer; its JSON is etcdctl's endpoint status -w json
// (Endpoint, Status) with the member's name, its role and the endpoint's error.
type statusRow struct {
	Endpoint string             `json:"Endpoint"`
	Name     string             `json:"Name,omitempty"`
	ID       string             `json:"ID,omitempty"` // the member's id in hex, as etcdctl prints it
	Role     string             `json:"Role"`
	Status   *pb.StatusResponse `json:"Status,omitempty"`
	Error    string             `json:"Error,omitempty"`

	err     error
	members []*pb.Member
}

// Roles in the status table.
const (
	roleLeader      = "leader"
	roleFollower    = "follower"
	roleNoLeader    = "no leader"
	roleUnreachable = "unreachable"
)

func (c *clientFlags) status(ctx context.Context, ep string) statusRow {
	row := statusRow{Endpoint: ep, Role: roleUnreachable}
	conn, err := c.dial(ctx, ep)
	if err != nil {
		row.err = c.rpcError(err)
		row.Error = row.err.Error()
		return row
	}
	defer conn.Close()
	st, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		row.err = c.rpcError(err)
		row.Error = row.err.Error()
		return row
	}
	row.Status = st
	switch {
	case st.Leader == 0:
		row.Role = roleNoLeader
	case st.Leader == st.Header.GetMemberId():
		row.Role = roleLeader
	default:
		row.Role = roleFollower
	}
	// The names come from the member list; without it the table shows ids only.
	if ml, err := pb.NewClusterClient(conn).MemberList(ctx, &pb.MemberListRequest{}); err == nil {
		row.members = ml.Members
	}
	return row
}

// statusReport is the rows to print and what they say about the cluster.
type statusReport struct {
	rows     []statusRow
	members  map[uint64]*pb.Member // by id, from any member's list
	answered int                   // distinct members that answered
	leader   uint64                // the leader of the highest term reported, 0 if none
	leaderAt string                // an endpoint of the leader, if one was asked
}

func newStatusReport(rows []statusRow, endpointsGiven bool) *statusReport {
	r := &statusReport{members: map[uint64]*pb.Member{}}
	answered := map[uint64]bool{}
	var leaderTerm uint64
	for _, row := range rows {
		for _, m := range row.members {
			r.members[m.ID] = m
		}
		if row.Status != nil {
			answered[row.Status.Header.GetMemberId()] = true
			if row.Status.Leader != 0 && row.Status.RaftTerm >= leaderTerm {
				r.leader, leaderTerm = row.Status.Leader, row.Status.RaftTerm
			}
		}
	}
	r.answered = len(answered)
	byEndpoint := map[string]*pb.Member{}
	for _, m := range r.members {
		for _, u := range m.ClientURLs {
			byEndpoint[endpointAddr(u)] = m
		}
	}
	for _, row := range rows {
		m := byEndpoint[row.Endpoint]
		if row.Status != nil {
			m = r.members[row.Status.Header.GetMemberId()]
			if row.Status.Header.GetMemberId() == r.leader && r.leaderAt == "" {
				r.leaderAt = row.Endpoint
			}
		}
		if row.Status == nil && m == nil && !endpointsGiven && r.answered > 0 {
			continue // a default endpoint where no member of this cluster serves
		}
		if m != nil {
			row.Name, row.ID = m.Name, fmt.Sprintf("%x", m.ID)
		}
		if row.Status != nil {
			row.ID = fmt.Sprintf("%x", row.Status.Header.GetMemberId())
		}
		r.rows = append(r.rows, row)
	}
	return r
}

func (r *statusReport) printTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "ENDPOINT\tNAME\tID\tROLE\tTERM\tINDEX\tAPPLIED\tDB SIZE"
	if slices.ContainsFunc(r.rows, func(row statusRow) bool { return row.Status == nil }) {
		header += "\tERROR"
	}
	fmt.Fprintln(tw, header)
	for _, row := range r.rows {
		name, id := orDash(row.Name), orDash(row.ID)
		if row.Status == nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\t-\t%s\n", row.Endpoint, name, id, row.Role, row.Error)
			continue
		}
		st := row.Status
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", row.Endpoint, name, id, row.Role,
			st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex, humanBytes(st.DbSize))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, r.leaderLine())
	return err
}

// leaderLine names the leader, so that the user knows which process to stop.
func (r *statusReport) leaderLine() string {
	if r.leader == 0 {
		return "leader: none known (an election may be under way)"
	}
	where := r.leaderAt
	m := r.members[r.leader]
	if where == "" && m != nil && len(m.ClientURLs) > 0 {
		where = endpointAddr(m.ClientURLs[0])
	}
	name := fmt.Sprintf("%x", r.leader)
	if m != nil && m.Name != "" {
		name = fmt.Sprintf("%s (id %x)", m.Name, r.leader)
	}
	line := "leader: " + name
	if where != "" {
		line += " at " + where
	}
	for _, row := range r.rows {
		if row.Endpoint == where && row.Status == nil {
			line += ", which does not answer: an election is due"
		}
	}
	return line
}

// quorumError fails the command when an endpoint did not answer and the members that
// did are not a majority of the cluster: the unreachable ones are then more than a
// detail. (Asking fewer members than a quorum, all of which answer, is no failure.)
func (r *statusReport) quorumError() error {
	failed := 0
	for _, row := range r.rows {
		if row.Status == nil {
			failed++
		}
	}
	total := len(r.members)
	if total == 0 {
		total = len(r.rows) // no member list: count the endpoints
	}
	if failed == 0 || r.answered > total/2 {
		return nil
	}
	var missing []string
	for id, m := range r.members {
		answered := false
		for _, row := range r.rows {
			if row.Status != nil && row.Status.Header.GetMemberId() == id {
				answered = true
			}
		}
		if !answered {
			missing = append(missing, orDash(m.Name))
		}
	}
	if len(r.members) == 0 {
		for _, row := range r.rows {
			if row.Status == nil {
				missing = append(missing, row.Endpoint)
			}
		}
	}
	slices.Sort(missing)
	return fmt.Errorf("only %d of the cluster's %d members answered, not a quorum (%d); no answer from %s",
		r.answered, total, total/2+1, strings.Join(missing, ", "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes prints a size in SI units, as etcdctl's table does ("41 kB").
func humanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	value := float64(n)
	for _, unit := range []string{"kB", "MB", "GB", "TB"} {
		value /= 1000
		if value < 1000 || unit == "TB" {
			if value < 10 {
				return fmt.Sprintf("%.1f %s", value, unit)
			}
			return fmt.Sprintf("%.0f %s", value, unit)
		}
	}
	panic("unreachable")
}
