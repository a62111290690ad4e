package proxy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// perfectView is a directory view that holds exactly what AD holds: it
// answers a search with the entries the simulated DC returns for it, read
// straight from the DC (not through the gateway's Cluster, whose counters
// then show whether the gateway itself asked AD). refuse makes it send every
// search to AD; limit makes it refuse answers larger than that.
type perfectView struct {
	b *searchBed

	mu      sync.Mutex
	refuse  string
	stale   bool
	entries []*ldap.Entry // when set, the answer to every search
	asked   []*ldap.SearchRequest
}

func (v *perfectView) SearchView(req *ldap.SearchRequest) (ViewAnswer, error) {
	v.mu.Lock()
	refuse, stale, fixed := v.refuse, v.stale, v.entries
	v.asked = append(v.asked, req)
	v.mu.Unlock()
	if refuse != "" {
		return ViewAnswer{}, errors.New(refuse)
	}
	if fixed != nil {
		return ViewAnswer{Result: entryList(fixed), Rule: "test", Stale: stale, Age: time.Hour}, nil
	}
	c, err := ldap.DialURL(v.b.dcs[0].URL(), ldap.DialWithTLSConfig(v.b.dcs[0].ClientTLSConfig()))
	if err != nil {
		return ViewAnswer{}, err
	}
	defer func() { _ = c.Close() }()
	if err := c.Bind(testbed.Service.DN(), testbed.Service.Password); err != nil {
		return ViewAnswer{}, err
	}
	r := *req
	r.SizeLimit = 0
	res, err := c.SearchWithPaging(&r, 500)
	if err != nil {
		return ViewAnswer{}, err
	}
	return ViewAnswer{Result: entryList(res.Entries), Rule: "test", Stale: stale, Age: time.Minute}, nil
}

func (v *perfectView) set(refuse string, stale bool, entries []*ldap.Entry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.refuse, v.stale, v.entries = refuse, stale, entries
}

// entryList is a ViewResult over a slice.
type entryList []*ldap.Entry

func (l entryList) Len() int                { return len(l) }
func (l entryList) Entry(i int) *ldap.Entry { return l[i] }

// upstreamSearches is the searches the gateway wrote to its DCs.
func (b *searchBed) upstreamSearches() uint64 {
	var n uint64
	for _, s := range b.cluster.Stats() {
		n += s.Searches
	}
	return n
}

// entryLines renders a result as sorted "dn: attr=values" lines.
func entryLines(entries []*ldap.Entry) []string {
	var out []string
	for _, e := range entries {
		var attrs []string
		for _, a := range e.Attributes {
			vals := slices.Clone(a.Values)
			slices.Sort(vals)
			attrs = append(attrs, strings.ToLower(a.Name)+"="+strings.Join(vals, "|"))
		}
		slices.Sort(attrs)
		out = append(out, strings.ToLower(e.DN)+": "+strings.Join(attrs, "; "))
	}
	slices.Sort(out)
	return out
}

// lastSearchLine returns the context of the last search log line.
func (b *searchBed) lastSearchLine(t *testing.T) map[string]any {
	t.Helper()
	lines := b.searchLines()
	if len(lines) == 0 {
		t.Fatal("no search log line")
	}
	return lines[len(lines)-1].ContextMap()
}

