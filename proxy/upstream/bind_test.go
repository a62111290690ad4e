package upstream

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestBindPassesTheDCsAnswerThrough(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	tests := []struct {
		name     string
		dn       string
		password string
		wantCode uint16 // 0: success
		wantData string // AD sub-code in the diagnostic
	}{
		{"a good password succeeds", testbed.JDoe.DN(), testbed.JDoe.Password, 0, ""},
		{"a UTF-8 password on an escaped DN succeeds", testbed.SOBrien.DN(), testbed.SOBrien.Password, 0, ""},
		{"a wrong password is 49 data 52e", testbed.JDoe.DN(), wrongPassword, ldap.LDAPResultInvalidCredentials, "52e"},
		{"an unknown user is 49 data 525", "CN=Nobody," + testbed.UsersDN, wrongPassword, ldap.LDAPResultInvalidCredentials, "525"},
		{"a disabled account is 49 data 533", testbed.CWhite.DN(), testbed.CWhite.Password, ldap.LDAPResultInvalidCredentials, "533"},
		{"a locked account is 49 data 775", testbed.HLocked.DN(), testbed.HLocked.Password, ldap.LDAPResultInvalidCredentials, "775"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Bind(ctxTimeout(t, 5*time.Second), tt.dn, tt.password)
			if res.DC != d.dcs[0].URL() {
				t.Errorf("answered by %q, want the first DC %q", res.DC, d.dcs[0].URL())
			}
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("Bind: %v", err)
				}
				return
			}
			var le *ldap.Error
			if !errors.As(err, &le) {
				t.Fatalf("Bind error %v is not an *ldap.Error", err)
			}
			if le.ResultCode != tt.wantCode || !strings.Contains(le.Err.Error(), "data "+tt.wantData) {
				t.Errorf("Bind = %d %q, want %d with data %s", le.ResultCode, le.Err, tt.wantCode, tt.wantData)
			}
			for _, sentinel := range []error{ErrUnavailable, ErrBusy, ErrNoHealthyUpstream} {
				if errors.Is(err, sentinel) {
					t.Errorf("an answer wraps %v: %v", sentinel, err)
				}
			}
		})
	}
	for i, s := range c.Stats() {
		if s.Breaker != BreakerClosed || s.Failures != 0 {
			t.Errorf("DC %d after answers: breaker %s with %d failures, want closed with 0", i+1, s.Breaker, s.Failures)
		}
	}
	if got := d.dcs[1].Stats().Binds; got != 0 {
		t.Errorf("the second DC got %d binds; answers are never retried", got)
	}
}

func TestBindRefusesAnEmptyPasswordWithoutTraffic(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	c, _ := newCluster(t, d.config())
	_, err := c.Bind(ctxTimeout(t, 5*time.Second), testbed.JDoe.DN(), "")
	if !errors.Is(err, ErrEmptyPassword) {
		t.Fatalf("Bind with an empty password = %v, want ErrEmptyPassword", err)
	}
	if s := d.dcs[0].Stats(); s.Connections != 0 || s.Binds != 0 {
		t.Errorf("the DC saw %d connections and %d binds, want none", s.Connections, s.Binds)
	}
}

func TestBindsReuseConnectionsWithoutNewHandshakes(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	c, logs := newCluster(t, d.config())
	dc := d.dcs[0]
	ctx := ctxTimeout(t, 30*time.Second)

	res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
	if err != nil || !res.NewConn {
		t.Fatalf("first Bind = %+v, %v; want success on a new connection", res, err)
	}
	before, simBefore := statsOf(t, c, dc.URL()), dc.Stats()
	for i := range 100 {
		pw := testbed.JDoe.Password
		if i%2 == 1 {
			pw = wrongPassword // a failed bind leaves the connection reusable too
		}
		res, err := c.Bind(ctx, testbed.JDoe.DN(), pw)
		if res.NewConn {
			t.Fatalf("bind %d ran on a new connection", i)
		}
		if i%2 == 0 && err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
	}
	after, simAfter := statsOf(t, c, dc.URL()), dc.Stats()
	if after.Handshakes != before.Handshakes || after.Dials != before.Dials {
		t.Errorf("100 binds made %d dials and %d handshakes, want 0", after.Dials-before.Dials, after.Handshakes-before.Handshakes)
	}
	if got := simAfter.Handshakes - simBefore.Handshakes; got != 0 {
		t.Errorf("the DC counted %d TLS handshakes over 100 binds, want 0", got)
	}
	if got := simAfter.Binds - simBefore.Binds; got != 100 {
		t.Errorf("the DC counted %d binds, want 100", got)
	}
	if after.Binds != 101 {
		t.Errorf("Stats counts %d binds, want 101", after.Binds)
	}
	if n := logs.Len(); n != 0 {
		t.Errorf("101 binds wrote %d log lines, want none: the proxy writes the audit line", n)
	}
}

