package server

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file decides which methods of the etcd v3 API raftkv serves, and what every
// other call hears. A service is registered with only the methods it serves (a
// grpc.ServiceDesc filtered to them); a call to any other method, or to a service not
// registered at all, reaches the gRPC server's unknown-service handler,
// answerUnserved, which answers Unimplemented with a message naming the method, why
// raftkv does not serve it, and what it serves instead. gRPC's own answer ("method X
// not implemented", or "unknown service") says neither.

// servedMethods lists, per service, the methods raftkv implements. Every one named
// here must be implemented by the service's type; registerServices checks.
var servedMethods = map[string][]string{
	"etcdserverpb.KV": {"Range", "RangeStream", "Put", "DeleteRange", "Txn", "Compact"},
	"etcdserverpb.Auth": {"AuthEnable", "AuthDisable", "AuthStatus", "Authenticate", "UserAdd", "UserGet", "UserList",
		"UserDelete", "UserChangePassword", "UserGrantRole", "UserRevokeRole", "RoleAdd", "RoleGet", "RoleList",
		"RoleDelete", "RoleGrantPermission", "RoleRevokePermission"},
	"etcdserverpb.Lease":       {"LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"},
	"etcdserverpb.Maintenance": {"Status", "Alarm", "MoveLeader", "Hash", "HashKV", "Snapshot", "Defragment", "Downgrade"},
	"etcdserverpb.Cluster":     {"MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"},
	"etcdserverpb.Watch":       {"Watch"},
	"v3lockpb.Lock":            {"Lock", "Unlock"},
	"v3electionpb.Election":    {"Campaign", "Proclaim", "Leader", "Observe", "Resign"},
}

// unservedReasons says why a service or one of its methods is not served. A method's
// own reason ("Service/Method") wins over its service's. When a service is
// implemented, it is registered in registerServices and its line here goes.
var unservedReasons = map[string]string{}

// registerServices registers raftkv's services on g, each with only its served
// methods.
func registerServices(g *grpc.Server, s *Server) {
	s.clusterSvc.CompareAndSwap(nil, &clusterService{s: s})
	for _, svc := range []struct {
		desc *grpc.ServiceDesc
		impl any
	}{
		{&pb.KV_ServiceDesc, &kvService{s: s}},
		{&pb.Lease_ServiceDesc, &leaseService{s: s}},
		{&pb.Auth_ServiceDesc, &authService{s: s}},
		{&pb.Maintenance_ServiceDesc, &maintenanceService{s: s}},
		{&pb.Cluster_ServiceDesc, s.clusterSvc.Load()},
		{&pb.Watch_ServiceDesc, &watchService{s: s}},
		{&v3lockpb.Lock_ServiceDesc, &lockService{s: s}},
		{&v3electionpb.Election_ServiceDesc, &electionService{s: s}},
	} {
		g.RegisterService(servedOnly(svc.desc), svc.impl)
		s.local.register(servedOnly(svc.desc), svc.impl)
	}
	s.local.mustServe("/etcdserverpb.KV/Txn", "/etcdserverpb.Lease/LeaseKeepAlive", "/etcdserverpb.Watch/Watch")
}

// servedOnly returns desc with only the methods and streams servedMethods lists.
func servedOnly(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	served := servedMethods[desc.ServiceName]
	out := *desc
	out.Methods = slices.DeleteFunc(slices.Clone(desc.Methods), func(m grpc.MethodDesc) bool {
		return !slices.Contains(served, m.MethodName)
	})
	out.Streams = slices.DeleteFunc(slices.Clone(desc.Streams), func(m grpc.StreamDesc) bool {
		return !slices.Contains(served, m.StreamName)
	})
	if n := len(out.Methods) + len(out.Streams); n != len(served) {
		panic(fmt.Sprintf("server: servedMethods lists %v for %s, but only %d of them are in its descriptor",
			served, desc.ServiceName, n))
	}
	return &out
}

// unserved answers the calls no registered method takes.
type unserved struct {
	g *grpc.Server
	// served is the sentence listing what g serves, built on first use (after every
	// service is registered).
	once   sync.Once
	served string
}

// handle is the gRPC server's UnknownServiceHandler.
func (u *unserved) handle(_ any, stream grpc.ServerStream) error {
	full, _ := grpc.MethodFromServerStream(stream)
	return u.errorFor(full)
}

// errorFor returns the Unimplemented status for the method "/package.Service/Method".
func (u *unserved) errorFor(fullMethod string) error {
	u.once.Do(func() { u.served = servedSentence(u.g.GetServiceInfo()) })
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	reason, ok := unservedReasons[service+"/"+method]
	if !ok {
		reason, ok = unservedReasons[service]
	}
	if !ok {
		reason = "it is not part of the etcd v3 API raftkv implements"
	}
	return status.Errorf(codes.Unimplemented, "raftkv does not serve %s.%s: %s. raftkv serves %s",
		strings.TrimPrefix(service, "etcdserverpb."), method, reason, u.served)
}

// servedSentence lists the registered etcd services and their methods, e.g.
// "Cluster (MemberList), KV (Compact, DeleteRange, Put, Range, Txn), ..., Election
// (...), Lock (Lock, Unlock)": not the members' own (LeaseForward, lease_forward.go).
func servedSentence(info map[string]grpc.ServiceInfo) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(info)) {
		if _, etcd := servedMethods[name]; !etcd {
			continue
		}
		var methods []string
		for _, m := range info[name].Methods {
			methods = append(methods, m.Name)
		}
		slices.Sort(methods)
		short := name[strings.LastIndex(name, ".")+1:] // etcdserverpb.KV, v3lockpb.Lock: KV, Lock
		parts = append(parts, fmt.Sprintf("%s (%s)", short, strings.Join(methods, ", ")))
	}
	return strings.Join(parts, ", ")
}
