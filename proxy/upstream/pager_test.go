package upstream

import (
	"errors"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// loadUsersRequest searches the bulk users.
func loadUsersRequest() *ldap.SearchRequest {
	return ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=user)", []string{"sAMAccountName"}, nil)
}

// readAll reads the rest of a paged search page by page and returns the
// sAMAccountNames of every page, first page included.
func readAll(t *testing.T, first *ldap.SearchResult, ps *PagedSearch, pageSize uint32) []string {
	t.Helper()
	var names []string
	add := func(res *ldap.SearchResult) {
		for _, e := range res.Entries {
			names = append(names, e.GetAttributeValue("sAMAccountName"))
		}
	}
	add(first)
	for pages := 1; ps != nil; pages++ {
		if pages > 100 {
			t.Fatal("more than 100 pages")
		}
		res, done, err := ps.Next(ctxTimeout(t, 30*time.Second), pageSize)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		add(res)
		if done {
			break
		}
	}
	return names
}

func TestAPagedSearchReadsEveryPageOnOneConnection(t *testing.T) {
	t.Parallel()
	const users = 2345
	d := newDomain(t, 2, adsim.Config{LoadUsers: users})
	c, _ := newCluster(t, d.config())
	ctx := ctxTimeout(t, 30*time.Second)

	first, ps, dc, err := c.StartPaged(ctx, loadUsersRequest(), 500)
	if err != nil {
		t.Fatalf("StartPaged: %v", err)
	}
	if dc != d.dcs[0].URL() || ps == nil || ps.DC() != dc {
		t.Fatalf("first page from %s, paged search %v: want the first DC and more pages", dc, ps)
	}
	if len(first.Entries) != 500 {
		t.Errorf("first page has %d entries, want 500", len(first.Entries))
	}
	if s := statsOf(t, c, dc); s.Pinned != 1 || s.Service.Open != 0 {
		t.Errorf("while paging: %d pinned, %d pooled service connections; want the connection out of the pool", s.Pinned, s.Service.Open)
	}
	names := readAll(t, first, ps, 500)
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			t.Fatalf("%s came twice", n)
		}
		seen[n] = true
	}
	if len(names) != users {
		t.Errorf("%d entries, want %d", len(names), users)
	}
	s := statsOf(t, c, dc)
	if s.Pinned != 0 || s.Service.Idle != 1 || s.Handshakes != 1 || s.Searches != 5 {
		t.Errorf("after the last page: %+v; want it back in the pool, one handshake, 5 searches", s)
	}
	if _, done, err := ps.Next(ctx, 500); !done || !errors.Is(err, ErrSearchDone) {
		t.Errorf("Next after the last page = done %v, %v; want ErrSearchDone", done, err)
	}
	// The connection serves the next search.
	jdoe := ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(sAMAccountName=jdoe)", []string{"sAMAccountName"}, nil)
	if _, _, err := c.Search(ctx, jdoe); err != nil {
		t.Fatal(err)
	}
	if s := statsOf(t, c, dc); s.Handshakes != 1 {
		t.Errorf("%d handshakes, want the pinned connection reused", s.Handshakes)
	}
}

func TestPageSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ask  uint32
		want uint32
	}{
		{"a page size under AD's maximum is kept", 200, 200},
		{"AD's maximum is kept", 1000, 1000},
		{"a larger page size is capped at AD's maximum", 5000, 1000},
		{"no page size asks for AD's maximum", 0, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := pageSizeOf(tt.ask); got != tt.want {
				t.Errorf("pageSizeOf(%d) = %d, want %d", tt.ask, got, tt.want)
			}
			req := pageRequest(loadUsersRequest(), pageSizeOf(tt.ask), []byte("c"))
			p, ok := ldap.FindControl(req.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
			if !ok || p.PagingSize != tt.want || string(p.Cookie) != "c" || len(req.Controls) != 1 {
				t.Errorf("page request controls %v", req.Controls)
			}
		})
	}
}

func TestAFirstPageThatIsTheLastHoldsNothing(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{})
	c, _ := newCluster(t, d.config())
	res, ps, _, err := c.StartPaged(ctxTimeout(t, 30*time.Second), usersRequest(), 1000)
	if err != nil || ps != nil || len(res.Entries) == 0 {
		t.Fatalf("StartPaged = %d entries, %v, %v; want every user and no paged search", len(res.Entries), ps, err)
	}
	if s := statsOf(t, c, d.dcs[0].URL()); s.Pinned != 0 || s.Service.Idle != 1 {
		t.Errorf("stats %+v, want the connection back in the pool", s)
	}
}

func TestOpenPagedSearchesDoNotTakeThePoolsSlots(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{LoadUsers: 50})
	cfg := d.config()
	cfg.Pool.ServiceSize = 1
	cfg.Pool.WaitTimeout = 50 * time.Millisecond
	c, _ := newCluster(t, cfg)
	ctx := ctxTimeout(t, 30*time.Second)
	var open []*PagedSearch
	for i := range 3 {
		_, ps, _, err := c.StartPaged(ctx, loadUsersRequest(), 10)
		if err != nil || ps == nil {
			t.Fatalf("paged search %d: %v, %v", i, ps, err)
		}
		open = append(open, ps)
	}
	if _, _, err := c.Search(ctx, usersRequest()); err != nil {
		t.Fatalf("a search while 3 paged searches are open on a pool of 1: %v", err)
	}
	if s := statsOf(t, c, d.dcs[0].URL()); s.Pinned != 3 {
		t.Errorf("%d pinned, want 3", s.Pinned)
	}
	for _, ps := range open {
		ps.Close()
		ps.Close() // a second Close does nothing
	}
	s := statsOf(t, c, d.dcs[0].URL())
	if s.Pinned != 0 || s.Service.Open != 1 {
		t.Errorf("after Close: %+v; want no pinned connection and the pool as it was", s)
	}
	eventually(t, 5*time.Second, "the DC sees the abandoned connections closed", func() bool { return d.dcs[0].Stats().Open == 1 })
	if _, _, err := open[0].Next(ctx, 10); !errors.Is(err, ErrSearchDone) {
		t.Errorf("Next after Close: %v, want ErrSearchDone", err)
	}
}

func TestAPagedSearchEndsWhenItsDCFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     func(t *testing.T, dc *adsim.DC)
		wantErrIs error
		wantCode  uint16
	}{
		{"a page answered 52 is unavailable", func(t *testing.T, dc *adsim.DC) { must(t, dc.FailNext(1, ldap.LDAPResultUnavailable)) }, ErrUnavailable, 0},
		{"a page cut mid-way is unavailable", func(t *testing.T, dc *adsim.DC) { dc.CutSearchAfter(3) }, ErrUnavailable, 0},
		{"a page the DC refuses is its answer", func(t *testing.T, dc *adsim.DC) { must(t, dc.FailNext(1, ldap.LDAPResultUnwillingToPerform)) }, nil, ldap.LDAPResultUnwillingToPerform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, 2, adsim.Config{LoadUsers: 50})
			c, _ := newCluster(t, d.config())
			ctx := ctxTimeout(t, 30*time.Second)
			_, ps, _, err := c.StartPaged(ctx, loadUsersRequest(), 10)
			if err != nil || ps == nil {
				t.Fatalf("StartPaged: %v, %v", ps, err)
			}
			tt.fault(t, d.dcs[0])
			_, done, err := ps.Next(ctx, 10)
			if !done {
				t.Error("the search is not over after the failure")
			}
			if tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs) {
				t.Errorf("Next = %v, want %v", err, tt.wantErrIs)
			}
			var le *ldap.Error
			if tt.wantCode != 0 && (!errors.As(err, &le) || le.ResultCode != tt.wantCode) {
				t.Errorf("Next = %v, want the DC's %d", err, tt.wantCode)
			}
			if tt.wantCode == 0 && errors.As(err, &le) {
				t.Errorf("Next = %v: an infrastructure failure must not look like a DC's answer", err)
			}
			if s := statsOf(t, c, d.dcs[0].URL()); s.Pinned != 0 {
				t.Errorf("%d pinned after the failure", s.Pinned)
			}
			if d.dcs[1].Stats().Searches != 0 {
				t.Error("a later page went to the other DC, where its cookie means nothing")
			}
		})
	}
}

func TestTheFirstPageFailsOverToTheNextDC(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{LoadUsers: 50})
	c, _ := newCluster(t, d.config())
	must(t, d.dcs[0].SetRefuse(true))
	ctx := ctxTimeout(t, 30*time.Second)
	first, ps, dc, err := c.StartPaged(ctx, loadUsersRequest(), 20)
	if err != nil || ps == nil || dc != d.dcs[1].URL() {
		t.Fatalf("StartPaged with dc1 refusing: %s, %v, %v; want dc2", dc, ps, err)
	}
	if got := readAll(t, first, ps, 20); len(got) != 50 {
		t.Errorf("%d entries from dc2, want 50", len(got))
	}
}

func TestClosingTheClusterEndsOpenPagedSearches(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{LoadUsers: 50})
	c, err := New(d.config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 30*time.Second)
	_, ps, _, err := c.StartPaged(ctx, loadUsersRequest(), 10)
	if err != nil || ps == nil {
		t.Fatalf("StartPaged: %v, %v", ps, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, done, err := ps.Next(ctx, 10); !done || !errors.Is(err, ErrSearchDone) {
		t.Errorf("Next after Close of the Cluster = %v, %v; want ErrSearchDone", done, err)
	}
	if _, _, _, err := c.StartPaged(ctx, loadUsersRequest(), 10); !errors.Is(err, ErrClosed) {
		t.Errorf("StartPaged after Close = %v, want ErrClosed", err)
	}
}

func TestClosingAPagedSearchCutsARunningPage(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 1, adsim.Config{LoadUsers: 50})
	c, _ := newCluster(t, d.config())
	ctx := ctxTimeout(t, 30*time.Second)
	_, ps, _, err := c.StartPaged(ctx, loadUsersRequest(), 10)
	if err != nil || ps == nil {
		t.Fatalf("StartPaged: %v, %v", ps, err)
	}
	before := d.dcs[0].Stats().Searches
	d.dcs[0].SetDelay(time.Minute)
	type result struct {
		done bool
		err  error
	}
	got := make(chan result, 1)
	go func() {
		_, done, err := ps.Next(ctx, 10)
		got <- result{done, err}
	}()
	eventually(t, 5*time.Second, "the page reaches the DC", func() bool { return d.dcs[0].Stats().Searches > before })
	if _, busy, err := ps.Next(ctx, 10); busy || !errors.Is(err, ErrBusy) {
		t.Errorf("a second page while one runs = %v, want ErrBusy", err)
	}
	start := time.Now()
	ps.Close()
	select {
	case r := <-got:
		if !r.done || !errors.Is(r.err, ErrUnavailable) {
			t.Errorf("the cut page = done %v, %v; want over and ErrUnavailable", r.done, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the running page did not return within 10s of Close")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %s to cut the page", took)
	}
	if s := statsOf(t, c, d.dcs[0].URL()); s.Pinned != 0 {
		t.Errorf("%d pinned after Close", s.Pinned)
	}
}
