package usersync

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/configs"
)

// impGet sends a request to h and returns the recorded response.
func impGet(h http.Handler, method string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, ExportPath, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestExportBeforeTheFirstImport(t *testing.T) {
	im := impNew(t, impConfig(t), newImpClock())
	if w := impGet(im.Handler(), http.MethodGet); w.Code != http.StatusNotFound {
		t.Errorf("status %d, want 404", w.Code)
	}
}

func TestExport(t *testing.T) {
	cfg := impConfig(t)
	clock := newImpClock()
	im := impNew(t, cfg, clock)
	users := impSeededList(t)
	impApply(t, im, users, ApplyOptions{})
	file, err := os.ReadFile(cfg.Import.CSVFile)
	if err != nil {
		t.Fatal(err)
	}
	h := im.Handler()
	ok := impGet(h, http.MethodGet)
	etag, modified := ok.Header().Get("ETag"), ok.Header().Get("Last-Modified")

	t.Run("GET serves the CSV file's bytes as UTF-8 CSV with the header row first", func(t *testing.T) {
		if ok.Code != http.StatusOK || !bytes.Equal(ok.Body.Bytes(), file) || !strings.HasPrefix(ok.Body.String(), `"displayname","username",`) {
			t.Errorf("status %d, body %.60q", ok.Code, ok.Body.String())
		}
		if ct := ok.Header().Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
	})
	t.Run("the ETag is strong and Last-Modified is when the CSV changed", func(t *testing.T) {
		if !strings.HasPrefix(etag, `"`) || modified != clock.now().Format(http.TimeFormat) {
			t.Errorf("ETag %q, Last-Modified %q (want %q)", etag, modified, clock.now().Format(http.TimeFormat))
		}
	})
	t.Run("If-None-Match with the ETag gets 304", func(t *testing.T) {
		if w := impGet(h, http.MethodGet, "If-None-Match", etag); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("status %d with %d bytes", w.Code, w.Body.Len())
		}
	})
	t.Run("If-Modified-Since at Last-Modified gets 304", func(t *testing.T) {
		if w := impGet(h, http.MethodGet, "If-Modified-Since", modified); w.Code != http.StatusNotModified {
			t.Errorf("status %d", w.Code)
		}
	})
	t.Run("an ETag that does not match wins over If-Modified-Since", func(t *testing.T) {
		if w := impGet(h, http.MethodGet, "If-None-Match", `"old"`, "If-Modified-Since", modified); w.Code != http.StatusOK {
			t.Errorf("status %d", w.Code)
		}
	})
	t.Run("HEAD gets the headers without a body", func(t *testing.T) {
		w := impGet(h, http.MethodHead)
		if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("ETag") != etag {
			t.Errorf("status %d, %d bytes, ETag %q", w.Code, w.Body.Len(), w.Header().Get("ETag"))
		}
	})
	t.Run("POST is not allowed", func(t *testing.T) {
		if w := impGet(h, http.MethodPost); w.Code != http.StatusMethodNotAllowed {
			t.Errorf("status %d", w.Code)
		}
	})
	t.Run("an apply that changes nothing keeps the ETag and Last-Modified", func(t *testing.T) {
		clock.advance(time.Hour)
		impApply(t, im, users, ApplyOptions{})
		w := impGet(h, http.MethodGet)
		if w.Header().Get("ETag") != etag || w.Header().Get("Last-Modified") != modified {
			t.Errorf("ETag %q, Last-Modified %q", w.Header().Get("ETag"), w.Header().Get("Last-Modified"))
		}
	})
	t.Run("a restart serves the same ETag and Last-Modified", func(t *testing.T) {
		w := impGet(impNew(t, cfg, clock).Handler(), http.MethodGet)
		if w.Code != http.StatusOK || w.Header().Get("ETag") != etag || w.Header().Get("Last-Modified") != modified {
			t.Errorf("status %d, ETag %q, Last-Modified %q", w.Code, w.Header().Get("ETag"), w.Header().Get("Last-Modified"))
		}
	})
	t.Run("a changed import gets a new ETag and the old one a 200", func(t *testing.T) {
		clock.advance(time.Hour)
		changed := append([]Entry(nil), users...)
		changed[0] = impWith(changed[0], "telephoneNumber", "+1 555 0199")
		impApply(t, im, changed, ApplyOptions{})
		w := impGet(h, http.MethodGet, "If-None-Match", etag)
		if w.Code != http.StatusOK || w.Header().Get("ETag") == etag || !strings.Contains(w.Body.String(), "+1 555 0199") {
			t.Errorf("status %d, ETag %q", w.Code, w.Header().Get("ETag"))
		}
	})
}

