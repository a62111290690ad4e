package usersync

import (
	"bytes"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestGUIDsRoundTripInADsByteOrder(t *testing.T) {
	t.Parallel()
	raw := []byte{0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}
	const text = "12345678-9abc-def0-0102-030405060708"
	if got := formatGUID(raw); got != text {
		t.Errorf("formatGUID = %s, want %s", got, text)
	}
	back, err := parseGUID(text)
	if err != nil || !bytes.Equal(back, raw) {
		t.Errorf("parseGUID(%s) = %x, %v; want %x", text, back, err, raw)
	}
	f, err := guidFilter(text)
	if err != nil || f != `(objectGUID=\78\56\34\12\bc\9a\f0\de\01\02\03\04\05\06\07\08)` {
		t.Errorf("guidFilter = %s, %v", f, err)
	}
	if _, err := ldap.CompileFilter(f); err != nil {
		t.Errorf("guidFilter is not a valid filter: %v", err)
	}
	for _, bad := range []string{"", "12345678", "1234567g-9abc-def0-0102-030405060708", "123456789abcdef00102030405060708"} {
		if _, err := parseGUID(bad); err == nil {
			t.Errorf("parseGUID(%q) accepted it", bad)
		}
	}
	if formatGUID(raw[:15]) != "" {
		t.Errorf("formatGUID accepted 15 bytes")
	}
}

func TestBinaryValuesBecomeText(t *testing.T) {
	t.Parallel()
	sid := []byte{1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0xe9, 3, 0, 0}
	tests := []struct {
		name, attr string
		value      []byte
		want       string
	}{
		{"a SID is written as S-1-5-…", "objectSid", sid, "S-1-5-21-1-2-3-1001"},
		{"UTF-8 text is kept", "displayName", []byte("Seán O'Brien, Jr."), "Seán O'Brien, Jr."},
		{"other binary values are base64", "thumbnailPhoto", []byte{0xff, 0xd8, 0xff}, "base64:/9j/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := textValue(tt.attr, tt.value); got != tt.want {
				t.Errorf("textValue = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNormalizedDNsMatchEverySpellingADAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"case and spaces after commas do not matter", "CN=John Doe,OU=AADDC Users,DC=x", "cn=john doe, ou=aaddc users, dc=X", true},
		{"an escaped comma equals its hex escape", `CN=O'Brien\, Jr.,DC=x`, `CN=O'Brien\2c Jr.,DC=x`, true},
		{"another RDN value is another DN", "CN=John Doe,DC=x", "CN=John Doe2,DC=x", false},
		{"a comma inside a value is not a separator", `CN=a\,b,DC=x`, `CN=a,CN=b,DC=x`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := normalizeDN(tt.a) == normalizeDN(tt.b); got != tt.same {
				t.Errorf("normalizeDN(%q) = %q, normalizeDN(%q) = %q", tt.a, normalizeDN(tt.a), tt.b, normalizeDN(tt.b))
			}
		})
	}
}

func TestBookkeepingAloneIsNotAChange(t *testing.T) {
	t.Parallel()
	a := Entry{GUID: "g", DN: "CN=a", Attrs: map[string][]string{"mail": {"a@x"}, "uSNChanged": {"10"}}}
	b := Entry{GUID: "g", DN: "CN=a", Attrs: map[string][]string{"mail": {"a@x"}, "uSNChanged": {"100010"}}}
	c := Entry{GUID: "g", DN: "CN=a", Attrs: map[string][]string{"mail": {"b@x"}, "uSNChanged": {"10"}}}
	if !sameEntry(&a, &b) || identical(&a, &b) {
		t.Errorf("entries differing in uSNChanged only: same %v, identical %v; want same, not identical", sameEntry(&a, &b), identical(&a, &b))
	}
	if sameEntry(&a, &c) {
		t.Errorf("entries with another mail are the same")
	}
}
