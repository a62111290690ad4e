package testbed

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// The shared table of requests that the Samba test bed and the AD simulator
// (integration/adsim) must answer alike, except where a difference between
// Samba and Windows AD is listed. integration/adsim's unit tests run it against
// the simulator expecting the Windows column; integration/adcases_test.go runs
// it against both Samba DCs and the simulator and checks they agree.
//
// Differences found on the test bed (Samba 4.17) and listed in the table:
//   - a bind with a bare sAMAccountName ("jdoe") gets 49/52e from Samba; Windows
//     AD resolves it like any other name form;
//   - an unknown user gets 49/52e from Samba, 49/525 from Windows AD;
//   - a name with an empty password gets 49/52e from Samba; Windows AD answers
//     success as anonymous (an unauthenticated bind, RFC 4513 section 5.1.2).
//
// Agreements measured on the test bed that the table pins down: DN (any case,
// spaces after commas, `\,` or `\2C` escapes), UPN (any case) and NetBIOS\login
// binds; 530-533, 701 and 773 only with the right password (52e otherwise); 775
// with the right password; an anonymous search outside the rootDSE gets 1
// operationsError (the diagnostic texts differ); a missing base gets 32.
// Diagnostic texts differ in their DSID and version suffix: compare only the
// "data" code (ADCode of an error's text).
//
// The Windows column comes from AD-FACTS.md and Microsoft's documentation; one
// answer is assumed rather than documented: a password without a name gets
// 52e, as on Samba.
//
// No case sends a wrong or empty password, or a name Samba cannot resolve, for
// bjones or hlocked: their bad-password counters belong to the lockout tests.

// BindCase is one simple bind and the result the test bed and Windows AD give it.
type BindCase struct {
	// Name says what the case shows, as a sentence (a t.Run name).
	Name string
	// Login is the bind name and Password the password.
	Login, Password string
	// Code is the LDAP result code the Samba test bed answers, and ADCode the AD
	// "data" sub-code of its 49 ("" for any other code).
	Code   int
	ADCode string
	// Difference says how and why Windows AD answers otherwise; empty when
	// Windows AD (and so the simulator) answers as Samba does.
	Difference string
	// WindowsCode and WindowsADCode are Windows AD's answer when Difference is set.
	WindowsCode   int
	WindowsADCode string
}

// Windows returns the result Windows AD (and the simulator) gives the case.
func (c BindCase) Windows() (code int, adCode string) {
	if c.Difference == "" {
		return c.Code, c.ADCode
	}
	return c.WindowsCode, c.WindowsADCode
}

// Listed differences between Samba and Windows AD, as BindCase.Difference says them.
const (
	// DiffBareLogin: Samba does not resolve a bare sAMAccountName in a simple bind.
	DiffBareLogin = "Samba does not resolve a bare sAMAccountName in a simple bind (52e); Windows AD does"
	// DiffUnknownUser: Samba reports an unknown user as a bad password.
	DiffUnknownUser = "Samba reports an unknown user as 52e; Windows AD as 525"
	// DiffEmptyPassword: Windows AD accepts an unauthenticated bind as anonymous.
	DiffEmptyPassword = "Windows AD answers a name with an empty password with success as anonymous (RFC 4513 5.1.2); Samba with 52e"
)

// ADCode returns the "data" sub-code in an AD bind diagnostic such as
// "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563",
// or "" when there is none.
func ADCode(diagnostic string) string {
	_, rest, ok := strings.Cut(diagnostic, ", data ")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, ",")
	return code
}

// sensitive reports whether a's bad-password count must not be touched.
func sensitive(a Account) bool { return a.Login == BJones.Login || a.Login == HLocked.Login }

