package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
)

// dc is one domain controller: its connection set (TLS configuration, service
// account, two pools), breaker and counters. Reconfigure keeps a dc, breaker
// and counters included, as long as its URL stays in upstream.servers, and
// replaces its connection set when what its connections are made with changes.
type dc struct {
	c    *Cluster
	url  string // as configured; the DC's name everywhere
	addr string // host:port
	log  *zap.Logger
	cb   *gobreaker.TwoStepCircuitBreaker[struct{}]
	// set is the connection set requests use now; a request that loaded it
	// keeps using it to the end, also after Reconfigure replaced it.
	set atomic.Pointer[connSet]

	drained atomic.Bool
	probing atomic.Bool

	dials, dialFailures, handshakes, resumed atomic.Uint64
	binds, searches, probes, staleRetries    atomic.Uint64
	failures, certChecks                     atomic.Uint64

	// pins are the paged searches holding a service connection of this DC
	// outside its pool (see PagedSearch); guarded by mu.
	pins map[*PagedSearch]struct{}

	mu          sync.Mutex
	lastErr     string
	lastErrAt   time.Time
	lastLatency time.Duration
	// certNotAfter is the expiry of the DC's leaf certificate at the last
	// TLS handshake, certCheckedAt the time of the last handshake or
	// certificate check (see checkCert).
	certNotAfter, certCheckedAt time.Time
	// svcRefused is the last refusal of the service bind, remembered for one
	// probe interval so that a wrong bind_password does not make every search
	// dial a new connection.
	svcRefused   error
	svcRefusedAt time.Time
}

// connSet is what one DC's connections are made with, and the pools holding
// them. It never changes: Reconfigure replaces the set as a whole and retires
// the old one's pools, so a connection is never bound with one service account
// and pooled with another's.
type connSet struct {
	roots      *x509.CertPool // from upstream.ca_file
	serverName string         // the name verified in the DC's certificate
	tls        *tls.Config    // from roots and serverName; one session cache per set
	bindDN     string
	bindPW     configs.Secret
	svc        *pool // bound as the service account: searches and rootDSE reads only
	usr        *pool // user binds only
}

// newConnSet builds the connection set of d for cfg, with roots as the CA
// bundle and name as the certificate's expected name.
func (d *dc) newConnSet(cfg *configs.Upstream, roots *x509.CertPool, name string) *connSet {
	s := &connSet{roots: roots, serverName: name, tls: certs.ClientConfig(roots, name),
		bindDN: cfg.BindDN, bindPW: cfg.BindPassword}
	s.svc = newPool(d, kindService, cfg.Pool.ServiceSize, s.tls, func(ctx context.Context, pc *pconn) error {
		return d.serviceBind(ctx, pc, s.bindDN, s.bindPW)
	})
	s.usr = newPool(d, kindBind, cfg.Pool.BindSize, s.tls, nil)
	return s
}

// matches reports whether s makes its connections as cfg, roots and name say.
func (s *connSet) matches(cfg *configs.Upstream, roots *x509.CertPool, name string) bool {
	return s.serverName == name && s.roots.Equal(roots) &&
		s.bindDN == cfg.BindDN && s.bindPW == cfg.BindPassword &&
		s.svc.size == cfg.Pool.ServiceSize && s.usr.size == cfg.Pool.BindSize
}

// retire stops the set's pools taking connections back: idle ones are closed
// now, the ones in use when their requests return them.
func (s *connSet) retire() {
	s.svc.retire()
	s.usr.retire()
}

// usable reports whether user traffic may go to the DC now.
func (d *dc) usable() bool { return !d.drained.Load() && d.closed() }

// attempt is the outcome of one request on one DC.
type attempt struct {
	err error // nil, the DC's answer (*ldap.Error) or an infrastructure error
	// reached: the request was completely written to the DC, which may have acted
	// on it.
	reached bool
	isNew   bool // it ran on a connection dialled for it
	dur     time.Duration
	// skipped: the breaker refused the request (it opened meanwhile).
	skipped bool
	// uncounted: the caller cancelled; the breaker does not count it.
	uncounted bool
	// kept is the connection op's keep hook asked to keep: taken out of the
	// pool, now owned by the caller (see doKeeping).
	kept *pconn
}

