package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

var authTestClient = Client{Addr: "192.0.2.10:40000", ConnID: 7}

func newFakeAuth(t *testing.T, dir Directory, log *zap.Logger, opts ...AuthOption) *Auth {
	t.Helper()
	a, err := NewAuth(authTestConfig(), dir, log, opts...)
	if err != nil {
		t.Fatalf("NewAuth: %v", err)
	}
	return a
}

func TestBindDecisions(t *testing.T) {
	t.Parallel()
	tenKB := strings.Repeat("j", 10<<10)
	tests := []struct {
		name         string
		login        string
		password     string
		wantCode     int
		wantReason   Reason
		wantADCode   string
		wantDN       string
		wantSearches int
		wantBinds    int
	}{
		{"an empty name and password is an anonymous bind without traffic", "", "", 0, ReasonAnonymous, "", "", 0, 0},
		{"an empty name with a password is refused without traffic", "", "Passw0rd!jdoe", 49, ReasonInvalidLogin, "", "", 0, 0},
		{"a name with an empty password is refused without traffic", "jdoe", "", 49, ReasonEmptyPassword, "", "", 0, 0},
		{"a name with a whitespace password is refused without traffic", "jdoe", " \t ", 49, ReasonEmptyPassword, "", "", 0, 0},
		{"a DN with an empty password is refused without traffic", testbed.JDoe.DN(), "", 49, ReasonEmptyPassword, "", "", 0, 0},
		{"a whitespace name with an empty password is refused without traffic", "  ", "", 49, ReasonEmptyPassword, "", "", 0, 0},
		{"jdoe with the right password succeeds with the canonical DN", "jdoe", testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN(), 1, 1},
		{"JDoe by UPN succeeds", "JDoe@aadds.example.test", testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN(), 1, 1},
		{"jdoe by down-level name succeeds", `AADDS\JDOE`, testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN(), 1, 1},
		{"jdoe by lower-case DN succeeds with the DN as AD spells it", strings.ToLower(testbed.JDoe.DN()), testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN(), 1, 1},
		{"sobrien by DN with an escaped comma and a UTF-8 password succeeds", testbed.SOBrien.DN(), testbed.SOBrien.Password, 0, ReasonOK, "", testbed.SOBrien.DN(), 1, 1},
		{"a wrong password is refused with AD's sub-code logged", "jdoe", "wrong", 49, ReasonADRefused, "52e", "", 1, 1},
		{"a disabled account is refused like a wrong password", "cwhite", testbed.CWhite.Password, 49, ReasonADRefused, "533", "", 1, 1},
		{"an account that must change its password is refused", "dmust", testbed.DMust.Password, 49, ReasonADRefused, "773", "", 1, 1},
		{"an expired account is refused", "eexpired", testbed.EExpired.Password, 49, ReasonADRefused, "701", "", 1, 1},
		{"an expired password is refused", "gpwexpired", testbed.GPwExpired.Password, 49, ReasonADRefused, "532", "", 1, 1},
		{"a locked account is refused", "hlocked", testbed.HLocked.Password, 49, ReasonADRefused, "775", "", 1, 1},
		{"an unknown user is refused without a bind", "nobody", "whatever", 49, ReasonUnknownUser, "", "", 1, 0},
		{"a group's DN is refused without a bind", testbed.PBXUsersDN, "whatever", 49, ReasonUnknownUser, "", "", 1, 0},
		{"a DN outside the base is refused without traffic", "CN=John Doe,OU=AADDC Users,DC=contoso,DC=com", testbed.JDoe.Password, 49, ReasonOutsideBase, "", "", 0, 0},
		{"a star is refused without traffic", "*", "x", 49, ReasonInvalidLogin, "", "", 0, 0},
		{"a wildcard is refused without traffic", "j*", "x", 49, ReasonInvalidLogin, "", "", 0, 0},
		{"a filter injection is refused without traffic", "jdoe)(|(sAMAccountName=*", "x", 49, ReasonInvalidLogin, "", "", 0, 0},
		{"a NUL is refused without traffic", "jdoe\x00", testbed.JDoe.Password, 49, ReasonInvalidLogin, "", "", 0, 0},
		{"a 10 kB name is refused without traffic", tenKB, "x", 49, ReasonInvalidLogin, "", "", 0, 0},
		{"a star UPN matches nobody", "*@aadds.example.test", "x", 49, ReasonUnknownUser, "", "", 1, 0},
		{"another NetBIOS domain is refused without traffic", `EVIL\jdoe`, testbed.JDoe.Password, 49, ReasonInvalidLogin, "", "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := newFakeDir()
			a := newFakeAuth(t, dir, nil)
			d := a.Decide(context.Background(), authTestClient, tt.login, tt.password)
			if d.Code != tt.wantCode || d.Reason != tt.wantReason || d.ADCode != tt.wantADCode || d.DN != tt.wantDN {
				t.Errorf("Decide = code %d reason %s ad_code %q dn %q (err %v); want %d %s %q %q",
					d.Code, d.Reason, d.ADCode, d.DN, d.Err, tt.wantCode, tt.wantReason, tt.wantADCode, tt.wantDN)
			}
			wantDiag := ""
			if tt.wantCode != 0 {
				wantDiag = DiagInvalidCredentials
			}
			if d.Diagnostic != wantDiag {
				t.Errorf("Diagnostic = %q, want %q", d.Diagnostic, wantDiag)
			}
			if s, b := dir.counts(); s != tt.wantSearches || b != tt.wantBinds {
				t.Errorf("upstream searches, binds = %d, %d; want %d, %d", s, b, tt.wantSearches, tt.wantBinds)
			}
			if out := a.Bind(context.Background(), authTestClient, tt.login, tt.password); out != d.BindOutcome {
				t.Errorf("Bind = %+v, Decide = %+v", out, d.BindOutcome)
			}
		})
	}
}

