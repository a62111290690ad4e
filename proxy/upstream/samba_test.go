//go:build integration

// Tests of the Cluster against the real Samba AD test bed (integration/samba/up.sh),
// directly and through fault proxies. They fail, never skip, when the test bed does
// not answer.
package upstream

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/faultproxy"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// sambaConfig is an upstream configuration for the test bed's DCs at urls (in
// order), verified with the DCs' names.
func sambaConfig(urls ...string) configs.Upstream {
	names := map[int]string{0: testbed.DC1Name, 1: testbed.DC2Name}
	cfg := configs.Default().Upstream
	for i, u := range urls {
		cfg.Servers = append(cfg.Servers, configs.Server{URL: u, ServerName: names[i]})
	}
	cfg.CAFile = testbed.CAFile()
	cfg.BindDN = testbed.Service.DN()
	cfg.BindPassword = configs.Secret(testbed.Service.Password)
	cfg.BaseDN = testbed.BaseDN
	cfg.UserBaseDN = testbed.UsersDN
	cfg.Breaker.ProbeInterval = time.Hour
	return cfg
}

// faultProxy relays to a test bed DC's LDAPS port; closed when the test ends.
func faultProxy(t *testing.T, dcURL string) *faultproxy.Proxy {
	t.Helper()
	p := faultproxy.New(strings.TrimPrefix(dcURL, "ldaps://"))
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("start fault proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestSambaBindsSearchesAndReusesConnections(t *testing.T) {
	c, _ := newCluster(t, sambaConfig(testbed.DC1URL, testbed.DC2URL))
	ctx := ctxTimeout(t, time.Minute)
	if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
		t.Fatalf("Bind jdoe on the test bed: %v (start it: sudo integration/samba/up.sh)", err)
	}
	_, err := c.Bind(ctx, testbed.JDoe.DN(), wrongPassword)
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultInvalidCredentials || !strings.Contains(le.Err.Error(), "data 52e") {
		t.Errorf("wrong password = %v, want 49 data 52e", err)
	}
	before := statsOf(t, c, testbed.DC1URL)
	for i := range 50 {
		if _, err := c.Bind(ctx, testbed.ASmith.DN(), testbed.ASmith.Password); err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
	}
	after := statsOf(t, c, testbed.DC1URL)
	if after.Handshakes != before.Handshakes {
		t.Errorf("50 binds made %d TLS handshakes, want 0", after.Handshakes-before.Handshakes)
	}
	req := ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, 0, false,
		"(sAMAccountName="+ldap.EscapeFilter(testbed.JDoe.Login)+")", []string{"sAMAccountName"}, nil)
	res, dc, err := c.Search(ctx, req)
	if err != nil || dc != testbed.DC1URL || len(res.Entries) != 1 {
		t.Fatalf("Search jdoe = %v entries from %s, %v; want 1 from DC1", res, dc, err)
	}
	// A subtree search from the domain root gets referrals on Samba: not followed, dropped.
	root := ldap.NewSearchRequest(testbed.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(sAMAccountName="+testbed.JDoe.Login+")", []string{"sAMAccountName"}, nil)
	res, _, err = c.SearchPaged(ctx, root, 500)
	if err != nil || len(res.Entries) != 1 || len(res.Referrals) != 0 {
		t.Fatalf("paged search from the root = %v, %v; want 1 entry and no referrals", res, err)
	}
	dse, err := c.SearchPagedAt(ctx, testbed.DC2URL, ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"dnsHostName"}, nil), 100)
	if err != nil || len(dse.Entries) != 1 || !strings.EqualFold(dse.Entries[0].GetAttributeValue("dnsHostName"), testbed.DC2Name) {
		t.Fatalf("DC2's rootDSE = %v, %v", dse, err)
	}
	t.Logf("DC1 stats: %+v", statsOf(t, c, testbed.DC1URL))
}

func TestSambaFailover(t *testing.T) {
	p1, p2 := faultProxy(t, testbed.DC1URL), faultProxy(t, testbed.DC2URL)
	cfg := sambaConfig("ldaps://"+p1.Addr(), "ldaps://"+p2.Addr())
	cfg.OpTimeout = time.Second
	c, _ := newCluster(t, cfg)
	ctx := ctxTimeout(t, time.Minute)
	if _, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
		t.Fatalf("Bind: %v", err)
	}

	t.Run("a connection reset while idle is replaced on the same DC", func(t *testing.T) {
		must(t, p1.SetFault(faultproxy.Reset()))
		must(t, p1.SetFault(faultproxy.None()))
		res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
		if err != nil || res.DC != cfg.Servers[0].URL || !res.NewConn {
			t.Fatalf("Bind after a reset = %+v, %v; want success on a new connection to DC1", res, err)
		}
	})
	t.Run("a bind written to a hung DC is not retried on the other", func(t *testing.T) {
		must(t, p1.SetFault(faultproxy.Blackhole()))
		defer func() { must(t, p1.SetFault(faultproxy.None())) }()
		accepted := p2.Accepted()
		_, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Bind on a hung DC = %v, want ErrUnavailable", err)
		}
		if got := p2.Accepted() - accepted; got != 0 {
			t.Errorf("DC2 got %d connections: the written bind was retried", got)
		}
	})
	t.Run("a refusing DC is skipped until a probe succeeds", func(t *testing.T) {
		must(t, p1.SetFault(faultproxy.Refuse()))
		for range cfg.Breaker.Failures + 2 {
			res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
			if err != nil || res.DC != cfg.Servers[1].URL {
				t.Fatalf("Bind with DC1 refusing = %+v, %v; want success on DC2", res, err)
			}
		}
		if s := statsOf(t, c, cfg.Servers[0].URL); s.Breaker != BreakerOpen {
			t.Fatalf("DC1's breaker is %s, want open", s.Breaker)
		}
		must(t, p1.SetFault(faultproxy.None()))
		c.probeAll(ctx)
		res, err := c.Bind(ctx, testbed.JDoe.DN(), testbed.JDoe.Password)
		if err != nil || res.DC != cfg.Servers[0].URL {
			t.Fatalf("Bind after DC1 recovered = %+v, %v; want DC1", res, err)
		}
	})
}
