package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// fakeEntry is one object of fakeDir.
type fakeEntry struct {
	dn       string
	attrs    map[string][]string // attribute name lowercased
	password string              // "" for objects that cannot bind
	adCode   string              // AD's sub-code for a bind with the right password
}

// fakeDir is an in-memory directory with Windows AD's bind semantics (an empty
// password with any name succeeds as anonymous) that records what reaches it.
type fakeDir struct {
	mu        sync.Mutex
	entries   []fakeEntry
	filters   []string
	bases     []string
	searches  int
	binds     map[string]int // by folded DN
	searchErr error
	bindErr   error
	// blockBind makes Bind wait for its context to end.
	blockBind bool
	// referral is returned as a search reference with every search.
	referral string
	// override, when set, answers searches instead of the entries.
	override func(*ldap.SearchRequest) (*ldap.SearchResult, error)
}

var _ Directory = (*fakeDir)(nil)

func fakeUserEntry(dn, sam, upn, password, adCode string) fakeEntry {
	sum := sha256.Sum256([]byte(dn))
	attrs := map[string][]string{
		"objectclass":    {"top", "person", "organizationalPerson", "user"},
		"objectcategory": {"person"},
		"samaccountname": {sam},
		"objectguid":     {string(sum[:16])},
	}
	if upn != "" {
		attrs["userprincipalname"] = []string{upn}
	}
	return fakeEntry{dn: dn, attrs: attrs, password: password, adCode: adCode}
}

// newFakeDir holds the test bed's seeded accounts, a group and extra entries.
func newFakeDir(extra ...fakeEntry) *fakeDir {
	d := &fakeDir{binds: map[string]int{}}
	for _, a := range testbed.Accounts {
		d.entries = append(d.entries, fakeUserEntry(a.DN(), a.Login, a.UPN(), a.Password, a.ADCode))
	}
	d.entries = append(d.entries, fakeEntry{dn: testbed.PBXUsersDN, attrs: map[string][]string{
		"objectclass": {"top", "group"}, "objectcategory": {"group"}, "samaccountname": {"PBX-Users"},
	}})
	d.entries = append(d.entries, extra...)
	return d
}

func fakeFoldDN(dn string) string {
	p, err := ldap.ParseDN(dn)
	if err != nil {
		return "unparsable:" + dn
	}
	return formatDN(p, true)
}

func (d *fakeDir) Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.searches++
	d.filters = append(d.filters, req.Filter)
	d.bases = append(d.bases, req.BaseDN)
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("%w: %w", upstream.ErrUnavailable, err)
	}
	if d.searchErr != nil {
		return nil, "", d.searchErr
	}
	if d.override != nil {
		res, err := d.override(req)
		return res, "dc1", err
	}
	filter, err := ldap.CompileFilter(req.Filter)
	if err != nil {
		return nil, "dc1", ldap.NewError(ldap.LDAPResultFilterError, err)
	}
	base := fakeFoldDN(req.BaseDN)
	res := &ldap.SearchResult{}
	if d.referral != "" {
		res.Referrals = append(res.Referrals, d.referral)
	}
	found := false
	for _, e := range d.entries {
		ndn := fakeFoldDN(e.dn)
		inScope := ndn == base
		if req.Scope == ldap.ScopeWholeSubtree {
			inScope = inScope || strings.HasSuffix(ndn, ","+base)
		}
		if !inScope {
			continue
		}
		found = true
		if !fakeMatchFilter(filter, e) {
			continue
		}
		if req.SizeLimit > 0 && len(res.Entries) == req.SizeLimit {
			return res, "dc1", ldap.NewError(ldap.LDAPResultSizeLimitExceeded, errors.New("size limit exceeded"))
		}
		entry := &ldap.Entry{DN: e.dn}
		for _, a := range req.Attributes {
			if v, ok := e.attrs[strings.ToLower(a)]; ok {
				entry.Attributes = append(entry.Attributes, &ldap.EntryAttribute{Name: a, Values: v, ByteValues: fakeByteValues(v)})
			}
		}
		res.Entries = append(res.Entries, entry)
	}
	if !found && req.Scope == ldap.ScopeBaseObject {
		return nil, "dc1", ldap.NewError(ldap.LDAPResultNoSuchObject, errors.New("0000208D: NameErr: DSID-0310028D, problem 2001 (NO_OBJECT)"))
	}
	return res, "dc1", nil
}

