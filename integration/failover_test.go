//go:build integration

// Failover tests: an in-process gateway whose two upstream servers are fault
// proxies in front of the test bed's dc1 and dc2, with small breaker settings.
// They assert what a user sees (0 or 52, never 49, within bounds) and read the
// Cluster's Stats for where the traffic went.
package integration

import (
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/faultproxy"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// The failover gateways' settings: every upstream timeout 2s, so that no bind
// may keep a user waiting much longer.
const (
	foOpTimeout     = 2 * time.Second
	foProbeInterval = time.Second
	foFailures      = 2
	// foBindBound is the longest a user may wait for any one bind's answer.
	foBindBound = foOpTimeout + 2*time.Second
	// foFast is how quickly a bind is answered once the breakers know.
	foFast = 500 * time.Millisecond
)

// failoverRig is a gateway in front of two fault proxies, one per DC.
type failoverRig struct {
	gw       *inprocGateway
	dc1, dc2 *faultproxy.Proxy
}

func newFailoverRig(t *testing.T, name string) *failoverRig {
	t.Helper()
	r := &failoverRig{dc1: startFaultProxy(t, "127.0.0.1:636"), dc2: startFaultProxy(t, "127.0.0.2:636")}
	r.gw = startInprocGateway(t, name, map[string]any{
		"upstream.servers": []any{
			map[string]any{"url": "ldaps://" + r.dc1.Addr(), "server_name": testbed.DC1Name},
			map[string]any{"url": "ldaps://" + r.dc2.Addr(), "server_name": testbed.DC2Name},
		},
		"upstream.op_timeout":             foOpTimeout.String(),
		"upstream.dial_timeout":           foOpTimeout.String(),
		"upstream.breaker.failures":       foFailures,
		"upstream.breaker.probe_interval": foProbeInterval.String(),
	})
	// Warm up: the DN is cached and dc1, the first DC, takes the traffic.
	if code, took := r.bind(t); code != 0 {
		t.Fatalf("warm-up bind through the fault proxies: %d after %s", code, took)
	}
	if s := r.gw.cluster.Stats(); s[0].Binds != 1 || s[1].Binds != 0 {
		t.Fatalf("the warm-up bind did not go to dc1:\n%s\n%s", describeDC(s[0]), describeDC(s[1]))
	}
	return r
}

func startFaultProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p := faultproxy.New(target)
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func setFault(t *testing.T, p *faultproxy.Proxy, f faultproxy.Fault) {
	t.Helper()
	if err := p.SetFault(f); err != nil {
		t.Fatalf("set fault %s: %v", f, err)
	}
}

// bind binds jdoe on a new connection and returns the result code and how long
// the bind itself took. Whatever the code, the answer must come within
// foBindBound and must not be 49: an outage is never a wrong password.
func (r *failoverRig) bind(t *testing.T) (uint16, time.Duration) {
	t.Helper()
	l, err := dialGateway(r.gw.addr)
	if err != nil {
		t.Fatalf("connect to the gateway: %v", err)
	}
	defer l.Close()
	start := time.Now()
	code, diag := bindCode(t, l, testbed.JDoe.Login, testbed.JDoe.Password)
	took := time.Since(start)
	switch {
	case code != 0 && code != ldap.LDAPResultUnavailable:
		t.Fatalf("jdoe's bind got %d %q after %s; a user may only ever see 0 or 52 here (never 49)\n%s", code, diag, took, r.describe())
	case took > foBindBound:
		t.Errorf("jdoe's bind took %s, longer than op_timeout %s + 2s", took, foOpTimeout)
	}
	return code, took
}

func (r *failoverRig) describe() string {
	s := r.gw.cluster.Stats()
	return "  " + describeDC(s[0]) + "\n  " + describeDC(s[1])
}

// bindUntilSuccess binds until one succeeds and returns how many got 52
// before. At most maxUnavailable binds may get 52.
func (r *failoverRig) bindUntilSuccess(t *testing.T, maxUnavailable int, what string) int {
	t.Helper()
	for unavailable := 0; ; unavailable++ {
		code, took := r.bind(t)
		if code == 0 {
			t.Logf("%s: a bind succeeded after %d answered 52 (the last took %s)", what, unavailable, took)
			return unavailable
		}
		if unavailable+1 > maxUnavailable {
			t.Fatalf("%s: %d binds in a row got 52 (the last after %s), want a success after at most %d (breaker.failures) while dc2 is healthy\n%s",
				what, unavailable+1, took, maxUnavailable, r.describe())
		}
	}
}

// waitTrafficOnDC1 binds (each must succeed) until dc1 has answered one of
// them, within the bound.
func (r *failoverRig) waitTrafficOnDC1(t *testing.T, within time.Duration, what string) {
	t.Helper()
	before := r.gw.stats(0).Binds
	deadline := time.Now().Add(within)
	for r.gw.stats(0).Binds == before {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no bind went back to dc1 within %s\n%s", what, within, r.describe())
		}
		if code, took := r.bind(t); code != 0 {
			t.Fatalf("%s: a bind got %d after %s while dc2 was healthy all along\n%s", what, code, took, r.describe())
		}
		time.Sleep(100 * time.Millisecond) // pace the binds while the probes run
	}
}

