package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// authTarget is one server under the auth differential test: its endpoint and the
// clients made so far, by user ("" for a client without credentials).
type authTarget struct {
	name     string
	endpoint string
	clients  map[string]*clientv3.Client
}

// client returns a clientv3 client of user with password ("" user: no
// credentials), made on first use; its error is part of the answer compared.
func (a *authTarget) client(t *testing.T, user, password string) (*clientv3.Client, error) {
	key := user + ":" + password
	if c := a.clients[key]; c != nil {
		return c, nil
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{a.endpoint}, DialTimeout: 5 * time.Second,
		Username: user, Password: password, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cli.Close() })
	a.clients[key] = cli
	return cli, nil
}

// authStep is one request of the sequence, by a user, answered as a string: the
// parts of the response that do not depend on the server's identity, or the error.
type authStep struct {
	user, password string
	what           string
	do             func(ctx context.Context, c *clientv3.Client) (string, error)
}

func answer(s string, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return s
}

func kvsString(resp *clientv3.GetResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "count=%d more=%v", resp.Count, resp.More)
	for _, kv := range resp.Kvs {
		fmt.Fprintf(&b, " %s=%s@%d/%d/v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
	}
	return b.String()
}

func authPut(key, value string, opts ...clientv3.OpOption) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := c.Put(ctx, key, value, opts...)
		if err != nil {
			return "", err
		}
		if r.PrevKv != nil {
			return fmt.Sprintf("rev=%d prev=%s", r.Header.Revision, r.PrevKv.Value), nil
		}
		return fmt.Sprintf("rev=%d", r.Header.Revision), nil
	}
}

func authGet(key string, opts ...clientv3.OpOption) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := c.Get(ctx, key, opts...)
		if err != nil {
			return "", err
		}
		return kvsString(r), nil
	}
}

func authDel(key string, opts ...clientv3.OpOption) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := c.Delete(ctx, key, opts...)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("deleted=%d prev=%d", r.Deleted, len(r.PrevKvs)), nil
	}
}

func authTxn(cmps []clientv3.Cmp, then, els []clientv3.Op) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := c.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("succeeded=%v ops=%d rev=%d", r.Succeeded, len(r.Responses), r.Header.Revision), nil
	}
}

// watchFirst opens a watch and answers with its first response (created or
// refused).
func watchFirst(key string, opts ...clientv3.OpOption) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for resp := range c.Watch(wctx, key, append(opts, clientv3.WithCreatedNotify())...) {
			return fmt.Sprintf("created=%v canceled=%v err=%v reason=%q", resp.Created, resp.Canceled, resp.Err(), resp.CancelReason), nil
		}
		return "closed without a response", nil
	}
}

func authOp(f func(ctx context.Context, c *clientv3.Client) (any, error)) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := f(ctx, c)
		if err != nil {
			return "", err
		}
		switch r := r.(type) {
		case *clientv3.AuthStatusResponse:
			return fmt.Sprintf("enabled=%v authRevision=%d", r.Enabled, r.AuthRevision), nil
		case *clientv3.AuthUserGetResponse:
			return fmt.Sprintf("roles=%v", r.Roles), nil
		case *clientv3.AuthUserListResponse:
			return fmt.Sprintf("users=%v", r.Users), nil
		case *clientv3.AuthRoleListResponse:
			return fmt.Sprintf("roles=%v", r.Roles), nil
		case *clientv3.AuthRoleGetResponse:
			var b strings.Builder
			for _, p := range r.Perm {
				fmt.Fprintf(&b, "%s[%q,%q) ", p.PermType, p.Key, p.RangeEnd)
			}
			return "perms=" + b.String(), nil
		}
		return "ok", nil
	}
}

const (
	rootPW  = "root-pw"
	alicePW = "alice-pw"
	bobPW   = "bob-pw"
)

