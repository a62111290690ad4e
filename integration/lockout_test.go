//go:build integration

// Lockout guard tests against the Samba test bed: the gateway keeps bjones (the
// account whose PSO makes Samba count bad passwords) below AD's lockout
// threshold, and failures take the same time whether the user exists or not.
package integration

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy"
)

// addSecret adds a password the log scan must not find.
func addSecret(owner, value string) {
	extraSecrets.mu.Lock()
	extraSecrets.list = append(extraSecrets.list, secret{owner: owner, value: value})
	extraSecrets.mu.Unlock()
}

// badPwdCounts reads an account's badPwdCount on each DC (not replicated).
func badPwdCounts(t *testing.T, dn string) []int {
	t.Helper()
	var out []int
	for _, d := range dcs {
		out = append(out, badPwdCountOf(t, adminConn(t, d), dn))
	}
	return out
}

// lockoutTimes reads an account's lockoutTime on each DC ("0" or "" when not
// locked).
func lockoutTimes(t *testing.T, dn string) []string {
	t.Helper()
	var out []string
	for _, d := range dcs {
		res, err := adminConn(t, d).Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 10, false, "(objectClass=user)", []string{"lockoutTime"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("read lockoutTime of %s on %s: %v", dn, d.name, err)
		}
		out = append(out, res.Entries[0].GetAttributeValue("lockoutTime"))
	}
	return out
}

// resetBJones binds bjones with his password on each DC, which sets his
// badPwdCount there to 0, and checks that it did.
func resetBJones(t *testing.T) {
	t.Helper()
	for _, d := range dcs {
		if got := bindResult(t, d, testbed.BJones.DN(), testbed.BJones.Password); got != "" {
			t.Fatalf("bjones with his password on %s: %s, want success", d.name, describe(got))
		}
	}
	if n := badPwdCounts(t, testbed.BJones.DN()); slices.Max(n) != 0 {
		t.Fatalf("badPwdCount of bjones after good binds on both DCs = %v, want 0 on each", n)
	}
}

func sum(ns []int) int {
	s := 0
	for _, n := range ns {
		s += n
	}
	return s
}

func TestLockoutGuardKeepsBJonesBelowADsThreshold(t *testing.T) {
	const window = 3 * time.Second
	resetBJones(t)
	t.Cleanup(func() { resetBJones(t) })
	gw := startInprocGateway(t, "lockout-bjones", map[string]any{"lockout.user_window": window.String()})
	off := logSize(t, gw.logPath)

	same := wrongPassword("bjones-same-ten-times")
	var wantReasons []string
	for i := range 10 {
		if code, diag := bindAt(t, gw.addr, "bjones", same); code != ldap.LDAPResultInvalidCredentials || diag != proxy.DiagInvalidCredentials {
			t.Fatalf("the same wrong password, bind %d: %d %q, want 49 %q", i+1, code, diag, proxy.DiagInvalidCredentials)
		}
		wantReasons = append(wantReasons, map[bool]string{true: "ad_refused", false: "negative_cache"}[i == 0])
	}
	var lastWrong time.Time
	for i := range 10 {
		pw := wrongPassword(fmt.Sprintf("bjones-distinct-%d", i))
		if code, diag := bindAt(t, gw.addr, `AADDS\BJones`, pw); code != ldap.LDAPResultInvalidCredentials || diag != proxy.DiagInvalidCredentials {
			t.Fatalf("distinct wrong password %d: %d %q, want 49 %q", i+1, code, diag, proxy.DiagInvalidCredentials)
		}
		if i < 2 {
			lastWrong = time.Now()
		}
		wantReasons = append(wantReasons, map[bool]string{true: "ad_refused", false: "user_budget"}[i < 2])
	}

	counts, locks := badPwdCounts(t, testbed.BJones.DN()), lockoutTimes(t, testbed.BJones.DN())
	t.Logf("after 10 binds with one wrong password and 10 with distinct ones: badPwdCount dc1, dc2 = %v (total %d), lockoutTime %q", counts, sum(counts), locks)
	if sum(counts) > 3 {
		t.Errorf("badPwdCount of bjones = %v, %d in total: want at most 3", counts, sum(counts))
	}
	if sum(counts) == 0 {
		t.Errorf("badPwdCount of bjones is 0 on both DCs: Samba counted nothing (is his PSO in place?), so this measured nothing")
	}
	for i, lt := range locks {
		if lt != "" && lt != "0" {
			t.Errorf("bjones is locked out on %s (lockoutTime %s)", dcs[i].name, lt)
		}
	}
	lines := waitAudit(t, gw.logPath, off, len(wantReasons))
	for i, l := range lines {
		if l.str("reason") != wantReasons[i] || l.num("result") != ldap.LDAPResultInvalidCredentials || l.str("user") != testbed.BJones.DN() {
			t.Errorf("audit line %d: reason %q result %d user %q; want %q 49 %q", i+1, l.str("reason"), l.num("result"), l.str("user"), wantReasons[i], testbed.BJones.DN())
		}
	}

	// The right password is refused here until the window has passed since the
	// last wrong password AD saw, then accepted: poll, bounded.
	deadline := lastWrong.Add(window + 10*time.Second)
	polls := 0
	for {
		polls++
		code, _ := bindAt(t, gw.addr, "bjones", testbed.BJones.Password)
		if code == 0 {
			break
		}
		if code != ldap.LDAPResultInvalidCredentials {
			t.Fatalf("bjones with his password after the budget: %d, want 49 and then 0", code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("bjones with his password is still refused %s after his last wrong password (user_window %s)", time.Since(lastWrong), window)
		}
		time.Sleep(200 * time.Millisecond) // paces the polls; the deadline bounds them
	}
	since := time.Since(lastWrong)
	t.Logf("the right password was accepted %s after the last wrong password AD saw (window %s, %d tries)", since.Round(10*time.Millisecond), window, polls)
	if since < window {
		t.Errorf("the right password was accepted %s after the last wrong one, inside the window %s", since, window)
	}
	if n := badPwdCounts(t, testbed.BJones.DN()); n[0] != 0 {
		t.Errorf("badPwdCount of bjones on dc1 after his good bind through the gateway = %v, want 0", n)
	}
}

// createUser adds a user in the users OU as Administrator on dc1 and deletes it
// when the test ends. Its password is added to the log scan's secrets.
func createUser(t *testing.T, prefix string) (login, dn, password string) {
	t.Helper()
	login = fmt.Sprintf("%s%06x", prefix, rand.Uint32()&0xffffff)
	password = "Passw0rd!" + login
	addSecret("the test user "+login, password)
	dn = "CN=" + login + "," + testbed.UsersDN
	admin := adminConn(t, dcs[0])
	add := ldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"user"})
	add.Attribute("sAMAccountName", []string{login})
	add.Attribute("userPrincipalName", []string{login + "@" + testbed.Realm})
	add.Attribute("userAccountControl", []string{"512"})
	add.Attribute("unicodePwd", []string{unicodePwd(password)})
	if err := admin.Add(add); err != nil {
		t.Fatalf("add %s on dc1: %v", dn, err)
	}
	t.Cleanup(func() {
		if err := adminConn(t, dcs[0]).Del(ldap.NewDelRequest(dn, nil)); err != nil {
			t.Errorf("delete the test user %s: %v", dn, err)
		}
	})
	return login, dn, password
}

