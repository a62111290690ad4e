//go:build integration

package integration

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestExportServesPascomsCSVFromSamba is what pascom's "Users from CSV"
// connector sees: the real binary syncs PBX-Users' nested members from Samba
// and serves the import at /export/users.csv, fetched here with curl.
func TestExportServesPascomsCSVFromSamba(t *testing.T) {
	g := startProcGateway(t, "export", nil)
	url := "http://" + g.httpAddr(t) + "/export/users.csv"

	// The first sync runs at start; until it is applied the export is 404.
	var headers, body string
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("curl", "-s", "-D", "-", url).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
		headers, body, _ = strings.Cut(string(out), "\r\n\r\n")
		if strings.HasPrefix(headers, "HTTP/1.1 200") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve the import within 60 s; last answer:\n%s", url, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	lines := strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n")
	const header = `"displayname","username","phone","givenname","surname","email","mobile","homephone","organisation","fax","phonemac"`
	if lines[0] != header {
		t.Fatalf("header row %q, want pascom's %q", lines[0], header)
	}
	rows := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Split(l, `","`)
		if len(f) < 2 {
			t.Fatalf("row %q is not a quoted CSV row", l)
		}
		if _, dup := rows[f[1]]; dup {
			t.Errorf("username %s has two rows", f[1])
		}
		rows[f[1]] = l
	}
	if got, want := rows["jdoe"], `"John Doe","jdoe","+1 555 0101","John","Doe","jdoe@aadds.example.test","+1 555 0201",`; !strings.HasPrefix(got, want) {
		t.Errorf("jdoe's row %q, want it to start %q", got, want)
	}
	if got := rows["sobrien"]; !strings.HasPrefix(got, `"Seán O'Brien, Jr.","sobrien",`) {
		t.Errorf("sobrien's row %q, want the display name with its comma inside one quoted field", got)
	}
	if _, ok := rows["asmith"]; !ok {
		t.Errorf("asmith (in PBX-Admins, nested in PBX-Users) is not imported: rows %v", rows)
	}
	if strings.Contains(body, "svc-pbx") {
		t.Errorf("the service account appears in the import:\n%s", body)
	}

	etag := regexp.MustCompile(`(?mi)^etag: (.+?)\r?$`).FindStringSubmatch(headers)
	if etag == nil {
		t.Fatalf("no ETag in the answer:\n%s", headers)
	}
	out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: "+etag[1], url).CombinedOutput()
	if err != nil || string(out) != "304" {
		t.Errorf("a second request with If-None-Match %s got %q (%v), want 304", etag[1], out, err)
	}
}