func fakeByteValues(v []string) [][]byte {
	out := make([][]byte, len(v))
	for i, s := range v {
		out[i] = []byte(s)
	}
	return out
}

// fakeMatchFilter evaluates the filter items the resolver uses: and, or, not,
// equality (ignoring case) and presence.
func fakeMatchFilter(p *ber.Packet, e fakeEntry) bool {
	switch p.Tag {
	case ldap.FilterAnd:
		for _, c := range p.Children {
			if !fakeMatchFilter(c, e) {
				return false
			}
		}
		return true
	case ldap.FilterOr:
		for _, c := range p.Children {
			if fakeMatchFilter(c, e) {
				return true
			}
		}
		return false
	case ldap.FilterNot:
		return !fakeMatchFilter(p.Children[0], e)
	case ldap.FilterEqualityMatch:
		attr := strings.ToLower(ber.DecodeString(p.Children[0].Data.Bytes()))
		want := ber.DecodeString(p.Children[1].Data.Bytes())
		for _, v := range e.attrs[attr] {
			if strings.EqualFold(v, want) {
				return true
			}
		}
		return false
	case ldap.FilterPresent:
		return len(e.attrs[strings.ToLower(ber.DecodeString(p.Data.Bytes()))]) > 0
	default:
		return false
	}
}

func (d *fakeDir) Bind(ctx context.Context, dn, password string) (upstream.BindResult, error) {
	d.mu.Lock()
	d.binds[fakeFoldDN(dn)]++
	block, bindErr := d.blockBind, d.bindErr
	d.mu.Unlock()
	if block {
		<-ctx.Done()
		return upstream.BindResult{}, fmt.Errorf("%w: bind: %w", upstream.ErrUnavailable, ctx.Err())
	}
	if bindErr != nil {
		return upstream.BindResult{}, bindErr
	}
	res := upstream.BindResult{DC: "dc1", Dur: 3 * time.Millisecond}
	if password == "" {
		// Windows AD: a name with an empty password is an anonymous bind.
		return res, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.entries {
		if fakeFoldDN(e.dn) != fakeFoldDN(dn) || e.password == "" {
			continue
		}
		switch {
		case e.password != password:
			return res, ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New(adsim.BindDiagnostic("52e")))
		case e.adCode != "":
			return res, ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New(adsim.BindDiagnostic(e.adCode)))
		}
		return res, nil
	}
	return res, ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New(adsim.BindDiagnostic("525")))
}

// rename moves an entry to a new DN, as a rename in AD does.
func (d *fakeDir) rename(oldDN, newDN string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.entries {
		if d.entries[i].dn == oldDN {
			d.entries[i].dn = newDN
		}
	}
}

func (d *fakeDir) counts() (searches, binds int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.binds {
		binds += n
	}
	return d.searches, binds
}

func (d *fakeDir) bindsOn(dn string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.binds[fakeFoldDN(dn)]
}

func (d *fakeDir) recordedFilters() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.filters...)
}

func authTestConfig() configs.Config {
	cfg := configs.Default()
	cfg.Upstream.BaseDN = testbed.BaseDN
	cfg.Upstream.UserBaseDN = testbed.UsersDN
	cfg.Upstream.NetBIOSDomain = testbed.NetBIOS
	return cfg
}

func newFakeResolver(t *testing.T, s Searcher, opts ...AuthOption) *Resolver {
	t.Helper()
	cfg := authTestConfig()
	r, err := NewResolver(cfg.Upstream, cfg.Cache.DN, s, nil, opts...)
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	return r
}

