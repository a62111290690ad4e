package ldapfilter_test

import (
	"errors"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// entries is a tiny directory for the evaluator: DN → attributes.
type entries map[string]map[string][]string

func (es entries) attributes(dn string) ldapfilter.Attributes {
	for k, attrs := range es {
		if ldapfilter.EqualDN(k, dn) {
			return func(name string) []string {
				for n, v := range attrs {
					if strings.EqualFold(n, name) {
						return v
					}
				}
				return nil
			}
		}
	}
	return nil
}

func TestFilterEvaluator(t *testing.T) {
	const (
		users  = "CN=Users,OU=Org,DC=x"
		admins = "CN=Admins,OU=Org,DC=x"
		ops    = "CN=Ops,OU=Org,DC=x"
		jane   = "CN=Jane\\, Jr.,OU=Org,DC=x"
	)
	es := entries{
		users:  {"objectClass": {"top", "group"}, "member": {admins}},
		admins: {"objectClass": {"top", "group"}, "memberOf": {users}, "member": {ops}},
		ops:    {"objectClass": {"top", "group"}, "memberOf": {admins}, "member": {jane}},
		jane: {
			"objectClass":        {"top", "person", "user"},
			"cn":                 {"Jane, Jr."},
			"sAMAccountName":     {"jane"},
			"userAccountControl": {"514"},
			"groupType":          {"-2147483646"},
			"uSNChanged":         {"120"},
			"memberOf":           {ops},
			"description":        {"a*b (c)"},
			"objectGUID":         {"\x01\x02ab"},
			"displayName":        {"Séan"},
		},
	}
	ev := ldapfilter.FilterEvaluator{
		Syntax: func(attr string) ldapfilter.Syntax {
			switch strings.ToLower(attr) {
			case "memberof", "member":
				return ldapfilter.SyntaxDN
			case "objectguid":
				return ldapfilter.SyntaxOctets
			}
			return ldapfilter.SyntaxString
		},
		Resolve: es.attributes,
	}
	tests := []struct {
		name   string
		filter string
		want   bool
	}{
		{"equality ignores case", "(samaccountname=JANE)", true},
		{"equality on another value fails", "(sAMAccountName=john)", false},
		{"an absent attribute does not equal anything", "(mail=jane@x)", false},
		{"presence finds an attribute", "(objectClass=*)", true},
		{"presence of an absent attribute fails", "(mail=*)", false},
		{"and needs every part", "(&(objectClass=user)(sAMAccountName=jane))", true},
		{"and fails on one false part", "(&(objectClass=user)(sAMAccountName=john))", false},
		{"or needs one part", "(|(sAMAccountName=john)(sAMAccountName=jane))", true},
		{"not inverts", "(!(sAMAccountName=john))", true},
		{"not of an absent attribute is true", "(!(mail=*))", true},
		{"substrings match initial, any and final parts", "(cn=j*,*r.)", true},
		{"substrings ignore case", "(cn=JANE*)", true},
		{"substrings keep the order of parts", "(cn=*jr*jane*)", false},
		{"an escaped asterisk is a literal asterisk", "(description=a\\2ab*)", true},
		{"an escaped asterisk does not act as a wildcard", "(sAMAccountName=\\2a)", false},
		{"escaped parentheses are literal", "(description=*\\28c\\29)", true},
		{"escaped UTF-8 bytes match the character", "(displayName=S\\c3\\a9an)", true},
		{"greater or equal compares integers as numbers", "(uSNChanged>=99)", true},
		{"less or equal compares integers as numbers", "(uSNChanged<=99)", false},
		{"approximate match is equality", "(sAMAccountName~=JANE)", true},
		{"BIT_AND finds the disabled bit", "(userAccountControl:1.2.840.113556.1.4.803:=2)", true},
		{"BIT_AND needs every bit", "(userAccountControl:1.2.840.113556.1.4.803:=3)", false},
		{"enabled users exclude a disabled one", "(!(userAccountControl:1.2.840.113556.1.4.803:=2))", false},
		{"BIT_OR needs any bit", "(userAccountControl:1.2.840.113556.1.4.804:=3)", true},
		{"BIT_AND keeps the sign bit of a negative groupType", "(groupType:1.2.840.113556.1.4.803:=2147483648)", true},
		{"BIT_AND on a non-integer assertion is undefined, even negated", "(!(userAccountControl:1.2.840.113556.1.4.803:=x))", false},
		{"an unknown matching rule is undefined, even negated", "(!(cn:1.2.3.4:=Jane, Jr.))", false},
		{"an extensible match without a rule is equality", "(sAMAccountName:=JANE)", true},
		{"memberOf equality sees direct groups only", "(memberOf=" + users + ")", false},
		{"IN_CHAIN follows nested groups", "(memberOf:1.2.840.113556.1.4.1941:=" + users + ")", true},
		{"IN_CHAIN matches the direct group", "(memberOf:1.2.840.113556.1.4.1941:=" + ops + ")", true},
		{"IN_CHAIN compares DNs whatever their case and spacing", "(memberOf:1.2.840.113556.1.4.1941:=cn=users, ou=org, dc=x)", true},
		{"IN_CHAIN does not match an unrelated group", "(memberOf:1.2.840.113556.1.4.1941:=CN=Other,OU=Org,DC=x)", false},
		{"memberOf equality compares DNs, not text", "(memberOf=cn=OPS, ou=Org,dc=x)", true},
		{"octet strings compare exactly", "(objectGUID=\\01\\02AB)", false},
		{"octet strings match the same bytes", "(objectGUID=\\01\\02ab)", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ldap.CompileFilter(tt.filter)
			if err != nil {
				t.Fatalf("CompileFilter(%q): %v", tt.filter, err)
			}
			got, err := ev.Match(f, es.attributes(jane))
			if err != nil {
				t.Fatalf("Match(%q): %v", tt.filter, err)
			}
			if got != tt.want {
				t.Errorf("Match(%q) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}

	t.Run("IN_CHAIN on member finds a nested member of a group", func(t *testing.T) {
		f, err := ldap.CompileFilter("(member:1.2.840.113556.1.4.1941:=" + ldap.EscapeFilter(jane) + ")")
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range []string{users, admins, ops} {
			if ok, err := ev.Match(f, es.attributes(g)); err != nil || !ok {
				t.Errorf("group %s: Match = %v, %v; want true", g, ok, err)
			}
		}
	})
	t.Run("a packet that is not a filter is an error", func(t *testing.T) {
		p := ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "x", "")
		if _, err := ev.Match(p, es.attributes(jane)); !errors.Is(err, ldapfilter.ErrInvalidFilter) {
			t.Errorf("Match(octet string) error = %v, want ErrInvalidFilter", err)
		}
	})
	t.Run("a cycle of groups ends the IN_CHAIN walk", func(t *testing.T) {
		cyclic := entries{
			"CN=A,DC=x": {"memberOf": {"CN=B,DC=x"}},
			"CN=B,DC=x": {"memberOf": {"CN=A,DC=x"}},
		}
		cev := ldapfilter.FilterEvaluator{Resolve: cyclic.attributes}
		f, err := ldap.CompileFilter("(memberOf:1.2.840.113556.1.4.1941:=CN=C,DC=x)")
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := cev.Match(f, cyclic.attributes("CN=A,DC=x")); err != nil || ok {
			t.Errorf("Match = %v, %v; want false", ok, err)
		}
	})
}

func TestNormalizeDN(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"case does not matter", "CN=John Doe,OU=X,DC=y", "cn=john doe,ou=x,dc=y", true},
		{"spaces around separators do not matter", "CN=John Doe, OU=X, DC=y", "CN=John Doe,OU=X,DC=y", true},
		{"an escaped comma equals its hex escape", `CN=O'Brien\, Jr.,DC=y`, `CN=O'Brien\2C Jr.,DC=y`, true},
		{"UTF-8 equals its hex escape", `CN=Seán,DC=y`, `CN=Se\C3\A1n,DC=y`, true},
		{"another value differs", "CN=John,DC=y", "CN=Jon,DC=y", false},
		{"a comma inside a value is not a separator", `CN=a\,b,DC=y`, `CN=a,CN=b,DC=y`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ldapfilter.EqualDN(tt.a, tt.b); got != tt.same {
				t.Errorf("EqualDN(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.same)
			}
		})
	}
}
