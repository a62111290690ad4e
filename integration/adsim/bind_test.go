package adsim_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestBindDiagnosticIsWindowsText(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	_, err := dial(t, dc).SimpleBind(&ldap.SimpleBindRequest{Username: testbed.JDoe.DN(), Password: "wrong"})
	want := "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("bind error = %v, want it to carry %q", err, want)
	}
}

func TestLockout(t *testing.T) {
	clock := newFakeClock()
	d := newDirectory(t, adsim.Config{Clock: clock.Now})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)
	jdoe := testbed.JDoe

	expect := func(t *testing.T, password string, wantCode int, wantSub string) {
		t.Helper()
		code, sub, err := bindResult(c, jdoe.UPN(), password)
		if err != nil {
			t.Fatalf("bind: %v", err)
		}
		if code != wantCode || sub != wantSub {
			t.Fatalf("bind with %q = %d/%q, want %d/%q", password, code, sub, wantCode, wantSub)
		}
	}
	state := func(t *testing.T) adsim.AccountState {
		t.Helper()
		st, ok := d.Account(jdoe.Login)
		if !ok {
			t.Fatalf("no account %s", jdoe.Login)
		}
		return st
	}

	t.Run("four bad passwords count but do not lock", func(t *testing.T) {
		for range 4 {
			expect(t, "bad", 49, "52e")
		}
		if st := state(t); st.BadPwdCount != 4 || st.Locked {
			t.Fatalf("state = %+v, want 4 bad passwords and not locked", st)
		}
	})
	t.Run("a good password resets the bad count", func(t *testing.T) {
		expect(t, jdoe.Password, 0, "")
		if st := state(t); st.BadPwdCount != 0 {
			t.Fatalf("badPwdCount = %d after a good bind, want 0", st.BadPwdCount)
		}
		entry, _ := d.Entry(jdoe.DN())
		if got := entry["badPwdCount"]; len(got) != 1 || got[0] != "0" {
			t.Fatalf("badPwdCount attribute = %q, want 0", got)
		}
	})
	t.Run("bad passwords further apart than the observation window do not add up", func(t *testing.T) {
		for range 4 {
			expect(t, "bad", 49, "52e")
		}
		clock.Advance(3 * time.Minute)
		expect(t, "bad", 49, "52e")
		if st := state(t); st.BadPwdCount != 1 {
			t.Fatalf("badPwdCount = %d, want 1 after the window", st.BadPwdCount)
		}
		expect(t, jdoe.Password, 0, "")
	})
	t.Run("the fifth bad password within the window locks the account", func(t *testing.T) {
		usn := d.HighestCommittedUSN()
		for range 5 {
			expect(t, "bad", 49, "52e")
		}
		st := state(t)
		if !st.Locked || !st.LockoutTime.Equal(clock.Now()) {
			t.Fatalf("state = %+v, want locked at %v", st, clock.Now())
		}
		if d.HighestCommittedUSN() <= usn {
			t.Errorf("the lockout did not move highestCommittedUSN (%d)", usn)
		}
	})
	t.Run("a locked account gets 775 with the right password", func(t *testing.T) {
		expect(t, jdoe.Password, 49, "775")
	})
	t.Run("a locked account gets 775 with a wrong password, which does not count", func(t *testing.T) {
		expect(t, "bad", 49, "775")
		if st := state(t); st.BadPwdCount != 5 {
			t.Fatalf("badPwdCount = %d while locked, want 5", st.BadPwdCount)
		}
	})
	t.Run("the lockout ends after 30 minutes", func(t *testing.T) {
		clock.Advance(29 * time.Minute)
		expect(t, jdoe.Password, 49, "775")
		clock.Advance(time.Minute)
		expect(t, jdoe.Password, 0, "")
		if st := state(t); st.Locked || st.BadPwdCount != 0 || !st.LockoutTime.IsZero() {
			t.Fatalf("state = %+v after the lockout ended, want clean", st)
		}
	})
	t.Run("Unlock ends a lockout at once", func(t *testing.T) {
		for range 5 {
			expect(t, "bad", 49, "52e")
		}
		if err := d.Unlock(jdoe.Login); err != nil {
			t.Fatal(err)
		}
		expect(t, jdoe.Password, 0, "")
	})
}

func TestLockoutPolicyIsConfigurable(t *testing.T) {
	d := newDirectory(t, adsim.Config{Lockout: &adsim.LockoutPolicy{Threshold: 2, ObservationWindow: time.Minute, Duration: time.Minute}})
	c := dial(t, startDC(t, d, adsim.DCConfig{}))
	for i, want := range []string{"52e", "52e", "775"} {
		if _, sub, err := bindResult(c, testbed.BJones.DN(), "bad"); err != nil || sub != want {
			t.Fatalf("bad bind %d = %q, %v; want %q", i+1, sub, err, want)
		}
	}
}