func mustParseLogin(t *testing.T, name string) Login {
	t.Helper()
	l, err := ParseLogin(name, testbed.NetBIOS)
	if err != nil {
		t.Fatalf("ParseLogin(%q): %v", name, err)
	}
	return l
}

const testUserFilter = "(&(objectCategory=person)(objectClass=user))"

func TestResolveEveryFormOfALogin(t *testing.T) {
	t.Parallel()
	jdoe, sob := testbed.JDoe.DN(), testbed.SOBrien.DN()
	tests := []struct {
		name        string
		login       string
		wantDN      string
		wantSAM     string
		wantBase    string
		wantFilters []string
	}{
		{"jdoe by sAMAccountName", "jdoe", jdoe, "jdoe", testbed.UsersDN,
			[]string{"(&" + testUserFilter + "(sAMAccountName=jdoe))"}},
		{"JDoe by sAMAccountName in another case", "JDoe", jdoe, "jdoe", testbed.UsersDN,
			[]string{"(&" + testUserFilter + "(sAMAccountName=JDoe))"}},
		{"jdoe with spaces around", " jdoe ", jdoe, "jdoe", testbed.UsersDN,
			[]string{"(&" + testUserFilter + "(sAMAccountName=jdoe))"}},
		{"jdoe by UPN", "jdoe@aadds.example.test", jdoe, "jdoe", testbed.UsersDN,
			[]string{"(&" + testUserFilter + "(userPrincipalName=jdoe@aadds.example.test))"}},
		{"JDoe by UPN in capitals", "JDOE@AADDS.EXAMPLE.TEST", jdoe, "jdoe", testbed.UsersDN,
			[]string{"(&" + testUserFilter + "(userPrincipalName=JDOE@AADDS.EXAMPLE.TEST))"}},
		{"jdoe by down-level name", `AADDS\jdoe`, jdoe, "jdoe", testbed.UsersDN,
			[]string{"(&" + testUserFilter + "(sAMAccountName=jdoe))"}},
		{"jdoe by DN", jdoe, jdoe, "jdoe", jdoe, []string{testUserFilter}},
		{"jdoe by DN in lower case gets the DN as AD spells it", strings.ToLower(jdoe), jdoe, "jdoe",
			strings.ToLower(jdoe), []string{testUserFilter}},
		{"sobrien by sAMAccountName", "sobrien", sob, "sobrien", testbed.UsersDN,
			[]string{"(&" + testUserFilter + "(sAMAccountName=sobrien))"}},
		{"sobrien by DN with an escaped comma", sob, sob, "sobrien", sob, []string{testUserFilter}},
		{"sobrien by DN with a hex-escaped comma", `CN=Seán O'Brien\2c Jr.,` + testbed.UsersDN, sob, "sobrien", sob,
			[]string{testUserFilter}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := newFakeDir()
			r := newFakeResolver(t, dir)
			got, err := r.Resolve(context.Background(), mustParseLogin(t, tt.login))
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got.DN != tt.wantDN || got.SAMAccountName != tt.wantSAM || got.From != SourceSearch || got.DC != "dc1" {
				t.Errorf("Resolve = %+v, want DN %q, sAMAccountName %q from a search on dc1", got, tt.wantDN, tt.wantSAM)
			}
			if len(got.ObjectGUID) != 36 {
				t.Errorf("ObjectGUID = %q, want a GUID string", got.ObjectGUID)
			}
			if f := dir.recordedFilters(); strings.Join(f, " ") != strings.Join(tt.wantFilters, " ") {
				t.Errorf("filters = %q, want %q", f, tt.wantFilters)
			}
			if dir.bases[0] != tt.wantBase {
				t.Errorf("search base = %q, want %q", dir.bases[0], tt.wantBase)
			}
		})
	}
}