// do runs op on a connection of pool p, through the DC's breaker.
func (d *dc) do(ctx context.Context, p *pool, op func(*ldap.Conn) error) attempt {
	return d.doKeeping(ctx, p, op, nil)
}

// doKeeping is do, except that when op was answered and keep (if not nil)
// returns true, the connection is not returned to the pool but handed to the
// caller in attempt.kept, outside the pool's count: a paged search keeps its
// connection for the next pages, whose cookie only that connection knows.
func (d *dc) doKeeping(ctx context.Context, p *pool, op func(*ldap.Conn) error, keep func() bool) attempt {
	if err := ctx.Err(); err != nil {
		// The caller has given up: dial nothing, count nothing.
		return attempt{err: err, uncounted: true}
	}
	done, err := d.cb.Allow()
	if err != nil {
		return attempt{skipped: true}
	}
	if !d.closed() {
		// The breaker opened between usable() and Allow, and this request
		// took the half-open slot meant for the probe: give it back.
		done(errNotCounted)
		return attempt{skipped: true}
	}
	start := time.Now()
	a := d.doConn(ctx, p, op, keep)
	a.dur = time.Since(start)
	// Only a caller who left (client gone, shutdown) is not the DC's fault. A
	// deadline that expired while the DC said nothing is: the bind path's whole
	// budget is op_timeout, so a hung DC always ends on the caller's deadline
	// and would otherwise never open its breaker.
	if a.err != nil && errors.Is(ctx.Err(), context.Canceled) && classify(a.err) != answered {
		a.uncounted = true
	}
	d.finish(done, start, a)
	return a
}

// doConn checks out a connection, runs op and returns the connection to the pool
// or closes it. A pooled connection that turns out dead before the request was
// written is replaced once by a fresh connection to the same DC.
func (d *dc) doConn(ctx context.Context, p *pool, op func(*ldap.Conn) error, keep func() bool) attempt {
	cfg := d.c.config()
	if err := p.acquire(ctx, cfg.Pool.WaitTimeout); err != nil {
		return attempt{err: err}
	}
	defer p.release()
	for try := 0; ; try++ {
		pc, isNew, err := p.get(ctx, try > 0)
		if err != nil {
			return attempt{err: err, isNew: true}
		}
		reached, err := pc.run(ctx, cfg.OpTimeout, op)
		a := attempt{err: err, reached: reached, isNew: isNew}
		if classify(err) == answered {
			switch {
			case errors.Is(err, ldap.ErrSizeLimitExceeded):
				// go-ldap stopped reading mid-search; the rest of the
				// answer would arrive on this connection.
				p.discard(pc)
			case keep != nil && keep():
				p.detach(pc)
				a.kept = pc
			default:
				p.put(pc)
			}
			return a
		}
		if !reached && ended(ctx) != nil && pc.alive() {
			// The context ended before anything was written: the
			// connection is as good as it was.
			p.put(pc)
			return a
		}
		p.discard(pc)
		if !reached && !isNew && try == 0 && ended(ctx) == nil && classify(err) == transport {
			// The DC closed this pooled connection while it was idle, and
			// nothing was written: the DC never saw the request.
			d.staleRetries.Add(1)
			d.log.Debug("upstream pooled connection was dead, retrying on a new one",
				zap.String("upstream", d.url), zap.String("pool", string(p.kind)), zap.Error(err))
			continue
		}
		return a
	}
}

// finish reports an attempt to the counters and then to the breaker, so that
// the log line of a breaker opening names the failure that opened it.
func (d *dc) finish(done func(error), start time.Time, a attempt) {
	if a.skipped {
		return
	}
	var outcome error
	switch {
	case a.uncounted, errors.Is(a.err, ErrBusy), errors.Is(a.err, ErrClosed):
		outcome = errNotCounted
	case errors.Is(a.err, ErrServiceBind):
		outcome = nil // the DC answered; the configuration is wrong
	default:
		outcome = a.err
	}
	failed := outcome != nil && !errors.Is(outcome, errNotCounted) && classify(outcome) != answered
	d.mu.Lock()
	if a.reached {
		d.lastLatency = time.Since(start)
	}
	if failed {
		d.failures.Add(1)
		d.lastErr = detach(a.err).Error()
		d.lastErrAt = d.c.now()
	}
	d.mu.Unlock()
	done(outcome)
}

