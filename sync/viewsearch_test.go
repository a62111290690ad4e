package usersync

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// pascomFilter is pascom's import filter: users in PBX-Users' chain.
const pascomFilter = "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + "))"

// adSearch is the reference: the search made straight on the DC as the
// service account, paged.
func (d *simDomain) adSearch(t *testing.T, dc *adsim.DC, req *ldap.SearchRequest) []*ldap.Entry {
	t.Helper()
	conn, err := ldap.DialURL(dc.URL(), ldap.DialWithTLSConfig(dc.ClientTLSConfig()))
	if err != nil {
		t.Fatalf("dial %s: %v", dc.URL(), err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.Bind(testbed.Service.DN(), testbed.Service.Password); err != nil {
		t.Fatalf("bind: %v", err)
	}
	res, err := conn.SearchWithPaging(req, 100)
	if err != nil {
		t.Fatalf("reference search %s: %v", req.Filter, err)
	}
	return res.Entries
}

// describeEntries renders entries as sorted lines "dn: attr=v1|v2; …" with
// attribute names and DNs lower-cased and values sorted, for comparing the
// view's answer with AD's.
func describeEntries(entries []*ldap.Entry) []string {
	var out []string
	for _, e := range entries {
		var attrs []string
		for _, a := range e.Attributes {
			vals := make([]string, len(a.ByteValues))
			for i, v := range a.ByteValues {
				vals[i] = fmt.Sprintf("%q", v)
			}
			slices.Sort(vals)
			attrs = append(attrs, strings.ToLower(a.Name)+"="+strings.Join(vals, "|"))
		}
		slices.Sort(attrs)
		out = append(out, strings.ToLower(e.DN)+": "+strings.Join(attrs, "; "))
	}
	slices.Sort(out)
	return out
}

func answerEntries(a *SearchAnswer) []*ldap.Entry {
	out := make([]*ldap.Entry, a.Len())
	for i := range out {
		out[i] = a.Entry(i)
	}
	return out
}

// pascomAttributes are the attributes pascom's import asks for.
var pascomAttributes = []string{"sAMAccountName", "displayName", "givenName", "sn", "mail", "telephoneNumber", "mobile", "ipPhone", "memberOf"}

func searchReq(base string, scope int, filter string, attrs ...string) *ldap.SearchRequest {
	return ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
}

func TestViewSearchAnswersWhatADAnswers(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 30)
	views := map[string]*harness{
		"pbx":    newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), pbxFilter)),
		"pascom": newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), pascomFilter)),
		"users":  newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter)),
	}
	for _, h := range views {
		h.run(Options{})
	}
	jdoe, ok := views["pbx"].view.ByLogin("jdoe")
	if !ok {
		t.Fatal("jdoe is not in the PBX view")
	}
	guidBytes, _ := parseGUID(jdoe.GUID)
	var guidFilter strings.Builder
	for _, b := range guidBytes {
		fmt.Fprintf(&guidFilter, `\%02x`, b)
	}
	users, root := testbed.UsersDN, testbed.BaseDN
	sub, one, base := ldap.ScopeWholeSubtree, ldap.ScopeSingleLevel, ldap.ScopeBaseObject
	tests := []struct {
		name string
		view string
		req  *ldap.SearchRequest
		rule string // "" when the search must go to AD
	}{
		// The scope rule.
		{"pascom's import filter is the view's own filter", "pascom", searchReq(users, sub, pascomFilter, pascomAttributes...), RuleScope},
		{"the view's filter spelt in other case with spaces in the DN", "pascom",
			searchReq(users, sub, "(&(OBJECTCLASS=User)(memberof:1.2.840.113556.1.4.1941:=cn=pbx-users, ou=aaddc users, dc=aadds, dc=example, dc=test))", pascomAttributes...), RuleScope},
		{"the view's filter with its parts in another order", "pbx",
			searchReq(users, sub, "(&(memberOf:1.2.840.113556.1.4.1941:="+testbed.PBXUsersDN+")(objectClass=user)(objectCategory=person))", "sAMAccountName"), RuleScope},
		{"the view's filter and more conditions", "pbx",
			searchReq(users, sub, "(&"+pbxFilter[2:len(pbxFilter)-1]+"(mobile=*)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))", pascomAttributes...), RuleScope},
		{"the view's filter and an OR of substrings", "pbx",
			searchReq(users, sub, "(&"+pbxFilter[2:len(pbxFilter)-1]+"(|(sn=D*)(displayName=*Bri*)))", "sAMAccountName", "sn"), RuleScope},
		{"the view's filter and an integer range", "users",
			searchReq(users, sub, "(&"+allUsersFilter[2:len(allUsersFilter)-1]+"(uSNChanged>=1)(userAccountControl<=600))", "sAMAccountName", "uSNChanged"), RuleScope},
		{"every user of the users view, with the objectGUID as bytes", "users", searchReq(users, sub, allUsersFilter, "objectGUID", "distinguishedName"), RuleScope},
		{"one level under the users OU", "users", searchReq(users, one, allUsersFilter, "sAMAccountName"), RuleScope},
		{"the bulk users' OU inside the view's base", "users", searchReq(testbed.LoadUsersDN, sub, allUsersFilter, "sAMAccountName"), RuleScope},
		{"no attributes (1.1)", "pascom", searchReq(users, sub, pascomFilter, "1.1"), RuleScope},
		// The unique-key rule.
		{"pascom's search-then-bind lookup", "pbx", searchReq(users, sub, "(sAMAccountName=jdoe)", "dn"), RuleUniqueKey},
		{"a lookup in another case from the domain root", "pbx", searchReq(root, sub, "(samaccountname=JDOE)", "sAMAccountName"), RuleUniqueKey},
		{"the resolver's lookup with the user filter", "pbx",
			searchReq(users, sub, "(&(objectCategory=person)(objectClass=user)(sAMAccountName=sobrien))", "sAMAccountName", "objectGUID", "userPrincipalName"), RuleUniqueKey},
		{"a UPN lookup", "pbx", searchReq(users, sub, "(userPrincipalName="+testbed.ASmith.UPN()+")", "sAMAccountName"), RuleUniqueKey},
		{"an objectGUID lookup", "pbx", searchReq(users, sub, "(objectGUID="+guidFilter.String()+")", "sAMAccountName"), RuleUniqueKey},
		{"a lookup that the entry fails answers nothing", "pbx", searchReq(users, sub, "(&(sAMAccountName=jdoe)(mail=nobody@example.test))", "sAMAccountName"), RuleUniqueKey},
		{"a lookup whose entry lies outside the base answers nothing", "users", searchReq(testbed.LoadUsersDN, sub, "(sAMAccountName=jdoe)", "sAMAccountName"), RuleUniqueKey},
		{"a base-object read of a user", "pbx", searchReq(testbed.JDoe.DN(), base, "(objectClass=*)", pascomAttributes...), RuleUniqueKey},
		{"a base-object read of a user by an escaped DN", "pbx", searchReq(testbed.SOBrien.DN(), base, "(objectClass=*)", "displayName"), RuleUniqueKey},
		// Forwarded.
		{"pascom's filter does not imply a view filter with objectCategory=person", "pbx", searchReq(users, sub, pascomFilter, pascomAttributes...), ""},
		{"a lookup of a user outside the view goes to AD", "pbx", searchReq(users, sub, "(sAMAccountName=bjones)", "sAMAccountName"), ""},
		{"an attribute the view does not store goes to AD", "pascom", searchReq(users, sub, pascomFilter, "sAMAccountName", "description"), ""},
		{"a filter on an attribute the view does not store goes to AD", "pascom", searchReq(users, sub, "(&"+pascomFilter[2:len(pascomFilter)-1]+"(description=x))", "sAMAccountName"), ""},
		{"a base above the view's base goes to AD", "pascom", searchReq(root, sub, pascomFilter, "sAMAccountName"), ""},
		{"a base beside the view's base goes to AD", "pascom", searchReq("OU=Elsewhere,"+root, sub, pascomFilter, "sAMAccountName"), ""},
		{"a base under the view's base holding none of its entries goes to AD", "pascom", searchReq(testbed.LoadUsersDN, sub, pascomFilter, "sAMAccountName"), ""},
		{"another group's chain goes to AD", "pascom", searchReq(users, sub, "(&"+pascomFilter[2:len(pascomFilter)-1]+"(memberOf:1.2.840.113556.1.4.1941:="+testbed.PBXAdminsDN+"))", "sAMAccountName"), ""},
		{"approximate match goes to AD", "pascom", searchReq(users, sub, "(&"+pascomFilter[2:len(pascomFilter)-1]+"(sn~=doe))", "sAMAccountName"), ""},
		{"ordering on a string goes to AD", "pascom", searchReq(users, sub, "(&"+pascomFilter[2:len(pascomFilter)-1]+"(sn>=m))", "sAMAccountName"), ""},
		{"every attribute goes to AD", "pascom", searchReq(users, sub, pascomFilter), ""},
		{"an unrelated filter goes to AD", "pascom", searchReq(users, sub, "(objectClass=user)", "sAMAccountName"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := views[tt.view]
			vs := NewViewSearcher(h.view, ViewSearchOptions{})
			ans, err := vs.Search(tt.req, SearchConditions{Now: h.clock.Now()})
			if tt.rule == "" {
				if !errors.Is(err, ErrNotServed) {
					t.Fatalf("answered from the view (%v, %v), want it forwarded", ans, err)
				}
				t.Logf("forwarded: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("not answered from the view: %v", err)
			}
			if ans.Rule != tt.rule || ans.Stale {
				t.Errorf("rule %s, stale %v; want %s, fresh", ans.Rule, ans.Stale, tt.rule)
			}
			got := describeEntries(answerEntries(ans))
			want := describeEntries(dom.adSearch(t, dom.dcs[0], tt.req))
			if !slices.Equal(got, want) {
				t.Errorf("the view answers\n  %s\nAD answers\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			if len(got) == 0 && !strings.Contains(tt.name, "nothing") {
				t.Errorf("no entries: the case proves little")
			}
		})
	}
}

func TestViewSearchAge(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	cfg := syncConfig(t.TempDir(), pascomFilter)
	cfg.StaleAfter = 15 * time.Minute
	h := newHarness(t, dom, dom.upstreamConfig(), cfg)
	req := searchReq(testbed.UsersDN, ldap.ScopeWholeSubtree, pascomFilter, "sAMAccountName")

	never := NewViewSearcher(h.view, ViewSearchOptions{})
	if _, err := never.Search(req, SearchConditions{Now: h.clock.Now(), DCsDown: true}); !errors.Is(err, ErrNotServed) {
		t.Fatalf("a view never synced answered (%v), want it forwarded", err)
	}
	h.run(Options{})
	synced := h.clock.Now()
	tests := []struct {
		name     string
		age      time.Duration
		dcsDown  bool
		outage   time.Duration
		served   bool
		stale    bool
		contains string
	}{
		{"a fresh view answers", 15 * time.Minute, false, 0, true, false, ""},
		{"a stale view does not while a DC is usable", 15*time.Minute + time.Second, false, 0, false, false, "stale"},
		{"a stale view answers as stale while no DC is usable", 3 * time.Hour, true, 0, true, true, ""},
		{"a view older than the outage limit does not", 24*time.Hour + time.Second, true, 0, false, false, "outage_max_age"},
		{"a configured outage limit applies", 2 * time.Hour, true, time.Hour, false, false, "outage_max_age"},
		{"a negative outage limit never serves a stale view", 16 * time.Minute, true, -1, false, false, "outage_max_age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := NewViewSearcher(h.view, ViewSearchOptions{OutageMaxAge: tt.outage})
			ans, err := vs.Search(req, SearchConditions{Now: synced.Add(tt.age), DCsDown: tt.dcsDown})
			switch {
			case tt.served && err != nil:
				t.Fatalf("not answered: %v", err)
			case !tt.served && (!errors.Is(err, ErrNotServed) || !strings.Contains(err.Error(), tt.contains)):
				t.Fatalf("error %v, want ErrNotServed saying %q", err, tt.contains)
			case tt.served && (ans.Stale != tt.stale || ans.Age != tt.age || ans.Len() != 3):
				t.Errorf("stale %v, age %s, %d entries; want stale %v, age %s, 3 entries", ans.Stale, ans.Age, ans.Len(), tt.stale, tt.age)
			}
		})
	}
}

