package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
)

// Forwarding a membership change to the leader (see cluster.go).
//
// The member that takes the call checks the caller itself (requireAdmin: the token's
// user, or the common name of the verified client certificate) and sends the
// change, with the caller's user name, to the leader as a request on the peer
// transport (transport.Request): the connection has the peer transport's
// authentication (the handshake's cluster and node ids, and peer TLS with
// --peer-client-cert-auth), so the leader trusts the request as it trusts that
// member's Raft messages, which could change the membership anyway. A client cannot
// speak on it, so no client can name a user it is not: the leader takes the caller
// from a request only when it arrives from a member (forwardedCall, a context value
// no gRPC call can set), and checks again that the user has the root role in its
// own auth state.
//
// The follower used to forward the gRPC call to the leader's client URL with the
// caller's token: under --client-cert-auth without a token the leader saw the
// follower's own certificate, not the caller, and refused.

// memberMethods are the calls forwarded.
var memberMethods = []string{"MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote"}

// forwardedCall marks a context as a change forwarded by member from for user.
type forwardedCall struct {
	from uint64
	user string
}

type forwardedCallKey struct{}

func forwardedFrom(ctx context.Context) (forwardedCall, bool) {
	fc, ok := ctx.Value(forwardedCallKey{}).(forwardedCall)
	return fc, ok
}

// requireAdmin is Server.requireAdmin for a call from a client, and for a call a
// member forwarded, the same check of the user the member vouches for.
func (c *clusterService) requireAdmin(ctx context.Context) error {
	fc, ok := forwardedFrom(ctx)
	if !ok {
		return c.s.requireAdmin(ctx)
	}
	_, rev := c.s.sm.store.AuthStatus()
	return toGRPC(c.s.sm.store.CheckAdmin(kv.AuthInfo{User: fc.user, Revision: rev}))
}

// caller is the user a change is made for, as this member knows it ("" without auth).
func (c *clusterService) caller(ctx context.Context) (string, error) {
	if fc, ok := forwardedFrom(ctx); ok {
		return fc.user, nil
	}
	sender, err := c.s.sender(ctx)
	return sender.User, toGRPC(err)
}

// A forwarded change travels as: method and user, each a uvarint length and its
// bytes, then the request's protobuf. The answer is a byte 0 and the response's
// protobuf, or a byte 1, the gRPC status code (uvarint) and its message.
const (
	answerOK     = 0
	answerStatus = 1
	// maxMemberRequestBytes bounds what the leader decodes; a request lists peer URLs.
	maxMemberRequestBytes = 64 << 10
)

func encodeMemberRequest(method, user string, r proto.Message) ([]byte, error) {
	body, err := proto.Marshal(r)
	if err != nil {
		return nil, err
	}
	b := binary.AppendUvarint(nil, uint64(len(method)))
	b = append(b, method...)
	b = binary.AppendUvarint(b, uint64(len(user)))
	b = append(b, user...)
	return append(b, body...), nil
}

func decodeMemberRequest(b []byte) (method, user string, body []byte, err error) {
	field := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", errors.New("a length runs past the request")
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, nil
	}
	if len(b) > maxMemberRequestBytes {
		return "", "", nil, fmt.Errorf("a forwarded membership change of %d bytes, over the limit %d", len(b), maxMemberRequestBytes)
	}
	if method, err = field(); err == nil {
		user, err = field()
	}
	if err != nil {
		return "", "", nil, fmt.Errorf("a forwarded membership change does not decode: %v", err)
	}
	return method, user, b, nil
}

// answerMemberRequest is the leader's side: transport.Config.OnRequest.
func (s *Server) answerMemberRequest(ctx context.Context, from uint64, request []byte) ([]byte, error) {
	method, user, body, err := decodeMemberRequest(request)
	if err != nil {
		return nil, err
	}
	c := s.clusterSvc.Load()
	if c == nil {
		return encodeAnswer(nil, errNotLeaderForMembers)
	}
	ctx = context.WithValue(ctx, forwardedCallKey{}, forwardedCall{from: from, user: user})
	s.logger.Info("a membership change forwarded by a member", "method", method, "member", hexID(from), "user", user)
	var resp proto.Message
	switch method {
	case "MemberAdd":
		r := &pb.MemberAddRequest{}
		if err = proto.Unmarshal(body, r); err == nil {
			resp, err = c.MemberAdd(ctx, r)
		}
	case "MemberRemove":
		r := &pb.MemberRemoveRequest{}
		if err = proto.Unmarshal(body, r); err == nil {
			resp, err = c.MemberRemove(ctx, r)
		}
	case "MemberUpdate":
		r := &pb.MemberUpdateRequest{}
		if err = proto.Unmarshal(body, r); err == nil {
			resp, err = c.MemberUpdate(ctx, r)
		}
	case "MemberPromote":
		r := &pb.MemberPromoteRequest{}
		if err = proto.Unmarshal(body, r); err == nil {
			resp, err = c.MemberPromote(ctx, r)
		}
	default:
		return nil, fmt.Errorf("%q is not a membership change (%v)", method, memberMethods)
	}
	return encodeAnswer(resp, err)
}

func encodeAnswer(resp proto.Message, err error) ([]byte, error) {
	if err != nil {
		st, _ := status.FromError(toGRPC(err))
		b := binary.AppendUvarint([]byte{answerStatus}, uint64(st.Code()))
		return append(b, st.Message()...), nil
	}
	b, err := proto.Marshal(resp)
	return append([]byte{answerOK}, b...), err
}

// decodeAnswer fills resp from the leader's answer, or returns its error.
func decodeAnswer(answer []byte, resp proto.Message) error {
	if len(answer) == 0 {
		return status.Error(codes.Internal, "raftkv: an empty answer from the leader to a membership change")
	}
	if answer[0] == answerOK {
		return proto.Unmarshal(answer[1:], resp)
	}
	code, n := binary.Uvarint(answer[1:])
	if answer[0] != answerStatus || n <= 0 || code > uint64(codes.Unauthenticated) || code == uint64(codes.OK) {
		return status.Errorf(codes.Internal, "raftkv: the leader's answer to a membership change does not decode (%d bytes)", len(answer))
	}
	return status.Error(codes.Code(code), string(answer[1+n:]))
}
