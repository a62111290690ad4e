package usersync

// Searches answered from the view (issue 5 item 7). The listener asks the
// view first and forwards a search to AD unless the view can give exactly the
// entries and values AD would return. ViewSearcher.Search decides that:
//
//   - age: the view was confirmed against AD no longer than sync.stale_after
//     ago (View.Fresh) — or no DC is usable (the caller says so: every breaker
//     open or drained) and it is no older than sync.outage_max_age: then it is
//     served as stale (SearchAnswer.Stale), because the last good view is a
//     better answer than none while AD is unreachable. A view never synced
//     never answers.
//   - attributes: every requested attribute is one the view stores (its
//     sync.attributes; distinguishedName and objectGUID always), without
//     options (;range=, ;binary); "*", "+" or an empty list (all attributes)
//     and typesOnly go to AD.
//   - filter: every assertion left after the view's own conjuncts are taken as
//     true (below) is one the view can evaluate as AD does (see servable):
//     stored attributes whose matching AD's is known, no IN_CHAIN (the view
//     holds no groups), no approximate match (AD and Samba disagree), ordering
//     only on integers and times.
//   - coverage, by one of two rules:
//     1. scope rule: the client's filter implies the view's — each of the view
//     filter's top-level AND conjuncts (sync.filter with the enabled-only
//     clause) is, in canonical form (ldapfilter.Canonical: names and rules
//     case-folded, DNs normalised, string values case-folded), one of the
//     client filter's top-level AND conjuncts — and the search base is
//     sync.base_dn or lies under it, in the subtree of a view entry (so it is
//     known to exist). Every entry AD could return is then in the view.
//     2. unique-key rule: the client's filter ANDs an equality on a key that
//     is unique in the domain (sAMAccountName, userPrincipalName, objectGUID,
//     distinguishedName), or the search is a base-object search, and the
//     view holds the entry with that key: that entry is the only candidate in
//     the whole domain, so the answer is it (when it is in the search's scope
//     and matches) or nothing. A key the view does not hold goes to AD: the
//     user may exist outside the view's scope. The base must be known to
//     exist (sync.base_dn, an ancestor of it, or the DN or an ancestor of a
//     view entry), or AD's answer would be noSuchObject.
//
// Wherever a conjunct of the view's filter appears in the client's filter
// (at any depth) it is taken as true for the view's entries: AD evaluated it
// when it read them. That is how nested group membership (IN_CHAIN), which the
// view cannot evaluate itself, is answered: only by being the view's own scope.
//
// The answer is read from one immutable snapshot, so a paged search sees one
// consistent view however many syncs apply meanwhile. Entries come in the
// view's order (by objectGUID), which differs from AD's; LDAP promises no
// order. Values are the stored ones: the view keeps AD's values as text, and
// any value it had to store as "base64:…" (bytes that are not UTF-8) makes
// the search go to AD rather than guess the bytes.

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// ErrNotServed means the view cannot answer a search exactly as AD would; the
// error says why, and the search goes to AD.
var ErrNotServed = errors.New("not answered from the view")

// The coverage rules of a SearchAnswer.
const (
	// RuleScope: the client's filter implies the view's, within its base.
	RuleScope = "scope"
	// RuleUniqueKey: the filter names one entry by a key unique in the domain.
	RuleUniqueKey = "unique-key"
)

// DefaultOutageMaxAge is how old the view may be and still answer searches
// while no DC is usable, when ViewSearchOptions.OutageMaxAge is 0.
const DefaultOutageMaxAge = 24 * time.Hour

// ViewSearchOptions configures NewViewSearcher.
type ViewSearchOptions struct {
	// OutageMaxAge is how old the view may be (since its last sync) and still
	// answer searches while no DC is usable (sync.outage_max_age). 0 means
	// DefaultOutageMaxAge; negative means never past sync.stale_after.
	OutageMaxAge time.Duration
}