// authSteps is the sequence: users and roles made and their mistakes, auth enabled,
// then allowed and denied KV, Txn, Watch, Maintenance and Auth requests by root,
// alice (readwrite on app/, read on config, write on log/), bob (read from m on),
// a no-password user and a client without credentials; the same users' Lease
// requests and puts naming leases (auth_lease_diff_test.go); then a permission
// revoked, a password changed, a user deleted, while their clients are connected;
// then auth disabled.
func authSteps() []authStep {
	none := func(what string, do func(context.Context, *clientv3.Client) (string, error)) authStep {
		return authStep{what: what, do: do}
	}
	as := func(user, pw, what string, do func(context.Context, *clientv3.Client) (string, error)) authStep {
		return authStep{user: user, password: pw, what: what, do: do}
	}
	a := func(f func(ctx context.Context, c *clientv3.Client) (any, error)) func(context.Context, *clientv3.Client) (string, error) {
		return authOp(f)
	}
	steps := []authStep{
		none("seed other", authPut("other", "o")),
		none("seed config", authPut("config", "c")),
		none("seed app/0", authPut("app/0", "a")),
		none("seed n", authPut("n", "n")),
		none("enable without root", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthEnable(ctx) })),
		none("add root", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserAdd(ctx, "root", rootPW) })),
		none("enable without root role", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthEnable(ctx) })),
		none("grant root root", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.UserGrantRole(ctx, "root", "root")
		})),
		none("grant root root again", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.UserGrantRole(ctx, "root", "root")
		})),
		none("status", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthStatus(ctx) })),
		none("role add app", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleAdd(ctx, "app") })),
		none("role add app again", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleAdd(ctx, "app") })),
		none("role add empty", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleAdd(ctx, "") })),
		none("role add ro", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleAdd(ctx, "ro") })),
		none("grant app/ prefix", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleGrantPermission(ctx, "app", "app/", clientv3.GetPrefixRangeEnd("app/"), clientv3.PermissionType(clientv3.PermReadWrite))
		})),
		none("grant config read", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleGrantPermission(ctx, "app", "config", "", clientv3.PermissionType(clientv3.PermRead))
		})),
		none("grant log/ write", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleGrantPermission(ctx, "app", "log/", clientv3.GetPrefixRangeEnd("log/"), clientv3.PermissionType(clientv3.PermWrite))
		})),
		none("grant config write (update)", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleGrantPermission(ctx, "app", "config", "", clientv3.PermissionType(clientv3.PermReadWrite))
		})),
		none("grant config read again", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleGrantPermission(ctx, "app", "config", "", clientv3.PermissionType(clientv3.PermRead))
		})),
		none("grant an inverted range", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleGrantPermission(ctx, "app", "b", "a", clientv3.PermissionType(clientv3.PermRead))
		})),
		none("grant to a missing role", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleGrantPermission(ctx, "nope", "a", "", clientv3.PermissionType(clientv3.PermRead))
		})),
		none("grant ro from m on", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleGrantPermission(ctx, "ro", "m", "\x00", clientv3.PermissionType(clientv3.PermRead))
		})),
		none("role get app", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleGet(ctx, "app") })),
		none("role get root (not added)", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleGet(ctx, "root") })),
		none("revoke a permission not granted", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleRevokePermission(ctx, "app", "zzz", "")
		})),
		none("add alice", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserAdd(ctx, "alice", alicePW) })),
		none("add alice again", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserAdd(ctx, "alice", "x") })),
		none("add bob", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserAdd(ctx, "bob", bobPW) })),
		none("add svc without password", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.UserAddWithOptions(ctx, "svc", "", &clientv3.UserAddOptions{NoPassword: true})
		})),
		none("grant alice app", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.UserGrantRole(ctx, "alice", "app")
		})),
		none("grant bob ro", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserGrantRole(ctx, "bob", "ro") })),
		none("grant svc app", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserGrantRole(ctx, "svc", "app") })),
		none("grant a missing role", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserGrantRole(ctx, "bob", "nope") })),
		none("grant to a missing user", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.UserGrantRole(ctx, "nobody", "app")
		})),
		none("revoke a role not granted", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserRevokeRole(ctx, "bob", "app") })),
		none("user get alice", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserGet(ctx, "alice") })),
		none("user get nobody", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserGet(ctx, "nobody") })),
		none("user list", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserList(ctx) })),
		none("role list", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleList(ctx) })),
		none("status before enable", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthStatus(ctx) })),
		none("enable", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthEnable(ctx) })),
		none("enable again (no user)", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthEnable(ctx) })),
		as("root", rootPW, "status after enable", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthStatus(ctx) })),
	}
	// Each user's requests.
	for _, u := range []struct{ user, pw string }{{"", ""}, {"root", rootPW}, {"alice", alicePW}, {"bob", bobPW}} {
		who := u.user
		if who == "" {
			who = "anonymous"
		}
		step := func(what string, do func(context.Context, *clientv3.Client) (string, error)) authStep {
			return as(u.user, u.pw, who+": "+what, do)
		}
		steps = append(steps,
			step("put app/1", authPut("app/1", who)),
			step("put app/1 prev_kv", authPut("app/1", who+"2", clientv3.WithPrevKV())),
			step("put config", authPut("config", who)),
			step("put other", authPut("other", who)),
			step("put log/1", authPut("log/1", who)),
			step("get config", authGet("config")),
			step("get app/ prefix", authGet("app/", clientv3.WithPrefix())),
			step("get app/ prefix serializable", authGet("app/", clientv3.WithPrefix(), clientv3.WithSerializable())),
			step("get from m on", authGet("m", clientv3.WithFromKey())),
			step("get everything", authGet("", clientv3.WithPrefix())),
			step("get log/1", authGet("log/1")),
			step("delete log/ prefix", authDel("log/", clientv3.WithPrefix())),
			step("delete log/ prefix prev_kv", authDel("log/", clientv3.WithPrefix(), clientv3.WithPrevKV())),
			step("txn within app/", authTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Version("config"), ">", 0)},
				[]clientv3.Op{clientv3.OpPut("app/t", "t")}, []clientv3.Op{clientv3.OpGet("app/0")})),
			step("txn failure branch on other", authTxn(nil,
				[]clientv3.Op{clientv3.OpPut("app/t2", "t")}, []clientv3.Op{clientv3.OpGet("other")})),
			step("txn compare on other", authTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value("other"), "=", "o")},
				[]clientv3.Op{clientv3.OpGet("app/0")}, nil)),
			step("read-only txn", authTxn(nil, []clientv3.Op{clientv3.OpGet("app/0"), clientv3.OpGet("config")}, nil)),
			step("nested txn", authTxn(nil, []clientv3.Op{clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("app/n", "n")},
				[]clientv3.Op{clientv3.OpDelete("n")})}, nil)),
			step("watch other", watchFirst("other")),
			step("watch app/ prefix", watchFirst("app/", clientv3.WithPrefix())),
			step("watch from m on", watchFirst("m", clientv3.WithFromKey())),
			step("compact", func(ctx context.Context, c *clientv3.Client) (string, error) {
				_, err := c.Compact(ctx, 2)
				return "ok", err
			}),
			step("status", func(ctx context.Context, c *clientv3.Client) (string, error) {
				_, err := c.Status(ctx, c.Endpoints()[0])
				return "ok", err
			}),
			step("alarm list", func(ctx context.Context, c *clientv3.Client) (string, error) {
				r, err := c.AlarmList(ctx)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("alarms=%d", len(r.Alarms)), nil
			}),
			step("member list", func(ctx context.Context, c *clientv3.Client) (string, error) {
				r, err := c.MemberList(ctx)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("members=%v", len(r.Members) > 0), nil
			}),
			step("user get alice", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserGet(ctx, "alice") })),
			step("role get app", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleGet(ctx, "app") })),
			step("role get ro", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleGet(ctx, "ro") })),
			step("user list", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserList(ctx) })),
			step("role add x", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleAdd(ctx, "x-"+who) })),
			step("auth status", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthStatus(ctx) })),
		)
	}
	// Leases, by each user.
	steps = append(steps, authLeaseSeeds()...)
	for i, u := range []struct{ user, pw string }{{"", ""}, {"root", rootPW}, {"alice", alicePW}, {"bob", bobPW}} {
		who := u.user
		if who == "" {
			who = "anonymous"
		}
		steps = append(steps, authLeaseSteps(u.user, u.pw, who, int64(2001+i))...)
	}
	steps = append(steps, authLeaseStepsAfter()...)
	steps = append(steps,
		as("alice", "wrong", "alice with a wrong password", authGet("app/0")),
		as("svc", "anything", "the no-password user with a password", authGet("app/0")),
		as("nobody", "x", "an unknown user", authGet("app/0")),
		as("root", rootPW, "delete root", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserDelete(ctx, "root") })),
		as("root", rootPW, "revoke root's root role", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.UserRevokeRole(ctx, "root", "root")
		})),
		as("root", rootPW, "delete the root role", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleDelete(ctx, "root") })),
		// Changes while alice's and bob's clients hold tokens.
		as("root", rootPW, "revoke app/ from app", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.RoleRevokePermission(ctx, "app", "app/", clientv3.GetPrefixRangeEnd("app/"))
		})),
		as("alice", alicePW, "alice puts app/2 after the revoke", authPut("app/2", "x")),
		as("alice", alicePW, "alice reads config after the revoke", authGet("config")),
	)
	steps = append(steps, authLeaseStepsRevoked()...)
	steps = append(steps,
		as("root", rootPW, "change alice's password", a(func(ctx context.Context, c *clientv3.Client) (any, error) {
			return c.UserChangePassword(ctx, "alice", "alice-new")
		})),
		as("alice", alicePW, "alice's old client after the change", authGet("config")),
		as("alice", "alice-new", "alice with the new password", authGet("config")),
		as("root", rootPW, "delete bob", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserDelete(ctx, "bob") })),
		as("bob", bobPW, "bob's client after his deletion", authGet("n")),
		as("root", rootPW, "delete role app", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.RoleDelete(ctx, "app") })),
		as("alice", "alice-new", "alice after her role went", authGet("config")),
		as("root", rootPW, "user get alice", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.UserGet(ctx, "alice") })),
		as("root", rootPW, "status", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthStatus(ctx) })),
		as("alice", "alice-new", "alice disables auth", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthDisable(ctx) })),
		as("root", rootPW, "root disables auth", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthDisable(ctx) })),
		none("status after disable", a(func(ctx context.Context, c *clientv3.Client) (any, error) { return c.AuthStatus(ctx) })),
		none("anonymous put after disable", authPut("other", "free")),
		none("anonymous reads everything", authGet("", clientv3.WithPrefix())),
	)
	return steps
}

