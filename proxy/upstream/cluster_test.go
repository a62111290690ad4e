package upstream

import (
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
)

func TestNewRefusesWhatItCannotWorkWith(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	tests := []struct {
		name         string
		change       func(*configs.Upstream)
		wantContains string
	}{
		{"no servers", func(c *configs.Upstream) { c.Servers = nil }, "upstream.servers"},
		{"a plain ldap:// URL", func(c *configs.Upstream) { c.Servers[0].URL = "ldap://127.0.0.1:389" }, "not ldaps://"},
		{"a server listed twice", func(c *configs.Upstream) { c.Servers = append(c.Servers, c.Servers[0]) }, "listed twice"},
		{"a missing CA file", func(c *configs.Upstream) { c.CAFile = "/nonexistent/ca.pem" }, "upstream.ca_file"},
		{"a zero bind pool", func(c *configs.Upstream) { c.Pool.BindSize = 0 }, "upstream.pool.bind_size"},
		{"a zero wait timeout", func(c *configs.Upstream) { c.Pool.WaitTimeout = 0 }, "upstream.pool.wait_timeout"},
		{"a zero probe interval", func(c *configs.Upstream) { c.Breaker.ProbeInterval = 0 }, "upstream.breaker.probe_interval"},
		{"a zero op timeout", func(c *configs.Upstream) { c.OpTimeout = 0 }, "upstream.op_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := d.config()
			tt.change(&cfg)
			c, err := New(cfg, nil)
			if err == nil {
				_ = c.Close()
				t.Fatal("New accepted it")
			}
			if !strings.Contains(err.Error(), tt.wantContains) {
				t.Errorf("New = %v, want it to mention %q", err, tt.wantContains)
			}
		})
	}
}

func TestNewDialsNothing(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	for _, dc := range d.dcs {
		if n := dc.Stats().Connections; n != 0 {
			t.Errorf("%s saw %d connections after New, want 0", dc.HostName(), n)
		}
	}
	for _, s := range c.Stats() {
		if s.Breaker != BreakerClosed || s.Dials != 0 {
			t.Errorf("%s: breaker %s, %d dials; want closed, 0", s.URL, s.Breaker, s.Dials)
		}
	}
}

func TestServerNameDefaultsToTheURLHost(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	cfg := d.config()
	// The DC's certificate holds 127.0.0.1 too: verification passes by IP.
	cfg.Servers[0].ServerName = ""
	c, _ := newCluster(t, cfg)
	if _, _, err := c.Search(ctxTimeout(t, 10*time.Second), rootDSERequest()); err != nil {
		t.Fatalf("Search with the server name from the URL: %v", err)
	}
	// A name the certificate does not hold fails verification: no plaintext, no skipping.
	cfg.Servers[0].ServerName = "evil.example.test"
	c2, _ := newCluster(t, cfg)
	_, _, err := c2.Search(ctxTimeout(t, 10*time.Second), rootDSERequest())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Search with a wrong server name = %v, want a certificate error", err)
	}
}