func TestResolveRefuses(t *testing.T) {
	t.Parallel()
	dup1 := fakeUserEntry("CN=Dup One,"+testbed.UsersDN, "dup1", "dup@aadds.example.test", "x", "")
	dup2 := fakeUserEntry("CN=Dup Two,"+testbed.UsersDN, "dup2", "dup@aadds.example.test", "x", "")
	tests := []struct {
		name         string
		login        string
		wantErr      error
		wantSearches int
	}{
		{"an unknown sAMAccountName is not found", "nobody", ErrUserNotFound, 1},
		{"an unknown UPN in a foreign suffix is not found after one search", "nobody@contoso.com", ErrUserNotFound, 1},
		{"an unknown UPN in the domain's suffix is not found after two searches", "nobody@aadds.example.test", ErrUserNotFound, 2},
		{"a UPN matching two users is ambiguous", "dup@aadds.example.test", ErrAmbiguous, 1},
		{"the DN of a group is not a user", testbed.PBXUsersDN, ErrUserNotFound, 1},
		{"a DN that does not exist is not found", "CN=Nobody," + testbed.UsersDN, ErrUserNotFound, 1},
		{"a DN outside the base is refused without a search", "CN=John Doe,OU=AADDC Users,DC=contoso,DC=com", ErrOutsideBase, 0},
		{"the base itself is not inside the base", testbed.BaseDN, ErrOutsideBase, 0},
		{"a DN that ends like the base as a string but not RDN by RDN is outside", `CN=x\,DC=aadds,DC=example,DC=test`, ErrOutsideBase, 0},
		{"a UPN local part that is a star matches nothing", "*@aadds.example.test", ErrUserNotFound, 1},
		{"parentheses in a sAMAccountName match nothing", "a)(x", ErrUserNotFound, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := newFakeDir(dup1, dup2)
			r := newFakeResolver(t, dir)
			_, err := r.Resolve(context.Background(), mustParseLogin(t, tt.login))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Resolve(%q) error = %v, want %v", tt.login, err, tt.wantErr)
			}
			if s, b := dir.counts(); s != tt.wantSearches || b != 0 {
				t.Errorf("searches, binds = %d, %d; want %d, 0", s, b, tt.wantSearches)
			}
		})
	}
}

func TestResolveFallsBackToSAMOnlyInTheDomainsOwnSuffix(t *testing.T) {
	t.Parallel()
	noUPN := fakeUserEntry("CN=No UPN,"+testbed.UsersDN, "nupn", "", "x", "")
	t.Run("a user without a UPN resolves as sam@realm", func(t *testing.T) {
		t.Parallel()
		dir := newFakeDir(noUPN)
		got, err := newFakeResolver(t, dir).Resolve(context.Background(), mustParseLogin(t, "NUPN@Aadds.Example.Test"))
		if err != nil || got.DN != noUPN.dn {
			t.Fatalf("Resolve = %+v, %v; want %q", got, err, noUPN.dn)
		}
		want := []string{
			"(&" + testUserFilter + "(userPrincipalName=NUPN@Aadds.Example.Test))",
			"(&" + testUserFilter + "(sAMAccountName=NUPN))",
		}
		if f := dir.recordedFilters(); strings.Join(f, " ") != strings.Join(want, " ") {
			t.Errorf("filters = %q, want %q", f, want)
		}
	})
	t.Run("the same local part in another suffix is not found", func(t *testing.T) {
		t.Parallel()
		dir := newFakeDir(noUPN)
		_, err := newFakeResolver(t, dir).Resolve(context.Background(), mustParseLogin(t, "nupn@contoso.com"))
		if !errors.Is(err, ErrUserNotFound) {
			t.Fatalf("Resolve error = %v, want ErrUserNotFound", err)
		}
	})
	t.Run("a local part that is no valid sAMAccountName is not tried", func(t *testing.T) {
		t.Parallel()
		dir := newFakeDir(noUPN)
		_, err := newFakeResolver(t, dir).Resolve(context.Background(), mustParseLogin(t, "n*@aadds.example.test"))
		if s, _ := dir.counts(); !errors.Is(err, ErrUserNotFound) || s != 1 {
			t.Fatalf("Resolve error = %v after %d searches, want ErrUserNotFound after 1", err, s)
		}
	})
}

