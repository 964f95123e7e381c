// Package e2e holds raftkv's slow end-to-end tests: a differential test against an
// embedded etcd, process-level failure tests of the raftkv binary, a linearizability
// check with porcupine, and etcdctl driving a real cluster.
//
// It is its own Go module so that the main module does not depend on the etcd server.
// Everything is in the _test.go files; see README.md for how to run them.
package e2e
