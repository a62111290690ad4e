package configs

import (
	"slices"
	"testing"
	"time"
)

func TestChangedNamesTheKeysThatDiffer(t *testing.T) {
	t.Parallel()
	base := Default()
	base.Upstream.Servers = []Server{{URL: "ldaps://dc1.example.test:636"}, {URL: "ldaps://dc2.example.test:636"}}
	base.Upstream.BindPassword = "old-secret"
	tests := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"a nested duration", func(c *Config) { c.Upstream.Pool.IdleTimeout = time.Minute }, []string{"upstream.pool.idle_timeout"}},
		{"the order of the servers", func(c *Config) { slices.Reverse(c.Upstream.Servers) }, []string{"upstream.servers"}},
		{"a server's name", func(c *Config) { c.Upstream.Servers[1].ServerName = "dc2" }, []string{"upstream.servers"}},
		{"a secret, named but not shown", func(c *Config) { c.Upstream.BindPassword = "new-secret" }, []string{"upstream.bind_password"}},
		{"keys in several sections", func(c *Config) {
			c.Listen.Address = "127.0.0.1:1389"
			c.Cache.DN.TTL = time.Minute
			c.Log.Level = "debug"
			c.Reload.Debounce = 2 * time.Second
		}, []string{"listen.address", "cache.dn.ttl", "log.level", "reload.debounce"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := base
			next.Upstream.Servers = slices.Clone(base.Upstream.Servers)
			tt.change(&next)
			if got := Changed(&base, &next); !slices.Equal(got, tt.want) {
				t.Errorf("Changed = %q, want %q", got, tt.want)
			}
		})
	}
}
