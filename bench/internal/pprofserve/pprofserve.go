// Package pprofserve serves a member process's runtime profiles for the bench
// harness, which fetches /debug/pprof/profile?seconds=N over each measured window
// (--cpuprofile). The bench binary's members and the gRPC floor's share it.
package pprofserve

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Serve serves /debug/pprof on addr in the background for the rest of the process's
// life; an empty addr serves nothing.
func Serve(addr string) error {
	if addr == "" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }() // lives as long as the member process
	return nil
}
