package upstream

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap/zapcore"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// usersRequest searches every user of the users OU.
func usersRequest() *ldap.SearchRequest {
	return ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(&(objectCategory=person)(objectClass=user))", []string{"sAMAccountName"}, nil)
}

func TestSearchRunsOnTheFirstDCAsTheServiceAccount(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	ctx := ctxTimeout(t, 30*time.Second)
	res, dc, err := c.Search(ctx, usersRequest())
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if dc != d.dcs[0].URL() {
		t.Errorf("answered by %s, want the first DC", dc)
	}
	found := false
	for _, e := range res.Entries {
		found = found || e.GetAttributeValue("sAMAccountName") == testbed.JDoe.Login
	}
	if !found {
		// Anonymous connections may read the rootDSE only: entries prove the service bind.
		t.Errorf("%d entries without jdoe", len(res.Entries))
	}
	if len(res.Referrals) != 0 {
		t.Errorf("referrals %v, want none", res.Referrals)
	}
	// Searches and binds never share a connection.
	if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, _, err := c.Search(ctx, usersRequest()); err != nil {
			t.Fatalf("Search after a user bind: %v", err)
		}
	}
	s := statsOf(t, c, d.dcs[0].URL())
	if s.Service.Open != 1 || s.Bind.Open != 1 || s.Handshakes != 2 || s.Searches != 6 {
		t.Errorf("stats %+v, want one service and one bind connection, 2 handshakes, 6 searches", s)
	}
}

func TestSearchFailsOverToTheNextDC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		warm      bool // run one search first, so the fault hits a pooled connection
		opTimeout time.Duration
		fault     func(t *testing.T, dc *adsim.DC)
	}{
		{"when the first DC answers 52", true, 0, func(t *testing.T, dc *adsim.DC) { must(t, dc.FailNext(1, ldap.LDAPResultUnavailable)) }},
		{"when the first DC cuts the response", true, 0, func(t *testing.T, dc *adsim.DC) { dc.CutSearchAfter(1) }},
		{"when the first DC times out", true, 300 * time.Millisecond, func(t *testing.T, dc *adsim.DC) { dc.SetDrop(true) }},
		{"when the first DC refuses connections", false, 0, func(t *testing.T, dc *adsim.DC) { must(t, dc.SetRefuse(true)) }},
		{"when the first DC's service bind is answered 52", false, 0, func(t *testing.T, dc *adsim.DC) { must(t, dc.FailNext(1, ldap.LDAPResultUnavailable)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, 2, adsim.Config{})
			cfg := d.config()
			if tt.opTimeout > 0 {
				cfg.OpTimeout = tt.opTimeout
			}
			c, _ := newCluster(t, cfg)
			dc1, dc2 := d.dcs[0], d.dcs[1]
			ctx := ctxTimeout(t, 30*time.Second)
			want := 0
			if tt.warm {
				res, _, err := c.Search(ctx, usersRequest())
				if err != nil {
					t.Fatal(err)
				}
				want = len(res.Entries)
			}
			tt.fault(t, dc1)
			res, dc, err := c.Search(ctx, usersRequest())
			if err != nil || dc != dc2.URL() {
				t.Fatalf("Search = %s, %v; want the second DC's answer", dc, err)
			}
			if tt.warm && len(res.Entries) != want {
				t.Errorf("%d entries from the second DC, want all %d", len(res.Entries), want)
			}
			if s := statsOf(t, c, dc1.URL()); s.Failures != 1 {
				t.Errorf("DC1 counted %d failures, want 1", s.Failures)
			}
		})
	}
}

func TestSearchAnswerIsNotRetried(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	req := ldap.NewSearchRequest("OU=Nowhere,"+testbed.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", nil, nil)
	_, dc, err := c.Search(ctxTimeout(t, 10*time.Second), req)
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultNoSuchObject || dc != d.dcs[0].URL() {
		t.Fatalf("Search under a missing OU = %s, %v; want the first DC's 32", dc, err)
	}
	if got := d.dcs[1].Stats().Searches; got != 0 {
		t.Errorf("the answer was retried on the second DC (%d searches)", got)
	}
}

func TestSearchPagedReadsEveryPageOnOneConnection(t *testing.T) {
	t.Parallel()
	const users = 45
	d := newDomain(t, 2, adsim.Config{LoadUsers: users})
	c, _ := newCluster(t, d.config())
	ctx := ctxTimeout(t, 30*time.Second)
	req := ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=user)", []string{"sAMAccountName"}, nil)
	before := d.dcs[0].Stats().Searches
	res, dc, err := c.SearchPaged(ctx, req, 10)
	if err != nil || dc != d.dcs[0].URL() {
		t.Fatalf("SearchPaged = %s, %v; want the first DC", dc, err)
	}
	if len(res.Entries) != users {
		t.Errorf("%d entries, want %d", len(res.Entries), users)
	}
	if got := d.dcs[0].Stats().Searches - before; got < 5 {
		t.Errorf("%d search requests for %d entries in pages of 10, want at least 5", got, users)
	}
	if len(req.Controls) != 0 {
		t.Errorf("SearchPaged changed the caller's request: controls %v", req.Controls)
	}
	if s := statsOf(t, c, dc); s.Service.Open != 1 {
		t.Errorf("the paged search used %d service connections, want 1", s.Service.Open)
	}
}

