package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// noSleep is a Sleeper for tests that are not about timing.
func noSleep(context.Context, time.Duration) {}

// guardConfig is authTestConfig with the lockout settings changed by mutate.
func guardConfig(mutate func(*configs.Config)) configs.Config {
	cfg := authTestConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

// newGuardAuth builds the bind path on dir with a test clock, no failure
// delay unless opts say otherwise, and cfg from guardConfig(mutate).
func newGuardAuth(t *testing.T, dir Directory, clock *testClock, mutate func(*configs.Config), opts ...AuthOption) *Auth {
	t.Helper()
	all := append([]AuthOption{WithClock(clock.now), WithSleeper(noSleep)}, opts...)
	a, err := NewAuth(guardConfig(mutate), dir, zap.NewNop(), all...)
	if err != nil {
		t.Fatalf("NewAuth: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// attempt is one bind and what it must give.
type attempt struct {
	login, password string
	wantCode        int
	wantReason      Reason
}

// run decides each attempt in order and checks the code, reason and
// diagnostic.
func run(t *testing.T, a *Auth, c Client, attempts ...attempt) {
	t.Helper()
	for i, at := range attempts {
		d := a.Decide(context.Background(), c, at.login, at.password)
		if d.Code != at.wantCode || d.Reason != at.wantReason {
			t.Errorf("attempt %d (%s): code %d reason %s (err %v), want %d %s", i+1, at.login, d.Code, d.Reason, d.Err, at.wantCode, at.wantReason)
		}
		if d.Code == 49 && d.Diagnostic != DiagInvalidCredentials {
			t.Errorf("attempt %d (%s): diagnostic %q, want %q", i+1, at.login, d.Diagnostic, DiagInvalidCredentials)
		}
	}
}

func wrong(login, pw string, reason Reason) attempt { return attempt{login, pw, 49, reason} }

func TestTheSameWrongPasswordAgainIsAnsweredWithoutABind(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), nil)
	run(t, a, authTestClient,
		wrong("jdoe", "Wr0ng-1", ReasonADRefused),
		wrong("jdoe", "Wr0ng-1", ReasonNegativeCache),
		wrong("JDoe", "Wr0ng-1", ReasonNegativeCache),
		wrong(`AADDS\jdoe`, "Wr0ng-1", ReasonNegativeCache),
		wrong("jdoe@aadds.example.test", "Wr0ng-1", ReasonNegativeCache),
		wrong(strings.ToLower(testbed.JDoe.DN()), "Wr0ng-1", ReasonNegativeCache),
	)
	if n := dir.bindsOn(testbed.JDoe.DN()); n != 1 {
		t.Errorf("binds on jdoe = %d, want 1: every spelling is one account", n)
	}
	if s := a.GuardStats(); s.NegativeHits != 5 {
		t.Errorf("negative cache hits = %d, want 5", s.NegativeHits)
	}
	// Another account with the same password is another key.
	run(t, a, authTestClient, wrong("asmith", "Wr0ng-1", ReasonADRefused))
}

func TestTheNegativeCacheForgetsAfterItsTTL(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	clock := newTestClock()
	a := newGuardAuth(t, dir, clock, func(c *configs.Config) { c.Lockout.NegativeTTL = time.Minute; c.Lockout.UserBudget = 0 })
	run(t, a, authTestClient, wrong("jdoe", "Wr0ng-1", ReasonADRefused))
	clock.advance(59 * time.Second)
	run(t, a, authTestClient, wrong("jdoe", "Wr0ng-1", ReasonNegativeCache))
	clock.advance(time.Second)
	run(t, a, authTestClient, wrong("jdoe", "Wr0ng-1", ReasonADRefused))
	if n := dir.bindsOn(testbed.JDoe.DN()); n != 2 {
		t.Errorf("binds on jdoe = %d, want 2", n)
	}
}

func TestTheBudgetStopsWrongPasswordsBeforeAD(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	clock := newTestClock()
	a := newGuardAuth(t, dir, clock, nil) // 3 per 2m
	run(t, a, authTestClient,
		wrong("bjones", "Wr0ng-1", ReasonADRefused),
		wrong("bjones", "Wr0ng-2", ReasonADRefused),
		wrong("bjones", "Wr0ng-3", ReasonADRefused),
		wrong("bjones", "Wr0ng-4", ReasonUserBudget),
		wrong("bjones", "Wr0ng-1", ReasonNegativeCache),
		// The right password too: letting it through would mean sending every
		// guess to AD.
		wrong("bjones", testbed.BJones.Password, ReasonUserBudget),
		wrong(`AADDS\BJones`, testbed.BJones.Password, ReasonUserBudget),
	)
	clock.advance(2*time.Minute - time.Millisecond)
	run(t, a, authTestClient, wrong("bjones", testbed.BJones.Password, ReasonUserBudget))
	clock.advance(time.Millisecond)
	run(t, a, authTestClient, attempt{"bjones", testbed.BJones.Password, 0, ReasonOK})
	if n := dir.bindsOn(testbed.BJones.DN()); n != 4 {
		t.Errorf("binds on bjones = %d, want 4 (3 wrong, then the right one after the window)", n)
	}
	if s := a.GuardStats(); s.BudgetRefusals != 4 {
		t.Errorf("budget refusals = %d, want 4", s.BudgetRefusals)
	}
}

func TestTheBudgetStartsOverLikeADsCounterNotASlidingWindow(t *testing.T) {
	t.Parallel()
	// AD resets badPwdCount a window after the last bad password; a sliding
	// window of 3 per 2m would let a slow attacker reach 5 at AD.
	dir := newFakeDir()
	clock := newTestClock()
	a := newGuardAuth(t, dir, clock, nil)
	run(t, a, authTestClient, wrong("bjones", "Wr0ng-1", ReasonADRefused))
	clock.advance(time.Minute)
	run(t, a, authTestClient, wrong("bjones", "Wr0ng-2", ReasonADRefused))
	clock.advance(50 * time.Second)
	run(t, a, authTestClient, wrong("bjones", "Wr0ng-3", ReasonADRefused))
	clock.advance(11 * time.Second) // 2m01s after the first, 11s after the last
	run(t, a, authTestClient, wrong("bjones", "Wr0ng-4", ReasonUserBudget))
	clock.advance(time.Minute) // 3m01s after the first
	run(t, a, authTestClient, wrong("bjones", "Wr0ng-5", ReasonUserBudget))
	clock.advance(49 * time.Second) // 2m after the last wrong one AD saw
	run(t, a, authTestClient, wrong("bjones", "Wr0ng-6", ReasonADRefused))
	if n := dir.bindsOn(testbed.BJones.DN()); n != 4 {
		t.Errorf("binds on bjones = %d, want 4", n)
	}
}

func TestASuccessClearsTheAccountsCounters(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), nil)
	run(t, a, authTestClient,
		wrong("jdoe", "Wr0ng-1", ReasonADRefused),
		wrong("jdoe", "Wr0ng-2", ReasonADRefused),
		attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK},
		// The remembered wrong password and the count are gone.
		wrong("jdoe", "Wr0ng-1", ReasonADRefused),
		wrong("jdoe", "Wr0ng-3", ReasonADRefused),
		wrong("jdoe", "Wr0ng-4", ReasonADRefused),
		wrong("jdoe", "Wr0ng-5", ReasonUserBudget),
	)
}