// setPassword resets a user's password as Administrator on dc1.
func setPassword(t *testing.T, dn, password string) {
	t.Helper()
	mod := ldap.NewModifyRequest(dn, nil)
	mod.Replace("unicodePwd", []string{unicodePwd(password)})
	if err := adminConn(t, dcs[0]).Modify(mod); err != nil {
		t.Fatalf("set the password of %s on dc1: %v", dn, err)
	}
}

// median returns the median of ds (which it sorts).
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// failureLatencies binds each login with a wrong password tries times on its
// own connection, alternating between them, and returns each login's
// latencies as the client saw them.
func failureLatencies(t *testing.T, addr string, tries int, password string, logins ...string) [][]time.Duration {
	t.Helper()
	conns := make([]*ldap.Conn, len(logins))
	for i := range logins {
		l, err := dialGateway(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		conns[i] = l
	}
	out := make([][]time.Duration, len(logins))
	for range tries {
		for i, login := range logins {
			start := time.Now()
			code, _ := bindCode(t, conns[i], login, password)
			took := time.Since(start)
			if code != ldap.LDAPResultInvalidCredentials {
				t.Fatalf("%s with a wrong password: %d, want 49", login, code)
			}
			out[i] = append(out[i], took)
		}
	}
	return out
}

func TestFailuresTakeTheSameTimeForUnknownAndExistingUsers(t *testing.T) {
	const tries = 200
	login, _, _ := createUser(t, "lgtime")
	unknown := "nosuch" + strconv.Itoa(int(rand.Uint32()&0xffff))
	pw := wrongPassword("timing")
	// Every wrong password of the existing user goes to AD (no negative cache,
	// no budget: the test user's domain has no lockout threshold), the
	// hardest case for the floor: a search for the unknown user against a
	// bind (and, the first time, a search) for the existing one.
	unguarded := map[string]any{
		"lockout.negative_ttl": "0s",
		"lockout.user_budget":  0,
		"lockout.client_rate":  0,
	}

	t.Run("without the floor the two differ (the premise, logged)", func(t *testing.T) {
		changes := map[string]any{"lockout.min_failure_latency": "0s"}
		for k, v := range unguarded {
			changes[k] = v
		}
		gw := startInprocGateway(t, "timing-no-floor", changes)
		ls := failureLatencies(t, gw.addr, 50, pw, unknown, login)
		t.Logf("median failure latency without the floor over 50 tries: unknown user %s, existing user %s",
			median(ls[0]).Round(10*time.Microsecond), median(ls[1]).Round(10*time.Microsecond))
	})

	t.Run(fmt.Sprintf("with min_failure_latency 50ms the medians over %d tries differ by less than 10%%", tries), func(t *testing.T) {
		changes := map[string]any{"lockout.min_failure_latency": "50ms"}
		for k, v := range unguarded {
			changes[k] = v
		}
		gw := startInprocGateway(t, "timing-floor", changes)
		ls := failureLatencies(t, gw.addr, tries, pw, unknown, login)
		mu, me := median(ls[0]), median(ls[1])
		diff := float64(mu-me) / float64(me)
		t.Logf("median failure latency with the 50ms floor over %d tries: unknown user %s, existing user %s (%+.2f%%); slowest %s and %s",
			tries, mu.Round(10*time.Microsecond), me.Round(10*time.Microsecond), 100*diff,
			slices.Max(ls[0]).Round(time.Millisecond), slices.Max(ls[1]).Round(time.Millisecond))
		if diff >= 0.1 || diff <= -0.1 {
			t.Errorf("medians differ by %+.2f%%, want less than 10%%", 100*diff)
		}
		if slices.Min(ls[0]) < 50*time.Millisecond || slices.Min(ls[1]) < 50*time.Millisecond {
			t.Errorf("a refusal came before the 50ms floor: quickest %s and %s", slices.Min(ls[0]), slices.Min(ls[1]))
		}
	})
}
