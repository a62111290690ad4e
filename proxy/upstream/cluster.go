// Package upstream is ldapgate's side towards the domain controllers: pooled,
// verified LDAPS connections to each DC, one circuit breaker per DC with a probe
// loop, and the choice of DC with the failover rules. The bind path and the sync
// loop share one Cluster, so both see the same DCs, breakers and TLS sessions.
//
// # Connections
//
// Each DC has two bounded pools: service connections, bound as upstream.bind_dn
// right after the dial and used only for searches and rootDSE reads, and user-bind
// connections, used only for user binds (a bind changes a connection's identity,
// so a connection that carried a user bind never carries a search). Connections
// are LDAPS only, verified against upstream.ca_file with the server's name, with
// TCP keepalive and TLS session resumption; they are reused, so binds in steady
// state cost no TLS handshake. A connection is recycled after
// pool.max_lifetime and after pool.idle_timeout unused (AD closes connections
// idle for 900 s), checked at checkout and by a sweep every probe interval.
// Waiting for a connection is bounded by pool.wait_timeout and the context: ErrBusy.
// A paged search relayed page by page (StartPaged) takes its service connection
// out of the pool until its last page, because AD's paging cookie belongs to the
// connection; it gives it back when complete and closes it when abandoned.
// Every operation is bounded by upstream.op_timeout and the context's deadline,
// whichever comes first; cancelling the context aborts the connection.
//
// # Breakers
//
// Each DC has a gobreaker circuit breaker that counts transport
// failures, timeouts and the results 51, 52 and 80 as failures and every other
// answer, 49 above all, as a success. After breaker.failures consecutive failures
// it opens: the DC gets no traffic, and every breaker.probe_interval a probe (new
// LDAPS connection, service bind, rootDSE read) is the breaker's half-open request;
// its success closes the breaker. DCs are used in the configured order: each
// request goes to the first DC whose breaker is closed and that is not drained, so
// traffic returns to the first DC as soon as its probe succeeds. When no DC is
// usable the answer is ErrNoHealthyUpstream at once, without dialling anything.
//
// # Failover
//
// A bind moves to the next DC only when it never reached the previous one: the
// dial or TLS handshake failed, or the connection was found dead before the
// request was written (see wireConn for how that is known). A bind that was
// written and then timed out or was cut is not retried anywhere, because a wrong
// password sent to two DCs counts twice against AD's lockout: ErrUnavailable. A
// busy pool is not a reason to fail over either (ErrBusy): it is the gateway's own
// limit, not a fault of the DC. Searches are read-only: after any transport failure
// or a 51, 52 or 80 a search is retried on the next usable DC. A pooled connection
// that the DC closed while it sat idle is replaced once, transparently, by a new
// connection to the same DC when nothing had been written to it.
//
// Referrals are never followed: go-ldap does not chase them, and Search drops the
// search references (SearchResult.Referrals is always empty).
//
// Nothing here logs a password or a bind request, and there is no log line per
// request: the proxy writes the audit line. Each change of a DC's availability is
// one line (Warn when its breaker opens, Info when it closes) with the key
// "upstream".
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
)

// keepAlive is the TCP keepalive period of upstream connections.
const keepAlive = 30 * time.Second

// Cluster is the set of DCs of one configuration. It is safe for concurrent use.
type Cluster struct {
	cfg  configs.Upstream
	log  *zap.Logger
	now  func() time.Time
	dial DialFunc
	dcs  []*dc

	closed   atomic.Bool
	stop     context.CancelFunc
	loopDone chan struct{}
	closeMu  sync.Mutex
}

// BindResult describes where and how a user bind ran.
type BindResult struct {
	// DC is the URL of the DC that answered or, after an infrastructure failure,
	// the last one tried; "" when none was tried.
	DC string
	// Dur is the time spent on that DC: waiting for a connection, dialling one if
	// needed, and the bind itself.
	Dur time.Duration
	// NewConn is true when the bind ran on a connection dialled for it.
	NewConn bool
}