func TestResolveUsesTheDNCache(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	r := newFakeResolver(t, dir)
	ctx := context.Background()
	first, err := r.Resolve(ctx, mustParseLogin(t, "jdoe"))
	if err != nil || first.From != SourceSearch {
		t.Fatalf("first Resolve = %+v, %v", first, err)
	}
	for _, name := range []string{"jdoe", "JDoe", " jdoe", `AADDS\jdoe`} {
		got, err := r.Resolve(ctx, mustParseLogin(t, name))
		if err != nil || got.From != SourceCache || got.Identity != first.Identity {
			t.Fatalf("Resolve(%q) = %+v, %v; want the cached identity", name, got, err)
		}
	}
	if s, _ := dir.counts(); s != 1 {
		t.Errorf("searches = %d, want 1", s)
	}
	r.Invalidate(mustParseLogin(t, "jdoe").Key)
	if got, err := r.Resolve(ctx, mustParseLogin(t, "jdoe")); err != nil || got.From != SourceSearch {
		t.Errorf("Resolve after Invalidate = %+v, %v; want a search", got, err)
	}
	if _, err := r.Resolve(ctx, mustParseLogin(t, "nobody")); !errors.Is(err, ErrUserNotFound) {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, mustParseLogin(t, "nobody")); !errors.Is(err, ErrUserNotFound) {
		t.Fatal(err)
	}
	if s, _ := dir.counts(); s != 4 {
		t.Errorf("searches = %d, want 4: an unknown user is not cached", s)
	}
}

// mapView is a directory view holding a fixed set of identities.
type mapView map[string]Identity

func (v mapView) LookupLogin(l Login) (Identity, bool) {
	id, ok := v[l.Key]
	return id, ok
}

func TestResolveAsksTheViewBeforeSearching(t *testing.T) {
	t.Parallel()
	jdoe := Identity{DN: testbed.JDoe.DN(), SAMAccountName: "jdoe"}
	evil := Identity{DN: "CN=Evil,DC=contoso,DC=com", SAMAccountName: "evil"}
	empty := Identity{SAMAccountName: "empty"}
	dir := newFakeDir()
	r := newFakeResolver(t, dir, WithView(mapView{"sam:jdoe": jdoe, "sam:evil": evil, "sam:empty": empty}))
	ctx := context.Background()
	got, err := r.Resolve(ctx, mustParseLogin(t, "JDoe"))
	if err != nil || got.From != SourceView || got.Identity != jdoe {
		t.Fatalf("Resolve = %+v, %v; want jdoe from the view", got, err)
	}
	if got, err := r.Resolve(ctx, mustParseLogin(t, "jdoe")); err != nil || got.From != SourceCache {
		t.Errorf("second Resolve = %+v, %v; want the cache", got, err)
	}
	if _, err := r.Resolve(ctx, mustParseLogin(t, "evil")); !errors.Is(err, ErrOutsideBase) {
		t.Errorf("a view identity outside the base: error = %v, want ErrOutsideBase", err)
	}
	if _, err := r.Resolve(ctx, mustParseLogin(t, "empty")); !errors.Is(err, ErrOutsideBase) {
		t.Errorf("a view identity without a DN: error = %v, want ErrOutsideBase", err)
	}
	if got, err := r.Resolve(ctx, mustParseLogin(t, "asmith")); err != nil || got.From != SourceSearch {
		t.Errorf("a login the view does not know: %+v, %v; want a search", got, err)
	}
	if s, _ := dir.counts(); s != 1 {
		t.Errorf("searches = %d, want 1", s)
	}
}

