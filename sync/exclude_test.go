package usersync

import (
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestExcludeServiceAccount(t *testing.T) {
	seeded := impSeeded(t)
	svc, jdoe := seeded["svc-pbx"], seeded["jdoe"]
	noUPN := impWith(svc, "userPrincipalName")
	tests := []struct {
		name    string
		bindDN  string
		entry   Entry
		exclude bool
	}{
		{"a UPN bind_dn excludes the account with that UPN", testbed.Service.UPN(), svc, true},
		{"a UPN bind_dn in another case still excludes it", strings.ToUpper(testbed.Service.UPN()), svc, true},
		{"a UPN bind_dn leaves other users in", testbed.Service.UPN(), jdoe, false},
		{"a DN bind_dn excludes the account with that DN", testbed.Service.DN(), svc, true},
		{"a DN bind_dn spelt with other case and spaces still excludes it", "cn=PBX Service, ou=AADDC Users, dc=aadds, dc=example, dc=test", svc, true},
		{"a DN bind_dn leaves other users in", testbed.Service.DN(), jdoe, false},
		{`a DOMAIN\name bind_dn excludes the account by sAMAccountName`, `AADDS\svc-pbx`, svc, true},
		{"a bare bind_dn excludes the account by sAMAccountName", "SVC-PBX", svc, true},
		{"a UPN bind_dn excludes an account without UPN by its local part", testbed.Service.UPN(), noUPN, true},
		{"a UPN bind_dn does not exclude another account whose sAMAccountName is its local part",
			testbed.Service.UPN(), impWith(svc, "userPrincipalName", "someone.else@"+testbed.Realm), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := newExcluder(tc.bindDN, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := x.reason(&tc.entry) != ""; got != tc.exclude {
				t.Errorf("excluded = %v, want %v", got, tc.exclude)
			}
		})
	}
}

func TestExcludeFilter(t *testing.T) {
	seeded := impSeeded(t)
	jdoe, bjones := seeded["jdoe"], seeded["bjones"]
	tests := []struct {
		name    string
		filter  string
		entry   Entry
		exclude bool
	}{
		{"an equality matches case-insensitively", "(sAMAccountName=JDOE)", jdoe, true},
		{"an equality on another value does not match", "(sAMAccountName=asmith)", jdoe, false},
		{"a group DN matches memberOf however it is spelt", "(memberOf=cn=pbx-users, ou=aadds\\20users, dc=aadds,dc=example,dc=test)",
			impWith(jdoe, "memberOf", "CN=PBX-Users,OU=AADDS Users,DC=aadds,DC=example,DC=test"), true},
		{"a prefix substring matches", "(sAMAccountName=jd*)", jdoe, true},
		{"an inner and final substring match in order", "(mail=*doe*.test)", jdoe, true},
		{"substrings out of order do not match", "(mail=*test*jdoe*)", jdoe, false},
		{"presence matches an attribute the entry has", "(telephoneNumber=*)", jdoe, true},
		{"presence does not match an attribute the entry lacks", "(telephoneNumber=*)", bjones, false},
		{"every entry has an objectClass", "(objectClass=*)", impEntry("g1", "ann"), true},
		{"not of a missing attribute matches", "(!(telephoneNumber=*))", bjones, true},
		{"and needs every part", "(&(sn=Doe)(givenName=Jane))", jdoe, false},
		{"or needs one part", "(|(sn=Nobody)(givenName=john))", jdoe, true},
		{"distinguishedName comes from the entry's DN", "(distinguishedName=CN=ann,OU=AADDC Users,DC=aadds,DC=example,DC=test)", impEntry("g1", "ann"), true},
		{"objectGUID comes from the entry's GUID", "(objectGUID=g1)", impEntry("g1", "ann"), true},
		{"an escaped value matches literally", `(displayName=Se\c3\a1n O'Brien\2c Jr.)`, seeded["sobrien"], true},
		{"BIT_AND finds a disabled account", "(userAccountControl:1.2.840.113556.1.4.803:=2)", impWith(jdoe, "userAccountControl", "514"), true},
		{"BIT_AND leaves an enabled account in", "(userAccountControl:1.2.840.113556.1.4.803:=2)", impWith(jdoe, "userAccountControl", "512"), false},
		{"an ordering match compares integers as numbers", "(uSNChanged>=10)", impWith(jdoe, "uSNChanged", "9"), false},
		{"approximate match is equality", "(sn~=DOE)", jdoe, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := newExcluder("", tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := x.reason(&tc.entry) != ""; got != tc.exclude {
				t.Errorf("excluded = %v, want %v", got, tc.exclude)
			}
		})
	}
}

func TestExcludeFilterRefused(t *testing.T) {
	tests := []struct {
		name, filter, wantErr string
	}{
		{"nested membership is refused: the view holds no groups", "(memberOf:1.2.840.113556.1.4.1941:=CN=PBX-Users,DC=x)", "nested group membership"},
		{"nested membership inside not is refused too", "(!(memberOf:1.2.840.113556.1.4.1941:=CN=PBX-Users,DC=x))", "nested group membership"},
		{"an unknown matching rule is refused, not ignored", "(sn:caseExactMatch:=Doe)", "matching rule"},
		{"a malformed filter is refused", "(sn=doe", "exclude_filter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newExcluder("", tc.filter)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("newExcluder(%q) error %v, want one containing %q", tc.filter, err, tc.wantErr)
			}
		})
	}
}
