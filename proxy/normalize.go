package proxy

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/configs"
)

// Limits on what a client may type as a bind name.
const (
	// MaxLoginBytes is the longest bind name accepted, in bytes. AD's
	// userPrincipalName is at most 1024 characters; nothing longer can name a user.
	MaxLoginBytes = 1024
	// MaxSAMAccountNameChars is the longest sAMAccountName accepted, in
	// characters (not bytes): the SAM limits user accounts' names to 20.
	MaxSAMAccountNameChars = 20
)

// samForbidden are the characters AD forbids in a sAMAccountName (control
// characters are refused separately, for every form of login).
const samForbidden = `"/\[]:;|=,+*?<>`

// LoginKind says which of the accepted forms a login was typed in.
type LoginKind int

const (
	// LoginSAM is a bare sAMAccountName ("jdoe") or a down-level logon name
	// ("AADDS\jdoe"), which names the same account.
	LoginSAM LoginKind = iota + 1
	// LoginUPN is a userPrincipalName ("jdoe@aadds.example.test").
	LoginUPN
	// LoginDN is a distinguished name.
	LoginDN
)

// String returns the kind's short name, also the prefix of a Login's Key.
func (k LoginKind) String() string {
	switch k {
	case LoginSAM:
		return "sam"
	case LoginUPN:
		return "upn"
	case LoginDN:
		return "dn"
	default:
		return fmt.Sprintf("LoginKind(%d)", int(k))
	}
}

// Login is a bind name the gateway accepted, in one normalised shape.
type Login struct {
	// Kind is the form the name was typed in.
	Kind LoginKind
	// Value is what the directory is asked for: the sAMAccountName (for a
	// down-level name, the part after the backslash), the UPN, or the DN
	// re-serialised from its parsed form. Leading and trailing spaces are gone;
	// case is kept.
	Value string
	// Key identifies the account the login names as far as the string alone can
	// tell, for the DN cache: "sam:jdoe", "upn:jdoe@aadds.example.test",
	// "dn:cn=john doe,ou=aaddc users,dc=aadds,dc=example,dc=test". JDoe, " jdoe "
	// and AADDS\jdoe have one key.
	Key string

	// dn is the parsed DN of a LoginDN, for the scope check.
	dn *ldap.DN
}

// UPNParts splits a LoginUPN's Value into the part before and after the '@';
// ok is false for other kinds.
func (l Login) UPNParts() (local, suffix string, ok bool) {
	if l.Kind != LoginUPN {
		return "", "", false
	}
	i := strings.LastIndexByte(l.Value, '@')
	return l.Value[:i], l.Value[i+1:], true
}

// ParseLogin turns a bind name into a Login. It accepts
//
//   - a sAMAccountName: "jdoe", "JDoe", " jdoe " (spaces around are trimmed);
//   - a userPrincipalName: "jdoe@aadds.example.test", with any suffix;
//   - a down-level logon name "AADDS\jdoe", when the part before the backslash
//     equals netbiosDomain ignoring case (an empty netbiosDomain refuses them);
//   - a DN (anything containing '='), parsed per RFC 4514.
//
// It refuses an empty name, one over MaxLoginBytes, invalid UTF-8, control
// characters anywhere (also escaped inside a DN), a sAMAccountName with a
// character AD forbids there or longer than MaxSAMAccountNameChars, and a UPN
// with an empty part or more than one '@'. Every refusal wraps ErrInvalidLogin.
//
// Whether a DN lies inside the served base is the Resolver's check: the base
// is configuration, not syntax.
func ParseLogin(name string, netbiosDomain string) (Login, error) {
	if len(name) > MaxLoginBytes {
		return Login{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidLogin, MaxLoginBytes)
	}
	if err := checkText(name); err != nil {
		return Login{}, err
	}
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return Login{}, fmt.Errorf("%w: empty", ErrInvalidLogin)
	case strings.ContainsRune(name, '='):
		return parseDNLogin(name)
	case strings.ContainsRune(name, '\\'):
		return parseDownLevel(name, netbiosDomain)
	case strings.ContainsRune(name, '@'):
		return parseUPN(name)
	default:
		if err := checkSAM(name); err != nil {
			return Login{}, err
		}
		return samLogin(name), nil
	}
}

func samLogin(name string) Login {
	return Login{Kind: LoginSAM, Value: name, Key: "sam:" + strings.ToLower(name)}
}

