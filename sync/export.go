package usersync

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
)

// ExportPath is where Handler serves pascom's CSV: the URL to give pascom's
// "Users from CSV" connector ("Fetch from url") is http://<http.address>/export/users.csv.
const ExportPath = "/export/users.csv"

// csvSnapshot is the CSV of the last applied import, as the export serves it.
type csvSnapshot struct {
	body     []byte
	etag     string // strong: a hash of body
	modified time.Time
}

// newCSVSnapshot returns the export of csv, last changed at modified.
func newCSVSnapshot(csv []byte, modified time.Time) *csvSnapshot {
	return &csvSnapshot{body: csv, etag: `"` + sha256Hex(csv)[:32] + `"`, modified: modified}
}

// Handler serves GET and HEAD /export/users.csv: the CSV of the last applied
// import (404 before the first), with a strong ETag and Last-Modified, so
// If-None-Match and If-Modified-Since get 304 (the ETag wins when both are
// sent) and Range requests work. When http.bearer_token or http.basic_user is
// set, a request without either valid credential gets 401 (see HTTPAuth).
func (im *Importer) Handler() http.Handler {
	mux := http.NewServeMux()
	// A GET pattern also matches HEAD; other methods get 405 from the mux.
	mux.HandleFunc("GET "+ExportPath, im.serveCSV)
	return im.auth.Require(mux)
}

func (im *Importer) serveCSV(w http.ResponseWriter, r *http.Request) {
	snap := im.export.Load()
	if snap == nil {
		http.Error(w, "no import has been applied yet", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="users.csv"`)
	h.Set("ETag", snap.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "users.csv", snap.modified, bytes.NewReader(snap.body))
}

// HTTPAuth checks the optional credentials of the HTTP listener
// (http.bearer_token, http.basic_user and http.basic_password): the export
// and the admin endpoints share them. The configured secrets are kept as
// SHA-256 digests so every comparison is constant-time and of fixed length.
type HTTPAuth struct {
	bearer, user, pass [sha256.Size]byte
	hasBearer          bool
	hasBasic           bool
	log                *zap.Logger
}

// NewHTTPAuth builds the check of h's credentials; refused requests are
// logged (client and path only) to log.
func NewHTTPAuth(h configs.HTTP, log *zap.Logger) *HTTPAuth {
	if log == nil {
		log = zap.NewNop()
	}
	a := &HTTPAuth{hasBearer: h.BearerToken != "", hasBasic: h.BasicUser != "" || h.BasicPassword != "", log: log}
	a.bearer = sha256.Sum256([]byte(h.BearerToken))
	a.user = sha256.Sum256([]byte(h.BasicUser))
	a.pass = sha256.Sum256([]byte(h.BasicPassword))
	return a
}

// Require serves next to the requests that carry a configured credential (all
// of them when none is configured) and answers the others 401 with a
// WWW-Authenticate challenge naming the accepted schemes.
func (a *HTTPAuth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.allow(r) {
			a.challenge(w)
			a.log.Info("http: unauthorized request", zap.String("client", r.RemoteAddr), zap.String("path", r.URL.Path))
			http.Error(w, "unauthorized: send the token of http.bearer_token (Authorization: Bearer ...) or the basic-auth user of http.basic_user", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allow reports whether r carries a configured credential (always, when none is
// configured).
func (a *HTTPAuth) allow(r *http.Request) bool {
	if !a.hasBearer && !a.hasBasic {
		return true
	}
	if a.hasBearer {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			got := sha256.Sum256([]byte(strings.TrimSpace(token)))
			if subtle.ConstantTimeCompare(got[:], a.bearer[:]) == 1 {
				return true
			}
		}
	}
	if a.hasBasic {
		if user, pass, ok := r.BasicAuth(); ok {
			u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
			if subtle.ConstantTimeCompare(u[:], a.user[:])&subtle.ConstantTimeCompare(p[:], a.pass[:]) == 1 {
				return true
			}
		}
	}
	return false
}

// challenge names the accepted schemes in WWW-Authenticate.
func (a *HTTPAuth) challenge(w http.ResponseWriter) {
	if a.hasBearer {
		w.Header().Add("WWW-Authenticate", `Bearer realm="ldapgate"`)
	}
	if a.hasBasic {
		w.Header().Add("WWW-Authenticate", `Basic realm="ldapgate", charset="UTF-8"`)
	}
}
