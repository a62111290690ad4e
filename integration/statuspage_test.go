//go:build integration

package integration

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// Where the status page test leaves its screenshot, and the bounds of its
// browser steps.
const (
	chromiumPath = "/usr/bin/chromium"
	artifactsDir = "/var/tmp/ldapgate-artifacts"
	browserStart = 30 * time.Second  // Chromium starts and opens a tab
	browserStep  = 20 * time.Second  // one navigation, click or read
	pageWait     = 120 * time.Second // a sync shows on the page (2 cores shared by many tests)
)

// The admin listener's basic-auth credentials in the status page tests.
const pageUser, pagePassword = "pbx-admin", "page-test-Passw0rd"

// The test bed's DCs as upstream.servers names them (configs/testbed.yaml).
const (
	dc1URL = "ldaps://127.0.0.1:636"
	dc2URL = "ldaps://127.0.0.2:636"
)

// browser is a headless Chromium tab, driven with chromedp.
type browser struct {
	ctx    context.Context
	output string // Chromium's own output, for failure messages
}

// newBrowser starts Debian's Chromium, headless, with a fresh profile and
// everything that would reach out to the network turned off (the machine has
// none: without these flags Chromium floods refused connections). The
// cleanup ends it.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v: install Debian's chromium package (integration/test-all.sh does)", chromiumPath, err)
	}
	b := &browser{output: filepath.Join(t.TempDir(), "chromium.log")}
	out, err := os.Create(b.output)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Close() })
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		chromedp.WSURLReadTimeout(browserStart),
		chromedp.CombinedOutput(out),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b.ctx = ctx
	// The first action starts the browser, and the browser lives as long as
	// the context of that first call: it has no deadline of its own, so the
	// start is bounded by the watchdog below instead.
	started := make(chan error, 1)
	go func() { _, err := chromedp.Run(ctx, chromedp.Location()); started <- err }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start %s: %v\nits output:\n%s", chromiumPath, err, b.tail())
		}
	case <-time.After(browserStart):
		t.Fatalf("%s did not open a tab within %s; its output:\n%s", chromiumPath, browserStart, b.tail())
	}
	return b
}

// clickAndLoad clicks the element sel selects, waits until the page the click
// leads to has loaded (after redirects) and returns its URL and status.
func (b *browser) clickAndLoad(t *testing.T, what string, sel chromedp.CSS) (string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(sel))
	if err != nil {
		t.Fatalf("browser: %s: %v (bound %s)", what, describeBrowserErr(err, ctx), browserStep)
	}
	return resp.URL, resp.Status
}

// reloadUntil reloads the page (twice a second, at most for pageWait) until
// the text of the element sel selects satisfies ok, and returns that text.
func (b *browser) reloadUntil(t *testing.T, sel chromedp.CSS, want string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(pageWait)
	for {
		got := b.text(t, sel)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status page did not show %s within %s; %s reads:\n%s", want, pageWait, sel, got)
		}
		time.Sleep(500 * time.Millisecond) // the pace of the reloads, not a synchronisation
		b.do(t, "reload the status page", chromedp.Reload())
	}
}

// authenticate sends the listener's basic-auth credentials with every request
// of the tab, as a browser does once the admin typed them.
func (b *browser) authenticate(t *testing.T, user, pass string) {
	t.Helper()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	b.do(t, "send the listener's basic-auth credentials", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	}))
}

// tail is the end of Chromium's output.
func (b *browser) tail() string { return tail(b.output) }

// do runs steps within browserStep, failing the test with what was being
// done.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v (bound %s)", what, describeBrowserErr(err, ctx), browserStep)
	}
}

// text reads the text of the element that sel selects.
func (b *browser) text(t *testing.T, sel chromedp.CSS) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("browser: read the text of %s: %v (bound %s)", sel, describeBrowserErr(err, ctx), browserStep)
	}
	return s
}

// describeBrowserErr says a timeout in words: chromedp waits for an element
// until its context ends.
func describeBrowserErr(err error, ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "timed out (the element never showed up)"
	}
	return err.Error()
}

