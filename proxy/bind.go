package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

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
	view     View
	now      func() time.Time
	timeout  time.Duration
	sleep    Sleeper
	audit    *zap.Logger
	observer Observer
}

func buildOptions(opts []AuthOption) authOptions {
	o := authOptions{now: time.Now, sleep: sleepContext}
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

// Observer is told of every bind decision right after its audit line is
// written: the metrics and the status page count decisions with it. login is
// the bind name as the audit line shows it (control characters and invalid
// UTF-8 escaped, cut at 256 bytes); the password is never passed. It runs on
// the request's goroutine, so it must be quick and must not block.
type Observer func(c Client, login string, d Decision)

// WithAuditLogger writes the audit lines (one per bind decision) to l, a
// logger of its own sink (audit.output), instead of the process log's "audit"
// logger. nil keeps the default.
func WithAuditLogger(l *zap.Logger) AuthOption { return func(o *authOptions) { o.audit = l } }

// WithObserver calls f with every bind decision (see Observer).
func WithObserver(f Observer) AuthOption { return func(o *authOptions) { o.observer = f } }

// WithTimeout bounds one whole bind, lookup and upstream bind together
// (default configs.Upstream.OpTimeout).
func WithTimeout(d time.Duration) AuthOption { return func(o *authOptions) { o.timeout = d } }

// Auth is the bind path: it parses the bind name, resolves it to the user's
// DN and forwards exactly one bind upstream, behind the lockout guard
// (lockout.*), with the offline credential cache (offline.*) for outages. It
// implements Authenticator and is safe for concurrent use; Close ends it.
type Auth struct {
	resolver *Resolver
	binder   Binder
	netbios  string
	// timeout bounds one bind (nanoseconds): upstream.op_timeout, which
	// Reconfigure changes, unless fixedTimeout (WithTimeout).
	timeout      atomic.Int64
	fixedTimeout bool
	now          func() time.Time
	sleep        Sleeper
	minFailure   time.Duration
	guard        *lockoutGuard
	offline      *offlineCache
	audit        *zap.Logger
	observer     Observer

	negativeHits, budgetRefusals, rateLimited atomic.Uint64
}

var _ Authenticator = (*Auth)(nil)

// NewAuth builds the bind path from the configuration (cfg.Upstream for the
// directory layout and the timeout, cfg.Cache.DN for the DN cache, cfg.Lockout
// for the lockout guard, cfg.Offline for the offline credential cache, whose
// file it loads), the upstream directory and the process logger.
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
	guard, err := newLockoutGuard(cfg.Lockout)
	if err != nil {
		return nil, fmt.Errorf("new auth: %w", err)
	}
	offline, err := newOfflineCache(cfg.Offline, o.now, log)
	if err != nil {
		return nil, fmt.Errorf("new auth: %w", err)
	}
	a := &Auth{
		resolver:     r,
		binder:       dir,
		netbios:      cfg.Upstream.NetBIOSDomain,
		fixedTimeout: o.timeout > 0,
		now:          o.now,
		sleep:        o.sleep,
		minFailure:   max(cfg.Lockout.MinFailureLatency, 0),
		guard:        guard,
		offline:      offline,
		audit:        auditLogger(firstLogger(o.audit, log)),
		observer:     o.observer,
	}
	a.timeout.Store(int64(o.timeout))
	a.setTimeout(cfg.Upstream.OpTimeout)
	return a, nil
}

// Reconfigure applies what of cfg the bind path changes while it serves: the
// DN cache's size and TTL (cache.dn, see Resolver.SetCache) and the bound on
// one bind (upstream.op_timeout, unless WithTimeout set it). Binds running
// keep the bound they started with. The rest of cfg needs a new Auth.
func (a *Auth) Reconfigure(cfg configs.Config) {
	a.resolver.SetCache(cfg.Cache.DN)
	a.setTimeout(cfg.Upstream.OpTimeout)
}

// setTimeout sets the bound on one bind to d (configs.Default's when d is 0),
// unless WithTimeout fixed it.
func (a *Auth) setTimeout(d time.Duration) {
	if a.fixedTimeout {
		return
	}
	if d <= 0 {
		d = configs.Default().Upstream.OpTimeout
	}
	a.timeout.Store(int64(d))
}

// Close writes the offline credential file (offline.file) one last time and
// stops its writer. Binds after Close still work; their changes to the
// offline cache are not written.
func (a *Auth) Close() error {
	a.offline.close()
	return nil
}

