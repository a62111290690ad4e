package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// The admin actions, as API endpoints; the status page's forms post to them
// too. A browser's form (Accept: text/html) gets 303 back to the page, a
// script gets JSON.
const (
	pathDrain   = "/api/dcs/drain"
	pathUndrain = "/api/dcs/undrain"
	pathSync    = "/api/sync"
)

// maxActionBody bounds the form body of an action: a DC URL and a flag.
const maxActionBody = 64 << 10

// actionReply is the JSON answer to an action that was carried out.
type actionReply struct {
	// Action is "drain", "undrain" or "sync".
	Action string `json:"action"`
	// URL is the DC of a drain or an undrain.
	URL string `json:"url,omitempty"`
	// Full says whether a full sync was asked for; Trigger is "queued" (it
	// runs now, or after the run in progress) or "coalesced" (one was already
	// waiting: it runs once).
	Full    *bool       `json:"full,omitempty"`
	Trigger syncTrigger `json:"trigger,omitempty"`
	// Message says what happened, in a sentence.
	Message string `json:"message"`
}

// actionError is an action refused or failed: Status is the HTTP status and
// Msg says what is wrong and what to do.
type actionError struct {
	Status int
	Msg    string
}

func (e *actionError) Error() string { return e.Msg }

// actionf builds an actionError.
func actionf(status int, format string, args ...any) *actionError {
	return &actionError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// action wraps one admin action: it reads the form, runs do, logs who did what
// and answers. Cross-site requests never get here (see statusPage.routes).
func (p *statusPage) action(name string, do func(r *http.Request) (actionReply, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxActionBody)
		var (
			rep actionReply
			err error
		)
		if perr := r.ParseForm(); perr != nil {
			err = actionf(http.StatusBadRequest, "the request's form cannot be read (%v): send url-encoded form fields of at most %d bytes", perr, maxActionBody)
		} else {
			rep, err = do(r)
		}
		// The form's values are the client's: escaped and cut as the audit
		// log does with a login.
		fields := append(whoFields(r), zap.String("action", name))
		if u := r.PostForm.Get("url"); u != "" {
			fields = append(fields, zap.String("upstream", proxy.LogSafe(u)))
		}
		if f := r.PostForm.Get("full"); f != "" {
			fields = append(fields, zap.String("full", proxy.LogSafe(f)))
		}
		if err != nil {
			p.log.Warn("admin action refused", append(fields, zap.Error(err))...)
			p.actionFailed(w, r, err)
			return
		}
		p.log.Info("admin action", append(fields, zap.String("result", rep.Message))...)
		if wantsHTML(r) {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	}
}

// whoFields say who sent r: its address and, with basic auth, the user.
func whoFields(r *http.Request) []zap.Field {
	fields := []zap.Field{zap.String("client", r.RemoteAddr)}
	if user, _, ok := r.BasicAuth(); ok {
		fields = append(fields, zap.String("http_user", proxy.LogSafe(user)))
	}
	return fields
}

// actionFailed answers a refused action: an HTML page with a way back for a
// browser, JSON for a script.
func (p *statusPage) actionFailed(w http.ResponseWriter, r *http.Request, err error) {
	ae := &actionError{Status: http.StatusInternalServerError, Msg: err.Error()}
	errors.As(err, &ae)
	if wantsHTML(r) {
		p.renderError(w, ae.Status, ae.Msg)
		return
	}
	writeJSON(w, ae.Status, map[string]string{"error": ae.Msg})
}

// wantsHTML reports whether r comes from a browser's form rather than a
// script: browsers ask for text/html, curl and HTTP libraries do not.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// drain returns the action that drains (or undrains) the DC named by the form
// field url.
func (p *statusPage) drain(drained bool) func(r *http.Request) (actionReply, error) {
	name := map[bool]string{true: "drain", false: "undrain"}[drained]
	return func(r *http.Request) (actionReply, error) {
		url := r.PostForm.Get("url")
		if url == "" {
			return actionReply{}, actionf(http.StatusBadRequest, "url is missing: POST url=<a DC as in upstream.servers> (%s)", p.dcList())
		}
		switch err := p.cluster.SetDrained(url, drained); {
		case errors.Is(err, upstream.ErrUnknownServer):
			return actionReply{}, actionf(http.StatusNotFound, "%q is not one of upstream.servers: use one of %s", url, p.dcList())
		case err != nil:
			return actionReply{}, err
		}
		msg := url + " is back in service"
		if drained {
			msg = url + " is drained: it gets no new requests until it is undrained"
		}
		return actionReply{Action: name, URL: url, Message: msg}, nil
	}
}

// dcList names the configured DCs for error messages.
func (p *statusPage) dcList() string {
	var urls []string
	for _, s := range p.cluster.Stats() {
		urls = append(urls, s.URL)
	}
	return strings.Join(urls, ", ")
}

// runSync starts a sync now; the form field full (1, true or on) asks for a
// full one.
func (p *statusPage) runSync(r *http.Request) (actionReply, error) {
	full := false
	switch v := r.PostForm.Get("full"); v {
	case "", "0", "false", "off":
	case "1", "true", "on":
		full = true
	default:
		return actionReply{}, actionf(http.StatusBadRequest, "full=%s: send full=1 for a full sync, or leave it out", strconv.Quote(v))
	}
	kind := "a sync"
	if full {
		kind = "a full sync"
	}
	var msg string
	res := p.trigger(full)
	switch res {
	case triggerOff:
		return actionReply{}, actionf(http.StatusServiceUnavailable, "the sync loop is off (sync.enabled: false, or it could not start: see the log): there is no sync to run")
	case triggerCoalesced:
		msg = kind + " was already waiting to run: it runs once, after the one in progress"
	default:
		msg = kind + " runs now, or right after the one in progress"
	}
	return actionReply{Action: "sync", Full: &full, Trigger: res, Message: msg}, nil
}
