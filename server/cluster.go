package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"raftkv/raft"
)

// The Cluster service, with etcd's answers and errors (etcd's v3rpc/member.go and
// EtcdServer.AddMember and the rest).
//
// Every change is made by the leader, which alone knows how far each member's log is
// (promote) and which members it hears from (--strict-reconfig-check). A member that
// does not lead checks the caller's permission itself and forwards the call, naming
// the caller, to the leader over the peer transport (cluster_forward.go), as etcd
// forwards MemberPromote to its leader over its peer URLs; a call that arrives
// forwarded at a member that no longer leads is answered Unavailable and the
// forwarding member tries again, until RequestTimeout.
//
// The leader makes one change at a time (clusterService.mu, held from the checks to
// the change's apply): the checks read the member list the previous change left, and
// Raft takes one configuration change at a time anyway (raft.ErrConfChangePending,
// also returned until the leader has committed an entry of its term; then it tries
// again every heartbeat).
//
// Checks, as etcd's with --strict-reconfig-check (Config.DisableStrictReconfigCheck
// turns them off): a member is started once it has published its name (kindMember),
// and active if the leader's peer stream to it is up (etcd asks its transport
// likewise). Adding a voter needs a quorum of the
// voters-to-be started, and, but for a cluster of one, a quorum of them active;
// removing a voter needs a quorum of the voters left started and, unless the member
// removed is down, a quorum of the voters active without it; promoting needs a quorum
// started counting the learner. One learner at most, as etcd's default --max-learners.

const (
	// maxLearners is etcd's default --max-learners.
	maxLearners = 1
	// learnerReadyFraction: a learner is promoted only once its log holds this
	// fraction of the leader's (etcd's readyPercentThreshold).
	learnerReadyFraction = 0.9
)

var (
	errMemberNotFound      = rpctypes.ErrGRPCMemberNotFound
	errNotLeaderForMembers = status.Error(codes.Unavailable, "raftkv: this member does not lead; the membership change goes to the leader")
)

type clusterService struct {
	pb.UnimplementedClusterServer
	s *Server
	// mu makes the leader's changes one at a time.
	mu sync.Mutex
}

func (c *clusterService) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := c.s.linearizableRead(ctx); err != nil {
			return nil, toGRPC(err)
		}
	}
	if err := c.s.requireUser(ctx); err != nil { // as etcd: a user, any user
		return nil, err
	}
	return &pb.MemberListResponse{Header: c.header(), Members: c.list()}, nil
}

// header is etcd's Cluster service header: cluster, member and term, no revision.
func (c *clusterService) header() *pb.ResponseHeader { return c.s.header().pb(0) }

// list is the member list as etcd's Members: by id, learners flagged, a member not
// yet started with no name and no client URLs.
func (c *clusterService) list() []*pb.Member {
	var out []*pb.Member
	for _, m := range c.s.sm.members() {
		if c.s.forcedVoters != nil && !slices.Contains(c.s.forcedVoters, m.ID) {
			continue // removed by --force-new-cluster
		}
		out = append(out, &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	return out
}

func (c *clusterService) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if err := checkMemberURLs(r.PeerURLs); err != nil {
		return nil, err
	}
	if err := c.requireAdmin(ctx); err != nil {
		return nil, err
	}
	resp := &pb.MemberAddResponse{}
	err := c.onLeader(ctx, "MemberAdd", r, resp, nil, func(ctx context.Context) error {
		m, err := c.add(ctx, r.PeerURLs, r.IsLearner)
		if err != nil {
			return err
		}
		resp.Header, resp.Members = c.header(), c.list()
		resp.Member = &pb.Member{ID: m.ID, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner}
		if !slices.ContainsFunc(resp.Members, func(l *pb.Member) bool { return l.ID == m.ID }) {
			// Answered before it applied (add): listed as it will be.
			resp.Members = append(resp.Members, resp.Member)
			slices.SortFunc(resp.Members, func(a, b *pb.Member) int { return cmp.Compare(a.ID, b.ID) })
		}
		return nil
	})
	return resp, err
}

func (c *clusterService) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := c.requireAdmin(ctx); err != nil {
		return nil, err
	}
	resp := &pb.MemberRemoveResponse{}
	_, listed := c.s.sm.member(r.ID)
	var lost bool
	err := c.onLeader(ctx, "MemberRemove", r, resp, &lost, func(ctx context.Context) error {
		if err := c.remove(ctx, r.ID); err != nil {
			return err
		}
		resp.Header, resp.Members = c.header(), c.list()
		return nil
	})
	if lost && listed && errors.Is(err, errMemberNotFound) {
		// The removal forwarded first committed and its answer was lost: a removed
		// leader stops before it answers (members.go), and the new leader no longer
		// knows the member. The change is made; answer once this member applied it.
		return c.removedAfterLostAnswer(ctx, r.ID)
	}
	return resp, err
}

