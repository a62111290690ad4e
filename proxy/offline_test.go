package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// cheapArgon2 is the least cost validation accepts: the tests hash often.
var cheapArgon2 = configs.Argon2{Time: 1, MemoryKiB: 8 << 10, Threads: 1}

// withOffline turns the offline cache on with a cheap hash, then applies more.
func withOffline(more ...func(*configs.Config)) func(*configs.Config) {
	return func(c *configs.Config) {
		c.Offline.Enabled = true
		c.Offline.Argon2 = cheapArgon2
		for _, m := range more {
			m(c)
		}
	}
}

// outage makes every search and bind of dir fail as when no DC can be reached.
func outage(dir *fakeDir, err error) {
	dir.mu.Lock()
	defer dir.mu.Unlock()
	dir.searchErr, dir.bindErr = err, err
}

func TestTheOfflineCacheIsOffByDefault(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), nil)
	if a.offline != nil {
		t.Fatal("the default configuration built an offline cache")
	}
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	outage(dir, upstream.ErrNoHealthyUpstream)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 52, ReasonUnavailable})
}

func TestOfflineCredentialsDuringAnOutage(t *testing.T) {
	t.Parallel()
	outages := []struct {
		name string
		err  error
	}{
		{"every breaker open", fmt.Errorf("bind: %w", upstream.ErrNoHealthyUpstream)},
		{"a transport failure", fmt.Errorf("%w: dial tcp: connection refused", upstream.ErrUnavailable)},
		{"a timeout", fmt.Errorf("%w: bind: %w", upstream.ErrUnavailable, context.DeadlineExceeded)},
	}
	for _, o := range outages {
		t.Run(o.name+": the right password of a cached user succeeds, others fail", func(t *testing.T) {
			t.Parallel()
			dir := newFakeDir()
			a := newGuardAuth(t, dir, newTestClock(), withOffline())
			run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
			outage(dir, o.err)
			_, binds := dir.counts()
			d := a.Decide(context.Background(), authTestClient, "JDoe", testbed.JDoe.Password)
			if d.Code != 0 || d.Reason != ReasonOffline || !d.Offline || d.DN != testbed.JDoe.DN() {
				t.Errorf("cached user, right password: %+v, want 0 offline as %s", d, testbed.JDoe.DN())
			}
			run(t, a, authTestClient,
				wrong("jdoe", "Wr0ng-1", ReasonOfflineFailed),
				// asmith never bound: nothing to check against.
				attempt{"asmith", testbed.ASmith.Password, 52, ReasonUnavailable},
			)
			if _, b := dir.counts(); b != binds+2 {
				t.Errorf("upstream binds during the outage = %d, want 2 (one per attempt that knew its DN)", b-binds)
			}
			if s := a.GuardStats().Offline; s.Successes != 1 || s.Failures != 1 || s.Entries != 1 {
				t.Errorf("offline stats %+v, want 1 success, 1 failure, 1 entry", s)
			}
		})
	}
}