func TestExportAuth(t *testing.T) {
	const token, user, pass = "exp-token-51c2", "pascom", "exp-pass-9d0e"
	tests := []struct {
		name      string
		http      configs.HTTP
		header    []string
		basic     []string // user, password
		want      int
		challenge string
	}{
		{"without credentials configured anyone may read", configs.HTTP{}, nil, nil, http.StatusOK, ""},
		{"a missing bearer token gets 401 with a Bearer challenge", configs.HTTP{BearerToken: token}, nil, nil, http.StatusUnauthorized, `Bearer realm="ldapgate"`},
		{"a wrong bearer token gets 401", configs.HTTP{BearerToken: token}, []string{"Authorization", "Bearer nope"}, nil, http.StatusUnauthorized, `Bearer realm="ldapgate"`},
		{"the bearer token gets the CSV", configs.HTTP{BearerToken: token}, []string{"Authorization", "Bearer " + token}, nil, http.StatusOK, ""},
		{"the scheme name is case-insensitive", configs.HTTP{BearerToken: token}, []string{"Authorization", "bearer " + token}, nil, http.StatusOK, ""},
		{"missing basic credentials get 401 with a Basic challenge", configs.HTTP{BasicUser: user, BasicPassword: pass}, nil, nil, http.StatusUnauthorized, `Basic realm="ldapgate", charset="UTF-8"`},
		{"a wrong basic password gets 401", configs.HTTP{BasicUser: user, BasicPassword: pass}, nil, []string{user, "nope"}, http.StatusUnauthorized, `Basic realm="ldapgate", charset="UTF-8"`},
		{"a wrong basic user gets 401", configs.HTTP{BasicUser: user, BasicPassword: pass}, nil, []string{"admin", pass}, http.StatusUnauthorized, `Basic realm="ldapgate", charset="UTF-8"`},
		{"the basic credentials get the CSV", configs.HTTP{BasicUser: user, BasicPassword: pass}, nil, []string{user, pass}, http.StatusOK, ""},
		{"with both configured, basic credentials alone get the CSV", configs.HTTP{BearerToken: token, BasicUser: user, BasicPassword: pass}, nil, []string{user, pass}, http.StatusOK, ""},
		{"a bearer token does not pass as a basic password", configs.HTTP{BasicUser: user, BasicPassword: pass}, []string{"Authorization", "Bearer " + pass}, nil, http.StatusUnauthorized, `Basic realm="ldapgate", charset="UTF-8"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := impConfig(t)
			cfg.HTTP = tc.http
			core, logs := observer.New(zapcore.DebugLevel)
			im, err := NewImporter(cfg, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			impApply(t, im, []Entry{impEntry("g1", "ann")}, ApplyOptions{})
			r := httptest.NewRequest(http.MethodGet, ExportPath, nil)
			if tc.header != nil {
				r.Header.Set(tc.header[0], tc.header[1])
			}
			if tc.basic != nil {
				r.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			w := httptest.NewRecorder()
			im.Handler().ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("status %d, want %d", w.Code, tc.want)
			}
			if tc.challenge != "" && !strings.Contains(strings.Join(w.Header().Values("WWW-Authenticate"), "\n"), tc.challenge) {
				t.Errorf("WWW-Authenticate %q, want %q", w.Header().Values("WWW-Authenticate"), tc.challenge)
			}
			if w.Code == http.StatusUnauthorized && strings.Contains(w.Body.String(), "ann") {
				t.Error("a 401 carries the CSV")
			}
			impNoSecretsLogged(t, logs, token, pass, "nope")
		})
	}
}
