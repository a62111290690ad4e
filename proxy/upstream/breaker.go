package upstream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// Breaker states as Stats reports them.
const (
	// BreakerClosed: the DC takes traffic.
	BreakerClosed = "closed"
	// BreakerOpen: the DC gets no user traffic until a probe succeeds.
	BreakerOpen = "open"
	// BreakerHalfOpen: a probe of the DC is in flight.
	BreakerHalfOpen = "half-open"
)

// errNotCounted marks an outcome the breaker must not count either way: the
// caller's context ended, the pool was busy, or a stale pooled connection was
// replaced. It never leaves the package.
var errNotCounted = errors.New("not counted by the breaker")

// newBreaker builds a DC's breaker.
//
// Failures are transport errors (dial, TLS, cut connections), timeouts and the
// results 51 busy, 52 unavailable and 80 other; every other result, 49 first of
// all, is the DC doing its job and counts as a success (Settings.IsSuccessful).
// 80 counts as a failure because AD uses it for internal errors of the DC
// (DIR_ERROR and the like), never as a verdict on the request. A refused service
// bind counts as a success too: the DC answered, the configuration is wrong.
//
// The breaker opens after breaker.failures consecutive failures (read at each
// failure, so Reconfigure changes it live). Its gobreaker
// Timeout is tiny, so an open breaker is at once eligible for its half-open
// request; user traffic never goes to a DC whose breaker is not closed (a
// request that raced with the breaker opening gives the half-open slot back
// unused), so that one half-open request is the probe, which the probe loop
// sends every breaker.probe_interval. A successful probe closes the breaker (MaxRequests 1),
// a failed one opens it again.
func newBreaker(d *dc) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        d.url,
		MaxRequests: 1,
		Timeout:     time.Nanosecond,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(max(d.c.config().Breaker.Failures, 1))
		},
		IsSuccessful: func(err error) bool { return classify(err) == answered },
		IsExcluded:   func(err error) bool { return errors.Is(err, errNotCounted) },
		// Called with the breaker's mutex held: must not call into the breaker.
		OnStateChange: d.onStateChange,
	})
}

// onStateChange writes one line per real change of the DC's availability: Warn
// when it stops taking traffic, Info when it takes traffic again. The open ⇄
// half-open steps of probing are Debug.
func (d *dc) onStateChange(_ string, from, to gobreaker.State) {
	switch {
	case from == gobreaker.StateClosed:
		d.log.Warn("upstream circuit opened: no traffic until a probe succeeds",
			zap.String("upstream", d.url), zap.String("last_error", d.lastErrorText()),
			zap.Duration("probe_interval", d.c.config().Breaker.ProbeInterval))
	case to == gobreaker.StateClosed:
		d.log.Info("upstream circuit closed: taking traffic again", zap.String("upstream", d.url))
	default:
		d.log.Debug("upstream breaker state", zap.String("upstream", d.url),
			zap.Stringer("from", from), zap.Stringer("to", to))
	}
}

// closed reports whether the DC's breaker lets user traffic through.
func (d *dc) closed() bool { return d.cb.State() == gobreaker.StateClosed }

// breakerState is the state as Stats reports it.
func (d *dc) breakerState() string {
	if d.closed() {
		return BreakerClosed
	}
	if d.probing.Load() {
		return BreakerHalfOpen
	}
	return BreakerOpen
}

// probe checks a DC whose breaker is not closed with a fresh LDAPS connection, a
// service bind and a rootDSE read, as the breaker's half-open request; its
// result opens or closes the breaker.
func (d *dc) probe(ctx context.Context) {
	if d.drained.Load() || d.closed() {
		return
	}
	done, err := d.cb.Allow()
	if err != nil {
		return // another request holds the half-open slot
	}
	d.probing.Store(true)
	defer d.probing.Store(false)
	d.probes.Add(1)
	start := time.Now()
	err = d.probeOnce(ctx)
	d.finish(done, start, attempt{err: err})
	if err != nil {
		d.log.Debug("upstream probe failed", zap.String("upstream", d.url), zap.Error(err))
	}
}

func (d *dc) probeOnce(ctx context.Context) error {
	set := d.set.Load()
	pc, err := d.dialTLS(ctx, set.tls)
	if err != nil {
		return err
	}
	defer pc.close()
	if err := d.serviceBind(ctx, pc, set.bindDN, set.bindPW); err != nil {
		if errors.Is(err, ErrServiceBind) {
			// The DC answered: it is up, the configuration is wrong.
			return nil
		}
		return err
	}
	_, err = pc.run(ctx, d.c.config().OpTimeout, func(l *ldap.Conn) error {
		_, err := l.Search(rootDSERequest())
		return err
	})
	return err
}

// rootDSERequest reads a few attributes of the rootDSE.
func rootDSERequest() *ldap.SearchRequest {
	return ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"dnsHostName", "defaultNamingContext"}, nil)
}

// probeLoop probes every DC whose breaker is open and sweeps the pools, every
// probe_interval, until ctx ends. After a Reconfigure (c.reconfigured) it
// probes at once, so a DC whose settings were fixed is back without waiting,
// and goes on with the new probe_interval.
func (c *Cluster) probeLoop(ctx context.Context) {
	defer close(c.loopDone)
	interval := c.config().Breaker.ProbeInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.reconfigured:
			if next := c.config().Breaker.ProbeInterval; next != interval {
				interval = next
				t.Reset(interval)
			}
		case <-t.C:
		}
		c.probeAll(ctx)
		c.checkCerts(ctx)
		c.sweep()
	}
}

// checkCerts makes a certificate check, concurrently, on each usable DC whose
// last handshake or check is upstream.cert_check_interval old, and waits for
// them to finish.
func (c *Cluster) checkCerts(ctx context.Context) {
	every := c.config().CertCheckInterval
	if every <= 0 {
		return
	}
	var wg sync.WaitGroup
	for _, d := range c.cur.Load().dcs {
		if !d.usable() || !d.certCheckDue(every) {
			continue
		}
		wg.Go(func() { d.checkCert(ctx) })
	}
	wg.Wait()
}

// certCheckDue reports whether the DC had no handshake and no check for every.
func (d *dc) certCheckDue(every time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.certCheckedAt.IsZero() || d.c.now().Sub(d.certCheckedAt) >= every
}

// checkCert connects to the DC and completes a TLS handshake, without a bind
// or a request, to learn its certificate's expiry (a standby DC gets no
// other handshake). It is not the breaker's business: a failure is logged
// (Warn: a standby DC whose certificate does not verify fails the failover)
// and the check is due again after upstream.cert_check_interval.
func (d *dc) checkCert(ctx context.Context) {
	d.certChecks.Add(1)
	d.mu.Lock()
	d.certCheckedAt = d.c.now()
	d.mu.Unlock()
	tc, _, err := d.handshake(ctx, d.set.Load().tls, false)
	if err != nil {
		d.log.Warn("upstream certificate check failed", zap.String("upstream", d.url), zap.Error(err))
		return
	}
	_ = tc.Close()
}

// probeAll probes the DCs whose breaker is open, concurrently, and waits for the
// probes to finish.
func (c *Cluster) probeAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, d := range c.cur.Load().dcs {
		if d.drained.Load() || d.closed() {
			continue
		}
		wg.Go(func() { d.probe(ctx) })
	}
	wg.Wait()
}

// sweep recycles idle connections past their lifetime or idle limit.
func (c *Cluster) sweep() {
	for _, d := range c.cur.Load().dcs {
		set := d.set.Load()
		set.svc.sweep()
		set.usr.sweep()
	}
}
