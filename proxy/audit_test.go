package proxy

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Sync() error { return nil }

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// debugLoggers returns a debug-level logger writing JSON and console lines into
// one buffer, and the observer of the same entries.
func debugLoggers() (*zap.Logger, *syncBuffer, *observer.ObservedLogs) {
	buf := &syncBuffer{}
	obsCore, logs := observer.New(zapcore.DebugLevel)
	enc := zap.NewDevelopmentEncoderConfig()
	core := zapcore.NewTee(
		zapcore.NewCore(zapcore.NewJSONEncoder(enc), buf, zapcore.DebugLevel),
		zapcore.NewCore(zapcore.NewConsoleEncoder(enc), buf, zapcore.DebugLevel),
		obsCore,
	)
	return zap.New(core), buf, logs
}

func TestNoPasswordIsEverLogged(t *testing.T) {
	t.Parallel()
	log, buf, logs := debugLoggers()
	type attempt struct {
		login, password string
		searchErr       error
		bindErr         error
	}
	// A distinctive password per path, so a hit names the path that leaked.
	var attempts []attempt
	secret := func(path string) string { return "S3cr3t-" + path + "-QZX" }
	for _, a := range testbed.Accounts {
		attempts = append(attempts, attempt{login: a.Login, password: a.Password})
		attempts = append(attempts, attempt{login: a.UPN(), password: a.Password})
		attempts = append(attempts, attempt{login: a.DN(), password: a.Password})
	}
	attempts = append(attempts,
		attempt{login: "jdoe", password: secret("wrong")},
		attempt{login: "", password: secret("noname")},
		attempt{login: "nobody", password: secret("unknown")},
		attempt{login: "*", password: secret("invalid")},
		attempt{login: "jdoe\x00", password: secret("nul")},
		attempt{login: strings.Repeat("a", 10<<10), password: secret("long")},
		attempt{login: "CN=x,DC=contoso,DC=com", password: secret("outside")},
		attempt{login: testbed.PBXUsersDN, password: secret("group")},
		attempt{login: "jdoe", password: secret("searchdown"), searchErr: fmt.Errorf("%w: dial", upstream.ErrUnavailable)},
		attempt{login: "jdoe", password: secret("binddown"), bindErr: fmt.Errorf("%w: tls", upstream.ErrUnavailable)},
		attempt{login: "jdoe", password: secret("busy"), bindErr: upstream.ErrBusy},
		attempt{login: "asmith", password: secret("nohealthy"), searchErr: upstream.ErrNoHealthyUpstream},
		// A password typed into the name field is the user's business to
		// avoid; a password that looks like a login is still never echoed
		// from the password field.
		attempt{login: "bjones", password: "bjones-" + secret("alike")},
	)
	for _, at := range attempts {
		dir := newFakeDir()
		dir.searchErr, dir.bindErr = at.searchErr, at.bindErr
		a := newFakeAuth(t, dir, log)
		a.Bind(context.Background(), authTestClient, at.login, at.password)
	}
	out := buf.String()
	for _, at := range attempts {
		if at.password != "" && strings.Contains(out, at.password) {
			t.Errorf("the log holds the password of a bind as %q", LogSafe(at.login))
		}
	}
	if got := logs.FilterField(zap.String("event", "auth")).Len(); got != len(attempts) {
		t.Errorf("audit lines = %d, want one per attempt (%d)", got, len(attempts))
	}
	for _, e := range logs.All() {
		if e.Level >= zapcore.ErrorLevel {
			t.Errorf("logged at %v: %s %v", e.Level, e.Message, e.ContextMap())
		}
	}
}

func TestAuditLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		login     string
		password  string
		bindErr   error
		wantLevel zapcore.Level
		want      map[string]any
	}{
		{"a success is logged at info with the canonical DN", "JDoe", testbed.JDoe.Password, nil, zapcore.InfoLevel, map[string]any{
			"client": authTestClient.Addr, "login": "JDoe", "user": testbed.JDoe.DN(), "result": int64(0), "reason": "ok",
			"ad_code": "", "dc": "dc1", "cache_hit": false, "event": "auth"}},
		{"a wrong password is logged at info with AD's sub-code", "jdoe", "wrong", nil, zapcore.InfoLevel, map[string]any{
			"login": "jdoe", "user": testbed.JDoe.DN(), "result": int64(49), "reason": "ad_refused", "ad_code": "52e", "dc": "dc1"}},
		{"a locked account is logged at info with its sub-code", "hlocked", testbed.HLocked.Password, nil, zapcore.InfoLevel, map[string]any{
			"result": int64(49), "reason": "ad_refused", "ad_code": "775"}},
		{"an empty password is logged as such", "jdoe", "", nil, zapcore.InfoLevel, map[string]any{
			"result": int64(49), "reason": "empty_password", "user": ""}},
		{"an anonymous bind is logged", "", "", nil, zapcore.InfoLevel, map[string]any{
			"result": int64(0), "reason": "anonymous", "login": ""}},
		{"an outage is logged at warn", "jdoe", "x", fmt.Errorf("%w: dial", upstream.ErrUnavailable), zapcore.WarnLevel, map[string]any{
			"result": int64(52), "reason": "unavailable"}},
		{"a NUL in the login is escaped", "jdoe\x00", "x", nil, zapcore.InfoLevel, map[string]any{
			"login": `jdoe\x00`, "reason": "invalid_login"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zapcore.DebugLevel)
			dir := newFakeDir()
			dir.bindErr = tt.bindErr
			a := newFakeAuth(t, dir, zap.New(core), WithClock(func() time.Time { return time.Unix(0, 0) }))
			a.Bind(context.Background(), authTestClient, tt.login, tt.password)
			lines := logs.FilterLoggerName("audit").All()
			if len(lines) != 1 {
				t.Fatalf("audit lines = %d, want 1", len(lines))
			}
			if lines[0].Level != tt.wantLevel {
				t.Errorf("level = %v, want %v", lines[0].Level, tt.wantLevel)
			}
			got := lines[0].ContextMap()
			for _, k := range []string{"client", "conn_id", "login", "user", "result", "reason", "ad_code", "dc", "dur", "cache_hit"} {
				if _, ok := got[k]; !ok {
					t.Errorf("field %q missing from %v", k, got)
				}
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
		})
	}
}

