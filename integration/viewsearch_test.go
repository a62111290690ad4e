//go:build integration

// Searches answered from the directory view (issue 5 item 7) against the
// Samba test bed: pascom's paged import and its search-then-bind lookup
// through the real binary while both DCs refuse connections (fault proxies in
// front of them: Samba itself keeps running for the other tests), compared
// entry by entry with the same ldapsearch made directly against Samba; and the
// view's filter evaluator (sync/ldapfilter) checked against Samba's answers
// for a table of filters.
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/faultproxy"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// vsImportFilter is pascom's import filter with its group pre-filter: the
// users in PBX-Users' chain. The gateways below sync exactly this filter, so
// the import search implies the view's filter.
const vsImportFilter = "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + "))"

// vsPascomAttrs are the attributes pascom's "AD User Sync" import asks for.
var vsPascomAttrs = []string{"sAMAccountName", "displayName", "givenName", "sn", "mail", "telephoneNumber", "mobile", "ipPhone", "memberOf"}

// vsPageArgs pages by 2, so PBX-Users' three members take two pages.
var vsPageArgs = []string{"-E", "pr=2/noprompt"}

// vsDirect is the import search made with ldapsearch directly against dc1
// over LDAPS as svc-pbx, exactly as through the gateway otherwise.
func vsDirect(t *testing.T, filter string) []ldifEntry {
	t.Helper()
	args := append([]string{"-x", "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=10", "-H", testbed.DC1URL,
		"-D", testbed.Service.UPN(), "-w", testbed.Service.Password, "-b", testbed.UsersDN}, vsPageArgs...)
	args = append(append(args, filter), vsPascomAttrs...)
	ctx, cancel := context.WithTimeout(context.Background(), toolWithin)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ldapsearch", args...)
	// No LDAPNOINIT here: it would make ldapsearch ignore the LDAPTLS_* variables too.
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+testbed.CAFile(), "LDAPTLS_REQCERT=demand")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ldapsearch directly against dc1: %v", err)
	}
	entries, err := parseLDIF(string(out))
	if err != nil {
		t.Fatalf("ldapsearch's LDIF from dc1: %v", err)
	}
	return entries
}

// vsEntries renders entries as sorted lines, one per entry: the DN and every
// attribute with its values sorted (LDAP values are a set, and the view's
// order is not AD's).
func vsEntries(entries []ldifEntry) []string {
	var out []string
	for _, e := range entries {
		var attrs []string
		for name, vals := range e.attrs {
			vs := make([]string, len(vals))
			for i, v := range vals {
				vs[i] = strconv.Quote(string(v))
			}
			slices.Sort(vs)
			attrs = append(attrs, name+"="+strings.Join(vs, ","))
		}
		slices.Sort(attrs)
		dn, err := ldapfilter.NormalizeDN(e.dn)
		if err != nil {
			dn = e.dn
		}
		out = append(out, dn+" | "+strings.Join(attrs, " | "))
	}
	slices.Sort(out)
	return out
}

// vsGateway is the real binary in front of fault proxies to both DCs,
// syncing vsImportFilter, with a local secret for the proxy user so that the
// PBX can bind while AD is unreachable.
type vsGateway struct {
	gw      *procGateway
	proxies []*faultproxy.Proxy
}

func startVSGateway(t *testing.T, name string, more map[string]any) *vsGateway {
	t.Helper()
	g := &vsGateway{proxies: []*faultproxy.Proxy{newFaultProxy(t, "127.0.0.1:636"), newFaultProxy(t, "127.0.0.2:636")}}
	changes := map[string]any{
		"upstream.servers": []any{
			map[string]any{"url": "ldaps://" + g.proxies[0].Addr(), "server_name": testbed.DC1Name},
			map[string]any{"url": "ldaps://" + g.proxies[1].Addr(), "server_name": testbed.DC2Name},
		},
		"upstream.op_timeout":             "2s",
		"upstream.dial_timeout":           "2s",
		"upstream.breaker.failures":       2,
		"upstream.breaker.probe_interval": "1s",
		"sync.filter":                     vsImportFilter,
		"search.proxy_password":           testbed.Service.Password,
	}
	for k, v := range more {
		changes[k] = v
	}
	g.gw = startProcGateway(t, name, changes)
	return g
}

