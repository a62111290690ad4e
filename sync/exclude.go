package usersync

import (
	"fmt"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// This file keeps the gateway's service account and the entries matching
// sync.exclude_filter out of every import.
//
// The filter matcher here is deliberately minimal (and, or, not, equality,
// presence, substrings): the full AD filter evaluator lives in
// integration/adsim (FilterEvaluator) and is meant to move to a shared package;
// once it does, excluder.matches should use it and this matcher goes away.
// Until then a filter with any other item (>=, <=, ~=, extensible matches such
// as BIT_AND or IN_CHAIN) is refused when the importer is built, rather than
// silently matching nothing.

// excluder decides which entries never appear in an import.
type excluder struct {
	// The service account (upstream.bind_dn), in whichever form it was given.
	serviceDN  *ldap.DN // bind_dn as a DN
	serviceUPN string   // bind_dn as a UPN, lower case
	serviceSAM string   // a bare or DOMAIN\ name, or a UPN's local part; lower case

	filter     *ber.Packet // sync.exclude_filter, nil when unset
	filterText string
}

// newExcluder builds the excluder for the service account bindDN (a DN, a UPN,
// DOMAIN\name or a bare sAMAccountName) and the LDAP filter exclude ("" for
// none).
func newExcluder(bindDN, exclude string) (*excluder, error) {
	x := &excluder{}
	name := strings.TrimSpace(bindDN)
	switch {
	case name == "":
	case strings.Contains(name, "="):
		dn, err := ldap.ParseDN(name)
		if err != nil || len(dn.RDNs) == 0 {
			return nil, fmt.Errorf("service account %q is not a DN: %w", name, err)
		}
		x.serviceDN = dn
	case strings.Contains(name, "@"):
		x.serviceUPN = strings.ToLower(name)
		x.serviceSAM = x.serviceUPN[:strings.LastIndexByte(x.serviceUPN, '@')]
	default:
		if i := strings.LastIndexByte(name, '\\'); i >= 0 {
			name = name[i+1:]
		}
		x.serviceSAM = strings.ToLower(name)
	}
	if exclude = strings.TrimSpace(exclude); exclude != "" {
		f, err := ldap.CompileFilter(exclude)
		if err != nil {
			return nil, fmt.Errorf("sync.exclude_filter: %w", err)
		}
		if err := checkExcludeFilter(f); err != nil {
			return nil, fmt.Errorf("sync.exclude_filter %q: %w", exclude, err)
		}
		x.filter, x.filterText = f, exclude
	}
	return x, nil
}

// reason returns why e is kept out of the import, or "" when it is not.
func (x *excluder) reason(e *Entry) string {
	if x.isServiceAccount(e) {
		return "the gateway's service account (upstream.bind_dn)"
	}
	if x.filter != nil && excludeMatch(x.filter, e) {
		return "matches sync.exclude_filter " + x.filterText
	}
	return ""
}

// isServiceAccount reports whether e is the service account. A UPN bind_dn
// matches the entry's userPrincipalName; its local part is compared with
// sAMAccountName only for an entry without a userPrincipalName, because on
// AADDS the two may differ (sAMAccountName can be auto-generated).
func (x *excluder) isServiceAccount(e *Entry) bool {
	if x.serviceDN != nil {
		dn, err := ldap.ParseDN(e.DN)
		if err == nil && x.serviceDN.EqualFold(dn) {
			return true
		}
	}
	upn := strings.TrimSpace(e.First("userPrincipalName"))
	if x.serviceUPN != "" && upn != "" {
		return strings.EqualFold(upn, x.serviceUPN)
	}
	return x.serviceSAM != "" && strings.EqualFold(strings.TrimSpace(e.First("sAMAccountName")), x.serviceSAM)
}

// checkExcludeFilter refuses filter items excludeMatch does not evaluate.
func checkExcludeFilter(f *ber.Packet) error {
	switch f.Tag {
	case ldap.FilterAnd, ldap.FilterOr, ldap.FilterNot:
		for _, c := range f.Children {
			if err := checkExcludeFilter(c); err != nil {
				return err
			}
		}
		return nil
	case ldap.FilterEqualityMatch, ldap.FilterSubstrings, ldap.FilterPresent:
		return nil
	}
	what := ldap.FilterMap[uint64(f.Tag)]
	if what == "" {
		what = fmt.Sprintf("filter item %d", f.Tag)
	}
	return fmt.Errorf("%s is not supported here: use and, or, not, equality, presence and substrings", what)
}

// excludeMatch evaluates a filter accepted by checkExcludeFilter against e.
// Values compare case-insensitively, DN values (memberOf=CN=...) as DNs. An
// attribute the entry lacks matches nothing, so (!(a=x)) matches it — the
// filter is two-valued, which RFC 4511 gives for these items on attributes
// that exist in the schema. distinguishedName and objectGUID come from the
// entry itself, and every entry has an objectClass.
func excludeMatch(f *ber.Packet, e *Entry) bool {
	switch f.Tag {
	case ldap.FilterAnd:
		for _, c := range f.Children {
			if !excludeMatch(c, e) {
				return false
			}
		}
		return true
	case ldap.FilterOr:
		for _, c := range f.Children {
			if excludeMatch(c, e) {
				return true
			}
		}
		return false
	case ldap.FilterNot:
		return len(f.Children) == 1 && !excludeMatch(f.Children[0], e)
	case ldap.FilterPresent:
		name := string(f.Data.Bytes())
		return strings.EqualFold(name, "objectClass") || len(excludeValues(e, name)) > 0
	case ldap.FilterEqualityMatch:
		if len(f.Children) != 2 {
			return false
		}
		want := string(f.Children[1].Data.Bytes())
		for _, v := range excludeValues(e, string(f.Children[0].Data.Bytes())) {
			if excludeEqual(v, want) {
				return true
			}
		}
		return false
	case ldap.FilterSubstrings:
		if len(f.Children) != 2 {
			return false
		}
		for _, v := range excludeValues(e, string(f.Children[0].Data.Bytes())) {
			if excludeSubstrings(strings.ToLower(v), f.Children[1].Children) {
				return true
			}
		}
		return false
	}
	return false
}

// excludeValues returns the values a filter sees for the attribute name.
func excludeValues(e *Entry, name string) []string {
	if v := e.Get(name); len(v) > 0 {
		return v
	}
	switch strings.ToLower(name) {
	case "distinguishedname":
		return []string{e.DN}
	case "objectguid":
		return []string{e.GUID}
	}
	return nil
}

// excludeEqual compares case-insensitively, and two DNs as DNs (so spacing and
// escaping do not matter).
func excludeEqual(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	if !strings.Contains(a, "=") || !strings.Contains(b, "=") {
		return false
	}
	da, err := ldap.ParseDN(a)
	if err != nil {
		return false
	}
	db, err := ldap.ParseDN(b)
	return err == nil && da.EqualFold(db)
}

// excludeSubstrings matches a lower-case value against initial, any and final
// parts in order, without overlap.
func excludeSubstrings(value string, parts []*ber.Packet) bool {
	for i, p := range parts {
		s := strings.ToLower(string(p.Data.Bytes()))
		switch p.Tag {
		case ldap.FilterSubstringsInitial:
			if i != 0 || !strings.HasPrefix(value, s) {
				return false
			}
			value = value[len(s):]
		case ldap.FilterSubstringsFinal:
			return i == len(parts)-1 && strings.HasSuffix(value, s)
		default:
			j := strings.Index(value, s)
			if j < 0 {
				return false
			}
			value = value[j+len(s):]
		}
	}
	return true
}
