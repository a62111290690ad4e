package main

import (
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

const (
	testDC1 = "ldaps://dc1.example.test:636"
	testDC2 = "ldaps://dc2.example.test:636"
)

// fakeCluster is the page's view of two DCs.
type fakeCluster struct {
	mu    sync.Mutex
	stats []upstream.DCStats
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{stats: []upstream.DCStats{
		{URL: testDC1, Breaker: upstream.BreakerClosed},
		{URL: testDC2, Breaker: upstream.BreakerOpen, LastError: `dial: <script>alert("dc")</script>`},
	}}
}

func (c *fakeCluster) Stats() []upstream.DCStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]upstream.DCStats(nil), c.stats...)
}

func (c *fakeCluster) SetDrained(u string, drained bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.stats {
		if c.stats[i].URL == u {
			c.stats[i].Drained = drained
			return nil
		}
	}
	return upstream.ErrUnknownServer
}

func (c *fakeCluster) drained(u string) bool {
	for _, s := range c.Stats() {
		if s.URL == u {
			return s.Drained
		}
	}
	return false
}

// pageHarness is a status page on an httptest server.
type pageHarness struct {
	srv      *httptest.Server
	cluster  *fakeCluster
	triggers chan bool
	logs     *observer.ObservedLogs
}

func newPageHarness(t *testing.T, h configs.HTTP, syncOn bool) *pageHarness {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	ph := &pageHarness{cluster: newFakeCluster(), triggers: make(chan bool, 10), logs: logs}
	p := &statusPage{cluster: ph.cluster, log: zap.New(core), report: ph.report, trigger: func(full bool) syncTrigger {
		if !syncOn {
			return triggerOff
		}
		ph.triggers <- full
		return triggerQueued
	}}
	mux := http.NewServeMux()
	p.register(mux, usersync.NewHTTPAuth(h, nil))
	ph.srv = httptest.NewServer(mux)
	t.Cleanup(ph.srv.Close)
	return ph
}

// hostile is a value from a client or from AD that must reach the page as text.
const hostile = `"><img src=x onerror=alert(1)>`

// report is the status report of the fake cluster, with a sync run, a plan
// and failed binds that all carry hostile text.
func (ph *pageHarness) report() statusReport {
	now := time.Now()
	rep := statusReport{
		Version: "test", StartedAt: now.Add(-time.Hour), GeneratedAt: now,
		Sync: syncStatus{Enabled: true, NextAt: now.Add(time.Minute), ViewEntries: 2,
			Runs: []syncRun{{Kind: "incremental", Outcome: "source-error", DC: testDC1, StartedAt: now, Error: "read: " + hostile}},
			Plan: &planSummary{Mode: usersync.ModeCreateUpdate, Creates: 1, Updates: 1, Rows: []planRow{
				{Action: "create", Username: "new" + hostile, DisplayName: "New " + hostile},
				{Action: "update", Username: "jdoe", DisplayName: "John Doe", Changes: []string{"displayname: John → " + hostile}},
			}, RowsOmitted: 3},
		},
		Auth: authStatus{Counted: 1, Since: now, ByReason: []reasonCount{{Reason: "no_such_user", Count: 1}},
			Recent: []authFailure{{At: now, Client: "192.0.2.7:50000", Login: hostile, Result: 49, Reason: "no_such_user"}}},
	}
	for _, s := range ph.cluster.Stats() {
		rep.DCs = append(rep.DCs, newDCStatus(s))
	}
	return rep
}

// do sends a request with the headers given as "Name: value" and returns the
// answer's status, headers and body.
func (ph *pageHarness) do(t *testing.T, method, path string, form url.Values, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, ph.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the answer to %s %s: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(data)
}

const browserAccept = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

func TestStatusPageShowsTheReportEscaped(t *testing.T) {
	t.Parallel()
	ph := newPageHarness(t, configs.HTTP{}, true)
	status, h, body := ph.do(t, http.MethodGet, "/", nil, browserAccept)
	if status != http.StatusOK {
		t.Fatalf("GET / answered %d, want 200:\n%s", status, body)
	}
	escaped := template.HTMLEscapeString(hostile)
	for _, want := range []string{
		testDC1, testDC2, "breaker open", `&lt;script&gt;alert(&#34;dc&#34;)&lt;/script&gt;`, // the DCs
		"read: " + escaped, "source-error", // the sync run
		"new" + escaped, "displayname: John → " + escaped, "3 more rows", // the plan
		"no_such_user", "192.0.2.7:50000", // the failures
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not show %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Errorf("the page holds an element made of a DC's error, a login or a user's field:\n%s", body)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q, want no scripts and no framing", csp)
	}
	if got := h.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("X-Frame-Options %q, want DENY", got)
	}
}