func TestOfflineIsNeverUsedAfterAnAnswerFromAD(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer error
	}{
		{"a wrong password", ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563"))},
		{"a disabled account", ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 533, v4563"))},
		{"a locked account", ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563"))},
		{"must change its password", ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 773, v4563"))},
		{"unwilling to perform", ldap.NewError(ldap.LDAPResultUnwillingToPerform, errors.New("no"))},
	}
	for _, tt := range tests {
		t.Run("AD answering "+tt.name+" refuses the bind and drops the credential", func(t *testing.T) {
			t.Parallel()
			dir := newFakeDir()
			a := newGuardAuth(t, dir, newTestClock(), withOffline())
			run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
			dir.mu.Lock()
			dir.bindErr = tt.answer
			dir.mu.Unlock()
			run(t, a, authTestClient, wrong("jdoe", testbed.JDoe.Password, ReasonADRefused))
			outage(dir, upstream.ErrNoHealthyUpstream)
			// 52, or 49 from the negative cache when AD called the password
			// wrong; never the old credential's success.
			if d := a.Decide(context.Background(), authTestClient, "jdoe", testbed.JDoe.Password); d.Code == 0 || d.Offline {
				t.Errorf("after AD's refusal, during an outage: %+v, want no offline decision", d)
			}
			if n := a.GuardStats().Offline.Entries; n != 0 {
				t.Errorf("offline entries = %d, want 0", n)
			}
		})
	}
}

func TestAPasswordChangedInADStopsWorkingOnceADAnswers(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), withOffline())
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	outage(dir, upstream.ErrNoHealthyUpstream)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOffline})
	setFakePassword(dir, testbed.JDoe.DN(), "N3w!pass")
	outage(dir, nil)
	run(t, a, authTestClient,
		wrong("jdoe", testbed.JDoe.Password, ReasonADRefused),
		attempt{"jdoe", "N3w!pass", 0, ReasonOK})
	outage(dir, upstream.ErrNoHealthyUpstream)
	run(t, a, authTestClient,
		wrong("jdoe", testbed.JDoe.Password, ReasonOfflineFailed),
		attempt{"jdoe", "N3w!pass", 0, ReasonOffline})
}

func TestOfflineFailuresAreLimitedPerOutage(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), withOffline(func(c *configs.Config) { c.Lockout.UserBudget = 0 }))
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	outage(dir, upstream.ErrNoHealthyUpstream)
	run(t, a, authTestClient,
		wrong("jdoe", "Wr0ng-1", ReasonOfflineFailed),
		wrong("jdoe", "Wr0ng-2", ReasonOfflineFailed),
		wrong("jdoe", "Wr0ng-3", ReasonOfflineFailed),
		attempt{"jdoe", "Wr0ng-4", 52, ReasonOfflineLimit},
		attempt{"jdoe", testbed.JDoe.Password, 52, ReasonOfflineLimit},
	)
	// A DC answers (another account's bind): the outage is over, and the
	// next one starts with a fresh count.
	outage(dir, nil)
	run(t, a, authTestClient, attempt{"asmith", testbed.ASmith.Password, 0, ReasonOK})
	outage(dir, upstream.ErrNoHealthyUpstream)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOffline})
}

func TestOfflineCredentialsExpire(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	clock := newTestClock()
	a := newGuardAuth(t, dir, clock, withOffline(func(c *configs.Config) { c.Offline.MaxAge = time.Hour }))
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	outage(dir, upstream.ErrNoHealthyUpstream)
	clock.advance(time.Hour)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOffline})
	clock.advance(time.Second)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 52, ReasonUnavailable})
}

func TestOfflineNeedsAnIdentityFromACacheOrTheLogin(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), withOffline())
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	outage(dir, upstream.ErrNoHealthyUpstream)
	// The DN cache has expired (Invalidate stands in for its TTL): the login
	// keys the offline entry remembers still name the account.
	a.resolver.Invalidate("sam:jdoe")
	run(t, a, authTestClient, attempt{`AADDS\JDoe`, testbed.JDoe.Password, 0, ReasonOffline})
	// A form of the login never bound, and no DN cache entry: no identity.
	run(t, a, authTestClient, attempt{"jdoe@aadds.example.test", testbed.JDoe.Password, 52, ReasonUnavailable})
}

func TestForgetUserDropsTheOfflineCredential(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), withOffline())
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	a.ForgetUser(strings.ToLower(testbed.JDoe.DN()))
	outage(dir, upstream.ErrNoHealthyUpstream)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 52, ReasonUnavailable})
}

func TestARepeatedGoodBindDoesNotHashAgain(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), withOffline())
	for range 5 {
		run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	}
	if n := a.offline.hashes.Load(); n != 1 {
		t.Errorf("argon2id computations after 5 good binds = %d, want 1", n)
	}
	setFakePassword(dir, testbed.JDoe.DN(), "N3w!pass")
	run(t, a, authTestClient, attempt{"jdoe", "N3w!pass", 0, ReasonOK})
	if n := a.offline.hashes.Load(); n != 2 {
		t.Errorf("argon2id computations after a new password = %d, want 2", n)
	}
}

