package main

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// The status page: GET / of the admin listener renders the status report as
// HTML (page.html, page.css, embedded) with forms for the admin actions
// (page_actions.go). It needs no JavaScript and loads nothing from elsewhere.

//go:embed page.html
var pageHTML string

//go:embed page.css
var pageCSS []byte

// pageTemplate is the parsed page.html; html/template escapes every value by
// its context (logins, DNs and error texts come from clients and from AD).
var pageTemplate = template.Must(template.New("page").Funcs(pageFuncs).Parse(pageHTML))

// Bounds of the page's auto-refresh (?refresh=SECONDS), so a link cannot make
// the page reload itself without pause.
const (
	minRefresh = 5
	maxRefresh = 3600
)

// pageSecurityHeaders keep the page to itself: no scripts at all, styles and
// forms only from the listener, and no framing (its buttons change the
// gateway).
var pageSecurityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Frame-Options":         "DENY",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"Cache-Control":           "no-store",
}

// dcControl is what the page reads and changes of the upstream cluster.
type dcControl interface {
	Stats() []upstream.DCStats
	SetDrained(url string, drained bool) error
}

// statusPage serves the HTML status page and the admin actions.
type statusPage struct {
	cluster dcControl
	// report builds the status report the page shows.
	report func() statusReport
	// trigger starts a sync now (full: a full one): syncService.trigger.
	trigger func(full bool) syncTrigger
	log     *zap.Logger
}

// newStatusPage is the page of the gateway that ops reports on, draining
// cluster's DCs and triggering ops' sync loop.
func newStatusPage(ops *operations, cluster dcControl, log *zap.Logger) *statusPage {
	return &statusPage{cluster: cluster, report: ops.status, log: log, trigger: func(full bool) syncTrigger {
		if ops.sync == nil {
			return triggerOff
		}
		return ops.sync.trigger(full)
	}}
}

// register adds the page and the actions to mux, behind auth (the listener's
// credentials). Cross-site POSTs are refused before anything else: a page on
// another site must not drain a DC through an admin's browser.
func (p *statusPage) register(mux *http.ServeMux, auth *usersync.HTTPAuth) {
	mux.Handle("GET /{$}", auth.Require(http.HandlerFunc(p.serveStatus)))
	mux.Handle("GET /page.css", auth.Require(http.HandlerFunc(serveCSS)))
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(p.crossSite))
	for path, h := range map[string]http.HandlerFunc{
		pathDrain:   p.action("drain", p.drain(true)),
		pathUndrain: p.action("undrain", p.drain(false)),
		pathSync:    p.action("sync", p.runSync),
	} {
		mux.Handle("POST "+path, csrf.Handler(auth.Require(h)))
	}
}

// crossSite refuses a POST that a browser sent from a page of another origin.
func (p *statusPage) crossSite(w http.ResponseWriter, r *http.Request) {
	p.log.Warn("admin action refused: cross-site request", append(whoFields(r),
		zap.String("path", r.URL.Path), zap.String("origin", proxy.LogSafe(r.Header.Get("Origin"))),
		zap.String("sec_fetch_site", proxy.LogSafe(r.Header.Get("Sec-Fetch-Site"))))...)
	msg := "refused: this request comes from a page of another origin (another site, host or port); use the status page of this listener, or a client that sends no Origin header (curl)"
	if wantsHTML(r) {
		p.renderError(w, http.StatusForbidden, msg)
		return
	}
	writeJSON(w, http.StatusForbidden, map[string]string{"error": msg})
}

// serveCSS serves page.css.
func serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(pageCSS)
}

// refreshSeconds is the page's auto-refresh from ?refresh=SECONDS, 0 (off)
// when absent or out of bounds.
func refreshSeconds(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("refresh"))
	if err != nil || n < minRefresh || n > maxRefresh {
		return 0
	}
	return n
}

// render executes the template name with data and answers it with status; the
// page is rendered in full before anything is written, so a failure is a
// clean 500.
func render(w http.ResponseWriter, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "the status page could not be rendered: see the log", http.StatusInternalServerError)
		return err
	}
	for k, v := range pageSecurityHeaders {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// renderError answers a browser with a page saying what went wrong and a link
// back to the status page.
func (p *statusPage) renderError(w http.ResponseWriter, status int, msg string) {
	data := struct {
		Status int
		Title  string
		Msg    string
	}{status, http.StatusText(status), msg}
	if err := render(w, status, "error", data); err != nil {
		p.log.Error("render the error page", zap.Error(err))
	}
}

// pageFuncs are the template's formatting helpers.
var pageFuncs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	// ms renders a duration given in milliseconds.
	"ms": func(ms float64) string {
		d := time.Duration(ms * float64(time.Millisecond))
		switch {
		case d <= 0:
			return "-"
		case d < time.Millisecond:
			return d.Round(time.Microsecond).String()
		case d < time.Minute:
			return d.Round(time.Millisecond).String()
		}
		return d.Round(time.Second).String()
	},
	"add": func(a, b int) int { return a + b },
	// actionClass is the colour of a plan's action.
	"actionClass": func(action string) string {
		switch usersync.Action(action) {
		case usersync.ActionCreate, usersync.ActionUpdate:
			return "ok"
		case usersync.ActionRemove:
			return "bad"
		}
		return "warn"
	},
	// breakerClass is the colour of a breaker state.
	"breakerClass": func(state string) string {
		switch state {
		case upstream.BreakerClosed:
			return "ok"
		case upstream.BreakerHalfOpen:
			return "warn"
		}
		return "bad"
	},
	// certLeft says how long a certificate has left at now, as 'check
	// upstream' does; certClass colours it the same way (expiryWarnDays).
	"certLeft": func(notAfter, now time.Time) string { return daysLeft(daysUntil(notAfter, now)) },
	"certClass": func(notAfter, now time.Time) string {
		switch n := daysUntil(notAfter, now); {
		case n < 0:
			return "bad"
		case n < expiryWarnDays:
			return "warn"
		}
		return "ok"
	},
}

// pageView is what page.html renders: the status report, with the page's
// own settings.
type pageView struct {
	statusReport
	// Refresh is the auto-refresh in seconds, 0 for none.
	Refresh int
	// The actions' endpoints, for the forms.
	DrainPath, UndrainPath, SyncPath string
}

// serveStatus renders the status page.
func (p *statusPage) serveStatus(w http.ResponseWriter, r *http.Request) {
	v := pageView{statusReport: p.report(), Refresh: refreshSeconds(r),
		DrainPath: pathDrain, UndrainPath: pathUndrain, SyncPath: pathSync}
	if err := render(w, http.StatusOK, "page", v); err != nil {
		p.log.Error("render the status page", zap.Error(err))
	}
}