func TestConcurrentBindsUseAtMostBindSizeConnections(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	cfg := d.config()
	cfg.Pool.BindSize = 3
	cfg.Pool.WaitTimeout = 10 * time.Second
	c, _ := newCluster(t, cfg)
	ctx := ctxTimeout(t, 30*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 20 {
		wg.Go(func() {
			for range 10 {
				if _, err := c.Bind(ctx, testbed.ASmith.DN(), testbed.ASmith.Password); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Bind: %v", err)
	}
	s := d.dcs[0].Stats()
	if s.Connections > 3 || s.Handshakes > 3 {
		t.Errorf("200 binds from 20 goroutines opened %d connections (%d handshakes), want at most bind_size 3", s.Connections, s.Handshakes)
	}
	if s.Binds != 200 {
		t.Errorf("the DC counted %d binds, want 200", s.Binds)
	}
}

func TestBindIsBusyWhenThePoolStaysFull(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	cfg := d.config()
	cfg.Pool.BindSize = 2
	cfg.Pool.WaitTimeout = 100 * time.Millisecond
	cfg.OpTimeout = time.Minute
	c, _ := newCluster(t, cfg)
	dc1 := d.dcs[0]
	// The two binds that fill the pool hang until the DC stops.
	dc1.SetDelay(time.Minute)
	ctx := ctxTimeout(t, 30*time.Second)

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _, _ = c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password) })
	}
	defer wg.Wait()
	defer func() { _ = dc1.Stop() }() // ends the hanging binds
	eventually(t, 10*time.Second, "both slow binds to reach the DC", func() bool { return dc1.Stats().Binds == 2 })

	start := time.Now()
	res, err := c.Bind(ctx, testbed.ASmith.DN(), testbed.ASmith.Password)
	waited := time.Since(start)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("third Bind = %v, want ErrBusy", err)
	}
	if waited < cfg.Pool.WaitTimeout || waited > 10*time.Second {
		t.Errorf("ErrBusy after %v, want after wait_timeout %v (and long before the slow binds end)", waited, cfg.Pool.WaitTimeout)
	}
	if res.DC != dc1.URL() {
		t.Errorf("busy on %q, want the first DC", res.DC)
	}
	if got := dc1.Stats().Connections; got != 2 {
		t.Errorf("the DC saw %d connections, want bind_size 2", got)
	}
	if got := d.dcs[1].Stats().Connections; got != 0 {
		t.Errorf("a busy pool sent traffic to the second DC (%d connections)", got)
	}
	if s := statsOf(t, c, dc1.URL()); s.Failures != 0 || s.Breaker != BreakerClosed || s.Bind.InUse != 2 {
		t.Errorf("after ErrBusy: %d failures, breaker %s, %d connections in use; want 0, closed, 2", s.Failures, s.Breaker, s.Bind.InUse)
	}
}

func TestBindThatReachedADCIsNeverRetriedOnAnother(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     func(*adsim.DC)
		opTimeout time.Duration
		ctx       time.Duration // the caller's deadline, when shorter than op_timeout
	}{
		{"a bind that times out", func(dc *adsim.DC) { dc.SetDrop(true) }, 300 * time.Millisecond, 0},
		{"a bind whose response is cut", func(dc *adsim.DC) { dc.CutBeforeBindResponse(true) }, 10 * time.Second, 0},
		{"a bind that outlives the caller's deadline", func(dc *adsim.DC) { dc.SetDelay(time.Minute) }, 10 * time.Second, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, 2, adsim.Config{})
			cfg := d.config()
			cfg.OpTimeout = tt.opTimeout
			c, _ := newCluster(t, cfg)
			dc1, dc2 := d.dcs[0], d.dcs[1]
			// A pooled connection first, so the short deadlines apply to the bind only.
			if _, err := c.Bind(ctxTimeout(t, 10*time.Second), testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
				t.Fatal(err)
			}
			tt.fault(dc1)
			defer dc1.ClearFaults()
			ctx := ctxTimeout(t, 10*time.Second)
			if tt.ctx > 0 {
				ctx = ctxTimeout(t, tt.ctx)
			}
			res, err := c.Bind(ctx, testbed.BJones.DN(), wrongPassword)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Bind = %v, want ErrUnavailable", err)
			}
			var le *ldap.Error
			if errors.As(err, &le) {
				t.Errorf("a transport failure looks like an answer: %v", err)
			}
			if res.DC != dc1.URL() {
				t.Errorf("failed on %q, want the first DC", res.DC)
			}
			if got := dc1.AccountBinds(testbed.BJones.Login); got != 1 {
				t.Errorf("the first DC got %d binds for bjones, want 1", got)
			}
			if got := dc2.AccountBinds(testbed.BJones.Login); got != 0 {
				t.Errorf("the bind was retried on the second DC (%d binds for bjones): a wrong password would count twice", got)
			}
			if got := dc2.Stats().Connections; got != 0 {
				t.Errorf("the second DC saw %d connections, want 0", got)
			}
		})
	}
}

