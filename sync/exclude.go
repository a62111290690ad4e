package usersync

import (
	"errors"
	"fmt"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// This file keeps the gateway's service account and the entries matching
// sync.exclude_filter out of every import.
//
// The filter is evaluated by sync/ldapfilter, AD's rules (and, or, not,
// equality, presence, substrings, >=, <=, ~= as equality, BIT_AND, BIT_OR) over
// the view's entries. Nested group membership (IN_CHAIN) and other matching
// rules are refused when the importer is built, rather than silently
// evaluated on what the view does not hold.

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

// checkExcludeFilter refuses filter items the view cannot evaluate: nested
// group membership (IN_CHAIN: the view holds no groups, so only direct
// memberships could be compared, and a nested member would silently stay in
// the import), matching rules other than AD's bitwise ones, and dnAttributes.
func checkExcludeFilter(f *ber.Packet) error {
	items, err := ldapfilter.Items(f)
	if err != nil {
		return err
	}
	for _, it := range items {
		if it.Op != ldap.FilterExtensibleMatch {
			continue
		}
		switch {
		case it.DNAttributes:
			return errors.New("an extensible match with dnAttributes (:dn:) is not supported here")
		case it.Rule == ldapfilter.MatchingRuleInChain:
			return errors.New("nested group membership (" + ldapfilter.MatchingRuleInChain + ") is not supported here: " +
				"the view holds no groups; use (memberOf=<group DN>) for direct members, or leave the group out of sync.filter")
		case it.Rule != "" && it.Rule != ldapfilter.MatchingRuleBitAnd && it.Rule != ldapfilter.MatchingRuleBitOr:
			return fmt.Errorf("matching rule %q is not supported here: use none, %s (BIT_AND) or %s (BIT_OR)",
				it.Rule, ldapfilter.MatchingRuleBitAnd, ldapfilter.MatchingRuleBitOr)
		}
	}
	return nil
}

// excludeEvaluator evaluates sync.exclude_filter: values compare
// case-insensitively, DN-valued attributes (memberOf=CN=...) as DNs, and
// objectGUID as the view's text form of the GUID.
var excludeEvaluator = ldapfilter.FilterEvaluator{Syntax: func(attr string) ldapfilter.Syntax {
	if strings.EqualFold(attr, "objectGUID") {
		return ldapfilter.SyntaxString
	}
	return viewSyntax(attr)
}}

// excludeMatch evaluates a filter accepted by checkExcludeFilter against e.
// An attribute the entry lacks (or that is not in sync.attributes) has no
// value, so (!(a=x)) matches it. distinguishedName and objectGUID come from
// the entry itself, and every entry has an objectClass.
func excludeMatch(f *ber.Packet, e *Entry) bool {
	ok, err := excludeEvaluator.Match(f, func(name string) []string {
		if v := e.Get(name); len(v) > 0 {
			return v
		}
		switch strings.ToLower(name) {
		case "distinguishedname":
			return []string{e.DN}
		case "objectguid":
			return []string{e.GUID}
		case "objectclass":
			return []string{"top"}
		}
		return nil
	})
	return err == nil && ok
}