// DCStats is a snapshot of one DC.
type DCStats struct {
	// URL is the DC as configured.
	URL string
	// Breaker is BreakerClosed, BreakerOpen or BreakerHalfOpen.
	Breaker string
	// Drained is true when SetDrained took the DC out of service.
	Drained bool
	// Service is the pool of service-account connections (searches).
	Service PoolStats
	// Bind is the pool of user-bind connections.
	Bind PoolStats
	// Dials is the TCP connects attempted (pools and probes).
	Dials uint64
	// DialFailures is the connects or TLS handshakes that failed.
	DialFailures uint64
	// Handshakes is the TLS handshakes attempted; in steady state it stays flat
	// while binds and searches grow.
	Handshakes uint64
	// Resumed is the handshakes that resumed an earlier TLS session.
	Resumed uint64
	// Binds is the user binds written to the DC.
	Binds uint64
	// Searches is the searches written to the DC.
	Searches uint64
	// Probes is the health probes sent while the breaker was open.
	Probes uint64
	// StaleRetries is the requests moved to a new connection because the pooled
	// one turned out dead before the request was written.
	StaleRetries uint64
	// Pinned is the service connections held now by open paged searches
	// (StartPaged), outside the service pool.
	Pinned int
	// Failures is the failures the breaker counted.
	Failures uint64
	// LastError is the last failure the breaker counted ("" if none).
	LastError string
	// LastErrorAt is when LastError happened, by the Cluster's clock.
	LastErrorAt time.Time
	// LastLatency is the duration of the last request that reached the DC.
	LastLatency time.Duration
}

// New builds the Cluster of cfg: the TLS configuration of every server (the CA
// bundle from cfg.CAFile, the server's server_name), its pools and its breaker,
// and starts the probe loop. It dials nothing: the first request opens the first
// connection. cfg must be validated (configs fills the defaults); New refuses
// values it cannot work with.
func New(cfg configs.Upstream, log *zap.Logger, opts ...Option) (*Cluster, error) {
	if err := check(cfg); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	o := options{
		now:  time.Now,
		dial: (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: keepAlive}).DialContext,
	}
	for _, opt := range opts {
		opt(&o)
	}
	roots, err := certs.LoadCAPool(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("upstream.ca_file: %w", err)
	}
	c := &Cluster{
		cfg:      cfg,
		log:      log.Named("upstream"),
		now:      o.now,
		dial:     o.dial,
		loopDone: make(chan struct{}),
	}
	for i, s := range cfg.Servers {
		addr, host, err := parseURL(s.URL)
		if err != nil {
			return nil, fmt.Errorf("upstream.servers[%d].url: %w", i, err)
		}
		name := s.ServerName
		if name == "" {
			name = host
		}
		d := &dc{c: c, url: s.URL, addr: addr, tls: certs.ClientConfig(roots, name), log: c.log}
		d.cb = newBreaker(d, cfg.Breaker.Failures)
		d.svc = newPool(d, kindService, cfg.Pool.ServiceSize, d.serviceBind)
		d.usr = newPool(d, kindBind, cfg.Pool.BindSize, nil)
		c.dcs = append(c.dcs, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go c.probeLoop(ctx)
	return c, nil
}

// check refuses the values New cannot work with.
func check(cfg configs.Upstream) error {
	switch {
	case len(cfg.Servers) == 0:
		return fmt.Errorf("upstream.servers: no server")
	case cfg.DialTimeout <= 0:
		return fmt.Errorf("upstream.dial_timeout: %v is not positive", cfg.DialTimeout)
	case cfg.OpTimeout <= 0:
		return fmt.Errorf("upstream.op_timeout: %v is not positive", cfg.OpTimeout)
	case cfg.Pool.ServiceSize < 1:
		return fmt.Errorf("upstream.pool.service_size: %d is below 1", cfg.Pool.ServiceSize)
	case cfg.Pool.BindSize < 1:
		return fmt.Errorf("upstream.pool.bind_size: %d is below 1", cfg.Pool.BindSize)
	case cfg.Pool.WaitTimeout <= 0:
		return fmt.Errorf("upstream.pool.wait_timeout: %v is not positive", cfg.Pool.WaitTimeout)
	case cfg.Breaker.Failures < 1:
		return fmt.Errorf("upstream.breaker.failures: %d is below 1", cfg.Breaker.Failures)
	case cfg.Breaker.ProbeInterval <= 0:
		return fmt.Errorf("upstream.breaker.probe_interval: %v is not positive", cfg.Breaker.ProbeInterval)
	}
	seen := map[string]bool{}
	for i, s := range cfg.Servers {
		if seen[s.URL] {
			return fmt.Errorf("upstream.servers[%d].url: %s is listed twice", i, s.URL)
		}
		seen[s.URL] = true
	}
	return nil
}

// parseURL returns the dial address and host of an ldaps:// URL.
func parseURL(raw string) (addr, host string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", err
	}
	if u.Scheme != "ldaps" {
		return "", "", fmt.Errorf("%q is not ldaps:// (upstream TLS is mandatory)", raw)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return "", "", fmt.Errorf("%q has no host", raw)
	}
	if port == "" {
		port = ldap.DefaultLdapsPort
	}
	return net.JoinHostPort(host, port), host, nil
}