func TestRefusalsThatAreNotWrongPasswordsDoNotUseTheBudget(t *testing.T) {
	t.Parallel()
	// 533 and the like come only with the right password: they never count
	// against AD's lockout, and an admin's fix must work at once.
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), nil)
	for range 5 {
		run(t, a, authTestClient, wrong("cwhite", testbed.CWhite.Password, ReasonADRefused))
	}
	if n := dir.bindsOn(testbed.CWhite.DN()); n != 5 {
		t.Errorf("binds on cwhite = %d, want 5", n)
	}
}

// gatedDir is a fakeDir whose binds wait for the gate, counting the most in
// flight at once.
type gatedDir struct {
	*fakeDir
	gate             chan struct{}
	inflight, peak   atomic.Int64
	arrived          chan struct{}
	gateOpenedBefore bool
}

func (g *gatedDir) Bind(ctx context.Context, dn, password string) (upstream.BindResult, error) {
	n := g.inflight.Add(1)
	defer g.inflight.Add(-1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	g.arrived <- struct{}{}
	select {
	case <-g.gate:
	case <-ctx.Done():
		// As the Cluster answers a bind written and then timed out: the DC
		// may have counted it, but there is no answer to classify.
		return upstream.BindResult{DC: "dc1"}, fmt.Errorf("%w: bind on dc1: %w", upstream.ErrUnavailable, ctx.Err())
	}
	return g.fakeDir.Bind(ctx, dn, password)
}

func TestConcurrentGuessesCannotOverrunTheBudget(t *testing.T) {
	t.Parallel()
	dir := &gatedDir{fakeDir: newFakeDir(), gate: make(chan struct{}), arrived: make(chan struct{}, 100)}
	a := newGuardAuth(t, dir, newTestClock(), nil)
	const n = 10
	results := make(chan Decision, n)
	for i := range n {
		go func() {
			results <- a.Decide(context.Background(), authTestClient, "bjones", fmt.Sprintf("Wr0ng-%d", i))
		}()
	}
	for range 3 {
		<-dir.arrived // three guesses reached the directory; the others wait
	}
	close(dir.gate)
	reasons := map[Reason]int{}
	for range n {
		d := <-results
		if d.Code != 49 {
			t.Errorf("a concurrent guess got %d (%v), want 49", d.Code, d.Err)
		}
		reasons[d.Reason]++
	}
	if n := dir.bindsOn(testbed.BJones.DN()); n != 3 || dir.peak.Load() > 3 {
		t.Errorf("binds on bjones = %d, at most %d at once; want 3 and at most 3", n, dir.peak.Load())
	}
	if reasons[ReasonADRefused] != 3 || reasons[ReasonUserBudget] != n-3 {
		t.Errorf("reasons = %v, want 3 ad_refused and %d user_budget", reasons, n-3)
	}
}

func TestConcurrentGoodBindsOfOneAccountAllSucceed(t *testing.T) {
	t.Parallel()
	// More than the budget of one account's good binds at once (one PBX, many
	// phones of one user): they wait for each other, none is refused.
	dir := &gatedDir{fakeDir: newFakeDir(), gate: make(chan struct{}), arrived: make(chan struct{}, 100)}
	close(dir.gate)
	a := newGuardAuth(t, dir, newTestClock(), nil)
	const n = 12
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if d := a.Decide(context.Background(), authTestClient, "jdoe", testbed.JDoe.Password); d.Code != 0 {
				t.Errorf("a concurrent good bind got %d %s (%v)", d.Code, d.Reason, d.Err)
			}
		})
	}
	wg.Wait()
	if n := dir.bindsOn(testbed.JDoe.DN()); n != 12 {
		t.Errorf("binds on jdoe = %d, want 12", n)
	}
}