// SearchConditions are what the caller knows when it asks the view.
type SearchConditions struct {
	// Now is the time the view's age is measured at.
	Now time.Time
	// DCsDown is set when no DC can be asked (every breaker open, or drained).
	DCsDown bool
}

// ViewSearcher answers LDAP searches from a View when it can do so exactly as
// AD would (see the rules above). It is safe for concurrent use.
type ViewSearcher struct {
	view         *View
	outageMaxAge time.Duration
	idx          atomic.Pointer[searchIndex] // of the last snapshot searched
	lastBase     atomic.Pointer[parsedBase]  // the last base searched, parsed
}

// parsedBase is a search base and its parse: a PBX searches under one base,
// and parsing it again for every search cost a quarter of a lookup.
type parsedBase struct {
	text string
	dn   *ldap.DN // read only
}

// parseBase parses a search base, remembering the last one.
func (s *ViewSearcher) parseBase(text string) (*ldap.DN, error) {
	if p := s.lastBase.Load(); p != nil && p.text == text {
		return p.dn, nil
	}
	dn, err := ldap.ParseDN(text)
	if err != nil {
		return nil, err
	}
	s.lastBase.Store(&parsedBase{text: text, dn: dn})
	return dn, nil
}

// NewViewSearcher returns the searcher of v.
func NewViewSearcher(v *View, o ViewSearchOptions) *ViewSearcher {
	if o.OutageMaxAge == 0 {
		o.OutageMaxAge = DefaultOutageMaxAge
	}
	return &ViewSearcher{view: v, outageMaxAge: o.OutageMaxAge}
}

// SearchAnswer is the view's answer to one search: the matching entries of one
// snapshot and the attributes to return of each.
type SearchAnswer struct {
	// Rule is the coverage rule that let the view answer (RuleScope or
	// RuleUniqueKey).
	Rule string
	// Stale is set when the view is older than sync.stale_after and answered
	// only because no DC is usable.
	Stale bool
	// Age is how long before SearchConditions.Now the view was last
	// confirmed against AD.
	Age time.Duration

	entries []*Entry
	attrs   []string  // lower-case names to return; none for "1.1"
	names   spellings // of the snapshot the entries are from
}

// Len returns the number of entries.
func (a *SearchAnswer) Len() int { return len(a.entries) }

// ViewEntry returns the i-th entry as the view holds it (read-only).
func (a *SearchAnswer) ViewEntry(i int) *Entry { return a.entries[i] }

// Entry returns the i-th entry as AD sends it: its DN and the requested
// attributes it has, named as in sync.attributes, objectGUID as its 16 bytes.
func (a *SearchAnswer) Entry(i int) *ldap.Entry {
	e := a.entries[i]
	out := &ldap.Entry{DN: e.DN}
	for _, name := range a.attrs {
		var attr *ldap.EntryAttribute
		switch name {
		case "distinguishedname":
			attr = ldap.NewEntryAttribute(a.names.configured(e, "distinguishedname", "distinguishedName"), []string{e.DN})
		case "objectguid":
			raw, err := parseGUID(e.GUID)
			if err != nil {
				continue // never: the view's keys are GUIDs
			}
			attr = &ldap.EntryAttribute{Name: a.names.configured(e, "objectguid", "objectGUID"), Values: []string{string(raw)}, ByteValues: [][]byte{raw}}
		default:
			key, vals := a.names.lookup(e, name)
			if len(vals) == 0 {
				continue
			}
			attr = ldap.NewEntryAttribute(key, vals)
		}
		out.Attributes = append(out.Attributes, attr)
	}
	return out
}

// spellings maps the lower-case name of every attribute the entries of a
// snapshot hold to the spellings they hold it under (as configured in
// sync.attributes when each entry was read; usually one). Finding an attribute
// of an entry is then a map lookup per spelling, not a walk over the entry's
// attributes comparing names without case, which cost most of a view-served
// import.
type spellings map[string][]string

// newSpellings collects the attribute names of entries.
func newSpellings(entries []*Entry) spellings {
	sp := make(spellings)
	for _, e := range entries {
		for k := range e.Attrs {
			lower := strings.ToLower(k)
			if !slices.Contains(sp[lower], k) {
				sp[lower] = append(sp[lower], k)
			}
		}
	}
	return sp
}