// ForgetUser drops what the gateway keeps about the account with this DN (any
// spelling; AD compares DNs ignoring case): its offline credential and the
// wrong passwords the negative cache remembers (its password may have changed,
// and an old wrong one may be the new right one). The wrong-password count of
// the budget stays, as AD's badPwdCount does. The sync loop calls it when
// pwdLastSet, userAccountControl or lockoutTime of a user changes or the user
// leaves the view (the view's Entry has the DN).
func (a *Auth) ForgetUser(dn string) {
	a.offline.forget(dn)
	a.guard.forgetPasswords(userKey(dn))
}

// GuardStats counts the decisions of the lockout guard and the offline cache.
type GuardStats struct {
	// NegativeHits is the binds answered 49 from the negative cache.
	NegativeHits uint64
	// BudgetRefusals is the binds answered 49 because the account's budget of
	// wrong passwords was used up.
	BudgetRefusals uint64
	// RateLimited is the binds answered 51 by the per-client rate limit.
	RateLimited uint64
	// Offline is the offline credential cache's counts.
	Offline OfflineStats
}

// GuardStats returns the counts so far.
func (a *Auth) GuardStats() GuardStats {
	return GuardStats{
		NegativeHits:   a.negativeHits.Load(),
		BudgetRefusals: a.budgetRefusals.Load(),
		RateLimited:    a.rateLimited.Load(),
		Offline:        a.offline.stats(),
	}
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
	// Offline is true when no DC could be reached and the offline credential
	// cache decided.
	Offline bool
	// Dur is how long the decision took, without the wait that
	// lockout.min_failure_latency adds to a refusal.
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
//   - a client address past its rate of failed binds: 51, no traffic;
//   - otherwise the name is parsed and resolved to one user's DN; the same
//     wrong password again (negative cache) or an account past its budget of
//     wrong passwords is 49 without traffic; else exactly one bind with that
//     DN goes upstream;
//   - when no DC can be reached and the offline cache is on, the offline
//     credential decides (0, 49, or 52 past offline.max_failures); without
//     one the outage is 52.
//
// Every refusal gets the same diagnostic text, and every 49 is sent no sooner
// than lockout.min_failure_latency after the request arrived; outages are 52
// or 51 (Classify).
func (a *Auth) Decide(ctx context.Context, c Client, name, password string) Decision {
	start := a.now()
	d := a.decide(ctx, c, name, password, start)
	d.Dur = a.now().Sub(start)
	a.record(c, name, d)
	a.holdFailure(ctx, start, d.Code)
	return d
}

// decide decides; start is the request's time, which the lockout guard and
// the offline cache use instead of reading the clock again.
func (a *Auth) decide(ctx context.Context, c Client, name, password string, start time.Time) Decision {
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
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, time.Duration(a.timeout.Load()))
	defer cancel()

	lim, err := a.limitClient(c.Addr, start)
	if err != nil {
		return refusal(Decision{}, err)
	}
	d := a.decideAccount(ctx, parent, login, password, start)
	switch d.Reason {
	case ReasonNegativeCache:
		a.negativeHits.Add(1)
	case ReasonUserBudget:
		a.budgetRefusals.Add(1)
	}
	if countsAgainstClient(d.Reason) {
		clientFailed(lim, start)
	}
	return d
}

// clientLimiter is an Authenticator that limits each client address's rate
// of failed binds (Auth, lockout.client_rate): the Server's local-secret
// binds of the proxy user share that limit, so the secret cannot be guessed
// faster than an AD password.
type clientLimiter interface {
	limitClient(addr string, now time.Time) (*rate.Limiter, error)
}

// limitClient returns ErrRateLimited when the client address has used up its
// rate of failed binds; otherwise its bucket (nil when the limit is off), for
// clientFailed when the bind then fails.
func (a *Auth) limitClient(addr string, now time.Time) (*rate.Limiter, error) {
	lim, err := a.guard.checkClient(addr, now)
	if err != nil {
		a.rateLimited.Add(1)
	}
	return lim, err
}

// countsAgainstClient says which decisions use up the client's rate of failed
// binds: the refusals that tried something new, a password at AD or offline,
// or a name looked up in AD. Refusals decided from the bind request alone
// (empty password, malformed name, a DN outside the base) and the guard's own
// (the same wrong password again, an account past its budget) cost nothing
// upstream and tell the client nothing new; counting them would let a few
// phones retrying a stale password shut out every user of the PBX they share
// an address with. Outages are not the client's doing.
func countsAgainstClient(r Reason) bool {
	switch r {
	case ReasonADRefused, ReasonUnknownUser, ReasonAmbiguous, ReasonOfflineFailed:
		return true
	}
	return false
}

