package server

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// DefaultBcryptCost is etcd's --bcrypt-cost default, bcrypt's own.
const DefaultBcryptCost = bcrypt.DefaultCost

func (c Config) authDefaults() Config {
	if c.AuthToken == "" {
		c.AuthToken = "simple"
	}
	if c.AuthTokenTTL == 0 {
		c.AuthTokenTTL = DefaultAuthTokenTTL
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = DefaultBcryptCost
	}
	return c
}

// validateAuth checks the auth flags. etcd starts with its default bcrypt cost
// when the one given is out of range; raftkv refuses it, as any bad flag.
func (c Config) validateAuth() error {
	kind, _, _ := strings.Cut(c.AuthToken, ",")
	switch kind {
	case "simple":
	case "jwt":
		return fmt.Errorf("--auth-token %q: raftkv serves simple tokens only (JWT is not implemented); "+
			"use --auth-token simple, and clientv3 and etcdctl work unchanged", c.AuthToken)
	default:
		return fmt.Errorf("--auth-token %q: unknown token type %q; use simple", c.AuthToken, kind)
	}
	if c.AuthTokenTTL < time.Second {
		return fmt.Errorf("--auth-token-ttl %v: a simple token must live at least 1 second", c.AuthTokenTTL)
	}
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		return fmt.Errorf("--bcrypt-cost %d: it must be between %d and %d (default %d)",
			c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost, DefaultBcryptCost)
	}
	return nil
}