func (d *dc) lastErrorText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErr
}

// serviceBind binds a new connection as the service account bindDN. A refusal
// (49 or any other answer) is a configuration error: it is logged once at
// Error, remembered for a probe interval and returned wrapping ErrServiceBind.
func (d *dc) serviceBind(ctx context.Context, pc *pconn, bindDN string, password configs.Secret) error {
	_, err := pc.run(ctx, d.c.config().OpTimeout, func(l *ldap.Conn) error {
		return l.Bind(bindDN, string(password))
	})
	if err == nil {
		d.serviceAccepted()
		return nil
	}
	if classify(err) != answered {
		return fmt.Errorf("service bind: %w", err)
	}
	return d.serviceRefused(err, bindDN)
}

func (d *dc) serviceRefused(answer error, bindDN string) error {
	var le *ldap.Error
	code := uint16(0)
	if errors.As(answer, &le) {
		code = le.ResultCode
	}
	hint := "check upstream.bind_dn and the service account"
	if code == ldap.LDAPResultInvalidCredentials {
		hint = "check upstream.bind_password (and upstream.bind_dn)"
	}
	err := fmt.Errorf("%w by %s: %w: %s", ErrServiceBind, d.url, detach(answer), hint)
	d.mu.Lock()
	first := d.svcRefused == nil
	d.svcRefused, d.svcRefusedAt = err, d.c.now()
	d.mu.Unlock()
	if first {
		d.log.Error("upstream refused the service account's bind: searches fail until it is fixed; "+hint,
			zap.String("upstream", d.url), zap.String("bind_dn", bindDN),
			zap.Uint16("result", code), zap.String("diagnostic", diagnostic(le)))
	}
	return err
}

func (d *dc) serviceAccepted() {
	d.mu.Lock()
	was := d.svcRefused != nil
	d.svcRefused = nil
	d.mu.Unlock()
	if was {
		d.log.Info("upstream accepts the service account's bind again", zap.String("upstream", d.url))
	}
}

// serviceRefusedRecently returns the remembered refusal of the service bind if
// it is younger than a probe interval.
func (d *dc) serviceRefusedRecently() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.svcRefused == nil || d.c.now().Sub(d.svcRefusedAt) >= d.c.config().Breaker.ProbeInterval {
		return nil
	}
	return d.svcRefused
}

func diagnostic(le *ldap.Error) string {
	if le == nil || le.Err == nil {
		return ""
	}
	return le.Err.Error()
}

// forgetServiceRefusal drops a remembered refusal of the service bind, when
// Reconfigure gave the DC another service account to try at once.
func (d *dc) forgetServiceRefusal() {
	d.mu.Lock()
	d.svcRefused = nil
	d.mu.Unlock()
}

func (d *dc) stats() DCStats {
	set := d.set.Load()
	d.mu.Lock()
	lastErr, lastErrAt, lastLatency, certNotAfter := d.lastErr, d.lastErrAt, d.lastLatency, d.certNotAfter
	d.mu.Unlock()
	return DCStats{
		URL:          d.url,
		Breaker:      d.breakerState(),
		Drained:      d.drained.Load(),
		Service:      set.svc.stats(),
		Bind:         set.usr.stats(),
		Dials:        d.dials.Load(),
		DialFailures: d.dialFailures.Load(),
		Handshakes:   d.handshakes.Load(),
		Resumed:      d.resumed.Load(),
		Binds:        d.binds.Load(),
		Searches:     d.searches.Load(),
		Probes:       d.probes.Load(),
		StaleRetries: d.staleRetries.Load(),
		Failures:     d.failures.Load(),
		Pinned:       d.pinnedCount(),
		LastError:    lastErr,
		LastErrorAt:  lastErrAt,
		LastLatency:  lastLatency,
		CertNotAfter: certNotAfter,
		CertChecks:   d.certChecks.Load(),
	}
}
