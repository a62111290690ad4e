package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// Binder forwards a simple bind to AD on a user-bind connection.
// *upstream.Cluster satisfies it. AD's answers (49 and others) come back as
// *ldap.Error; infrastructure failures wrap upstream's sentinel errors.
type Binder interface {
	Bind(ctx context.Context, dn, password string) (upstream.BindResult, error)
}

// Directory is what the bind path needs of the upstream: searches as the
// service account and user binds. *upstream.Cluster satisfies it.
type Directory interface {
	Binder
	Searcher
}

// AuthOption changes how NewAuth or NewResolver builds its value.
type AuthOption func(*authOptions)

type authOptions struct {
	view    View
	now     func() time.Time
	timeout time.Duration
}

func buildOptions(opts []AuthOption) authOptions {
	o := authOptions{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithView makes the resolver ask the directory view before searching AD.
func WithView(v View) AuthOption { return func(o *authOptions) { o.view = v } }

// WithClock sets the clock that times each decision (default time.Now; nil
// keeps it).
func WithClock(now func() time.Time) AuthOption {
	return func(o *authOptions) {
		if now != nil {
			o.now = now
		}
	}
}

// WithTimeout bounds one whole bind, lookup and upstream bind together
// (default configs.Upstream.OpTimeout).
func WithTimeout(d time.Duration) AuthOption { return func(o *authOptions) { o.timeout = d } }

// Auth is the bind path: it parses the bind name, resolves it to the user's
// DN and forwards exactly one bind upstream. It implements Authenticator and is
// safe for concurrent use.
type Auth struct {
	resolver *Resolver
	binder   Binder
	netbios  string
	timeout  time.Duration
	now      func() time.Time
	audit    *zap.Logger
}

var _ Authenticator = (*Auth)(nil)

// NewAuth builds the bind path from the configuration (cfg.Upstream for the
// directory layout and the timeout, cfg.Cache.DN for the DN cache), the
// upstream directory and the process logger.
func NewAuth(cfg configs.Config, dir Directory, log *zap.Logger, opts ...AuthOption) (*Auth, error) {
	if dir == nil {
		return nil, errors.New("new auth: nil directory")
	}
	if log == nil {
		log = zap.NewNop()
	}
	o := buildOptions(opts)
	r, err := NewResolver(cfg.Upstream, cfg.Cache.DN, dir, log, opts...)
	if err != nil {
		return nil, fmt.Errorf("new auth: %w", err)
	}
	timeout := o.timeout
	if timeout <= 0 {
		timeout = cfg.Upstream.OpTimeout
	}
	if timeout <= 0 {
		timeout = configs.Default().Upstream.OpTimeout
	}
	return &Auth{
		resolver: r,
		binder:   dir,
		netbios:  cfg.Upstream.NetBIOSDomain,
		timeout:  timeout,
		now:      o.now,
		audit:    auditLogger(log),
	}, nil
}

// Decision is a bind's outcome with the reasons behind it, which the client
// never sees.
type Decision struct {
	BindOutcome
	// Reason says why the bind got its result.
	Reason Reason
	// User is the DN the bind was tried as (also when it was refused), ""
	// when the login did not resolve.
	User string
	// ADCode is the sub-code of AD's refusal ("52e", "775", …), "" if none.
	ADCode string
	// DC is the domain controller that answered the bind, "" if none did.
	DC string
	// CacheHit is true when the user's DN came from the DN cache.
	CacheHit bool
	// Dur is how long the decision took.
	Dur time.Duration
	// Err is the error behind a refusal, for the log.
	Err error
}

// Bind decides a bind request; see Decide.
func (a *Auth) Bind(ctx context.Context, c Client, name, password string) BindOutcome {
	return a.Decide(ctx, c, name, password).BindOutcome
}

// Decide decides a bind request and writes its audit line:
//
//   - empty name and password: anonymous, success, no upstream traffic;
//   - empty name with a password, or a name with an empty or whitespace-only
//     password: 49, no upstream traffic (AD would take the latter for an
//     anonymous bind and answer success);
//   - otherwise the name is parsed and resolved to one user's DN, and exactly
//     one bind with that DN goes upstream.
//
// Every refusal gets the same diagnostic text; outages are 52 or 51 (Classify).
func (a *Auth) Decide(ctx context.Context, c Client, name, password string) Decision {
	start := a.now()
	d := a.decide(ctx, name, password)
	d.Dur = a.now().Sub(start)
	a.record(c, name, d)
	return d
}

func (a *Auth) decide(ctx context.Context, name, password string) Decision {
	switch {
	case name == "" && password == "":
		return Decision{Reason: ReasonAnonymous}
	case name == "":
		return refusal(Decision{}, fmt.Errorf("%w: password without a name", ErrInvalidLogin))
	case strings.TrimSpace(password) == "":
		return refusal(Decision{}, ErrEmptyPassword)
	}
	login, err := ParseLogin(name, a.netbios)
	if err != nil {
		return refusal(Decision{}, err)
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()

	res, err := a.resolver.Resolve(ctx, login)
	d := Decision{User: res.DN, CacheHit: res.From == SourceCache}
	if err != nil {
		return refusal(d, err)
	}
	br, err := a.binder.Bind(ctx, res.DN, password)
	d.DC = br.DC
	if err != nil {
		if res.From != SourceSearch && dnMayBeStale(err) {
			a.resolver.Invalidate(login.Key)
		}
		return refusal(d, fmt.Errorf("upstream bind: %w", err))
	}
	d.Reason = ReasonOK
	d.DN = res.DN
	return d
}

// refusal fills in a refused decision from its error.
func refusal(d Decision, err error) Decision {
	code, reason := Classify(err)
	d.Code, d.Diagnostic, d.DN = code, diagnosticFor(code), ""
	d.Reason, d.ADCode, d.Err = reason, adCode(err), err
	return d
}

// dnMayBeStale reports whether AD's answer to a bind with a remembered DN says
// the entry is not there (renamed or moved since): 525 user not found, or
// noSuchObject / invalidDNSyntax. The next attempt searches again; this one
// still fails, so each attempt stays at one upstream bind.
func dnMayBeStale(err error) bool {
	return adCode(err) == "525" ||
		ldap.IsErrorAnyOf(err, ldap.LDAPResultNoSuchObject, ldap.LDAPResultInvalidDNSyntax)
}
