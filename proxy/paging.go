package proxy

// Paged searches (RFC 2696) relayed to AD or read from the directory view
// (viewsearch.go: the same cookies and bounds, pages from one snapshot of the
// view, no upstream connection). AD's paging cookie belongs to the
// connection that issued it, so the listener relays a client's paged search
// page by page on one upstream service connection (upstream.PagedSearch holds
// it and AD's cookie), and gives the client an opaque random cookie of its own
// that names the search on that client connection only. The upstream
// connection is released when the search completes, fails, is abandoned (a
// page size of 0, a new paged search past search.paging.max_per_connection on
// the same connection, a new bind), when the client disconnects, when the
// client asks for no page for search.paging.idle_timeout, and at Shutdown.
// search.paging.max_open bounds the open paged searches of all clients: past
// it a new one gets 51. Pages never ask AD for more than 1000 entries.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// Errors of paged searches; searchResult maps them.
var (
	// errUnknownCookie: the client's cookie names no open paged search on its
	// connection (ended, expired or never issued): 53.
	errUnknownCookie = errors.New("unknown paging cookie")
	// errCookieMismatch: the cookie was issued for a different search: 53.
	errCookieMismatch = errors.New("paging cookie of another search")
	// errPagingBusy: search.paging.max_open reached, or every paged search of
	// the connection is running a page: 51.
	errPagingBusy = errors.New("too many paged searches open")
)

// cookieBytes is the length of the listener's own paging cookies.
const cookieBytes = 16

// pageSource is where a paged search's pages come from: AD, on the upstream
// connection an *upstream.PagedSearch holds, or the directory view
// (viewPages).
type pageSource interface {
	// Next returns the next page of at most pageSize entries (capped at AD's
	// MaxPageSize) and whether the search is complete.
	Next(ctx context.Context, pageSize uint32) (*ldap.SearchResult, bool, error)
	// Close ends the search and releases what it holds.
	Close()
	// DC is the DC the pages come from ("" for the view).
	DC() string
}

var _ pageSource = (*upstream.PagedSearch)(nil)

// pagedSearch is one client's paged search being relayed.
type pagedSearch struct {
	id     string // the client's cookie
	key    string // the search it belongs to (searchKey)
	up     pageSource
	source string // sourceAD or sourceView, for the log

	// The fields below are guarded by the connection's connPages.mu.
	busy  bool   // a page is being relayed
	used  uint64 // connPages.clock when last used (least recently used goes first)
	gen   uint64 // bumped by every page: an idle timer of an older one does nothing
	pages int    // pages relayed so far
	timer interface{ Stop() bool }

	endOnce sync.Once
}

// connPages is one client connection's open paged searches.
type connPages struct {
	mu      sync.Mutex
	open    map[string]*pagedSearch
	pending int    // first pages running that may become open searches
	clock   uint64 // ticks on every use, for least-recently-used order
	closed  bool   // the connection is gone: nothing new may open
	ending  int    // searches endAll took out of open and is still ending
	ended   *sync.Cond
}

// searchKey identifies a search request for RFC 2696's rule that every page
// repeats the same search.
func searchKey(q *searchQuery) string {
	r := q.req
	return strings.Join([]string{
		strings.ToLower(r.BaseDN), strconv.Itoa(r.Scope), strconv.Itoa(r.DerefAliases),
		strconv.Itoa(r.SizeLimit), strconv.Itoa(r.TimeLimit), strconv.FormatBool(r.TypesOnly),
		r.Filter, strings.ToLower(strings.Join(r.Attributes, ",")),
	}, "\x00")
}

// servePaged relays one page of a client's paged search.
func (s *searcher) servePaged(ctx context.Context, w *gldap.ResponseWriter, r *gldap.Request, q *searchQuery, st *connState, sl *searchLog) (*gldap.SearchResponseDone, error) {
	if len(q.paging.Cookie) == 0 {
		return s.firstPage(ctx, w, r, q, st, sl)
	}
	return s.nextPage(ctx, w, r, q, st, sl)
}