func TestEmptyPasswordNeverReachesTheAccount(t *testing.T) {
	t.Parallel()
	// The fake answers an empty password with success, as Windows AD does, so
	// only the guard stands between these binds and a success.
	dir := newFakeDir()
	a := newFakeAuth(t, dir, nil)
	for _, login := range []string{"jdoe", "JDoe", "jdoe@aadds.example.test", `AADDS\jdoe`, testbed.JDoe.DN()} {
		for _, pw := range []string{"", " ", "\t", "  \n "} {
			if out := a.Bind(context.Background(), authTestClient, login, pw); out.Code != 49 || out.DN != "" {
				t.Errorf("Bind(%q, %q) = %+v, want 49", login, pw, out)
			}
		}
	}
	if n := dir.bindsOn(testbed.JDoe.DN()); n != 0 {
		t.Errorf("binds on jdoe = %d, want 0", n)
	}
	if s, b := dir.counts(); s != 0 || b != 0 {
		t.Errorf("upstream searches, binds = %d, %d; want none", s, b)
	}
}

func TestHostileLoginsNeverSucceedAndReachTheDirectoryOnlyEscaped(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newFakeAuth(t, dir, nil)
	hostile := []string{
		"*", "j*", "*jdoe", "jdoe*", "jdoe)(|(sAMAccountName=*", "a)(x=*", "a)(x", "jdoe)", "(jdoe",
		"*@aadds.example.test", "j*@aadds.example.test", "jdoe)(x=*)@aadds.example.test", `jdoe\2a`, `j\*`,
		"jdoe\x00", "\x00", "jd\x00oe@aadds.example.test", strings.Repeat("a", 10<<10),
		`CN=*,OU=AADDC Users,DC=aadds,DC=example,DC=test`, `CN=J*,OU=AADDC Users,DC=aadds,DC=example,DC=test`,
		`AADDS\*`, `AADDS\jdoe)(x=*`,
	}
	for _, name := range hostile {
		// Even with the right password of the account a wildcard would find first.
		for _, pw := range []string{"x", testbed.JDoe.Password} {
			if out := a.Bind(context.Background(), authTestClient, name, pw); out.Code == 0 || out.DN != "" {
				t.Errorf("Bind(%q) = %+v, want a refusal", LogSafe(name), out)
			}
		}
	}
	userFilter, err := ldap.CompileFilter(testUserFilter)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dir.recordedFilters() {
		if f == testUserFilter {
			continue // a base search on a DN: nothing typed is in it
		}
		p, err := ldap.CompileFilter(f)
		if err != nil {
			t.Fatalf("filter %q does not compile: %v", f, err)
		}
		// Exactly the user filter and one equality assertion: no wildcard, no
		// extra item, no presence test made of the typed name.
		if p.Tag != ldap.FilterAnd || len(p.Children) != 2 || p.Children[0].Tag != userFilter.Tag ||
			len(p.Children[0].Children) != len(userFilter.Children) || p.Children[1].Tag != ldap.FilterEqualityMatch {
			t.Errorf("filter %q is not (&<user filter>(attr=value))", f)
		}
		if strings.ContainsRune(f, 0) {
			t.Errorf("filter %q holds a raw NUL", f)
		}
	}
	if _, b := dir.counts(); b != 0 {
		t.Errorf("upstream binds = %d, want 0: no hostile login resolved to a user", b)
	}
}