// removedAfterLostAnswer answers a removal whose forward lost its answer and that
// the leader no longer finds: it waits (RequestTimeout) until this member has
// applied the removal too, so that the members listed leave it out.
func (c *clusterService) removedAfterLostAnswer(ctx context.Context, id uint64) (*pb.MemberRemoveResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.s.cfg.RequestTimeout)
	defer cancel()
	for {
		if m, ok := c.s.sm.anyMember(id); ok && m.isRemoved {
			return &pb.MemberRemoveResponse{Header: c.header(), Members: c.list()}, nil
		}
		select {
		case <-time.After(forwardRetry):
		case <-ctx.Done():
			return nil, toGRPC(c.s.contextError(ctx))
		case <-c.s.stopc:
			return nil, toGRPC(errStopped)
		}
	}
}

func (c *clusterService) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if err := checkMemberURLs(r.PeerURLs); err != nil {
		return nil, err
	}
	if err := c.requireAdmin(ctx); err != nil {
		return nil, err
	}
	resp := &pb.MemberUpdateResponse{}
	err := c.onLeader(ctx, "MemberUpdate", r, resp, nil, func(ctx context.Context) error {
		if err := c.update(ctx, r.ID, r.PeerURLs); err != nil {
			return err
		}
		resp.Header, resp.Members = c.header(), c.list()
		return nil
	})
	return resp, err
}

func (c *clusterService) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if err := c.requireAdmin(ctx); err != nil {
		return nil, err
	}
	resp := &pb.MemberPromoteResponse{}
	err := c.onLeader(ctx, "MemberPromote", r, resp, nil, func(ctx context.Context) error {
		if err := c.promote(ctx, r.ID); err != nil {
			return err
		}
		resp.Header, resp.Members = c.header(), c.list()
		return nil
	})
	return resp, err
}

// checkMemberURLs is etcd's types.NewURLs check of a request's peer URLs: each an
// http:// or https:// URL of a host:port and nothing else.
func checkMemberURLs(urls []string) error {
	if len(urls) == 0 {
		return rpctypes.ErrGRPCMemberBadURLs
	}
	for _, u := range urls {
		if _, err := memberURLHostPort(u); err != nil {
			return rpctypes.ErrGRPCMemberBadURLs
		}
	}
	return nil
}

// onLeader runs local on the leader, or forwards the call (method, r, resp) to it,
// until one answers other than "not the leader" or RequestTimeout passes. If lost is
// not nil, it is set when a forward reached the transport and its answer was lost:
// the leader may have made the change before the next attempt.
func (c *clusterService) onLeader(ctx context.Context, method string, r, resp proto.Message, lost *bool, local func(context.Context) error) error {
	s := c.s
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	_, forwarded := forwardedFrom(ctx)
	var request []byte // the change as forwarded to the leader
	for {
		_, lead := s.leader()
		var err error
		switch {
		case lead == s.id:
			err = local(ctx)
			if errors.Is(err, raft.ErrNotLeader) {
				err = errNotLeaderForMembers
			}
			if err == nil || !errors.Is(err, errNotLeaderForMembers) {
				return toGRPC(err)
			}
			if forwarded {
				return errNotLeaderForMembers
			}
		case forwarded:
			// Forwarded once already: the forwarding member asks the new leader.
			return errNotLeaderForMembers
		case lead != 0:
			if request == nil {
				user, err := c.caller(ctx)
				if err != nil {
					return err
				}
				if request, err = encodeMemberRequest(method, user, r); err != nil {
					return toGRPC(err)
				}
			}
			var answer []byte
			answer, err = s.transport.Request(ctx, lead, request)
			if err == nil {
				err = decodeAnswer(answer, resp)
				if err == nil {
					// The leader's answer, under this member's header: etcd's names the
					// member that served the call.
					m := resp.ProtoReflect()
					if fd := m.Descriptor().Fields().ByName("header"); fd != nil {
						m.Set(fd, protoreflect.ValueOfMessage(c.header().ProtoReflect()))
					}
					return nil
				}
				if st, ok := status.FromError(err); ok && st.Code() != codes.Unavailable && st.Code() != codes.DeadlineExceeded {
					return err // the leader's answer
				}
			}
			if lost != nil {
				*lost = true // no answer, or the leader gave up waiting: it may have proposed
			}
			s.logger.Debug("forwarding a membership change to the leader failed; retrying", "method", method, "leader", hexID(lead), "err", err)
		}
		select {
		case <-time.After(forwardRetry):
		case <-ctx.Done():
			return toGRPC(s.contextError(ctx))
		case <-s.stopc:
			return toGRPC(errStopped)
		}
	}
}

