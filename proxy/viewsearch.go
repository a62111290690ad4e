package proxy

// Searches answered from the directory view (issue 5 item 7): pascom's
// import and its search-then-bind lookups keep working while AD is slow or
// unreachable, and cost AD nothing while the view is fresh. The view decides
// whether it can give exactly AD's answer (usersync.ViewSearcher, wired in by
// cmd); the listener asks it after the rights and base checks, with the
// request as it would go to AD (the filter re-encoded, the attributes after
// the allow-list), and forwards the search when it cannot. On top of the
// view's own rules the listener keeps AD's limits exactly:
//
//   - a size limit the answer exceeds goes to AD (which entries AD would pick
//     is AD's order, not the view's);
//   - an unpaged answer of more than MaxPageSize entries goes to AD (AADDS
//     cuts it at 1000 with sizeLimitExceeded; Samba does not);
//   - a paged answer is served page by page from the one snapshot the first
//     page was read from, with the listener's own cookies and the same bounds
//     as relayed paged searches (paging.go: search.paging.max_open,
//     max_per_connection, idle_timeout), pages of at most MaxPageSize.
//
// Every search's log line says where it was answered: source "view" (with the
// rule, and stale=true when the view was older than sync.stale_after and
// answered because no DC was usable) or "ad" (with why the view did not
// answer, when a view is configured). A page of a paged search stays with the
// source its first page came from.

import (
	"context"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"

	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// Sources of a search's answer, as its log line names them.
const (
	sourceAD   = "ad"
	sourceView = "view"
)

// ViewSearch is the directory view as the listener's searches see it.
// usersync.ViewSearcher does the work; cmd adapts it (proxy never imports
// sync).
type ViewSearch interface {
	// SearchView answers req from the view exactly as AD would, or returns an
	// error saying why req must go to AD. req is the request as it would go
	// upstream: base re-serialised, filter re-encoded, attributes after the
	// allow-list ("1.1" for none), the client's limits; no controls.
	SearchView(req *ldap.SearchRequest) (ViewAnswer, error)
}

// ViewResult is the entries of a view's answer.
type ViewResult interface {
	// Len is the number of entries.
	Len() int
	// Entry returns the i-th entry (0 ≤ i < Len) as AD sends it.
	Entry(i int) *ldap.Entry
}

// ViewAnswer is the view's answer to one search.
type ViewAnswer struct {
	// Result holds the entries.
	Result ViewResult
	// Rule is the view's reason it may answer ("scope", "unique-key").
	Rule string
	// Stale is set when the view is older than sync.stale_after and answered
	// because no DC is usable.
	Stale bool
	// Age is the time since the view's last sync.
	Age time.Duration
}

// WithViewSearch makes the listener answer searches from the directory view
// when it can (see viewsearch.go). When v also implements View, the proxy
// user's DN is looked up in the view first too.
func WithViewSearch(v ViewSearch) SearchOption {
	return func(o *searchOptions) { o.view = v }
}

// fromView asks the view for q's answer and keeps it in q.view when the
// listener may send it; otherwise it notes in sl why the search goes to AD.
func (s *searcher) fromView(q *searchQuery, sl *searchLog) {
	sl.source = sourceAD
	if s.view == nil {
		return
	}
	ans, err := s.view.SearchView(q.req)
	switch {
	case err != nil:
		sl.viewReason = err.Error()
		return
	case ans.Result == nil:
		sl.viewReason = "the view gave no result"
		return
	}
	n := ans.Result.Len()
	switch {
	case q.req.SizeLimit > 0 && n > q.req.SizeLimit:
		sl.viewReason = "the answer exceeds the size limit: which entries AD returns is AD's choice"
		return
	case q.paging == nil && n > upstream.MaxPageSize:
		sl.viewReason = "an unpaged answer beyond AD's MaxPageSize"
		return
	}
	q.view = &ans
	sl.source, sl.viewRule, sl.viewStale, sl.viewAge = sourceView, ans.Rule, ans.Stale, ans.Age
}

// serveFromView writes an unpaged answer from the view.
func (s *searcher) serveFromView(w *gldap.ResponseWriter, r *gldap.Request, q *searchQuery, sl *searchLog) *gldap.SearchResponseDone {
	sl.entries = s.writeEntries(w, r, &ldap.SearchResult{Entries: viewEntries(q.view.Result, 0, q.view.Result.Len())})
	return r.NewSearchDoneResponse(gldap.WithResponseCode(codeSuccess))
}

// viewEntries returns entries [from, to) of res.
func viewEntries(res ViewResult, from, to int) []*ldap.Entry {
	out := make([]*ldap.Entry, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, res.Entry(i))
	}
	return out
}

// viewPages pages through a view's answer: the pageSource of a paged search
// served from the view. The answer is one immutable snapshot of the view.
// Pages run one at a time (pagedSearch.busy).
type viewPages struct {
	ans ViewResult
	pos int
}

var _ pageSource = (*viewPages)(nil)

// Next returns the next page; pages are capped at MaxPageSize like AD's.
func (v *viewPages) Next(_ context.Context, pageSize uint32) (*ldap.SearchResult, bool, error) {
	size := int(pageSize)
	if size == 0 || size > upstream.MaxPageSize {
		size = upstream.MaxPageSize
	}
	end := min(v.pos+size, v.ans.Len())
	res := &ldap.SearchResult{Entries: viewEntries(v.ans, v.pos, end)}
	v.pos = end
	return res, v.over(), nil
}

func (v *viewPages) over() bool { return v.pos >= v.ans.Len() }

// Close holds nothing to release: the snapshot goes with the last reference.
func (v *viewPages) Close() {}

// DC is "": the view is no DC.
func (v *viewPages) DC() string { return "" }
