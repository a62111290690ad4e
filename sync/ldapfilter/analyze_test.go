package ldapfilter_test

import (
	"errors"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

func compile(t testing.TB, filter string) *ber.Packet {
	t.Helper()
	f, err := ldap.CompileFilter(filter)
	if err != nil {
		t.Fatalf("CompileFilter(%q): %v", filter, err)
	}
	return f
}

// adSyntax is how AD compares the attributes these tests use.
func adSyntax(attr string) ldapfilter.Syntax {
	switch strings.ToLower(attr) {
	case "memberof", "distinguishedname", "manager":
		return ldapfilter.SyntaxDN
	case "objectguid":
		return ldapfilter.SyntaxOctets
	}
	return ldapfilter.SyntaxString
}

func TestCanonical(t *testing.T) {
	const group = "CN=PBX-Users,OU=AADDC Users,DC=aadds,DC=example,DC=test"
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"attribute names are case-folded", "(SAMACCOUNTNAME=jdoe)", "(sAMAccountName=jdoe)", true},
		{"string values are case-folded", "(objectClass=User)", "(objectclass=user)", true},
		{"DN values are normalised", "(memberOf=" + group + ")", "(memberof=cn=pbx-users, ou=aaddc users, dc=aadds, dc=example, dc=test)", true},
		{"IN_CHAIN values are normalised as DNs", "(memberOf:1.2.840.113556.1.4.1941:=" + group + ")",
			"(MEMBEROF:1.2.840.113556.1.4.1941:=cn=PBX-USERS,ou=AADDC Users,dc=AADDS,dc=example,dc=test)", true},
		{"the parts of an AND are unordered", "(&(a=1)(b=2))", "(&(b=2)(a=1))", true},
		{"a repeated part of an OR counts once", "(|(a=1)(a=1)(b=2))", "(|(b=2)(a=1))", true},
		{"octet strings keep their case", `(objectGUID=\01AB)`, `(objectGUID=\01ab)`, false},
		{"equality and approximate match differ", "(sn=doe)", "(sn~=doe)", false},
		{"another matching rule differs", "(memberOf:1.2.840.113556.1.4.1941:=" + group + ")", "(memberOf:=" + group + ")", false},
		{"AND and OR differ", "(&(a=1)(b=2))", "(|(a=1)(b=2))", false},
		{"substring parts keep their places", "(cn=a*b)", "(cn=*a*b)", false},
		{"not differs from its operand", "(!(a=1))", "(a=1)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ldapfilter.Canonical(compile(t, tt.a), adSyntax)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ldapfilter.Canonical(compile(t, tt.b), adSyntax)
			if err != nil {
				t.Fatal(err)
			}
			if (a == b) != tt.same {
				t.Errorf("Canonical(%q) = %s\nCanonical(%q) = %s\nsame = %v, want %v", tt.a, a, tt.b, b, a == b, tt.same)
			}
		})
	}
	t.Run("a packet that is not a filter is an error", func(t *testing.T) {
		p := ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "x", "")
		if _, err := ldapfilter.Canonical(p, nil); !errors.Is(err, ldapfilter.ErrInvalidFilter) {
			t.Errorf("error %v, want ErrInvalidFilter", err)
		}
	})
}

