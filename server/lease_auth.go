package server

import (
	"context"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"raftkv/kv"
)

// This file holds the permission checks of the lease requests that do not go
// through the log, as etcd 3.7 makes them (v3_server.go): with auth enabled, a
// grant, a revoke and a time-to-live need a user; a keep-alive write permission on
// every key of the lease; a time-to-live with keys and the list of leases read
// permission on every key they name; root needs no permission. The revoke, and a
// put naming a lease, are checked where they apply (kv's auth_lease.go).
//
// A member that does not lead forwards keep-alives and time-to-live requests to the
// leader's LeaseForward service (lease_forward.go), on the leader's client URL, where
// any client could call it too. So the forwarding member checks the caller first,
// as etcd's member does before it forwards over its peer URL, and then:
//   - asks the leader for the TTL only: the keys come from its own store (they are
//     replicated state), read with their check, so the forward service never names a
//     key;
//   - passes the caller's token on, and the leader checks a keep-alive carrying one
//     again, as that user. A call with no token, on a member with --client-cert-auth,
//     is taken as a member's forward: the caller's certificate was verified against
//     the cluster's CA, and a member forwarding for a client authenticated by its
//     certificate presents its own. (A user authenticated by its certificate could
//     call the service itself and keep alive a lease with keys it may not write; a
//     credential only members hold would close that, and the members have none
//     today.) Any other call gets etcd's "user name is empty".

// checkLeaseRenew is etcd's checkLeaseRenew for the caller of ctx.
func (s *Server) checkLeaseRenew(ctx context.Context, id int64) error {
	sender, err := s.sender(ctx)
	if err != nil {
		return err
	}
	return s.sm.store.CheckLeaseRenew(sender, id)
}

// leaseKeysFor returns the keys of lease id for the caller of ctx, checked as
// etcd's checkLeaseTimeToLive, after a linearizable read so that a follower answers
// with the keys the leader would.
func (s *Server) leaseKeysFor(ctx context.Context, id int64) ([][]byte, error) {
	if err := s.linearizableRead(ctx); err != nil {
		return nil, err
	}
	sender, err := s.sender(ctx)
	if err != nil {
		return nil, err
	}
	return s.sm.store.LeaseKeysAs(sender, id, int64(s.cfg.MaxResponseBytes))
}

// withForwardedToken is ctx with the caller's token, if it has one, on the calls
// made with it, so that the leader knows whom a forwarded keep-alive is for.
func withForwardedToken(ctx context.Context) context.Context {
	if token, ok := tokenFromContext(ctx); ok {
		return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, token)
	}
	return ctx
}

// checkForwarded is the leader's check of a LeaseForward call (see the file's
// comment): with auth enabled, a call with a token is checked as its user (renew:
// as a keep-alive of lease id), one without is accepted only with a verified client
// certificate under --client-cert-auth.
func (s *Server) checkForwarded(ctx context.Context, id int64, renew bool) error {
	if enabled, _ := s.sm.store.AuthStatus(); !enabled {
		return nil
	}
	if _, ok := tokenFromContext(ctx); ok {
		if renew {
			return s.checkLeaseRenew(ctx, id)
		}
		sender, err := s.sender(ctx)
		if err != nil {
			return err
		}
		return s.sm.store.RequireUser(sender)
	}
	if s.cfg.ClientTLS.ClientCertAuth && hasVerifiedClientCert(ctx) {
		return nil
	}
	return kv.ErrUserEmpty
}

// hasVerifiedClientCert reports whether the call came with a client certificate
// verified in its TLS handshake.
func hasVerifiedClientCert(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(info.State.VerifiedChains) > 0
}

// forwardRefusals are the leader's answers to a LeaseForward call it refused
// (checkForwarded), by their gRPC status message, and the errors they stand for.
var forwardRefusals = map[string]error{
	rpctypes.ErrGRPCInvalidAuthToken.Error(): errInvalidAuthToken,
	rpctypes.ErrGRPCUserEmpty.Error():        kv.ErrUserEmpty,
	rpctypes.ErrGRPCPermissionDenied.Error(): kv.ErrPermissionDenied,
	rpctypes.ErrGRPCAuthOldRevision.Error():  kv.ErrAuthOldRevision,
}

// forwardRefused returns the error a LeaseForward call's answer stands for if the
// leader refused the call, nil otherwise: a refusal is final, unlike the failures
// the forward retries.
func forwardRefused(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return nil
	}
	if refusal, ok := forwardRefusals[st.Err().Error()]; ok {
		return refusal
	}
	return nil
}