func TestStatusPageRefreshesOnlyWithinBounds(t *testing.T) {
	t.Parallel()
	ph := newPageHarness(t, configs.HTTP{}, true)
	for _, c := range []struct {
		query string
		want  string // the meta refresh, "" for none
	}{
		{"", ""},
		{"?refresh=10", `<meta http-equiv="refresh" content="10">`},
		{"?refresh=1", ""},
		{"?refresh=99999", ""},
		{"?refresh=10%3Burl%3Dhttp://evil.example", ""},
	} {
		_, _, body := ph.do(t, http.MethodGet, "/"+c.query, nil)
		got := strings.Contains(body, `http-equiv="refresh"`)
		if c.want == "" && got {
			t.Errorf("GET /%s refreshes itself, want no auto-refresh", c.query)
		}
		if c.want != "" && !strings.Contains(body, c.want) {
			t.Errorf("GET /%s does not hold %s", c.query, c.want)
		}
	}
}

func TestDrainFromABrowserFormRedirectsToThePage(t *testing.T) {
	t.Parallel()
	ph := newPageHarness(t, configs.HTTP{}, true)
	status, h, body := ph.do(t, http.MethodPost, pathDrain, url.Values{"url": {testDC1}},
		browserAccept, "Origin: "+ph.srv.URL, "Sec-Fetch-Site: same-origin")
	if status != http.StatusSeeOther || h.Get("Location") != "/" {
		t.Fatalf("the drain form answered %d (Location %q), want 303 to /:\n%s", status, h.Get("Location"), body)
	}
	if !ph.cluster.drained(testDC1) {
		t.Fatal("dc1 is not drained after the drain form")
	}
	_, _, page := ph.do(t, http.MethodGet, "/", nil)
	if !strings.Contains(page, "drained") || !strings.Contains(page, "Undrain") {
		t.Errorf("the page after the drain does not show dc1 drained with an Undrain button:\n%s", page)
	}
	status, _, _ = ph.do(t, http.MethodPost, pathUndrain, url.Values{"url": {testDC1}}, browserAccept, "Sec-Fetch-Site: same-origin")
	if status != http.StatusSeeOther || ph.cluster.drained(testDC1) {
		t.Errorf("the undrain form answered %d and dc1 drained=%v, want 303 and back in service", status, ph.cluster.drained(testDC1))
	}
}

func TestDrainAPIAnswersJSONAndLogsWhoDidIt(t *testing.T) {
	t.Parallel()
	ph := newPageHarness(t, configs.HTTP{}, true)
	status, h, body := ph.do(t, http.MethodPost, pathDrain, url.Values{"url": {testDC2}})
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("POST %s answered %d %s, want 200 JSON:\n%s", pathDrain, status, h.Get("Content-Type"), body)
	}
	var rep actionReply
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("the answer is not JSON (%v):\n%s", err, body)
	}
	if rep.Action != "drain" || rep.URL != testDC2 || !ph.cluster.drained(testDC2) {
		t.Errorf("answer %+v and dc2 drained=%v, want action drain of %s applied", rep, ph.cluster.drained(testDC2), testDC2)
	}
	logged := ph.logs.FilterMessage("admin action").AllUntimed()
	if len(logged) != 1 {
		t.Fatalf("%d \"admin action\" log lines, want 1", len(logged))
	}
	fields := logged[0].ContextMap()
	if fields["action"] != "drain" || fields["upstream"] != testDC2 || !strings.HasPrefix(fields["client"].(string), "127.0.0.1:") {
		t.Errorf("the action's log line has %v, want action drain, upstream %s and the client's address", fields, testDC2)
	}
}

