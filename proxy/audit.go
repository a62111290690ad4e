package proxy

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLoggedLogin is how much of a typed login the audit log keeps, in bytes
// after escaping; a marker says how long the original was.
const maxLoggedLogin = 256

// auditLogger is the logger of the audit trail: one line per bind decision,
// with event=auth so the lines can be selected whatever the logger's name.
func auditLogger(log *zap.Logger) *zap.Logger {
	return log.Named("audit").With(zap.String("event", "auth"))
}

// firstLogger returns the first non-nil logger.
func firstLogger(ls ...*zap.Logger) *zap.Logger {
	for _, l := range ls {
		if l != nil {
			return l
		}
	}
	return zap.NewNop()
}

// record writes the audit line of one bind decision and tells the observer. Refusals are Info (a
// wrong password is not the gateway's error), the local ones of the lockout
// guard included; outages, rate limiting and every decision of the offline
// credential cache (offline: true) are Warn: an admin must see that binds were
// accepted without AD. The password is not a parameter: it cannot get here.
func (a *Auth) record(c Client, name string, d Decision) {
	writeAudit(a.audit, c, name, d)
	if a.observer != nil {
		a.observer(c, LogSafe(name), d)
	}
}

// writeAudit writes the audit line of one decision to l.
func writeAudit(l *zap.Logger, c Client, name string, d Decision) {
	fields := []zap.Field{
		zap.String("client", c.Addr),
		zap.Int("conn_id", c.ConnID),
		zap.String("login", LogSafe(name)),
		zap.String("user", d.User),
		zap.Int("result", d.Code),
		zap.String("reason", string(d.Reason)),
		zap.String("ad_code", d.ADCode),
		zap.String("dc", d.DC),
		zap.Duration("dur", d.Dur),
		zap.Bool("cache_hit", d.CacheHit),
		zap.Bool("offline", d.Offline),
	}
	if d.Err != nil {
		// Errors can quote directory answers; escape them like the login.
		fields = append(fields, zap.String("error", LogSafe(d.Err.Error())))
	}
	level := zapcore.InfoLevel
	switch {
	case d.Offline, d.Reason == ReasonUnavailable, d.Reason == ReasonBusy, d.Reason == ReasonRateLimited:
		level = zapcore.WarnLevel
	}
	l.Log(level, "bind", fields...)
}

// LogSafe makes a client-supplied string fit for a log line: control and other
// non-printable characters and invalid UTF-8 are escaped (\x00, \u202e), and
// the result is cut at maxLoggedLogin bytes, never inside an escape or a
// character, with a marker giving the original length. Backslashes are kept
// as they are so AADDS\jdoe stays readable.
func LogSafe(s string) string {
	if len(s) <= maxLoggedLogin && printableASCII(s) {
		return s // nothing to escape or cut
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case r < utf8.RuneSelf && !unicode.IsPrint(r):
			piece = fmt.Sprintf(`\x%02x`, r)
		case !unicode.IsPrint(r) && r <= 0xffff:
			piece = fmt.Sprintf(`\u%04x`, r)
		case !unicode.IsPrint(r):
			piece = fmt.Sprintf(`\U%08x`, r)
		default:
			piece = s[i : i+size]
		}
		if b.Len()+len(piece) > maxLoggedLogin {
			fmt.Fprintf(&b, "...[truncated, %d bytes]", len(s))
			break
		}
		b.WriteString(piece)
		i += size
	}
	return b.String()
}

// printableASCII reports whether every byte of s is printable ASCII (space to
// '~'), which LogSafe keeps as it is.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