func TestSearchPagesAtHandsOverEachPageAndCanBeStopped(t *testing.T) {
	t.Parallel()
	const users = 45
	d := newDomain(t, 2, adsim.Config{LoadUsers: users})
	c, _ := newCluster(t, d.config())
	dc1 := d.dcs[0]
	ctx := ctxTimeout(t, 30*time.Second)
	req := ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=user)", []string{"sAMAccountName"}, nil)

	var sizes []int
	names := map[string]bool{}
	err := c.SearchPagesAt(ctx, dc1.URL(), req, 10, func(entries []*ldap.Entry) error {
		sizes = append(sizes, len(entries))
		for _, e := range entries {
			names[e.GetAttributeValue("sAMAccountName")] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("SearchPagesAt: %v", err)
	}
	if len(names) != users || slices.Max(sizes) > 10 || len(sizes) < 5 {
		t.Errorf("%d users in pages of %v, want %d in pages of at most 10", len(names), sizes, users)
	}

	errFull := errors.New("the reader has enough")
	before := dc1.Stats().Searches
	pages := 0
	err = c.SearchPagesAt(ctx, dc1.URL(), req, 10, func([]*ldap.Entry) error {
		if pages++; pages == 2 {
			return errFull
		}
		return nil
	})
	if !errors.Is(err, ErrStopped) || !errors.Is(err, errFull) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("a search its reader stopped: %v, want ErrStopped wrapping the reader's error", err)
	}
	if got := dc1.Stats().Searches - before; got != 3 {
		t.Errorf("%d search requests, want 3: two pages and the abandon (page size 0)", got)
	}
	s := statsOf(t, c, dc1.URL())
	if s.Breaker != BreakerClosed || s.Failures != 0 || s.Service.Open != 1 {
		t.Errorf("after a stopped search: breaker %s, %d failures, %d service connections; want closed, 0, the same 1",
			s.Breaker, s.Failures, s.Service.Open)
	}
	if err := c.SearchPagesAt(ctx, dc1.URL(), req, 10, nil); err == nil {
		t.Error("SearchPagesAt without a page function: no error")
	}
}

func TestRefusedServiceBindIsAConfigurationError(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	cfg := d.config()
	cfg.BindPassword = configs.Secret(wrongPassword)
	c, logs := newCluster(t, cfg)
	ctx := ctxTimeout(t, 30*time.Second)
	for range 3 {
		_, _, err := c.Search(ctx, usersRequest())
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrServiceBind) {
			t.Fatalf("Search with a wrong service password = %v, want ErrUnavailable and ErrServiceBind", err)
		}
		var le *ldap.Error
		if errors.As(err, &le) {
			t.Fatalf("the service account's 49 looks like an answer to the caller: %v", err)
		}
		if !strings.Contains(err.Error(), "upstream.bind_password") {
			t.Errorf("error %q does not say to check upstream.bind_password", err)
		}
	}
	for _, s := range c.Stats() {
		if s.Breaker != BreakerClosed || s.Failures != 0 {
			t.Errorf("%s: breaker %s, %d failures; a wrong service password is not the DC's fault", s.URL, s.Breaker, s.Failures)
		}
		if s.Dials != 1 {
			t.Errorf("%s: %d dials for 3 searches, want 1: a refused service bind is remembered", s.URL, s.Dials)
		}
	}
	if n := countLogs(logs, zapcore.ErrorLevel, "upstream refused the service account's bind"); n != len(d.dcs) {
		t.Errorf("%d Error lines, want one per DC", n)
	}
	if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
		t.Errorf("user Bind with a wrong service password: %v; user binds do not need the service account", err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	c, _ := newCluster(t, d.config())
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Search(ctx, rootDSERequest()); err != nil {
		t.Fatal(err)
	}
	must(t, c.Close())
	must(t, c.Close())
	eventually(t, 5*time.Second, "the DC to see every connection closed", func() bool { return d.dcs[0].Stats().Open == 0 })
	if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Bind after Close = %v, want ErrUnavailable and ErrClosed", err)
	}
	if _, _, err := c.Search(ctx, rootDSERequest()); !errors.Is(err, ErrClosed) {
		t.Errorf("Search after Close = %v, want ErrClosed", err)
	}
}

func TestSearchPagedAtStaysOnItsDC(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	dc1, dc2 := d.dcs[0], d.dcs[1]
	ctx := ctxTimeout(t, 30*time.Second)
	req := ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"dsServiceName"}, nil)
	res, err := c.SearchPagedAt(ctx, dc2.URL(), req, 100)
	if err != nil {
		t.Fatalf("SearchPagedAt the second DC: %v", err)
	}
	if len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("dsServiceName") != dc2.DSServiceName() {
		t.Fatalf("rootDSE %v, want the second DC's dsServiceName %s", res.Entries, dc2.DSServiceName())
	}
	if got := dc1.Stats().Connections; got != 0 {
		t.Errorf("the first DC saw %d connections, want 0", got)
	}
	must(t, c.SetDrained(dc2.URL(), true))
	if _, err := c.SearchPagedAt(ctx, dc2.URL(), req, 100); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("SearchPagedAt a drained DC = %v, want ErrNoHealthyUpstream (no failover)", err)
	}
	if got := dc1.Stats().Connections; got != 0 {
		t.Errorf("the pinned search failed over to the first DC (%d connections)", got)
	}
	if _, err := c.SearchPagedAt(ctx, "ldaps://nowhere:636", req, 100); !errors.Is(err, ErrUnknownServer) {
		t.Errorf("SearchPagedAt an unknown DC = %v, want ErrUnknownServer", err)
	}
}
