//go:build pprof

package main

// Profiling builds only (go build -tags pprof ./cmd/ldapgate): the benchmark
// (go run ./integration/bench --profile) sets LDAPGATE_PPROF to a loopback
// address and reads the gateway's CPU and heap profiles from
// /debug/pprof/ there. Release builds have no such listener.

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"time"
)

func init() {
	addr := os.Getenv("LDAPGATE_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "LDAPGATE_PPROF=%q: the profiling listener must be a loopback IP address and port, e.g. 127.0.0.1:6060\n", addr)
		os.Exit(2)
	}
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil {
			fmt.Fprintf(os.Stderr, "LDAPGATE_PPROF: %v\n", err)
		}
	}()
}