func TestConjuncts(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		want   []string
	}{
		{"a single item is its own conjunct", "(a=1)", []string{"(a=1)"}},
		{"an AND gives its parts", "(&(a=1)(|(b=2)(c=3)))", []string{"(a=1)", "(|(b=2)(c=3))"}},
		{"nested ANDs are flattened", "(&(&(a=1)(b=2))(c=3))", []string{"(a=1)", "(b=2)", "(c=3)"}},
		{"an AND under a NOT stays whole", "(!(&(a=1)(b=2)))", []string{"(!(&(a=1)(b=2)))"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range ldapfilter.Conjuncts(compile(t, tt.filter)) {
				s, err := ldap.DecompileFilter(c)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, s)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("Conjuncts(%q) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
}

func TestItems(t *testing.T) {
	items, err := ldapfilter.Items(compile(t, "(&(sn=doe)(!(mail=*))(cn=j*n)(userAccountControl:1.2.840.113556.1.4.803:=2)(uSNChanged>=5))"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, ldap.FilterMap[uint64(it.Op)]+" "+it.Attr+" "+it.Rule+" "+it.Value)
	}
	want := []string{
		"Equality Match sn  doe",
		"Present mail  ",
		"Substrings cn  j*n",
		"Extensible Match userAccountControl 1.2.840.113556.1.4.803 2",
		"Greater Or Equal uSNChanged  5",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Items = %q\nwant    %q", got, want)
	}
}

func TestAssume(t *testing.T) {
	entry := func(name string) []string {
		switch strings.ToLower(name) {
		case "sn":
			return []string{"Doe"}
		}
		return nil
	}
	var ev ldapfilter.FilterEvaluator
	tests := []struct {
		name    string
		filter  string
		assumed string // the part taken as true
		want    bool
	}{
		{"an assumed conjunct no longer needs the entry", "(&(objectClass=user)(sn=doe))", "(objectClass=user)", true},
		{"the other conjuncts still decide", "(&(objectClass=user)(sn=smith))", "(objectClass=user)", false},
		{"an assumed part under a NOT makes the NOT false", "(!(objectClass=user))", "(objectClass=user)", false},
		{"an assumed part of an OR makes it true", "(|(objectClass=user)(sn=smith))", "(objectClass=user)", true},
		{"nothing assumed leaves the filter as it was", "(objectClass=user)", "(cn=x)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := compile(t, tt.filter)
			before := f.Bytes()
			key, err := ldapfilter.Canonical(compile(t, tt.assumed), nil)
			if err != nil {
				t.Fatal(err)
			}
			g := ldapfilter.Assume(f, func(p *ber.Packet) bool {
				k, err := ldapfilter.Canonical(p, nil)
				return err == nil && k == key
			})
			got, err := ev.Match(g, entry)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Match(Assume(%q, %q)) = %v, want %v", tt.filter, tt.assumed, got, tt.want)
			}
			if string(f.Bytes()) != string(before) {
				t.Error("Assume changed its argument")
			}
		})
	}
}

// FuzzFilterAnalysis feeds filters as a client could write them to everything that
// reads filters here: nothing may panic, Assume with nothing assumed must not
// change a filter's answer, and Canonical must be stable.
func FuzzFilterAnalysis(f *testing.F) {
	for _, s := range []string{
		"(sAMAccountName=jdoe)",
		"(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=PBX-Users,OU=AADDC Users,DC=aadds,DC=example,DC=test))",
		"(|(cn=j*o*e)(!(mail=*)))",
		"(userAccountControl:1.2.840.113556.1.4.803:=2)",
		`(description=a\2ab\28c\29)`,
		"(uSNChanged>=10)",
		"(sn~=doe)",
		"(memberOf=cn=x\\, y,dc=z)",
		"(objectGUID=\\01\\02)",
		"(:dn:2.4.6.8.10:=Dino)",
	} {
		f.Add(s)
	}
	entry := func(name string) []string {
		switch strings.ToLower(name) {
		case "samaccountname":
			return []string{"jdoe"}
		case "memberof":
			return []string{"CN=PBX-Users,OU=AADDC Users,DC=aadds,DC=example,DC=test"}
		case "useraccountcontrol":
			return []string{"512"}
		case "cn":
			return []string{"John Doe"}
		case "objectguid":
			return []string{"\x01\x02"}
		}
		return nil
	}
	ev := ldapfilter.FilterEvaluator{Syntax: adSyntax, Resolve: func(string) ldapfilter.Attributes { return entry }}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ldap.CompileFilter(s)
		if err != nil {
			return
		}
		got, err := ev.Match(p, entry)
		again, err2 := ev.Match(ldapfilter.Assume(p, func(*ber.Packet) bool { return false }), entry)
		if got != again || (err == nil) != (err2 == nil) {
			t.Errorf("%q: Match %v, %v; after Assume of nothing %v, %v", s, got, err, again, err2)
		}
		c1, err1 := ldapfilter.Canonical(p, adSyntax)
		c2, err2 := ldapfilter.Canonical(p, adSyntax)
		if c1 != c2 || (err1 == nil) != (err2 == nil) {
			t.Errorf("%q: Canonical is not stable", s)
		}
		_, _ = ldapfilter.Items(p)
		_ = ldapfilter.Conjuncts(p)
	})
}