// decideAccount resolves the login and binds, behind the lockout guard. ctx
// bounds the upstream calls; parent is the request's own context, from which
// an offline check gets a deadline of its own (the upstream calls may have
// used up ctx's).
func (a *Auth) decideAccount(ctx, parent context.Context, login Login, password string, start time.Time) Decision {
	res, err := a.resolver.Resolve(ctx, login)
	d := Decision{User: res.DN, CacheHit: res.From == SourceCache}
	if err != nil {
		if a.offline != nil && unreachable(err) {
			return a.decideOffline(parent, login, "", password, d, err, start)
		}
		return refusal(d, err)
	}
	ticket, err := a.guard.admit(ctx, res.userKey, password, start)
	if err != nil {
		return refusal(d, err)
	}
	br, err := a.binder.Bind(ctx, res.DN, password)
	d.DC = br.DC
	if err != nil {
		if res.From != SourceSearch && dnMayBeStale(err) {
			a.resolver.Invalidate(login.Key)
		}
		if code, ok := adAnswer(err); ok {
			// AD refused the account: its offline credential is gone whatever
			// the reason (wrong password, disabled, locked, expired, …).
			a.offline.answered()
			a.offline.forget(res.DN)
			if wrongPasswordCode(code, adCode(err)) {
				ticket.wrongPassword(start)
			} else {
				ticket.other()
			}
		} else {
			ticket.other()
			if a.offline != nil && unreachable(err) {
				return a.decideOffline(parent, login, res.DN, password, d, fmt.Errorf("upstream bind: %w", err), start)
			}
		}
		return refusal(d, fmt.Errorf("upstream bind: %w", err))
	}
	ticket.succeeded()
	a.offline.remember(login.Key, res.DN, res.userKey, password, start)
	d.Reason = ReasonOK
	d.DN = res.DN
	return d
}

// decideOffline decides a bind from the offline credential cache while no DC
// can be reached (upErr says how). dn is the account's DN when the resolver
// knew it; otherwise the login keys the cache remembers name the account. No
// credential for the account, or one past offline.max_age: the outage stands.
// The check gets its own deadline of the bind's timeout from parent, so a bind
// that waited out a hung DC is still decided offline rather than failed.
func (a *Auth) decideOffline(parent context.Context, login Login, dn, password string, d Decision, upErr error, start time.Time) Decision {
	dn, user, err := a.offline.lookup(login.Key, dn, start)
	if err != nil {
		return refusal(d, upErr)
	}
	ctx, cancel := context.WithTimeout(parent, time.Duration(a.timeout.Load()))
	defer cancel()
	d.User, d.Offline = dn, true
	// The guard's refusals hold offline too: AD said no to this password, or
	// the account used up its wrong passwords.
	ticket, err := a.guard.admit(ctx, user, password, start)
	if err != nil {
		return refusal(d, err)
	}
	defer ticket.other() // nothing reached AD: its counts are unchanged
	if err := a.offline.verify(ctx, user, password); err != nil {
		if errors.Is(err, errNoOfflineEntry) {
			return refusal(d, upErr)
		}
		return refusal(d, fmt.Errorf("offline: %w (upstream: %w)", err, upErr))
	}
	d.Reason = ReasonOffline
	d.DN = dn
	return d
}

// unreachable reports whether err means no DC could be reached or answer in
// time: breakers open, transport failures, timeouts, a DC answering 51/52/80.
// An answer from AD, the service account refused (a configuration error), a
// busy pool and a client that went away are not.
func unreachable(err error) bool {
	if _, ok := adAnswer(err); ok || errors.Is(err, upstream.ErrServiceBind) ||
		errors.Is(err, upstream.ErrBusy) || errors.Is(err, context.Canceled) {
		return false
	}
	return errors.Is(err, upstream.ErrNoHealthyUpstream) || errors.Is(err, upstream.ErrUnavailable) ||
		errors.Is(err, context.DeadlineExceeded)
}

// adAnswer returns the result code of a DC's answer in err's chain: the
// upstream package gives an *ldap.Error only for those (its own failures, code
// 200 and up, are not answers).
func adAnswer(err error) (int, bool) {
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
		return int(le.ResultCode), true
	}
	return 0, false
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