// lookup returns the stored key and values of the attribute lower (a
// lower-case name) of e, an entry of the snapshot sp was made from.
func (sp spellings) lookup(e *Entry, lower string) (string, []string) {
	for _, k := range sp[lower] {
		if v, ok := e.Attrs[k]; ok {
			return k, v
		}
	}
	return "", nil
}

// configured is the spelling of the attribute lower in e's attributes, or
// name when e has none.
func (sp spellings) configured(e *Entry, lower, name string) string {
	if k, _ := sp.lookup(e, lower); k != "" {
		return k
	}
	return name
}

// notServed is an ErrNotServed with a reason.
func notServed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotServed, fmt.Sprintf(format, args...))
}

// Search answers req from the view, or fails with an error wrapping
// ErrNotServed that says why the search must go to AD. req's attributes are
// those the client may get (the listener's allow-list applied; "1.1" for
// none). Size and time limits are the caller's to apply to the answer.
func (s *ViewSearcher) Search(req *ldap.SearchRequest, c SearchConditions) (*SearchAnswer, error) {
	snap := s.view.snapshot()
	ans := &SearchAnswer{}
	last := snap.state.LastSync()
	if last.IsZero() {
		return nil, notServed("the view was never synced")
	}
	ans.Age = c.Now.Sub(last)
	switch {
	case ans.Age <= s.view.StaleAfter():
	case !c.DCsDown:
		return nil, notServed("the view is stale (last sync %s ago, sync.stale_after %s)", ans.Age.Round(time.Second), s.view.StaleAfter())
	case s.outageMaxAge < 0 || ans.Age > s.outageMaxAge:
		return nil, notServed("no DC is usable, but the view is too old to answer (last sync %s ago, sync.outage_max_age %s)",
			ans.Age.Round(time.Second), max(s.outageMaxAge, 0))
	default:
		ans.Stale = true
	}
	if req.TypesOnly {
		return nil, notServed("typesOnly")
	}
	ix, err := s.index(snap)
	if err != nil {
		return nil, err
	}
	ans.names = ix.names
	if ans.attrs, err = ix.returned(req.Attributes); err != nil {
		return nil, err
	}
	base, err := s.parseBase(req.BaseDN)
	if err != nil {
		return nil, notServed("the base is not a DN")
	}
	filter, err := ldap.CompileFilter(req.Filter)
	if err != nil {
		return nil, notServed("the filter does not compile")
	}
	// The view's own conjuncts hold for every entry of the view, and every
	// object has an objectClass.
	residual := ldapfilter.Assume(filter, func(p *ber.Packet) bool {
		k, err := ldapfilter.Canonical(p, viewSyntax)
		return err == nil && (ix.viewKeys[k] || k == objectClassPresent)
	})
	if err := ix.servable(residual); err != nil {
		return nil, err
	}

	var candidates []*Entry
	implied, inBase := ix.implies(filter), ix.base.EqualFold(base) || ix.base.AncestorOfFold(base)
	switch {
	case implied && inBase && ix.exists(base):
		ans.Rule = RuleScope
		candidates = snap.sorted
	default:
		e, key := ix.uniqueCandidate(snap, filter, base, req.Scope)
		switch {
		case key == "" && !implied:
			return nil, notServed("the filter does not imply the view's filter %s and names no unique key", ix.filterText)
		case key == "" && !inBase:
			return nil, notServed("the base is outside the view's base, and the filter names no unique key")
		case key == "":
			return nil, notServed("the base is not known to exist, and the filter names no unique key")
		case e == nil:
			return nil, notServed("the view holds no entry with that %s", key)
		case !inScope(ix.dnOf(e), base, req.Scope) && !ix.exists(base):
			// In scope, the entry proves the base exists; out of it, AD answers
			// nothing or noSuchObject, and only AD knows which.
			return nil, notServed("the base is not known to exist")
		}
		ans.Rule = RuleUniqueKey
		candidates = []*Entry{e}
	}

	ev := ldapfilter.FilterEvaluator{Syntax: viewSyntax}
	all := ans.Rule == RuleScope && req.Scope == ldap.ScopeWholeSubtree && ix.base.EqualFold(base)
	for _, e := range candidates {
		if !all && !inScope(ix.dnOf(e), base, req.Scope) {
			continue
		}
		var unsure bool
		ok, err := ev.Match(residual, func(name string) []string {
			vals := filterValues(ix.names, e, name)
			unsure = unsure || hasEncoded(vals)
			return vals
		})
		switch {
		case err != nil:
			return nil, notServed("the filter cannot be evaluated: %v", err)
		case unsure:
			return nil, notServed("the filter reads a value the view stores as base64")
		case !ok:
			continue
		}
		for _, name := range ans.attrs {
			if _, vals := ix.names.lookup(e, name); hasEncoded(vals) {
				return nil, notServed("attribute %s has a value the view stores as base64", name)
			}
		}
		ans.entries = append(ans.entries, e)
	}
	return ans, nil
}

