//go:build integration

// Offline credential cache tests against the Samba test bed: an in-process
// gateway behind fault proxies in front of both DCs, which the tests blackhole.
package integration

import (
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/faultproxy"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// auditOf binds and returns the bind's result code and its audit line.
func (r *faultRig) auditOf(t *testing.T, login, password string) (uint16, logLine) {
	t.Helper()
	off := logSize(t, r.gw.logPath)
	code, took := r.bind(t, login, password)
	lines := waitAudit(t, r.gw.logPath, off, 1)
	if len(lines) != 1 {
		t.Fatalf("%d audit lines for one bind of %s (after %s)", len(lines), login, took)
	}
	return code, lines[0]
}

func TestOfflineCredentialsWhileBothDCsAreBlackholed(t *testing.T) {
	t.Run("offline off: a cached user, a wrong password and an uncached user all get 52", func(t *testing.T) {
		r := newFaultRig(t, "offline-off", nil) // jdoe bound once by the warm-up
		r.setAll(t, faultproxy.Blackhole())
		for _, c := range []struct{ login, password string }{
			{testbed.JDoe.Login, testbed.JDoe.Password},
			{testbed.JDoe.Login, wrongPassword("jdoe-offline-off")},
			{testbed.ASmith.Login, testbed.ASmith.Password},
		} {
			if code, took := r.bind(t, c.login, c.password); code != ldap.LDAPResultUnavailable {
				t.Errorf("%s with both DCs blackholed and offline off: %d after %s, want 52", c.login, code, took)
			}
		}
	})

	t.Run("offline on: the cached user's right password succeeds offline, a wrong one and an uncached user fail; a password changed meanwhile stops working once the DCs are back", func(t *testing.T) {
		login, dn, oldPW := createUser(t, "lgoff")
		r := newFaultRig(t, "offline-on", map[string]any{"offline.enabled": true})
		if code, line := r.auditOf(t, login, oldPW); code != 0 || line["offline"] != false {
			t.Fatalf("%s's bind while the DCs are up: %d, offline %v; want 0 from AD", login, code, line["offline"])
		}

		r.setAll(t, faultproxy.Blackhole())
		// The first bind waits out the hung DC (op_timeout), then the offline
		// credential decides.
		code, line := r.auditOf(t, login, oldPW)
		if code != 0 || line["offline"] != true || line.str("reason") != "offline" || line.str("level") != "warn" || line.str("user") != dn {
			t.Errorf("%s with the right password, DCs blackholed: %d, audit %v; want 0 and an offline warning for %s", login, code, line, dn)
		}
		code, line = r.auditOf(t, login, wrongPassword("offline-user"))
		if code != ldap.LDAPResultInvalidCredentials || line.str("reason") != "offline_refused" || line["offline"] != true {
			t.Errorf("%s with a wrong password, DCs blackholed: %d, audit %v; want 49 offline_refused", login, code, line)
		}
		code, line = r.auditOf(t, testbed.ASmith.Login, testbed.ASmith.Password)
		if code != ldap.LDAPResultUnavailable || line["offline"] != false {
			t.Errorf("asmith, never bound through this gateway, DCs blackholed: %d, audit %v; want 52", code, line)
		}
		t.Logf("breakers after the offline binds:\n%s", r.describe())

		// An admin changes the password in AD meanwhile (on dc1 directly: only
		// the gateway's path is blackholed). The gateway cannot know yet: the
		// old password still works offline. It is changed twice: Samba, like
		// Windows for NTLM, still accepts the previous password on the DC
		// where it was changed for a while, and this test is about the
		// gateway, not that.
		for _, pw := range []string{"Int3rim!" + oldPW, "N3w!" + oldPW} {
			addSecret("a new password of "+login, pw)
			setPassword(t, dn, pw)
		}
		newPW := "N3w!" + oldPW
		if code, line := r.auditOf(t, login, oldPW); code != 0 || line["offline"] != true {
			t.Errorf("the old password while the DCs are still unreachable: %d, offline %v; want 0 offline", code, line["offline"])
		}

		r.setAll(t, faultproxy.None())
		// Binds go to dc1, where the password was changed, as soon as its
		// probe closes its breaker.
		waitFor(t, frResume, func() bool { return r.gw.stats(0).Breaker == upstream.BreakerClosed },
			"dc1's breaker is not closed %s after the blackhole was lifted\n%s", frResume, r.describe())
		back := time.Now()
		code, line = r.auditOf(t, login, oldPW)
		if code != ldap.LDAPResultInvalidCredentials || line.str("reason") != "ad_refused" || line["offline"] != false {
			t.Errorf("the old password once dc1 is back: %d, audit %v; want 49 refused by AD", code, line)
		}
		code, line = r.auditOf(t, login, newPW)
		if code != 0 || line["offline"] != false || line.str("dc") == "" {
			t.Errorf("the new password once dc1 is back: %d, audit %v; want 0 from AD", code, line)
		}
		t.Logf("the old password was refused by AD %s after dc1's breaker closed", time.Since(back).Round(time.Millisecond))
	})
}