func TestAWaitForTheBudgetEndsWithTheRequestsTimeout(t *testing.T) {
	t.Parallel()
	dir := &gatedDir{fakeDir: newFakeDir(), gate: make(chan struct{}), arrived: make(chan struct{}, 100)}
	a := newGuardAuth(t, dir, newTestClock(), nil, WithTimeout(50*time.Millisecond))
	// Three binds hang at the directory until their timeout; a fourth waits
	// for room in the budget and gets unavailable, as they do. It may get to
	// the directory once the three have ended, never beside them.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { a.Decide(context.Background(), authTestClient, "bjones", fmt.Sprintf("Wr0ng-%d", i)) })
	}
	for range 3 {
		<-dir.arrived
	}
	d := a.Decide(context.Background(), authTestClient, "bjones", "Wr0ng-4")
	wg.Wait()
	if d.Code != 52 || d.Reason != ReasonUnavailable {
		t.Errorf("the fourth guess got %d %s (%v), want 52 unavailable", d.Code, d.Reason, d.Err)
	}
	if p := dir.peak.Load(); p != 3 {
		t.Errorf("binds in flight at once = %d, want the budget (3)", p)
	}
}

func TestUnknownUsersGetNoPerUserState(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), func(c *configs.Config) { c.Lockout.ClientRate = 0 })
	for i := range 500 {
		run(t, a, authTestClient, wrong(fmt.Sprintf("nobody%04d", i), "Wr0ng-1", ReasonUnknownUser))
	}
	if n := a.guard.users.Len(); n != 0 {
		t.Errorf("per-user states = %d after 500 unknown names, want 0", n)
	}
}

