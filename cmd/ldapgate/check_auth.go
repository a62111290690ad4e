package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// maxPasswordBytes bounds a password read from standard input: AD passwords
// are at most 256 characters, at most 4 bytes each in UTF-8.
const maxPasswordBytes = 1024

// checkAuthClient is the client address the bind path sees for 'check auth'
// (the lockout guard and the audit line key on it).
const checkAuthClient = "ldapgate-check-auth"

// checkAuthCommand returns 'ldapgate check auth'; stdin is where the password
// comes from.
func checkAuthCommand(stdin io.Reader) *command {
	return &command{
		name:    "auth",
		summary: "test a login through the real bind path and show each step",
		usage:   "--config FILE USER",
		help: `Asks for USER's password and runs it through the gateway's own bind path,
against the domain controllers of FILE, as a bind from the PBX would go:

    login    the form USER was typed in (sAMAccountName, UPN, DOMAIN\user or
             DN) and the key it is cached under
    user     the DN it resolved to, and where from (a search as the service
             account, in a fresh process)
    dc       the domain controller that answered the bind
    result   OK, or why not: for a refused password the AD sub-code and its
             meaning, e.g. "invalid credentials (AD said 52e: wrong
             password)"; the PBX would only ever see 49 "invalid credentials"
    latency  the whole decision, lookup and bind

On a terminal the password is read without echo. Otherwise one line is read
from standard input (for scripts: printf '%s\n' "$PW" | ldapgate check auth
--config FILE jdoe); the line break is not part of the password. The password
is never printed or logged.

The bind counts against the account like any other: a wrong password adds to
AD's bad-password count (AADDS locks after 5 within 2 minutes). Unlike serve,
it leaves the offline credential cache alone (offline.* is ignored: the check
is against AD) and does not add lockout.min_failure_latency to a refusal, so
the latency shown is the directory's.

Exit status: 0 when the bind succeeded, 1 when it was refused or no DC could
answer.`,
		setup: func(fs *flag.FlagSet) runFunc {
			path := fs.String("config", "", "read the configuration from `FILE`")
			return func(e *env, args []string) error {
				if err := checkArgs(*path, args, 1); err != nil {
					return err
				}
				user := args[0]
				cfg, err := loadConfig(*path)
				if err != nil {
					return err
				}
				password, err := readPassword(e.stderr, stdin, user)
				if err != nil {
					return err
				}
				ctx, stop := interruptible()
				defer stop()
				res, err := checkAuth(ctx, cfg, user, password)
				if err != nil {
					return err
				}
				if _, err := io.WriteString(e.stdout, res.text()); err != nil {
					return err
				}
				return res.err()
			}
		},
	}
}

// readPassword reads USER's password: without echo from a terminal (prompting
// on prompt), else one line from in.
func readPassword(prompt io.Writer, in io.Reader, user string) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(prompt, "Password for %s: ", user)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read the password from the terminal: %w", err)
		}
		return string(pw), nil
	}
	r := bufio.NewReader(io.LimitReader(in, maxPasswordBytes+2)) // the line break may be \r\n
	line, err := r.ReadString('\n')
	switch {
	case errors.Is(err, io.EOF) && line == "":
		return "", errors.New("no password on standard input: type it on a terminal, or pipe one line (printf '%s\\n' \"$PW\" | ldapgate check auth ...)")
	case err != nil && !errors.Is(err, io.EOF):
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(pw) > maxPasswordBytes || (errors.Is(err, io.EOF) && len(line) > maxPasswordBytes) {
		return "", fmt.Errorf("the first line of standard input is longer than %d bytes, more than any AD password: is it the right input?", maxPasswordBytes)
	}
	return pw, nil
}

// authCheck is what 'check auth' found.
type authCheck struct {
	user     string
	login    proxy.Login
	loginErr error
	decision proxy.Decision
	cfg      configs.Upstream
}

