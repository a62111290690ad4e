package adsim_test

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

const loadFilter = "(&(objectClass=user)(sAMAccountName=user*))"

func loadSearch(size int) *ldap.SearchRequest {
	return ldap.NewSearchRequest(testbed.LoadUsersDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, size, 0, false,
		loadFilter, []string{"sAMAccountName"}, nil)
}

func TestPagedSearch(t *testing.T) {
	const users = 2500
	d := newDirectory(t, adsim.Config{LoadUsers: users})
	dc := startDC(t, d, adsim.DCConfig{})

	for _, pageSize := range []uint32{500, 1000, 1500} {
		t.Run("pages of "+strconv.Itoa(int(pageSize))+" return every user exactly once", func(t *testing.T) {
			c := dial(t, dc)
			bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
			res, err := c.SearchWithPaging(loadSearch(0), pageSize)
			if err != nil {
				t.Fatalf("paged search: %v", err)
			}
			seen := make(map[string]int, users)
			for _, e := range res.Entries {
				seen[e.GetAttributeValue("sAMAccountName")]++
			}
			for i := range users {
				login, _ := testbed.LoadUser(i)
				if seen[login] != 1 {
					t.Fatalf("%s returned %d times, want once", login, seen[login])
				}
			}
			if len(res.Entries) != users {
				t.Errorf("%d entries, want %d", len(res.Entries), users)
			}
		})
	}
	t.Run("a page never holds more than MaxPageSize entries", func(t *testing.T) {
		c := dial(t, dc)
		bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
		req := loadSearch(0)
		req.Controls = []ldap.Control{ldap.NewControlPaging(5000)}
		res, err := c.Search(req)
		if err != nil {
			t.Fatal(err)
		}
		paging, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if len(res.Entries) != adsim.MaxPageSize || paging == nil || len(paging.Cookie) == 0 {
			t.Errorf("first page: %d entries, paging %v; want %d and a cookie", len(res.Entries), paging, adsim.MaxPageSize)
		}
	})
	t.Run("an unpaged search returns MaxPageSize entries and sizeLimitExceeded", func(t *testing.T) {
		c := dial(t, dc)
		bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
		res, err := c.Search(loadSearch(0))
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			t.Fatalf("error = %v, want sizeLimitExceeded", err)
		}
		if res == nil || len(res.Entries) != adsim.MaxPageSize {
			t.Fatalf("got %d entries, want %d", len(res.Entries), adsim.MaxPageSize)
		}
	})
	t.Run("a size limit caps an unpaged search", func(t *testing.T) {
		c := dial(t, dc)
		bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
		res, err := c.Search(loadSearch(5))
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || len(res.Entries) != 5 {
			t.Fatalf("got %d entries and %v, want 5 and sizeLimitExceeded", len(res.Entries), err)
		}
	})
	t.Run("a size limit caps a paged search across pages", func(t *testing.T) {
		c := dial(t, dc)
		bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
		res, err := c.SearchWithPaging(loadSearch(1200), 500)
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || len(res.Entries) != 1200 {
			t.Fatalf("got %d entries and %v, want 1200 and sizeLimitExceeded", len(res.Entries), err)
		}
	})
	t.Run("a cookie from another connection is refused", func(t *testing.T) {
		c1, c2 := dial(t, dc), dial(t, dc)
		bindAs(t, c1, testbed.Service.UPN(), testbed.Service.Password)
		bindAs(t, c2, testbed.Service.UPN(), testbed.Service.Password)
		req := loadSearch(0)
		paging := ldap.NewControlPaging(100)
		req.Controls = []ldap.Control{paging}
		res, err := c1.Search(req)
		if err != nil {
			t.Fatal(err)
		}
		paging.SetCookie(ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging).Cookie)
		if _, err := c2.Search(req); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
			t.Errorf("search with another connection's cookie: %v, want unwillingToPerform", err)
		}
	})
}

func TestSearchBases(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)
	bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
	tests := []struct {
		name        string
		base        string
		scope       int
		filter      string
		wantCode    uint16
		wantMatched string
		wantDNs     []string
	}{
		{"a missing base names its best existing ancestor", "CN=Nobody,OU=Gone," + testbed.UsersDN, ldap.ScopeBaseObject, "(objectClass=*)", ldap.LDAPResultNoSuchObject, testbed.UsersDN, nil},
		{"an invalid base is invalidDNSyntax", "not a dn", ldap.ScopeBaseObject, "(objectClass=*)", ldap.LDAPResultInvalidDNSyntax, "", nil},
		{"a subtree search from the domain root leaves out the configuration", testbed.BaseDN, ldap.ScopeWholeSubtree, "(objectClass=nTDSDSA)", 0, "", []string{}},
		{"a base search finds an entry by any spelling of its DN", "cn=john doe, ou=aaddc users,dc=aadds,dc=example,dc=test", ldap.ScopeBaseObject, "(objectClass=user)", 0, "", []string{testbed.JDoe.DN()}},
		{"objectCategory=person finds users by the short name", adsim.BuiltinUsersDN, ldap.ScopeSingleLevel, "(objectCategory=person)", 0, "", []string{testbed.AdminDN}},
		{"users are found by sAMAccountType", testbed.UsersDN, ldap.ScopeSingleLevel, "(&(sAMAccountType=805306368)(sAMAccountName=asmith))", 0, "", []string{testbed.ASmith.DN()}},
		{"IN_CHAIN on member lists the groups holding a nested member", testbed.UsersDN, ldap.ScopeSingleLevel, "(member:1.2.840.113556.1.4.1941:=" + ldap.EscapeFilter(testbed.ASmith.DN()) + ")", 0, "", []string{testbed.PBXUsersDN, testbed.PBXAdminsDN}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Search(ldap.NewSearchRequest(tt.base, tt.scope, 0, 0, 0, false, tt.filter, []string{"1.1"}, nil))
			var le *ldap.Error
			switch {
			case tt.wantCode == 0 && err != nil:
				t.Fatalf("search: %v", err)
			case tt.wantCode != 0 && (!errors.As(err, &le) || le.ResultCode != tt.wantCode || le.MatchedDN != tt.wantMatched):
				t.Fatalf("search error %v, want code %d with matched DN %q", err, tt.wantCode, tt.wantMatched)
			case tt.wantDNs != nil:
				var got []string
				for _, e := range res.Entries {
					got = append(got, e.DN)
				}
				if len(got) != len(tt.wantDNs) || (len(got) > 0 && !sameSet(got, tt.wantDNs)) {
					t.Errorf("DNs %q, want %q", got, tt.wantDNs)
				}
			}
		})
	}
}