func TestResolveKeepsOutagesApartFromUnknownUsers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		searchErr error
		override  func(*ldap.SearchRequest) (*ldap.SearchResult, error)
		wantErr   error
		wantCode  int
	}{
		{"no healthy upstream is an outage", fmt.Errorf("search: %w", upstream.ErrNoHealthyUpstream), nil, upstream.ErrNoHealthyUpstream, 52},
		{"an unavailable upstream is an outage", fmt.Errorf("%w: dial: connection refused", upstream.ErrUnavailable), nil, upstream.ErrUnavailable, 52},
		{"a busy upstream is busy", upstream.ErrBusy, nil, upstream.ErrBusy, 51},
		{"a refused search is a failed lookup, not an unknown user",
			ldap.NewError(ldap.LDAPResultInsufficientAccessRights, errors.New("00002024: no rights")), nil, ErrLookupFailed, 52},
		{"a missing user base is a failed lookup, not an unknown user",
			ldap.NewError(ldap.LDAPResultNoSuchObject, errors.New("0000208D: NameErr")), nil, ErrLookupFailed, 52},
		{"go-ldap's client-side size limit is ambiguous", nil,
			func(*ldap.SearchRequest) (*ldap.SearchResult, error) {
				return &ldap.SearchResult{}, ldap.ErrSizeLimitExceeded
			},
			ErrAmbiguous, 49},
		{"an entry outside the base is refused", nil,
			func(*ldap.SearchRequest) (*ldap.SearchResult, error) {
				return &ldap.SearchResult{Entries: []*ldap.Entry{{DN: "CN=jdoe,DC=contoso,DC=com"}}}, nil
			}, ErrOutsideBase, 49},
		{"an entry with an empty DN is refused, never bound as anonymous", nil,
			func(*ldap.SearchRequest) (*ldap.SearchResult, error) {
				return &ldap.SearchResult{Entries: []*ldap.Entry{{DN: ""}}}, nil
			}, ErrOutsideBase, 49},
		{"an entry with an unparsable DN is refused", nil,
			func(*ldap.SearchRequest) (*ldap.SearchResult, error) {
				return &ldap.SearchResult{Entries: []*ldap.Entry{{DN: "not a dn"}}}, nil
			}, ErrOutsideBase, 49},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := newFakeDir()
			dir.searchErr, dir.override = tt.searchErr, tt.override
			_, err := newFakeResolver(t, dir).Resolve(context.Background(), mustParseLogin(t, "jdoe"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Resolve error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantCode != 49 && errors.Is(err, ErrUserNotFound) {
				t.Errorf("an outage reads as an unknown user: %v", err)
			}
			if code, _ := Classify(err); code != tt.wantCode {
				t.Errorf("Classify = %d, want %d", code, tt.wantCode)
			}
		})
	}
}