// Bind forwards a simple bind of dn with password to the first usable DC, on a
// pooled user-bind connection.
//
// A nil error is success. An answer of the DC (49 with its AD sub-code in the
// diagnostic, or any other result except 51, 52 and 80) comes back as the
// *ldap.Error go-ldap made of it; it is not a fault of the DC and is never retried
// on another DC. Otherwise the error wraps ErrNoHealthyUpstream (no DC usable,
// nothing sent), ErrBusy (no connection free in time, nothing sent) or
// ErrUnavailable. The bind goes to the next DC only when it never reached the
// previous one. An empty password is refused with ErrEmptyPassword.
func (c *Cluster) Bind(ctx context.Context, dn, password string) (BindResult, error) {
	if password == "" {
		return BindResult{}, ErrEmptyPassword
	}
	if c.closed.Load() {
		return BindResult{}, fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
	var last attempt
	var lastDC *dc
	for _, d := range c.dcs {
		if !d.usable() {
			continue
		}
		a := d.do(ctx, d.usr, func(l *ldap.Conn) error { return l.Bind(dn, password) })
		if a.skipped {
			continue
		}
		if a.reached {
			d.binds.Add(1)
		}
		res := BindResult{DC: d.url, Dur: a.dur, NewConn: a.isNew}
		switch {
		case a.err == nil:
			return res, nil
		case errors.Is(a.err, ErrBusy), errors.Is(a.err, ErrClosed):
			return res, a.err
		case classify(a.err) == answered:
			return res, a.err
		case a.reached:
			// Written, then no usable answer: the DC may have counted it.
			return res, unavailable(ctx, "bind on", d.url, a.err)
		case ctx.Err() != nil:
			return res, unavailable(ctx, "bind on", d.url, a.err)
		}
		last, lastDC = a, d
	}
	if lastDC == nil {
		return BindResult{}, fmt.Errorf("%w: every DC's breaker is open or the DC is drained", ErrNoHealthyUpstream)
	}
	return BindResult{DC: lastDC.url, Dur: last.dur, NewConn: last.isNew}, unavailable(ctx, "bind on", lastDC.url, last.err)
}

// Search runs req on a service-account connection of the first usable DC and
// returns the result and the URL of the DC that answered. A search is read-only,
// so after a transport failure, a timeout or a 51, 52 or 80 it is retried on the
// next usable DC. An answer other than success comes back as an *ldap.Error
// together with what the DC returned before it (go-ldap's partial result).
// Referrals are not followed and the result's Referrals are dropped. Errors that
// are not answers wrap ErrNoHealthyUpstream, ErrBusy or ErrUnavailable (with
// ErrServiceBind when the DCs refuse the service account).
//
// A paging control in req with a cookie ties the search to the connection that
// issued the cookie: use SearchPaged for paged searches.
func (c *Cluster) Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, string, error) {
	return c.search(ctx, func(l *ldap.Conn) (*ldap.SearchResult, error) { return l.Search(req) })
}

// SearchPaged runs req as a paged search (RFC 2696, pageSize entries per page;
// AD returns at most 1000) with every page on one connection of one DC, and
// returns all entries. Each page is bounded by upstream.op_timeout, the whole
// search by ctx. req is not modified: a paging control already in it is replaced.
// Failover, errors and referrals are as for Search; a search retried on the next
// DC starts again from the first page.
func (c *Cluster) SearchPaged(ctx context.Context, req *ldap.SearchRequest, pageSize uint32) (*ldap.SearchResult, string, error) {
	return c.search(ctx, pagedSearch(req, pageSize))
}