func TestAStoreIsSkippedWhileEveryHashSlotIsBusy(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), withOffline(func(c *configs.Config) { c.Offline.MaxConcurrentHashes = 1 }))
	a.offline.sem <- struct{}{} // another hash is running
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	<-a.offline.sem
	if s := a.GuardStats().Offline; s.Skipped != 1 || s.Entries != 0 {
		t.Errorf("offline stats %+v, want 1 skipped and no entry", s)
	}
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	if s := a.GuardStats().Offline; s.Entries != 1 {
		t.Errorf("offline stats %+v, want the next good bind to store it", s)
	}
}

func TestAnOfflineCheckWaitsForAHashSlotOnlyUntilTheTimeout(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), withOffline(func(c *configs.Config) { c.Offline.MaxConcurrentHashes = 1 }),
		WithTimeout(20*time.Millisecond))
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	outage(dir, upstream.ErrNoHealthyUpstream)
	a.offline.sem <- struct{}{}
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 52, ReasonUnavailable})
	<-a.offline.sem
	// The timed-out check did not count as a failure.
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOffline})
}

func TestEveryOfflineDecisionIsAWarning(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	dir := newFakeDir()
	clock := newTestClock()
	a, err := NewAuth(guardConfig(withOffline()), dir, zap.New(core), WithClock(clock.now), WithSleeper(noSleep))
	if err != nil {
		t.Fatal(err)
	}
	a.Decide(context.Background(), authTestClient, "jdoe", testbed.JDoe.Password)
	outage(dir, upstream.ErrNoHealthyUpstream)
	a.Decide(context.Background(), authTestClient, "jdoe", testbed.JDoe.Password)
	a.Decide(context.Background(), authTestClient, "jdoe", "Wr0ng-1")
	lines := logs.FilterLoggerName("audit").All()
	if len(lines) != 3 {
		t.Fatalf("audit lines = %d, want 3", len(lines))
	}
	for i, want := range []struct {
		level   zapcore.Level
		reason  string
		result  int64
		offline bool
	}{
		{zapcore.InfoLevel, "ok", 0, false},
		{zapcore.WarnLevel, "offline", 0, true},
		{zapcore.WarnLevel, "offline_refused", 49, true},
	} {
		got := lines[i].ContextMap()
		if lines[i].Level != want.level || got["reason"] != want.reason || got["result"] != want.result || got["offline"] != want.offline {
			t.Errorf("audit line %d: %v %v, want %v reason %s result %d offline %v", i, lines[i].Level, got, want.level, want.reason, want.result, want.offline)
		}
	}
	if got := lines[1].ContextMap()["user"]; got != testbed.JDoe.DN() {
		t.Errorf("the offline success names user %v, want %s", got, testbed.JDoe.DN())
	}
}

func TestTheOfflineFileSurvivesARestart(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "offline.json")
	cfg := withOffline(func(c *configs.Config) { c.Offline.File = file })
	dir := newFakeDir()
	clock := newTestClock()
	a := newGuardAuth(t, dir, clock, cfg)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatalf("the offline file was not written: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("offline file mode %04o, want 0600", st.Mode().Perm())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), testbed.JDoe.Password) {
		t.Error("the offline file holds the password")
	}
	entries, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*.tmp"))
	if len(entries) > 0 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	// A new process: its DN cache is empty, the file names the account.
	b := newGuardAuth(t, dir, clock, cfg)
	outage(dir, upstream.ErrNoHealthyUpstream)
	run(t, b, authTestClient,
		attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOffline},
		wrong("jdoe", "Wr0ng-1", ReasonOfflineFailed))
}