func TestEveryRefusalHasTheSameDiagnostic(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newFakeAuth(t, dir, nil)
	var diags = map[string][]string{}
	for _, c := range []struct{ name, pw string }{
		{"jdoe", "wrong"}, {"nobody", "x"}, {"cwhite", testbed.CWhite.Password}, {"dmust", testbed.DMust.Password},
		{"eexpired", testbed.EExpired.Password}, {"gpwexpired", testbed.GPwExpired.Password},
		{"hlocked", testbed.HLocked.Password}, {"jdoe", ""}, {"", "x"}, {"*", "x"},
		{"CN=x,DC=contoso,DC=com", "x"}, {testbed.PBXUsersDN, "x"},
	} {
		out := a.Bind(context.Background(), authTestClient, c.name, c.pw)
		if out.Code != 49 {
			t.Errorf("Bind(%q) code = %d, want 49", c.name, out.Code)
		}
		diags[out.Diagnostic] = append(diags[out.Diagnostic], c.name)
	}
	if len(diags) != 1 || diags[DiagInvalidCredentials] == nil {
		t.Errorf("diagnostics = %q, want only %q", diags, DiagInvalidCredentials)
	}
}

func TestWarmDNCacheBindsWithoutSearching(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newFakeAuth(t, dir, nil)
	ctx := context.Background()
	if out := a.Bind(ctx, authTestClient, "jdoe", testbed.JDoe.Password); out.Code != 0 {
		t.Fatalf("warming bind = %+v", out)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"jdoe", "JDoe", " jdoe ", `AADDS\jdoe`}[i%4]
			d := a.Decide(ctx, authTestClient, name, testbed.JDoe.Password)
			if d.Code != 0 || !d.CacheHit {
				t.Errorf("Decide(%q) = %+v, want a success from the cache", name, d)
			}
		}()
	}
	wg.Wait()
	if s, b := dir.counts(); s != 1 || b != n+1 {
		t.Errorf("upstream searches, binds = %d, %d; want 1, %d", s, b, n+1)
	}
}

func TestAStaleCachedDNIsSearchedAgainNextTime(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newFakeAuth(t, dir, nil)
	ctx := context.Background()
	if out := a.Bind(ctx, authTestClient, "jdoe", testbed.JDoe.Password); out.Code != 0 {
		t.Fatalf("first bind = %+v", out)
	}
	renamed := "CN=John Q. Doe," + testbed.UsersDN
	dir.rename(testbed.JDoe.DN(), renamed)

	d := a.Decide(ctx, authTestClient, "jdoe", testbed.JDoe.Password)
	if d.Code != 49 || d.ADCode != "525" || !d.CacheHit {
		t.Errorf("bind on the old DN = %+v, want 49/525 from the cache", d)
	}
	d = a.Decide(ctx, authTestClient, "jdoe", testbed.JDoe.Password)
	if d.Code != 0 || d.DN != renamed || d.CacheHit {
		t.Errorf("next bind = %+v, want success as %q after a search", d, renamed)
	}
	if s, b := dir.counts(); s != 2 || b != 3 {
		t.Errorf("upstream searches, binds = %d, %d; want 2, 3 (one bind per attempt)", s, b)
	}
}

func TestAWrongPasswordKeepsTheCachedDN(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newFakeAuth(t, dir, nil)
	ctx := context.Background()
	// Two different wrong passwords: the same one again would be answered by
	// the negative cache without a bind (TestTheSameWrongPasswordAgain...).
	for _, pw := range []string{testbed.JDoe.Password, "wrong", "wrong again", testbed.JDoe.Password} {
		a.Bind(ctx, authTestClient, "jdoe", pw)
	}
	if s, b := dir.counts(); s != 1 || b != 4 {
		t.Errorf("upstream searches, binds = %d, %d; want 1, 4", s, b)
	}
}

func TestOutagesAreNeverInvalidCredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		searchErr  error
		bindErr    error
		block      bool
		wantCode   int
		wantReason Reason
		wantDiag   string
	}{
		{"no healthy DC for the search is unavailable", fmt.Errorf("search: %w", upstream.ErrNoHealthyUpstream), nil, false, 52, ReasonUnavailable, DiagUnavailable},
		{"a transport failure of the search is unavailable", fmt.Errorf("%w: read: connection reset", upstream.ErrUnavailable), nil, false, 52, ReasonUnavailable, DiagUnavailable},
		{"a busy pool for the search is busy", fmt.Errorf("search: %w", upstream.ErrBusy), nil, false, 51, ReasonBusy, DiagBusy},
		{"a service account without rights is unavailable", ldap.NewError(ldap.LDAPResultInsufficientAccessRights, errors.New("no rights")), nil, false, 52, ReasonUnavailable, DiagUnavailable},
		{"no healthy DC for the bind is unavailable", nil, fmt.Errorf("bind: %w", upstream.ErrNoHealthyUpstream), false, 52, ReasonUnavailable, DiagUnavailable},
		{"a transport failure of the bind is unavailable", nil, fmt.Errorf("%w: tls: handshake failure", upstream.ErrUnavailable), false, 52, ReasonUnavailable, DiagUnavailable},
		{"a busy pool for the bind is busy", nil, upstream.ErrBusy, false, 51, ReasonBusy, DiagBusy},
		{"a bind that outlives the timeout is unavailable", nil, nil, true, 52, ReasonUnavailable, DiagUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := newFakeDir()
			dir.searchErr, dir.bindErr, dir.blockBind = tt.searchErr, tt.bindErr, tt.block
			a := newFakeAuth(t, dir, nil, WithTimeout(20*time.Millisecond))
			d := a.Decide(context.Background(), authTestClient, "jdoe", testbed.JDoe.Password)
			if d.Code != tt.wantCode || d.Reason != tt.wantReason || d.Diagnostic != tt.wantDiag || d.DN != "" {
				t.Errorf("Decide = %+v, want %d %s %q", d, tt.wantCode, tt.wantReason, tt.wantDiag)
			}
			if _, b := dir.counts(); b > 1 {
				t.Errorf("upstream binds = %d, want at most 1", b)
			}
		})
	}
}

func TestACancelledClientGetsUnavailable(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newFakeAuth(t, dir, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if out := a.Bind(ctx, authTestClient, "jdoe", testbed.JDoe.Password); out.Code != 52 {
		t.Errorf("Bind = %+v, want 52", out)
	}
}

func TestDecisionsAreTimedWithTheInjectedClock(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(7 * time.Millisecond)
		return now
	}
	a := newFakeAuth(t, newFakeDir(), nil, WithClock(clock))
	if d := a.Decide(context.Background(), authTestClient, "jdoe", testbed.JDoe.Password); d.Dur != 7*time.Millisecond {
		t.Errorf("Dur = %v, want 7ms", d.Dur)
	}
}

func TestNewAuthNeedsADirectory(t *testing.T) {
	t.Parallel()
	if _, err := NewAuth(authTestConfig(), nil, nil); err == nil {
		t.Error("NewAuth with a nil directory succeeded")
	}
	cfg := authTestConfig()
	cfg.Upstream.BaseDN = ""
	if _, err := NewAuth(cfg, newFakeDir(), nil); err == nil {
		t.Error("NewAuth without a base DN succeeded")
	}
}

// simBed is the bind path wired to the real upstream Cluster and a simulated
// Windows AD DC (integration/adsim).
type simBed struct {
	dir  *adsim.Directory
	dc   *adsim.DC
	auth *Auth
}

func newSimBed(t *testing.T, opts ...AuthOption) *simBed {
	t.Helper()
	// No lockout: tests refuse passwords freely; hlocked is locked by seeding.
	dir, err := adsim.NewDirectory(adsim.Config{Lockout: &adsim.LockoutPolicy{}})
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}
	dc, err := dir.NewDC(adsim.DCConfig{Name: "dc1"})
	if err != nil {
		t.Fatalf("NewDC: %v", err)
	}
	if err := dc.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, dir.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := authTestConfig()
	cfg.Upstream.Servers = []configs.Server{{URL: dc.URL(), ServerName: dc.HostName()}}
	cfg.Upstream.CAFile = caFile
	cfg.Upstream.BindDN = testbed.Service.DN()
	cfg.Upstream.BindPassword = configs.Secret(testbed.Service.Password)
	cluster, err := upstream.New(cfg.Upstream, nil)
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	a, err := NewAuth(cfg, cluster, nil, opts...)
	if err != nil {
		t.Fatalf("NewAuth: %v", err)
	}
	return &simBed{dir: dir, dc: dc, auth: a}
}