// syntheticView is a view holding entries written directly (no AD), read with
// filter and attrs from base.
func syntheticView(t testing.TB, base, filter string, attrs []string, entries ...*Entry) (*View, time.Time) {
	t.Helper()
	v, err := OpenView(t.TempDir(), ViewOptions{StaleAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	lower := make([]string, len(attrs))
	for i, a := range attrs {
		lower[i] = strings.ToLower(a)
	}
	slices.Sort(lower)
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	st := State{Scope: "base=" + normalizeDN(base) + "\x00filter=" + filter + "\x00attributes=" + strings.Join(lower, ","), LastFull: now}
	if err := v.apply(&change{put: entries, state: st}); err != nil {
		t.Fatal(err)
	}
	return v, now
}

func TestViewSearchEdgeCases(t *testing.T) {
	t.Parallel()
	const base = "OU=Staff,DC=x"
	attrs := []string{"sAMAccountName", "objectClass", "jpegPhoto", "cn", "objectGUID", "objectSid", "userAccountControl"}
	entry := func(guid, dn, sam string, kv ...string) *Entry {
		e := &Entry{GUID: guid, DN: dn, Attrs: map[string][]string{"sAMAccountName": {sam}, "objectGUID": {guid},
			"objectClass": {"organizationalPerson", "person", "top", "user"}, "userAccountControl": {"512"}}}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Attrs[kv[i]] = append(e.Attrs[kv[i]], kv[i+1])
		}
		return e
	}
	v, now := syntheticView(t, base, "(objectClass=user)", attrs,
		entry("00000000-0000-0000-0000-000000000001", "CN=Ann,OU=Staff,DC=x", "ann", "jpegPhoto", "base64:/w==", "cn", "Ann"),
		entry("00000000-0000-0000-0000-000000000002", "CN=Bob,OU=Team,OU=Staff,DC=x", "bob", "objectSid", "S-1-5-21-1-2-3-1104", "cn", "Bob"),
	)
	vs := NewViewSearcher(v, ViewSearchOptions{})
	tests := []struct {
		name   string
		req    *ldap.SearchRequest
		want   []string // sAMAccountNames, nil when forwarded
		reason string
	}{
		{"one level finds only direct children", searchReq(base, ldap.ScopeSingleLevel, "(objectClass=user)", "sAMAccountName"), []string{"ann"}, ""},
		{"a nested OU holding an entry is known to exist", searchReq("OU=Team,"+base, ldap.ScopeWholeSubtree, "(objectClass=user)", "sAMAccountName"), []string{"bob"}, ""},
		{"a base-object search of the view's base answers nothing: it is not a user", searchReq(base, ldap.ScopeBaseObject, "(objectClass=user)", "sAMAccountName"), []string{}, ""},
		{"a base-object search of the view's base with another filter goes to AD", searchReq(base, ldap.ScopeBaseObject, "(objectClass=*)", "sAMAccountName"), nil, "no entry with that base DN"},
		{"objectClass presence holds for every entry", searchReq(base, ldap.ScopeWholeSubtree, "(&(objectClass=user)(objectClass=*))", "sAMAccountName"), []string{"ann", "bob"}, ""},
		{"a canonical integer compares", searchReq(base, ldap.ScopeWholeSubtree, "(&(objectClass=user)(userAccountControl=512))", "sAMAccountName"), []string{"ann", "bob"}, ""},
		{"an integer with a leading zero goes to AD", searchReq(base, ldap.ScopeWholeSubtree, "(&(objectClass=user)(userAccountControl=0512))", "sAMAccountName"), nil, "integer"},
		{"objectClass by OID goes to AD", searchReq(base, ldap.ScopeWholeSubtree, "(&(objectClass=user)(objectClass=1.2.840.113556.1.5.9))", "sAMAccountName"), nil, "OID"},
		{"a value stored as base64 is never returned", searchReq(base, ldap.ScopeWholeSubtree, "(objectClass=user)", "jpegPhoto"), nil, "base64"},
		{"a filter reading a value stored as base64 goes to AD", searchReq(base, ldap.ScopeWholeSubtree, "(&(objectClass=user)(!(cn=x)))", "sAMAccountName"), []string{"ann", "bob"}, ""},
		{"an attribute of unknown matching in the filter goes to AD", searchReq(base, ldap.ScopeWholeSubtree, "(&(objectClass=user)(jpegPhoto=*))", "sAMAccountName"), nil, "does not know how AD compares"},
		{"objectSid is stored in another form", searchReq(base, ldap.ScopeWholeSubtree, "(objectClass=user)", "objectSid"), nil, "another form"},
		{"typesOnly goes to AD", &ldap.SearchRequest{BaseDN: base, Scope: ldap.ScopeWholeSubtree, Filter: "(objectClass=user)", Attributes: []string{"cn"}, TypesOnly: true}, nil, "typesOnly"},
		{"attribute options go to AD", searchReq(base, ldap.ScopeWholeSubtree, "(objectClass=user)", "cn;range=0-1"), nil, "options"},
		{"a distinguishedName lookup is a unique key", searchReq("DC=x", ldap.ScopeWholeSubtree, "(distinguishedName=cn=bob, ou=team, ou=staff, dc=x)", "sAMAccountName"), []string{"bob"}, ""},
		{"a key outside the base with an unknown base goes to AD", searchReq("OU=Gone,OU=Staff,DC=x", ldap.ScopeWholeSubtree, "(sAMAccountName=bob)", "cn"), nil, "not known to exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans, err := vs.Search(tt.req, SearchConditions{Now: now})
			if tt.want == nil {
				if !errors.Is(err, ErrNotServed) || !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("error %v, want ErrNotServed saying %q", err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("not answered: %v", err)
			}
			var got []string
			for i := range ans.Len() {
				got = append(got, ans.ViewEntry(i).First("sAMAccountName"))
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
				t.Errorf("answered %v, want %v", got, tt.want)
			}
		})
	}
}