// filterValues are the values a filter sees for the attribute name of e.
func filterValues(sp spellings, e *Entry, name string) []string {
	lower := strings.ToLower(name)
	switch lower {
	case "distinguishedname":
		return []string{e.DN}
	case "objectguid":
		if raw, err := parseGUID(e.GUID); err == nil {
			return []string{string(raw)}
		}
		return nil
	}
	_, vals := sp.lookup(e, lower)
	return vals
}

// hasEncoded reports whether a value is one entryFromLDAP stored as base64.
func hasEncoded(vals []string) bool {
	return slices.ContainsFunc(vals, func(v string) bool { return strings.HasPrefix(v, "base64:") })
}

// inScope reports whether dn is in the scope of a search from base.
func inScope(dn, base *ldap.DN, scope int) bool {
	if dn == nil {
		return false
	}
	switch scope {
	case ldap.ScopeBaseObject:
		return base.EqualFold(dn)
	case ldap.ScopeSingleLevel:
		return len(dn.RDNs) == len(base.RDNs)+1 && base.AncestorOfFold(dn)
	}
	return base.EqualFold(dn) || base.AncestorOfFold(dn)
}

// searchIndex is what Search needs of one snapshot beyond its maps: the scope
// the view was read with, parsed, and every entry's DN parsed.
type searchIndex struct {
	snap       *snapshot
	base       *ldap.DN        // the base the view was read from
	filterText string          // the view's filter
	viewKeys   map[string]bool // canonical forms of its top-level conjuncts
	stored     map[string]bool // lower-case names of the attributes read
	names      spellings       // of the entries' attributes
	dns        map[*Entry]*ldap.DN
}

// index returns the searchIndex of snap, building it once per snapshot.
func (s *ViewSearcher) index(snap *snapshot) (*searchIndex, error) {
	if ix := s.idx.Load(); ix != nil && ix.snap == snap {
		return ix, nil
	}
	ix, err := newSearchIndex(snap)
	if err != nil {
		return nil, err
	}
	s.idx.Store(ix)
	return ix, nil
}

