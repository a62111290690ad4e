//go:build integration

package integration

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// adminGet fetches path from the gateway's HTTP listener, with the bearer
// token when it is not empty.
func adminGet(t *testing.T, base, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// leafNotAfter is the expiry of the certificate the DC at addr presents,
// read by a client of the test's own.
func leafNotAfter(t *testing.T, addr, serverName string) time.Time {
	t.Helper()
	pem, err := os.ReadFile(testbed.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].NotAfter
}

// TestMetricsHealthAndStatusFromSamba is what an admin's monitoring sees of
// the real binary in front of the Samba DCs: after a good and a wrong
// password, /metrics counts both (the wrong one with AD's 52e), shows both
// breakers closed and both DCs' certificate expiry (dc2 only ever gets the
// certificate check) and the first sync run; /readyz is 200 for anyone;
// /status lists both DCs, the last sync and the failure, without a password.
func TestMetricsHealthAndStatusFromSamba(t *testing.T) {
	const token = "obs-metrics-token"
	g := startProcGateway(t, "metrics", map[string]any{
		"http.bearer_token": token,
		// dc2 is never used while dc1 is up: its certificate check comes at
		// the first probe interval.
		"upstream.breaker.probe_interval": "1s",
		// Generous: the test bed is shared and the machine loaded; a timeout
		// would open a breaker and change what the metrics should show.
		"upstream.op_timeout": "20s",
	})
	base := "http://" + g.httpAddr(t)

	if code, body := adminGet(t, base, "/healthz", ""); code != 200 {
		t.Errorf("/healthz without a token: %d %q, want 200", code, body)
	}
	if code, body := adminGet(t, base, "/readyz", ""); code != 200 || !strings.Contains(body, "2 of 2 domain controllers usable") {
		t.Errorf("/readyz without a token: %d %q, want 200 with both DCs usable", code, body)
	}
	for _, path := range []string{"/metrics", "/status"} {
		if code, _ := adminGet(t, base, path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", path, code)
		}
	}

	wrong := wrongPassword(t.Name())
	if code, diag := bindAt(t, g.addr, testbed.JDoe.Login, testbed.JDoe.Password); code != 0 {
		t.Fatalf("jdoe with its password: %d (%s), want 0", code, diag)
	}
	if code, _ := bindAt(t, g.addr, testbed.JDoe.UPN(), wrong); code != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("jdoe with a wrong password: %d, want 49", code)
	}

	expiry := func(addr, name string) string {
		return strconv.FormatFloat(float64(leafNotAfter(t, addr, name).Unix()), 'g', -1, 64)
	}
	want := []string{
		`ldapgate_binds_total{ad_code="none",reason="ok",result="0"} 1`,
		`ldapgate_binds_total{ad_code="52e",reason="ad_refused",result="49"} 1`,
		`ldapgate_bind_duration_seconds_count{result="49"} 1`,
		`ldapgate_upstream_breaker_state{dc="ldaps://127.0.0.1:636",state="closed"} 1`,
		`ldapgate_upstream_breaker_state{dc="ldaps://127.0.0.2:636",state="closed"} 1`,
		`ldapgate_upstream_certificate_not_after_timestamp_seconds{dc="ldaps://127.0.0.1:636"} ` + expiry("127.0.0.1:636", testbed.DC1Name),
		`ldapgate_upstream_certificate_not_after_timestamp_seconds{dc="ldaps://127.0.0.2:636"} ` + expiry("127.0.0.2:636", testbed.DC2Name),
		`ldapgate_upstream_binds_total{dc="ldaps://127.0.0.1:636"} 2`,
		`ldapgate_upstream_binds_total{dc="ldaps://127.0.0.2:636"} 0`,
		`ldapgate_sync_runs_total{kind="full",outcome="applied",trigger="schedule"} 1`,
		`ldapgate_sync_last_success_timestamp_seconds `,
		`ldapgate_sync_view_entries `,
	}
	// The sync runs at start and the certificate check at the first probe
	// interval: wait until the metrics show both, bounded.
	var body string
	var missing []string
	for deadline := time.Now().Add(60 * time.Second); ; {
		var code int
		code, body = adminGet(t, base, "/metrics", token)
		missing = missing[:0]
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = append(missing, w)
			}
		}
		if code == 200 && len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s /metrics (%d) still lacks:\n%s\nthe ldapgate_ lines it has:\n%s", code, strings.Join(missing, "\n"), ldapgateLines(body))
		}
		time.Sleep(200 * time.Millisecond) // polling interval of a bounded wait
	}

	code, statusBody := adminGet(t, base, "/status", token)
	if code != 200 {
		t.Fatalf("/status: %d %s", code, statusBody)
	}
	var st struct {
		Ready struct{ Ready bool } `json:"ready"`
		DCs   []struct {
			URL          string    `json:"url"`
			Breaker      string    `json:"breaker"`
			Usable       bool      `json:"usable"`
			CertNotAfter time.Time `json:"cert_not_after"`
		} `json:"dcs"`
		Sync struct {
			Enabled     bool `json:"enabled"`
			ViewEntries int  `json:"view_entries"`
			Runs        []struct {
				Kind, Outcome, DC string
				Added, Entries    int
			} `json:"runs"`
			Plan *struct{ Unchanged int } `json:"plan"`
		} `json:"sync"`
		Auth struct {
			ByReason []struct {
				Reason string
				Count  int
			} `json:"by_reason"`
			Recent []struct {
				Login, Reason string
				ADCode        string `json:"ad_code"`
				Result        int
				DC            string
			} `json:"recent"`
		} `json:"auth"`
	}
	if err := json.Unmarshal([]byte(statusBody), &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, statusBody)
	}
	if !st.Ready.Ready || len(st.DCs) != 2 || st.DCs[0].URL != testbed.DC1URL || st.DCs[1].URL != testbed.DC2URL {
		t.Fatalf("/status: ready %t, DCs %+v; want ready with dc1 and dc2 in order", st.Ready.Ready, st.DCs)
	}
	for _, d := range st.DCs {
		if d.Breaker != "closed" || !d.Usable || d.CertNotAfter.IsZero() {
			t.Errorf("/status DC %+v: want closed, usable, with its certificate expiry", d)
		}
	}
	if len(st.Sync.Runs) == 0 || !st.Sync.Enabled {
		t.Fatalf("/status lists no sync run: %+v", st.Sync)
	}
	last := st.Sync.Runs[0]
	if last.Kind != "full" || last.Outcome != "applied" || last.DC != testbed.DC1URL || last.Added == 0 || last.Entries != st.Sync.ViewEntries || st.Sync.Plan == nil {
		t.Errorf("/status last sync %+v (view %d entries, plan %v), want the first full sync from dc1 that added the users", last, st.Sync.ViewEntries, st.Sync.Plan)
	}
	if len(st.Auth.Recent) != 1 || len(st.Auth.ByReason) != 1 || st.Auth.ByReason[0].Reason != "ad_refused" {
		t.Fatalf("/status failures: %+v, want jdoe's wrong password only", st.Auth)
	}
	if f := st.Auth.Recent[0]; f.Login != testbed.JDoe.UPN() || f.Reason != "ad_refused" || f.ADCode != "52e" || f.Result != 49 || f.DC != testbed.DC1URL {
		t.Errorf("/status failure %+v, want jdoe's UPN, ad_refused, 52e, 49 from dc1", f)
	}
	for _, pw := range []string{wrong, testbed.JDoe.Password, testbed.Service.Password, token} {
		if strings.Contains(statusBody, pw) || strings.Contains(body, pw) {
			t.Errorf("/status or /metrics holds a secret (%s…)", pw[:4])
		}
	}
}

// ldapgateLines are the ldapgate_ samples of a scrape, for a failure message.
func ldapgateLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "ldapgate_") && !strings.Contains(l, "_bucket{") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
