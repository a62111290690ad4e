package ldapfilter

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// benchEntry is a user as the view holds it, with pascom's attributes.
var benchEntry = map[string][]string{
	"objectclass":        {"top", "person", "organizationalPerson", "user"},
	"objectcategory":     {"CN=Person,CN=Schema,CN=Configuration,DC=aadds,DC=example,DC=test"},
	"samaccountname":     {"jdoe"},
	"userprincipalname":  {"jdoe@aadds.example.test"},
	"displayname":        {"John Doe"},
	"mail":               {"jdoe@aadds.example.test"},
	"telephonenumber":    {"+1 555 0101"},
	"useraccountcontrol": {"512"},
	"memberof":           {"CN=PBX-Users,OU=AADDC Users,DC=aadds,DC=example,DC=test", "CN=Staff,OU=AADDC Users,DC=aadds,DC=example,DC=test"},
}

func benchAttributes(name string) []string { return benchEntry[strings.ToLower(name)] }

func BenchmarkMatch(b *testing.B) {
	ev := FilterEvaluator{Syntax: func(attr string) Syntax {
		if strings.EqualFold(attr, "memberOf") {
			return SyntaxDN
		}
		return SyntaxString
	}}
	for _, f := range []struct{ name, filter string }{
		{"pascom-lookup", "(sAMAccountName=JDoe)"},
		{"pascom-import", "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2))(memberOf=CN=PBX-Users,OU=AADDC Users,DC=aadds,DC=example,DC=test))"},
		{"substrings", "(|(displayName=*doe*)(mail=j*@aadds.example.test))"},
	} {
		b.Run(f.name, func(b *testing.B) {
			p, err := ldap.CompileFilter(f.filter)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ev.Match(p, benchAttributes); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = ev.Match(p, benchAttributes)
			}
		})
	}
}