func TestBindFailsOverWhenItNeverReachedTheFirstDC(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	dc1, dc2 := d.dcs[0], d.dcs[1]
	if err := dc1.SetRefuse(true); err != nil {
		t.Fatal(err)
	}
	res, err := c.Bind(ctxTimeout(t, 5*time.Second), testbed.BJones.DN(), wrongPassword)
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("Bind = %v, want the second DC's 49", err)
	}
	if res.DC != dc2.URL() {
		t.Errorf("answered by %q, want the second DC %q", res.DC, dc2.URL())
	}
	if got := dc1.AccountBinds(testbed.BJones.Login) + dc2.AccountBinds(testbed.BJones.Login); got != 1 {
		t.Errorf("bjones' wrong password reached the DCs %d times, want once", got)
	}
	if s := statsOf(t, c, dc1.URL()); s.Failures != 1 || s.DialFailures != 1 {
		t.Errorf("first DC: %d failures, %d dial failures; want 1 and 1", s.Failures, s.DialFailures)
	}
}

func TestStalePooledConnectionIsReplacedTransparently(t *testing.T) {
	t.Parallel()
	t.Run("closed by the DC while idle", func(t *testing.T) {
		t.Parallel()
		d := newDomain(t, 2, adsim.Config{})
		c, _ := newCluster(t, d.config())
		dc1 := d.dcs[0]
		ctx := ctxTimeout(t, 10*time.Second)
		if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Search(ctx, rootDSERequest()); err != nil {
			t.Fatal(err)
		}
		// The DC goes away and comes back: every pooled connection is dead.
		if err := dc1.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := dc1.Restart(); err != nil {
			t.Fatal(err)
		}
		res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
		if err != nil || res.DC != dc1.URL() || !res.NewConn {
			t.Fatalf("Bind after the DC closed the pooled connection = %+v, %v; want success on a new connection to the first DC", res, err)
		}
		if _, dc, err := c.Search(ctx, rootDSERequest()); err != nil || dc != dc1.URL() {
			t.Fatalf("Search after the DC closed the pooled connection = %s, %v; want success on the first DC", dc, err)
		}
		s := statsOf(t, c, dc1.URL())
		if s.Failures != 0 || s.Breaker != BreakerClosed {
			t.Errorf("a stale connection counted against the DC: %d failures, breaker %s", s.Failures, s.Breaker)
		}
		if s.Resumed == 0 {
			t.Errorf("the new connections did not resume a TLS session (%d handshakes, %d resumed)", s.Handshakes, s.Resumed)
		}
		if got := d.dcs[1].Stats().Connections; got != 0 {
			t.Errorf("the second DC saw %d connections, want 0", got)
		}
	})
	t.Run("broken without the reader noticing", func(t *testing.T) {
		t.Parallel()
		d := newDomain(t, 2, adsim.Config{})
		var bd breakableDialer
		c, _ := newCluster(t, d.config(), WithDialer(bd.dial))
		dc1 := d.dcs[0]
		ctx := ctxTimeout(t, 10*time.Second)
		if _, err := c.Bind(ctx, testbed.BJones.DN(), wrongPassword); err == nil {
			t.Fatal("a wrong password succeeded")
		}
		bd.breakWrites()
		res, err := c.Bind(ctx, testbed.BJones.DN(), wrongPassword)
		var le *ldap.Error
		if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultInvalidCredentials {
			t.Fatalf("Bind on a broken pooled connection = %v, want the DC's 49 through a new connection", err)
		}
		if !res.NewConn || res.DC != dc1.URL() {
			t.Errorf("Bind = %+v, want a new connection to the first DC", res)
		}
		if got := dc1.AccountBinds(testbed.BJones.Login); got != 2 {
			t.Errorf("the DC got %d binds for bjones, want exactly 2", got)
		}
		if s := statsOf(t, c, dc1.URL()); s.StaleRetries != 1 || s.Failures != 0 {
			t.Errorf("stale retries %d, failures %d; want 1 and 0", s.StaleRetries, s.Failures)
		}
	})
}