func TestLogSafe(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 10<<10)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"a plain login is kept", "jdoe", "jdoe"},
		{"a down-level login keeps its backslash", `AADDS\jdoe`, `AADDS\jdoe`},
		{"UTF-8 letters are kept", "Seán O'Brien", "Seán O'Brien"},
		{"a NUL is escaped", "jd\x00oe", `jd\x00oe`},
		{"a newline is escaped", "jdoe\nFAKE LINE", `jdoe\x0aFAKE LINE`},
		{"an escape sequence is escaped", "\x1b[31mred", `\x1b[31mred`},
		{"invalid UTF-8 is escaped byte by byte", "a\xff\xfeb", `a\xff\xfeb`},
		{"a right-to-left override is escaped", "abc\u202edef", `abc\u202edef`},
		{"a C1 control is escaped", "a\u0085b", `a\u0085b`},
		{"exactly the limit is not cut", strings.Repeat("b", maxLoggedLogin), strings.Repeat("b", maxLoggedLogin)},
		{"a 10 kB login is cut with a marker", long, strings.Repeat("a", maxLoggedLogin) + "...[truncated, 10240 bytes]"},
		{"a cut never splits a character", "a" + strings.Repeat("é", 200), "a" + strings.Repeat("é", 127) + "...[truncated, 401 bytes]"},
		{"a cut never splits an escape", strings.Repeat("a", 254) + "\x00", strings.Repeat("a", 254) + "...[truncated, 255 bytes]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := LogSafe(tt.in); got != tt.want {
				t.Errorf("LogSafe(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzLogSafe(f *testing.F) {
	for _, s := range []string{"jdoe", "jd\x00oe", "\xff", "a\u202e", strings.Repeat("é", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := LogSafe(s)
		if !utf8.ValidString(got) {
			t.Fatalf("LogSafe(%q) = %q, not UTF-8", s, got)
		}
		if i := strings.IndexFunc(got, func(r rune) bool { return !unicode.IsPrint(r) }); i >= 0 {
			t.Fatalf("LogSafe(%q) = %q holds a non-printable character", s, got)
		}
		if len(got) > maxLoggedLogin+len("...[truncated, 18446744073709551615 bytes]") {
			t.Fatalf("LogSafe of %d bytes is %d bytes long", len(s), len(got))
		}
	})
}

func TestAuditSinkAndObserver(t *testing.T) {
	t.Parallel()
	processLog, _, processLines := debugLoggers()
	auditLog, _, auditLines := debugLoggers()
	var mu sync.Mutex
	var seen []Decision
	var logins []string
	a := newFakeAuth(t, newFakeDir(), processLog, WithAuditLogger(auditLog), WithObserver(func(_ Client, login string, d Decision) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, d)
		logins = append(logins, login)
	}))
	a.Bind(context.Background(), authTestClient, "jdoe", testbed.JDoe.Password)
	a.Bind(context.Background(), authTestClient, "jdoe", "wrong")
	a.Bind(context.Background(), authTestClient, "jdoe\x00\u202e", "wrong")
	if n := auditLines.FilterField(zap.String("event", "auth")).Len(); n != 3 {
		t.Errorf("audit sink lines = %d, want 2", n)
	}
	if n := processLines.FilterField(zap.String("event", "auth")).Len(); n != 0 {
		t.Errorf("the process log got %d audit lines, want none with an audit sink of its own", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen[0].Code != 0 || seen[1].Code != 49 || seen[1].ADCode != "52e" {
		t.Errorf("observer saw %+v, want a success then a 49 with 52e", seen)
	}
	if want := []string{"jdoe", "jdoe", `jdoe\x00\u202e`}; !slices.Equal(logins, want) {
		t.Errorf("observer saw the logins %q, want %q (escaped as in the audit line)", logins, want)
	}
}
