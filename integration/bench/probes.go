package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// countLog counts the lines of a JSON log that match accepts.
func countLog(path string, match func(logLine) bool) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && match(l) {
			n++
		}
	}
	return n
}

// sampleRSS samples p's resident set size every second until the returned
// function is called, which returns the samples.
func (h *harness) sampleRSS(ctx context.Context, p *proc) func() []int64 {
	var (
		mu      sync.Mutex
		samples []int64
	)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if v, err := procStatusBytes(p.cmd.Process.Pid, "VmRSS"); err == nil {
					mu.Lock()
					samples = append(samples, v)
					mu.Unlock()
				}
			}
		}
	}()
	return func() []int64 {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return samples
	}
}

// flatness compares the mean of the first and the last fifth of a series:
// flat when the end is at most 10% above the start.
func flatness(s []int64) (first, last int64, flat bool) {
	if len(s) == 0 {
		return 0, 0, false
	}
	k := max(1, len(s)/5)
	mean := func(v []int64) int64 {
		var sum int64
		for _, x := range v {
			sum += x
		}
		return sum / int64(len(v))
	}
	first, last = mean(s[:k]), mean(s[len(s)-k:])
	return first, last, float64(last) <= 1.10*float64(first)
}

// raiseFileLimit raises this process's open-file limit (soft and hard) to at
// least n. Children inherit it: Go restores the original soft limit in
// children only while the program has not set the limit itself.
func raiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur, lim.Max = max(n, lim.Cur), max(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open-file limit to %d (ulimit -n): %w; run the bench as root with CAP_SYS_RESOURCE, or raise the hard limit first (ulimit -Hn %d)", n, err, n)
	}
	return nil
}

// idleConns are client connections held open without a request.
type idleConns struct {
	conns  []net.Conn
	closed atomic.Bool  // set by close: reads ending after it are ours
	gone   atomic.Int64 // connections the server closed
	wg     sync.WaitGroup
}

// perSourceAddr is how many idle connections come from one 127.0.1.x source
// address: under the gateway's default listen.max_connections_per_ip (256).
const perSourceAddr = 200

// openIdle opens n TCP connections to addr from source addresses 127.0.1.1,
// 127.0.1.2, ... and watches each for the server closing it.
func openIdle(ctx context.Context, addr string, n int) (*idleConns, error) {
	ic := &idleConns{conns: make([]net.Conn, n)}
	if n/perSourceAddr > 250 {
		return ic, fmt.Errorf("%d idle connections need more than 250 source addresses", n)
	}
	var (
		next    atomic.Int64
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				src := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i/perSourceAddr))}
				d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("idle connection %d from %s: %w", i, src.IP, err) })
					return
				}
				ic.conns[i] = c
			}
		}()
	}
	wg.Wait()
	for _, c := range ic.conns {
		if c == nil {
			continue
		}
		ic.wg.Add(1)
		go func() {
			defer ic.wg.Done()
			// The gateway sends nothing unasked: a read that ends before
			// close means it closed the connection.
			_, _ = c.Read(make([]byte, 1))
			if !ic.closed.Load() {
				ic.gone.Add(1)
			}
		}()
	}
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return ic, first
}

// lost is how many connections the server closed so far.
func (ic *idleConns) lost() int { return int(ic.gone.Load()) }

func (ic *idleConns) close() {
	if ic == nil {
		return
	}
	ic.closed.Store(true)
	for _, c := range ic.conns {
		if c != nil {
			_ = c.Close()
		}
	}
	ic.wg.Wait()
}

// --- profiles ---------------------------------------------------------------------

// pprofEnv is the variable a gateway built with -tags pprof reads the address
// of its profiling listener from (cmd/ldapgate/pprof.go).
const pprofEnv = "LDAPGATE_PPROF"

// profileGateway takes a CPU profile of the gateway for the length of one
// comparison (--profile only) into WORK/NAME.cpu.pprof, and a heap profile
// when the returned function is called.
func (h *harness) profileGateway(ctx context.Context, gw *gateway, name string) (stop func()) {
	if gw.pprof == "" {
		return func() {}
	}
	secs := int((2*time.Duration(h.o.rounds)*h.o.duration + 5*time.Second).Seconds())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", gw.pprof, secs), name+".cpu.pprof")
	}()
	return func() {
		<-done
		h.fetch(ctx, "http://"+gw.pprof+"/debug/pprof/heap", name+".heap.pprof")
	}
}

// fetch saves an HTTP GET's body into the work directory.
func (h *harness) fetch(ctx context.Context, url, file string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		h.logf("profile: %v", err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.logf("profile: %v", err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(h.work, file), data, 0o644)
	}
	if err != nil {
		h.logf("profile: %v", err)
		return
	}
	h.logf("profile: %s", filepath.Join(h.work, file))
}
