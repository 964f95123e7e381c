package main

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A learner's refusal sends a command on to the next endpoint, a write too (the
// learner refused it before running it); other FailedPrecondition errors do not.
func TestLearnerRefusedMovesOn(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrGRPCNotSupportedForLearner, true},
		{status.Error(codes.FailedPrecondition, "etcdserver: rpc not supported for learner"), true},
		{rpctypes.ErrGRPCLearnerNotReady, false},
		{status.Error(codes.Unavailable, "etcdserver: rpc not supported for learner"), false},
		{errors.New("etcdserver: rpc not supported for learner"), false},
	} {
		if got := learnerRefused(tc.err); got != tc.want {
			t.Errorf("learnerRefused(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
