package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"

	"raftkv/kv"
)

// This file is etcd's Auth service. The changes (AuthEnable, UserAdd, RoleGrant...)
// go through the log as kv.AuthRequest and are checked where they apply; the reads
// (AuthStatus, UserGet, UserList, RoleGet, RoleList) are linearizable reads of the
// replicated state, checked under the read's lock, where etcd sends them through its
// log too: the same answers without a log entry. Passwords are hashed with bcrypt
// on this member before anything is proposed, so the log, the snapshots and the
// other members see only hashes, and a password is never logged or put in an error.

type authService struct {
	pb.UnimplementedAuthServer
	s *Server
}

// bcryptSlots bounds the bcrypt hashes and comparisons running at once: each takes
// about 50 ms of a core at cost 10, and a burst of Authenticate calls must not take
// the cores the member needs to keep its leadership (heartbeats, the log).
const bcryptSlots = 2

func (s *Server) withBcryptSlot(ctx context.Context, fn func()) error {
	select {
	case s.bcrypt <- struct{}{}:
	case <-ctx.Done():
		return s.contextError(ctx)
	}
	defer func() { <-s.bcrypt }()
	fn()
	return nil
}

// proposeAuth proposes an auth change sent by the call's sender and returns the
// state machine's answer.
func (s *Server) proposeAuth(ctx context.Context, r *kv.AuthRequest) (*kv.AuthResponse, error) {
	sender, err := s.sender(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	return s.proposeAuthAs(ctx, sender, r)
}

func (s *Server) proposeAuthAs(ctx context.Context, sender kv.AuthInfo, r *kv.AuthRequest) (*kv.AuthResponse, error) {
	payload, err := (&kv.Command{Sender: sender, Auth: r}).Encode()
	if err != nil {
		return nil, toGRPC(err)
	}
	res, err := s.propose(ctx, kindKV, payload)
	if err != nil {
		return nil, toGRPC(err)
	}
	if res.Err != nil {
		return nil, res.Err // toGRPC'd by the caller, which may retry on some
	}
	return res.Auth, nil
}

func (a *authService) header() *pb.ResponseHeader {
	return a.s.header().pb(a.s.sm.store.Revision())
}

// change proposes r and answers with a header, for the changes whose responses
// hold nothing else.
func (a *authService) change(ctx context.Context, r *kv.AuthRequest) (*pb.ResponseHeader, error) {
	if _, err := a.s.proposeAuth(ctx, r); err != nil {
		return nil, toGRPC(err)
	}
	return a.header(), nil
}

func (a *authService) AuthEnable(ctx context.Context, _ *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	h, err := a.change(ctx, &kv.AuthRequest{Op: kv.AuthEnable})
	if err != nil {
		return nil, err
	}
	a.s.logger.Info("authentication enabled")
	return &pb.AuthEnableResponse{Header: h}, nil
}

func (a *authService) AuthDisable(ctx context.Context, _ *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	h, err := a.change(ctx, &kv.AuthRequest{Op: kv.AuthDisable})
	if err != nil {
		return nil, err
	}
	a.s.logger.Info("authentication disabled")
	return &pb.AuthDisableResponse{Header: h}, nil
}

func (a *authService) AuthStatus(ctx context.Context, _ *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	if _, err := a.read(ctx); err != nil {
		return nil, err
	}
	enabled, rev := a.s.sm.store.AuthStatus()
	return &pb.AuthStatusResponse{Header: a.header(), Enabled: enabled, AuthRevision: rev}, nil
}

// read makes a read of the auth state linearizable and returns its sender.
func (a *authService) read(ctx context.Context) (kv.AuthInfo, error) {
	if err := a.s.linearizableRead(ctx); err != nil {
		return kv.AuthInfo{}, toGRPC(err)
	}
	sender, err := a.s.sender(ctx)
	if err != nil {
		return kv.AuthInfo{}, toGRPC(err)
	}
	return sender, nil
}

// Authenticate checks the password here (bcrypt, against the state after a
// linearizable read), then proposes the token's digest; the state machine issues
// it only if the auth state has not changed since the check, else the password is
// checked again. Repeated wrong passwords from one address are slowed down (see
// authLimiter).
func (a *authService) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	s := a.s
	password := r.Password
	r.Password = "" // nothing below may log or keep it
	addr := clientAddr(ctx)
	if wait, ok := s.authLimits.allow(addr, time.Now()); !ok {
		return nil, errTooManyAuthFailures(addr, wait)
	}
	if err := s.linearizableRead(ctx); err != nil {
		return nil, toGRPC(err)
	}
	for attempt := 0; ; attempt++ {
		hash, rev, err := s.sm.store.UserPassword(r.Name)
		if err == nil {
			if serr := s.withBcryptSlot(ctx, func() { err = bcrypt.CompareHashAndPassword(hash, []byte(password)) }); serr != nil {
				return nil, toGRPC(serr)
			}
			if err != nil {
				err = kv.ErrAuthFailed
			}
		}
		switch {
		case errors.Is(err, kv.ErrAuthFailed), errors.Is(err, kv.ErrNoPasswordUser):
			s.authLimits.failed(addr, time.Now())
			s.logger.Info("authentication failed", "user", r.Name, "client", addr)
			return nil, toGRPC(err)
		case err != nil:
			return nil, toGRPC(err)
		}
		secret := newTokenSecret()
		digest := sha256.Sum256([]byte(secret))
		resp, err := s.proposeAuthAs(ctx, kv.AuthInfo{},
			&kv.AuthRequest{Op: kv.Authenticate, Name: r.Name, CheckedRevision: rev, TokenDigest: digest[:]})
		if errors.Is(err, kv.ErrAuthPasswordChecked) && attempt < 10 {
			continue // the auth state moved since the check: check again
		}
		if err != nil {
			return nil, toGRPC(err)
		}
		s.authLimits.succeeded(addr)
		return &pb.AuthenticateResponse{Header: a.header(), Token: secret + "." + strconv.FormatUint(resp.Index, 10)}, nil
	}
}