// memberState is what the checks need: the configuration in effect and, per member,
// whether it started and whether the leader hears from it.
type memberState struct {
	st      raft.MembershipStatus
	started map[uint64]bool
	active  map[uint64]bool
}

// state is the leader's view that a change is checked against. It waits until the
// latest configuration change in the log has committed and applied here, so that
// the member list the checks read (peer URLs in use, who is a learner, who exists)
// is that of the configuration in effect: etcd checks a change as it applies, this
// leader before it proposes, and the change before may have committed without having
// applied yet. (A voter added below quorum is answered while still uncommitted, see
// waitDurable.)
func (c *clusterService) state(ctx context.Context) (memberState, error) {
	st := c.s.node.MembershipStatus()
	for st.Progress != nil && !st.Committed {
		if err := c.pause(ctx); err != nil {
			return memberState{}, err
		}
		st = c.s.node.MembershipStatus()
	}
	if st.Progress == nil {
		return memberState{}, errNotLeaderForMembers
	}
	if applied := c.s.applied.get(); applied < st.Index {
		if err := c.s.applied.wait(ctx, st.Index); err != nil {
			if ctx.Err() != nil {
				return memberState{}, c.s.contextError(ctx)
			}
			return memberState{}, err
		}
		if st = c.s.node.MembershipStatus(); st.Progress == nil {
			return memberState{}, errNotLeaderForMembers
		}
	}
	ms := memberState{st: st, started: map[uint64]bool{}, active: map[uint64]bool{}}
	for _, m := range c.s.sm.members() {
		ms.started[m.ID] = m.Name != ""
	}
	// Connected as etcd's strict check counts it (isConnectedSince): the stream to
	// the member has been up for healthInterval, so that one that flaps does not
	// count. Raft's RecentActive would not do: CheckQuorum clears it every election
	// timeout until the member's next answer.
	connected := c.s.transport.Stats().Peers
	upBefore := time.Now().Add(-c.s.healthInterval())
	for _, p := range st.Progress {
		peer := connected[p.ID]
		ms.active[p.ID] = p.ID == c.s.id || connectedSince(peer, upBefore)
	}
	return ms, nil
}

func quorum(n int) int { return n/2 + 1 }

// healthInterval is how long a stream to a peer must have been up for the strict
// reconfiguration check to count the peer as connected: etcd's HealthInterval.
const strictCheckHealthInterval = 5 * time.Second

func (s *Server) healthInterval() time.Duration {
	if s.cfg.StrictReconfigHealthInterval != 0 {
		return s.cfg.StrictReconfigHealthInterval
	}
	return strictCheckHealthInterval
}

func (ms memberState) countStarted(skip uint64) (members, started int) {
	for _, id := range ms.st.Voters {
		if id == skip {
			continue
		}
		members++
		if ms.started[id] {
			started++
		}
	}
	return members, started
}

func (ms memberState) countActive() int {
	n := 0
	for _, id := range ms.st.Voters {
		if ms.active[id] {
			n++
		}
	}
	return n
}