// pagedDone is the final response of a page, with the client's cookie ("" when
// the search is over). gldap: NewControlPaging(n) puts n in the size
// estimate, so the control is built with 0.
func pagedDone(r *gldap.Request, cookie string) *gldap.SearchResponseDone {
	done := r.NewSearchDoneResponse(gldap.WithResponseCode(codeSuccess))
	p, _ := gldap.NewControlPaging(0)
	if cookie != "" {
		p.SetCookie([]byte(cookie))
	}
	done.SetControls(p)
	return done
}

func (s *searcher) firstPage(ctx context.Context, w *gldap.ResponseWriter, r *gldap.Request, q *searchQuery, st *connState, sl *searchLog) (*gldap.SearchResponseDone, error) {
	sl.page = 1
	if q.paging.PagingSize == 0 {
		// A page of nothing: nothing is opened.
		return pagedDone(r, ""), nil
	}
	if err := s.reservePaged(st); err != nil {
		return nil, err
	}
	var (
		res *ldap.SearchResult
		up  pageSource
		err error
	)
	if q.view != nil {
		vp := &viewPages{ans: q.view.Result}
		res, _, err = vp.Next(ctx, q.paging.PagingSize)
		if !vp.over() {
			up = vp
		}
	} else {
		var ps *upstream.PagedSearch
		res, ps, sl.dc, err = s.dir.StartPaged(ctx, q.req, q.paging.PagingSize)
		if ps != nil {
			up = ps // never a nil *PagedSearch in the interface
		}
	}
	sl.entries = s.writeEntries(w, r, res)
	if up == nil {
		s.unreserve(st, true)
		if err != nil {
			return nil, err
		}
		return pagedDone(r, ""), nil
	}
	ps := &pagedSearch{id: newCookie(), key: searchKey(q), up: up, source: sl.source, pages: 1}
	if !s.register(st, ps) {
		// The client went away during the first page.
		s.end(ps, "disconnect")
		return pagedDone(r, ""), nil
	}
	return pagedDone(r, ps.id), err
}

// reservePaged takes a slot of search.paging.max_open and a place among the
// connection's paged searches, abandoning the connection's least recently
// used one when it has search.paging.max_per_connection open already.
func (s *searcher) reservePaged(st *connState) error {
	pg := &st.pages
	pg.mu.Lock()
	if pg.closed {
		pg.mu.Unlock()
		return errUnknownCookie // unreachable in practice: a gone client sends nothing
	}
	var evict *pagedSearch
	if len(pg.open)+pg.pending >= s.paging.MaxPerConnection {
		for _, ps := range pg.open {
			if !ps.busy && (evict == nil || ps.used < evict.used) {
				evict = ps
			}
		}
		if evict == nil {
			pg.mu.Unlock()
			return fmt.Errorf("%w: all %d paged searches of the connection are running a page", errPagingBusy, s.paging.MaxPerConnection)
		}
		s.forgetLocked(pg, evict)
	}
	pg.pending++
	pg.mu.Unlock()
	if evict != nil {
		s.end(evict, "abandoned by a new paged search")
	}
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
		s.unreserve(st, false)
		return fmt.Errorf("%w: search.paging.max_open (%d) reached", errPagingBusy, s.paging.MaxOpen)
	}
}

// unreserve undoes reservePaged for a first page that opened nothing.
func (s *searcher) unreserve(st *connState, slot bool) {
	st.pages.mu.Lock()
	st.pages.pending--
	st.pages.mu.Unlock()
	if slot {
		<-s.slots
	}
}

// register makes a reserved paged search open on the connection; false when
// the connection is gone.
func (s *searcher) register(st *connState, ps *pagedSearch) bool {
	pg := &st.pages
	pg.mu.Lock()
	defer pg.mu.Unlock()
	pg.pending--
	if pg.closed {
		return false
	}
	if pg.open == nil {
		pg.open = make(map[string]*pagedSearch)
	}
	pg.open[ps.id] = ps
	s.idleLocked(st, ps)
	return true
}

// idleLocked marks a paged search used now and arms its idle timer. Callers
// hold the connection's pages.mu.
func (s *searcher) idleLocked(st *connState, ps *pagedSearch) {
	pg := &st.pages
	pg.clock++
	ps.used = pg.clock
	ps.gen++
	gen := ps.gen
	ps.timer = s.after(s.paging.IdleTimeout, func() { s.expire(st, ps, gen) })
}