// checkAuth runs one bind of user with password through the real bind path
// (upstream.New and proxy.NewAuth, as serve builds them) and returns its
// decision. Nothing is logged: the decision is the report.
func checkAuth(ctx context.Context, cfg *configs.Config, user, password string) (*authCheck, error) {
	c := *cfg
	// The check is against AD: the offline cache would answer from (and
	// write) the running gateway's file, and the failure floor only hides
	// timing from clients.
	c.Offline = configs.Offline{}
	c.Lockout.MinFailureLatency = 0

	res := &authCheck{user: user, cfg: c.Upstream}
	res.login, res.loginErr = proxy.ParseLogin(user, c.Upstream.NetBIOSDomain)

	cluster, err := upstream.New(c.Upstream, zap.NewNop())
	if err != nil {
		return nil, err
	}
	defer func() { _ = cluster.Close() }()
	auth, err := proxy.NewAuth(c, cluster, zap.NewNop())
	if err != nil {
		return nil, err
	}
	defer func() { _ = auth.Close() }()
	res.decision = auth.Decide(ctx, proxy.Client{Addr: checkAuthClient}, user, password)
	return res, nil
}

// text is the report, one line per step.
func (a *authCheck) text() string {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-8s %s\n", label, fmt.Sprintf(format, args...))
	}
	d := a.decision
	if a.loginErr != nil {
		line("login", "FAIL %q is not a login the gateway accepts: %v", a.user, a.loginErr)
	} else {
		line("login", "%s: %s, key %s", a.user, loginForm(a.user, a.login), a.login.Key)
	}
	switch {
	case d.User != "" && d.CacheHit:
		line("user", "%s (from the DN cache)", d.User)
	case d.User != "":
		line("user", "%s (found by a search as the service account)", d.User)
	case d.Reason == proxy.ReasonUnknownUser:
		line("user", "no user entry matches")
	case d.Reason == proxy.ReasonUnavailable || d.Reason == proxy.ReasonBusy:
		line("user", "not resolved: the lookup failed")
	default:
		line("user", "not looked up")
	}
	if d.DC != "" {
		line("dc", "%s", d.DC)
	} else {
		line("dc", "none: no bind was sent to AD")
	}
	if d.Code == 0 {
		line("result", "OK   AD accepted the password; the PBX would get 0 success")
	} else {
		line("result", "FAIL %s; the PBX would get %d %q", a.why(), d.Code, d.Diagnostic)
		if d.Err != nil {
			line("", "     (%s)", terminalSafe(d.Err.Error()))
		}
	}
	note := ""
	if d.DC != "" {
		note = " (on new LDAPS connections; a running gateway reuses pooled ones)"
	}
	line("latency", "%s%s", fmtLatency(d.Dur), note)
	return b.String()
}

// err is nil for a successful bind, else the one-line reason.
func (a *authCheck) err() error {
	if a.decision.Code == 0 {
		return nil
	}
	return fmt.Errorf("%s was refused: %s", a.user, a.why())
}

// why says why the bind was refused, for the admin (with AD's sub-code, which
// a client never sees).
func (a *authCheck) why() string {
	d := a.decision
	switch d.Reason {
	case proxy.ReasonADRefused:
		if t := adCodeText(d.ADCode); t != "" {
			return fmt.Sprintf("invalid credentials (%s)", t)
		}
		return "AD refused the bind"
	case proxy.ReasonUnknownUser:
		return fmt.Sprintf("no user matches the login under upstream.user_base_dn (%s) with upstream.user_filter; no bind was sent", a.cfg.UserBaseDN)
	case proxy.ReasonAmbiguous:
		return "more than one user matches the login; no bind was sent: log in with the UPN or the DN"
	case proxy.ReasonOutsideBase:
		return fmt.Sprintf("the user's DN is outside upstream.base_dn (%s); no bind was sent", a.cfg.BaseDN)
	case proxy.ReasonInvalidLogin:
		return "not a login the gateway accepts (sAMAccountName, UPN, DOMAIN\\user with upstream.netbios_domain, or a DN)"
	case proxy.ReasonEmptyPassword:
		return "empty password: an unauthenticated bind, which AD would take for anonymous; refused before anything goes to AD"
	case proxy.ReasonUnavailable, proxy.ReasonBusy:
		return "no domain controller could answer: run 'ldapgate check upstream' with the same --config"
	default:
		return string(d.Reason)
	}
}

// loginForm names the form a login was typed in.
func loginForm(typed string, l proxy.Login) string {
	switch l.Kind {
	case proxy.LoginSAM:
		if strings.Contains(typed, `\`) {
			return "a down-level name (DOMAIN\\sAMAccountName)"
		}
		return "a sAMAccountName"
	case proxy.LoginUPN:
		return "a userPrincipalName (UPN)"
	case proxy.LoginDN:
		return "a distinguished name"
	default:
		return l.Kind.String()
	}
}

// terminalSafe escapes control characters in a directory's answer before it goes
// to the admin's terminal.
func terminalSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
