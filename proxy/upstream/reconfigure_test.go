package upstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// servers returns the upstream.servers entries of the domain's DCs with these
// indexes, in that order.
func (d *domain) servers(idx ...int) []configs.Server {
	var out []configs.Server
	for _, i := range idx {
		out = append(out, configs.Server{URL: d.dcs[i].URL(), ServerName: d.dcs[i].HostName()})
	}
	return out
}

// urls returns the DC URLs Stats lists, in order.
func urls(c *Cluster) []string {
	var out []string
	for _, s := range c.Stats() {
		out = append(out, s.URL)
	}
	return out
}

// bindJDoe binds as jdoe and fails the test on an error.
func bindJDoe(t *testing.T, c *Cluster) BindResult {
	t.Helper()
	res, err := c.Bind(ctxTimeout(t, 20*time.Second), testbed.JDoe.DN(), testbed.JDoe.Password)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	return res
}

func TestReconfigureKeepsRemovesAndAddsDCs(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 3, adsim.Config{})
	dc1, dc2, dc3 := d.dcs[0], d.dcs[1], d.dcs[2]
	cfg := d.config()
	cfg.Servers = d.servers(0, 1)
	c, _ := newCluster(t, cfg)
	ctx := ctxTimeout(t, 30*time.Second)

	if res := bindJDoe(t, c); res.DC != dc1.URL() {
		t.Fatalf("first bind on %s, want %s", res.DC, dc1.URL())
	}
	// A pooled service connection on DC2, which must be closed when DC2 goes.
	if _, err := c.SearchAt(ctx, dc2.URL(), rootDSERequest()); err != nil {
		t.Fatalf("SearchAt DC2: %v", err)
	}
	before := statsOf(t, c, dc1.URL())

	cfg.Servers = d.servers(2, 0)
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if got, want := urls(c), []string{dc3.URL(), dc1.URL()}; !slices.Equal(got, want) {
		t.Fatalf("Stats lists %v after Reconfigure, want %v", got, want)
	}
	eventually(t, 10*time.Second, "DC2's pooled connection to be closed", func() bool { return dc2.Stats().Open == 0 })
	if _, err := c.SearchAt(ctx, dc2.URL(), rootDSERequest()); !errors.Is(err, ErrUnknownServer) {
		t.Errorf("SearchAt the removed DC2 = %v, want ErrUnknownServer", err)
	}
	if res := bindJDoe(t, c); res.DC != dc3.URL() || !res.NewConn {
		t.Errorf("bind after Reconfigure = %+v, want a new connection on the new first DC %s", res, dc3.URL())
	}
	if s := statsOf(t, c, dc3.URL()); s.Binds != 1 || s.Dials != 1 {
		t.Errorf("the new DC3: %d binds, %d dials; want a fresh DC with 1 of each", s.Binds, s.Dials)
	}

	// DC1 was kept: with DC3 drained, its bind reuses DC1's pooled connection
	// and its counters go on from where they were.
	must(t, c.SetDrained(dc3.URL(), true))
	if res := bindJDoe(t, c); res.DC != dc1.URL() || res.NewConn {
		t.Errorf("bind with DC3 drained = %+v, want DC1's pooled connection", res)
	}
	after := statsOf(t, c, dc1.URL())
	if after.Dials != before.Dials || after.Handshakes != before.Handshakes || after.Binds != before.Binds+1 {
		t.Errorf("DC1 after Reconfigure: %d dials, %d handshakes, %d binds; want %d, %d, %d (pool and counters kept)",
			after.Dials, after.Handshakes, after.Binds, before.Dials, before.Handshakes, before.Binds+1)
	}
	if n := dc2.AccountBinds(testbed.JDoe.Login); n != 0 {
		t.Errorf("the removed DC2 got %d of jdoe's binds", n)
	}
}