func parseDownLevel(name, netbiosDomain string) (Login, error) {
	domain, user, _ := strings.Cut(name, `\`)
	if netbiosDomain == "" {
		return Login{}, fmt.Errorf("%w: DOMAIN\\user logins are not enabled", ErrInvalidLogin)
	}
	if !strings.EqualFold(domain, netbiosDomain) {
		return Login{}, fmt.Errorf("%w: another domain", ErrInvalidLogin)
	}
	if err := checkSAM(user); err != nil {
		return Login{}, err
	}
	if strings.TrimLeftFunc(user, unicode.IsSpace) != user {
		// No account name starts with a space, and typed alone (trimmed)
		// the name would be another one.
		return Login{}, fmt.Errorf("%w: a space after DOMAIN\\", ErrInvalidLogin)
	}
	if strings.ContainsRune(user, '@') {
		// AD allows '@' in a sAMAccountName set in code, but Windows logs
		// nobody on as DOMAIN\r@cameron; and typed alone the name would be a
		// UPN, another account.
		return Login{}, fmt.Errorf("%w: an account name with '@' after DOMAIN\\: log on with the user principal name", ErrInvalidLogin)
	}
	return samLogin(user), nil
}

func parseUPN(name string) (Login, error) {
	local, suffix, _ := strings.Cut(name, "@")
	switch {
	case local == "" || suffix == "":
		return Login{}, fmt.Errorf("%w: user principal name with an empty part", ErrInvalidLogin)
	case strings.ContainsRune(suffix, '@'):
		return Login{}, fmt.Errorf("%w: user principal name with more than one '@'", ErrInvalidLogin)
	}
	return Login{Kind: LoginUPN, Value: name, Key: "upn:" + strings.ToLower(name)}, nil
}

func parseDNLogin(name string) (Login, error) {
	dn, err := ldap.ParseDN(name)
	if err != nil {
		return Login{}, fmt.Errorf("%w: %w", ErrInvalidLogin, err)
	}
	if len(dn.RDNs) == 0 {
		return Login{}, fmt.Errorf("%w: empty DN", ErrInvalidLogin)
	}
	for _, rdn := range dn.RDNs {
		for _, atv := range rdn.Attributes {
			if !configs.ValidAttributeType(atv.Type) {
				return Login{}, fmt.Errorf("%w: bad attribute type in DN", ErrInvalidLogin)
			}
			if atv.Value == "" {
				return Login{}, fmt.Errorf("%w: empty value in DN", ErrInvalidLogin)
			}
			// An escape such as \00 decodes to a control character the raw
			// check could not see.
			if err := checkText(atv.Value); err != nil {
				return Login{}, err
			}
		}
	}
	return Login{Kind: LoginDN, Value: formatDN(dn, false), Key: "dn:" + formatDN(dn, true), dn: dn}, nil
}

// formatDN serialises a parsed DN per RFC 4514, escaping values with
// ldap.EscapeDN, so the string sent upstream is exactly the DN whose scope was
// checked. fold lowercases types and values and sorts multi-valued RDNs, for
// a cache key (AD compares DNs ignoring case).
func formatDN(dn *ldap.DN, fold bool) string {
	var b strings.Builder
	for i, rdn := range dn.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		if len(rdn.Attributes) == 1 { // nearly always: written without a detour
			writeATV(&b, rdn.Attributes[0], fold)
			continue
		}
		parts := make([]string, len(rdn.Attributes))
		for j, atv := range rdn.Attributes {
			var p strings.Builder
			writeATV(&p, atv, fold)
			parts[j] = p.String()
		}
		if fold {
			slices.Sort(parts)
		}
		b.WriteString(strings.Join(parts, "+"))
	}
	return b.String()
}

// writeATV writes one type=value of an RDN, the value escaped (see formatDN).
func writeATV(b *strings.Builder, atv *ldap.AttributeTypeAndValue, fold bool) {
	typ, val := atv.Type, atv.Value
	if fold {
		typ, val = strings.ToLower(typ), strings.ToLower(val)
	}
	b.WriteString(typ)
	b.WriteByte('=')
	if !needsDNEscape(val) {
		b.WriteString(val) // ldap.EscapeDN would copy it unchanged
		return
	}
	esc := ldap.EscapeDN(val)
	if strings.HasSuffix(esc, `\ `) {
		// A trailing space escaped as "\ " would be cut off by the TrimSpace
		// of a login typed with this DN (found by FuzzParseLogin); "\20" is
		// the same value and survives.
		esc = esc[:len(esc)-2] + `\20`
	}
	b.WriteString(esc)
}

// needsDNEscape reports whether ldap.EscapeDN could change v: anything but
// ASCII without RFC 4514's special characters, a leading '#' and spaces at
// either end.
func needsDNEscape(v string) bool {
	switch {
	case v == "":
		return false
	case v[0] == ' ', v[0] == '#', v[len(v)-1] == ' ':
		return true
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= utf8.RuneSelf, c == 0:
			return true
		case c == '"', c == '+', c == ',', c == ';', c == '<', c == '>', c == '\\':
			return true
		}
	}
	return false
}

// checkText refuses invalid UTF-8 and control characters (C0, DEL, C1).
func checkText(s string) error {
	if printableASCII(s) {
		return nil // the common case, checked without decoding
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not UTF-8", ErrInvalidLogin)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: control character", ErrInvalidLogin)
	}
	return nil
}

// checkSAM applies AD's rules for a sAMAccountName, where AD has them: the
// forbidden characters and the length. Other oddities AD refuses only when an
// account is created (a trailing dot, say) are left for the directory to
// answer "no such user".
func checkSAM(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty account name", ErrInvalidLogin)
	case strings.ContainsAny(s, samForbidden):
		return fmt.Errorf("%w: character not allowed in an account name", ErrInvalidLogin)
	case utf8.RuneCountInString(s) > MaxSAMAccountNameChars:
		return fmt.Errorf("%w: account name longer than %d characters", ErrInvalidLogin, MaxSAMAccountNameChars)
	}
	return checkText(s)
}