// TestStatusPageDrainsDC1WithAClick is an admin at the status page in a real
// browser: against a gateway on the Samba test bed (both DCs, the sync loop
// on, the listener behind basic auth) the page shows both DCs and the first
// sync; a click on DC1's Drain button drains it, the reloaded page says so,
// and the next bind through the gateway goes to DC2. A full-page screenshot is
// left in /var/tmp/ldapgate-artifacts/statuspage.png.
func TestStatusPageDrainsDC1WithAClick(t *testing.T) {
	g := startProcGateway(t, "statuspage", map[string]any{
		"http.basic_user":     pageUser,
		"http.basic_password": pagePassword,
		// The machine is shared and loaded: a sync's page of AD must not time
		// out for that.
		"upstream.op_timeout": "30s",
	})
	base := "http://" + g.httpAddr(t)
	b := newBrowser(t)
	b.authenticate(t, pageUser, pagePassword)

	// The first sync starts with the gateway; the page lists it once it ended.
	b.do(t, "load the status page", chromedp.Navigate(base+"/"))
	b.reloadUntil(t, "#syncs", "the first sync listed", func(s string) bool { return strings.Contains(s, "first sync") })
	// Whatever became of it (a loaded machine can time it out), a full sync
	// started from the page must show up as the latest run, applied or with
	// nothing to change.
	page := base + "/"
	if url, status := b.clickAndLoad(t, "click Full sync now", `#syncs button[name="full-sync"]`); url != page || status != http.StatusOK {
		t.Errorf("Full sync now led to %s (%d), want the status page %s (200)", url, status, page)
	}
	latest := b.reloadUntil(t, "#syncs tr.sync-run", "the manual full sync as the latest run, ended", func(s string) bool {
		return strings.Contains(s, "(manual)")
	})
	if !strings.Contains(latest, "full") || !(strings.Contains(latest, "applied") || strings.Contains(latest, "unchanged")) {
		t.Errorf("the latest sync reads %q, want the manual full sync applied (or unchanged after the first)", latest)
	}
	waitLog(t, g.logPath, 0, func(l logLine) bool {
		return l.str("msg") == "admin action" && l.str("action") == "sync" && l.str("full") == "1"
	}, "\"admin action\" line for the full sync")

	row1 := fmt.Sprintf(`tr[data-dc=%q]`, dc1URL)
	row2 := fmt.Sprintf(`tr[data-dc=%q]`, dc2URL)
	for _, row := range []chromedp.CSS{chromedp.CSS(row1), chromedp.CSS(row2)} {
		if got := b.text(t, row); !strings.Contains(got, "breaker closed") || strings.Contains(got, "drained") {
			t.Errorf("the DC row %s reads %q, want it in service (breaker closed, not drained)", row, got)
		}
	}
	// DC1 took the syncs: its certificate was seen.
	if got := b.text(t, chromedp.CSS(row1+" td.dc-cert")); !strings.Contains(got, "days left") {
		t.Errorf("DC1's certificate cell reads %q, want the days its certificate has left", got)
	}

	if url, status := b.clickAndLoad(t, "click Drain on DC1", chromedp.CSS(row1+` button[name="drain"]`)); url != page || status != http.StatusOK {
		t.Errorf("Drain led to %s (%d), want the status page %s (200, after a 303)", url, status, page)
	}
	if got := b.text(t, chromedp.CSS(row1+" td.dc-state")); !strings.Contains(got, "drained") {
		t.Errorf("after the click DC1's state reads %q, want drained", got)
	}
	if got := b.text(t, chromedp.CSS(row1+" td.noprint")); !strings.Contains(got, "Undrain") {
		t.Errorf("after the click DC1's action reads %q, want Undrain", got)
	}
	if got := b.text(t, chromedp.CSS(row2+" td.dc-state")); strings.Contains(got, "drained") {
		t.Errorf("after the click on DC1, DC2's state reads %q, want it in service", got)
	}
	waitLog(t, g.logPath, 0, func(l logLine) bool {
		return l.str("msg") == "admin action" && l.str("action") == "drain" && l.str("upstream") == dc1URL &&
			strings.HasPrefix(l.str("client"), "127.0.0.1:") && l.str("http_user") == pageUser
	}, "\"admin action\" line for the drain of DC1 naming the client and http_user "+pageUser)

	offset := logSize(t, g.logPath)
	if code, diag := bindAt(t, g.addr, testbed.JDoe.UPN(), testbed.JDoe.Password); code != 0 {
		t.Fatalf("bind as %s with DC1 drained: result %d (%s), want success from DC2", testbed.JDoe.UPN(), code, diag)
	}
	if got := waitAudit(t, g.logPath, offset, 1)[0]; got.str("dc") != dc2URL {
		t.Errorf("the bind with DC1 drained went to %q (audit line %v), want %s", got.str("dc"), got, dc2URL)
	}

	// A login is whatever a client sends: the page shows it as text.
	hostile := `"><img src=x onerror=alert(1)>@` + testbed.Realm
	if code, _ := bindAt(t, g.addr, hostile, "whatever"); code != 49 {
		t.Fatalf("bind as %q: result %d, want 49 (no such user)", hostile, code)
	}

	b.do(t, "reload the page after the binds", chromedp.Navigate(page))
	b.do(t, "look for an element made of the hostile login", chromedp.WaitNotPresent(chromedp.CSS("#failures img")))
	if got := b.text(t, "#failures"); !strings.Contains(got, hostile) {
		t.Errorf("the recent failures do not show the login %q as text:\n%s", hostile, got)
	}
	if got := b.text(t, chromedp.CSS(row2+" td.dc-cert")); !strings.Contains(got, "days left") {
		t.Errorf("after the bind on DC2, its certificate cell reads %q, want the days its certificate has left", got)
	}
	shot := screenshot(t, b, "statuspage.png")
	t.Logf("status page screenshot (DC1 drained, the bind gone to DC2, a hostile login refused): %s", shot)

	if url, status := b.clickAndLoad(t, "click Undrain on DC1", chromedp.CSS(row1+` button[name="undrain"]`)); url != page || status != http.StatusOK {
		t.Errorf("Undrain led to %s (%d), want the status page %s (200)", url, status, page)
	}
	if got := b.text(t, chromedp.CSS(row1+" td.dc-state")); strings.Contains(got, "drained") {
		t.Errorf("after Undrain DC1's state reads %q, want it back in service", got)
	}
}

