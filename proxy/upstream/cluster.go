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
// At the same interval, a usable DC that has had no TLS handshake for
// upstream.cert_check_interval (a standby DC) gets one without a bind, only to
// read its certificate's expiry (DCStats.CertNotAfter); these checks are
// counted apart (CertChecks) and never touch the breaker.
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
// # Reconfiguring
//
// Reconfigure replaces the configuration while requests run (ldapgate serve's
// reload). The request path takes no lock: each request loads the DC list once,
// from an atomic pointer. A DC whose URL stays keeps its breaker and counters,
// and its pools as long as its connections would be made the same way; a DC
// that leaves the list finishes what runs on it and closes its connections as
// they come back.
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

// Cluster is the set of DCs of one configuration, which Reconfigure replaces
// while requests run. It is safe for concurrent use.
type Cluster struct {
	log  *zap.Logger
	now  func() time.Time
	dial DialFunc

	// cur is the configuration and DC list requests use: loaded once per
	// request, so a request sees one list from start to end, and replaced
	// whole by Reconfigure. The request path takes no lock.
	cur atomic.Pointer[generation]

	closed       atomic.Bool
	stop         context.CancelFunc
	loopDone     chan struct{}
	reconfigured chan struct{} // wakes the probe loop after Reconfigure (buffer 1)

	// mu serialises Reconfigure and Close and guards retired.
	mu sync.Mutex
	// retired are the connection sets Reconfigure replaced or whose DC it
	// removed, kept until nothing uses them so that Close can end them too,
	// with the DC they belong to (for its paged searches).
	retired []retiredSet
}

// generation is one configuration of the Cluster: cfg and its DCs in order of
// preference. It is never changed once stored.
type generation struct {
	cfg configs.Upstream
	dcs []*dc
}

// retiredSet is a connection set taken out of use, and its DC.
type retiredSet struct {
	d   *dc
	set *connSet
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
	// CertNotAfter is the NotAfter of the DC's leaf certificate seen at the
	// last TLS handshake (pools, probes and certificate checks; a resumed
	// session reports its first handshake's); zero before the first handshake.
	CertNotAfter time.Time
	// CertChecks is the handshakes made only to read the certificate of a DC
	// that had none for upstream.cert_check_interval; they are not counted in
	// Dials and Handshakes.
	CertChecks uint64
}

// New builds the Cluster of cfg: the TLS configuration of every server (the CA
// bundle from cfg.CAFile, the server's server_name), its pools and its breaker,
// and starts the probe loop. It dials nothing: the first request opens the first
// connection. cfg must be validated (configs fills the defaults); New refuses
// values it cannot work with.
func New(cfg configs.Upstream, log *zap.Logger, opts ...Option) (*Cluster, error) {
	if log == nil {
		log = zap.NewNop()
	}
	o := options{
		now: time.Now,
		// No Timeout: dialTLS bounds each dial with the upstream.dial_timeout
		// in force, which Reconfigure may change.
		dial: (&net.Dialer{KeepAlive: keepAlive}).DialContext,
	}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{
		log:          log.Named("upstream"),
		now:          o.now,
		dial:         o.dial,
		loopDone:     make(chan struct{}),
		reconfigured: make(chan struct{}, 1),
	}
	next, err := c.prepare(cfg)
	if err != nil {
		return nil, err
	}
	c.cur.Store(next.gen)
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go c.probeLoop(ctx)
	return c, nil
}

// Reconfigure makes the Cluster use cfg from the next request on. It refuses
// what New refuses, and then changes nothing. Otherwise:
//
//   - a DC whose URL stays in upstream.servers keeps its breaker, drain state
//     and counters, and its pools too unless what its connections are made
//     with changed (upstream.ca_file's certificates, the server name, the
//     service account, the pool sizes): then it gets new pools and its
//     connections are made anew;
//   - a DC no longer listed gets no new requests; requests in flight on it
//     finish, its paged searches run to their end, and its connections are
//     closed as they come back;
//   - a new DC starts fresh, as in New;
//   - DCs are preferred in the new order;
//   - timeouts, lifetimes, breaker.failures and breaker.probe_interval apply
//     to the next operation, check or probe; DCs whose breaker is open are
//     probed at once.
//
// Requests keep running throughout; none of them waits for Reconfigure or
// fails because of it. After Close it returns ErrClosed.
func (c *Cluster) Reconfigure(cfg configs.Upstream) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return fmt.Errorf("upstream: reconfigure: %w", ErrClosed)
	}
	next, err := c.prepare(cfg)
	if err != nil {
		return err
	}
	for _, r := range next.replaced {
		r.d.set.Store(r.next)
	}
	old := c.cur.Swap(next.gen)
	for _, r := range next.replaced {
		r.d.forgetServiceRefusal()
		r.old.retire()
		c.retired = append(c.retired, retiredSet{d: r.d, set: r.old})
	}
	kept := make(map[*dc]bool, len(next.gen.dcs))
	for _, d := range next.gen.dcs {
		kept[d] = true
	}
	for _, d := range old.dcs {
		if !kept[d] {
			set := d.set.Load()
			set.retire()
			c.retired = append(c.retired, retiredSet{d: d, set: set})
		}
	}
	// Forget the retired sets nothing uses any more: no connection, no
	// request, and no paged search of a removed DC.
	c.retired = slices.DeleteFunc(c.retired, func(r retiredSet) bool {
		return r.set.svc.unused() && r.set.usr.unused() && (kept[r.d] || r.d.pinnedCount() == 0)
	})
	select {
	case c.reconfigured <- struct{}{}:
	default:
	}
	return nil
}

