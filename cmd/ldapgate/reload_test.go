package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
)

func TestPlanReloadSortsTheChangedKeys(t *testing.T) {
	t.Parallel()
	started := configs.Default()
	started.Upstream.Servers = []configs.Server{{URL: "ldaps://dc1.example.test:636"}}
	started.Listen.TLS = configs.ListenTLS{CertFile: "/etc/ldapgate/tls.pem", KeyFile: "/etc/ldapgate/tls.key"}
	started.Import.CSVFile, started.Import.JSONFile = configs.DefaultImportFiles(started.Sync.DataDir)
	tests := []struct {
		name      string
		change    func(*configs.Config)
		files     []string
		levelFlag bool
		noTLS     bool // the listener had no certificate at start
		want      reloadPlan
	}{
		{name: "nothing", change: func(*configs.Config) {}},
		{name: "the upstream list, the pool and the DN cache are live", change: func(c *configs.Config) {
			c.Upstream.Servers = []configs.Server{{URL: "ldaps://dc2.example.test:636"}}
			c.Upstream.Pool.BindSize = 3
			c.Cache.DN.TTL = time.Minute
		}, want: reloadPlan{live: []string{"upstream.servers", "upstream.pool.bind_size", "cache.dn.ttl"}}},
		{name: "the listen address and the base DN need a restart", change: func(c *configs.Config) {
			c.Listen.Address = "127.0.0.1:1389"
			c.Upstream.BaseDN = "DC=other,DC=test"
		}, want: reloadPlan{restart: []string{"listen.address", "upstream.base_dn"}}},
		{name: "sync settings are live, its data directory is not", change: func(c *configs.Config) {
			c.Sync.Interval = time.Minute
			c.Sync.DataDir = "/srv/ldapgate"
			c.Import.Mode = "create_update"
		}, want: reloadPlan{live: []string{"sync.interval", "import.mode"}, restart: []string{"sync.data_dir"}}},
		{name: "the import files that default into sync.data_dir wait for its restart", change: func(c *configs.Config) {
			c.Sync.DataDir = "/srv/ldapgate"
			c.Import.CSVFile, c.Import.JSONFile = configs.DefaultImportFiles(c.Sync.DataDir)
		}, want: reloadPlan{restart: []string{"sync.data_dir"}}},
		{name: "a renewed CA bundle and certificate under the same names", files: []string{"upstream.ca_file", "listen.tls.cert_file"},
			change: func(*configs.Config) {}, want: reloadPlan{live: []string{"upstream.ca_file", "listen.tls.cert_file"}}},
		{name: "new certificate files", change: func(c *configs.Config) { c.Listen.TLS.CertFile = "/etc/ldapgate/new.pem" },
			want: reloadPlan{live: []string{"listen.tls.cert_file"}}},
		{name: "a certificate where the listener had none needs a restart", noTLS: true,
			change: func(c *configs.Config) { c.Listen.TLS.CertFile = "/etc/ldapgate/new.pem" },
			want:   reloadPlan{restart: []string{"listen.tls.cert_file"}}},
		{name: "log.level is live", change: func(c *configs.Config) { c.Log.Level = "debug" },
			want: reloadPlan{live: []string{"log.level"}}},
		{name: "log.level under --log-level is overridden", levelFlag: true, change: func(c *configs.Config) { c.Log.Level = "debug" },
			want: reloadPlan{overridden: []string{"log.level"}}},
		{name: "log.format and reload.* need a restart", change: func(c *configs.Config) {
			c.Log.Format = "console"
			c.Reload.Debounce = 2 * time.Second
		}, want: reloadPlan{restart: []string{"log.format", "reload.debounce"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := started
			if tt.noTLS {
				start.Listen.TLS = configs.ListenTLS{}
			}
			next := start
			next.Upstream.Servers = slices.Clone(start.Upstream.Servers)
			tt.change(&next)
			got := planReload(&start, &start, &next, tt.files, tt.levelFlag)
			if !slices.Equal(got.live, tt.want.live) || !slices.Equal(got.restart, tt.want.restart) ||
				!slices.Equal(got.overridden, tt.want.overridden) {
				t.Errorf("planReload = live %q, restart %q, overridden %q; want %q, %q, %q",
					got.live, got.restart, got.overridden, tt.want.live, tt.want.restart, tt.want.overridden)
			}
		})
	}
}

func TestPlanReloadKeepsNamingARestartKeyUntilItIsBack(t *testing.T) {
	t.Parallel()
	started := configs.Default()
	first := started
	first.Listen.Address = "127.0.0.1:1389"
	second := first
	second.Cache.DN.Size = 5
	p := planReload(&started, &first, &second, nil, false)
	if !slices.Equal(p.live, []string{"cache.dn.size"}) || !slices.Equal(p.restart, []string{"listen.address"}) {
		t.Errorf("second reload: live %q, restart %q; want cache.dn.size live and listen.address still waiting for a restart", p.live, p.restart)
	}
	back := second
	back.Listen.Address = started.Listen.Address
	if p := planReload(&started, &second, &back, nil, false); len(p.restart) != 0 {
		t.Errorf("with listen.address back as started: restart %q, want none", p.restart)
	}
}

// fakeTargets records what a reload hands to each part.
type fakeTargets struct {
	upstreams  []configs.Upstream
	upstreamOK func(configs.Upstream) error
	auths      []configs.Config
	listeners  []configs.Config
	syncs      []configs.Config
	syncErr    error
	level      zap.AtomicLevel
}

func (f *fakeTargets) targets() reloadTargets {
	f.level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	return reloadTargets{upstream: upstreamFunc(func(u configs.Upstream) error {
		if f.upstreamOK != nil {
			if err := f.upstreamOK(u); err != nil {
				return err
			}
		}
		f.upstreams = append(f.upstreams, u)
		return nil
	}), auth: authFunc(func(c configs.Config) { f.auths = append(f.auths, c) }),
		listener: listenerFunc(func(c configs.Config) error { f.listeners = append(f.listeners, c); return nil }),
		sync: syncFunc(func(c *configs.Config) error {
			if f.syncErr != nil {
				return f.syncErr
			}
			f.syncs = append(f.syncs, *c)
			return nil
		}), level: f.level}
}

type (
	upstreamFunc func(configs.Upstream) error
	authFunc     func(configs.Config)
	listenerFunc func(configs.Config) error
	syncFunc     func(*configs.Config) error
)

func (f upstreamFunc) Reconfigure(u configs.Upstream) error { return f(u) }
func (f authFunc) Reconfigure(c configs.Config)             { f(c) }
func (f listenerFunc) Reconfigure(c configs.Config) error   { return f(c) }
func (f syncFunc) reconfigure(c *configs.Config) error      { return f(c) }

// reloadRig is a configuration file, a reloader of it with fake targets and
// its log.
type reloadRig struct {
	dir, path, caFile string
	fake              *fakeTargets
	r                 *reloader
	logs              *observer.ObservedLogs
}

// reloadYAML is a configuration with one DC; %s are the DC's URL, the CA file
// and extra YAML.
const reloadYAML = `listen:
  address: 127.0.0.1:0
upstream:
  servers:
    - url: %s
  ca_file: %s
  bind_dn: svc-pbx@example.test
  bind_password: "Svc!Passw0rd"
  base_dn: DC=example,DC=test
http:
  address: ""
sync:
  enabled: false
%s`

func newReloadRig(t *testing.T) *reloadRig {
	t.Helper()
	dir := t.TempDir()
	rig := &reloadRig{dir: dir, path: filepath.Join(dir, "ldapgate.yaml"), caFile: filepath.Join(dir, "ca.pem"), fake: &fakeTargets{}}
	rig.writeCA(t)
	rig.write(t, "ldaps://dc1.example.test:636", "")
	cfg, err := configs.Load(rig.path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	rig.logs = logs
	rig.r = newReloader(func() (*configs.Config, error) { return configs.Load(rig.path) }, cfg, false, rig.fake.targets(), zap.New(core))
	return rig
}

func (rig *reloadRig) write(t *testing.T, url, extra string) {
	t.Helper()
	yaml := strings.Replace(strings.Replace(strings.Replace(reloadYAML, "%s", url, 1), "%s", rig.caFile, 1), "%s", extra, 1)
	if err := os.WriteFile(rig.path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (rig *reloadRig) writeCA(t *testing.T) {
	t.Helper()
	ca, err := certs.GenerateCA("reload test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rig.caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// lines returns the lines logged at exactly level.
func (rig *reloadRig) lines(level zapcore.Level) []observer.LoggedEntry {
	return rig.logs.FilterLevelExact(level).AllUntimed()
}

func TestReloaderAppliesWhatChangedAndRefusesABrokenFile(t *testing.T) {
	t.Parallel()
	rig := newReloadRig(t)

	rig.r.reload("SIGHUP")
	if d := rig.lines(zapcore.DebugLevel); len(d) != 1 || d[0].Message != "config reload: nothing changed" {
		t.Fatalf("reload of the same file logged %v, want one debug line saying nothing changed", d)
	}

	rig.write(t, "ldaps://dc2.example.test:636", "cache:\n  dn:\n    ttl: 1m\nlog:\n  level: warn\nlisten:\n")
	rig.r.reload("SIGHUP")
	errs := rig.lines(zapcore.ErrorLevel)
	if len(errs) != 1 || errs[0].Message != "config reload refused: keeping the running config" ||
		!strings.Contains(errs[0].ContextMap()["error"].(string), "listen") {
		t.Fatalf("a file with listen twice logged %v, want one refusal naming the key", errs)
	}
	if len(rig.fake.upstreams)+len(rig.fake.auths)+len(rig.fake.listeners) != 0 {
		t.Fatalf("a refused reload reached the targets: %+v", rig.fake)
	}

	rig.write(t, "ldaps://dc2.example.test:636", "cache:\n  dn:\n    ttl: 1m\nlog:\n  level: warn\n")
	rig.r.reload("file change")
	infos := rig.lines(zapcore.InfoLevel)
	if len(infos) != 1 || infos[0].Message != "config reloaded" {
		t.Fatalf("a good reload logged %v, want one Info line", infos)
	}
	changed := infos[0].ContextMap()["changed"]
	if want := []any{"upstream.servers", "cache.dn.ttl", "log.level"}; !slices.Equal(changed.([]any), want) {
		t.Errorf("changed = %v, want %v", changed, want)
	}
	if len(rig.fake.upstreams) != 1 || rig.fake.upstreams[0].Servers[0].URL != "ldaps://dc2.example.test:636" {
		t.Errorf("the Cluster got %+v, want the new list with dc2", rig.fake.upstreams)
	}
	if len(rig.fake.auths) != 1 || rig.fake.auths[0].Cache.DN.TTL != time.Minute || len(rig.fake.listeners) != 1 {
		t.Errorf("the bind path got %d and the listener %d configurations, want the new cache.dn in each", len(rig.fake.auths), len(rig.fake.listeners))
	}
	if rig.fake.level.Level() != zapcore.WarnLevel {
		t.Errorf("log level %s after the reload, want warn", rig.fake.level.Level())
	}
	if len(rig.fake.syncs) != 0 {
		t.Errorf("the sync loop was reconfigured %d times; nothing of it changed", len(rig.fake.syncs))
	}

	// A restart-only key: one warning naming it, the rest applied.
	rig.write(t, "ldaps://dc2.example.test:636", "cache:\n  dn:\n    ttl: 1m\nlog:\n  level: warn\nlockout:\n  user_budget: 2\n")
	rig.r.reload("SIGHUP")
	warns := rig.lines(zapcore.WarnLevel)
	if len(warns) != 1 || warns[0].Message != "config: lockout.user_budget changed: restart ldapgate to apply it" {
		t.Errorf("a changed lockout.user_budget logged %v, want one warning naming it", warns)
	}
}

func TestReloaderRollsBackTheUpstreamsWhenTheSyncLoopRefuses(t *testing.T) {
	t.Parallel()
	rig := newReloadRig(t)
	rig.fake.syncErr = errors.New("sync: the new settings are not applied: boom")
	rig.write(t, "ldaps://dc2.example.test:636", "import:\n  mode: create_update\n")
	rig.r.reload("SIGHUP")
	if errs := rig.lines(zapcore.ErrorLevel); len(errs) != 1 || !strings.Contains(errs[0].ContextMap()["error"].(string), "boom") {
		t.Fatalf("logged %v, want one refusal with the sync loop's error", errs)
	}
	if len(rig.fake.upstreams) != 2 || rig.fake.upstreams[1].Servers[0].URL != "ldaps://dc1.example.test:636" {
		t.Fatalf("the Cluster got %+v, want the new list and then the running one back", rig.fake.upstreams)
	}
	if rig.r.cur.Upstream.Servers[0].URL != "ldaps://dc1.example.test:636" {
		t.Errorf("the running configuration became the refused one")
	}
}

func TestReloaderSeesARenewedCABundleAndRefusesABrokenOne(t *testing.T) {
	t.Parallel()
	rig := newReloadRig(t)
	rig.writeCA(t) // same name, another CA
	rig.r.reload("file change")
	if infos := rig.lines(zapcore.InfoLevel); len(infos) != 1 || !slices.Equal(infos[0].ContextMap()["changed"].([]any), []any{"upstream.ca_file"}) {
		t.Fatalf("a renewed CA bundle logged %v, want config reloaded with upstream.ca_file", infos)
	}
	if len(rig.fake.upstreams) != 1 {
		t.Errorf("the Cluster was reconfigured %d times, want once", len(rig.fake.upstreams))
	}
	if err := os.WriteFile(rig.caFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rig.r.reload("file change")
	if errs := rig.lines(zapcore.ErrorLevel); len(errs) != 1 || !strings.Contains(errs[0].ContextMap()["error"].(string), "upstream.ca_file") {
		t.Fatalf("a broken CA bundle logged %v, want a refusal naming upstream.ca_file", errs)
	}
	if len(rig.fake.upstreams) != 1 {
		t.Errorf("a broken CA bundle reached the Cluster")
	}
}
