package proxy

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestParseLogin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		login     string
		wantKind  LoginKind
		wantValue string
		wantKey   string
	}{
		{"a bare sAMAccountName is a sam login", "jdoe", LoginSAM, "jdoe", "sam:jdoe"},
		{"a sAMAccountName keeps its case in the value but not in the key", "JDoe", LoginSAM, "JDoe", "sam:jdoe"},
		{"spaces around a login are trimmed", " jdoe ", LoginSAM, "jdoe", "sam:jdoe"},
		{"a sAMAccountName may hold inner spaces and dots", "john.doe jr", LoginSAM, "john.doe jr", "sam:john.doe jr"},
		{"a sAMAccountName of twenty characters is accepted", strings.Repeat("a", 20), LoginSAM, strings.Repeat("a", 20), "sam:" + strings.Repeat("a", 20)},
		{"the sAMAccountName limit counts characters, not bytes", strings.Repeat("é", 20), LoginSAM, strings.Repeat("é", 20), "sam:" + strings.Repeat("é", 20)},
		{"a UPN is a upn login", "jdoe@aadds.example.test", LoginUPN, "jdoe@aadds.example.test", "upn:jdoe@aadds.example.test"},
		{"a UPN with any suffix is accepted and folded in the key", "JDoe@Contoso.COM", LoginUPN, "JDoe@Contoso.COM", "upn:jdoe@contoso.com"},
		{"a down-level name in the configured domain is the sam login", `AADDS\jdoe`, LoginSAM, "jdoe", "sam:jdoe"},
		{"the down-level domain is compared ignoring case", `aadds\JDoe`, LoginSAM, "JDoe", "sam:jdoe"},
		{"a DN is a dn login with a folded key", testbed.JDoe.DN(), LoginDN, testbed.JDoe.DN(), "dn:cn=john doe,ou=aaddc users,dc=aadds,dc=example,dc=test"},
		{"a DN spelled loosely is re-serialised and has the same key", "cn=John Doe, ou=AADDC Users, dc=aadds, dc=example, dc=test",
			LoginDN, "cn=John Doe,ou=AADDC Users,dc=aadds,dc=example,dc=test", "dn:cn=john doe,ou=aaddc users,dc=aadds,dc=example,dc=test"},
		{"a DN with an escaped comma keeps it escaped", testbed.SOBrien.DN(), LoginDN, testbed.SOBrien.DN(), `dn:cn=seán o'brien\, jr.,ou=aaddc users,dc=aadds,dc=example,dc=test`},
		{"a DN with a hex-escaped comma is the same DN", `CN=Seán O'Brien\2C Jr.,` + testbed.UsersDN, LoginDN, testbed.SOBrien.DN(), `dn:cn=seán o'brien\, jr.,ou=aaddc users,dc=aadds,dc=example,dc=test`},
		{"a multi-valued RDN is sorted in the key", "CN=x+UID=y," + testbed.BaseDN, LoginDN, "CN=x+UID=y," + testbed.BaseDN, "dn:cn=x+uid=y,dc=aadds,dc=example,dc=test"},
		{"parentheses are allowed in a sAMAccountName, as in AD", "a)(x", LoginSAM, "a)(x", "sam:a)(x"},
		{"a UPN whose local part is a star is still only a string", "*@aadds.example.test", LoginUPN, "*@aadds.example.test", "upn:*@aadds.example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseLogin(tt.login, testbed.NetBIOS)
			if err != nil {
				t.Fatalf("ParseLogin(%q) error = %v", tt.login, err)
			}
			if got.Kind != tt.wantKind || got.Value != tt.wantValue || got.Key != tt.wantKey {
				t.Errorf("ParseLogin(%q) = {%v %q %q}, want {%v %q %q}", tt.login,
					got.Kind, got.Value, got.Key, tt.wantKind, tt.wantValue, tt.wantKey)
			}
		})
	}
}

func TestParseLoginRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		login   string
		netbios string
	}{
		{"an empty name is refused", "", testbed.NetBIOS},
		{"a whitespace-only name is refused", " \t ", testbed.NetBIOS},
		{"a name over 1024 bytes is refused", strings.Repeat("a", MaxLoginBytes+1) + "@x", testbed.NetBIOS},
		{"a 10 kB name is refused", strings.Repeat("j", 10<<10), testbed.NetBIOS},
		{"a NUL inside a name is refused", "jd\x00oe", testbed.NetBIOS},
		{"a trailing NUL is refused", "jdoe\x00", testbed.NetBIOS},
		{"a newline is refused", "jdoe\nadmin", testbed.NetBIOS},
		{"a C1 control character is refused", "jdoe\u0085", testbed.NetBIOS},
		{"invalid UTF-8 is refused", "jdoe\xff", testbed.NetBIOS},
		{"a star is refused", "*", testbed.NetBIOS},
		{"a wildcard prefix is refused", "j*", testbed.NetBIOS},
		{"a filter injection is refused", "jdoe)(|(sAMAccountName=*", testbed.NetBIOS},
		{"the design's injection example is refused", "a)(x=*", testbed.NetBIOS},
		{"every character AD forbids in a sAMAccountName is refused", `j"o`, testbed.NetBIOS},
		{"a slash is refused", "j/doe", testbed.NetBIOS},
		{"brackets are refused", "[jdoe]", testbed.NetBIOS},
		{"a question mark is refused", "jdoe?", testbed.NetBIOS},
		{"a sAMAccountName of 21 characters is refused", strings.Repeat("a", 21), testbed.NetBIOS},
		{"a UPN with an empty local part is refused", "@aadds.example.test", testbed.NetBIOS},
		{"a UPN with an empty suffix is refused", "jdoe@", testbed.NetBIOS},
		{"a UPN with two at signs is refused", "jdoe@x@aadds.example.test", testbed.NetBIOS},
		{"a down-level name of another domain is refused", `OTHER\jdoe`, testbed.NetBIOS},
		{"a down-level name is refused when no domain is configured", `AADDS\jdoe`, ""},
		{"a down-level name with an empty domain is refused", `\jdoe`, testbed.NetBIOS},
		{"a down-level name with an empty user is refused", `AADDS\`, testbed.NetBIOS},
		{"a down-level name with a star is refused", `AADDS\j*`, testbed.NetBIOS},
		// Windows refuses DOMAIN\r@cameron too, even where such a sAMAccountName exists.
		{"a down-level name with an at sign is refused", `AADDS\r@cameron`, testbed.NetBIOS},
		{"a down-level name of a lone at sign is refused", `AADDS\@`, testbed.NetBIOS},
		{"a down-level name with a space after the backslash is refused", `AADDS\ jdoe`, testbed.NetBIOS},
		{"a DN without a value is refused", "CN=," + testbed.BaseDN, testbed.NetBIOS},
		{"a DN that does not parse is refused", "CN=x,=y", testbed.NetBIOS},
		{"a DN with an escaped NUL is refused", `CN=a\00b,` + testbed.UsersDN, testbed.NetBIOS},
		{"a DN with a bad attribute type is refused", "C N=x," + testbed.BaseDN, testbed.NetBIOS},
		{"a lone equals sign is refused", "=", testbed.NetBIOS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseLogin(tt.login, tt.netbios)
			if !errors.Is(err, ErrInvalidLogin) {
				t.Fatalf("ParseLogin(%q) = %+v, %v; want ErrInvalidLogin", LogSafe(tt.login), got, err)
			}
		})
	}
}

func TestLoginsOfOneAccountShareAKey(t *testing.T) {
	t.Parallel()
	var keys []string
	for _, name := range []string{"jdoe", "JDoe", " jdoe", "jdoe ", `AADDS\jdoe`, `aadds\JDOE`} {
		l, err := ParseLogin(name, testbed.NetBIOS)
		if err != nil {
			t.Fatalf("ParseLogin(%q): %v", name, err)
		}
		keys = append(keys, l.Key)
	}
	for _, k := range keys {
		if k != keys[0] {
			t.Fatalf("keys differ: %q", keys)
		}
	}
}

func TestUPNParts(t *testing.T) {
	t.Parallel()
	l, err := ParseLogin("JDoe@AADDS.example.test", testbed.NetBIOS)
	if err != nil {
		t.Fatal(err)
	}
	local, suffix, ok := l.UPNParts()
	if !ok || local != "JDoe" || suffix != "AADDS.example.test" {
		t.Errorf("UPNParts() = %q, %q, %v", local, suffix, ok)
	}
	if _, _, ok := samLogin("jdoe").UPNParts(); ok {
		t.Error("a sam login has UPN parts")
	}
}

// equalityValue returns the attribute and value of a compiled equality filter.
func equalityValue(t testing.TB, filter string) (attr, value string) {
	t.Helper()
	p, err := ldap.CompileFilter(filter)
	if err != nil {
		t.Fatalf("CompileFilter(%q): %v", filter, err)
	}
	if p.Tag != ldap.FilterEqualityMatch || len(p.Children) != 2 {
		t.Fatalf("filter %q is not one equality match", filter)
	}
	return ber.DecodeString(p.Children[0].Data.Bytes()), ber.DecodeString(p.Children[1].Data.Bytes())
}

// trimmed reports whether a login's Value has no space at either end that is
// not part of it: a DN's attribute value may end with a space, escaped (RFC
// 4514: "CN=x\ " is the value "x "), and then an odd number of backslashes
// precedes it.
func trimmed(l Login) bool {
	v := l.Value
	if strings.TrimLeftFunc(v, unicode.IsSpace) != v {
		return false
	}
	rest := strings.TrimRightFunc(v, unicode.IsSpace)
	if rest == v {
		return true
	}
	if l.Kind != LoginDN || len(v)-len(rest) != 1 || v[len(v)-1] != ' ' {
		return false
	}
	backslashes := len(rest) - len(strings.TrimRight(rest, `\`))
	return backslashes%2 == 1
}

func FuzzParseLogin(f *testing.F) {
	for _, s := range []string{
		"jdoe", " JDoe ", "jdoe@aadds.example.test", `AADDS\jdoe`, testbed.JDoe.DN(), testbed.SOBrien.DN(),
		"*", "j*", "jdoe)(|(sAMAccountName=*", "jd\x00oe", `CN=a\00b,DC=x`, "a@b@c", "CN=#0403616263,DC=x",
		"=", "\\", "@", "cn=x+cn=y,dc=z", "é@é", "\xff", `AADDS\@`, `AADDS\ 0`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		l, err := ParseLogin(name, testbed.NetBIOS)
		if err != nil {
			if !errors.Is(err, ErrInvalidLogin) {
				t.Fatalf("error %v does not wrap ErrInvalidLogin", err)
			}
			return
		}
		if l.Value == "" || !trimmed(l) || !strings.HasPrefix(l.Key, l.Kind.String()+":") {
			t.Fatalf("accepted login %+v is malformed", l)
		}
		if checkText(l.Value) != nil {
			t.Fatalf("accepted login %q holds a control character or invalid UTF-8", l.Value)
		}
		// Parsing the normalised value again names the same account.
		again, err := ParseLogin(l.Value, testbed.NetBIOS)
		if err != nil || again.Key != l.Key {
			t.Fatalf("ParseLogin(%q) = %+v, %v; want key %q", l.Value, again, err, l.Key)
		}
		switch l.Kind {
		case LoginSAM, LoginUPN:
			// Escaped, the value is one literal equality assertion: it cannot
			// add filter items or wildcards.
			attr, value := equalityValue(t, "(sAMAccountName="+ldap.EscapeFilter(l.Value)+")")
			if attr != "sAMAccountName" || value != l.Value {
				t.Fatalf("filter value %q round-tripped to %q=%q", l.Value, attr, value)
			}
		case LoginDN:
			dn, err := ldap.ParseDN(l.Value)
			if err != nil || !dn.EqualFold(l.dn) {
				t.Fatalf("DN %q does not parse back to itself: %v", l.Value, err)
			}
		}
	})
}

func TestADNWithATrailingSpaceInAValueParsesBackToItself(t *testing.T) {
	t.Parallel()
	// Found by FuzzParseLogin: "\ " at the end of the normalised DN was cut
	// off by the TrimSpace of a login typed with it.
	l, err := ParseLogin(`CN=Trailing\20,OU=AADDC Users,DC=aadds,DC=example,DC=test`, testbed.NetBIOS)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseLogin(l.Value, testbed.NetBIOS)
	if err != nil || again.Key != l.Key || again.Value != l.Value {
		t.Errorf("ParseLogin(%q) = %+v, %v; want %+v", l.Value, again, err, l)
	}
	if dn, err := ldap.ParseDN(l.Value); err != nil || dn.RDNs[0].Attributes[0].Value != "Trailing " {
		t.Errorf("the normalised DN %q names %v (%v), want the value %q", l.Value, dn, err, "Trailing ")
	}
}

func TestDNValuesNeedingNoEscapeAreWrittenAsEscapeDNWould(t *testing.T) {
	t.Parallel()
	values := []string{"jdoe", "John Doe", "Seán O'Brien, Jr.", " lead", "trail ", "#hash", "in#side", `a"b`, "a+b", "a;b",
		"a<b>", `back\slash`, "nul\x00", "bad\xffutf8", "tab\there", "=eq", "", " ", "~!@$%^&*()_-{}[]|:'?/.", "日本"}
	rng := rand.New(rand.NewPCG(8, 3))
	for range 2000 {
		b := make([]byte, rng.IntN(8))
		for i := range b {
			b[i] = " #\"+,;<>\\=ax\x00\x7f\xc3\xa9"[rng.IntN(16)]
		}
		values = append(values, string(b))
	}
	for _, v := range values {
		want := ldap.EscapeDN(v)
		if strings.HasSuffix(want, `\ `) {
			want = want[:len(want)-2] + `\20`
		}
		var b strings.Builder
		writeATV(&b, &ldap.AttributeTypeAndValue{Type: "CN", Value: v}, false)
		if got := b.String(); got != "CN="+want {
			t.Errorf("value %q written as %q, want %q", v, got, "CN="+want)
		}
	}
}