func (c *clusterService) add(ctx context.Context, peerURLs []string, isLearner bool) (member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m member
	var durableOn []uint64
	err := c.changeWaiting(ctx, &durableOn, func() (raft.ConfChange, []byte, error) {
		ms, err := c.state(ctx)
		if err != nil {
			return raft.ConfChange{}, nil, err
		}
		if !c.s.cfg.DisableStrictReconfigCheck {
			members, started := ms.countStarted(0)
			members++ // the new member, not started
			if !isLearner && !(started == 1 && members == 2) && started < quorum(members) {
				return raft.ConfChange{}, nil, rpctypes.ErrGRPCMemberNotEnoughStarted
			}
			// For a learner too, as etcd's mayAddMember: the leader must reach a
			// quorum of the voters plus one.
			if len(ms.st.Voters) > 1 && ms.countActive() < quorum(len(ms.st.Voters)+1) {
				return raft.ConfChange{}, nil, rpctypes.ErrGRPCUnhealthy
			}
		}
		for _, other := range c.s.sm.members() {
			for _, u := range peerURLs {
				if slices.Contains(other.PeerURLs, u) {
					return raft.ConfChange{}, nil, rpctypes.ErrGRPCPeerURLExist
				}
			}
		}
		if isLearner && len(ms.st.Learners) >= maxLearners {
			return raft.ConfChange{}, nil, rpctypes.ErrGRPCTooManyLearners
		}
		if m.ID == 0 { // one id for every attempt: the transport dials it from the first
			m = member{ID: c.newMemberID(peerURLs), PeerURLs: slices.Clone(peerURLs), IsLearner: isLearner}
		}
		typ := raft.ConfChangeAddVoter
		if isLearner {
			typ = raft.ConfChangeAddLearner
		}
		// The configuration with the new voter is in effect once appended (§4.1): if
		// the voters heard from are not a quorum of it, the change commits only
		// once the new member runs, which it can only do after this call has
		// answered. So the call answers once the change is durable on a quorum of
		// the voters before it (etcd, which switches configuration at apply,
		// answers once it commits under those), and a joining member hears of
		// itself before it commits (unappliedAdd).
		durableOn = nil
		if !isLearner && ms.countActive() < quorum(len(ms.st.Voters)+1) {
			durableOn = slices.Clone(ms.st.Voters)
		}
		c.s.dialAhead(m) // the leader must reach it before the change applies
		return raft.ConfChange{Type: typ, NodeID: m.ID}, m.encode(), nil
	})
	return m, err
}

// newMemberID draws a new member's id: etcd's takes the time into the hash of the
// peer URLs, so a member added again on the same URLs gets a new id; this one is
// random, and never one in use or removed.
func (c *clusterService) newMemberID(peerURLs []string) uint64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := memberID(peerURLs, c.s.cfg.InitialClusterToken+"|"+fmt.Sprint(binary.BigEndian.Uint64(b[:])))
		if _, used := c.s.sm.anyMember(id); !used {
			return id
		}
	}
}

func (c *clusterService) remove(ctx context.Context, id uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.change(ctx, func() (raft.ConfChange, []byte, error) {
		ms, err := c.state(ctx)
		if err != nil {
			return raft.ConfChange{}, nil, err
		}
		m, ok := c.s.sm.member(id)
		if !ok {
			return raft.ConfChange{}, nil, errMemberNotFound
		}
		if !c.s.cfg.DisableStrictReconfigCheck && !m.IsLearner {
			members, started := ms.countStarted(id)
			if started < quorum(members) {
				return raft.ConfChange{}, nil, rpctypes.ErrGRPCMemberNotEnoughStarted
			}
			isDown := id != c.s.id && !ms.active[id]
			if !isDown && ms.countActive()-1 < 1+(len(ms.st.Voters)-1)/2 {
				return raft.ConfChange{}, nil, rpctypes.ErrGRPCUnhealthy
			}
		}
		return raft.ConfChange{Type: raft.ConfChangeRemove, NodeID: id}, (&member{ID: id}).encode(), nil
	})
}

func (c *clusterService) promote(ctx context.Context, id uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.change(ctx, func() (raft.ConfChange, []byte, error) {
		ms, err := c.state(ctx)
		if err != nil {
			return raft.ConfChange{}, nil, err
		}
		var learnerMatch, leaderMatch uint64
		found := false
		for _, p := range ms.st.Progress {
			switch p.ID {
			case id:
				learnerMatch, found = p.Match, true
			case c.s.id:
				leaderMatch = p.Match
			}
		}
		if id == c.s.id {
			learnerMatch, found = leaderMatch, true
		}
		if !found {
			return raft.ConfChange{}, nil, errMemberNotFound
		}
		if float64(learnerMatch) < float64(leaderMatch)*learnerReadyFraction {
			return raft.ConfChange{}, nil, rpctypes.ErrGRPCLearnerNotReady
		}
		if !c.s.cfg.DisableStrictReconfigCheck {
			members, started := ms.countStarted(0)
			if started+1 < quorum(members+1) {
				return raft.ConfChange{}, nil, rpctypes.ErrGRPCMemberNotEnoughStarted
			}
		}
		if m, ok := c.s.sm.member(id); !ok {
			return raft.ConfChange{}, nil, errMemberNotFound
		} else if !m.IsLearner {
			return raft.ConfChange{}, nil, rpctypes.ErrGRPCMemberNotLearner
		}
		return raft.ConfChange{Type: raft.ConfChangePromote, NodeID: id}, (&member{ID: id}).encode(), nil
	})
}

