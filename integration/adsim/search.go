package adsim

import (
	"encoding/binary"
	"strconv"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"

	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// maxPagedSearches bounds the paged searches one connection may leave open; the
// oldest is forgotten first (AD's MaxResultSetsPerConn is 10).
const maxPagedSearches = 10

// pagedSearch is the cursor of a paged search on one connection.
type pagedSearch struct {
	slots     []*slot
	next      int
	sel       selection
	typesOnly bool
	left      int // entries the size limit still allows; negative: no limit
}

// selection is the attribute list of a search request.
type selection struct {
	all   bool
	names []string
}

func newSelection(attrs []string) selection {
	if len(attrs) == 0 {
		return selection{all: true}
	}
	var s selection
	for _, a := range attrs {
		switch a {
		case "*":
			s.all = true
		case "1.1", "+":
			// "1.1" asks for no attributes; AD has no operational "+" set.
		default:
			s.names = append(s.names, a)
		}
	}
	return s
}

func (s selection) wants(name string) bool {
	if s.all {
		return true
	}
	for _, n := range s.names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// searchOutcome is what a search request comes to before it is written.
type searchOutcome struct {
	entries []*entry
	sel     selection
	types   bool
	code    int
	diag    string
	matched string
	paging  *gldap.ControlPaging // the response's paging control, nil when unpaged
}

// handleSearch answers a search like Windows AD: the rootDSE for anyone, the
// rest for bound users, MaxPageSize entries at most per page or unpaged search.
func (dc *DC) handleSearch(w *gldap.ResponseWriter, r *gldap.Request) {
	dc.stats.searches.Add(1)
	m, err := r.GetSearchMessage()
	if err != nil {
		return // unreachable: the route matches searches only
	}
	stop := *dc.stop.Load()
	if dc.faults.drop.Load() {
		return
	}
	var out searchOutcome
	if code, ok := dc.faults.takeFailure(); ok {
		out.code = code
	} else {
		out = dc.search(dc.session(r.ConnectionID()), m)
	}
	dc.wait(stop)
	for _, e := range out.entries {
		if err := w.Write(dc.render(r, e, out.sel, out.types)); err != nil {
			return
		}
	}
	done := r.NewSearchDoneResponse(gldap.WithResponseCode(out.code))
	done.SetDiagnosticMessage(out.diag)
	done.SetMatchedDN(out.matched)
	if out.paging != nil {
		done.SetControls(out.paging)
	}
	_ = w.Write(done)
}

// search carries out a search request for the connection's session.
func (dc *DC) search(sess *session, m *gldap.SearchMessage) searchOutcome {
	filter, err := ldap.CompileFilter(m.Filter)
	if err != nil {
		return searchOutcome{code: resultProtocolError, diag: "invalid filter"}
	}
	sel := newSelection(m.Attributes)
	if m.BaseDN == "" {
		if m.Scope != gldap.BaseObject {
			return searchOutcome{}
		}
		return dc.searchRootDSE(filter, sel, m.TypesOnly)
	}
	if sess.bound() == nil {
		return searchOutcome{code: resultOperationsError, diag: DiagBindRequired}
	}
	paging := pagingControl(m.Controls)
	if paging != nil && len(paging.Cookie) > 0 {
		return dc.nextPage(sess, paging)
	}
	slots, out := dc.match(m.BaseDN, m.Scope, filter)
	if out.code != resultSuccess {
		return out
	}
	sizeLimit := int(m.SizeLimit)
	if paging == nil {
		limit := MaxPageSize
		if sizeLimit > 0 && sizeLimit < limit {
			limit = sizeLimit
		}
		out = searchOutcome{sel: sel, types: m.TypesOnly}
		if len(slots) > limit {
			// Windows AD: the first MaxPageSize entries, then sizeLimitExceeded.
			slots, out.code = slots[:limit], resultSizeLimitExceeded
		}
		out.entries = dc.dir.current(slots)
		return out
	}
	left := -1
	if sizeLimit > 0 {
		left = sizeLimit
	}
	cursor := &pagedSearch{slots: slots, sel: sel, typesOnly: m.TypesOnly, left: left}
	if paging.PagingSize == 0 {
		return searchOutcome{paging: &gldap.ControlPaging{}}
	}
	return dc.page(sess, cursor, 0, paging.PagingSize)
}

// nextPage continues (or, with page size 0, abandons) a paged search.
func (dc *DC) nextPage(sess *session, paging *gldap.ControlPaging) searchOutcome {
	id, ok := decodeCookie(paging.Cookie)
	sess.mu.Lock()
	cursor := sess.pages[id]
	delete(sess.pages, id)
	sess.mu.Unlock()
	if !ok || cursor == nil {
		return searchOutcome{code: resultUnwillingToPerform, diag: diagBadCookie}
	}
	if paging.PagingSize == 0 {
		return searchOutcome{paging: &gldap.ControlPaging{}}
	}
	return dc.page(sess, cursor, id, paging.PagingSize)
}

// page returns the next page of cursor and stores the cursor under a cookie
// (id, or a new one when id is 0) when entries remain.
func (dc *DC) page(sess *session, cursor *pagedSearch, id uint64, size uint32) searchOutcome {
	n := min(int(size), MaxPageSize, len(cursor.slots)-cursor.next)
	out := searchOutcome{sel: cursor.sel, types: cursor.typesOnly, paging: &gldap.ControlPaging{}}
	if cursor.left >= 0 && n >= cursor.left {
		n = cursor.left
		if cursor.next+n < len(cursor.slots) {
			out.code = resultSizeLimitExceeded
		}
	}
	out.entries = dc.dir.current(cursor.slots[cursor.next : cursor.next+n])
	cursor.next += n
	if cursor.left >= 0 {
		cursor.left -= n
	}
	if out.code != resultSuccess || cursor.next >= len(cursor.slots) {
		return out
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.pages == nil {
		sess.pages = make(map[uint64]*pagedSearch)
	}
	if id == 0 {
		sess.nextCookie++
		id = sess.nextCookie
	}
	if len(sess.pages) >= maxPagedSearches {
		oldest := id
		for k := range sess.pages {
			oldest = min(oldest, k)
		}
		delete(sess.pages, oldest)
	}
	sess.pages[id] = cursor
	out.paging.Cookie = encodeCookie(id)
	return out
}

func encodeCookie(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

func decodeCookie(c []byte) (uint64, bool) {
	if len(c) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(c), true
}

func pagingControl(controls []gldap.Control) *gldap.ControlPaging {
	for _, c := range controls {
		if p, ok := c.(*gldap.ControlPaging); ok {
			return p
		}
	}
	return nil
}

// match finds the objects in scope that match filter, in creation order.
func (dc *DC) match(base string, scope gldap.Scope, filter *ber.Packet) ([]*slot, searchOutcome) {
	bn, err := ldapfilter.NormalizeDN(base)
	if err != nil {
		return nil, searchOutcome{code: resultInvalidDNSyntax, diag: diagInvalidDN}
	}
	d := dc.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	baseSlot := d.byDN[bn]
	if baseSlot == nil {
		matched := d.bestMatch(bn)
		return nil, searchOutcome{code: resultNoSuchObject, diag: diagNoSuchObject + matched + "'\n", matched: matched}
	}
	inConfig := baseSlot.e.isUnder(d.configNDN)
	candidates, ok := d.indexed(filter)
	switch {
	case scope == gldap.BaseObject:
		candidates = []*slot{baseSlot}
	case ok:
	case inConfig:
		candidates = d.config
	default:
		candidates = d.domain
	}
	ev := ldapfilter.FilterEvaluator{Syntax: syntaxOf, Resolve: func(dn string) ldapfilter.Attributes {
		if s := d.byDN[normalizedKey(dn)]; s != nil {
			return dc.filterAttributes(s.e)
		}
		return nil
	}}
	var out []*slot
	for _, s := range candidates {
		e := s.e
		if s.deleted || !inScope(e, bn, scope) || e.isUnder(d.configNDN) != inConfig {
			continue
		}
		ok, err := ev.Match(filter, dc.filterAttributes(e))
		if err != nil {
			return nil, searchOutcome{code: resultProtocolError, diag: err.Error()}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, searchOutcome{}
}

func inScope(e *entry, base string, scope gldap.Scope) bool {
	switch scope {
	case gldap.BaseObject:
		return e.ndn == base
	case gldap.SingleLevel:
		return e.parent == base
	}
	return e.isUnder(base)
}

// bestMatch returns the DN of the nearest existing ancestor of ndn (AD's
// matchedDN), "" when there is none. Callers hold d.mu.
func (d *Directory) bestMatch(ndn string) string {
	for ndn != "" {
		if s := d.byDN[ndn]; s != nil {
			return s.e.dn
		}
		ndn = parentDN(ndn)
	}
	return ""
}

// indexed returns the only objects that can match filter when it is (or is an
// AND holding) an equality on an indexed attribute. Callers hold d.mu.
func (d *Directory) indexed(filter *ber.Packet) ([]*slot, bool) {
	if filter.ClassType == ber.ClassContext && filter.Tag == ldap.FilterAnd {
		for _, c := range filter.Children {
			if s, ok := d.indexedEquality(c); ok {
				return s, true
			}
		}
		return nil, false
	}
	return d.indexedEquality(filter)
}

func (d *Directory) indexedEquality(f *ber.Packet) ([]*slot, bool) {
	if f.ClassType != ber.ClassContext || f.Tag != ldap.FilterEqualityMatch || len(f.Children) != 2 {
		return nil, false
	}
	name, value := string(f.Children[0].Data.Bytes()), string(f.Children[1].Data.Bytes())
	var s *slot
	switch {
	case strings.EqualFold(name, "sAMAccountName"):
		s = d.bySAM[strings.ToLower(value)]
	case strings.EqualFold(name, "userPrincipalName"):
		s = d.byUPN[strings.ToLower(value)]
	case strings.EqualFold(name, "objectGUID"):
		s = d.byGUID[value]
	case strings.EqualFold(name, "distinguishedName"):
		s = d.byDN[normalizedKey(value)]
	default:
		return nil, false
	}
	if s == nil {
		return nil, true
	}
	return []*slot{s}, true
}

// current returns the current versions of the objects still there.
func (d *Directory) current(slots []*slot) []*entry {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]*entry, 0, len(slots))
	for _, s := range slots {
		if !s.deleted {
			out = append(out, s.e)
		}
	}
	return out
}

// values returns an attribute as this DC reports it: USNs carry its offset.
func (dc *DC) values(e *entry, name string) []string {
	v := e.values(name)
	if dc.usnOffset != 0 && len(v) == 1 && (strings.EqualFold(name, "uSNChanged") || strings.EqualFold(name, "uSNCreated")) {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err == nil {
			return []string{itoa(n + dc.usnOffset)}
		}
	}
	return v
}

// filterAttributes exposes e to the filter evaluator as this DC reports it,
// with objectCategory also matching the class's short name, as AD maps
// (objectCategory=person) to CN=Person,CN=Schema,….
func (dc *DC) filterAttributes(e *entry) ldapfilter.Attributes {
	return func(name string) []string {
		if strings.EqualFold(name, "objectCategory") {
			return e.categories
		}
		return dc.values(e, name)
	}
}

// render builds the search result entry of e with the selected attributes.
func (dc *DC) render(r *gldap.Request, e *entry, sel selection, typesOnly bool) *gldap.SearchResponseEntry {
	resp := r.NewSearchResponseEntry(e.dn)
	for _, a := range e.attrs {
		if !sel.wants(a.name) {
			continue
		}
		var values []string
		if !typesOnly {
			values = dc.values(e, a.name)
		}
		resp.AddAttribute(a.name, values)
	}
	return resp
}