// hashPassword hashes a new password with bcrypt at --bcrypt-cost. Only root may
// change users once auth is enabled, so other callers are refused before the hash
// is paid for; the state machine checks again where the change applies.
func (a *authService) hashPassword(ctx context.Context, password string) ([]byte, error) {
	sender, err := a.read(ctx)
	if err != nil {
		return nil, err
	}
	if err := a.s.sm.store.CheckAdmin(sender); err != nil {
		return nil, toGRPC(err)
	}
	var hash []byte
	if serr := a.s.withBcryptSlot(ctx, func() { hash, err = bcrypt.GenerateFromPassword([]byte(password), a.s.cfg.BcryptCost) }); serr != nil {
		return nil, toGRPC(serr)
	}
	if err != nil {
		// Only a password over bcrypt's 72 bytes fails; say so without the password.
		return nil, toGRPC(errPasswordTooLong)
	}
	return hash, nil
}

var errPasswordTooLong = errors.New("raftkv: the password is longer than bcrypt's 72 bytes; choose a shorter one")

func (a *authService) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	req := &kv.AuthRequest{Op: kv.UserAdd, Name: r.Name, NoPassword: r.Options != nil && r.Options.NoPassword}
	password := r.Password
	r.Password = ""
	if !req.NoPassword {
		hash, err := a.hashPassword(ctx, password)
		if err != nil {
			return nil, err
		}
		req.PasswordHash = hash
	}
	h, err := a.change(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserAddResponse{Header: h}, nil
}

func (a *authService) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	h, err := a.change(ctx, &kv.AuthRequest{Op: kv.UserDelete, Name: r.Name})
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserDeleteResponse{Header: h}, nil
}

// UserChangePassword takes the new password, or, as etcd does when the password
// is empty, a bcrypt hash the client made (HashedPassword, base64).
func (a *authService) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	req := &kv.AuthRequest{Op: kv.UserChangePassword, Name: r.Name}
	password := r.Password
	r.Password = ""
	if password != "" {
		hash, err := a.hashPassword(ctx, password)
		if err != nil {
			return nil, err
		}
		req.PasswordHash = hash
	} else {
		hash, err := base64.StdEncoding.DecodeString(r.HashedPassword)
		if err != nil {
			return nil, toGRPC(kv.ErrNoPasswordUser) // etcd's answer to a hash that does not decode
		}
		req.PasswordHash = hash
	}
	h, err := a.change(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserChangePasswordResponse{Header: h}, nil
}

func (a *authService) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	h, err := a.change(ctx, &kv.AuthRequest{Op: kv.UserGrantRole, Name: r.User, Role: r.Role})
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserGrantRoleResponse{Header: h}, nil
}

func (a *authService) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	h, err := a.change(ctx, &kv.AuthRequest{Op: kv.UserRevokeRole, Name: r.Name, Role: r.Role})
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserRevokeRoleResponse{Header: h}, nil
}

func (a *authService) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	sender, err := a.read(ctx)
	if err != nil {
		return nil, err
	}
	roles, err := a.s.sm.store.UserGet(sender, r.Name)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.AuthUserGetResponse{Header: a.header(), Roles: roles}, nil
}

func (a *authService) UserList(ctx context.Context, _ *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	sender, err := a.read(ctx)
	if err != nil {
		return nil, err
	}
	users, err := a.s.sm.store.UserList(sender)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.AuthUserListResponse{Header: a.header(), Users: users}, nil
}

func (a *authService) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	h, err := a.change(ctx, &kv.AuthRequest{Op: kv.RoleAdd, Name: r.Name})
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleAddResponse{Header: h}, nil
}

func (a *authService) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	h, err := a.change(ctx, &kv.AuthRequest{Op: kv.RoleDelete, Name: r.Role})
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleDeleteResponse{Header: h}, nil
}

func (a *authService) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	sender, err := a.read(ctx)
	if err != nil {
		return nil, err
	}
	perms, err := a.s.sm.store.RoleGet(sender, r.Role)
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.AuthRoleGetResponse{Header: a.header()}
	for _, p := range perms {
		resp.Perm = append(resp.Perm, &authpb.Permission{PermType: authpb.Permission_Type(p.Type), Key: p.Key, RangeEnd: p.RangeEnd})
	}
	return resp, nil
}

func (a *authService) RoleList(ctx context.Context, _ *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	sender, err := a.read(ctx)
	if err != nil {
		return nil, err
	}
	roles, err := a.s.sm.store.RoleList(sender)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.AuthRoleListResponse{Header: a.header(), Roles: roles}, nil
}

func (a *authService) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	req := &kv.AuthRequest{Op: kv.RoleGrantPermission, Name: r.Name, Perm: kv.Permission{Type: kv.PermNotGiven}}
	if r.Perm != nil {
		req.Perm = kv.Permission{Type: kv.PermissionType(r.Perm.PermType), Key: r.Perm.Key, RangeEnd: r.Perm.RangeEnd}
	}
	h, err := a.change(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleGrantPermissionResponse{Header: h}, nil
}

func (a *authService) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	h, err := a.change(ctx, &kv.AuthRequest{Op: kv.RoleRevokePermission, Name: r.Role,
		Perm: kv.Permission{Key: []byte(r.Key), RangeEnd: []byte(r.RangeEnd)}})
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleRevokePermissionResponse{Header: h}, nil
}