// plan is what prepare made of a configuration: the generation to store and
// the connection sets of kept DCs to replace.
type plan struct {
	gen      *generation
	replaced []replacement
}

// replacement is a kept DC's new connection set and the one it replaces.
type replacement struct {
	d         *dc
	old, next *connSet
}

// prepare checks cfg, loads its CA bundle and builds the generation for it:
// the current Cluster's DCs whose URL cfg still lists (with a new connection
// set where it must change) and new DCs for the other URLs. It changes
// nothing that requests use; c.mu is held, or c is not yet shared.
func (c *Cluster) prepare(cfg configs.Upstream) (plan, error) {
	if err := check(cfg); err != nil {
		return plan{}, fmt.Errorf("upstream: %w", err)
	}
	roots, err := certs.LoadCAPool(cfg.CAFile)
	if err != nil {
		return plan{}, fmt.Errorf("upstream.ca_file: %w", err)
	}
	byURL := map[string]*dc{}
	if cur := c.cur.Load(); cur != nil {
		for _, d := range cur.dcs {
			byURL[d.url] = d
		}
	}
	cfg.Servers = slices.Clone(cfg.Servers) // the caller's slice may change later
	p := plan{gen: &generation{}}
	for i, s := range cfg.Servers {
		addr, host, err := parseURL(s.URL)
		if err != nil {
			return plan{}, fmt.Errorf("upstream.servers[%d].url: %w", i, err)
		}
		name := s.ServerName
		if name == "" {
			name = host
		}
		d := byURL[s.URL]
		switch {
		case d == nil:
			d = &dc{c: c, url: s.URL, addr: addr, log: c.log}
			d.cb = newBreaker(d)
			d.set.Store(d.newConnSet(&cfg, roots, name))
		case !d.set.Load().matches(&cfg, roots, name):
			p.replaced = append(p.replaced, replacement{d: d, old: d.set.Load(), next: d.newConnSet(&cfg, roots, name)})
		}
		p.gen.dcs = append(p.gen.dcs, d)
	}
	p.gen.cfg = cfg
	return p, nil
}

// config returns the configuration in force.
func (c *Cluster) config() *configs.Upstream { return &c.cur.Load().cfg }

