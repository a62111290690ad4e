package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// searchBed is the listener with searches, the real bind path and the real
// upstream Cluster in front of two simulated Windows AD DCs.
type searchBed struct {
	dir     *adsim.Directory
	dcs     []*adsim.DC
	cluster *upstream.Cluster
	srv     *Server
	addr    string
	logs    *observer.ObservedLogs
	timers  *fakeTimers
}

type searchSetupT struct {
	users  int                   // bulk users to seed
	change func(*configs.Config) // changes to the gateway's configuration
	opts   []SearchOption        // more options of WithSearch
}

func newSearchBed(t *testing.T, set searchSetupT) *searchBed {
	t.Helper()
	dir, err := adsim.NewDirectory(adsim.Config{Lockout: &adsim.LockoutPolicy{}, LoadUsers: set.users})
	if err != nil {
		t.Fatal(err)
	}
	b := &searchBed{dir: dir, timers: &fakeTimers{}}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, dir.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := authTestConfig()
	for _, name := range []string{"dc1", "dc2"} {
		dc, err := dir.NewDC(adsim.DCConfig{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := dc.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = dc.Close() })
		b.dcs = append(b.dcs, dc)
		cfg.Upstream.Servers = append(cfg.Upstream.Servers, configs.Server{URL: dc.URL(), ServerName: dc.HostName()})
	}
	cfg.Upstream.CAFile = caFile
	cfg.Upstream.BindDN = testbed.Service.UPN()
	cfg.Upstream.BindPassword = configs.Secret(testbed.Service.Password)
	cfg.Upstream.OpTimeout = 10 * time.Second
	cfg.Upstream.Breaker.ProbeInterval = time.Hour
	cfg.Search.BaseDN = testbed.UsersDN
	if set.change != nil {
		set.change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	b.logs = logs
	b.cluster, err = upstream.New(cfg.Upstream, log)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := NewAuth(cfg, b.cluster, log)
	if err != nil {
		t.Fatal(err)
	}
	b.srv, err = NewServer(cfg.Listen, cfg.Upstream.BaseDN, auth, log,
		WithSearch(cfg, b.cluster, append([]SearchOption{func(o *searchOptions) { o.afterFunc = b.timers.after }}, set.opts...)...))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- b.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = b.srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		if n := b.srv.srch.openPaged(); n != 0 {
			t.Errorf("%d paged searches still open after Shutdown", n)
		}
		_ = b.cluster.Close()
		assertNoPasswordIn(t, logs)
	})
	return b
}

// assertNoPasswordIn fails when a test password shows up in a log entry.
func assertNoPasswordIn(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	secrets := []string{wrongPW, localPW}
	for _, a := range testbed.Accounts {
		secrets = append(secrets, a.Password)
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("a password is in the log: %q", line)
			}
		}
	}
}

const (
	wrongPW = "Wr0ng!search-pw"
	localPW = "L0cal!proxy-secret"
)

// dial opens a client connection, optionally bound.
func (b *searchBed) dial(t *testing.T, name, password string) *ldap.Conn {
	t.Helper()
	l, err := ldap.DialURL("ldap://" + b.addr)
	if err != nil {
		t.Fatal(err)
	}
	l.SetTimeout(waitFor)
	t.Cleanup(func() { _ = l.Close() })
	if name != "" {
		if err := l.Bind(name, password); err != nil {
			t.Fatalf("bind %s: %v", name, err)
		}
	}
	return l
}

// proxy opens a connection bound as the proxy user (the service account).
func (b *searchBed) proxy(t *testing.T) *ldap.Conn {
	t.Helper()
	return b.dial(t, testbed.Service.UPN(), testbed.Service.Password)
}

// searchLines returns the log lines of searches.
func (b *searchBed) searchLines() []observer.LoggedEntry {
	return b.logs.FilterMessage("search").All()
}

func userSearch(filter string, attrs ...string) *ldap.SearchRequest {
	return ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
}

// fakeTimers replaces time.AfterFunc for the paging idle timers: tests fire
// them instead of waiting.
type fakeTimers struct {
	mu     sync.Mutex
	timers []*fakeTimer
}

type fakeTimer struct {
	mu      sync.Mutex
	f       func()
	stopped bool
}

func (ft *fakeTimers) after(_ time.Duration, f func()) interface{ Stop() bool } {
	t := &fakeTimer{f: f}
	ft.mu.Lock()
	ft.timers = append(ft.timers, t)
	ft.mu.Unlock()
	return t
}