func TestReconfigureLetsRequestsInFlightOnARemovedDCFinish(t *testing.T) {
	t.Parallel()
	const users = 30
	d := newDomain(t, 2, adsim.Config{LoadUsers: users})
	dc1, dc2 := d.dcs[0], d.dcs[1]
	cfg := d.config()
	c, _ := newCluster(t, cfg)
	ctx := ctxTimeout(t, 60*time.Second)

	// A paged search with pages left, holding its connection to DC1.
	first, ps, dc, err := c.StartPaged(ctx, loadUsersRequest(), 10)
	if err != nil || ps == nil || dc != dc1.URL() {
		t.Fatalf("StartPaged = %s, %v, %v; want DC1 with more pages", dc, ps, err)
	}
	// A bind that DC1 holds for a while.
	dc1.SetDelay(500 * time.Millisecond)
	type result struct {
		res BindResult
		err error
	}
	done := make(chan result, 1)
	binds := dc1.Stats().Binds
	go func() {
		res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
		done <- result{res, err}
	}()
	eventually(t, 10*time.Second, "DC1 to receive the bind", func() bool { return dc1.Stats().Binds > binds })

	cfg.Servers = d.servers(1)
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.res.DC != dc1.URL() {
			t.Errorf("the bind in flight on DC1 = %+v, %v; want success on DC1", r.res, r.err)
		}
	case <-ctx.Done():
		t.Fatal("the bind in flight on DC1 never returned")
	}
	dc1.SetDelay(0)
	if names := readAll(t, first, ps, 10); len(names) != users {
		t.Errorf("the paged search on the removed DC1 read %d entries, want %d", len(names), users)
	}
	if res := bindJDoe(t, c); res.DC != dc2.URL() {
		t.Errorf("a new bind went to %s, want DC2", res.DC)
	}
	eventually(t, 10*time.Second, "every connection to the removed DC1 to be closed", func() bool { return dc1.Stats().Open == 0 })
}

func TestReconfigureReplacesTheConnectionsWhenTheServiceAccountChanges(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	url := d.dcs[0].URL()
	cfg := d.config()
	cfg.BindPassword = configs.Secret(wrongPassword)
	c, logs := newCluster(t, cfg)
	ctx := ctxTimeout(t, 30*time.Second)

	if _, _, err := c.Search(ctx, rootDSERequest()); !errors.Is(err, ErrServiceBind) {
		t.Fatalf("Search with a wrong service password = %v, want ErrServiceBind", err)
	}
	cfg.BindPassword = configs.Secret(testbed.Service.Password)
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	// At once: the remembered refusal belonged to the old password.
	if _, _, err := c.Search(ctx, rootDSERequest()); err != nil {
		t.Fatalf("Search after fixing the password: %v", err)
	}
	s := statsOf(t, c, url)
	if s.Breaker != BreakerClosed || s.Searches != 1 || s.Service.Open != 1 {
		t.Errorf("after the fix: %+v; want the breaker closed, the counters kept (1 search) and one service connection", s)
	}
	if n := countLogs(logs, zapcore.ErrorLevel, "upstream refused the service account"); n != 1 {
		t.Errorf("%d refusal lines, want 1", n)
	}

	// The pool sizes are part of what the pools are made with.
	cfg.Pool.ServiceSize, cfg.Pool.BindSize = 7, 9
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if s := statsOf(t, c, url); s.Service.Size != 7 || s.Bind.Size != 9 || s.Service.Open != 0 {
		t.Errorf("after new pool sizes: service %+v, bind %+v; want sizes 7 and 9 and the old connection gone", s.Service, s.Bind)
	}
	eventually(t, 10*time.Second, "the old pool's connection to be closed", func() bool { return d.dcs[0].Stats().Open == 0 })
}

func TestReconfigureKeepsThePoolsWhenNothingOfThemChanged(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	url := d.dcs[0].URL()
	cfg := d.config()
	c, _ := newCluster(t, cfg)
	bindJDoe(t, c)

	// The same CA in another file, and new timeouts: the connections stay.
	data, err := os.ReadFile(cfg.CAFile)
	must(t, err)
	cfg.CAFile = filepath.Join(t.TempDir(), "copy.pem")
	must(t, os.WriteFile(cfg.CAFile, data, 0o600))
	cfg.OpTimeout, cfg.Pool.WaitTimeout, cfg.Breaker.Failures = 7*time.Second, 3*time.Second, 5
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if res := bindJDoe(t, c); res.NewConn {
		t.Error("the bind after Reconfigure dialled a new connection; the pool should have been kept")
	}
	if s := statsOf(t, c, url); s.Dials != 1 {
		t.Errorf("%d dials, want 1", s.Dials)
	}

	// Another CA: the new connections are verified against it, and fail.
	other := newDomain(t, 0, adsim.Config{})
	cfg.CAFile = other.caFile
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	_, err = c.Bind(ctxTimeout(t, 20*time.Second), testbed.JDoe.DN(), testbed.JDoe.Password)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Bind against a DC the new CA does not trust = %v, want a certificate error", err)
	}
}