func sameSet(a, b []string) bool {
	m := make(map[string]int)
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func rootDSE(t *testing.T, c *ldap.Conn) *ldap.Entry {
	t.Helper()
	res, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("rootDSE: %v", err)
	}
	return res.Entries[0]
}

func TestRootDSEPerDC(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc1 := startDC(t, d, adsim.DCConfig{Name: "dc1"})
	dc2 := startDC(t, d, adsim.DCConfig{Name: "dc2", USNOffset: 100000})
	c1, c2 := dial(t, dc1), dial(t, dc2)
	r1, r2 := rootDSE(t, c1), rootDSE(t, c2)

	t.Run("each DC names itself", func(t *testing.T) {
		if r1.GetAttributeValue("dsServiceName") != dc1.DSServiceName() || r2.GetAttributeValue("dnsHostName") != "dc2."+testbed.Realm {
			t.Errorf("dc1 dsServiceName %q, dc2 dnsHostName %q", r1.GetAttributeValue("dsServiceName"), r2.GetAttributeValue("dnsHostName"))
		}
	})
	t.Run("USNs are per DC", func(t *testing.T) {
		u1, _ := strconv.ParseInt(r1.GetAttributeValue("highestCommittedUSN"), 10, 64)
		u2, _ := strconv.ParseInt(r2.GetAttributeValue("highestCommittedUSN"), 10, 64)
		if u1 != d.HighestCommittedUSN() || u2 != u1+100000 {
			t.Errorf("highestCommittedUSN dc1 %d, dc2 %d; want %d and %d", u1, u2, d.HighestCommittedUSN(), u1+100000)
		}
		bindAs(t, c2, testbed.Service.UPN(), testbed.Service.Password)
		res, err := c2.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeSingleLevel, 0, 0, 0, false,
			"(uSNChanged>="+strconv.FormatInt(u1+100000-5, 10)+")", []string{"uSNChanged"}, nil))
		if err != nil || len(res.Entries) == 0 {
			t.Fatalf("search dc2 by its own USNs: %v, %d entries", err, len(res.Entries))
		}
		if n, _ := strconv.ParseInt(res.Entries[0].GetAttributeValue("uSNChanged"), 10, 64); n < 100000 {
			t.Errorf("dc2 reports uSNChanged %d, want it offset", n)
		}
	})
	t.Run("a restore changes the invocationId the NTDS Settings object shows", func(t *testing.T) {
		c := dial(t, dc1)
		bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
		read := func() []byte {
			res, err := c.Search(ldap.NewSearchRequest(dc1.DSServiceName(), ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"invocationId"}, nil))
			if err != nil || len(res.Entries) != 1 {
				t.Fatalf("read NTDS Settings: %v", err)
			}
			return res.Entries[0].GetRawAttributeValue("invocationId")
		}
		before := read()
		if len(before) != 16 || !bytes.Equal(before, dc1.InvocationID()) {
			t.Fatalf("invocationId %x, want the DC's 16 bytes %x", before, dc1.InvocationID())
		}
		restored := dc1.Restore()
		if after := read(); bytes.Equal(after, before) || !bytes.Equal(after, restored) {
			t.Errorf("invocationId after restore %x (before %x), want %x", after, before, restored)
		}
	})
	t.Run("anyone may read the rootDSE", func(t *testing.T) {
		if r1.GetAttributeValue("defaultNamingContext") != testbed.BaseDN {
			t.Errorf("defaultNamingContext = %q", r1.GetAttributeValue("defaultNamingContext"))
		}
	})
}

func TestWritesAreRefused(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	c := dial(t, startDC(t, d, adsim.DCConfig{}))
	bindAs(t, c, testbed.Administrator.UPN(), testbed.Administrator.Password)
	mod := ldap.NewModifyRequest(testbed.JDoe.DN(), nil)
	mod.Replace("mobile", []string{"+1 555 9999"})
	add := ldap.NewAddRequest("CN=New,"+testbed.UsersDN, nil)
	add.Attribute("objectClass", []string{"user"})
	tests := []struct {
		name string
		do   func() error
	}{
		{"a modify gets unwillingToPerform", func() error { return c.Modify(mod) }},
		{"an add gets unwillingToPerform", func() error { return c.Add(add) }},
		{"a delete gets unwillingToPerform", func() error { return c.Del(ldap.NewDelRequest(testbed.JDoe.DN(), nil)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
				t.Errorf("error = %v, want unwillingToPerform", err)
			}
		})
	}
	if entry, _ := d.Entry(testbed.JDoe.DN()); entry["mobile"][0] != "+1 555 0201" {
		t.Errorf("jdoe's mobile changed to %q", entry["mobile"])
	}
}