func (c *clusterService) update(ctx context.Context, id uint64, peerURLs []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.state(ctx); err != nil {
		return err
	}
	if _, ok := c.s.sm.member(id); !ok {
		return errMemberNotFound
	}
	for _, other := range c.s.sm.members() {
		if other.ID == id {
			continue
		}
		for _, u := range peerURLs {
			if slices.Contains(other.PeerURLs, u) {
				return rpctypes.ErrGRPCPeerURLExist
			}
		}
	}
	rec := member{ID: id, PeerURLs: slices.Clone(peerURLs)}
	res, err := c.s.propose(ctx, kindMemberUpdate, rec.encode())
	if err != nil {
		return err
	}
	return res.Err
}

// waitDurable waits until the configuration change this leader appended at index is
// durable on a quorum of voters, the voters of the configuration before it. Then no
// leader can be elected without it, as for an entry committed under that
// configuration (§5.4): a candidate whose log lacks it needs the votes of a quorum of
// voters, one of whom holds it and refuses. For a cluster of one that is this
// leader's own durable write. A follower's Match counts only what it acknowledged
// after its fsync.
func (c *clusterService) waitDurable(ctx context.Context, index, term uint64, voters []uint64) error {
	for {
		st := c.s.node.MembershipStatus()
		if st.Progress == nil {
			return errLostEntry
		}
		switch t, err := c.s.storage.Term(index); {
		case errors.Is(err, raft.ErrCompacted):
			return nil // in a snapshot, so committed
		case err == nil && t != term:
			return errLostEntry // cut from the log, another entry in its place
		}
		durable := 0
		for _, p := range st.Progress {
			if p.Match >= index && slices.Contains(voters, p.ID) {
				durable++
			}
		}
		if durable >= quorum(len(voters)) {
			return nil
		}
		if err := c.pause(ctx); err != nil {
			return err
		}
	}
}

// pause waits a quarter of a heartbeat between two looks at the leader's
// membership status, or returns ctx's error, or errStopped.
func (c *clusterService) pause(ctx context.Context) error {
	select {
	case <-time.After(c.s.cfg.HeartbeatInterval / 4):
		return nil
	case <-ctx.Done():
		return c.s.contextError(ctx)
	case <-c.s.stopc:
		return errStopped
	}
}

// change proposes the configuration change that prepare checks and builds (with its
// member record), and waits for it to apply here. prepare runs again whenever Raft
// asks to wait for an earlier change (ErrConfChangePending).
func (c *clusterService) change(ctx context.Context, prepare func() (raft.ConfChange, []byte, error)) error {
	return c.changeWaiting(ctx, nil, prepare)
}

// changeWaiting is change; if prepare sets *durableOn to the voters before the
// change, it waits only until the change is durable on a quorum of them
// (waitDurable).
func (c *clusterService) changeWaiting(ctx context.Context, durableOn *[]uint64, prepare func() (raft.ConfChange, []byte, error)) error {
	s := c.s
	for {
		cc, rec, err := prepare()
		if err != nil {
			return err
		}
		seq, wt := s.waits.register()
		cc.Context = encodeEnvelope(envelope{kind: kindConf, proposer: s.proposer, seq: seq, payload: rec})
		index, term, err := s.node.ProposeConfChange(ctx, cc)
		if err == nil && durableOn != nil && *durableOn != nil {
			s.waits.cancel(seq)
			return c.waitDurable(ctx, index, term, *durableOn)
		}
		if err == nil {
			s.waits.expectAt(seq, index)
			_, err = s.wait(requestContext(ctx), wt, nil)
			s.waits.cancel(seq)
			return err
		}
		s.waits.cancel(seq)
		switch {
		case errors.Is(err, raft.ErrConfChangePending):
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrProposalDropped):
			return errNotLeaderForMembers
		case errors.Is(err, raft.ErrInvalidConfChange):
			return status.Error(codes.FailedPrecondition, err.Error())
		default:
			return s.raftError(err)
		}
		select {
		case <-time.After(s.cfg.HeartbeatInterval):
		case <-ctx.Done():
			return s.contextError(ctx)
		case <-s.stopc:
			return errStopped
		}
	}
}