func TestReconfigureRefusesWhatNewRefusesAndKeepsServing(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	cfg := d.config()
	c, _ := newCluster(t, cfg)
	tests := []struct {
		name         string
		change       func(*configs.Upstream)
		wantContains string
	}{
		{"no servers", func(c *configs.Upstream) { c.Servers = nil }, "upstream.servers"},
		{"a plain ldap:// URL", func(c *configs.Upstream) { c.Servers[0].URL = "ldap://127.0.0.1:389" }, "upstream.servers[0].url"},
		{"a missing CA file", func(c *configs.Upstream) { c.CAFile = "/nonexistent/ca.pem" }, "upstream.ca_file"},
		{"a zero bind pool", func(c *configs.Upstream) { c.Pool.BindSize = 0 }, "upstream.pool.bind_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := d.config()
			tt.change(&bad)
			err := c.Reconfigure(bad)
			if err == nil || !strings.Contains(err.Error(), tt.wantContains) {
				t.Fatalf("Reconfigure = %v, want an error naming %q", err, tt.wantContains)
			}
			if got, want := urls(c), []string{d.dcs[0].URL()}; !slices.Equal(got, want) {
				t.Errorf("after a refused Reconfigure Stats lists %v, want %v", got, want)
			}
			bindJDoe(t, c)
		})
	}
	must(t, c.Close())
	if err := c.Reconfigure(cfg); !errors.Is(err, ErrClosed) {
		t.Errorf("Reconfigure after Close = %v, want ErrClosed", err)
	}
}

func TestReconfigureProbesAnOpenBreakerAtOnce(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	dc1 := d.dcs[0]
	cfg := d.config() // probe interval one hour
	c, _ := newCluster(t, cfg)
	must(t, dc1.SetRefuse(true))
	for range cfg.Breaker.Failures {
		bindJDoe(t, c) // fails over to DC2
	}
	if s := statsOf(t, c, dc1.URL()); s.Breaker != BreakerOpen {
		t.Fatalf("DC1's breaker is %s after %d refused dials, want open", s.Breaker, cfg.Breaker.Failures)
	}
	must(t, dc1.SetRefuse(false))
	if err := c.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	eventually(t, 10*time.Second, "the probe after Reconfigure to close DC1's breaker (the probe interval is an hour)", func() bool {
		return statsOf(t, c, dc1.URL()).Breaker == BreakerClosed
	})
}

// TestReconfigureUnderLoad changes the DC list, the pools and the service
// account's connections over and over while binds, searches and paged
// searches run: none of them fails, and once the Cluster is closed no
// connection and no goroutine is left. Not parallel, so that goleak sees only
// this test's goroutines.
func TestReconfigureUnderLoad(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	d := newDomain(t, 3, adsim.Config{LoadUsers: 25})
	base := d.config()
	base.Pool.ServiceSize, base.Pool.BindSize = 8, 8
	configsToCycle := []configs.Upstream{base, base, base, base}
	configsToCycle[0].Servers = d.servers(0, 1)
	configsToCycle[1].Servers = d.servers(1)
	configsToCycle[2].Servers = d.servers(2, 0, 1)
	configsToCycle[2].Pool.BindSize = 6
	configsToCycle[3].Servers = d.servers(0, 2)
	configsToCycle[3].Pool.ServiceSize = 5
	c, err := New(configsToCycle[0], nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const workers, rounds = 4, 15
	errs := make(chan error, 3*workers*rounds)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
					errs <- fmt.Errorf("worker %d bind %d: %w", w, i, err)
				}
				if _, _, err := c.Search(ctx, rootDSERequest()); err != nil {
					errs <- fmt.Errorf("worker %d search %d: %w", w, i, err)
				}
				first, ps, _, err := c.StartPaged(ctx, loadUsersRequest(), 10)
				if err != nil {
					errs <- fmt.Errorf("worker %d paged search %d: %w", w, i, err)
					continue
				}
				n := len(first.Entries)
				for ps != nil {
					res, done, err := ps.Next(ctx, 10)
					if err != nil {
						errs <- fmt.Errorf("worker %d paged search %d, later page: %w", w, i, err)
						break
					}
					n += len(res.Entries)
					if done {
						break
					}
				}
				if n != 25 {
					errs <- fmt.Errorf("worker %d paged search %d read %d entries, want 25", w, i, n)
				}
			}
		})
	}
	stop := make(chan struct{})
	reconfigs := make(chan int, 1)
	go func() {
		n := 0
		defer func() { reconfigs <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.Reconfigure(configsToCycle[(n+1)%len(configsToCycle)]); err != nil {
				errs <- fmt.Errorf("Reconfigure %d: %w", n, err)
				return
			}
			n++
			time.Sleep(5 * time.Millisecond) // pace of the reloads, not a synchronisation
		}
	}()
	wg.Wait()
	close(stop)
	if n := <-reconfigs; n < 3 {
		t.Errorf("only %d reconfigurations ran during the load", n)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	must(t, c.Close())
	for _, dc := range d.dcs {
		eventually(t, 10*time.Second, dc.HostName()+"'s connections to be closed after Close", func() bool { return dc.Stats().Open == 0 })
	}
}