// TestAuthDifferential runs the same sequence of user, role and permission changes
// and of allowed and denied requests against an embedded etcd and a 3-member raftkv
// cluster (requests to a follower), and requires the same answer to every step:
// the response's content, or the same error text as clientv3 reports it, after its
// own retries and re-authentications.
func TestAuthDifferential(t *testing.T) {
	t.Parallel()
	members := startRaftkv(t, 3, 50)
	targets := []*authTarget{
		{name: "etcd", endpoint: startEtcd(t), clients: map[string]*clientv3.Client{}},
		{name: "raftkv", endpoint: hostPort(follower(t, members).clientURL), clients: map[string]*clientv3.Client{}},
	}
	mismatches := 0
	for i, step := range authSteps() {
		var answers [2]string
		for j, target := range targets {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				c, err := target.client(t, step.user, step.password)
				if err == nil {
					answers[j] = answer(step.do(ctx, c))
				} else {
					answers[j] = "client: " + err.Error()
				}
				cancel()
				// The one difference raftkv means to make: after repeated wrong
				// passwords from an address it refuses the next try for a while
				// (server/auth_limit.go). Wait as told, then try again.
				wait, refused := authRefusedFor(answers[j])
				if !refused {
					break
				}
				t.Logf("step %d (%s): %s refused an authentication for %v after wrong passwords; waiting", i, step.what, target.name, wait)
				time.Sleep(wait)
			}
		}
		if answers[0] != answers[1] {
			mismatches++
			t.Errorf("step %d (%s):\n  etcd:   %s\n  raftkv: %s", i, step.what, answers[0], answers[1])
		} else {
			t.Logf("step %d (%s): %s", i, step.what, answers[0])
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d steps answered differently", mismatches)
	}
}

// authRefusedFor reads raftkv's refusal of an Authenticate after repeated wrong
// passwords, and the wait it names.
func authRefusedFor(answer string) (time.Duration, bool) {
	const marker = "too many wrong passwords in a row from "
	i := strings.Index(answer, marker)
	if i < 0 {
		return 0, false
	}
	_, after, ok := strings.Cut(answer[i:], "retry in ")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(after))
	if err != nil {
		return time.Second, true
	}
	return d + 50*time.Millisecond, true
}