func TestPerUserStateIsBounded(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), func(c *configs.Config) { c.Lockout.MaxUsers = 3; c.Lockout.ClientRate = 0 })
	for _, acct := range testbed.Accounts {
		a.Decide(context.Background(), authTestClient, acct.Login, "Wr0ng-1")
	}
	if n := a.guard.users.Len(); n != 3 {
		t.Errorf("per-user states = %d after %d accounts, want the bound 3", n, len(testbed.Accounts))
	}
}

func TestAClientPastItsRateOfFailuresGetsBusy(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	clock := newTestClock()
	a := newGuardAuth(t, dir, clock, func(c *configs.Config) {
		c.Lockout.ClientRate, c.Lockout.ClientBurst = 1, 3
		c.Lockout.UserBudget, c.Lockout.NegativeTTL = 0, 0
	})
	other := Client{Addr: "192.0.2.99:5000", ConnID: 8}
	samePort := Client{Addr: "192.0.2.10:41234", ConnID: 9} // same host, another connection
	run(t, a, authTestClient,
		wrong("jdoe", "Wr0ng-1", ReasonADRefused),
		wrong("nobody", "Wr0ng-2", ReasonUnknownUser),
		// Refusals decided from the request alone do not count.
		wrong("jdoe", "", ReasonEmptyPassword),
		wrong("*", "x", ReasonInvalidLogin),
		wrong("CN=x,DC=contoso,DC=com", "x", ReasonOutsideBase),
		wrong("asmith", "Wr0ng-3", ReasonADRefused),
	)
	searches, binds := dir.counts()
	run(t, a, samePort,
		attempt{"jdoe", testbed.JDoe.Password, 51, ReasonRateLimited},
		attempt{"asmith", "Wr0ng-4", 51, ReasonRateLimited})
	if s, b := dir.counts(); s != searches || b != binds {
		t.Errorf("a rate-limited client caused %d searches and %d binds, want none", s-searches, b-binds)
	}
	run(t, a, other, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	clock.advance(time.Second)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	if s := a.GuardStats(); s.RateLimited != 2 {
		t.Errorf("rate limited = %d, want 2", s.RateLimited)
	}
}

func TestGoodBindsNeverUseUpTheClientsRate(t *testing.T) {
	t.Parallel()
	a := newGuardAuth(t, newFakeDir(), newTestClock(), func(c *configs.Config) { c.Lockout.ClientRate, c.Lockout.ClientBurst = 1, 1 })
	for range 50 {
		run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	}
}

func TestClientLimitersAreBounded(t *testing.T) {
	t.Parallel()
	a := newGuardAuth(t, newFakeDir(), newTestClock(), func(c *configs.Config) { c.Lockout.MaxClients = 5 })
	for i := range 50 {
		a.Decide(context.Background(), Client{Addr: fmt.Sprintf("198.51.100.%d:1000", i)}, "nobody", "x")
	}
	if n := a.guard.clients.Len(); n != 5 {
		t.Errorf("client limiters = %d after 50 addresses, want the bound 5", n)
	}
}

func TestEveryGuardPartCanBeSwitchedOff(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), func(c *configs.Config) { c.Lockout = configs.Lockout{} })
	if a.guard != nil {
		t.Fatal("a guard was built with every part off")
	}
	for range 6 {
		run(t, a, authTestClient, wrong("bjones", "Wr0ng-1", ReasonADRefused))
	}
	if n := dir.bindsOn(testbed.BJones.DN()); n != 6 {
		t.Errorf("binds on bjones = %d, want 6 with the guard off", n)
	}
}

