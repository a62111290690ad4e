package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ldapgate/ldapgate/integration/loadgen"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// measured is the median of a load's runs.
type measured struct {
	thr      float64 // successful operations per second
	p50, p99 time.Duration
	ops      int // operations of every run
}

// load runs cfg once. A run in which nothing succeeded is an error; failed
// operations otherwise are counted out of the throughput and listed under the
// table (a loaded machine makes a DC miss the gateway's upstream.op_timeout
// now and then, and that is part of the figure).
func (h *harness) load(ctx context.Context, what string, cfg loadgen.Config) (loadgen.Result, error) {
	r, err := loadgen.Run(ctx, cfg)
	switch {
	case err != nil:
		return r, fmt.Errorf("%s: %w", what, err)
	case r.OK == 0:
		return r, fmt.Errorf("%s: none of %d operations succeeded (%s)", what, r.Ops, describeFailures(r))
	case r.Failed > 0:
		h.note("%s, %s: %d of %d operations failed (%s)", h.current, what, r.Failed, r.Ops, describeFailures(r))
	}
	return r, nil
}

// describeFailures lists a result's failing outcomes with their first error.
func describeFailures(r loadgen.Result) string {
	var parts []string
	for code, n := range r.Codes {
		if code == loadgen.CodeSuccess {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s ×%d: %s", code, n, r.FirstErrors[code]))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "no operation ended"
	}
	return strings.Join(parts, "; ")
}

// side is one of the two loads a scenario compares.
type side struct {
	name string
	cfg  loadgen.Config
}

// compare warms both sides up, then runs them alternately (gateway, baseline,
// gateway, baseline, ...) for --rounds rounds of --duration each, and returns
// the median of each side's runs: the machine is noisy, and alternating puts
// both sides under the same noise.
func (h *harness) compare(ctx context.Context, gw, base side) (g, b measured, err error) {
	for _, s := range []side{gw, base} {
		// The warm-up fills the gateway's DN cache and pools; its failures
		// (a DC slow to answer its first binds on a loaded machine) are only
		// logged.
		warm := s.cfg
		warm.Duration, warm.Count = 0, max(len(s.cfg.Logins), 2*s.cfg.Concurrency)
		r, err := loadgen.Run(ctx, warm)
		switch {
		case err != nil:
			return g, b, fmt.Errorf("%s (warm-up): %w", s.name, err)
		case r.Failed > 0:
			h.logf("  %s (warm-up): %d of %d operations failed (%s)", s.name, r.Failed, r.Ops, describeFailures(r))
		}
	}
	var gr, br []loadgen.Result
	for i := range h.o.rounds {
		for _, s := range []side{gw, base} {
			cfg := s.cfg
			cfg.Duration, cfg.Count = h.o.duration, 0
			r, err := h.load(ctx, s.name, cfg)
			if err != nil {
				return g, b, err
			}
			h.logf("  %s round %d: %.0f/s, p50 %s, p99 %s", s.name, i+1, r.Throughput, fmtDur(r.P50), fmtDur(r.P99))
			if s.name == gw.name {
				gr = append(gr, r)
			} else {
				br = append(br, r)
			}
		}
	}
	return median(gr), median(br), nil
}

// measure runs one load --rounds times and returns the median.
func (h *harness) measure(ctx context.Context, s side) (measured, error) {
	var rs []loadgen.Result
	for i := range h.o.rounds {
		cfg := s.cfg
		cfg.Duration, cfg.Count = h.o.duration, 0
		r, err := h.load(ctx, s.name, cfg)
		if err != nil {
			return measured{}, err
		}
		h.logf("  %s round %d: %.0f/s, p50 %s, p99 %s", s.name, i+1, r.Throughput, fmtDur(r.P50), fmtDur(r.P99))
		rs = append(rs, r)
	}
	return median(rs), nil
}

// median is the median throughput and latencies of rs (each taken on its own).
func median(rs []loadgen.Result) measured {
	var m measured
	var thr []float64
	var p50, p99 []time.Duration
	for _, r := range rs {
		thr = append(thr, r.Throughput)
		p50 = append(p50, r.P50)
		p99 = append(p99, r.P99)
		m.ops += r.Ops
	}
	m.thr = medianOf(thr, func(a, b float64) float64 { return (a + b) / 2 })
	m.p50 = medianOf(p50, func(a, b time.Duration) time.Duration { return (a + b) / 2 })
	m.p99 = medianOf(p99, func(a, b time.Duration) time.Duration { return (a + b) / 2 })
	return m
}

func medianOf[T float64 | time.Duration](v []T, mean func(a, b T) T) T {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return mean(v[len(v)/2-1], v[len(v)/2])
}

// --- the loads' building blocks ---------------------------------------------------

// loginForm turns bulk user i into a bind name.
type loginForm func(i int, login string) string

var (
	// bareLogin is the sAMAccountName, as a PBX user types it.
	bareLogin loginForm = func(_ int, login string) string { return login }
	// dnLogin is the user's DN, what a client binding to AD directly sends.
	dnLogin loginForm = func(_ int, login string) string { return "CN=" + login + "," + testbed.LoadUsersDN }
)

// bulkLogins are the first n bulk users of the test bed (and the simulator).
func bulkLogins(n int, form loginForm) []loadgen.Login {
	out := make([]loadgen.Login, n)
	for i := range out {
		login, password := testbed.LoadUser(i)
		out[i] = loadgen.Login{Name: form(i, login), Password: password}
	}
	return out
}

// caTLS is a client TLS configuration verifying serverName against the CA in
// caFile.
func caTLS(caFile, serverName string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}
