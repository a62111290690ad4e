package upstream

import (
	"errors"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap/zapcore"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestBreakerOpensSkipsTheDCAndFailsBackAfterAProbe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault func(t *testing.T, dc *adsim.DC)
		heal  func(t *testing.T, dc *adsim.DC)
		// failover: the failed binds never reached DC1 and were answered by DC2.
		failover bool
		// timeouts: the fault makes requests time out, so op_timeout is short.
		timeouts bool
	}{
		{
			name:     "refused connections",
			fault:    func(t *testing.T, dc *adsim.DC) { must(t, dc.SetRefuse(true)) },
			heal:     func(t *testing.T, dc *adsim.DC) { must(t, dc.SetRefuse(false)) },
			failover: true,
		},
		{
			name:     "a stopped DC",
			fault:    func(t *testing.T, dc *adsim.DC) { must(t, dc.Stop()) },
			heal:     func(t *testing.T, dc *adsim.DC) { must(t, dc.Restart()) },
			failover: true,
		},
		{
			name:  "52 unavailable answers",
			fault: func(t *testing.T, dc *adsim.DC) { must(t, dc.FailNext(1000, ldap.LDAPResultUnavailable)) },
			heal:  func(t *testing.T, dc *adsim.DC) { dc.ClearFaults() },
		},
		{
			name:  "51 busy answers",
			fault: func(t *testing.T, dc *adsim.DC) { must(t, dc.FailNext(1000, ldap.LDAPResultBusy)) },
			heal:  func(t *testing.T, dc *adsim.DC) { dc.ClearFaults() },
		},
		{
			name:     "requests that time out",
			fault:    func(t *testing.T, dc *adsim.DC) { dc.SetDrop(true) },
			heal:     func(t *testing.T, dc *adsim.DC) { dc.ClearFaults() },
			timeouts: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, 2, adsim.Config{})
			cfg := d.config()
			if tt.timeouts {
				cfg.OpTimeout = 500 * time.Millisecond
			}
			c, logs := newCluster(t, cfg)
			dc1, dc2 := d.dcs[0], d.dcs[1]
			ctx := ctxTimeout(t, 30*time.Second)
			tt.fault(t, dc1)
			for i := range cfg.Breaker.Failures {
				res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
				switch {
				case tt.failover && (err != nil || res.DC != dc2.URL()):
					t.Fatalf("bind %d = %+v, %v; want success on the second DC", i+1, res, err)
				case !tt.failover && !errors.Is(err, ErrUnavailable):
					t.Fatalf("bind %d = %v, want ErrUnavailable", i+1, err)
				}
			}
			s1 := statsOf(t, c, dc1.URL())
			if s1.Breaker != BreakerOpen || s1.Failures != uint64(cfg.Breaker.Failures) {
				t.Fatalf("after %d failures: breaker %s with %d failures, want open", cfg.Breaker.Failures, s1.Breaker, s1.Failures)
			}
			if n := countLogs(logs, zapcore.WarnLevel, "upstream circuit opened"); n != 1 {
				t.Errorf("%d Warn lines for the breaker opening, want 1", n)
			}
			for _, e := range logs.FilterMessageSnippet("upstream circuit opened").All() {
				fields := e.ContextMap()
				if fields["upstream"] != dc1.URL() || fields["last_error"] == "" {
					t.Errorf("the Warn line lacks the DC or the failure that opened it: %v", fields)
				}
			}

			// While open, DC1 gets nothing.
			sim1 := dc1.Stats()
			for i := range 5 {
				res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
				if err != nil || res.DC != dc2.URL() {
					t.Fatalf("bind %d with DC1 open = %+v, %v; want success on the second DC", i+1, res, err)
				}
			}
			if after := dc1.Stats(); after.Connections != sim1.Connections || after.Binds != sim1.Binds {
				t.Errorf("DC1 got traffic while its breaker was open: %+v → %+v", sim1, after)
			}

			// A probe of the still broken DC keeps the breaker open.
			c.probeAll(ctx)
			if s := statsOf(t, c, dc1.URL()); s.Breaker != BreakerOpen || s.Probes != 1 {
				t.Fatalf("after a failed probe: breaker %s, %d probes; want open, 1", s.Breaker, s.Probes)
			}

			tt.heal(t, dc1)
			c.probeAll(ctx)
			if s := statsOf(t, c, dc1.URL()); s.Breaker != BreakerClosed {
				t.Fatalf("after a successful probe the breaker is %s (last error %q), want closed", s.Breaker, s.LastError)
			}
			if n := countLogs(logs, zapcore.InfoLevel, "upstream circuit closed"); n != 1 {
				t.Errorf("%d Info lines for the breaker closing, want 1", n)
			}
			res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
			if err != nil || res.DC != dc1.URL() {
				t.Fatalf("Bind after DC1 recovered = %+v, %v; want success back on the first DC", res, err)
			}
			if s := statsOf(t, c, dc2.URL()); s.Breaker != BreakerClosed || s.Failures != 0 {
				t.Errorf("DC2: breaker %s, %d failures; want closed, 0", s.Breaker, s.Failures)
			}
		})
	}
}

