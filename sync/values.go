package usersync

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// The view stores text only (an Entry is JSON in the store and text in every
// sink), so binary attributes are converted when an entry is read from AD:
// objectGUID to its canonical GUID form, objectSid to S-1-5-…, and any other
// value that is not valid UTF-8 to standard base64 with the prefix "base64:".

// bookkeeping are the attributes that differ between DCs without the user
// having changed (uSNChanged, uSNCreated and whenChanged are not replicated):
// they are stored, but a difference in them alone is not a change of the entry.
var bookkeeping = []string{"uSNChanged", "uSNCreated", "whenChanged"}

// entryFromLDAP converts one search result entry into an Entry whose Attrs use
// the spelling of attrs (sync.attributes). Values of multi-valued attributes are
// sorted: LDAP values are a set, and a stable order keeps the view from seeing a
// change where only the DC's order differs.
func entryFromLDAP(e *ldap.Entry, attrs []string) (Entry, error) {
	raw := e.GetEqualFoldRawAttributeValue("objectGUID")
	guid := formatGUID(raw)
	if guid == "" {
		return Entry{}, fmt.Errorf("entry %q has no valid objectGUID (%d bytes)", e.DN, len(raw))
	}
	// The map is made for the attributes the entry has, not all those asked
	// for: most users lack half of them, and a map sized for twenty holds
	// twice the slots (the view keeps one per user).
	found := make([]*ldap.EntryAttribute, len(attrs))
	n := 0
	for i, name := range attrs {
		for _, ea := range e.Attributes {
			if strings.EqualFold(ea.Name, name) {
				if len(ea.ByteValues) > 0 {
					found[i] = ea
					n++
				}
				break
			}
		}
	}
	out := Entry{GUID: guid, DN: e.DN, Attrs: make(map[string][]string, n)}
	for i, name := range attrs {
		a := found[i]
		if a == nil {
			continue
		}
		vals := make([]string, 0, len(a.ByteValues))
		for _, b := range a.ByteValues {
			vals = append(vals, textValue(name, b))
		}
		slices.Sort(vals)
		out.Attrs[name] = vals
	}
	return out, nil
}

// textValue renders one attribute value as text.
func textValue(name string, b []byte) string {
	switch {
	case strings.EqualFold(name, "objectGUID"):
		if g := formatGUID(b); g != "" {
			return g
		}
	case strings.EqualFold(name, "objectSid"):
		if s := formatSID(b); s != "" {
			return s
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// guidOrder is the byte order of AD's objectGUID text form: the first three
// fields are little endian.
var guidOrder = [16]int{3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15}

// formatGUID renders AD's 16-byte objectGUID as AD tools print it
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, lowercase), or "" when b is not 16 bytes.
func formatGUID(b []byte) string {
	if len(b) != 16 {
		return ""
	}
	var ordered [16]byte
	for i, j := range guidOrder {
		ordered[i] = b[j]
	}
	h := hex.EncodeToString(ordered[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// parseGUID is the inverse of formatGUID: the 16 bytes AD stores.
func parseGUID(s string) ([]byte, error) {
	h, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(h) != 16 || len(s) != 36 {
		return nil, fmt.Errorf("%q is not a GUID", s)
	}
	out := make([]byte, 16)
	for i, j := range guidOrder {
		out[j] = h[i]
	}
	return out, nil
}

// guidFilter is an equality filter on objectGUID matching the GUID's bytes.
func guidFilter(guid string) (string, error) {
	b, err := parseGUID(guid)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString("(objectGUID=")
	for _, c := range b {
		fmt.Fprintf(&sb, `\%02x`, c)
	}
	sb.WriteString(")")
	return sb.String(), nil
}

// formatSID renders a binary security identifier as S-1-…, or "" when b is
// not one.
func formatSID(b []byte) string {
	if len(b) < 8 || b[0] != 1 || len(b) != 8+4*int(b[1]) {
		return ""
	}
	var auth uint64
	for _, c := range b[2:8] {
		auth = auth<<8 | uint64(c)
	}
	s := "S-1-" + strconv.FormatUint(auth, 10)
	for i := 0; i < int(b[1]); i++ {
		s += "-" + strconv.FormatUint(uint64(binary.LittleEndian.Uint32(b[8+4*i:])), 10)
	}
	return s
}

// sameEntry reports whether a and b hold the same DN and attributes, ignoring
// the bookkeeping attributes.
func sameEntry(a, b *Entry) bool {
	if a.GUID != b.GUID || a.DN != b.DN {
		return false
	}
	return sameAttrs(a.Attrs, b.Attrs, true)
}

// identical reports whether a and b are the same in every byte that is stored.
func identical(a, b *Entry) bool {
	return a.GUID == b.GUID && a.DN == b.DN && sameAttrs(a.Attrs, b.Attrs, false)
}

func sameAttrs(a, b map[string][]string, skipBookkeeping bool) bool {
	skip := func(k string) bool {
		return skipBookkeeping && slices.ContainsFunc(bookkeeping, func(n string) bool { return strings.EqualFold(n, k) })
	}
	na, nb := 0, 0
	for k, va := range a {
		if skip(k) {
			continue
		}
		na++
		if !slices.Equal(va, b[k]) {
			return false
		}
	}
	for k := range b {
		if !skip(k) {
			nb++
		}
	}
	return na == nb
}

// normalizeDN is the key of the view's DN index: attribute types and values
// lowercased, escaping made uniform, spaces around separators dropped, so that
// every spelling AD accepts for one DN finds the entry. A string that does not
// parse as a DN is only lowercased.
func normalizeDN(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	var sb strings.Builder
	for i, rdn := range parsed.RDNs {
		if i > 0 {
			sb.WriteByte(',')
		}
		parts := make([]string, 0, len(rdn.Attributes))
		for _, a := range rdn.Attributes {
			parts = append(parts, strings.ToLower(a.Type)+"="+ldap.EscapeDN(strings.ToLower(a.Value)))
		}
		slices.Sort(parts)
		sb.WriteString(strings.Join(parts, "+"))
	}
	return sb.String()
}