// expire ends a paged search whose client asked for no page for
// search.paging.idle_timeout.
func (s *searcher) expire(st *connState, ps *pagedSearch, gen uint64) {
	pg := &st.pages
	pg.mu.Lock()
	if pg.open[ps.id] != ps || ps.busy || ps.gen != gen {
		pg.mu.Unlock()
		return
	}
	s.forgetLocked(pg, ps)
	pg.mu.Unlock()
	s.end(ps, "idle")
}

// forgetLocked removes a paged search from its connection; the caller ends it
// after releasing pages.mu.
func (s *searcher) forgetLocked(pg *connPages, ps *pagedSearch) {
	delete(pg.open, ps.id)
	if ps.timer != nil {
		ps.timer.Stop()
	}
}

// end releases a paged search's upstream connection and its max_open slot,
// once.
func (s *searcher) end(ps *pagedSearch, why string) {
	ps.endOnce.Do(func() {
		ps.up.Close()
		<-s.slots
		s.log.Debug("paged search ended", zap.String("why", why), zap.String("source", ps.source), zap.String("dc", ps.up.DC()), zap.Int("pages", ps.pages))
	})
}

// endAll ends every paged search of a connection; closed also keeps new ones
// from opening (the client disconnected). It returns once they have all
// ended, also those another endAll of the connection took (Shutdown and the
// disconnect of the same connection race: gldap calls its close callback
// after Stop stopped waiting for the connection).
func (s *searcher) endAll(st *connState, why string, closed bool) {
	pg := &st.pages
	pg.mu.Lock()
	if closed {
		pg.closed = true
	}
	var all []*pagedSearch
	for _, ps := range pg.open {
		s.forgetLocked(pg, ps)
		all = append(all, ps)
	}
	pg.ending += len(all)
	pg.mu.Unlock()
	for _, ps := range all {
		s.end(ps, why)
	}
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.ended == nil {
		pg.ended = sync.NewCond(&pg.mu)
	}
	pg.ending -= len(all)
	pg.ended.Broadcast()
	for pg.ending > 0 {
		pg.ended.Wait()
	}
}

// openPaged is the number of open paged searches across all clients.
func (s *searcher) openPaged() int { return len(s.slots) }

func (s *searcher) nextPage(ctx context.Context, w *gldap.ResponseWriter, r *gldap.Request, q *searchQuery, st *connState, sl *searchLog) (*gldap.SearchResponseDone, error) {
	pg := &st.pages
	pg.mu.Lock()
	ps := pg.open[string(q.paging.Cookie)]
	switch {
	case ps == nil:
		pg.mu.Unlock()
		return nil, errUnknownCookie
	case ps.key != searchKey(q):
		pg.mu.Unlock()
		return nil, errCookieMismatch
	case ps.busy:
		pg.mu.Unlock()
		return nil, fmt.Errorf("%w: a page of this search is still running", errPagingBusy)
	case q.paging.PagingSize == 0:
		// RFC 2696: a page size of 0 abandons the search.
		s.forgetLocked(pg, ps)
		pg.mu.Unlock()
		s.end(ps, "abandoned by the client")
		return pagedDone(r, ""), nil
	}
	ps.busy = true
	ps.pages++
	sl.page = ps.pages
	sl.source = ps.source
	if ps.timer != nil {
		ps.timer.Stop()
	}
	pg.mu.Unlock()

	res, over, err := ps.up.Next(ctx, q.paging.PagingSize)
	sl.dc = ps.up.DC()
	sl.entries = s.writeEntries(w, r, res)

	pg.mu.Lock()
	ps.busy = false
	still := pg.open[ps.id] == ps
	if over && still {
		s.forgetLocked(pg, ps)
	} else if still {
		s.idleLocked(st, ps)
	}
	pg.mu.Unlock()
	switch {
	case over:
		s.end(ps, "complete")
	case !still:
		// Ended meanwhile (disconnect, rebind); end() ran or runs there.
		return pagedDone(r, ""), err
	}
	if err != nil {
		return nil, err
	}
	if over {
		return pagedDone(r, ""), nil
	}
	return pagedDone(r, ps.id), nil
}

// newCookie returns a fresh random cookie for a client's paged search.
func newCookie() string {
	b := make([]byte, cookieBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return string(b)
}
