package usersync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// simDomain is a simulated AD domain (adsim) with its DCs on loopback: the
// real LDAPS server the unit tests sync from.
type simDomain struct {
	dir    *adsim.Directory
	dcs    []*adsim.DC
	caFile string
}

// dcUSNOffset is added to the USNs of the i-th DC (USNs are per DC in AD).
const dcUSNOffset = 100000

// newSimDomain starts n DCs of one directory with loadUsers bulk users.
func newSimDomain(t *testing.T, n, loadUsers int) *simDomain {
	t.Helper()
	dir, err := adsim.NewDirectory(adsim.Config{Lockout: &adsim.LockoutPolicy{}, LoadUsers: loadUsers})
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, dir.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &simDomain{dir: dir, caFile: caFile}
	for i := range n {
		dc, err := dir.NewDC(adsim.DCConfig{Name: fmt.Sprintf("dc%d", i+1), USNOffset: int64(i) * dcUSNOffset})
		if err != nil {
			t.Fatalf("NewDC: %v", err)
		}
		if err := dc.Start("127.0.0.1:0"); err != nil {
			t.Fatalf("start dc%d: %v", i+1, err)
		}
		t.Cleanup(func() { _ = dc.Close() })
		d.dcs = append(d.dcs, dc)
	}
	return d
}

// upstreamConfig is the upstream section for the domain's DCs in order; urls
// replaces the DCs' own URLs (e.g. with a fault proxy's) when given.
func (d *simDomain) upstreamConfig(urls ...string) configs.Upstream {
	cfg := configs.Default().Upstream
	for i, dc := range d.dcs {
		u := dc.URL()
		if i < len(urls) {
			u = urls[i]
		}
		cfg.Servers = append(cfg.Servers, configs.Server{URL: u, ServerName: dc.HostName()})
	}
	cfg.CAFile = d.caFile
	cfg.BindDN = testbed.Service.DN()
	cfg.BindPassword = configs.Secret(testbed.Service.Password)
	cfg.BaseDN = testbed.BaseDN
	cfg.UserBaseDN = testbed.UsersDN
	cfg.OpTimeout = 10 * time.Second
	cfg.Pool.ServiceSize = 1 // one connection per DC: every read of a run on it
	cfg.Breaker = configs.Breaker{Failures: 3, ProbeInterval: time.Hour}
	return cfg
}

// allUsersFilter selects every user account.
const allUsersFilter = "(&(objectCategory=person)(objectClass=user))"

// pbxFilter selects the (nested) members of PBX-Users.
const pbxFilter = "(&(objectCategory=person)(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + "))"

// syncConfig is a sync section reading the users OU with small pages, so that
// every full sync spans several pages.
func syncConfig(dataDir, filter string) configs.Sync {
	cfg := configs.Default().Sync
	cfg.DataDir = dataDir
	cfg.BaseDN = testbed.UsersDN
	cfg.Filter = filter
	cfg.PageSize = 5
	cfg.Timeout = 30 * time.Second
	return cfg
}

// fakeClock is a Clock the test moves by hand. After registers a waiter and
// announces its duration on waits, so a test knows the loop is waiting.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	waits   chan time.Duration
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), waits: make(chan time.Duration, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	c.waits <- d
	return ch
}

// Advance moves the clock and fires the waiters that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// harness is one view and the Syncer that keeps it, over a Cluster.
type harness struct {
	t       *testing.T
	dom     *simDomain
	cfg     configs.Sync
	cluster *upstream.Cluster
	view    *View
	syncer  *Syncer
	clock   *fakeClock
	logs    *observer.ObservedLogs
}

// newHarness opens a view in cfg.DataDir and a Syncer over a new Cluster of ucfg.
func newHarness(t *testing.T, dom *simDomain, ucfg configs.Upstream, cfg configs.Sync, opts ...SyncerOption) *harness {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	cluster, err := upstream.New(ucfg, log)
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	view, err := OpenView(cfg.DataDir, ViewOptions{StaleAfter: cfg.StaleAfter})
	if err != nil {
		t.Fatalf("OpenView: %v", err)
	}
	t.Cleanup(func() { _ = view.Close() })
	clock := newFakeClock()
	s, err := NewSyncer(cfg, cluster, view, log, append([]SyncerOption{WithSyncClock(clock)}, opts...)...)
	if err != nil {
		t.Fatalf("NewSyncer: %v", err)
	}
	return &harness{t: t, dom: dom, cfg: cfg, cluster: cluster, view: view, syncer: s, clock: clock, logs: logs}
}

// run does one sync and fails the test on an error.
func (h *harness) run(o Options) Result {
	h.t.Helper()
	r, err := h.syncer.Run(context.Background(), o)
	if err != nil {
		h.t.Fatalf("Run(%+v): %v", o, err)
	}
	return r
}

// dbBytes returns the store file's bytes.
func (h *harness) dbBytes() []byte {
	h.t.Helper()
	b, err := os.ReadFile(h.view.Path())
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// logins returns the sorted lowercase sAMAccountNames of the view.
func logins(v *View) []string {
	var out []string
	for _, e := range v.All() {
		out = append(out, strings.ToLower(e.First("sAMAccountName")))
	}
	slices.Sort(out)
	return out
}

// loginsOf returns the sorted lowercase logins of the GUIDs, looked up in v
// (or, for removed ones, in before).
func loginsOf(guids []string, views ...*View) []string {
	var out []string
	for _, g := range guids {
		for _, v := range views {
			if e, ok := v.ByGUID(g); ok {
				out = append(out, strings.ToLower(e.First("sAMAccountName")))
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// directSearch is the reference: a paged search of base with filter and
// attrs, straight on the DC as the service account.
func (d *simDomain) directSearch(t *testing.T, dc *adsim.DC, filter string, attrs []string) []*ldap.Entry {
	t.Helper()
	conn, err := ldap.DialURL(dc.URL(), ldap.DialWithTLSConfig(dc.ClientTLSConfig()))
	if err != nil {
		t.Fatalf("dial %s: %v", dc.URL(), err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.Bind(testbed.Service.DN(), testbed.Service.Password); err != nil {
		t.Fatalf("bind: %v", err)
	}
	res, err := conn.SearchWithPaging(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		filter, attrs, nil), 100)
	if err != nil {
		t.Fatalf("reference search: %v", err)
	}
	return res.Entries
}