func TestForgetUserDropsTheRememberedWrongPasswords(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), nil)
	run(t, a, authTestClient,
		wrong("jdoe", "N3w-pass", ReasonADRefused),
		wrong("jdoe", "N3w-pass", ReasonNegativeCache))
	// The admin sets the password the user tried a moment ago; the sync sees
	// pwdLastSet change.
	setFakePassword(dir, testbed.JDoe.DN(), "N3w-pass")
	a.ForgetUser(strings.ToUpper(testbed.JDoe.DN()))
	run(t, a, authTestClient, attempt{"jdoe", "N3w-pass", 0, ReasonOK})
}

// setFakePassword changes an entry's password, as a reset in AD does.
func setFakePassword(d *fakeDir, dn, password string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.entries {
		if fakeFoldDN(d.entries[i].dn) == fakeFoldDN(dn) {
			d.entries[i].password = password
		}
	}
}

func TestWrongPasswordCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		code   int
		adCode string
		want   bool
	}{
		{"a bad password counts", 49, "52e", true},
		{"a 49 without a code counts, to be safe", 49, "", true},
		{"an unknown code counts, to be safe", 49, "5f3", true},
		{"a disabled account does not count", 49, "533", false},
		{"an expired password does not count", 49, "532", false},
		{"an expired account does not count", 49, "701", false},
		{"must change password does not count", 49, "773", false},
		{"a locked account does not count", 49, "775", false},
		{"a user gone since the DN was cached does not count", 49, "525", false},
		{"unwillingToPerform does not count", 53, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := wrongPasswordCode(tt.code, tt.adCode); got != tt.want {
				t.Errorf("wrongPasswordCode(%d, %q) = %v, want %v", tt.code, tt.adCode, got, tt.want)
			}
		})
	}
}

// simGuardBed is the bind path with the guard in front of two simulated DCs
// of a directory with AADDS' lockout policy (5 bad passwords in 2 minutes).
type simGuardBed struct {
	dir      *adsim.Directory
	dcs      []*adsim.DC
	auth     *Auth
	clock    *testClock
	cfg      configs.Config
	upstream *upstream.Cluster
}

func newSimGuardBed(t *testing.T, mutate func(*configs.Config), opts ...AuthOption) *simGuardBed {
	t.Helper()
	clock := newTestClock()
	policy := adsim.DefaultLockoutPolicy()
	dir, err := adsim.NewDirectory(adsim.Config{Lockout: &policy, Clock: clock.now})
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}
	b := &simGuardBed{dir: dir, clock: clock}
	for _, name := range []string{"dc1", "dc2"} {
		dc, err := dir.NewDC(adsim.DCConfig{Name: name})
		if err != nil {
			t.Fatalf("NewDC: %v", err)
		}
		if err := dc.Start("127.0.0.1:0"); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { _ = dc.Close() })
		b.dcs = append(b.dcs, dc)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, dir.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := guardConfig(mutate)
	for _, dc := range b.dcs {
		cfg.Upstream.Servers = append(cfg.Upstream.Servers, configs.Server{URL: dc.URL(), ServerName: dc.HostName()})
	}
	cfg.Upstream.CAFile = caFile
	cfg.Upstream.BindDN = testbed.Service.DN()
	cfg.Upstream.BindPassword = configs.Secret(testbed.Service.Password)
	cfg.Upstream.OpTimeout = 2 * time.Second
	cfg.Upstream.DialTimeout = 2 * time.Second
	cfg.Upstream.Breaker = configs.Breaker{Failures: 1, ProbeInterval: 50 * time.Millisecond}
	b.cfg = cfg
	cluster, err := upstream.New(cfg.Upstream, nil)
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	b.upstream = cluster
	all := append([]AuthOption{WithClock(clock.now), WithSleeper(noSleep)}, opts...)
	b.auth, err = NewAuth(cfg, cluster, zap.NewNop(), all...)
	if err != nil {
		t.Fatalf("NewAuth: %v", err)
	}
	t.Cleanup(func() { _ = b.auth.Close() })
	return b
}