func TestSeededLockedAccountStaysLocked(t *testing.T) {
	clock := newFakeClock()
	d := newDirectory(t, adsim.Config{Clock: clock.Now})
	c := dial(t, startDC(t, d, adsim.DCConfig{}))
	clock.Advance(24 * time.Hour)
	for _, pw := range []string{testbed.HLocked.Password, "bad"} {
		if code, sub, err := bindResult(c, testbed.HLocked.UPN(), pw); err != nil || code != 49 || sub != "775" {
			t.Errorf("hlocked with %q a day later = %d/%q, %v; want 49/775", pw, code, sub, err)
		}
	}
}

func TestPasswordExpiresWithTheClock(t *testing.T) {
	clock := newFakeClock()
	d := newDirectory(t, adsim.Config{Clock: clock.Now})
	c := dial(t, startDC(t, d, adsim.DCConfig{}))
	clock.Advance(adsim.DefaultMaxPasswordAge + time.Hour)
	tests := []struct {
		name    string
		account testbed.Account
		wantSub string
	}{
		{"a normal account's password has expired", testbed.JDoe, "532"},
		{"the service account's password never expires", testbed.Service, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, sub, err := bindResult(c, tt.account.UPN(), tt.account.Password); err != nil || sub != tt.wantSub {
				t.Errorf("bind = %q, %v; want %q", sub, err, tt.wantSub)
			}
		})
	}
}

func TestBindIdentity(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	search := func(c *ldap.Conn) error {
		_, err := c.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeSingleLevel, 0, 0, 0, false, "(sAMAccountName=jdoe)", nil, nil))
		return err
	}
	tests := []struct {
		name     string
		login    string
		password string
		canRead  bool
	}{
		{"a good bind may search", testbed.JDoe.DN(), testbed.JDoe.Password, true},
		{"an unauthenticated bind stays anonymous", testbed.JDoe.DN(), "", false},
		{"a failed bind leaves the connection anonymous", testbed.JDoe.DN(), "bad", false},
		{"an anonymous bind may not search", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, dc)
			bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
			_, _, _ = bindResult(c, tt.login, tt.password)
			err := search(c)
			code, _, _ := resultOf(err)
			switch {
			case tt.canRead && err != nil:
				t.Errorf("search after bind: %v, want success", err)
			case !tt.canRead && (code != ldap.LDAPResultOperationsError || !strings.Contains(err.Error(), adsim.DiagBindRequired)):
				t.Errorf("search after bind: %v, want operationsError with %q", err, adsim.DiagBindRequired)
			}
		})
	}
}

func TestBindCounters(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc1 := startDC(t, d, adsim.DCConfig{Name: "dc1"})
	dc2 := startDC(t, d, adsim.DCConfig{Name: "dc2"})
	c1, c2 := dial(t, dc1), dial(t, dc2)
	for _, name := range []string{testbed.JDoe.DN(), testbed.JDoe.UPN(), `AADDS\jdoe`, "JDOE", testbed.JDoe.DN()} {
		_, _, _ = bindResult(c1, name, testbed.JDoe.Password)
	}
	_, _, _ = bindResult(c1, testbed.JDoe.UPN(), "")
	_, _, _ = bindResult(c1, testbed.JDoe.UPN(), "bad")
	_, _, _ = bindResult(c2, testbed.JDoe.Login, testbed.JDoe.Password)
	_, _, _ = bindResult(c2, "nobody", "x")

	if got := dc1.AccountBinds("jdoe"); got != 7 {
		t.Errorf("dc1 counted %d binds naming jdoe, want 7 (every form, empty and bad passwords too)", got)
	}
	if got := dc2.AccountBinds("JDoe"); got != 1 {
		t.Errorf("dc2 counted %d binds naming jdoe, want 1", got)
	}
	if st, _ := d.Account("jdoe"); st.Binds != 8 {
		t.Errorf("the directory counted %d binds naming jdoe, want 8", st.Binds)
	}
	if got := dc2.Stats().Binds; got != 2 {
		t.Errorf("dc2 counted %d binds in total, want 2", got)
	}
}

func TestConcurrentBinds(t *testing.T) {
	d := newDirectory(t, adsim.Config{LoadUsers: 16})
	dc := startDC(t, d, adsim.DCConfig{})
	const workers, binds = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		c := dial(t, dc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			login, password := testbed.LoadUser(w)
			for i := range binds {
				pw := password
				if i%10 == 9 {
					pw = "bad" // under the threshold: the good binds in between reset the count
				}
				code, _, err := bindResult(c, login, pw)
				if err != nil || (code == 0) != (pw == password) {
					errs <- fmt.Errorf("worker %d bind %d: code %d, %v", w, i, code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := dc.Stats().Binds; got != workers*binds {
		t.Errorf("the DC counted %d binds, want %d", got, workers*binds)
	}
}