// bindUntilBreakerOpen binds (each must succeed, through dc2) until dc1's
// breaker is open, at most maxBinds times.
func (r *failoverRig) bindUntilBreakerOpen(t *testing.T, maxBinds int, what string) {
	t.Helper()
	for n := 0; r.gw.stats(0).Breaker == upstream.BreakerClosed; n++ {
		if n == maxBinds {
			t.Fatalf("%s: dc1's breaker is still closed after %d more binds (breaker.failures %d)\n%s", what, n, foFailures, r.describe())
		}
		if code, took := r.bind(t); code != 0 {
			t.Fatalf("%s: a bind got %d after %s while dc2 is healthy\n%s", what, code, took, r.describe())
		}
	}
}

func TestGatewayFailover(t *testing.T) {
	t.Run("a blackholed dc1: binds go to dc2 once its breaker opens, probes go on, and traffic comes back when it heals", func(t *testing.T) {
		r := newFailoverRig(t, "failover-blackhole")
		setFault(t, r.dc1, faultproxy.Blackhole())
		// A bind already written to dc1 when it hung is not sent again to dc2 (a
		// wrong password must not count twice): that user gets 52 after
		// op_timeout. Binds after it must reach dc2 once breaker.failures failures
		// opened dc1's breaker.
		r.bindUntilSuccess(t, foFailures, "dc1 blackholed")
		if n := r.gw.stats(1).Binds; n != 1 {
			t.Errorf("dc2 received %d binds, want 1, the one that succeeded: a bind written to dc1 must not be sent to dc2 too\n%s", n, r.describe())
		}
		r.bindUntilBreakerOpen(t, foFailures, "dc1 blackholed")

		before := r.gw.cluster.Stats()
		for i := range 3 {
			if code, took := r.bind(t); code != 0 || took > foFast {
				t.Errorf("bind %d with dc1's breaker open: %d after %s, want 0 within %s", i, code, took, foFast)
			}
		}
		after := r.gw.cluster.Stats()
		if after[0].Binds != before[0].Binds || after[1].Binds != before[1].Binds+3 {
			t.Errorf("with dc1's breaker open, 3 binds went %d to dc1 and %d to dc2, want 0 and 3",
				after[0].Binds-before[0].Binds, after[1].Binds-before[1].Binds)
		}
		probes := after[0].Probes
		waitFor(t, 15*time.Second, func() bool { return r.gw.stats(0).Probes >= probes+2 },
			"dc1 was probed %d times in 15s with its breaker open, want 2 more\n%s", r.gw.stats(0).Probes-probes, r.describe())

		setFault(t, r.dc1, faultproxy.None())
		r.waitTrafficOnDC1(t, 15*time.Second, "dc1 healed")
	})

	t.Run("a stopped dc1: binds go to dc2, and back to dc1 once it runs again", func(t *testing.T) {
		r := newFailoverRig(t, "failover-dc1-stopped")
		stopDC1(t)
		r.bindUntilSuccess(t, foFailures, "dc1 stopped")
		r.bindUntilBreakerOpen(t, foFailures, "dc1 stopped")
		if s := r.gw.stats(1); s.Binds == 0 {
			t.Fatalf("no bind went to dc2 while dc1 was stopped\n%s", r.describe())
		}
		startDC1(t)
		r.waitTrafficOnDC1(t, 30*time.Second, "dc1 started again")
	})

	t.Run("both DCs down: 52 within op_timeout, then fast once the breakers are open, and service again when they are back", func(t *testing.T) {
		r := newFailoverRig(t, "failover-both-down")
		setFault(t, r.dc1, faultproxy.Blackhole())
		setFault(t, r.dc2, faultproxy.Refuse())
		bothOpen := func() bool {
			s := r.gw.cluster.Stats()
			return s[0].Breaker != upstream.BreakerClosed && s[1].Breaker != upstream.BreakerClosed
		}
		// Each DC must count breaker.failures failures; a blackholed DC costs
		// op_timeout per bind.
		const maxBinds = 2*foFailures + 2
		for n := 1; !bothOpen(); n++ {
			if code, took := r.bind(t); code != ldap.LDAPResultUnavailable {
				t.Fatalf("bind %d with both DCs down: %d after %s, want 52", n, code, took)
			}
			if n == maxBinds {
				t.Fatalf("both DCs down: the breakers are not both open after %d binds\n%s", n, r.describe())
			}
		}
		for i := range 3 {
			if code, took := r.bind(t); code != ldap.LDAPResultUnavailable || took > foFast {
				t.Errorf("bind %d with both breakers open: %d after %s, want 52 within %s", i, code, took, foFast)
			}
		}

		setFault(t, r.dc1, faultproxy.None())
		setFault(t, r.dc2, faultproxy.None())
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, took := r.bind(t)
			if code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the gateway still answers %d (after %s) 20s after both DCs came back\n%s", code, took, r.describe())
			}
			time.Sleep(100 * time.Millisecond) // pace the binds while the probes run
		}
		t.Logf("served again:\n%s", r.describe())
	})
}
