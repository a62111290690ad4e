//go:build integration

// Tests of the Samba AD test bed itself: every seeded account gives the bind result
// of the accounts table on both DCs, and the DCs replicate to each other. They run
// against a test bed that integration/samba/up.sh started, and fail (never skip)
// when it does not answer.
package integration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"regexp"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// dc is one domain controller of the test bed.
type dc struct {
	name, url, serverName string
}

var dcs = []dc{
	{name: "dc1", url: testbed.DC1URL, serverName: testbed.DC1Name},
	{name: "dc2", url: testbed.DC2URL, serverName: testbed.DC2Name},
}

// dialDC opens a verified LDAPS connection to d, closed when the test ends.
func dialDC(t *testing.T, d dc) *ldap.Conn {
	t.Helper()
	pool, err := certs.LoadCAPool(testbed.CAFile())
	if err != nil {
		t.Fatalf("the test bed's CA: %v (start the test bed: sudo integration/samba/up.sh)", err)
	}
	conn, err := ldap.DialURL(d.url,
		ldap.DialWithTLSConfig(certs.ClientConfig(pool, d.serverName)),
		ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatalf("%s (%s) does not answer LDAPS: %v (start the test bed: sudo integration/samba/up.sh)", d.name, d.url, err)
	}
	conn.SetTimeout(10 * time.Second)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// adminConn is a connection to d bound as the domain's Administrator.
func adminConn(t *testing.T, d dc) *ldap.Conn {
	t.Helper()
	conn := dialDC(t, d)
	if err := conn.Bind(testbed.AdminDN, testbed.Administrator.Password); err != nil {
		t.Fatalf("bind as Administrator on %s: %v", d.name, err)
	}
	return conn
}

var adDataCode = regexp.MustCompile(`data ([0-9a-f]+)`)

// bindResult binds on a new connection and returns "" on success, the AD data code
// of an invalidCredentials (49) answer, or fails the test on any other outcome.
func bindResult(t *testing.T, d dc, name, password string) string {
	t.Helper()
	err := dialDC(t, d).Bind(name, password)
	if err == nil {
		return ""
	}
	var lerr *ldap.Error
	if !errors.As(err, &lerr) || lerr.ResultCode != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("bind %q on %s: want success or 49, got %v", name, d.name, err)
	}
	m := adDataCode.FindStringSubmatch(lerr.Err.Error())
	if m == nil {
		t.Fatalf("bind %q on %s: 49 without an AD data code: %q", name, d.name, lerr.Err)
	}
	return m[1]
}

func describe(code string) string {
	if code == "" {
		return "success"
	}
	return "49 data " + code
}

func TestTestbedSeededAccountsBindAsTheTableSays(t *testing.T) {
	accounts := append([]testbed.Account{testbed.Administrator}, testbed.Accounts...)
	for _, d := range dcs {
		for _, a := range accounts {
			dn := a.DN()
			if a.Login == testbed.Administrator.Login {
				dn = testbed.AdminDN
			}
			t.Run(d.name+"/"+a.Login+" with its password gets "+describe(a.ADCode), func(t *testing.T) {
				if got := bindResult(t, d, dn, a.Password); got != a.ADCode {
					t.Errorf("bind %s on %s: got %s, want %s", dn, d.name, describe(got), describe(a.ADCode))
				}
			})
			if a.ADCode == "775" {
				continue // a wrong password on a locked account says nothing new
			}
			t.Run(d.name+"/"+a.Login+" with a wrong password gets 49 data 52e", func(t *testing.T) {
				if got := bindResult(t, d, dn, a.Password+"-wrong"); got != "52e" {
					t.Errorf("bind %s on %s with a wrong password: got %s, want 49 data 52e", dn, d.name, describe(got))
				}
				// Leave no bad-password count behind (bjones counts them).
				_ = bindResult(t, d, dn, a.Password)
			})
			if a.ADCode == "" && a.Login != testbed.Administrator.Login {
				t.Run(d.name+"/"+a.Login+" binds by UPN too", func(t *testing.T) {
					if got := bindResult(t, d, a.UPN(), a.Password); got != "" {
						t.Errorf("bind %s on %s: got %s, want success", a.UPN(), d.name, describe(got))
					}
				})
			}
		}
	}
}