// BindCases returns the shared table of bind cases.
func BindCases() []BindCase {
	var cases []BindCase
	add := func(c BindCase) { cases = append(cases, c) }
	for _, a := range Accounts {
		code := 0
		if a.ADCode != "" {
			code = ldap.LDAPResultInvalidCredentials
		}
		what := "succeeds"
		if a.ADCode != "" {
			what = "gets " + a.ADCode
		}
		add(BindCase{Name: a.Login + " by DN " + what, Login: a.DN(), Password: a.Password, Code: code, ADCode: a.ADCode})
		add(BindCase{Name: a.Login + " by UPN " + what, Login: a.UPN(), Password: a.Password, Code: code, ADCode: a.ADCode})
		add(BindCase{Name: a.Login + ` by NetBIOS\login ` + what, Login: NetBIOS + `\` + a.Login, Password: a.Password, Code: code, ADCode: a.ADCode})
		if !sensitive(a) {
			add(BindCase{
				Name: a.Login + " by bare sAMAccountName " + what + " on Windows only", Login: a.Login, Password: a.Password,
				Code: ldap.LDAPResultInvalidCredentials, ADCode: "52e",
				Difference: DiffBareLogin, WindowsCode: code, WindowsADCode: a.ADCode,
			})
		}
	}
	badPassword := func(name, login string) BindCase {
		return BindCase{Name: name, Login: login, Password: "Wr0ng!password", Code: ldap.LDAPResultInvalidCredentials, ADCode: "52e"}
	}
	unknown := func(name, login string) BindCase {
		return BindCase{
			Name: name, Login: login, Password: "Wr0ng!password", Code: ldap.LDAPResultInvalidCredentials, ADCode: "52e",
			Difference: DiffUnknownUser, WindowsCode: ldap.LDAPResultInvalidCredentials, WindowsADCode: "525",
		}
	}
	emptyPassword := func(name, login string) BindCase {
		return BindCase{
			Name: name, Login: login, Code: ldap.LDAPResultInvalidCredentials, ADCode: "52e",
			Difference: DiffEmptyPassword, WindowsCode: ldap.LDAPResultSuccess,
		}
	}
	for _, c := range []BindCase{
		{Name: "a DN in lower case succeeds", Login: strings.ToLower(JDoe.DN()), Password: JDoe.Password},
		{Name: "a DN in upper case succeeds", Login: strings.ToUpper(JDoe.DN()), Password: JDoe.Password},
		{Name: "a DN with spaces after its commas succeeds", Login: strings.ReplaceAll(JDoe.DN(), ",", ", "), Password: JDoe.Password},
		{Name: "a UPN in upper case succeeds", Login: strings.ToUpper(JDoe.UPN()), Password: JDoe.Password},
		{Name: "a NetBIOS domain in lower case succeeds", Login: strings.ToLower(NetBIOS) + `\` + JDoe.Login, Password: JDoe.Password},
		{Name: "sobrien's DN with hex escapes succeeds", Login: `CN=Se\C3\A1n O'Brien\2C Jr.,` + UsersDN, Password: SOBrien.Password},
		{Name: "an anonymous bind succeeds", Login: "", Password: ""},
		{Name: "no name with a password gets 52e", Login: "", Password: "Wr0ng!password", Code: ldap.LDAPResultInvalidCredentials, ADCode: "52e"},
		badPassword("a wrong password by DN gets 52e", JDoe.DN()),
		badPassword("a wrong password by UPN gets 52e", ASmith.UPN()),
		{Name: "a whitespace-only password is a wrong password", Login: JDoe.DN(), Password: "   ", Code: ldap.LDAPResultInvalidCredentials, ADCode: "52e"},
		badPassword("a wrong password on a disabled account gets 52e, not 533", CWhite.DN()),
		badPassword("a wrong password on an expired account gets 52e, not 701", EExpired.UPN()),
		badPassword("a wrong password on a must-change account gets 52e, not 773", NetBIOS+`\`+DMust.Login),
		unknown("an unknown DN gets 525 on Windows", "CN=Nobody,"+UsersDN),
		unknown("an unknown UPN gets 525 on Windows", "nobody@"+Realm),
		unknown(`an unknown NetBIOS\login gets 525 on Windows`, NetBIOS+`\nobody`),
		unknown("an unknown bare login gets 525 on Windows", "nobody"),
		emptyPassword("jdoe by DN with an empty password is anonymous on Windows", JDoe.DN()),
		emptyPassword("jdoe by UPN with an empty password is anonymous on Windows", JDoe.UPN()),
		emptyPassword("a disabled account with an empty password is anonymous on Windows", CWhite.DN()),
		emptyPassword("an unknown name with an empty password is anonymous on Windows", "nobody@"+Realm),
	} {
		add(c)
	}
	return cases
}

// SearchCase is one search and the result both the test bed and Windows AD give it.
type SearchCase struct {
	// Name says what the case shows, as a sentence (a t.Run name).
	Name string
	// Anonymous makes the search on a connection that never bound; otherwise the
	// connection binds as Service (by UPN) first.
	Anonymous bool
	// BaseDN is the search base. When BaseFromRootDSE is set, the base is instead
	// the value of that rootDSE attribute on the DC searched (e.g. dsServiceName).
	BaseDN          string
	BaseFromRootDSE string
	// Scope is ldap.ScopeBaseObject, ScopeSingleLevel or ScopeWholeSubtree.
	Scope int
	// Filter and Attributes are the request's filter and attribute list.
	Filter     string
	Attributes []string
	// Code is the result code.
	Code int
	// Entries is the number of entries returned.
	Entries int
	// DNs, when not nil, are the entries' DNs in any order (compare with DN
	// equality: the escaping of special characters may differ).
	DNs []string
	// Has lists attributes each entry must have, each with values it must hold
	// among its values (none: the attribute must merely be present).
	Has map[string][]string
	// NoAttributes says the entries must come without any attribute.
	NoAttributes bool
}

// SearchCases returns the shared table of search cases. None lists a
// difference: the ones measured (MaxPageSize capping unpaged searches on
// Windows AD only, referrals from the domain root on Samba only) need bulk users
// or a domain-root subtree search and are covered by the simulator's own tests.
func SearchCases() []SearchCase {
	pbxUsersChain := seededOnly("(objectCategory=person)(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + ldap.EscapeFilter(PBXUsersDN) + ")")
	enabled := seededOnly("(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2))")
	var enabledDNs []string
	for _, a := range Accounts {
		if a.ADCode != "533" {
			enabledDNs = append(enabledDNs, a.DN())
		}
	}
	return []SearchCase{
		{
			Name: "the service account finds jdoe by sAMAccountName", BaseDN: UsersDN, Scope: ldap.ScopeWholeSubtree,
			Filter: "(&(objectClass=user)(sAMAccountName=jdoe))", Attributes: []string{"sAMAccountName"},
			Entries: 1, DNs: []string{JDoe.DN()}, Has: map[string][]string{"sAMAccountName": {"jdoe"}},
		},
		{
			Name: "sobrien's DN comes back with its comma escaped", BaseDN: UsersDN, Scope: ldap.ScopeWholeSubtree,
			Filter: "(sAMAccountName=sobrien)", Attributes: []string{"cn"},
			Entries: 1, DNs: []string{SOBrien.DN()}, Has: map[string][]string{"cn": {SOBrien.CN}},
		},
		{
			Name: "a UPN finds asmith", BaseDN: UsersDN, Scope: ldap.ScopeWholeSubtree,
			Filter: "(userPrincipalName=" + ASmith.UPN() + ")", Attributes: []string{"userPrincipalName"},
			Entries: 1, DNs: []string{ASmith.DN()},
		},
		{
			Name: "jdoe has the phone numbers the PBX imports", BaseDN: UsersDN, Scope: ldap.ScopeSingleLevel,
			Filter: "(sAMAccountName=jdoe)", Attributes: []string{"displayName", "givenName", "sn", "mail", "telephoneNumber", "mobile", "memberOf"},
			Entries: 1, DNs: []string{JDoe.DN()}, Has: map[string][]string{
				"displayName": {JDoe.CN}, "givenName": {"John"}, "sn": {"Doe"}, "mail": {JDoe.UPN()},
				"telephoneNumber": {"+1 555 0101"}, "mobile": {"+1 555 0201"}, "memberOf": {PBXUsersDN},
			},
		},
		{
			Name: "IN_CHAIN on PBX-Users finds the nested members", BaseDN: UsersDN, Scope: ldap.ScopeWholeSubtree,
			Filter: pbxUsersChain, Attributes: []string{"1.1"},
			Entries: 3, DNs: []string{JDoe.DN(), ASmith.DN(), SOBrien.DN()},
		},
		{
			Name: "memberOf equality finds the direct members only", BaseDN: UsersDN, Scope: ldap.ScopeWholeSubtree,
			Filter: seededOnly("(memberOf=" + ldap.EscapeFilter(PBXUsersDN) + ")"), Attributes: []string{"1.1"},
			Entries: 3, DNs: []string{JDoe.DN(), SOBrien.DN(), PBXAdminsDN},
		},
		{
			Name: "BIT_AND on userAccountControl leaves out the disabled account", BaseDN: UsersDN, Scope: ldap.ScopeSingleLevel,
			Filter: enabled, Attributes: []string{"1.1"}, Entries: len(enabledDNs), DNs: enabledDNs,
		},
		{
			Name: "an escaped asterisk matches no login", BaseDN: UsersDN, Scope: ldap.ScopeWholeSubtree,
			Filter: `(sAMAccountName=\2a)`, Attributes: []string{"1.1"}, Entries: 0, DNs: []string{},
		},
		{
			Name: "escaped UTF-8 finds sobrien by cn", BaseDN: UsersDN, Scope: ldap.ScopeSingleLevel,
			Filter: `(cn=Se\c3\a1n O'Brien, Jr.)`, Attributes: []string{"1.1"}, Entries: 1, DNs: []string{SOBrien.DN()},
		},
		{
			Name: "a substring finds jdoe", BaseDN: UsersDN, Scope: ldap.ScopeSingleLevel,
			Filter: "(&(objectClass=user)(sAMAccountName=jd*))", Attributes: []string{"1.1"}, Entries: 1, DNs: []string{JDoe.DN()},
		},
		{
			Name: "attribute 1.1 returns entries without attributes", BaseDN: UsersDN, Scope: ldap.ScopeBaseObject,
			Filter: "(objectClass=*)", Attributes: []string{"1.1"}, Entries: 1, DNs: []string{UsersDN}, NoAttributes: true,
		},
		{
			Name: "the rootDSE names the naming context, the USN and the DSA", Anonymous: true, Scope: ldap.ScopeBaseObject,
			Filter: "(objectClass=*)", Entries: 1, Has: map[string][]string{
				"defaultNamingContext": {BaseDN}, "namingContexts": {BaseDN}, "highestCommittedUSN": nil,
				"dsServiceName": nil, "dnsHostName": nil, "supportedLDAPVersion": {"3"},
				"supportedControl": {"1.2.840.113556.1.4.319"},
			},
		},
		{
			Name: "the DSA's NTDS Settings object has an invocationId", BaseFromRootDSE: "dsServiceName", Scope: ldap.ScopeBaseObject,
			Filter: "(objectClass=nTDSDSA)", Attributes: []string{"invocationId"}, Entries: 1, Has: map[string][]string{"invocationId": nil},
		},
		{
			Name: "an anonymous search of the users OU gets operationsError", Anonymous: true, BaseDN: UsersDN, Scope: ldap.ScopeWholeSubtree,
			Filter: "(objectClass=*)", Code: ldap.LDAPResultOperationsError,
		},
		{
			Name: "a search under a missing OU gets noSuchObject", BaseDN: "OU=Nowhere," + UsersDN, Scope: ldap.ScopeWholeSubtree,
			Filter: "(objectClass=*)", Code: ldap.LDAPResultNoSuchObject,
		},
	}
}

// seededOnly ANDs filter parts with a choice of the seeded accounts' and
// groups' names, so that objects other tests add to the shared test bed for a
// while do not change a case's result.
func seededOnly(parts string) string {
	var names strings.Builder
	for _, a := range Accounts {
		names.WriteString("(sAMAccountName=" + ldap.EscapeFilter(a.Login) + ")")
	}
	names.WriteString("(sAMAccountName=PBX-Users)(sAMAccountName=PBX-Admins)")
	return "(&" + parts + "(|" + names.String() + "))"
}

// Run makes the bind on conn and returns the LDAP result code and the AD
// sub-code of its diagnostic; err is a failure to get an answer at all.
func (c BindCase) Run(conn *ldap.Conn) (code int, adCode string, err error) {
	_, err = conn.SimpleBind(&ldap.SimpleBindRequest{Username: c.Login, Password: c.Password, AllowEmptyPassword: true})
	return ldapResult(err)
}

// ldapResult splits a go-ldap error into an LDAP result code and AD sub-code,
// and passes other errors (network, client-side) on.
func ldapResult(err error) (int, string, error) {
	if err == nil {
		return ldap.LDAPResultSuccess, "", nil
	}
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode >= ldap.ErrorNetwork {
		return 0, "", err
	}
	return int(le.ResultCode), ADCode(le.Err.Error()), nil
}

// SearchResult is what a search came to.
type SearchResult struct {
	// Code is the LDAP result code.
	Code int
	// Entries are the entries returned.
	Entries []*ldap.Entry
}

// Run makes the search on conn, a connection that has not bound yet: it binds
// as Service first unless the case is Anonymous. err is a failure to get an
// answer at all (or the service bind's).
func (c SearchCase) Run(conn *ldap.Conn) (SearchResult, error) {
	if !c.Anonymous {
		if err := conn.Bind(Service.UPN(), Service.Password); err != nil {
			return SearchResult{}, fmt.Errorf("bind as %s: %w", Service.Login, err)
		}
	}
	base := c.BaseDN
	if c.BaseFromRootDSE != "" {
		root, err := conn.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{c.BaseFromRootDSE}, nil))
		if err != nil || len(root.Entries) != 1 {
			return SearchResult{}, fmt.Errorf("read %s from the rootDSE: %w", c.BaseFromRootDSE, err)
		}
		base = root.Entries[0].GetAttributeValue(c.BaseFromRootDSE)
	}
	res, err := conn.Search(ldap.NewSearchRequest(base, c.Scope, ldap.NeverDerefAliases, 0, 0, false, c.Filter, c.Attributes, nil))
	code, _, err := ldapResult(err)
	if err != nil {
		return SearchResult{}, fmt.Errorf("search %s %s: %w", base, c.Filter, err)
	}
	var out SearchResult
	out.Code = code
	if res != nil {
		out.Entries = res.Entries
	}
	return out, nil
}

// Check returns an error saying how r differs from what the case expects.
func (c SearchCase) Check(r SearchResult) error {
	var problems []string
	if r.Code != c.Code {
		problems = append(problems, fmt.Sprintf("result code %d, want %d", r.Code, c.Code))
	}
	if len(r.Entries) != c.Entries {
		problems = append(problems, fmt.Sprintf("%d entries, want %d", len(r.Entries), c.Entries))
	}
	if c.DNs != nil {
		got := make([]string, 0, len(r.Entries))
		for _, e := range r.Entries {
			got = append(got, e.DN)
		}
		if !sameDNs(got, c.DNs) {
			problems = append(problems, fmt.Sprintf("DNs %q, want %q in any order", got, c.DNs))
		}
	}
	for _, e := range r.Entries {
		if c.NoAttributes && len(e.Attributes) > 0 {
			problems = append(problems, fmt.Sprintf("%s has %d attributes, want none", e.DN, len(e.Attributes)))
		}
		for name, want := range c.Has {
			got := e.GetEqualFoldAttributeValues(name)
			if len(got) == 0 {
				problems = append(problems, fmt.Sprintf("%q lacks %s", e.DN, name))
				continue
			}
			for _, w := range want {
				if !slices.ContainsFunc(got, func(g string) bool { return g == w || sameDNs([]string{g}, []string{w}) }) {
					problems = append(problems, fmt.Sprintf("%q: %s is %q, want it to hold %q", e.DN, name, got, w))
				}
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// sameDNs reports whether a and b hold the same DNs in any order, comparing
// them as DNs (case and escaping aside).
func sameDNs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	left := slices.Clone(b)
	for _, x := range a {
		px, err := ldap.ParseDN(x)
		i := slices.IndexFunc(left, func(y string) bool {
			if err != nil {
				return x == y
			}
			py, err := ldap.ParseDN(y)
			return err == nil && px.EqualFold(py)
		})
		if i < 0 {
			return false
		}
		left = slices.Delete(left, i, i+1)
	}
	return true
}
