package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"raftkv/server"
)

// groupAuth is etcd's heading for its auth flags.
const groupAuth = "Auth"

// servedAuthFlags are etcd's auth flags raftkv serves.
var servedAuthFlags = []string{"auth-token", "auth-token-ttl", "bcrypt-cost"}

// authFlags are etcd's flags of the Auth service (server/auth_config.go).
type authFlags struct {
	token      string
	ttlSeconds int
	bcryptCost int
}

func (f *authFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.token, "auth-token", "simple", "Specify auth token type: 'simple', tokens each member keeps in memory (JWT is not served).")
	numberVar(fs, &f.ttlSeconds, "auth-token-ttl", int(server.DefaultAuthTokenTTL/time.Second), "seconds", "The lifetime in seconds of an unused auth token, renewed by each use.")
	fs.IntVar(&f.bcryptCost, "bcrypt-cost", server.DefaultBcryptCost, "Specify bcrypt algorithm cost factor for auth password hashing (4 to 31).")
	setGroup(fs, groupAuth, servedAuthFlags...)
}

func (f *authFlags) apply(cfg *server.Config) error {
	if f.ttlSeconds < 1 {
		return fmt.Errorf("--auth-token-ttl %d: give the lifetime of an unused token in seconds, at least 1", f.ttlSeconds)
	}
	cfg.AuthToken, cfg.AuthTokenTTL, cfg.BcryptCost = f.token, time.Duration(f.ttlSeconds)*time.Second, f.bcryptCost
	return nil
}