func TestBindAgainstTheSimulator(t *testing.T) {
	t.Parallel()
	bed := newSimBed(t)
	tests := []struct {
		name       string
		login      string
		password   string
		wantCode   int
		wantReason Reason
		wantADCode string
		wantDN     string
	}{
		{"jdoe by sAMAccountName succeeds", "jdoe", testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN()},
		{"JDoe by sAMAccountName succeeds", "JDoe", testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN()},
		{"jdoe by UPN succeeds", "jdoe@aadds.example.test", testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN()},
		{"JDoe by down-level name succeeds", `aadds\JDoe`, testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN()},
		{"jdoe by lower-case DN succeeds as the DN AD spells", strings.ToLower(testbed.JDoe.DN()), testbed.JDoe.Password, 0, ReasonOK, "", testbed.JDoe.DN()},
		{"sobrien by DN with an escaped comma succeeds", testbed.SOBrien.DN(), testbed.SOBrien.Password, 0, ReasonOK, "", testbed.SOBrien.DN()},
		{"sobrien by UPN succeeds", testbed.SOBrien.UPN(), testbed.SOBrien.Password, 0, ReasonOK, "", testbed.SOBrien.DN()},
		{"a wrong password is 49 with 52e logged", "bjones", "wrong", 49, ReasonADRefused, "52e", ""},
		{"a disabled account is 49 with 533 logged", "cwhite", testbed.CWhite.Password, 49, ReasonADRefused, "533", ""},
		{"must change password is 49 with 773 logged", "dmust", testbed.DMust.Password, 49, ReasonADRefused, "773", ""},
		{"an expired account is 49 with 701 logged", "eexpired", testbed.EExpired.Password, 49, ReasonADRefused, "701", ""},
		{"an expired password is 49 with 532 logged", "gpwexpired", testbed.GPwExpired.Password, 49, ReasonADRefused, "532", ""},
		{"a locked account is 49 with 775 logged", "hlocked", testbed.HLocked.Password, 49, ReasonADRefused, "775", ""},
		{"an unknown user is 49", "nobody", "x", 49, ReasonUnknownUser, "", ""},
		{"a group's DN is 49", testbed.PBXUsersDN, "x", 49, ReasonUnknownUser, "", ""},
		{"Administrator outside the users OU is unknown by name", "Administrator", testbed.Administrator.Password, 49, ReasonUnknownUser, "", ""},
		{"a star is 49", "*", testbed.JDoe.Password, 49, ReasonInvalidLogin, "", ""},
		{"a wildcard UPN is 49", "j*@aadds.example.test", testbed.JDoe.Password, 49, ReasonUnknownUser, "", ""},
		{"parentheses are 49", "a)(x", testbed.JDoe.Password, 49, ReasonUnknownUser, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := bed.auth.Decide(context.Background(), authTestClient, tt.login, tt.password)
			if d.Code != tt.wantCode || d.Reason != tt.wantReason || d.ADCode != tt.wantADCode || d.DN != tt.wantDN {
				t.Errorf("Decide = code %d reason %s ad_code %q dn %q (err %v); want %d %s %q %q",
					d.Code, d.Reason, d.ADCode, d.DN, d.Err, tt.wantCode, tt.wantReason, tt.wantADCode, tt.wantDN)
			}
			if d.Code != 0 && d.Diagnostic != DiagInvalidCredentials {
				t.Errorf("Diagnostic = %q, want %q", d.Diagnostic, DiagInvalidCredentials)
			}
		})
	}
}