// screenshot writes a full-page PNG of the browser's page to artifactsDir and
// returns its path.
func screenshot(t *testing.T, b *browser, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browser: screenshot: %v", describeBrowserErr(err, ctx))
	}
	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifactsDir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestStatusPageRefusesAnotherSitesForm is a cross-site request forgery in a
// real browser: a page on another origin (another port of 127.0.0.1, so the
// same site, a different origin) posts a form to the drain endpoint while the
// browser holds the admin's credentials. The gateway refuses it and the DC
// stays in service.
func TestStatusPageRefusesAnotherSitesForm(t *testing.T) {
	g := startProcGateway(t, "statuspage-csrf", map[string]any{
		"sync.enabled":        false,
		"http.basic_user":     pageUser,
		"http.basic_password": pagePassword,
	})
	base := "http://" + g.httpAddr(t)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><title>free prizes</title>
<form method="post" action="%s/api/dcs/drain"><input type="hidden" name="url" value="%s"><button id="go">Claim</button></form>`,
			html.EscapeString(base), html.EscapeString(dc1URL))
	}))
	t.Cleanup(evil.Close)

	b := newBrowser(t)
	b.authenticate(t, pageUser, pagePassword)
	b.do(t, "load the other site's page", chromedp.Navigate(evil.URL+"/"))
	if _, status := b.clickAndLoad(t, "submit the other site's form to the drain endpoint", "#go"); status != http.StatusForbidden {
		t.Errorf("the other site's form got %d from the gateway, want 403", status)
	}
	if got := b.text(t, "#error"); !strings.Contains(got, "another origin") {
		t.Errorf("the gateway answered the other site's form with %q, want a refusal naming the other origin", got)
	}
	b.do(t, "load the status page", chromedp.Navigate(base+"/"))
	if got := b.text(t, chromedp.CSS(fmt.Sprintf(`tr[data-dc=%q] td.dc-state`, dc1URL))); strings.Contains(got, "drained") {
		t.Errorf("DC1 reads %q after the other site's form, want it in service", got)
	}
	waitLog(t, g.logPath, 0, func(l logLine) bool {
		return l.str("msg") == "admin action refused: cross-site request" && l.str("origin") == evil.URL
	}, "\"admin action refused: cross-site request\" line with the origin "+evil.URL)
}