func TestActionsRefuseBadRequests(t *testing.T) {
	t.Parallel()
	ph := newPageHarness(t, configs.HTTP{}, true)
	for _, c := range []struct {
		name         string
		method, path string
		form         url.Values
		headers      []string
		status       int
		body         string
	}{
		{"a drain without url says which DCs there are", http.MethodPost, pathDrain, url.Values{}, nil, http.StatusBadRequest, testDC1},
		{"a drain of an unknown DC names the configured ones", http.MethodPost, pathDrain, url.Values{"url": {"ldaps://other:636"}}, nil, http.StatusNotFound, testDC2},
		{"a GET of an action is not allowed", http.MethodGet, pathDrain + "?url=" + url.QueryEscape(testDC1), nil, nil, http.StatusMethodNotAllowed, ""},
		{"a POST to the page is not allowed", http.MethodPost, "/", url.Values{"url": {testDC1}}, nil, http.StatusMethodNotAllowed, ""},
		{"a sync with a bad full flag says what to send", http.MethodPost, pathSync, url.Values{"full": {"maybe"}}, nil, http.StatusBadRequest, "full=1"},
		{"a POST from another site's page is refused", http.MethodPost, pathDrain, url.Values{"url": {testDC1}},
			[]string{"Origin: http://evil.example", browserAccept}, http.StatusForbidden, "another origin"},
		{"a POST a browser marks cross-site is refused", http.MethodPost, pathDrain, url.Values{"url": {testDC1}},
			[]string{"Sec-Fetch-Site: cross-site"}, http.StatusForbidden, "another origin"},
		{"a POST a browser marks same-site (another port) is refused", http.MethodPost, pathSync, url.Values{},
			[]string{"Sec-Fetch-Site: same-site"}, http.StatusForbidden, "another origin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := ph.do(t, c.method, c.path, c.form, c.headers...)
			if status != c.status || !strings.Contains(body, c.body) {
				t.Errorf("answered %d, want %d with %q:\n%s", status, c.status, c.body, body)
			}
		})
	}
	if ph.cluster.drained(testDC1) || ph.cluster.drained(testDC2) {
		t.Errorf("a refused request drained a DC: %+v", ph.cluster.Stats())
	}
	if len(ph.triggers) != 0 {
		t.Errorf("a refused request started a sync")
	}
	if n := ph.logs.FilterMessage("admin action refused: cross-site request").Len(); n != 3 {
		t.Errorf("%d cross-site refusals logged, want 3", n)
	}
}

func TestSyncActionTriggersTheLoop(t *testing.T) {
	t.Parallel()
	ph := newPageHarness(t, configs.HTTP{}, true)
	for _, c := range []struct {
		form url.Values
		full bool
	}{
		{url.Values{}, false},
		{url.Values{"full": {"1"}}, true},
	} {
		status, _, body := ph.do(t, http.MethodPost, pathSync, c.form)
		if status != http.StatusOK {
			t.Fatalf("POST %s %s answered %d, want 200:\n%s", pathSync, c.form.Encode(), status, body)
		}
		if got := <-ph.triggers; got != c.full {
			t.Errorf("POST %s %s triggered full=%v, want %v", pathSync, c.form.Encode(), got, c.full)
		}
	}

	off := newPageHarness(t, configs.HTTP{}, false)
	status, _, body := off.do(t, http.MethodPost, pathSync, url.Values{})
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "sync.enabled") {
		t.Errorf("a sync without the sync loop answered %d, want 503 naming sync.enabled:\n%s", status, body)
	}
}

func TestPageAndActionsNeedTheListenersCredentials(t *testing.T) {
	t.Parallel()
	ph := newPageHarness(t, configs.HTTP{BasicUser: "admin", BasicPassword: "s3cret"}, true)
	for _, c := range []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodGet, "/", nil},
		{http.MethodPost, pathDrain, url.Values{"url": {testDC1}}},
		{http.MethodPost, pathSync, url.Values{}},
	} {
		if status, _, _ := ph.do(t, c.method, c.path, c.form); status != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials answered %d, want 401", c.method, c.path, status)
		}
	}
	if ph.cluster.drained(testDC1) || len(ph.triggers) != 0 {
		t.Error("an unauthenticated request changed the gateway")
	}
	basic := "Authorization: Basic YWRtaW46czNjcmV0" // admin:s3cret
	if status, _, _ := ph.do(t, http.MethodPost, pathDrain, url.Values{"url": {testDC1}}, basic); status != http.StatusOK || !ph.cluster.drained(testDC1) {
		t.Errorf("a drain with the credentials answered %d (dc1 drained=%v), want 200 and dc1 drained", status, ph.cluster.drained(testDC1))
	}
	if logged := ph.logs.FilterMessage("admin action").AllUntimed(); len(logged) != 1 || logged[0].ContextMap()["http_user"] != "admin" {
		t.Errorf("the action's log lines %v, want one naming http_user admin", logged)
	}
}