func TestTheSimulatorsEmptyPasswordHoleIsGuarded(t *testing.T) {
	t.Parallel()
	bed := newSimBed(t)
	// The premise: like Windows AD, the simulator takes a name with an empty
	// password for an anonymous bind and answers success.
	conn, err := ldap.DialURL(bed.dc.URL(), ldap.DialWithTLSConfig(bed.dc.ClientTLSConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.SimpleBind(&ldap.SimpleBindRequest{Username: testbed.ASmith.DN(), AllowEmptyPassword: true}); err != nil {
		t.Fatalf("the simulator refused an empty password (%v): this test would prove nothing", err)
	}
	for _, login := range []string{"jdoe", "JDoe", "jdoe@aadds.example.test", `AADDS\jdoe`, testbed.JDoe.DN()} {
		for _, pw := range []string{"", " ", "\t\n"} {
			if out := bed.auth.Bind(context.Background(), authTestClient, login, pw); out.Code != 49 || out.DN != "" {
				t.Errorf("Bind(%q, %q) = %+v, want 49", login, pw, out)
			}
		}
	}
	if n := bed.dc.AccountBinds("jdoe"); n != 0 {
		t.Errorf("the simulator saw %d binds on jdoe, want 0", n)
	}
	if s := bed.dc.Stats(); s.Searches != 0 {
		t.Errorf("the simulator saw %d searches, want 0", s.Searches)
	}
}

func TestAWarmDNCacheCostsOneBindAndNoSearch(t *testing.T) {
	t.Parallel()
	bed := newSimBed(t)
	ctx := context.Background()
	if out := bed.auth.Bind(ctx, authTestClient, "asmith", testbed.ASmith.Password); out.Code != 0 {
		t.Fatalf("warming bind = %+v", out)
	}
	searches := bed.dc.Stats().Searches
	const n = 10
	for i := range n {
		name := []string{"asmith", "ASmith", `AADDS\asmith`}[i%3]
		if d := bed.auth.Decide(ctx, authTestClient, name, testbed.ASmith.Password); d.Code != 0 || !d.CacheHit {
			t.Fatalf("Decide(%q) = %+v", name, d)
		}
	}
	if got := bed.dc.Stats().Searches - searches; got != 0 {
		t.Errorf("searches after warming = %d, want 0", got)
	}
	if got := bed.dc.AccountBinds("asmith"); got != n+1 {
		t.Errorf("binds on asmith = %d, want %d", got, n+1)
	}
}

func TestTheSimulatorSeesNothingOfRefusedLogins(t *testing.T) {
	t.Parallel()
	bed := newSimBed(t)
	before := bed.dc.Stats()
	for _, name := range []string{
		"CN=John Doe,OU=AADDC Users,DC=contoso,DC=com", `CN=x\,DC=aadds,DC=example,DC=test`, testbed.BaseDN,
		"*", "j*", "jdoe)(|(sAMAccountName=*", "jdoe\x00", strings.Repeat("a", 10<<10), `EVIL\jdoe`, "",
	} {
		if out := bed.auth.Bind(context.Background(), authTestClient, name, testbed.JDoe.Password); out.Code != 49 {
			t.Errorf("Bind(%q) = %+v, want 49", LogSafe(name), out)
		}
	}
	if after := bed.dc.Stats(); after.Binds != before.Binds || after.Searches != before.Searches {
		t.Errorf("the simulator saw binds %d→%d, searches %d→%d; want no traffic",
			before.Binds, after.Binds, before.Searches, after.Searches)
	}
}

func TestASimulatedOutageIsUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault func(*adsim.DC) error
	}{
		{"a stopped DC", func(dc *adsim.DC) error { return dc.Stop() }},
		{"a DC answering 52", func(dc *adsim.DC) error { return dc.FailNext(10, ldap.LDAPResultUnavailable) }},
		{"a DC answering 51", func(dc *adsim.DC) error { return dc.FailNext(10, ldap.LDAPResultBusy) }},
		{"a hung DC", func(dc *adsim.DC) error { dc.SetDrop(true); return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bed := newSimBed(t, WithTimeout(500*time.Millisecond))
			if err := tt.fault(bed.dc); err != nil {
				t.Fatal(err)
			}
			for _, login := range []string{"jdoe", "bjones"} {
				pw := map[string]string{"jdoe": testbed.JDoe.Password, "bjones": "wrong"}[login]
				d := bed.auth.Decide(context.Background(), authTestClient, login, pw)
				if d.Code != 52 || d.Reason != ReasonUnavailable || d.Diagnostic != DiagUnavailable {
					t.Errorf("Decide(%q) = %+v, want 52", login, d)
				}
			}
		})
	}
}

func TestReconfigureBoundsTheNextBindByTheNewOpTimeout(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	dir.blockBind = true
	cfg := authTestConfig()
	cfg.Upstream.OpTimeout = time.Hour
	a, err := NewAuth(cfg, dir, nil)
	if err != nil {
		t.Fatalf("NewAuth: %v", err)
	}
	cfg.Upstream.OpTimeout = 30 * time.Millisecond
	a.Reconfigure(cfg)
	done := make(chan Decision, 1)
	go func() { done <- a.Decide(context.Background(), authTestClient, "jdoe", testbed.JDoe.Password) }()
	select {
	case d := <-done:
		if d.Code != 52 || d.Reason != ReasonUnavailable {
			t.Errorf("Decide = %+v, want 52 unavailable after the new 30ms op_timeout", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a bind on a hanging directory still waits 30s after op_timeout was reconfigured to 30ms")
	}
}