// SearchPagedAt is SearchPaged on the DC with this URL only, without failover:
// an incremental sync must read uSNChanged from the same DC whose
// highestCommittedUSN it stored, because USNs are per DC. It returns
// ErrNoHealthyUpstream when that DC's breaker is open or the DC is drained, and
// ErrUnknownServer for a URL that is not one of upstream.servers.
func (c *Cluster) SearchPagedAt(ctx context.Context, url string, req *ldap.SearchRequest, pageSize uint32) (*ldap.SearchResult, error) {
	for _, d := range c.dcs {
		if d.url == url {
			res, _, err := c.searchOn(ctx, []*dc{d}, pagedSearch(req, pageSize))
			return res, err
		}
	}
	return nil, fmt.Errorf("search at: %w: %q", ErrUnknownServer, url)
}

// pagedSearch runs req as a paged search on one connection.
func pagedSearch(req *ldap.SearchRequest, pageSize uint32) func(*ldap.Conn) (*ldap.SearchResult, error) {
	return func(l *ldap.Conn) (*ldap.SearchResult, error) {
		r := *req
		r.Controls = slices.DeleteFunc(slices.Clone(req.Controls), func(ct ldap.Control) bool {
			return ct.GetControlType() == ldap.ControlTypePaging
		})
		return l.SearchWithPaging(&r, pageSize)
	}
}

func (c *Cluster) search(ctx context.Context, run func(*ldap.Conn) (*ldap.SearchResult, error)) (*ldap.SearchResult, string, error) {
	return c.searchOn(ctx, c.dcs, run)
}

// searchOn runs a search on the first usable DC of dcs, failing over to the
// next on anything but an answer.
func (c *Cluster) searchOn(ctx context.Context, dcs []*dc, run func(*ldap.Conn) (*ldap.SearchResult, error)) (*ldap.SearchResult, string, error) {
	if c.closed.Load() {
		return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
	var lastErr error
	lastDC := ""
	for _, d := range dcs {
		if !d.usable() {
			continue
		}
		if err := d.serviceRefusedRecently(); err != nil {
			lastErr, lastDC = err, d.url
			continue
		}
		var res *ldap.SearchResult
		a := d.do(ctx, d.svc, func(l *ldap.Conn) error {
			var err error
			res, err = run(l)
			return err
		})
		if a.skipped {
			continue
		}
		if a.reached {
			d.searches.Add(1)
		}
		switch {
		case errors.Is(a.err, ErrBusy), errors.Is(a.err, ErrClosed):
			return nil, d.url, a.err
		case classify(a.err) == answered:
			if res != nil {
				res.Referrals = nil
			}
			return res, d.url, a.err
		case ctx.Err() != nil:
			return nil, d.url, unavailable(ctx, "search on", d.url, a.err)
		}
		lastErr, lastDC = a.err, d.url
	}
	if lastDC == "" {
		return nil, "", fmt.Errorf("%w: every DC's breaker is open or the DC is drained", ErrNoHealthyUpstream)
	}
	return nil, lastDC, unavailable(ctx, "search on", lastDC, lastErr)
}

// Stats returns a snapshot of every DC, in the configured order.
func (c *Cluster) Stats() []DCStats {
	out := make([]DCStats, 0, len(c.dcs))
	for _, d := range c.dcs {
		out = append(out, d.stats())
	}
	return out
}

// SetDrained takes the DC with this URL out of service (drained true) or puts it
// back. A drained DC gets no new requests and no probes; requests in flight on it
// finish, and its idle connections are closed. It is for maintenance and for
// testing failover.
func (c *Cluster) SetDrained(url string, drained bool) error {
	for _, d := range c.dcs {
		if d.url != url {
			continue
		}
		if d.drained.Swap(drained) != drained {
			c.log.Info("upstream drain changed", zap.String("upstream", url), zap.Bool("drained", drained))
		}
		if drained {
			d.svc.closeIdle()
			d.usr.closeIdle()
		}
		return nil
	}
	return fmt.Errorf("set drained: %w: %q", ErrUnknownServer, url)
}

// Close stops the probe loop and closes every pooled connection; requests in
// flight finish on their connections, which are closed when returned. Later
// requests fail with ErrClosed (wrapped with ErrUnavailable). Close is idempotent.
func (c *Cluster) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed.Swap(true) {
		return nil
	}
	c.stop()
	<-c.loopDone
	for _, d := range c.dcs {
		d.svc.close()
		d.usr.close()
		d.closePins()
	}
	return nil
}
