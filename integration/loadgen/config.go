package loadgen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Mode is what one operation of the load is.
type Mode string

// The modes.
const (
	// ModeBind is one simple bind with a login's name and password.
	ModeBind Mode = "bind"
	// ModeSearchThenBind is pascom's LDAP authentication on one connection:
	// bind as ProxyDN, search Filter for the login under BaseDN, bind as the
	// one DN found with the login's password.
	ModeSearchThenBind Mode = "search-then-bind"
	// ModeSearch is one search of Filter for the login under BaseDN, on a
	// connection bound as ProxyDN (once per connection).
	ModeSearch Mode = "search"
)

// Modes lists every mode, for help texts and validation.
var Modes = []Mode{ModeBind, ModeSearchThenBind, ModeSearch}

// DefaultFilter is the search filter of the search modes when Config.Filter is
// empty: pascom's lookup by its "username field".
const DefaultFilter = "(sAMAccountName=%s)"

// Defaults and bounds of Config.
const (
	// DefaultOpTimeout bounds one operation when Config.OpTimeout is 0.
	DefaultOpTimeout = 10 * time.Second
	// MaxConcurrency bounds Config.Concurrency: each worker is one goroutine
	// and at most one connection.
	MaxConcurrency = 100_000
)

// Login is one account the load uses.
type Login struct {
	// Name is the bind name in ModeBind (sAMAccountName, UPN, DOMAIN\user or
	// DN, whatever the target accepts) and the value put into Filter in the
	// search modes.
	Name string
	// Password is the login's password. Never empty: an empty password is an
	// unauthenticated bind, which AD answers with success as anonymous.
	Password string
}

// Config is one load. URL, Mode, Logins (and ProxyDN, ProxyPassword, BaseDN
// for the search modes), Concurrency, and Duration or Count are required.
type Config struct {
	// URL is the target: ldap://host:port or ldaps://host:port.
	URL string
	// StartTLS upgrades an ldap:// connection with StartTLS before anything else.
	StartTLS bool
	// TLS is the client TLS configuration for ldaps:// and StartTLS: a CA pool
	// in RootCAs (nil: the system's roots); ServerName defaults to the URL's
	// host. InsecureSkipVerify is refused: a benchmark that skips verification
	// measures something nobody should deploy.
	TLS *tls.Config
	// Mode is what one operation is; see the Mode constants.
	Mode Mode
	// Logins are used round-robin: operation n uses Logins[n % len(Logins)].
	Logins []Login
	// ProxyDN and ProxyPassword are the account the search modes bind as
	// (pascom's proxy user).
	ProxyDN, ProxyPassword string
	// BaseDN is where the search modes search (subtree).
	BaseDN string
	// Filter is the search modes' filter with one %s, replaced by the login's
	// Name escaped with ldap.EscapeFilter. Default DefaultFilter.
	Filter string
	// Attributes are the attributes a search asks for; nil asks for all user
	// attributes, []string{"1.1"} for none.
	Attributes []string
	// Concurrency is the number of clients running operations back to back,
	// each on its own connection; 1 to MaxConcurrency.
	Concurrency int
	// Duration ends the load after this long (0: only Count ends it).
	Duration time.Duration
	// Count ends the load after this many operations (0: only Duration ends
	// it). With both set, whichever comes first ends it.
	Count int
	// NewConnPerOp dials (and handshakes TLS) for every operation and closes
	// the connection after it, as a PBX does; otherwise each client keeps its
	// connection and redials only after a network error.
	NewConnPerOp bool
	// OpTimeout bounds one operation: the dial and TLS handshake, and each
	// request's wait for its response. Default DefaultOpTimeout.
	OpTimeout time.Duration
}

// validate checks c and returns it with defaults applied and a TLS config
// ready for dialing.
func (c Config) validate() (Config, error) {
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		bad("url: empty; set it to ldap://host:port or ldaps://host:port")
	case err != nil:
		bad("url %q: %w", c.URL, err)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		bad("url %q: scheme %q; use ldap:// or ldaps://", c.URL, u.Scheme)
	case u.Host == "":
		bad("url %q: no host; use ldap://host:port or ldaps://host:port", c.URL)
	case c.StartTLS && u.Scheme == "ldaps":
		bad("starttls with %q: an ldaps:// connection is already TLS; use ldap:// with StartTLS", c.URL)
	}
	if c.TLS != nil && c.TLS.InsecureSkipVerify {
		bad("tls: InsecureSkipVerify is refused; give the CA that signed the server's certificate")
	}
	if err == nil && (u.Scheme == "ldaps" || c.StartTLS) {
		c.TLS = tlsFor(c.TLS, u)
	}

	switch c.Mode {
	case ModeBind:
	case ModeSearchThenBind, ModeSearch:
		if c.ProxyDN == "" || c.ProxyPassword == "" {
			bad("mode %s: the proxy DN and its password are required: the search binds as that account", c.Mode)
		}
		if c.BaseDN == "" {
			bad("mode %s: the base DN is required: where to search for the login", c.Mode)
		}
		if c.Filter == "" {
			c.Filter = DefaultFilter
		}
		if n := strings.Count(c.Filter, "%s"); n != 1 {
			bad("filter %q: has %d %%s, needs exactly one (where the login goes), e.g. %s", c.Filter, n, DefaultFilter)
		} else if _, err := ldap.CompileFilter(searchFilter(c.Filter, "x")); err != nil {
			bad("filter %q: %w", c.Filter, err)
		}
	case "":
		bad("mode: empty; use one of %s", modeList())
	default:
		bad("mode %q: unknown; use one of %s", c.Mode, modeList())
	}

	if len(c.Logins) == 0 {
		bad("logins: none; give at least one login and password")
	}
	for i, l := range c.Logins {
		switch {
		case l.Name == "":
			bad("login %d: empty name", i+1)
		case l.Password == "":
			// The name only: a password never goes into an error.
			bad("login %d (%s): empty password; AD takes a bind with an empty password for anonymous and answers success", i+1, l.Name)
		}
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		bad("concurrency %d: must be between 1 and %d", c.Concurrency, MaxConcurrency)
	}
	switch {
	case c.Duration < 0:
		bad("duration %s: negative", c.Duration)
	case c.Count < 0:
		bad("count %d: negative", c.Count)
	case c.Duration == 0 && c.Count == 0:
		bad("neither a duration nor a count: set at least one, or the load would never end")
	}
	switch {
	case c.OpTimeout < 0:
		bad("op timeout %s: negative; 0 means the default %s", c.OpTimeout, DefaultOpTimeout)
	case c.OpTimeout == 0:
		c.OpTimeout = DefaultOpTimeout
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("loadgen: %w", errors.Join(problems...))
	}
	return c, nil
}

// tlsFor returns a copy of base (or a new config) with ServerName set to u's
// host when it has none.
func tlsFor(base *tls.Config, u *url.URL) *tls.Config {
	var t *tls.Config
	if base != nil {
		t = base.Clone()
	} else {
		t = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if t.ServerName == "" {
		host := u.Host
		if h, _, err := net.SplitHostPort(u.Host); err == nil {
			host = h
		}
		t.ServerName = host
	}
	return t
}

// searchFilter puts login, escaped, into filter's %s.
func searchFilter(filter, login string) string {
	return strings.Replace(filter, "%s", ldap.EscapeFilter(login), 1)
}

func modeList() string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}
