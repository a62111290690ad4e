//go:build integration

package integration

// 'ldapgate bench' against the Samba test bed, through the real binary: the
// load an admin puts on the gateway (and, for comparison, on a DC directly).

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// benchJSON is the part of 'ldapgate bench --json' the test reads.
type benchJSON struct {
	Mode      string `json:"mode"`
	Ops       int    `json:"ops"`
	OK        int    `json:"ok"`
	LatencyMS struct {
		P50 float64 `json:"p50"`
		Max float64 `json:"max"`
	} `json:"latency_ms"`
	Codes []struct {
		Code  string `json:"code"`
		Count int    `json:"count"`
	} `json:"codes"`
	Timeline []struct {
		OK int `json:"ok"`
	} `json:"timeline"`
}

func TestBenchAgainstSamba(t *testing.T) {
	// The test is about what bench reports, not about Samba's speed: on a
	// loaded machine Samba stalls for seconds now and then, so the bounds are
	// generous (the gateway's upstream timeout, bench's own per operation).
	g := startProcGateway(t, "bench", map[string]any{"upstream.op_timeout": "20s"})
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// The logins a PBX sends, sobrien's UTF-8 password among them.
	var logins, upns strings.Builder
	for _, a := range []testbed.Account{testbed.JDoe, testbed.ASmith, testbed.SOBrien} {
		logins.WriteString(a.Login + "," + a.Password + "\n")
		upns.WriteString(a.UPN() + "," + a.Password + "\n")
	}
	loginsFile, upnsFile := write("logins.csv", logins.String()), write("upns.csv", upns.String())
	svcPW := write("svc.pw", testbed.Service.Password+"\n")
	gateway := "ldap://" + g.addr

	tests := []struct {
		name string
		args []string
		ops  int
	}{
		{"binds through the gateway on reused connections", []string{"--url", gateway, "--logins", loginsFile, "--count", "60"}, 60},
		{"binds through the gateway, a new connection per bind as a PBX does", []string{"--url", gateway, "--logins", loginsFile, "--count", "30", "--new-conn"}, 30},
		{"pascom's search-then-bind through the gateway", []string{"--url", gateway, "--mode", "search-then-bind", "--logins", loginsFile, "--count", "30",
			"--proxy-dn", testbed.Service.UPN(), "--proxy-password-file", svcPW, "--base-dn", testbed.UsersDN}, 30},
		{"binds straight to dc1 over verified LDAPS", []string{"--url", testbed.DC1URL, "--ca-file", testbed.CAFile(), "--logins", upnsFile, "--count", "30"}, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runLdapgate(t, "", append([]string{"bench", "--json", "--concurrency", "4", "--op-timeout", "25s"}, tt.args...)...)
			for _, a := range testbed.Accounts {
				if strings.Contains(r.stdout+r.stderr, a.Password) {
					t.Errorf("%s's password is in bench's output", a.Login)
				}
			}
			var rep benchJSON
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.exit != 0 {
				t.Fatalf("exit %d, %v; stdout:\n%s\nstderr:\n%s", r.exit, err, r.stdout, r.stderr)
			}
			timeline := 0
			for _, s := range rep.Timeline {
				timeline += s.OK
			}
			if rep.Ops != tt.ops || rep.OK != tt.ops || len(rep.Codes) != 1 || rep.Codes[0].Code != "0" || timeline != tt.ops ||
				rep.LatencyMS.P50 <= 0 || rep.LatencyMS.Max < rep.LatencyMS.P50 {
				t.Errorf("want %d successful operations, got:\n%s", tt.ops, r.stdout)
			}
		})
	}
}