func (t *fakeTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// fire runs every timer not stopped, as if its time had come.
func (ft *fakeTimers) fire() {
	ft.mu.Lock()
	timers := ft.timers
	ft.timers = nil
	ft.mu.Unlock()
	for _, t := range timers {
		if t.Stop() {
			t.f()
		}
	}
}

func TestSearchRights(t *testing.T) {
	t.Parallel()
	type setup struct {
		name   string
		change func(*configs.Config)
	}
	defaults := newSearchBed(t, searchSetupT{})
	users := newSearchBed(t, searchSetupT{change: func(c *configs.Config) { c.Search.AllowUserSearch = true }})
	anon := newSearchBed(t, searchSetupT{change: func(c *configs.Config) { c.Search.AllowAnonymousSearch = true }})
	tests := []struct {
		name     string
		bed      *searchBed
		login    string
		password string
		wantCode uint16
	}{
		{"an anonymous search is refused with 50", defaults, "", "", ldap.LDAPResultInsufficientAccessRights},
		{"an anonymous search is answered with allow_anonymous_search", anon, "", "", 0},
		{"a user's search is refused with 50", defaults, testbed.JDoe.Login, testbed.JDoe.Password, ldap.LDAPResultInsufficientAccessRights},
		{"a user's search is answered with allow_user_search", users, testbed.JDoe.Login, testbed.JDoe.Password, 0},
		{"the proxy user's search is answered (by UPN)", defaults, testbed.Service.UPN(), testbed.Service.Password, 0},
		{"the proxy user's search is answered (by down-level name, other case)", defaults, `aadds\SVC-PBX`, testbed.Service.Password, 0},
		{"the proxy user's search is answered (by bare name)", defaults, "Svc-Pbx", testbed.Service.Password, 0},
		{"the proxy user's search is answered (by lower-case DN)", defaults, strings.ToLower(testbed.Service.DN()), testbed.Service.Password, 0},
		{"another user's search is refused even with allow_anonymous_search", anon, testbed.JDoe.Login, testbed.JDoe.Password, ldap.LDAPResultInsufficientAccessRights},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := tt.bed.dial(t, tt.login, tt.password)
			res, err := l.Search(userSearch("(sAMAccountName=jdoe)", "sAMAccountName"))
			if tt.wantCode != 0 {
				wantCode(t, "search", err, tt.wantCode)
				return
			}
			if err != nil || len(res.Entries) != 1 || res.Entries[0].DN != testbed.JDoe.DN() {
				t.Fatalf("search: %v, %v", res, err)
			}
		})
	}

	t.Run("a failed bind takes the rights of the earlier one away", func(t *testing.T) {
		t.Parallel()
		l := defaults.proxy(t)
		if err := l.Bind(testbed.Service.UPN(), wrongPW); !ldap.IsErrorWithCode(err, 49) {
			t.Fatalf("wrong password: %v", err)
		}
		_, err := l.Search(userSearch("(sAMAccountName=jdoe)"))
		wantCode(t, "search after a failed bind", err, ldap.LDAPResultInsufficientAccessRights)
	})
	t.Run("a rebind as another user takes the rights away", func(t *testing.T) {
		t.Parallel()
		l := defaults.proxy(t)
		if _, err := l.Search(userSearch("(sAMAccountName=jdoe)")); err != nil {
			t.Fatal(err)
		}
		if err := l.Bind(testbed.JDoe.Login, testbed.JDoe.Password); err != nil {
			t.Fatal(err)
		}
		_, err := l.Search(userSearch("(sAMAccountName=jdoe)"))
		wantCode(t, "search after rebinding as jdoe", err, ldap.LDAPResultInsufficientAccessRights)
	})
	t.Run("the rootDSE stays readable anonymously", func(t *testing.T) {
		t.Parallel()
		res, err := defaults.dial(t, "", "").Search(rootDSERequest("supportedControl"))
		if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("supportedControl") != oidPagedResults {
			t.Fatalf("rootDSE: %v, %v", res, err)
		}
	})
}

func TestPascomSearchThenBind(t *testing.T) {
	t.Parallel()
	b := newSearchBed(t, searchSetupT{})
	proxy := b.proxy(t)
	for _, a := range []testbed.Account{testbed.JDoe, testbed.SOBrien} {
		t.Run(a.Login+" is found by the proxy user and binds with the DN that came back", func(t *testing.T) {
			res, err := proxy.Search(userSearch("(sAMAccountName="+ldap.EscapeFilter(a.Login)+")", "dn"))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Entries) != 1 || res.Entries[0].DN != a.DN() {
				t.Fatalf("search for %s: %d entries, want exactly %s", a.Login, len(res.Entries), a.DN())
			}
			if n := len(res.Entries[0].Attributes); n != 0 {
				t.Errorf("asked for dn only, got %d attributes", n)
			}
			user := b.dial(t, res.Entries[0].DN, a.Password)
			who, err := user.WhoAmI(nil)
			if err != nil || who.AuthzID != "dn:"+a.DN() {
				t.Fatalf("whoami after binding with the found DN: %+v, %v", who, err)
			}
		})
	}
	t.Run("the bind with a returned DN goes through the bind path: a wrong password is 49", func(t *testing.T) {
		l := b.dial(t, "", "")
		if err := l.Bind(testbed.JDoe.DN(), wrongPW); !ldap.IsErrorWithCode(err, 49) {
			t.Fatalf("bind: %v, want 49", err)
		}
	})
	t.Run("a DN outside the base is refused with 49 without reaching AD", func(t *testing.T) {
		before := b.dcs[0].Stats().Binds + b.dcs[1].Stats().Binds
		l := b.dial(t, "", "")
		if err := l.Bind("CN=John Doe,OU=AADDC Users,DC=evil,DC=test", testbed.JDoe.Password); !ldap.IsErrorWithCode(err, 49) {
			t.Fatalf("bind: %v, want 49", err)
		}
		if after := b.dcs[0].Stats().Binds + b.dcs[1].Stats().Binds; after != before {
			t.Errorf("%d binds reached AD", after-before)
		}
	})
}