// cut makes both DCs refuse connections (and resets the gateway's pooled
// ones): AD is unreachable for the gateway, Samba keeps running.
func (g *vsGateway) cut(t *testing.T) {
	t.Helper()
	for _, p := range g.proxies {
		setFault(t, p, faultproxy.Refuse())
	}
}

// waitSync waits (bounded) for a sync after offset in the log to succeed and
// returns the log size after it.
func (g *vsGateway) waitSync(t *testing.T, offset int64, within time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		size := logSize(t, g.gw.logPath)
		for _, l := range readLogFrom(t, g.gw.logPath, offset) {
			if l.str("msg") == "sync" && (l.str("result") == "applied" || l.str("result") == "unchanged") {
				return size
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful sync within %s; the end of the log:\n%s", within, tail(g.gw.logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// search runs ldapsearch through the gateway as the proxy user.
func (g *vsGateway) search(t *testing.T, filter string, extra []string, attrs ...string) toolRun {
	t.Helper()
	args := []string{"-x", "-LLL", "-o", "ldif-wrap=no", "-H", "ldap://" + g.gw.addr,
		"-D", testbed.Service.UPN(), "-w", testbed.Service.Password, "-b", testbed.UsersDN}
	args = append(append(append(args, extra...), filter), attrs...)
	return searchTool(t, "", "ldapsearch", args...)
}

// searchLines are the gateway's search log lines after offset for filter.
func (g *vsGateway) searchLines(t *testing.T, offset int64, filter string) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range readLogFrom(t, g.gw.logPath, offset) {
		if l.str("msg") == "search" && l.str("filter") == filter {
			out = append(out, l)
		}
	}
	return out
}

func TestViewAnswersThePBXWhileADIsUnreachable(t *testing.T) {
	g := startVSGateway(t, "view-ad-down", map[string]any{"sync.interval": "2s", "sync.jitter": "0s"})

	// Other tests add members to PBX-Users for a second or two: the view must
	// be compared with AD in a window where AD's answer stood still across a
	// sync. A real difference stays in every attempt and fails below.
	var want []string
	for attempt := 1; ; attempt++ {
		before := vsEntries(vsDirect(t, vsImportFilter))
		g.waitSync(t, logSize(t, g.gw.logPath), 30*time.Second)
		want = vsEntries(vsDirect(t, vsImportFilter))
		if slices.Equal(before, want) || attempt == 5 {
			break
		}
		t.Logf("attempt %d: AD's answer changed around the sync; again", attempt)
	}
	if len(want) < 3 {
		t.Fatalf("directly, the import search returns %d entries; want PBX-Users' 3 nested members at least", len(want))
	}

	g.cut(t)
	offset := logSize(t, g.gw.logPath)

	t.Run("pascom's paged import through the listener returns AD's entries from the view", func(t *testing.T) {
		r := g.search(t, vsImportFilter, vsPageArgs, vsPascomAttrs...)
		if r.exit != 0 {
			t.Fatalf("ldapsearch through the gateway with AD unreachable exited %d: %s", r.exit, r.stderr)
		}
		entries, err := parseLDIF(r.stdout)
		if err != nil {
			t.Fatal(err)
		}
		got := vsEntries(entries)
		if !slices.Equal(got, want) {
			t.Errorf("through the gateway (from the view)\n  %s\ndirectly from Samba before the cut\n  %s",
				strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		lines := g.searchLines(t, offset, vsImportFilter)
		if len(lines) != (len(want)+1)/2 {
			t.Errorf("%d search lines for the import, want one per page of 2: %d", len(lines), (len(want)+1)/2)
		}
		for _, l := range lines {
			if l.str("source") != "view" || l.num("result") != 0 || l["paged"] != true {
				t.Errorf("a page of the import was not answered from the view: %v", l)
			}
		}
	})
	t.Run("pascom's search-then-bind lookup is answered from the view", func(t *testing.T) {
		r := g.search(t, "(sAMAccountName=jdoe)", nil, "dn")
		if r.exit != 0 {
			t.Fatalf("the lookup exited %d: %s", r.exit, r.stderr)
		}
		entries, err := parseLDIF(r.stdout)
		if err != nil || len(entries) != 1 || !ldapfilter.EqualDN(entries[0].dn, testbed.JDoe.DN()) {
			t.Fatalf("the lookup returned %v (%v), want jdoe's DN only", entries, err)
		}
		lines := g.searchLines(t, offset, "(sAMAccountName=jdoe)")
		if len(lines) != 1 || lines[0].str("source") != "view" || lines[0].str("view_rule") != "unique-key" {
			t.Errorf("the lookup's log lines: %v", lines)
		}
		// The view finds the DN, but only AD authenticates: the bind is 52.
		if code, diag := bindAt(t, g.gw.addr, entries[0].dn, testbed.JDoe.Password); code != ldap.LDAPResultUnavailable {
			t.Errorf("jdoe's bind with AD unreachable: %d %q, want 52", code, diag)
		}
	})
	t.Run("a search the view cannot answer goes to AD, which is unreachable", func(t *testing.T) {
		r := g.search(t, "(sAMAccountName=bjones)", nil, "dn") // bjones is in no PBX group
		if r.exit != ldap.LDAPResultUnavailable {
			t.Errorf("a lookup outside the view with AD unreachable exited %d (%s), want 52", r.exit, r.stderr)
		}
		lines := g.searchLines(t, offset, "(sAMAccountName=bjones)")
		if len(lines) != 1 || lines[0].str("source") != "ad" || lines[0].str("view_miss") == "" {
			t.Errorf("its log lines: %v", lines)
		}
	})
}

func TestViewPastStaleAfterAnswersOnlyWhenEveryDCIsDown(t *testing.T) {
	// A view that is stale after a second and is never synced again: while a
	// DC is usable the import goes to AD; once both breakers are open the last
	// good view answers it, and the log says so.
	g := startVSGateway(t, "view-stale", map[string]any{
		"sync.stale_after": "1s", "sync.interval": "1h", "sync.full_interval": "1h", "sync.jitter": "0s",
		"sync.retry_interval": "2s", // a first sync that misses the 2s op_timeout is tried again soon
	})
	g.waitSync(t, 0, 30*time.Second)
	want := vsEntries(vsDirect(t, vsImportFilter))
	offset := logSize(t, g.gw.logPath)
	g.cut(t)

	deadline := time.Now().Add(30 * time.Second)
	for {
		r := g.search(t, vsImportFilter, vsPageArgs, vsPascomAttrs...)
		lines := g.searchLines(t, offset, vsImportFilter)
		offset = logSize(t, g.gw.logPath)
		if len(lines) > 0 && lines[0].str("source") == "view" && lines[0]["stale"] == true {
			if r.exit != 0 {
				t.Fatalf("the stale view answered but ldapsearch exited %d: %s", r.exit, r.stderr)
			}
			entries, err := parseLDIF(r.stdout)
			if err != nil {
				t.Fatal(err)
			}
			if got := vsEntries(entries); !slices.Equal(got, want) {
				// A concurrent test may have changed PBX-Users since the sync.
				t.Logf("the stale view's answer differs from AD's now: %d entries, %d directly", len(got), len(want))
			}
			break
		}
		fresh := len(lines) > 0 && lines[0].str("source") == "view" && lines[0]["stale"] == false // within stale_after
		if len(lines) > 0 && !fresh && (lines[0].str("source") != "ad" || r.exit != ldap.LDAPResultUnavailable) {
			t.Fatalf("a stale view with a DC not known down: source %q, exit %d; want AD's 52", lines[0].str("source"), r.exit)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stale view never answered with both DCs refusing; the end of the log:\n%s", tail(g.gw.logPath))
		}
		time.Sleep(200 * time.Millisecond) // pace the searches while the breakers count failures
	}
}

// --- the evaluator against Samba -------------------------------------------------

// vsSyntax is how AD compares the attributes of the table below.
func vsSyntax(attr string) ldapfilter.Syntax {
	switch strings.ToLower(attr) {
	case "distinguishedname", "member", "memberof", "manager", "objectcategory":
		return ldapfilter.SyntaxDN
	case "objectguid", "objectsid":
		return ldapfilter.SyntaxOctets
	}
	return ldapfilter.SyntaxString
}

// vsFetch reads every object under the users OU once, with every attribute,
// on conn.
func vsFetch(t *testing.T, conn *ldap.Conn) map[string]*ldap.Entry {
	t.Helper()
	res, err := conn.SearchWithPaging(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"*"}, nil), 500)
	if err != nil {
		t.Fatalf("fetch the users OU: %v", err)
	}
	out := make(map[string]*ldap.Entry, len(res.Entries))
	for _, e := range res.Entries {
		n, err := ldapfilter.NormalizeDN(e.DN)
		if err != nil {
			t.Fatalf("%q: %v", e.DN, err)
		}
		out[n] = e
	}
	return out
}

func vsAttributes(e *ldap.Entry) ldapfilter.Attributes {
	return func(name string) []string {
		if strings.EqualFold(name, "distinguishedName") {
			return []string{e.DN}
		}
		for _, a := range e.Attributes {
			if strings.EqualFold(a.Name, name) {
				vals := make([]string, len(a.ByteValues))
				for i, v := range a.ByteValues {
					vals[i] = string(v)
				}
				return vals
			}
		}
		return nil
	}
}

func TestFilterEvaluatorAgreesWithSamba(t *testing.T) {
	conn := dialDC(t, dcs[0])
	if err := conn.Bind(testbed.Service.DN(), testbed.Service.Password); err != nil {
		t.Fatal(err)
	}
	// Other tests add and remove users under the OU meanwhile: a case whose
	// answers differ is checked again on a fresh copy before it fails.
	objects := vsFetch(t, conn)
	var usns []int
	for _, e := range objects {
		if n, err := strconv.Atoi(e.GetAttributeValue("uSNChanged")); err == nil {
			usns = append(usns, n)
		}
	}
	sort.Ints(usns)
	midUSN := strconv.Itoa(usns[len(usns)/2])
	jdoe := objects[mustNormalize(t, testbed.JDoe.DN())]
	if jdoe == nil {
		t.Fatal("jdoe is not under the users OU")
	}
	var jdoeGUID strings.Builder
	for _, b := range jdoe.GetRawAttributeValue("objectGUID") {
		fmt.Fprintf(&jdoeGUID, `\%02x`, b)
	}
	pbxUsersSpaced := "cn=pbx-users, ou=aaddc users, dc=AADDS, dc=example, dc=test"
	tests := []struct {
		name   string
		filter string
		some   bool // the answer must not be empty (so the case proves something)
	}{
		{"equality ignores case", "(sAMAccountName=JDOE)", true},
		{"equality on a display name with an escaped comma", `(displayName=Se\c3\a1n O'Brien\2c Jr.)`, true},
		{"presence", "(telephoneNumber=*)", true},
		{"absence under a not", "(&(objectClass=user)(!(mail=*)))", true},
		{"an initial substring", "(cn=John*)", true},
		{"an inner substring", "(displayName=*Brien*)", true},
		{"initial, inner and final substrings in order", "(sAMAccountName=u*er*0)", true},
		{"an escaped comma in a final substring", `(cn=*\2c Jr.)`, true},
		{"an escaped parenthesis in a substring", `(description=*\28the PBX*)`, true},
		{"an escaped asterisk is a literal, matching nothing here", `(description=*\2a*)`, false},
		{"greater or equal compares integers as numbers", "(&(objectClass=user)(uSNChanged>=" + midUSN + "))", true},
		{"less or equal compares integers as numbers", "(&(objectClass=user)(uSNChanged<=" + midUSN + "))", true},
		{"less or equal on userAccountControl", "(&(objectClass=user)(userAccountControl<=512))", true},
		{"greater or equal on a string compares case-insensitively (the view still leaves it to AD's collation)", "(&(objectClass=user)(sn>=m))", true},
		{"greater or equal on a time", "(&(objectClass=user)(whenCreated>=20000101000000.0Z))", true},
		{"or of two logins", "(|(sAMAccountName=jdoe)(sAMAccountName=asmith))", true},
		{"BIT_AND finds disabled accounts", "(userAccountControl:1.2.840.113556.1.4.803:=2)", true},
		{"not BIT_AND keeps enabled users", "(&(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))", true},
		{"BIT_OR finds any of the bits", "(userAccountControl:1.2.840.113556.1.4.804:=65538)", true},
		{"IN_CHAIN follows PBX-Admins into PBX-Users", "(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + ")", true},
		{"IN_CHAIN with the DN in another case and spacing", "(memberOf:1.2.840.113556.1.4.1941:=" + pbxUsersSpaced + ")", true},
		{"memberOf equality is direct membership only", "(memberOf=" + testbed.PBXUsersDN + ")", true},
		{"IN_CHAIN on member finds the groups holding jdoe", "(member:1.2.840.113556.1.4.1941:=" + testbed.JDoe.DN() + ")", true},
		{"pascom's import filter", vsImportFilter, true},
		{"objectGUID compares bytes", "(objectGUID=" + jdoeGUID.String() + ")", true},
		{"an extensible match without a rule is equality", "(sAMAccountName:=asmith)", true},
		{"an unknown matching rule matches nothing", "(cn:1.2.3.4:=John Doe)", false},
	}
	ev := ldapfilter.FilterEvaluator{Syntax: vsSyntax}
	evaluate := func(objects map[string]*ldap.Entry, f *ber.Packet) []string {
		ev.Resolve = func(dn string) ldapfilter.Attributes {
			if n, err := ldapfilter.NormalizeDN(dn); err == nil && objects[n] != nil {
				return vsAttributes(objects[n])
			}
			return nil
		}
		var out []string
		for n, e := range objects {
			ok, err := ev.Match(f, vsAttributes(e))
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if ok {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	samba := func(filter string) []string {
		res, err := conn.SearchWithPaging(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			filter, []string{"1.1"}, nil), 500)
		if err != nil {
			t.Fatalf("Samba: %s: %v", filter, err)
		}
		var out []string
		for _, e := range res.Entries {
			out = append(out, mustNormalize(t, e.DN))
		}
		slices.Sort(out)
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ldap.CompileFilter(tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			got, want := evaluate(objects, f), samba(tt.filter)
			if !slices.Equal(got, want) {
				fresh := vsFetch(t, conn)
				got, want = evaluate(fresh, f), samba(tt.filter)
			}
			if !slices.Equal(got, want) {
				t.Errorf("the evaluator matches %d objects, Samba %d:\n  evaluator only: %v\n  Samba only: %v",
					len(got), len(want), vsMinus(got, want), vsMinus(want, got))
			}
			if tt.some && len(want) == 0 {
				t.Errorf("Samba matches nothing: the case proves nothing")
			}
		})
	}
	t.Run("Samba refuses approximate match, which the view therefore never answers", func(t *testing.T) {
		_, err := conn.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(sn~=doe)", []string{"1.1"}, nil))
		if err == nil {
			t.Errorf("Samba answered an approximate match: the view's refusal of ~= may be too careful now")
		}
	})
}

func mustNormalize(t *testing.T, dn string) string {
	t.Helper()
	n, err := ldapfilter.NormalizeDN(dn)
	if err != nil {
		t.Fatalf("%q: %v", dn, err)
	}
	return n
}

// vsMinus is a without b, both sorted.
func vsMinus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}