func TestResolveIgnoresSearchReferences(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	dir.referral = "ldaps://aadds.example.test/CN=Configuration,DC=aadds,DC=example,DC=test"
	got, err := newFakeResolver(t, dir).Resolve(context.Background(), mustParseLogin(t, "jdoe"))
	if err != nil || got.DN != testbed.JDoe.DN() {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
}

func TestResolveSearchRequest(t *testing.T) {
	t.Parallel()
	var got *ldap.SearchRequest
	dir := newFakeDir()
	dir.override = func(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
		got = req
		return &ldap.SearchResult{}, nil
	}
	_, _ = newFakeResolver(t, dir).Resolve(context.Background(), mustParseLogin(t, "jdoe"))
	if got.SizeLimit != 2 || !got.EnforceSizeLimit || got.Scope != ldap.ScopeWholeSubtree ||
		got.DerefAliases != ldap.NeverDerefAliases || strings.Join(got.Attributes, ",") != "sAMAccountName,objectGUID,userPrincipalName" {
		t.Errorf("search request = %+v", got)
	}
}

func TestNewResolverChecksItsConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(*configs.Upstream)
		wantErr string
	}{
		{"an empty base DN is refused", func(u *configs.Upstream) { u.BaseDN = "" }, "base_dn"},
		{"an unparsable base DN is refused", func(u *configs.Upstream) { u.BaseDN = "DC" }, "base_dn"},
		{"a user base outside the base is refused", func(u *configs.Upstream) { u.UserBaseDN = "OU=x,DC=contoso,DC=com" }, "user_base_dn"},
		{"an unparsable user filter is refused", func(u *configs.Upstream) { u.UserFilter = "(&(objectClass=user)" }, "user_filter"},
		{"a user filter without parentheses is accepted", func(u *configs.Upstream) { u.UserFilter = "objectClass=user" }, ""},
		{"an empty user base means the base", func(u *configs.Upstream) { u.UserBaseDN = "" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := authTestConfig()
			tt.change(&cfg.Upstream)
			_, err := NewResolver(cfg.Upstream, configs.CacheSize{}, newFakeDir(), nil)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("NewResolver error = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestRealmOfBaseDN(t *testing.T) {
	t.Parallel()
	for base, want := range map[string]string{
		"DC=aadds,DC=example,DC=test":      "aadds.example.test",
		"OU=x,DC=contoso,DC=com":           "contoso.com",
		"dc=Contoso,DC=onmicrosoft,dc=com": "Contoso.onmicrosoft.com",
		"O=Example":                        "",
	} {
		dn, err := ldap.ParseDN(base)
		if err != nil {
			t.Fatal(err)
		}
		if got := realmOf(dn); got != want {
			t.Errorf("realmOf(%q) = %q, want %q", base, got, want)
		}
	}
}

func TestFormatGUID(t *testing.T) {
	t.Parallel()
	b := []byte{0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	if got, want := formatGUID(b), "00112233-4455-6677-8899-aabbccddeeff"; got != want {
		t.Errorf("formatGUID = %q, want %q", got, want)
	}
	if got := formatGUID([]byte{1, 2}); got != "" {
		t.Errorf("formatGUID of 2 bytes = %q, want empty", got)
	}
}

func TestSetCacheChangesTheDNCacheWhileItRuns(t *testing.T) {
	t.Parallel()
	dir := newFakeDir()
	clock := newTestClock()
	r := newFakeResolver(t, dir)
	r.now = clock.now
	ctx := context.Background()
	resolve := func(login string) Source {
		t.Helper()
		res, err := r.Resolve(ctx, mustParseLogin(t, login))
		if err != nil {
			t.Fatalf("Resolve(%s): %v", login, err)
		}
		return res.From
	}
	resolve("jdoe")
	resolve("sobrien")
	clock.advance(5 * time.Minute)

	// A longer TTL keeps what is cached.
	r.SetCache(configs.CacheSize{Size: 100, TTL: time.Hour})
	clock.advance(20 * time.Minute) // past the old 15m
	if got := resolve("jdoe"); got != SourceCache {
		t.Errorf("jdoe 25m after caching, with a TTL of 1h, came from %s, want the cache", got)
	}
	// A shorter TTL ends entries cached before it.
	r.SetCache(configs.CacheSize{Size: 100, TTL: 10 * time.Minute})
	if got := resolve("jdoe"); got != SourceSearch {
		t.Errorf("jdoe 25m after caching, with a TTL of 10m, came from %s, want a search", got)
	}
	// A smaller size drops the least recently used.
	resolve("sobrien") // expired too: cached again, now the most recent
	resolve("jdoe")
	r.SetCache(configs.CacheSize{Size: 1, TTL: 10 * time.Minute})
	if got := resolve("jdoe"); got != SourceCache {
		t.Errorf("jdoe, the most recently used, came from %s after shrinking to 1, want the cache", got)
	}
	if got := resolve("sobrien"); got != SourceSearch {
		t.Errorf("sobrien came from %s after shrinking to 1, want a search", got)
	}
}