func TestALoadedOfflineFileIsMadePrivateAndFiltered(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "offline.json")
	clock := newTestClock()
	now := clock.now()
	good := offlineFileEntry{DN: testbed.JDoe.DN(), Logins: []string{"sam:jdoe"}, Salt: make([]byte, offlineSaltLen),
		Hash: make([]byte, offlineHashLen), Time: 1, MemoryKiB: 8 << 10, Threads: 1, VerifiedAt: now.Add(-time.Hour)}
	expensive := good
	expensive.DN, expensive.MemoryKiB = testbed.ASmith.DN(), 64<<20 // 64 GiB per check: refused
	old := good
	old.DN, old.VerifiedAt = testbed.BJones.DN(), now.Add(-25*time.Hour)
	short := good
	short.DN, short.Hash = testbed.SOBrien.DN(), []byte("x")
	data, err := json.Marshal(offlineFile{Version: offlineFileVersion, Entries: []offlineFileEntry{good, expensive, old, short}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	a := newGuardAuth(t, newFakeDir(), clock, withOffline(func(c *configs.Config) { c.Offline.File = file }))
	if n := a.GuardStats().Offline.Entries; n != 1 {
		t.Errorf("entries loaded = %d, want 1 (the expensive, expired and malformed ones dropped)", n)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("offline file after loading: %v, mode %04o; want 0600", err, st.Mode().Perm())
	}
}

func TestABrokenOfflineFileStopsTheStart(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"garbage":       "{not json",
		"a new version": `{"version": 99, "entries": []}`,
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "offline.json")
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewAuth(guardConfig(withOffline(func(c *configs.Config) { c.Offline.File = file })), newFakeDir(), nil)
			if err == nil || !strings.Contains(err.Error(), "offline cache") {
				t.Errorf("NewAuth = %v, want an offline cache error", err)
			}
		})
	}
}