func TestSearchBaseAndScope(t *testing.T) {
	t.Parallel()
	b := newSearchBed(t, searchSetupT{})
	l := b.proxy(t)
	// The first search looks the proxy user up; the refusals need no traffic.
	if _, err := l.Search(userSearch("(sAMAccountName=jdoe)")); err != nil {
		t.Fatal(err)
	}
	before := b.dcs[0].Stats().Searches
	for _, tt := range []struct {
		name string
		base string
		code uint16
	}{
		{"a base outside the served subtree gets 32", "OU=Other,DC=evil,DC=test", ldap.LDAPResultNoSuchObject},
		{"the domain root above the served subtree gets 32", testbed.BaseDN, ldap.LDAPResultNoSuchObject},
		{"a look-alike suffix gets 32", "OU=AADDC Users,DC=evilaadds,DC=example,DC=test", ldap.LDAPResultNoSuchObject},
		{"an empty base with subtree scope gets 32", "", ldap.LDAPResultNoSuchObject},
		{"a base that is not a DN gets 34", "not a dn", ldap.LDAPResultInvalidDNSyntax},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Search(ldap.NewSearchRequest(tt.base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
			var le *ldap.Error
			if !errors.As(err, &le) || le.ResultCode != tt.code {
				t.Fatalf("search %q: %v, want %d", tt.base, err, tt.code)
			}
			if le.MatchedDN != "" {
				t.Errorf("matchedDN %q, want empty", le.MatchedDN)
			}
		})
	}
	if after := b.dcs[0].Stats().Searches; after != before {
		t.Errorf("%d refused searches reached AD", after-before)
	}
	for _, tt := range []struct {
		name  string
		base  string
		scope int
		want  int
	}{
		{"a base search of a user returns that user", testbed.JDoe.DN(), ldap.ScopeBaseObject, 1},
		{"a base search of the served subtree's root returns it", testbed.UsersDN, ldap.ScopeBaseObject, 1},
		{"a lower-case base inside the subtree is accepted", strings.ToLower(testbed.JDoe.DN()), ldap.ScopeBaseObject, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := l.Search(ldap.NewSearchRequest(tt.base, tt.scope, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"cn"}, nil))
			if err != nil || len(res.Entries) != tt.want {
				t.Fatalf("search: %v, %v", res, err)
			}
		})
	}
	t.Run("a one-level search returns the children only", func(t *testing.T) {
		res, err := l.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false, "(sAMAccountName=*)", []string{"sAMAccountName"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Entries {
			if strings.Count(e.DN, ",") != strings.Count(testbed.UsersDN, ",")+1 && e.DN != testbed.SOBrien.DN() {
				t.Errorf("%s is not a child of the users OU", e.DN)
			}
		}
		if len(res.Entries) < len(testbed.Accounts) {
			t.Errorf("%d entries, want at least the %d seeded accounts", len(res.Entries), len(testbed.Accounts))
		}
	})
	t.Run("a missing entry under the base is AD's 32", func(t *testing.T) {
		_, err := l.Search(ldap.NewSearchRequest("CN=Nobody,"+testbed.UsersDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
		wantCode(t, "search of a missing entry", err, ldap.LDAPResultNoSuchObject)
	})
}

func TestAttributeAllowList(t *testing.T) {
	t.Parallel()
	b := newSearchBed(t, searchSetupT{})
	l := b.proxy(t)
	allowed := configs.Default().Search.Attributes
	isAllowed := func(name string) bool {
		return slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, name) })
	}
	tests := []struct {
		name      string
		attrs     []string
		typesOnly bool
		want      []string // every one must come back (jdoe has them)
		wantNone  bool
	}{
		{"attributes outside the allow-list asked for by name are not returned", []string{"whenCreated", "pwdLastSet", "badPwdCount", "lockoutTime"}, false, nil, true},
		{"of a mixed list only the allowed ones come back", []string{"pwdLastSet", "mail", "badPwdCount", "telephoneNumber"}, false, []string{"mail", "telephoneNumber"}, false},
		{"no list means the allow-list", nil, false, []string{"sAMAccountName", "mail", "displayName", "memberOf", "objectGUID"}, false},
		{"* means the allow-list", []string{"*"}, false, []string{"sAMAccountName", "mail", "userAccountControl"}, false},
		{"* and + add nothing operational", []string{"*", "+"}, false, []string{"sAMAccountName"}, false},
		{"1.1 means none", []string{"1.1"}, false, nil, true},
		{"dn alone means none (the DN comes with every entry)", []string{"dn"}, false, nil, true},
		{"names are matched ignoring case", []string{"MAIL", "samaccountname"}, false, []string{"mail", "sAMAccountName"}, false},
		{"typesOnly returns the names without values", []string{"mail", "pwdLastSet"}, true, []string{"mail"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, tt.typesOnly, "(sAMAccountName=jdoe)", tt.attrs, nil)
			res, err := l.Search(req)
			if err != nil || len(res.Entries) != 1 {
				t.Fatalf("search: %v, %v", res, err)
			}
			e := res.Entries[0]
			for _, a := range e.Attributes {
				if !isAllowed(a.Name) {
					t.Errorf("%s came back although it is not on the allow-list", a.Name)
				}
				if tt.typesOnly && len(a.Values) != 0 {
					t.Errorf("typesOnly: %s came with values", a.Name)
				}
			}
			if tt.wantNone && len(e.Attributes) != 0 {
				t.Errorf("got %d attributes, want none", len(e.Attributes))
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(e.Attributes, func(a *ldap.EntryAttribute) bool { return strings.EqualFold(a.Name, w) }) {
					t.Errorf("%s did not come back", w)
				}
			}
		})
	}
	t.Run("AD is never asked for an empty attribute list when nothing is allowed", func(t *testing.T) {
		s := b.srv.srch
		for _, asked := range [][]string{{"pwdLastSet"}, {"1.1"}, {"dn"}, {"+"}} {
			if got := s.upstreamAttributes(asked); len(got) != 1 || got[0] != "1.1" {
				t.Errorf("upstreamAttributes(%q) = %q, want [1.1]", asked, got)
			}
		}
		if got := s.upstreamAttributes([]string{"memberOf;range=0-10", "memberof"}); !slices.Equal(got, []string{"memberOf;range=0-10", "memberof"}) {
			t.Errorf("options kept: %q", got)
		}
	})
}

