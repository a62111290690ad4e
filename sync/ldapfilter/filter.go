// Package ldapfilter evaluates LDAP search filters (RFC 4511/4515) the way
// Active Directory does, over entries the caller exposes through an
// attribute-lookup function: the directory view's searches, the import's
// exclude filter and the AD simulator all use it. It depends only on go-ldap
// and its BER package.
package ldapfilter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Active Directory's extensible matching rules.
const (
	// MatchingRuleBitAnd (LDAP_MATCHING_RULE_BIT_AND) matches an integer attribute
	// when every bit of the assertion value is set in it.
	MatchingRuleBitAnd = "1.2.840.113556.1.4.803"
	// MatchingRuleBitOr (LDAP_MATCHING_RULE_BIT_OR) matches an integer attribute
	// when any bit of the assertion value is set in it.
	MatchingRuleBitOr = "1.2.840.113556.1.4.804"
	// MatchingRuleInChain (LDAP_MATCHING_RULE_IN_CHAIN) matches a DN-valued link
	// attribute (memberOf, member, manager, ...) when the assertion DN is reachable
	// by following that attribute transitively, e.g. nested group membership.
	MatchingRuleInChain = "1.2.840.113556.1.4.1941"
)

// maxChainVisits bounds an IN_CHAIN walk: AD itself gives up on very deep or
// wide chains, and a bound keeps a cyclic or huge graph from stalling a search.
const maxChainVisits = 10000

// ErrInvalidFilter means a filter packet is not a well-formed LDAP filter.
var ErrInvalidFilter = errors.New("invalid filter")

// Attributes returns the values of an entry's attribute, the name matched
// case-insensitively, or nil when the entry has no such attribute.
type Attributes func(name string) []string

// Syntax says how the values of an attribute are compared.
type Syntax int

const (
	// SyntaxString compares case-insensitively; ordering (>=, <=) is numeric when
	// both sides are integers and otherwise lexical.
	SyntaxString Syntax = iota
	// SyntaxDN compares distinguished names after normalising both (NormalizeDN).
	SyntaxDN
	// SyntaxOctets compares raw bytes exactly (objectGUID, objectSid).
	SyntaxOctets
)

// FilterEvaluator evaluates compiled LDAP filters against entries, following
// RFC 4511's three-valued logic: an item that cannot be evaluated (an unknown
// matching rule, a non-integer operand of a bitwise rule) is Undefined, and
// Undefined never matches, even under a NOT. The zero value is usable.
type FilterEvaluator struct {
	// Syntax returns how an attribute compares; nil means SyntaxString for all.
	Syntax func(attr string) Syntax
	// Resolve returns the attributes of the entry named dn, or nil when there is
	// none. MatchingRuleInChain walks links through it; with Resolve nil only the
	// direct values are compared.
	Resolve func(dn string) Attributes
}

// truth is the three-valued result of a filter item (RFC 4511 section 4.5.1.7).
type truth int8

const (
	isFalse truth = iota
	isTrue
	isUndefined
)

// Match reports whether entry matches filter, a packet from ldap.CompileFilter
// or one decoded from a search request. It fails with ErrInvalidFilter when the
// packet is not a filter.
func (ev *FilterEvaluator) Match(filter *ber.Packet, entry Attributes) (bool, error) {
	t, err := ev.eval(filter, entry)
	return t == isTrue, err
}

