package main

// The gRPC floor (grpcfloor/): a third system whose members answer Put and Range from
// memory on grpc-go, without Raft, a store or a disk. It runs beside etcd and raftkv
// under the same load generator, so its members' CPU per request is what gRPC alone
// costs a server here, and its throughput about the most that a server built on
// grpc-go reaches on this machine at that concurrency (not exactly: the generator's
// own CPU per request moves with how a server answers). README.md, "The gRPC floor".

import (
	"context"
	"fmt"
	"strconv"
)

// floorSystem is the floor's name in --systems and in the report.
const floorSystem = "grpc-floor"

// floorServes reports whether the floor can stand in for a server under op: it answers
// Put and Range only, so the watch, lease and big-data workloads (which need watches,
// leases, Txn and the data they load) have no floor.
func floorServes(op opKind) bool {
	switch op {
	case opPut, opGetLinearizable, opGetSerializable, opMixed:
		return true
	}
	return false
}

// floorArgs are the flags the floor's members take besides the harness's own: the
// size of the value each Range answers with, the workloads' size.
var floorArgs = []string{"--value-bytes", strconv.Itoa(valueBytes)}

// buildFloor builds the floor's member program into dir.
func buildFloor(ctx context.Context, dir string) (string, error) {
	bin, err := buildPackage(ctx, dir, "raftkv/bench/grpcfloor", "grpc-floor")
	if err != nil {
		return "", fmt.Errorf("%w\nrun from the bench directory", err)
	}
	return bin, nil
}