func newSearchIndex(snap *snapshot) (*searchIndex, error) {
	// State.Scope is "base=<dn>\x00filter=<filter>\x00attributes=<a,b,…>"
	// (NewSyncer): the scope the entries were read with, which may differ from
	// the configuration until the next sync.
	scope := snap.state.Scope
	rest, ok := strings.CutPrefix(scope, "base=")
	baseText, rest, ok2 := strings.Cut(rest, "\x00filter=")
	i := strings.LastIndex(rest, "\x00attributes=")
	if !ok || !ok2 || i < 0 {
		return nil, notServed("the view has no recorded scope")
	}
	filterText, attrs := rest[:i], rest[i+len("\x00attributes="):]
	base, err := ldap.ParseDN(baseText)
	if err != nil {
		return nil, notServed("the view's base %q is not a DN", baseText)
	}
	filter, err := ldap.CompileFilter(filterText)
	if err != nil {
		return nil, notServed("the view's filter does not compile")
	}
	ix := &searchIndex{
		snap:       snap,
		base:       base,
		filterText: filterText,
		viewKeys:   make(map[string]bool),
		stored:     make(map[string]bool),
		names:      newSpellings(snap.sorted),
		dns:        make(map[*Entry]*ldap.DN, len(snap.sorted)),
	}
	for _, c := range ldapfilter.Conjuncts(filter) {
		k, err := ldapfilter.Canonical(c, viewSyntax)
		if err != nil {
			return nil, notServed("the view's filter: %v", err)
		}
		ix.viewKeys[k] = true
	}
	for _, a := range strings.Split(attrs, ",") {
		if a != "" {
			ix.stored[a] = true
		}
	}
	for _, e := range snap.sorted {
		if dn, err := ldap.ParseDN(e.DN); err == nil {
			ix.dns[e] = dn
		}
	}
	return ix, nil
}

// dnOf returns e's parsed DN (nil when it does not parse).
func (ix *searchIndex) dnOf(e *Entry) *ldap.DN { return ix.dns[e] }

// implies reports whether every top-level conjunct of the view's filter is a
// top-level conjunct of f.
func (ix *searchIndex) implies(f *ber.Packet) bool {
	have := make(map[string]bool)
	for _, c := range ldapfilter.Conjuncts(f) {
		if k, err := ldapfilter.Canonical(c, viewSyntax); err == nil {
			have[k] = true
		}
	}
	for k := range ix.viewKeys {
		if !have[k] {
			return false
		}
	}
	return true
}

// exists reports whether base is known to exist in AD: the view's base or an
// ancestor of it, or a view entry or an ancestor of one.
func (ix *searchIndex) exists(base *ldap.DN) bool {
	if ix.base.EqualFold(base) || base.AncestorOfFold(ix.base) {
		return true
	}
	if !ix.base.AncestorOfFold(base) {
		return false // outside the view's base: nothing the view holds is under it
	}
	for _, dn := range ix.dns {
		if base.EqualFold(dn) || base.AncestorOfFold(dn) {
			return true
		}
	}
	return false
}

// uniqueCandidate finds the one entry a search can return by a key unique in
// the domain: a top-level equality of f on sAMAccountName, userPrincipalName,
// objectGUID or distinguishedName, or the base of a base-object search. key
// names the key used ("" when there is none); e is nil when the view does not
// hold it.
func (ix *searchIndex) uniqueCandidate(snap *snapshot, f *ber.Packet, base *ldap.DN, scope int) (e *Entry, key string) {
	if scope == ldap.ScopeBaseObject {
		return snap.byDN[normalizeDN(base.String())], "base DN"
	}
	for _, c := range ldapfilter.Conjuncts(f) {
		items, err := ldapfilter.Items(c)
		if err != nil || len(items) != 1 || !(c.Tag == ldap.FilterEqualityMatch || c.Tag == ldap.FilterExtensibleMatch) {
			continue
		}
		it := items[0]
		if it.Rule != "" || it.DNAttributes {
			continue
		}
		switch strings.ToLower(it.Attr) {
		case "samaccountname":
			e = snap.bySAM[strings.ToLower(it.Value)]
			if e != nil && !strings.EqualFold(e.First("sAMAccountName"), it.Value) {
				e = nil
			}
		case "userprincipalname":
			e = snap.byUPN[strings.ToLower(it.Value)]
			if e != nil && !strings.EqualFold(e.First("userPrincipalName"), it.Value) {
				e = nil
			}
		case "objectguid":
			e = snap.byGUID[formatGUID([]byte(it.Value))]
		case "distinguishedname":
			if _, err := ldap.ParseDN(it.Value); err == nil {
				e = snap.byDN[normalizeDN(it.Value)]
			}
		default:
			continue
		}
		return e, it.Attr
	}
	return nil, ""
}