func (ev *FilterEvaluator) eval(f *ber.Packet, entry Attributes) (truth, error) {
	if f == nil || f.ClassType != ber.ClassContext {
		return isUndefined, fmt.Errorf("%w: not a filter choice", ErrInvalidFilter)
	}
	switch f.Tag {
	case ldap.FilterAnd:
		result := isTrue
		for _, child := range f.Children {
			t, err := ev.eval(child, entry)
			if err != nil {
				return isUndefined, err
			}
			if t == isFalse {
				return isFalse, nil
			}
			if t == isUndefined {
				result = isUndefined
			}
		}
		return result, nil
	case ldap.FilterOr:
		result := isFalse
		for _, child := range f.Children {
			t, err := ev.eval(child, entry)
			if err != nil {
				return isUndefined, err
			}
			if t == isTrue {
				return isTrue, nil
			}
			if t == isUndefined {
				result = isUndefined
			}
		}
		return result, nil
	case ldap.FilterNot:
		if len(f.Children) != 1 {
			return isUndefined, fmt.Errorf("%w: not needs one operand", ErrInvalidFilter)
		}
		t, err := ev.eval(f.Children[0], entry)
		switch {
		case err != nil:
			return isUndefined, err
		case t == isTrue:
			return isFalse, nil
		case t == isFalse:
			return isTrue, nil
		}
		return isUndefined, nil
	case ldap.FilterPresent:
		return truthOf(len(entry(string(f.Data.Bytes()))) > 0), nil
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch, ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual:
		attr, value, err := assertion(f)
		if err != nil {
			return isUndefined, err
		}
		return ev.compare(f.Tag, attr, value, entry(attr)), nil
	case ldap.FilterSubstrings:
		return ev.substrings(f, entry)
	case ldap.FilterExtensibleMatch:
		return ev.extensible(f, entry)
	}
	return isUndefined, fmt.Errorf("%w: unknown filter choice %d", ErrInvalidFilter, f.Tag)
}

func truthOf(b bool) truth {
	if b {
		return isTrue
	}
	return isFalse
}

// assertion returns the attribute description and assertion value of an
// AttributeValueAssertion.
func assertion(f *ber.Packet) (attr, value string, err error) {
	if len(f.Children) != 2 {
		return "", "", fmt.Errorf("%w: attribute value assertion needs two parts", ErrInvalidFilter)
	}
	return string(f.Children[0].Data.Bytes()), string(f.Children[1].Data.Bytes()), nil
}

func (ev *FilterEvaluator) syntax(attr string) Syntax {
	if ev.Syntax == nil {
		return SyntaxString
	}
	return ev.Syntax(attr)
}

// compare evaluates equality (approximate match is equality, as in AD for most
// syntaxes), >= and <= over every value of the attribute.
func (ev *FilterEvaluator) compare(op ber.Tag, attr, asserted string, values []string) truth {
	syn := ev.syntax(attr)
	for _, v := range values {
		var ok bool
		switch op {
		case ldap.FilterGreaterOrEqual:
			ok = order(syn, v, asserted) >= 0
		case ldap.FilterLessOrEqual:
			ok = order(syn, v, asserted) <= 0
		default:
			ok = equal(syn, v, asserted)
		}
		if ok {
			return isTrue
		}
	}
	return isFalse
}

func equal(syn Syntax, a, b string) bool {
	switch syn {
	case SyntaxOctets:
		return a == b
	case SyntaxDN:
		return EqualDN(a, b)
	}
	return strings.EqualFold(a, b)
}