// dcByURL returns the DC with this URL in the configuration in force, nil when
// there is none.
func (c *Cluster) dcByURL(url string) *dc {
	for _, d := range c.cur.Load().dcs {
		if d.url == url {
			return d
		}
	}
	return nil
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
	for _, d := range c.cur.Load().dcs {
		if !d.usable() {
			continue
		}
		a := d.do(ctx, d.set.Load().usr, func(l *ldap.Conn) error { return l.Bind(dn, password) })
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
		case ended(ctx) != nil:
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
	return c.search(ctx, pagedSearch(req, pageSize, nil))
}

// SearchPagedAt is SearchPaged on the DC with this URL only, without failover:
// an incremental sync must read uSNChanged from the same DC whose
// highestCommittedUSN it stored, because USNs are per DC. It returns
// ErrNoHealthyUpstream when that DC's breaker is open or the DC is drained, and
// ErrUnknownServer for a URL that is not one of upstream.servers.
func (c *Cluster) SearchPagedAt(ctx context.Context, url string, req *ldap.SearchRequest, pageSize uint32) (*ldap.SearchResult, error) {
	return c.searchPagedAt(ctx, url, req, pageSize, nil)
}

// SearchPagesAt is SearchPagedAt handing each page's entries to each as the
// page arrives instead of returning them all at the end, so a caller that
// keeps less than the LDAP entries (the sync's full read of 100,000 users)
// holds one page of them at a time. An error from each ends the search (the
// DC is asked to abandon it) and is returned wrapped in ErrStopped; it says
// nothing against the DC. After any error the pages already handed over are
// part of an incomplete answer.
func (c *Cluster) SearchPagesAt(ctx context.Context, url string, req *ldap.SearchRequest, pageSize uint32, each func(entries []*ldap.Entry) error) error {
	if each == nil {
		return errors.New("search pages at: no function for the pages")
	}
	_, err := c.searchPagedAt(ctx, url, req, pageSize, each)
	return err
}

func (c *Cluster) searchPagedAt(ctx context.Context, url string, req *ldap.SearchRequest, pageSize uint32, each func([]*ldap.Entry) error) (*ldap.SearchResult, error) {
	if d := c.dcByURL(url); d != nil {
		res, _, err := c.searchOn(ctx, []*dc{d}, pagedSearch(req, pageSize, each))
		return res, err
	}
	return nil, fmt.Errorf("search at: %w: %q", ErrUnknownServer, url)
}

// pagedSearch runs req as a paged search on one connection. With each nil the
// entries of every page are collected into the result; otherwise each gets
// every page's entries and the result holds none.
func pagedSearch(req *ldap.SearchRequest, pageSize uint32, each func([]*ldap.Entry) error) func(*ldap.Conn) (*ldap.SearchResult, error) {
	return func(l *ldap.Conn) (*ldap.SearchResult, error) {
		paging := ldap.NewControlPaging(pageSize)
		r := *req
		r.Controls = append(slices.DeleteFunc(slices.Clone(req.Controls), func(ct ldap.Control) bool {
			return ct.GetControlType() == ldap.ControlTypePaging
		}), paging)
		out := &ldap.SearchResult{}
		for {
			page, err := l.Search(&r)
			if err != nil {
				return nil, err
			}
			out.Referrals = append(out.Referrals, page.Referrals...)
			out.Controls = page.Controls
			if each == nil {
				out.Entries = append(out.Entries, page.Entries...)
			} else if err := each(page.Entries); err != nil {
				abandonPaging(l, &r, paging, page.Controls)
				return nil, fmt.Errorf("%w: %w", ErrStopped, err)
			}
			next, _ := ldap.FindControl(page.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
			if next == nil || len(next.Cookie) == 0 {
				return out, nil
			}
			paging.SetCookie(next.Cookie)
		}
	}
}

// abandonPaging tells the DC that a paged search whose last page carried
// controls ends here (RFC 2696: a page size of 0 with the cookie), so the
// connection, back in its pool, holds no open result set; AD allows only a
// few per connection. Its answer does not matter.
func abandonPaging(l *ldap.Conn, r *ldap.SearchRequest, paging *ldap.ControlPaging, last []ldap.Control) {
	next, _ := ldap.FindControl(last, ldap.ControlTypePaging).(*ldap.ControlPaging)
	if next == nil || len(next.Cookie) == 0 {
		return
	}
	paging.SetCookie(next.Cookie)
	paging.PagingSize = 0
	_, _ = l.Search(r)
}

func (c *Cluster) search(ctx context.Context, run func(*ldap.Conn) (*ldap.SearchResult, error)) (*ldap.SearchResult, string, error) {
	return c.searchOn(ctx, c.cur.Load().dcs, run)
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
		a := d.do(ctx, d.set.Load().svc, func(l *ldap.Conn) error {
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
		case ended(ctx) != nil:
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
	dcs := c.cur.Load().dcs
	out := make([]DCStats, 0, len(dcs))
	for _, d := range dcs {
		out = append(out, d.stats())
	}
	return out
}

// SetDrained takes the DC with this URL out of service (drained true) or puts it
// back. A drained DC gets no new requests and no probes; requests in flight on it
// finish, and its idle connections are closed. It is for maintenance and for
// testing failover.
func (c *Cluster) SetDrained(url string, drained bool) error {
	d := c.dcByURL(url)
	if d == nil {
		return fmt.Errorf("set drained: %w: %q", ErrUnknownServer, url)
	}
	if d.drained.Swap(drained) != drained {
		c.log.Info("upstream drain changed", zap.String("upstream", url), zap.Bool("drained", drained))
	}
	if drained {
		set := d.set.Load()
		set.svc.closeIdle()
		set.usr.closeIdle()
	}
	return nil
}

// Close stops the probe loop and closes every pooled connection; requests in
// flight finish on their connections, which are closed when returned. Later
// requests fail with ErrClosed (wrapped with ErrUnavailable). Close is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Swap(true) {
		return nil
	}
	c.stop()
	<-c.loopDone
	for _, d := range c.cur.Load().dcs {
		set := d.set.Load()
		set.svc.close()
		set.usr.close()
		d.closePins()
	}
	for _, r := range c.retired {
		r.set.svc.close()
		r.set.usr.close()
		r.d.closePins()
	}
	c.retired = nil
	return nil
}