func TestTestbedBJonesCountsBadPasswordsOnEachDC(t *testing.T) {
	for _, d := range dcs {
		t.Run(d.name, func(t *testing.T) {
			admin := adminConn(t, d)
			if got := bindResult(t, d, testbed.BJones.DN(), "not-his-password"); got != "52e" {
				t.Fatalf("wrong password for bjones: got %s, want 49 data 52e", describe(got))
			}
			if n := badPwdCountOf(t, admin, testbed.BJones.DN()); n < 1 {
				t.Errorf("badPwdCount of bjones on %s after a bad bind = %d, want >= 1 (his PSO has a lockout threshold)", d.name, n)
			}
			if got := bindResult(t, d, testbed.BJones.DN(), testbed.BJones.Password); got != "" {
				t.Fatalf("bjones with his password: got %s, want success", describe(got))
			}
			if n := badPwdCountOf(t, admin, testbed.BJones.DN()); n != 0 {
				t.Errorf("badPwdCount of bjones on %s after a good bind = %d, want 0", d.name, n)
			}
		})
	}
}

// unicodePwd is how AD takes a password: the quoted string in UTF-16LE.
func unicodePwd(password string) string {
	units := utf16.Encode([]rune(`"` + password + `"`))
	b := make([]byte, 2*len(units))
	for i, u := range units {
		binary.LittleEndian.PutUint16(b[2*i:], u)
	}
	return string(b)
}

func TestTestbedReplicatesBetweenDCs(t *testing.T) {
	const within = 10 * time.Second
	for _, dir := range []struct{ from, to dc }{{dcs[0], dcs[1]}, {dcs[1], dcs[0]}} {
		t.Run("a user added on "+dir.from.name+" can bind on "+dir.to.name+" within 10s and its deletion follows", func(t *testing.T) {
			login := fmt.Sprintf("repl%08x", rand.Uint32())
			password := "Passw0rd!" + login
			dn := "CN=" + login + "," + testbed.UsersDN
			from := adminConn(t, dir.from)
			to := adminConn(t, dir.to)

			add := ldap.NewAddRequest(dn, nil)
			add.Attribute("objectClass", []string{"user"})
			add.Attribute("sAMAccountName", []string{login})
			add.Attribute("userPrincipalName", []string{login + "@" + testbed.Realm})
			add.Attribute("userAccountControl", []string{"512"})
			add.Attribute("unicodePwd", []string{unicodePwd(password)})
			if err := from.Add(add); err != nil {
				t.Fatalf("add %s on %s: %v", dn, dir.from.name, err)
			}
			deleted := false
			t.Cleanup(func() {
				if !deleted {
					if err := from.Del(ldap.NewDelRequest(dn, nil)); err != nil {
						t.Errorf("clean up %s on %s: %v", dn, dir.from.name, err)
					}
				}
			})

			start := time.Now()
			waitFor(t, within, func() bool { return countUsers(t, to, login) == 1 },
				"%s added on %s is not visible on %s after %s", login, dir.from.name, dir.to.name, within)
			t.Logf("%s reached %s in %s", login, dir.to.name, time.Since(start).Round(10*time.Millisecond))
			if got := bindResult(t, dir.to, dn, password); got != "" {
				t.Errorf("bind as the replicated %s on %s: got %s, want success", login, dir.to.name, describe(got))
			}

			if err := from.Del(ldap.NewDelRequest(dn, nil)); err != nil {
				t.Fatalf("delete %s on %s: %v", dn, dir.from.name, err)
			}
			deleted = true
			waitFor(t, within, func() bool { return countUsers(t, to, login) == 0 },
				"%s deleted on %s is still on %s after %s", login, dir.from.name, dir.to.name, within)
		})
	}
}

// countUsers counts the users named login in the users OU (0 or 1).
func countUsers(t *testing.T, conn *ldap.Conn, login string) int {
	t.Helper()
	res, err := conn.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 10, false, "(&(objectClass=user)(sAMAccountName="+ldap.EscapeFilter(login)+"))", []string{"dn"}, nil))
	if err != nil {
		t.Fatalf("search %s: %v", login, err)
	}
	return len(res.Entries)
}

// waitFor polls cond every 100ms until it holds, failing with the message after limit.
func waitFor(t *testing.T, limit time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
