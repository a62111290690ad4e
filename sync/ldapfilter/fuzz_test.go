package ldapfilter_test

import (
	"errors"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// FuzzFilterEvaluator evaluates arbitrary filters, both as text compiled by
// go-ldap and as raw BER as a client's search request carries it, against an
// entry whose memberOf chain is a cycle: no panic, no unbounded walk, and every
// error is ErrInvalidFilter.
func FuzzFilterEvaluator(f *testing.F) {
	for _, s := range []string{
		"(objectClass=*)", "(&(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
		"(memberOf:1.2.840.113556.1.4.1941:=CN=A,DC=x)", "(|(cn=a*b*c)(sn~=x)(uSNChanged>=5)(uSNChanged<=7))",
		"(userAccountControl:1.2.840.113556.1.4.804:=-1)", "(cn:caseExactMatch:=x)", "(!(!(!(cn=*))))",
		"(objectGUID=\\01\\02)", "(cn=*\\2a*)",
	} {
		f.Add([]byte(s))
		if p, err := ldap.CompileFilter(s); err == nil {
			f.Add(p.Bytes())
		}
	}
	es := entries{
		"CN=A,DC=x": {"memberOf": {"CN=B,DC=x"}, "cn": {"A"}},
		"CN=B,DC=x": {"memberOf": {"CN=A,DC=x"}, "cn": {"B"}},
		"CN=U,DC=x": {
			"objectClass": {"top", "user"}, "cn": {"U"}, "memberOf": {"CN=A,DC=x"},
			"userAccountControl": {"512"}, "uSNChanged": {"6"}, "objectGUID": {"\x01\x02"},
		},
	}
	ev := ldapfilter.FilterEvaluator{Resolve: es.attributes}
	entry := es.attributes("CN=U,DC=x")
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, p *ber.Packet) {
			if _, err := ev.Match(p, entry); err != nil && !errors.Is(err, ldapfilter.ErrInvalidFilter) {
				t.Fatalf("%s: error %v is not ErrInvalidFilter", what, err)
			}
		}
		if p, err := ldap.CompileFilter(string(data)); err == nil {
			check("compiled filter", p)
		}
		// asn1-ber allocates a declared length before reading it; the
		// listener caps a message's size before decoding, so does this.
		ber.MaxPacketLengthBytes = int64(len(data))
		if p, err := ber.DecodePacketErr(data); err == nil {
			check("raw BER", p)
		}
	})
}
