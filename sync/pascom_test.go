package usersync

import (
	"encoding/hex"
	"reflect"
	"slices"
	"testing"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// Helpers shared by the import's tests (pascom, exclude, plan, csv, json,
// applied, webhook, export); their names start with imp.

// impEntry builds an enabled user in the AADDS users OU with sAMAccountName
// and UPN login, plus the attribute/value pairs kv (a name given twice gets
// two values).
func impEntry(guid, login string, kv ...string) Entry {
	e := Entry{GUID: guid, DN: "CN=" + login + "," + testbed.UsersDN, Attrs: map[string][]string{
		"sAMAccountName":     {login},
		"userPrincipalName":  {login + "@" + testbed.Realm},
		"userAccountControl": {"512"},
	}}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Attrs[kv[i]] = append(e.Attrs[kv[i]], kv[i+1])
	}
	return e
}

// impWith returns a copy of e with the attribute name set to values (none:
// removed).
func impWith(e Entry, name string, values ...string) Entry {
	c := Entry{GUID: e.GUID, DN: e.DN, Attrs: make(map[string][]string, len(e.Attrs)+1)}
	for k, v := range e.Attrs {
		c.Attrs[k] = slices.Clone(v)
	}
	if len(values) == 0 {
		delete(c.Attrs, name)
	} else {
		c.Attrs[name] = values
	}
	return c
}

// impSeeded returns the test bed's seeded accounts as the view holds them,
// read from the AD simulator (the same data integration/samba seeds), keyed by
// login.
func impSeeded(t *testing.T) map[string]Entry {
	t.Helper()
	d, err := adsim.NewDirectory(adsim.Config{})
	if err != nil {
		t.Fatalf("adsim: %v", err)
	}
	out := map[string]Entry{}
	for _, a := range testbed.Accounts {
		attrs, ok := d.Entry(a.DN())
		if !ok {
			t.Fatalf("adsim has no %s", a.DN())
		}
		guid := hex.EncodeToString([]byte(attrs["objectGUID"][0]))
		delete(attrs, "objectGUID")
		out[a.Login] = Entry{GUID: guid, DN: attrs["distinguishedName"][0], Attrs: attrs}
	}
	return out
}

// impSeededList returns the seeded accounts in testbed.Accounts order.
func impSeededList(t *testing.T) []Entry {
	t.Helper()
	m := impSeeded(t)
	var l []Entry
	for _, a := range testbed.Accounts {
		l = append(l, m[a.Login])
	}
	return l
}