func TestAnswersKeepTheBreakerClosed(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	ctx := ctxTimeout(t, 30*time.Second)
	for i := range 10 {
		if _, err := c.Bind(ctx, testbed.BJones.DN(), wrongPassword); err == nil {
			t.Fatalf("bind %d with a wrong password succeeded", i)
		}
		if _, _, err := c.Search(ctx, ldap.NewSearchRequest("OU=Nowhere,"+testbed.BaseDN, ldap.ScopeWholeSubtree,
			ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil)); !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			t.Fatalf("search %d under a missing OU = %v, want 32", i, err)
		}
	}
	if s := statsOf(t, c, d.dcs[0].URL()); s.Breaker != BreakerClosed || s.Failures != 0 {
		t.Errorf("after 10 × 49 and 10 × 32: breaker %s, %d failures; want closed, 0", s.Breaker, s.Failures)
	}
	if got := d.dcs[1].Stats().Connections; got != 0 {
		t.Errorf("answers went to the second DC (%d connections)", got)
	}
}

func TestNoHealthyUpstreamFailsFastWithoutDialling(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	cfg := d.config()
	c, _ := newCluster(t, cfg)
	ctx := ctxTimeout(t, 30*time.Second)
	for _, dc := range d.dcs {
		must(t, dc.SetRefuse(true))
	}
	for i := range cfg.Breaker.Failures {
		if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("bind %d with both DCs refusing = %v, want ErrUnavailable", i+1, err)
		}
	}
	before := c.Stats()
	for _, s := range before {
		if s.Breaker != BreakerOpen {
			t.Fatalf("%s: breaker %s, want open", s.URL, s.Breaker)
		}
	}
	for range 50 {
		start := time.Now()
		res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
		if took := time.Since(start); took > cfg.DialTimeout/10 {
			t.Errorf("ErrNoHealthyUpstream took %v, want well under dial_timeout %v", took, cfg.DialTimeout)
		}
		if !errors.Is(err, ErrNoHealthyUpstream) || res.DC != "" {
			t.Fatalf("Bind with every breaker open = %+v, %v; want ErrNoHealthyUpstream and no DC", res, err)
		}
		if _, _, err := c.Search(ctx, rootDSERequest()); !errors.Is(err, ErrNoHealthyUpstream) {
			t.Fatalf("Search with every breaker open = %v, want ErrNoHealthyUpstream", err)
		}
	}
	for i, s := range c.Stats() {
		if s.Dials != before[i].Dials {
			t.Errorf("%s: %d dials while its breaker was open, want 0", s.URL, s.Dials-before[i].Dials)
		}
	}
}

func TestProbeLoopClosesTheBreakerByItself(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	cfg := d.config()
	cfg.Breaker.ProbeInterval = 20 * time.Millisecond
	c, _ := newCluster(t, cfg)
	dc1 := d.dcs[0]
	ctx := ctxTimeout(t, 30*time.Second)
	must(t, dc1.SetRefuse(true))
	for range cfg.Breaker.Failures {
		if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
			t.Fatalf("Bind: %v", err)
		}
	}
	eventually(t, 10*time.Second, "the probe loop to probe the refusing DC", func() bool { return statsOf(t, c, dc1.URL()).Probes >= 2 })
	if s := statsOf(t, c, dc1.URL()); s.Breaker == BreakerClosed {
		t.Fatalf("the breaker closed while the DC still refuses connections")
	}
	must(t, dc1.SetRefuse(false))
	eventually(t, 10*time.Second, "a probe to close the breaker of the recovered DC", func() bool {
		return statsOf(t, c, dc1.URL()).Breaker == BreakerClosed
	})
	res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
	if err != nil || res.DC != dc1.URL() {
		t.Fatalf("Bind after recovery = %+v, %v; want success on the first DC", res, err)
	}
}

func TestDrainedDCGetsNoTraffic(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	dc1, dc2 := d.dcs[0], d.dcs[1]
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
		t.Fatal(err)
	}
	must(t, c.SetDrained(dc1.URL(), true))
	if s := statsOf(t, c, dc1.URL()); !s.Drained || s.Bind.Open != 0 {
		t.Errorf("drained DC1: drained %v with %d pooled connections, want true and 0", s.Drained, s.Bind.Open)
	}
	eventually(t, 5*time.Second, "DC1 to see its idle connection closed", func() bool { return dc1.Stats().Open == 0 })
	sim1 := dc1.Stats()
	res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
	if err != nil || res.DC != dc2.URL() {
		t.Fatalf("Bind with DC1 drained = %+v, %v; want the second DC", res, err)
	}
	if _, dc, err := c.Search(ctx, rootDSERequest()); err != nil || dc != dc2.URL() {
		t.Fatalf("Search with DC1 drained = %s, %v; want the second DC", dc, err)
	}
	if after := dc1.Stats(); after.Connections != sim1.Connections {
		t.Errorf("drained DC1 got %d new connections", after.Connections-sim1.Connections)
	}
	must(t, c.SetDrained(dc2.URL(), true))
	if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("Bind with both DCs drained = %v, want ErrNoHealthyUpstream", err)
	}
	must(t, c.SetDrained(dc1.URL(), false))
	if res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil || res.DC != dc1.URL() {
		t.Errorf("Bind after undraining DC1 = %+v, %v; want the first DC", res, err)
	}
	if err := c.SetDrained("ldaps://nowhere:636", true); !errors.Is(err, ErrUnknownServer) {
		t.Errorf("SetDrained of an unknown URL = %v, want ErrUnknownServer", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
