//go:build integration

package integration

import (
	"os"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// TestAuditOutputFile runs the real binary with audit.output set to a file:
// each bind decision is one JSON line there, with every field, and none in the
// process log; no password is in either.
func TestAuditOutputFile(t *testing.T) {
	auditPath := logPath(t, "audit") // in logDir: TestMain scans it for passwords too
	gw := startProcGateway(t, "gateway", map[string]any{"audit.output": auditPath})

	wrong := wrongPassword(t.Name())
	if code, diag := bindAt(t, gw.addr, testbed.JDoe.Login, testbed.JDoe.Password); code != 0 {
		t.Fatalf("jdoe with its password: result %d (%s), want 0", code, diag)
	}
	if code, _ := bindAt(t, gw.addr, testbed.JDoe.UPN(), wrong); code != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("jdoe with a wrong password: result %d, want 49", code)
	}

	lines := waitAudit(t, auditPath, 0, 2)
	if len(lines) != 2 {
		t.Fatalf("%d audit lines for 2 binds:\n%s", len(lines), tail(auditPath))
	}
	want := []struct {
		login, reason, adCode string
		result                int
	}{
		{testbed.JDoe.Login, "ok", "", 0},
		{testbed.JDoe.UPN(), "ad_refused", "52e", ldap.LDAPResultInvalidCredentials},
	}
	for i, l := range lines {
		w := want[i]
		if l.str("login") != w.login || l.str("user") != testbed.JDoe.DN() || l.num("result") != w.result ||
			l.str("reason") != w.reason || l.str("ad_code") != w.adCode {
			t.Errorf("audit line %d: login %q, user %q, result %d, reason %q, ad_code %q; want %q, %q, %d, %q, %q",
				i, l.str("login"), l.str("user"), l.num("result"), l.str("reason"), l.str("ad_code"),
				w.login, testbed.JDoe.DN(), w.result, w.reason, w.adCode)
		}
		if !strings.HasPrefix(l.str("client"), "127.0.0.1:") || l.num("conn_id") < 1 || l.str("dc") == "" ||
			l.str("dur") == "" || l.str("ts") == "" || l["cache_hit"] != false || l["offline"] != false {
			t.Errorf("audit line %d lacks a field (client 127.0.0.1:port, conn_id, dc, dur, ts, cache_hit false, offline false): %v", i, l)
		}
	}
	if got := auditLines(t, gw.logPath, 0); len(got) > 0 {
		t.Errorf("the process log holds %d audit lines, want none with audit.output set: %v", len(got), got)
	}
	outputs := 0
	for _, l := range readLog(t, gw.logPath) {
		if l.str("msg") == "audit log" && l.str("output") == auditPath {
			outputs++
		}
	}
	if outputs != 1 {
		t.Errorf("the process log says %d times that the audit lines go to %s, want once", outputs, auditPath)
	}
	for _, path := range []string{auditPath, gw.logPath} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{testbed.JDoe.Password, wrong} {
			if strings.Contains(string(data), pw) {
				t.Errorf("%s holds a password", path)
			}
		}
	}
}