func TestSearchesFromTheView(t *testing.T) {
	t.Parallel()
	const users = 25
	view := &perfectView{}
	b := newSearchBed(t, searchSetupT{users: users, opts: []SearchOption{WithViewSearch(view)}})
	view.b = b
	l := b.proxy(t)
	pascom := []string{"sAMAccountName", "displayName", "givenName", "sn", "mail", "telephoneNumber", "mobile", "ipPhone", "memberOf"}
	importFilter := "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + "))"

	// The first search of a connection looks the proxy user up (its rights).
	if _, err := l.Search(userSearch("(sAMAccountName=jdoe)", "mail")); err != nil {
		t.Fatal(err)
	}

	// viaAD is the answer with the view refusing every search.
	viaAD := func(t *testing.T, req *ldap.SearchRequest, paged uint32) []*ldap.Entry {
		t.Helper()
		view.set("the test sends this one to AD", false, nil)
		defer view.set("", false, nil)
		req = fresh(req) // go-ldap's SearchWithPaging leaves its control in the request
		var res *ldap.SearchResult
		var err error
		if paged > 0 {
			res, err = l.SearchWithPaging(req, paged)
		} else {
			res, err = l.Search(req)
		}
		if err != nil {
			t.Fatalf("the search through AD: %v", err)
		}
		// A later page stays with AD; only the first says why.
		if m := b.lastSearchLine(t); m["source"] != sourceAD || (paged == 0 && !strings.Contains(fmt.Sprint(m["view_miss"]), "the test sends")) {
			t.Errorf("the forwarded search's log line: %v", m)
		}
		return res.Entries
	}

	t.Run("pascom's lookup is answered from the view, as AD answers it, without an upstream search", func(t *testing.T) {
		req := userSearch("(sAMAccountName=jdoe)", "dn", "mail", "telephoneNumber")
		before := b.upstreamSearches()
		res, err := l.Search(req)
		if err != nil {
			t.Fatal(err)
		}
		if n := b.upstreamSearches() - before; n != 0 {
			t.Errorf("%d searches went upstream, want none", n)
		}
		m := b.lastSearchLine(t)
		if m["source"] != sourceView || m["view_rule"] != "test" || m["stale"] != false || m["entries"] != int64(1) {
			t.Errorf("log line %v, want source view, rule test, not stale, 1 entry", m)
		}
		if got, want := entryLines(res.Entries), entryLines(viaAD(t, req, 0)); !slices.Equal(got, want) || len(got) != 1 {
			t.Errorf("from the view %q, from AD %q", got, want)
		}
	})
	t.Run("pascom's paged import is served from the view in pages with the gateway's cookies", func(t *testing.T) {
		req := userSearch(importFilter, pascom...)
		before := b.upstreamSearches()
		res, err := l.SearchWithPaging(fresh(req), 2)
		if err != nil {
			t.Fatal(err)
		}
		if n := b.upstreamSearches() - before; n != 0 {
			t.Errorf("%d searches went upstream, want none", n)
		}
		if got, want := entryLines(res.Entries), entryLines(viaAD(t, req, 2)); !slices.Equal(got, want) || len(got) < 3 {
			t.Errorf("from the view\n  %s\nfrom AD\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		if n := b.srv.srch.openPaged(); n != 0 {
			t.Errorf("%d paged searches open after the last page", n)
		}
	})
	t.Run("every bulk user comes once in pages of 4 from one answer of the view", func(t *testing.T) {
		req := ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=user)", []string{"sAMAccountName"}, nil)
		view.mu.Lock()
		asked := len(view.asked)
		view.mu.Unlock()
		res, err := l.SearchWithPaging(req, 4)
		if err != nil {
			t.Fatal(err)
		}
		view.mu.Lock()
		asked = len(view.asked) - asked
		view.mu.Unlock()
		if got := uniqueCount(res.Entries); got != users || len(res.Entries) != users {
			t.Errorf("%d entries (%d distinct), want %d", len(res.Entries), got, users)
		}
		if asked != 1 {
			t.Errorf("the view was asked %d times, want once: later pages come from the first answer", asked)
		}
		pages := 0
		for _, line := range b.searchLines() {
			if m := line.ContextMap(); m["paged"] == true && m["source"] == sourceView && m["base"] == testbed.LoadUsersDN {
				pages++
			}
		}
		if pages != (users+3)/4 {
			t.Errorf("%d page lines with source view, want %d", pages, (users+3)/4)
		}
	})
	t.Run("a page size of 0 abandons a search served from the view", func(t *testing.T) {
		req := ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=user)", []string{"sAMAccountName"}, nil)
		n, cookie, err := page(l, req, 5, nil)
		if err != nil || n != 5 || len(cookie) == 0 {
			t.Fatalf("first page: %d entries, cookie %q, %v", n, cookie, err)
		}
		if open := b.srv.srch.openPaged(); open != 1 {
			t.Errorf("%d paged searches open, want 1", open)
		}
		if _, _, err := page(l, req, 0, cookie); err != nil {
			t.Fatal(err)
		}
		if open := b.srv.srch.openPaged(); open != 0 {
			t.Errorf("%d paged searches open after abandoning, want 0", open)
		}
	})
	t.Run("attributes off the allow-list never come back from the view", func(t *testing.T) {
		e := ldap.NewEntry(testbed.JDoe.DN(), map[string][]string{"sAMAccountName": {"jdoe"}, "unicodePwd": {"secret"}, "description": {"x"}})
		view.set("", false, []*ldap.Entry{e})
		defer view.set("", false, nil)
		res, err := l.Search(userSearch("(sAMAccountName=jdoe)", "sAMAccountName"))
		if err != nil {
			t.Fatal(err)
		}
		if got := entryLines(res.Entries); len(got) != 1 || strings.Contains(got[0], "unicodepwd") || strings.Contains(got[0], "description") {
			t.Errorf("entries %q", got)
		}
	})
	t.Run("a stale answer is logged as stale", func(t *testing.T) {
		view.set("", true, nil)
		defer view.set("", false, nil)
		if _, err := l.Search(userSearch("(sAMAccountName=jdoe)", "mail")); err != nil {
			t.Fatal(err)
		}
		if m := b.lastSearchLine(t); m["source"] != sourceView || m["stale"] != true {
			t.Errorf("log line %v, want source view and stale", m)
		}
	})
	t.Run("an answer beyond the size limit goes to AD, which picks the entries", func(t *testing.T) {
		req := ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 5, 0, false, "(objectClass=user)", []string{"sAMAccountName"}, nil)
		before := b.upstreamSearches()
		res, err := l.Search(req)
		wantCode(t, "a search with size limit 5", err, ldap.LDAPResultSizeLimitExceeded)
		if len(res.Entries) != 5 || b.upstreamSearches() == before {
			t.Errorf("%d entries, %d upstream searches; want AD's 5", len(res.Entries), b.upstreamSearches()-before)
		}
		if m := b.lastSearchLine(t); m["source"] != sourceAD || !strings.Contains(fmt.Sprint(m["view_miss"]), "size limit") {
			t.Errorf("log line %v", m)
		}
	})
	t.Run("an answer within the size limit comes from the view", func(t *testing.T) {
		req := ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, users, 0, false, "(objectClass=user)", []string{"sAMAccountName"}, nil)
		res, err := l.Search(req)
		if err != nil || len(res.Entries) != users {
			t.Fatalf("%d entries, %v", len(res.Entries), err)
		}
		if m := b.lastSearchLine(t); m["source"] != sourceView {
			t.Errorf("log line %v", m)
		}
	})
	t.Run("an unpaged answer beyond AD's page size goes to AD", func(t *testing.T) {
		many := make([]*ldap.Entry, 1001)
		for i := range many {
			many[i] = ldap.NewEntry(fmt.Sprintf("CN=u%d,%s", i, testbed.LoadUsersDN), nil)
		}
		view.set("", false, many)
		defer view.set("", false, nil)
		res, err := l.Search(ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=user)", []string{"sAMAccountName"}, nil))
		if err != nil || len(res.Entries) != users {
			t.Fatalf("%d entries, %v; want AD's %d", len(res.Entries), err, users)
		}
		if m := b.lastSearchLine(t); m["source"] != sourceAD || !strings.Contains(fmt.Sprint(m["view_miss"]), "MaxPageSize") {
			t.Errorf("log line %v", m)
		}
	})
	t.Run("a search refused before the view is asked says no source", func(t *testing.T) {
		_, err := l.Search(ldap.NewSearchRequest("OU=Elsewhere,"+testbed.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
		wantCode(t, "a base outside search.base_dn", err, ldap.LDAPResultNoSuchObject)
		if m := b.lastSearchLine(t); m["source"] != nil {
			t.Errorf("log line %v has a source", m)
		}
	})
	t.Run("the view gets the request as AD would: the filter re-encoded, the attributes allowed", func(t *testing.T) {
		view.mu.Lock()
		view.asked = nil
		view.mu.Unlock()
		if _, err := l.Search(userSearch("(sAMAccountName=jdoe)", "mail", "unicodePwd", "dn")); err != nil {
			t.Fatal(err)
		}
		view.mu.Lock()
		defer view.mu.Unlock()
		if len(view.asked) != 1 || view.asked[0].Filter != "(sAMAccountName=jdoe)" || !slices.Equal(view.asked[0].Attributes, []string{"mail"}) {
			t.Errorf("the view was asked %+v", view.asked)
		}
	})
}

// fresh returns a copy of req without controls.
func fresh(req *ldap.SearchRequest) *ldap.SearchRequest {
	r := *req
	r.Controls = nil
	return &r
}

func uniqueCount(entries []*ldap.Entry) int {
	seen := map[string]bool{}
	for _, e := range entries {
		seen[strings.ToLower(e.DN)] = true
	}
	return len(seen)
}

// loginView is a view that knows logins and refuses every search.
type loginView struct{ mapView }

func (loginView) SearchView(*ldap.SearchRequest) (ViewAnswer, error) {
	return ViewAnswer{}, errors.New("no searches")
}

func TestTheProxyUserIsLookedUpInTheView(t *testing.T) {
	t.Parallel()
	// With a view that knows the proxy user, the search rights of its
	// connection need no lookup upstream.
	svc := Identity{DN: testbed.Service.DN(), SAMAccountName: "svc-pbx", UserPrincipalName: testbed.Service.UPN()}
	view := loginView{mapView{"upn:" + strings.ToLower(testbed.Service.UPN()): svc}}
	b := newSearchBed(t, searchSetupT{opts: []SearchOption{WithViewSearch(view)}})
	l := b.proxy(t) // the bind itself resolves through the bind path's own resolver
	before := b.upstreamSearches()
	res, err := l.Search(userSearch("(sAMAccountName=jdoe)", "mail"))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("%v entries, %v", res, err)
	}
	if n := b.upstreamSearches() - before; n != 1 {
		t.Errorf("%d upstream searches, want 1: the search itself, not the proxy user's lookup", n)
	}
}