func TestPascomMapping(t *testing.T) {
	seeded := impSeeded(t)
	on := pascomMapping{softphone: true, mobile: true}
	off := pascomMapping{}
	tests := []struct {
		name    string
		mapping pascomMapping
		entry   Entry
		check   func(t *testing.T, u ImportUser)
	}{
		{"jdoe gets extension and mobile exactly as AD holds them", on, seeded["jdoe"], func(t *testing.T, u ImportUser) {
			impEqual(t, "username", u.Username, "jdoe")
			impEqual(t, "displayname", u.DisplayName, "John Doe")
			impEqual(t, "givenname", u.GivenName, "John")
			impEqual(t, "surname", u.Surname, "Doe")
			impEqual(t, "email", u.Email, "jdoe@aadds.example.test")
			impEqual(t, "phone", u.Phone, "+1 555 0101")
			impEqual(t, "mobile", u.Mobile, "+1 555 0201")
			impEqual(t, "groups", u.Groups, []string{"PBX-Users"})
			impEqual(t, "disabled", u.Disabled, false)
			impEqual(t, "softphone", u.Softphone, true)
			impEqual(t, "mobile_device", u.MobileDevice, true)
		}},
		{"sobrien keeps the comma and the non-ASCII letter of his display name", on, seeded["sobrien"], func(t *testing.T, u ImportUser) {
			impEqual(t, "displayname", u.DisplayName, "Seán O'Brien, Jr.")
			impEqual(t, "givenname", u.GivenName, "Seán")
			impEqual(t, "surname", u.Surname, "O'Brien")
		}},
		{"bjones without a mobile number gets no mobile device", on, seeded["bjones"], func(t *testing.T, u ImportUser) {
			impEqual(t, "mobile_device", u.MobileDevice, false)
			impEqual(t, "groups", u.Groups, []string{})
		}},
		{"create_softphone and create_mobile off give no devices", off, seeded["jdoe"], func(t *testing.T, u ImportUser) {
			impEqual(t, "softphone", u.Softphone, false)
			impEqual(t, "mobile_device", u.MobileDevice, false)
		}},
		{"cwhite's account is disabled (userAccountControl 514)", on, seeded["cwhite"], func(t *testing.T, u ImportUser) {
			impEqual(t, "disabled", u.Disabled, true)
		}},
		{"a user with only a UPN gets its local part, lower case, as username",
			on, Entry{GUID: "g1", DN: "CN=Mary Major," + testbed.UsersDN, Attrs: map[string][]string{"userPrincipalName": {"Mary.Major@Contoso.onmicrosoft.com"}}},
			func(t *testing.T, u ImportUser) {
				impEqual(t, "username", u.Username, "mary.major")
				impEqual(t, "displayname", u.DisplayName, "mary.major")
			}},
		{"sAMAccountName is lower-cased and wins over the UPN", on,
			impWith(impEntry("g1", "JDoe2"), "userPrincipalName", "john.doe@aadds.example.test"),
			func(t *testing.T, u ImportUser) { impEqual(t, "username", u.Username, "jdoe2") }},
		{"without displayName the display name is given name and surname", on, impEntry("g1", "ann", "givenName", "Ann", "sn", "Lee"),
			func(t *testing.T, u ImportUser) { impEqual(t, "displayname", u.DisplayName, "Ann Lee") }},
		{"company, homePhone and facsimileTelephoneNumber are organisation, homephone and fax", on,
			impEntry("g1", "ann", "company", "Contoso", "homePhone", "+1 555 0301", "facsimileTelephoneNumber", "+1 555 0401"),
			func(t *testing.T, u ImportUser) {
				impEqual(t, "organisation", u.Organisation, "Contoso")
				impEqual(t, "homephone", u.HomePhone, "+1 555 0301")
				impEqual(t, "fax", u.Fax, "+1 555 0401")
			}},
		{"memberOf gives the group CNs sorted, once each, and skips values that are not DNs", on,
			impEntry("g1", "ann", "memberOf", "CN=PBX-Users,OU=AADDC Users,DC=x", "memberOf", "cn=Ops\\, EMEA,OU=G,DC=x", "memberOf", "CN=pbx-users,OU=Other,DC=x", "memberOf", "garbage"),
			func(t *testing.T, u ImportUser) { impEqual(t, "groups", u.Groups, []string{"Ops, EMEA", "PBX-Users"}) }},
		{"an ipPhone holding a MAC becomes the phone's MAC", on, impEntry("g1", "ann", "ipPhone", "00-04-13-2a-3b-4c"),
			func(t *testing.T, u ImportUser) { impEqual(t, "phonemac", u.PhoneMAC, "00:04:13:2A:3B:4C") }},
		{"an ipPhone holding a number is no MAC", on, impEntry("g1", "ann", "ipPhone", "4711"),
			func(t *testing.T, u ImportUser) { impEqual(t, "phonemac", u.PhoneMAC, "") }},
		{"white space around values is dropped", on, impEntry("g1", "ann", "telephoneNumber", "  +1 555 0101 "),
			func(t *testing.T, u ImportUser) { impEqual(t, "phone", u.Phone, "+1 555 0101") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, why := tc.mapping.user(&tc.entry)
			if why != "" {
				t.Fatalf("not imported: %s", why)
			}
			tc.check(t, u)
		})
	}
}

func TestPascomMappingRefusesEntries(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
		want  string
	}{
		{"an entry without objectGUID is refused", impEntry("", "ann"), "no objectGUID"},
		{"an entry without sAMAccountName or UPN is refused", Entry{GUID: "g1", DN: "CN=x", Attrs: map[string][]string{"displayName": {"X"}}}, "no sAMAccountName or userPrincipalName"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, why := (pascomMapping{}).user(&tc.entry); why != tc.want {
				t.Errorf("reason %q, want %q", why, tc.want)
			}
		})
	}
}

func TestNormalizeMAC(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"colon-separated pairs are a MAC", "00:04:13:2a:3b:4c", "00:04:13:2A:3B:4C"},
		{"dash-separated pairs are a MAC", "00-04-13-2A-3B-4C", "00:04:13:2A:3B:4C"},
		{"Cisco's dotted quads are a MAC", "0004.132a.3b4c", "00:04:13:2A:3B:4C"},
		{"twelve bare hex digits are a MAC", "0004132a3b4c", "00:04:13:2A:3B:4C"},
		{"an extension is no MAC", "4711", ""},
		{"a phone number is no MAC", "+1 555 0101", ""},
		{"five pairs are no MAC", "00:04:13:2a:3b", ""},
		{"mixed separators are no MAC", "00:04-13:2a:3b:4c", ""},
		{"a non-hex letter is no MAC", "00:04:13:2a:3b:4g", ""},
		{"empty is no MAC", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := normalizeMAC(tc.in); got != tc.want {
				t.Errorf("normalizeMAC(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// impEqual fails the test when got and want differ.
func impEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}
