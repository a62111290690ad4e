package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// MaxPageSize is AD's MaxPageSize: the most entries a DC returns in one page
// or one unpaged search. A paged search never asks for more.
const MaxPageSize = 1000

// ErrSearchDone is returned by PagedSearch.Next once the search has ended:
// its last page was read, it failed or it was closed.
var ErrSearchDone = errors.New("paged search is over")

// PagedSearch is a paged search (RFC 2696) whose pages a client asks for one at
// a time, as the listener relays them: AD's paging cookie belongs to the
// connection that issued it, so every page runs on one service connection of
// one DC, which the search holds outside the service pool (so that it never
// starves the searches that map logins) from StartPaged until its last page,
// an error or Close. The DC's cookie never leaves the PagedSearch.
//
// Each page goes through the DC's breaker like any search and is bounded by
// upstream.op_timeout and its context. Only the first page fails over to the
// next DC; a later page cannot, as its cookie means nothing elsewhere.
// A PagedSearch is safe for concurrent use; pages run one at a time.
type PagedSearch struct {
	c   *Cluster
	d   *dc
	p   *pool              // the service pool the connection came from, and goes back to
	req ldap.SearchRequest // the search as first sent, without a paging control

	mu        sync.Mutex
	pc        *pconn // nil once the search is over
	cookie    []byte // the DC's cookie for the next page
	busy      bool   // a page is running (pc is in use outside mu)
	closeWhen bool   // Close was called while busy: end when the page returns
}

// StartPaged runs the first page of req, pageSize entries at most (capped at
// MaxPageSize; 0 means MaxPageSize), on a service connection of the first
// usable DC, and returns the page and the URL of the DC that answered. When
// the DC says more pages follow, it also returns the PagedSearch that reads
// them, holding that connection; otherwise the connection went back to the
// pool and the PagedSearch is nil. Paging controls in req are replaced; req is
// not modified. Failover, referrals and errors are as for Search.
func (c *Cluster) StartPaged(ctx context.Context, req *ldap.SearchRequest, pageSize uint32) (*ldap.SearchResult, *PagedSearch, string, error) {
	if c.closed.Load() {
		return nil, nil, "", fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
	base := *req
	base.Controls = withoutPaging(req.Controls)
	size := pageSizeOf(pageSize)
	var lastErr error
	lastDC := ""
	for _, d := range c.cur.Load().dcs {
		if !d.usable() {
			continue
		}
		if err := d.serviceRefusedRecently(); err != nil {
			lastErr, lastDC = err, d.url
			continue
		}
		var (
			res    *ldap.SearchResult
			cookie []byte
		)
		svc := d.set.Load().svc
		a := d.doKeeping(ctx, svc, func(l *ldap.Conn) error {
			var err error
			res, err = l.Search(pageRequest(&base, size, nil))
			cookie = responseCookie(res, err)
			return err
		}, func() bool { return len(cookie) > 0 })
		if a.skipped {
			continue
		}
		if a.reached {
			d.searches.Add(1)
		}
		switch {
		case errors.Is(a.err, ErrBusy), errors.Is(a.err, ErrClosed):
			return nil, nil, d.url, a.err
		case classify(a.err) == answered:
			if res != nil {
				res.Referrals = nil
			}
			var ps *PagedSearch
			if a.kept != nil {
				ps = &PagedSearch{c: c, d: d, p: svc, req: base, pc: a.kept, cookie: cookie}
				if !d.addPin(ps) {
					// The Cluster closed meanwhile.
					a.kept.close()
					return nil, nil, d.url, fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
				}
			}
			return res, ps, d.url, a.err
		case ended(ctx) != nil:
			return nil, nil, d.url, unavailable(ctx, "search on", d.url, a.err)
		}
		lastErr, lastDC = a.err, d.url
	}
	if lastDC == "" {
		return nil, nil, "", fmt.Errorf("%w: every DC's breaker is open or the DC is drained", ErrNoHealthyUpstream)
	}
	return nil, nil, lastDC, unavailable(ctx, "search on", lastDC, lastErr)
}

// DC returns the URL of the DC the search runs on.
func (ps *PagedSearch) DC() string { return ps.d.url }

// Next runs the next page, pageSize entries at most (capped at MaxPageSize; 0
// means MaxPageSize), and reports whether the search is complete. A complete
// search, and one whose page got an error, is over: its connection is back in
// the pool (or closed, after a transport failure) and further calls return
// ErrSearchDone. Errors are as for Search, except that a page is never retried
// on another DC: a DC that fails mid-search is ErrUnavailable (and
// ErrNoHealthyUpstream when its breaker is open).
func (ps *PagedSearch) Next(ctx context.Context, pageSize uint32) (res *ldap.SearchResult, done bool, err error) {
	ps.mu.Lock()
	switch {
	case ps.pc == nil:
		ps.mu.Unlock()
		return nil, true, ErrSearchDone
	case ps.busy:
		ps.mu.Unlock()
		return nil, false, fmt.Errorf("%w: a page of this search is still running", ErrBusy)
	}
	ps.busy = true
	pc, req := ps.pc, pageRequest(&ps.req, pageSizeOf(pageSize), ps.cookie)
	ps.mu.Unlock()

	var cookie []byte
	a := ps.d.doPinned(ctx, pc, func(l *ldap.Conn) error {
		var err error
		res, err = l.Search(req)
		cookie = responseCookie(res, err)
		return err
	})
	if a.reached {
		ps.d.searches.Add(1)
	}
	if res != nil {
		res.Referrals = nil
	}
	answer := !a.skipped && classify(a.err) == answered

	ps.mu.Lock()
	ps.busy = false
	pc.lastUsed = ps.c.now()
	ps.cookie = cookie
	done = answer && len(cookie) == 0
	closing := ps.closeWhen
	end := done || !answer || a.err != nil || closing
	if end {
		ps.pc = nil
	}
	ps.mu.Unlock()
	if end {
		ps.d.removePin(ps)
		if answer && !closing && len(cookie) == 0 {
			// Complete (or refused by the DC): nothing of the search is
			// left on the connection.
			ps.p.adopt(pc)
		} else {
			pc.close()
		}
	}
	switch {
	case a.skipped:
		return nil, true, fmt.Errorf("%w: the breaker of %s opened during a paged search", ErrNoHealthyUpstream, ps.d.url)
	case answer:
		return res, done || end, a.err
	default:
		return nil, true, unavailable(ctx, "search page on", ps.d.url, a.err)
	}
}

// Close abandons the search: its connection is closed, which also frees the
// DC's result set (returning it to the pool would leave the result set on it).
// A page running meanwhile is cut short and returns an error. Close after the
// search ended, and a second Close, do nothing.
func (ps *PagedSearch) Close() {
	ps.mu.Lock()
	pc := ps.pc
	switch {
	case pc == nil:
		ps.mu.Unlock()
		return
	case ps.busy:
		// Next closes the connection when the page returns, which this
		// makes happen now.
		ps.closeWhen = true
		ps.mu.Unlock()
		pc.wire.abort()
		return
	}
	ps.pc = nil
	ps.mu.Unlock()
	ps.d.removePin(ps)
	pc.close()
}

// doPinned runs op on a connection the caller holds outside the pool, through
// the DC's breaker, like do.
func (d *dc) doPinned(ctx context.Context, pc *pconn, op func(*ldap.Conn) error) attempt {
	if err := ctx.Err(); err != nil {
		return attempt{err: err, uncounted: true}
	}
	done, err := d.cb.Allow()
	if err != nil {
		return attempt{skipped: true}
	}
	if !d.closed() {
		done(errNotCounted)
		return attempt{skipped: true}
	}
	start := time.Now()
	reached, err := pc.run(ctx, d.c.config().OpTimeout, op)
	a := attempt{err: err, reached: reached, dur: time.Since(start)}
	if a.err != nil && ctx.Err() != nil && classify(a.err) != answered {
		a.uncounted = true
	}
	d.finish(done, start, a)
	return a
}

// addPin records an open paged search; false once the Cluster is closed.
func (d *dc) addPin(ps *PagedSearch) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.c.closed.Load() {
		return false
	}
	if d.pins == nil {
		d.pins = make(map[*PagedSearch]struct{})
	}
	d.pins[ps] = struct{}{}
	return true
}

