package main

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// cmdPBXUsers is the test bed's sync.filter: PBX-Users' nested members.
const cmdPBXUsers = "(&(objectCategory=person)(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + "))"

// countingSearcher counts the searches the resolver sends AD.
type countingSearcher struct {
	c *upstream.Cluster
	n atomic.Int64
}

func (s *countingSearcher) Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, string, error) {
	s.n.Add(1)
	return s.c.Search(ctx, req)
}

// viewRig is a view synced from a simulated DC and its adapter, with a clock
// and DC states the test sets.
type viewRig struct {
	cfg     *configs.Config
	cluster *upstream.Cluster
	adapter *viewAdapter
	synced  time.Time
	now     atomic.Pointer[time.Time]
	down    atomic.Bool
}

func newViewRig(t *testing.T, filter string, change func(*configs.Config)) *viewRig {
	t.Helper()
	d := newSyncDomain(t)
	cfg, err := configs.Load(d.config(t, filter))
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(cfg)
	}
	r := &viewRig{cfg: cfg}
	if r.cluster, err = upstream.New(cfg.Upstream, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cluster.Close() })
	view, err := usersync.OpenView(cfg.Sync.DataDir, usersync.ViewOptions{StaleAfter: cfg.Sync.StaleAfter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = view.Close() })
	s, err := usersync.NewSyncer(cfg.Sync, r.cluster, view, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background(), usersync.Options{}); err != nil {
		t.Fatal(err)
	}
	r.synced = view.State().LastSync()
	r.setAge(0)
	r.adapter = newViewAdapter(cfg, view, func() []upstream.DCStats {
		st := r.cluster.Stats()
		if r.down.Load() {
			for i := range st {
				st[i].Breaker = upstream.BreakerOpen
			}
		}
		return st
	})
	r.adapter.now = func() time.Time { return *r.now.Load() }
	return r
}

// setAge moves the adapter's clock to d after the sync.
func (r *viewRig) setAge(d time.Duration) {
	at := r.synced.Add(d)
	r.now.Store(&at)
}

func mustLogin(t *testing.T, name string) proxy.Login {
	t.Helper()
	l, err := proxy.ParseLogin(name, testbed.NetBIOS)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestViewAdapterLooksLoginsUpInAFreshView(t *testing.T) {
	t.Parallel()
	r := newViewRig(t, cmdPBXUsers, nil)
	tests := []struct {
		name  string
		login string
		age   time.Duration
		down  bool
		want  string // the DN found, "" for a miss
	}{
		{"a login in the view is found", "JDoe", 0, false, testbed.JDoe.DN()},
		{"a down-level name is found", `AADDS\asmith`, 0, false, testbed.ASmith.DN()},
		{"a UPN is found by its UPN", testbed.SOBrien.UPN(), 0, false, testbed.SOBrien.DN()},
		{"a DN with an escaped comma is found", testbed.SOBrien.DN(), 0, false, testbed.SOBrien.DN()},
		{"a user outside the view is left to AD", "bjones", 0, false, ""},
		{"a login that is no user is left to AD", "nobody", 0, false, ""},
		{"a stale view is never used for logins", "jdoe", 16 * time.Minute, false, ""},
		{"not even while every DC is down", "jdoe", 16 * time.Minute, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.setAge(tt.age)
			r.down.Store(tt.down)
			defer func() { r.setAge(0); r.down.Store(false) }()
			id, ok := r.adapter.LookupLogin(mustLogin(t, tt.login))
			if ok != (tt.want != "") || (ok && !strings.EqualFold(id.DN, tt.want)) {
				t.Fatalf("LookupLogin(%q) = %+v, %v; want %q", tt.login, id, ok, tt.want)
			}
			if ok && (id.ObjectGUID == "" || id.SAMAccountName == "") {
				t.Errorf("identity %+v lacks its GUID or sAMAccountName", id)
			}
		})
	}
	t.Run("a resolver with the view resolves a login it holds without a search", func(t *testing.T) {
		cs := &countingSearcher{c: r.cluster}
		res, err := proxy.NewResolver(r.cfg.Upstream, r.cfg.Cache.DN, cs, nil, proxy.WithView(r.adapter))
		if err != nil {
			t.Fatal(err)
		}
		got, err := res.Resolve(context.Background(), mustLogin(t, "jdoe"))
		if err != nil || got.From != proxy.SourceView || !strings.EqualFold(got.DN, testbed.JDoe.DN()) {
			t.Fatalf("Resolve(jdoe) = %+v, %v; want jdoe from the view", got, err)
		}
		if got, err := res.Resolve(context.Background(), mustLogin(t, "bjones")); err != nil || got.From != proxy.SourceSearch {
			t.Fatalf("Resolve(bjones) = %+v, %v; want a search", got, err)
		}
		if n := cs.n.Load(); n != 1 {
			t.Errorf("%d searches went to AD, want 1 (bjones)", n)
		}
	})
	t.Run("a user filter the view cannot vouch for keeps logins on AD", func(t *testing.T) {
		strict := newViewRig(t, cmdPBXUsers, func(c *configs.Config) { c.Upstream.UserFilter = "(sAMAccountType=805306368)" })
		if id, ok := strict.adapter.LookupLogin(mustLogin(t, "jdoe")); ok {
			t.Errorf("LookupLogin = %+v with a user filter on an attribute the view does not store", id)
		}
	})
}

func TestViewAdapterSearches(t *testing.T) {
	t.Parallel()
	req := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			cmdPBXUsers, []string{"sAMAccountName", "mail"}, nil)
	}
	tests := []struct {
		name   string
		outage time.Duration // sync.outage_max_age
		age    time.Duration
		down   bool
		stale  bool  // answered as stale
		err    error // nil: answered
	}{
		{"a fresh view answers", 24 * time.Hour, time.Minute, false, false, nil},
		{"a stale view does not while a DC is up", 24 * time.Hour, time.Hour, false, false, usersync.ErrNotServed},
		{"a stale view answers while every breaker is open", 24 * time.Hour, time.Hour, true, true, nil},
		{"an outage_max_age of 0 never answers from a stale view", 0, time.Hour, true, false, usersync.ErrNotServed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newViewRig(t, cmdPBXUsers, func(c *configs.Config) { c.Sync.OutageMaxAge = tt.outage })
			r.setAge(tt.age)
			r.down.Store(tt.down)
			ans, err := r.adapter.SearchView(req())
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("SearchView error %v, want %v", err, tt.err)
			}
			if err == nil && (ans.Stale != tt.stale || ans.Result.Len() != 3 || ans.Rule != usersync.RuleScope) {
				t.Errorf("answer stale %v, %d entries, rule %s; want stale %v, 3 entries, scope", ans.Stale, ans.Result.Len(), ans.Rule, tt.stale)
			}
		})
	}
}