// accountBinds is the binds naming login on every DC.
func (b *simGuardBed) accountBinds(login string) int64 {
	var n int64
	for _, dc := range b.dcs {
		n += dc.AccountBinds(login)
	}
	return n
}

func TestTheGuardKeepsTheSimulatorsLockoutAway(t *testing.T) {
	t.Parallel()
	b := newSimGuardBed(t, nil)
	for i := range 10 {
		want := ReasonNegativeCache
		if i == 0 {
			want = ReasonADRefused
		}
		run(t, b.auth, authTestClient, wrong("bjones", "Wr0ng-same", want))
		b.clock.advance(100 * time.Millisecond) // at the client's rate limit's pace
	}
	for i := range 10 {
		want := ReasonUserBudget
		if i < 2 {
			want = ReasonADRefused // the 2nd and 3rd distinct wrong passwords
		}
		run(t, b.auth, authTestClient, wrong("bjones", fmt.Sprintf("Wr0ng-%d", i), want))
		b.clock.advance(100 * time.Millisecond)
	}
	st, _ := b.dir.Account("bjones")
	if st.BadPwdCount > 3 || st.Locked || b.accountBinds("bjones") != 3 {
		t.Fatalf("after 20 wrong passwords: badPwdCount %d, locked %v, binds %d; want at most 3, false, 3",
			st.BadPwdCount, st.Locked, b.accountBinds("bjones"))
	}
	run(t, b.auth, authTestClient, wrong("bjones", testbed.BJones.Password, ReasonUserBudget))
	b.clock.advance(2 * time.Minute)
	run(t, b.auth, authTestClient, attempt{"bjones", testbed.BJones.Password, 0, ReasonOK})
	if st, _ := b.dir.Account("bjones"); st.BadPwdCount != 0 || st.Locked {
		t.Errorf("after the right password: badPwdCount %d, locked %v; want 0, false", st.BadPwdCount, st.Locked)
	}
}

func TestWithoutTheGuardTheSimulatorLocksTheAccount(t *testing.T) {
	t.Parallel()
	// The premise of the test above: the same 20 binds lock the account when
	// nothing guards it.
	b := newSimGuardBed(t, func(c *configs.Config) { c.Lockout = configs.Lockout{} })
	for i := range 6 {
		b.auth.Decide(context.Background(), authTestClient, "bjones", fmt.Sprintf("Wr0ng-%d", i))
	}
	if st, _ := b.dir.Account("bjones"); !st.Locked {
		t.Fatalf("6 wrong passwords without the guard left bjones unlocked (badPwdCount %d): the guard test proves nothing", st.BadPwdCount)
	}
}

func TestTheGuardsOwnRefusalsDoNotUseUpTheClientsRate(t *testing.T) {
	t.Parallel()
	// A few phones retrying a stale password must not shut out every user of
	// the PBX they share an address with.
	a := newGuardAuth(t, newFakeDir(), newTestClock(), func(c *configs.Config) { c.Lockout.ClientRate, c.Lockout.ClientBurst = 1, 3 })
	run(t, a, authTestClient, wrong("jdoe", "Wr0ng-1", ReasonADRefused))
	for range 20 {
		run(t, a, authTestClient, wrong("jdoe", "Wr0ng-1", ReasonNegativeCache))
	}
	run(t, a, authTestClient, wrong("bjones", "Wr0ng-1", ReasonADRefused), wrong("bjones", "Wr0ng-2", ReasonADRefused))
	// The bucket is empty now: the next failure that counts is refused.
	run(t, a, authTestClient, attempt{"asmith", "Wr0ng-1", 51, ReasonRateLimited})
}