func TestFiltersAreForwardedAsSent(t *testing.T) {
	t.Parallel()
	b := newSearchBed(t, searchSetupT{})
	l := b.proxy(t)
	direct := directConn(t, b)
	tests := []struct {
		name   string
		filter string
	}{
		{"an equality match", "(sAMAccountName=jdoe)"},
		{"the nested-group rule", "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + "))"},
		{"enabled users by the bit rule", "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"},
		{"a substring match", "(sAMAccountName=*o*)"},
		{"an escaped comma and UTF-8 in a value", "(cn=" + ldap.EscapeFilter(testbed.SOBrien.CN) + ")"},
		{"a literal star is not a wildcard", "(sAMAccountName=\\2a)"},
		{"a NUL in a value matches nothing", "(sAMAccountName=jdoe\\00)"},
		{"a control byte in a value matches nothing", "(sAMAccountName=jdoe\x01)"},
		{"an injection attempt stays one value", "(sAMAccountName=" + ldap.EscapeFilter("x)(sAMAccountName=*") + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" returns what AD returns directly", func(t *testing.T) {
			req := userSearch(tt.filter, "sAMAccountName")
			got, err := l.Search(req)
			if err != nil {
				t.Fatalf("through the gateway: %v", err)
			}
			want, err := direct.Search(userSearch(tt.filter, "sAMAccountName"))
			if err != nil {
				t.Fatalf("directly: %v", err)
			}
			if g, w := dns(got), dns(want); !slices.Equal(g, w) {
				t.Errorf("through the gateway %q, directly %q", g, w)
			}
		})
	}
	t.Run("the nested-group rule finds the members of the nested group", func(t *testing.T) {
		res, err := l.Search(userSearch("(memberOf:1.2.840.113556.1.4.1941:="+testbed.PBXUsersDN+")", "1.1"))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []testbed.Account{testbed.JDoe, testbed.ASmith, testbed.SOBrien} {
			if !slices.Contains(dns(res), a.DN()) {
				t.Errorf("%s is not among %q", a.Login, dns(res))
			}
		}
	})
	t.Run("the log line shows control bytes escaped", func(t *testing.T) {
		found := false
		for _, e := range b.searchLines() {
			f, _ := e.ContextMap()["filter"].(string)
			if strings.ContainsAny(f, "\x00\x01") {
				t.Errorf("a raw control byte in a logged filter: %q", f)
			}
			found = found || f == `(sAMAccountName=jdoe\01)`
		}
		if !found {
			t.Error(`no search line with the filter (sAMAccountName=jdoe\01)`)
		}
	})
}

// directConn is a connection to the simulated dc1 bound as the service account.
func directConn(t *testing.T, b *searchBed) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(b.dcs[0].URL(), ldap.DialWithTLSConfig(b.dcs[0].ClientTLSConfig()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Bind(testbed.Service.DN(), testbed.Service.Password); err != nil {
		t.Fatal(err)
	}
	return c
}

func dns(res *ldap.SearchResult) []string {
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.DN)
	}
	slices.Sort(out)
	return out
}

func TestReencodeFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string // as DecompileFilter would give it
		want    string
		wantErr bool
	}{
		{"a plain filter is unchanged", "(sAMAccountName=jdoe)", "(sAMAccountName=jdoe)", false},
		{"an extensible match with a rule is unchanged", "(memberOf:1.2.840.113556.1.4.1941:=CN=PBX-Users,OU=AADDC Users,DC=x)", "(memberOf:1.2.840.113556.1.4.1941:=CN=PBX-Users,OU=AADDC Users,DC=x)", false},
		{"raw control bytes are escaped", "(cn=a\x01b\x1f\x7f)", `(cn=a\01b\1f\7f)`, false},
		{"an escaped NUL stays escaped", `(cn=a\00b)`, `(cn=a\00b)`, false},
		{"escaped UTF-8 becomes readable text", `(cn=Se\c3\a1n)`, "(cn=Seán)", false},
		{"invalid UTF-8 stays escaped", `(cn=\ff\fe)`, `(cn=\ff\fe)`, false},
		{"a right-to-left override is escaped", "(cn=a\u202eb)", `(cn=a\e2\80\aeb)`, false},
		{"special characters in values stay escaped", `(cn=\28\29\2a\5c)`, `(cn=\28\29\2a\5c)`, false},
		{"substrings keep their parts", "(cn=a*b*c)", "(cn=a*b*c)", false},
		{"present keeps its star", "(cn=*)", "(cn=*)", false},
		{"and, or and not nest", "(&(|(a=1)(b>=2))(!(c<=3))(d~=4))", "(&(|(a=1)(b>=2))(!(c<=3))(d~=4))", false},
		{"an attribute option is kept", "(userCertificate;binary=x)", "(userCertificate;binary=x)", false},
		{"an attribute description that is not one is refused", `(c\2an=x)`, "", true},
		{"an attribute with a space is refused", "(c n=x)", "", true},
		{"a malformed filter is refused", "(cn=x", "", true},
		{"a matching rule that is not an OID or name is refused", "(cn:1.2..3:=x)", "", true},
		{"dnAttributes (or a rule named dn) is refused", "(cn:dn:=x)", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := reencodeFilter(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errBadFilter) {
					t.Fatalf("reencodeFilter(%q) = %q, %v; want errBadFilter", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("reencodeFilter(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzReencodeFilter: whatever a client sends, the forwarded filter is the
// same filter, printable, or refused.
func FuzzReencodeFilter(f *testing.F) {
	for _, s := range []string{
		"(sAMAccountName=jdoe)", "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=G,DC=x))",
		"(cn=a*b*)", "(cn=\x00)", `(cn=\00)`, "(|(a=1)(!(b=2)))", "(cn:dn:=x)", "(0:dn)", "(:1.2.3:=x)", "(cn~=x)",
		`(cn=\ff)`, "(cn=a)(b=c)", "(x=\u202e)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// s stands for a client's filter, which gldap hands over decompiled.
		sent, err := ldap.CompileFilter(s)
		if err != nil {
			return
		}
		dec, err := ldap.DecompileFilter(sent)
		if err != nil {
			return
		}
		p, err := ldap.CompileFilter(dec)
		if err != nil {
			return
		}
		out, err := reencodeFilter(dec)
		if err != nil {
			if !errors.Is(err, errBadFilter) {
				t.Fatalf("reencodeFilter(%q): %v is not errBadFilter", dec, err)
			}
			return
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("reencodeFilter(%q) = %q holds a control character", dec, out)
			}
		}
		q, err := ldap.CompileFilter(out)
		if err != nil {
			t.Fatalf("reencodeFilter(%q) = %q does not compile: %v", dec, out, err)
		}
		if string(q.Bytes()) != string(p.Bytes()) {
			t.Fatalf("reencodeFilter(%q) = %q is another filter", dec, out)
		}
	})
}

func TestUnpagedSearchesPastADsLimit(t *testing.T) {
	t.Parallel()
	b := newSearchBed(t, searchSetupT{users: 1200})
	l := b.proxy(t)
	res, err := l.Search(ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=user)", []string{"sAMAccountName"}, nil))
	wantCode(t, "an unpaged search of 1200 users", err, ldap.LDAPResultSizeLimitExceeded)
	if len(res.Entries) != adsim.MaxPageSize {
		t.Errorf("%d entries, want the %d AD returned", len(res.Entries), adsim.MaxPageSize)
	}
	t.Run("a size limit is kept", func(t *testing.T) {
		res, err := l.Search(ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 5, 0, false, "(objectClass=user)", []string{"sAMAccountName"}, nil))
		wantCode(t, "a search with size limit 5", err, ldap.LDAPResultSizeLimitExceeded)
		if len(res.Entries) != 5 {
			t.Errorf("%d entries, want 5", len(res.Entries))
		}
	})
}

// pagedRequest is a search of the bulk users.
func pagedRequest() *ldap.SearchRequest {
	return ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=user)", []string{"sAMAccountName"}, nil)
}

// page asks for one page with cookie and returns the entries' count, the
// cookie of the response and the error.
func page(l *ldap.Conn, req *ldap.SearchRequest, size uint32, cookie []byte) (int, []byte, error) {
	p := ldap.NewControlPaging(size)
	p.SetCookie(cookie)
	r := *req
	r.Controls = []ldap.Control{p}
	res, err := l.Search(&r)
	if err != nil {
		return 0, nil, err
	}
	rp, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
	if !ok {
		return len(res.Entries), nil, errors.New("no paging control in the response")
	}
	return len(res.Entries), rp.Cookie, nil
}

func TestPagedSearches(t *testing.T) {
	t.Parallel()
	const users = 2500
	b := newSearchBed(t, searchSetupT{users: users, change: func(c *configs.Config) { c.Search.Paging.MaxOpen = 3 }})
	open := func() int { return b.srv.srch.openPaged() }
	pinned := func() int { return b.cluster.Stats()[0].Pinned + b.cluster.Stats()[1].Pinned }

	t.Run("a paged search returns every entry once", func(t *testing.T) {
		res, err := b.proxy(t).SearchWithPaging(pagedRequest(), 200)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range res.Entries {
			if seen[e.DN] {
				t.Fatalf("%s came twice", e.DN)
			}
			seen[e.DN] = true
		}
		if len(seen) != users {
			t.Errorf("%d entries, want %d", len(seen), users)
		}
		if open() != 0 || pinned() != 0 {
			t.Errorf("after the last page: %d open, %d pinned", open(), pinned())
		}
	})
	t.Run("pages larger than AD's maximum come in pages of 1000", func(t *testing.T) {
		l := b.proxy(t)
		var sizes []int
		var cookie []byte
		for {
			n, next, err := page(l, pagedRequest(), 5000, cookie)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, n)
			if len(next) == 0 {
				break
			}
			cookie = next
		}
		if !slices.Equal(sizes, []int{1000, 1000, 500}) {
			t.Errorf("page sizes %v, want [1000 1000 500]", sizes)
		}
	})
	t.Run("the gateway's cookie is its own", func(t *testing.T) {
		l := b.proxy(t)
		_, cookie, err := page(l, pagedRequest(), 100, nil)
		if err != nil || len(cookie) != cookieBytes {
			t.Fatalf("first page: cookie %x, %v", cookie, err)
		}
		// adsim's cookies are 8-byte counters: the client never sees one.
		if _, _, err := page(l, pagedRequest(), 100, cookie[:8]); !ldap.IsErrorWithCode(err, 53) {
			t.Errorf("a made-up cookie: %v, want 53", err)
		}
		if _, _, err := page(b.proxy(t), pagedRequest(), 100, cookie); !ldap.IsErrorWithCode(err, 53) {
			t.Errorf("the cookie on another connection: %v, want 53", err)
		}
		other := pagedRequest()
		other.Filter = "(sAMAccountName=user1*)"
		if _, _, err := page(l, other, 100, cookie); !ldap.IsErrorWithCode(err, 53) {
			t.Errorf("the cookie with another search: %v, want 53", err)
		}
		if _, _, err := page(l, pagedRequest(), 0, cookie); err != nil {
			t.Errorf("abandon with page size 0: %v", err)
		}
		if open() != 0 {
			t.Errorf("%d open after the abandon", open())
		}
	})
	t.Run("a new paged search on the connection abandons the previous one", func(t *testing.T) {
		l := b.proxy(t)
		_, first, err := page(l, pagedRequest(), 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, second, err := page(l, pagedRequest(), 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		if open() != 1 {
			t.Errorf("%d open, want the second only", open())
		}
		if _, _, err := page(l, pagedRequest(), 100, first); !ldap.IsErrorWithCode(err, 53) {
			t.Errorf("the abandoned search's cookie: %v, want 53", err)
		}
		if _, _, err := page(l, pagedRequest(), 100, second); err != nil {
			t.Errorf("the second search's next page: %v", err)
		}
		if err := l.Bind(testbed.Service.UPN(), testbed.Service.Password); err != nil {
			t.Fatal(err)
		}
		if open() != 0 || pinned() != 0 {
			t.Errorf("after a rebind: %d open, %d pinned", open(), pinned())
		}
	})
	t.Run("a disconnect releases the upstream connection", func(t *testing.T) {
		l, err := ldap.DialURL("ldap://" + b.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Bind(testbed.Service.UPN(), testbed.Service.Password); err != nil {
			t.Fatal(err)
		}
		if _, _, err := page(l, pagedRequest(), 100, nil); err != nil {
			t.Fatal(err)
		}
		if open() != 1 || pinned() != 1 {
			t.Fatalf("%d open, %d pinned; want 1", open(), pinned())
		}
		_ = l.Close()
		waitUntil(t, "the paged search ends with its client", func() bool { return open() == 0 && pinned() == 0 })
	})
	t.Run("an idle paged search is released after the idle timeout", func(t *testing.T) {
		l := b.proxy(t)
		_, cookie, err := page(l, pagedRequest(), 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.timers.fire()
		if open() != 0 || pinned() != 0 {
			t.Fatalf("after the idle timeout: %d open, %d pinned", open(), pinned())
		}
		if _, _, err := page(l, pagedRequest(), 100, cookie); !ldap.IsErrorWithCode(err, 53) {
			t.Errorf("the expired cookie: %v, want 53", err)
		}
	})
	t.Run("max_open bounds the paged searches of all clients with 51", func(t *testing.T) {
		var conns []*ldap.Conn
		for range 3 {
			l := b.proxy(t)
			if _, _, err := page(l, pagedRequest(), 100, nil); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, l)
		}
		late := b.proxy(t)
		if _, _, err := page(late, pagedRequest(), 100, nil); !ldap.IsErrorWithCode(err, ldap.LDAPResultBusy) {
			t.Fatalf("a fourth paged search: %v, want 51", err)
		}
		if _, err := late.Search(userSearch("(sAMAccountName=jdoe)")); err != nil {
			t.Errorf("an unpaged search meanwhile: %v", err)
		}
		conns[0].Close()
		waitUntil(t, "a slot frees", func() bool { return open() == 2 })
		if _, _, err := page(late, pagedRequest(), 100, nil); err != nil {
			t.Errorf("the fourth paged search after one ended: %v", err)
		}
	})
}

func TestSearchesWhenTheDCsFail(t *testing.T) {
	t.Parallel()
	b := newSearchBed(t, searchSetupT{change: func(c *configs.Config) {
		c.Upstream.Breaker.Failures = 1
		c.Upstream.Breaker.ProbeInterval = 50 * time.Millisecond
	}})
	l := b.proxy(t)
	if _, err := l.Search(userSearch("(sAMAccountName=jdoe)")); err != nil {
		t.Fatal(err)
	}
	for _, dc := range b.dcs {
		if err := dc.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	_, err := l.Search(userSearch("(sAMAccountName=jdoe)"))
	wantCode(t, "a search with every DC down", err, ldap.LDAPResultUnavailable)
	_, err = l.Search(userSearch("(sAMAccountName=jdoe)"))
	wantCode(t, "a second search with the breakers open", err, ldap.LDAPResultUnavailable)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refusals took %s", took)
	}
	if _, err := l.Search(rootDSERequest()); err != nil {
		t.Errorf("the rootDSE while the DCs are down: %v", err)
	}
	for _, dc := range b.dcs {
		if err := dc.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "a search succeeds once the DCs are back", func() bool {
		_, err := l.Search(userSearch("(sAMAccountName=jdoe)"))
		return err == nil
	})
}

func TestABusyPoolIs51(t *testing.T) {
	t.Parallel()
	b := newSearchBed(t, searchSetupT{change: func(c *configs.Config) {
		c.Upstream.Servers = c.Upstream.Servers[:1]
		c.Upstream.Pool.ServiceSize = 1
		c.Upstream.Pool.WaitTimeout = 50 * time.Millisecond
	}})
	slow, fast := b.proxy(t), b.proxy(t)
	if _, err := slow.Search(userSearch("(sAMAccountName=jdoe)")); err != nil {
		t.Fatal(err) // warm: the service connection exists
	}
	before := b.dcs[0].Stats().Searches
	b.dcs[0].SetDelay(2 * time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := slow.Search(userSearch("(sAMAccountName=jdoe)"))
		done <- err
	}()
	waitUntil(t, "the slow search holds the only connection", func() bool { return b.dcs[0].Stats().Searches > before })
	_, err := fast.Search(userSearch("(sAMAccountName=asmith)"))
	wantCode(t, "a search while the pool is busy", err, ldap.LDAPResultBusy)
	if err := <-done; err != nil {
		t.Errorf("the slow search: %v", err)
	}
}

func TestTheProxyUsersLocalSecret(t *testing.T) {
	t.Parallel()
	const proxyName = "pbx-proxy" // not an AD account
	b := newSearchBed(t, searchSetupT{change: func(c *configs.Config) {
		c.Search.ProxyUser = proxyName
		c.Search.ProxyPassword = localPW
	}})
	binds := func() int64 { return b.dcs[0].Stats().Binds + b.dcs[1].Stats().Binds }
	// Warm the service pool, whose own bind is not the proxy user's.
	if _, err := b.dial(t, testbed.JDoe.Login, testbed.JDoe.Password).Search(rootDSERequest()); err != nil {
		t.Fatal(err)
	}
	before := binds()
	tests := []struct {
		name, login, password string
		wantCode              uint16
	}{
		{"the configured name with the secret binds", proxyName, localPW, 0},
		{"another case of the name binds", "PBX-Proxy", localPW, 0},
		{"the down-level name binds", `AADDS\pbx-proxy`, localPW, 0},
		{"the UPN in the domain binds", "pbx-proxy@aadds.example.test", localPW, 0},
		{"a wrong secret is 49", proxyName, wrongPW, 49},
		{"an empty secret is 49", proxyName, "", 49},
		{"the secret with a trailing space is 49", proxyName, localPW + " ", 49},
	}
	for _, tt := range tests {
		t.Run(tt.name+" without reaching AD", func(t *testing.T) {
			l := b.dial(t, "", "")
			_, err := l.SimpleBind(&ldap.SimpleBindRequest{Username: tt.login, Password: tt.password, AllowEmptyPassword: true})
			if tt.wantCode != 0 {
				wantCode(t, "bind", err, tt.wantCode)
				_, err := l.Search(userSearch("(sAMAccountName=jdoe)"))
				wantCode(t, "search after the refused bind", err, ldap.LDAPResultInsufficientAccessRights)
				return
			}
			if err != nil {
				t.Fatalf("bind: %v", err)
			}
			res, err := l.Search(userSearch("(sAMAccountName=jdoe)", "dn"))
			if err != nil || len(res.Entries) != 1 {
				t.Fatalf("search as the local proxy user: %v, %v", res, err)
			}
		})
	}
	if after := binds(); after != before {
		t.Errorf("%d proxy binds reached AD", after-before)
	}
	t.Run("the service account's AD password is not the proxy user's", func(t *testing.T) {
		l := b.dial(t, testbed.Service.UPN(), testbed.Service.Password)
		_, err := l.Search(userSearch("(sAMAccountName=jdoe)"))
		wantCode(t, "search as svc-pbx when the proxy user is local", err, ldap.LDAPResultInsufficientAccessRights)
	})
	t.Run("the audit line says the local secret decided", func(t *testing.T) {
		var reasons []string
		for _, e := range b.logs.FilterMessage("bind").All() {
			if e.ContextMap()["login"] == proxyName {
				reasons = append(reasons, fmt.Sprint(e.ContextMap()["reason"]))
			}
		}
		if !slices.Contains(reasons, string(ReasonLocalProxy)) || !slices.Contains(reasons, string(ReasonLocalProxyRefused)) {
			t.Errorf("audit reasons for %s: %q", proxyName, reasons)
		}
	})
}

func TestTheProxyUsersLocalSecretSharesTheClientsRateOfFailedBinds(t *testing.T) {
	t.Parallel()
	const proxyName = "pbx-proxy"
	b := newSearchBed(t, searchSetupT{change: func(c *configs.Config) {
		c.Search.ProxyUser = proxyName
		c.Search.ProxyPassword = localPW
		c.Lockout.ClientRate, c.Lockout.ClientBurst = 0.001, 2 // two failures, then none for 1000s
	}})
	bind := func(login, password string) error {
		_, err := b.dial(t, "", "").SimpleBind(&ldap.SimpleBindRequest{Username: login, Password: password, AllowEmptyPassword: true})
		return err
	}
	if err := bind(proxyName, localPW); err != nil {
		t.Fatalf("the secret before any failure: %v", err)
	}
	wantCode(t, "an empty secret (not a guess)", bind(proxyName, ""), ldap.LDAPResultInvalidCredentials)
	wantCode(t, "the first wrong secret", bind(proxyName, wrongPW), ldap.LDAPResultInvalidCredentials)
	wantCode(t, "the second wrong secret", bind(proxyName, wrongPW+"2"), ldap.LDAPResultInvalidCredentials)
	wantCode(t, "a third guess past the client's rate", bind(proxyName, wrongPW+"3"), ldap.LDAPResultBusy)
	wantCode(t, "the right secret from the same address, still past its rate", bind(proxyName, localPW), ldap.LDAPResultBusy)
	// The same bucket holds for the AD path: this address has used it up.
	wantCode(t, "a user's bind from the same address", bind(testbed.JDoe.Login, testbed.JDoe.Password), ldap.LDAPResultBusy)
	var reasons []string
	for _, e := range b.logs.FilterMessage("bind").FilterFieldKey("reason").All() { // the audit lines
		reasons = append(reasons, fmt.Sprint(e.ContextMap()["reason"]))
	}
	want := []string{"local_proxy", "local_proxy_refused", "local_proxy_refused", "local_proxy_refused", "rate_limited", "rate_limited", "rate_limited"}
	if !slices.Equal(reasons, want) {
		t.Errorf("audit reasons %q, want %q", reasons, want)
	}
}

func TestOneLogLinePerSearch(t *testing.T) {
	t.Parallel()
	b := newSearchBed(t, searchSetupT{})
	l := b.proxy(t)
	if _, err := l.Search(userSearch("(sAMAccountName=jdoe)", "mail")); err != nil {
		t.Fatal(err)
	}
	_, _ = b.dial(t, "", "").Search(userSearch("(sAMAccountName=jdoe)"))
	lines := b.searchLines()
	if len(lines) != 2 {
		t.Fatalf("%d search lines, want 2", len(lines))
	}
	for i, want := range []struct {
		result  int64
		entries int64
		user    string
	}{{0, 1, testbed.Service.DN()}, {50, 0, ""}} {
		m := lines[i].ContextMap()
		for _, k := range []string{"client", "conn_id", "base", "scope", "filter", "entries", "result", "dur"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks %s: %v", i, k, m)
			}
		}
		if m["result"] != want.result || m["entries"] != want.entries || m["user"] != want.user ||
			m["base"] != testbed.UsersDN || m["filter"] != "(sAMAccountName=jdoe)" {
			t.Errorf("line %d: %v", i, m)
		}
	}
}