func TestConnectionsAreRecycled(t *testing.T) {
	t.Parallel()
	const idle, lifetime = 5 * time.Minute, 10 * time.Minute
	tests := []struct {
		name string
		// steps are the clock advances before each bind after the first;
		// wantNew says which of those binds must dial.
		steps   []time.Duration
		wantNew []bool
	}{
		{"a connection idle for idle_timeout is replaced", []time.Duration{idle - time.Second, idle}, []bool{false, true}},
		{"a connection in use for max_lifetime is replaced", []time.Duration{4 * time.Minute, 4 * time.Minute, 2 * time.Minute, time.Minute}, []bool{false, false, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, 1, adsim.Config{})
			cfg := d.config()
			cfg.Pool.IdleTimeout, cfg.Pool.MaxLifetime = idle, lifetime
			clock := newFakeClock()
			c, _ := newCluster(t, cfg, WithClock(clock.Now))
			dc := d.dcs[0]
			ctx := ctxTimeout(t, 10*time.Second)
			if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
				t.Fatal(err)
			}
			for i, step := range tt.steps {
				clock.Advance(step)
				res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
				if err != nil {
					t.Fatalf("bind %d: %v", i+1, err)
				}
				if res.NewConn != tt.wantNew[i] {
					t.Errorf("bind %d after %v: new connection %v, want %v", i+1, step, res.NewConn, tt.wantNew[i])
				}
			}
			eventually(t, 5*time.Second, "the recycled connection to be closed at the DC", func() bool { return dc.Stats().Open == 1 })
			if s := statsOf(t, c, dc.URL()); s.Bind.Open != 1 || s.Resumed == 0 {
				t.Errorf("bind pool has %d connections and %d resumed handshakes, want 1 and at least 1", s.Bind.Open, s.Resumed)
			}
		})
	}
	t.Run("the sweep closes idle connections without a request", func(t *testing.T) {
		t.Parallel()
		d := newDomain(t, 1, adsim.Config{})
		cfg := d.config()
		clock := newFakeClock()
		c, _ := newCluster(t, cfg, WithClock(clock.Now))
		dc := d.dcs[0]
		ctx := ctxTimeout(t, 10*time.Second)
		if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Search(ctx, rootDSERequest()); err != nil {
			t.Fatal(err)
		}
		c.sweep()
		if s := statsOf(t, c, dc.URL()); s.Bind.Open != 1 || s.Service.Open != 1 {
			t.Fatalf("a sweep before idle_timeout closed connections: %+v", s)
		}
		clock.Advance(cfg.Pool.IdleTimeout)
		c.sweep()
		if s := statsOf(t, c, dc.URL()); s.Bind.Open != 0 || s.Service.Open != 0 {
			t.Errorf("after idle_timeout the pools still hold bind %d, service %d connections", s.Bind.Open, s.Service.Open)
		}
		eventually(t, 5*time.Second, "the DC to see both connections closed", func() bool { return dc.Stats().Open == 0 })
	})
}

func TestCancelledContextAbortsTheBindWithoutCountingAgainstTheDC(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	c, _ := newCluster(t, d.config())
	dc := d.dcs[0]
	dc.SetDrop(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
		done <- err
	}()
	eventually(t, 5*time.Second, "the bind to reach the DC", func() bool { return dc.Stats().Binds == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Bind = %v, want ErrUnavailable wrapping context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("cancelling the context did not end the bind within 1s (op_timeout is 2s)")
	}
	if s := statsOf(t, c, dc.URL()); s.Failures != 0 || s.Breaker != BreakerClosed {
		t.Errorf("a cancelled bind counted against the DC: %d failures, breaker %s", s.Failures, s.Breaker)
	}
}