// returned resolves the requested attributes to the lower-case names Entry
// returns, or refuses a list the view cannot serve.
func (ix *searchIndex) returned(asked []string) ([]string, error) {
	if len(asked) == 0 {
		return nil, notServed("all attributes were asked for")
	}
	var out []string
	for _, a := range asked {
		name := strings.ToLower(a)
		switch {
		case name == "1.1" || name == "dn":
			// "dn" names no attribute (the DN comes with every entry): AD
			// returns nothing for it.
			continue
		case name == "*" || name == "+":
			return nil, notServed("attributes %q were asked for", a)
		case strings.Contains(name, ";"):
			return nil, notServed("attribute options (%s)", a)
		case name == "distinguishedname" || name == "objectguid":
		case !ix.stored[name]:
			return nil, notServed("attribute %s is not stored in the view (sync.attributes)", a)
		case unservable[name]:
			return nil, notServed("attribute %s is stored in another form than AD sends", a)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// servable checks that the view can evaluate every assertion of f exactly as
// AD does.
func (ix *searchIndex) servable(f *ber.Packet) error {
	items, err := ldapfilter.Items(f)
	if err != nil {
		return notServed("the filter: %v", err)
	}
	for _, it := range items {
		if err := ix.servableItem(it); err != nil {
			return err
		}
	}
	return nil
}

// objectClassPresent is the canonical form of (objectClass=*), true for
// every object.
const objectClassPresent = `("objectclass"=*)`

var (
	timeValue = regexp.MustCompile(`^[0-9]{14}\.0Z$`)
	oidValue  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)+$`)
)

// canonicalInt reports whether v is a 64-bit integer written as AD writes
// one (no sign but '-', no leading zero), the only form in which text
// comparison and AD's integer comparison agree.
func canonicalInt(v string) bool {
	n, err := strconv.ParseInt(v, 10, 64)
	return err == nil && strconv.FormatInt(n, 10) == v
}

func (ix *searchIndex) servableItem(it ldapfilter.Item) error {
	name := strings.ToLower(it.Attr)
	switch {
	case it.Op == ldap.FilterApproxMatch:
		return notServed("approximate match (AD servers disagree on it)")
	case it.Op == ldap.FilterExtensibleMatch && it.DNAttributes:
		return notServed("an extensible match with dnAttributes")
	case it.Op == ldap.FilterExtensibleMatch && it.Rule == ldapfilter.MatchingRuleInChain:
		return notServed("nested membership (IN_CHAIN) other than the view's own scope")
	case it.Op == ldap.FilterExtensibleMatch && it.Rule != "" && it.Rule != ldapfilter.MatchingRuleBitAnd && it.Rule != ldapfilter.MatchingRuleBitOr:
		return notServed("matching rule %s", it.Rule)
	case name == "":
		return notServed("an extensible match without an attribute")
	case strings.Contains(name, ";"):
		return notServed("attribute options in the filter (%s)", it.Attr)
	case name != "distinguishedname" && name != "objectguid" && !ix.stored[name]:
		return notServed("the filter reads %s, which the view does not store", it.Attr)
	case unservable[name]:
		return notServed("the filter reads %s, which the view stores in another form", it.Attr)
	}
	kind := attrKind(name)
	if kind == kindUnknown {
		return notServed("the view does not know how AD compares %s", it.Attr)
	}
	op := it.Op
	if op == ldap.FilterExtensibleMatch && it.Rule == "" {
		op = ldap.FilterEqualityMatch
	}
	switch op {
	case ldap.FilterPresent:
		return nil
	case ldap.FilterExtensibleMatch: // BIT_AND, BIT_OR
		if kind != kindInteger || !canonicalInt(it.Value) {
			return notServed("a bitwise rule on %s", it.Attr)
		}
		return nil
	case ldap.FilterSubstrings:
		if kind != kindString {
			return notServed("substrings on %s", it.Attr)
		}
		return nil
	case ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual:
		switch {
		case kind == kindInteger && canonicalInt(it.Value):
		case kind == kindTime && timeValue.MatchString(it.Value):
		default:
			return notServed("ordering on %s (AD orders strings by its own collation)", it.Attr)
		}
		return nil
	}
	// Equality.
	switch {
	case kind == kindInteger && !canonicalInt(it.Value):
		return notServed("an integer assertion on %s in a form AD may read otherwise", it.Attr)
	case kind == kindTime && !timeValue.MatchString(it.Value):
		return notServed("a time assertion on %s in a form AD may read otherwise", it.Attr)
	case kind == kindDN:
		if _, err := ldap.ParseDN(it.Value); err != nil {
			return notServed("a DN assertion on %s that is not a DN", it.Attr)
		}
	case name == "objectclass" && oidValue.MatchString(it.Value):
		return notServed("objectClass by OID")
	}
	return nil
}

// How AD compares an attribute the view may evaluate.
type kind int

const (
	kindUnknown kind = iota
	kindString       // Unicode string: case-insensitive
	kindInteger      // INTEGER or LargeInteger
	kindTime         // GeneralizedTime
	kindDN           // DN: compared as DNs
	kindOctets       // objectGUID: bytes
)

// attrKinds are the attributes whose matching the view reproduces; a filter
// on any other attribute goes to AD even when the view stores it (its syntax
// may be case-sensitive or binary).
var attrKinds = func() map[string]kind {
	m := map[string]kind{"objectguid": kindOctets}
	for _, a := range []string{
		"sAMAccountName", "userPrincipalName", "displayName", "givenName", "sn", "cn", "name", "initials",
		"mail", "mailNickname", "proxyAddresses", "telephoneNumber", "mobile", "homePhone", "ipPhone", "pager",
		"facsimileTelephoneNumber", "otherTelephone", "otherMobile", "otherHomePhone", "otherIpPhone",
		"company", "department", "title", "description", "physicalDeliveryOfficeName", "streetAddress",
		"l", "st", "postalCode", "c", "co", "employeeID", "employeeNumber", "employeeType", "info",
		"wWWHomePage", "objectClass",
	} {
		m[strings.ToLower(a)] = kindString
	}
	for i := 1; i <= 15; i++ {
		m["extensionattribute"+strconv.Itoa(i)] = kindString
	}
	for _, a := range []string{
		"userAccountControl", "pwdLastSet", "lockoutTime", "accountExpires", "uSNChanged", "uSNCreated",
		"badPwdCount", "badPasswordTime", "lastLogon", "lastLogonTimestamp", "logonCount", "primaryGroupID",
		"sAMAccountType", "groupType", "countryCode", "adminCount",
	} {
		m[strings.ToLower(a)] = kindInteger
	}
	for _, a := range []string{"whenChanged", "whenCreated"} {
		m[strings.ToLower(a)] = kindTime
	}
	for _, a := range []string{"distinguishedName", "memberOf", "manager", "directReports"} {
		m[strings.ToLower(a)] = kindDN
	}
	return m
}()

func attrKind(lower string) kind { return attrKinds[lower] }

// unservable are attributes the view stores in another form than AD sends
// (objectSid as S-1-…), whose values AD computes at read time, or whose
// filter values AD rewrites (objectCategory=person).
var unservable = map[string]bool{
	"objectsid":                           true,
	"sidhistory":                          true,
	"objectcategory":                      true,
	"tokengroups":                         true,
	"msds-user-account-control-computed":  true,
	"msds-userpasswordexpirytimecomputed": true,
}

// viewSyntax is how the filter evaluator compares the view's attributes.
func viewSyntax(attr string) ldapfilter.Syntax {
	switch attrKind(strings.ToLower(attr)) {
	case kindDN:
		return ldapfilter.SyntaxDN
	case kindOctets:
		return ldapfilter.SyntaxOctets
	}
	if strings.EqualFold(attr, "member") || strings.EqualFold(attr, "managedBy") {
		return ldapfilter.SyntaxDN
	}
	return ldapfilter.SyntaxString
}
