package main

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/ldapgate/ldapgate/proxy"
)

// failureLog keeps the last failed binds for the status report: a ring of at
// most http.status.auth_failures entries, counted by reason when the report is
// built. It is safe for concurrent use.
type failureLog struct {
	mu   sync.Mutex
	ring []authFailure // a ring once full; next is the oldest
	next int
	size int
}

// newFailureLog keeps the last size failures (at least 1).
func newFailureLog(size int) *failureLog {
	return &failureLog{size: max(size, 1)}
}

// observe records d when it is a failure (any result but success). login is
// escaped as in the audit line (proxy.Observer); the password never reaches
// here.
func (f *failureLog) observe(at time.Time, c proxy.Client, login string, d proxy.Decision) {
	if d.Code == 0 {
		return
	}
	e := authFailure{At: at, Client: c.Addr, Login: login, Result: d.Code,
		Reason: string(d.Reason), ADCode: d.ADCode, DC: d.DC}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ring) < f.size {
		f.ring = append(f.ring, e)
		return
	}
	f.ring[f.next] = e
	f.next = (f.next + 1) % f.size
}

// report counts the kept failures by reason and lists the last recent ones,
// newest first.
func (f *failureLog) report(recent int) authStatus {
	f.mu.Lock()
	all := make([]authFailure, 0, len(f.ring))
	all = append(all, f.ring[f.next:]...)
	all = append(all, f.ring[:f.next]...)
	f.mu.Unlock()

	st := authStatus{Counted: len(all), ByReason: []reasonCount{}, Recent: []authFailure{}}
	if len(all) == 0 {
		return st
	}
	st.Since = all[0].At
	counts := map[string]int{}
	for _, e := range all {
		counts[e.Reason]++
	}
	for r, n := range counts {
		st.ByReason = append(st.ByReason, reasonCount{Reason: r, Count: n})
	}
	slices.SortFunc(st.ByReason, func(a, b reasonCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Reason, b.Reason))
	})
	for i := len(all) - 1; i >= 0 && len(st.Recent) < recent; i-- {
		st.Recent = append(st.Recent, all[i])
	}
	return st
}