// order compares a and b: integers numerically, anything else as lower-case text.
func order(syn Syntax, a, b string) int {
	if syn == SyntaxOctets {
		return strings.Compare(a, b)
	}
	if x, err := strconv.ParseInt(a, 10, 64); err == nil {
		if y, err := strconv.ParseInt(b, 10, 64); err == nil {
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	}
	return strings.Compare(strings.ToLower(a), strings.ToLower(b))
}

func (ev *FilterEvaluator) substrings(f *ber.Packet, entry Attributes) (truth, error) {
	if len(f.Children) != 2 || len(f.Children[1].Children) == 0 {
		return isUndefined, fmt.Errorf("%w: substrings filter needs an attribute and parts", ErrInvalidFilter)
	}
	attr := string(f.Children[0].Data.Bytes())
	fold := ev.syntax(attr) != SyntaxOctets
	parts := f.Children[1].Children
	for _, v := range entry(attr) {
		if fold {
			v = strings.ToLower(v)
		}
		if matchSubstrings(v, parts, fold) {
			return isTrue, nil
		}
	}
	return isFalse, nil
}

// matchSubstrings matches value against initial, any and final parts in order,
// without overlap.
func matchSubstrings(value string, parts []*ber.Packet, fold bool) bool {
	for i, p := range parts {
		s := string(p.Data.Bytes())
		if fold {
			s = strings.ToLower(s)
		}
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

// extensible evaluates a MatchingRuleAssertion: no rule means equality, and AD's
// BIT_AND, BIT_OR and IN_CHAIN rules are supported. The dnAttributes flag and
// any other rule evaluate to Undefined, as does an assertion without a type.
func (ev *FilterEvaluator) extensible(f *ber.Packet, entry Attributes) (truth, error) {
	var rule, attr, value string
	var dnAttributes bool
	for _, c := range f.Children {
		switch c.Tag {
		case ldap.MatchingRuleAssertionMatchingRule:
			rule = string(c.Data.Bytes())
		case ldap.MatchingRuleAssertionType:
			attr = string(c.Data.Bytes())
		case ldap.MatchingRuleAssertionMatchValue:
			value = string(c.Data.Bytes())
		case ldap.MatchingRuleAssertionDNAttributes:
			b := c.Data.Bytes()
			dnAttributes = len(b) == 1 && b[0] != 0
		default:
			return isUndefined, fmt.Errorf("%w: unknown matching rule assertion part %d", ErrInvalidFilter, c.Tag)
		}
	}
	if attr == "" || dnAttributes {
		return isUndefined, nil
	}
	switch rule {
	case "":
		return ev.compare(ldap.FilterEqualityMatch, attr, value, entry(attr)), nil
	case MatchingRuleBitAnd, MatchingRuleBitOr:
		return bitwise(rule == MatchingRuleBitAnd, value, entry(attr)), nil
	case MatchingRuleInChain:
		return truthOf(ev.inChain(attr, value, entry)), nil
	}
	return isUndefined, nil
}

// bitwise applies BIT_AND or BIT_OR. Values are parsed as signed 64-bit integers,
// so negative 32-bit values such as groupType keep their high bits.
func bitwise(and bool, asserted string, values []string) truth {
	mask, err := strconv.ParseInt(asserted, 10, 64)
	if err != nil {
		return isUndefined
	}
	result := isFalse
	for _, v := range values {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			result = isUndefined
			continue
		}
		if (and && n&mask == mask) || (!and && n&mask != 0) {
			return isTrue
		}
	}
	return result
}

// inChain reports whether target is reachable from entry by following attr
// transitively (breadth first, each DN visited once).
func (ev *FilterEvaluator) inChain(attr, target string, entry Attributes) bool {
	queue := append([]string(nil), entry(attr)...)
	seen := make(map[string]bool, len(queue))
	for visits := 0; len(queue) > 0 && visits < maxChainVisits; visits++ {
		dn := queue[0]
		queue = queue[1:]
		key := dn
		if n, err := NormalizeDN(dn); err == nil {
			key = n
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		if EqualDN(dn, target) {
			return true
		}
		if ev.Resolve == nil {
			continue
		}
		if next := ev.Resolve(dn); next != nil {
			queue = append(queue, next(attr)...)
		}
	}
	return false
}

// NormalizeDN returns dn in a canonical form for comparisons: attribute types
// and values in lower case, spaces around separators removed, and one escaping
// of special characters (so `\,` and `\2C` normalise alike). It fails when dn
// is not a valid DN.
func NormalizeDN(dn string) (string, error) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return "", fmt.Errorf("parse dn: %w", err)
	}
	for _, rdn := range parsed.RDNs {
		for _, a := range rdn.Attributes {
			a.Value = strings.ToLower(a.Value)
		}
	}
	return parsed.String(), nil
}

// EqualDN reports whether a and b name the same entry (distinguishedNameMatch,
// case-insensitive). Strings that do not parse as DNs compare case-insensitively
// as text, which is how AD matches objectCategory=person against a DN value.
func EqualDN(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	if plainDN(a) && plainDN(b) {
		// Without escapes, quotes, '+' or optional spaces the texts are already canonical.
		return false
	}
	na, errA := NormalizeDN(a)
	nb, errB := NormalizeDN(b)
	if errA != nil || errB != nil {
		return false
	}
	return na == nb
}

// plainDN reports whether dn has none of the characters that let two different
// spellings name the same entry.
func plainDN(dn string) bool {
	for i := 0; i < len(dn); i++ {
		switch c := dn[i]; c {
		case '\\', '"', '+', ';', '#':
			return false
		case ' ':
			if i == 0 || i == len(dn)-1 {
				return false
			}
			if p, n := dn[i-1], dn[i+1]; p == ',' || p == '=' || n == ',' || n == '=' {
				return false
			}
		}
	}
	return true
}
