package usersync

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// benchUser is the i-th of many users as the view stores them, with the
// default sync.attributes.
func benchUser(i int) *Entry {
	login := fmt.Sprintf("user%04d", i)
	return &Entry{
		GUID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
		DN:   fmt.Sprintf("CN=User %04d,%s", i, testbed.LoadUsersDN),
		Attrs: map[string][]string{
			"sAMAccountName":     {login},
			"userPrincipalName":  {login + "@" + testbed.Realm},
			"displayName":        {fmt.Sprintf("User %04d", i)},
			"givenName":          {"User"},
			"sn":                 {fmt.Sprintf("%04d", i)},
			"mail":               {login + "@" + testbed.Realm},
			"telephoneNumber":    {fmt.Sprintf("+1 555 %04d", i)},
			"mobile":             {fmt.Sprintf("+1 555 9%03d", i%1000)},
			"ipPhone":            {fmt.Sprintf("00:15:65:00:%02x:%02x", i>>8&0xff, i&0xff)},
			"memberOf":           {testbed.PBXUsersDN},
			"userAccountControl": {"512"},
			"pwdLastSet":         {"133500000000000000"},
			"lockoutTime":        {"0"},
			"accountExpires":     {"9223372036854775807"},
			"uSNChanged":         {fmt.Sprint(20000 + i)},
			"whenChanged":        {"20260302090000.0Z"},
		},
	}
}

func BenchmarkEncodeEntry(b *testing.B) {
	e := benchUser(42)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeEntry(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSearchAnswerEntry is one entry of a view-served search as the
// listener sends it: the DN and pascom's attributes.
func BenchmarkSearchAnswerEntry(b *testing.B) {
	attrs := make([]string, len(pascomAttributes))
	for i, a := range pascomAttributes {
		attrs[i] = strings.ToLower(a)
	}
	e := benchUser(42)
	ans := &SearchAnswer{entries: []*Entry{e}, attrs: append(attrs, "objectguid"), names: newSpellings([]*Entry{e})}
	b.ReportAllocs()
	for b.Loop() {
		if e := ans.Entry(0); len(e.Attributes) != len(ans.attrs) {
			b.Fatalf("%d attributes", len(e.Attributes))
		}
	}
}

// BenchmarkViewSearch is the view answering pascom's searches over 1,000
// users: the lookup of search-then-bind (one unique key) and the import (every
// entry of the scope).
func BenchmarkViewSearch(b *testing.B) {
	const users = 1000
	entries := make([]*Entry, users)
	for i := range entries {
		entries[i] = benchUser(i)
	}
	attrs := []string{"sAMAccountName", "userPrincipalName", "displayName", "givenName", "sn", "mail", "telephoneNumber",
		"mobile", "ipPhone", "memberOf", "userAccountControl", "objectGUID", "pwdLastSet", "lockoutTime", "accountExpires", "uSNChanged", "whenChanged"}
	v, now := syntheticView(b, testbed.UsersDN, "(&(objectClass=user)(objectCategory=person))", attrs, entries...)
	s := NewViewSearcher(v, ViewSearchOptions{})
	cond := SearchConditions{Now: now}
	for _, q := range []struct {
		name, filter string
		want         int
	}{
		{"pascom-lookup", "(sAMAccountName=user0500)", 1},
		{"pascom-import", "(&(objectClass=user)(objectCategory=person))", users},
	} {
		b.Run(q.name, func(b *testing.B) {
			req := ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, q.filter, pascomAttributes, nil)
			b.ReportAllocs()
			for b.Loop() {
				ans, err := s.Search(req, cond)
				if err != nil || ans.Len() != q.want {
					b.Fatalf("%v", err)
				}
				for i := range ans.Len() {
					_ = ans.Entry(i)
				}
			}
		})
	}
}