func (d *dc) removePin(ps *PagedSearch) {
	d.mu.Lock()
	delete(d.pins, ps)
	d.mu.Unlock()
}

func (d *dc) pinnedCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pins)
}

// closePins closes every open paged search (Cluster.Close).
func (d *dc) closePins() {
	d.mu.Lock()
	pins := make([]*PagedSearch, 0, len(d.pins))
	for ps := range d.pins {
		pins = append(pins, ps)
	}
	d.mu.Unlock()
	for _, ps := range pins {
		ps.Close()
	}
}

// pageSizeOf caps a requested page size at MaxPageSize; 0 asks for the most.
func pageSizeOf(n uint32) uint32 {
	if n == 0 || n > MaxPageSize {
		return MaxPageSize
	}
	return n
}

// withoutPaging returns a copy of controls without paging controls.
func withoutPaging(controls []ldap.Control) []ldap.Control {
	return slices.DeleteFunc(slices.Clone(controls), func(ct ldap.Control) bool {
		return ct.GetControlType() == ldap.ControlTypePaging
	})
}

// pageRequest is base with a paging control for one page.
func pageRequest(base *ldap.SearchRequest, size uint32, cookie []byte) *ldap.SearchRequest {
	r := *base
	p := ldap.NewControlPaging(size)
	p.SetCookie(cookie)
	r.Controls = append(slices.Clone(base.Controls), p)
	return &r
}

// responseCookie is the DC's paging cookie in a successful page, nil when the
// search is complete or the page failed (go-ldap does not read the controls
// of a result other than success, and no page follows one).
func responseCookie(res *ldap.SearchResult, err error) []byte {
	if err != nil || res == nil {
		return nil
	}
	if p, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging); ok {
		return p.Cookie
	}
	return nil
}