func TestOfflineAgainstTheSimulator(t *testing.T) {
	t.Parallel()
	b := newSimGuardBed(t, withOffline(), WithClock(time.Now))
	ctx := context.Background()
	run(t, b.auth, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	for _, dc := range b.dcs {
		if err := dc.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	// The first binds find the DCs gone (52 or offline, whichever the breakers
	// say); once they are open every bind is decided offline.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := b.auth.Decide(ctx, authTestClient, "jdoe", testbed.JDoe.Password)
		if d.Code == 0 && d.Offline {
			break
		}
		if d.Code != 52 || time.Now().After(deadline) {
			t.Fatalf("with both DCs stopped: %+v, want 52 and then an offline success", d)
		}
	}
	run(t, b.auth, authTestClient,
		wrong("jdoe", "Wr0ng-1", ReasonOfflineFailed),
		attempt{"asmith", testbed.ASmith.Password, 52, ReasonUnavailable})
	if err := b.dir.SetPassword("jdoe", "N3w!Passw0rd"); err != nil {
		t.Fatal(err)
	}
	for _, dc := range b.dcs {
		if err := dc.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	// Until a probe closes a breaker the gateway cannot know the DCs are
	// back; from the first answer on, the old password is refused by AD.
	deadline = time.Now().Add(10 * time.Second)
	for b.upstream.Stats()[0].Breaker != upstream.BreakerClosed && b.upstream.Stats()[1].Breaker != upstream.BreakerClosed {
		if time.Now().After(deadline) {
			t.Fatal("no breaker closed within 10s of the DCs' restart")
		}
		time.Sleep(10 * time.Millisecond) // polls the probe loop, bounded above
	}
	run(t, b.auth, authTestClient,
		wrong("jdoe", testbed.JDoe.Password, ReasonADRefused),
		attempt{"jdoe", "N3w!Passw0rd", 0, ReasonOK})
}

func TestABindThatWaitedOutAHungDCIsStillDecidedOffline(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	a := newGuardAuth(t, dir, newTestClock(), withOffline(), WithTimeout(50*time.Millisecond))
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	dir.mu.Lock()
	dir.blockBind = true // the bind hangs until the bind's timeout
	dir.mu.Unlock()
	run(t, a, authTestClient,
		attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOffline},
		wrong("jdoe", "Wr0ng-1", ReasonOfflineFailed))
}

// FuzzOfflineFile feeds arbitrary content to the offline file's parser: it must
// not panic, and what it keeps must be well formed and within bounds (a
// tampered file must not make a check expensive or the cache unbounded).
func FuzzOfflineFile(f *testing.F) {
	now := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	e := offlineFileEntry{DN: testbed.JDoe.DN(), Logins: []string{"sam:jdoe", "upn:jdoe@aadds.example.test"},
		Salt: make([]byte, offlineSaltLen), Hash: make([]byte, offlineHashLen), Time: 2, MemoryKiB: 19456, Threads: 1,
		VerifiedAt: now.Add(-time.Hour)}
	good, err := json.Marshal(offlineFile{Version: offlineFileVersion, Entries: []offlineFileEntry{e, e}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, s := range []string{
		"", "{}", "null", `{"version":1}`, `{"version":1,"entries":null}`, `{"version":1,"entries":[{}]}`,
		`{"version":1,"entries":[{"dn":"CN=x,DC=y","salt":"AAAAAAAAAAAAAAAAAAAAAA==","hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","time":10,"memory_kib":1048576,"threads":16,"verified_at":"2025-03-01T07:00:00Z"}]}`,
		`{"version":1,"entries":[{"dn":"not a dn","logins":["a","a","b","c","d","e","f","g","h","i"]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &offlineCache{
			cfg:     configs.Offline{Enabled: true, MaxAge: 24 * time.Hour, MaxEntries: 3, MaxFailures: 3, MaxConcurrentHashes: 1, Argon2: cheapArgon2},
			now:     func() time.Time { return now },
			log:     zap.NewNop(),
			entries: map[string]*offlineEntry{},
			logins:  map[string]string{},
		}
		if _, err := c.parse(data, now); err != nil {
			if len(c.entries) != 0 {
				t.Fatalf("a failed parse kept %d entries", len(c.entries))
			}
			return
		}
		if len(c.entries) > c.cfg.MaxEntries {
			t.Fatalf("%d entries kept, more than max_entries %d", len(c.entries), c.cfg.MaxEntries)
		}
		for user, e := range c.entries {
			if len(e.salt) != offlineSaltLen || len(e.hash) != offlineHashLen || !validArgon2(e.params) || len(e.logins) > offlineMaxLogins {
				t.Fatalf("entry %q kept malformed: salt %d, hash %d, params %+v, %d logins", user, len(e.salt), len(e.hash), e.params, len(e.logins))
			}
			if now.Sub(e.verifiedAt) > c.cfg.MaxAge {
				t.Fatalf("entry %q kept though expired", user)
			}
		}
		for login, user := range c.logins {
			if c.entries[user] == nil {
				t.Fatalf("login %q names %q, which has no entry", login, user)
			}
		}
	})
}

func TestRefreshesRewriteTheOfflineFileOnlyWhenItIsStale(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "offline.json")
	clock := newTestClock()
	a := newGuardAuth(t, newFakeDir(), clock, withOffline(func(c *configs.Config) { c.Offline.File = file }))
	written := func() time.Time {
		t.Helper()
		a.offline.flush() // writes if a write was asked for and the writer has not done it yet
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var f offlineFile
		if err := json.Unmarshal(data, &f); err != nil || len(f.Entries) != 1 {
			t.Fatalf("offline file: %v, %d entries", err, len(f.Entries))
		}
		return f.Entries[0].VerifiedAt
	}
	first := clock.now()
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	if got := written(); !got.Equal(first) {
		t.Fatalf("the file says %s, want %s", got, first)
	}
	clock.advance(time.Minute)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	if got := written(); !got.Equal(first) {
		t.Errorf("a refresh one minute after the last write rewrote the file (%s)", got)
	}
	clock.advance(offlineRefreshWrite)
	run(t, a, authTestClient, attempt{"jdoe", testbed.JDoe.Password, 0, ReasonOK})
	if got := written(); !got.Equal(clock.now()) {
		t.Errorf("a refresh past offlineRefreshWrite left %s in the file, want %s", got, clock.now())
	}
}
