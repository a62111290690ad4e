package ldapfilter

// Reasoning about filters without an entry: what a filter asks for (Items),
// which parts of it are ANDed at the top (Conjuncts), a canonical form that
// equal filters share (Canonical), and a copy with parts known to be true
// replaced by TRUE (Assume). The directory view uses them to decide whether it
// can answer a search exactly as AD would.

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// maxDepth bounds the recursion of the functions below; the listener's
// connection guard refuses deeper filters before they reach them.
const maxDepth = 64

// Item is one assertion of a filter (a leaf: not and, or or not).
type Item struct {
	// Op is the filter choice: ldap.FilterEqualityMatch, FilterSubstrings,
	// FilterGreaterOrEqual, FilterLessOrEqual, FilterPresent, FilterApproxMatch
	// or FilterExtensibleMatch.
	Op ber.Tag
	// Attr is the attribute description as written ("" for an extensible match
	// without a type).
	Attr string
	// Value is the assertion value (the parts of a substrings filter joined by
	// "*"; "" for presence).
	Value string
	// Rule is an extensible match's matching rule ("" for none).
	Rule string
	// DNAttributes is an extensible match's dnAttributes flag.
	DNAttributes bool
}

// Items returns every assertion of f, depth first. It fails with
// ErrInvalidFilter when f is not a well-formed filter.
func Items(f *ber.Packet) ([]Item, error) {
	var out []Item
	err := walk(f, 0, func(it Item) { out = append(out, it) })
	return out, err
}

func walk(f *ber.Packet, depth int, visit func(Item)) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrInvalidFilter, maxDepth)
	}
	if f == nil || f.ClassType != ber.ClassContext {
		return fmt.Errorf("%w: not a filter choice", ErrInvalidFilter)
	}
	switch f.Tag {
	case ldap.FilterAnd, ldap.FilterOr, ldap.FilterNot:
		if f.Tag == ldap.FilterNot && len(f.Children) != 1 {
			return fmt.Errorf("%w: not needs one operand", ErrInvalidFilter)
		}
		for _, c := range f.Children {
			if err := walk(c, depth+1, visit); err != nil {
				return err
			}
		}
		return nil
	}
	it, err := item(f)
	if err != nil {
		return err
	}
	visit(it)
	return nil
}

// item describes the leaf f.
func item(f *ber.Packet) (Item, error) {
	it := Item{Op: f.Tag}
	switch f.Tag {
	case ldap.FilterPresent:
		it.Attr = string(f.Data.Bytes())
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch, ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual:
		attr, value, err := assertion(f)
		if err != nil {
			return Item{}, err
		}
		it.Attr, it.Value = attr, value
	case ldap.FilterSubstrings:
		if len(f.Children) != 2 || len(f.Children[1].Children) == 0 {
			return Item{}, fmt.Errorf("%w: substrings filter needs an attribute and parts", ErrInvalidFilter)
		}
		it.Attr = string(f.Children[0].Data.Bytes())
		parts := make([]string, 0, len(f.Children[1].Children))
		for _, p := range f.Children[1].Children {
			parts = append(parts, string(p.Data.Bytes()))
		}
		it.Value = strings.Join(parts, "*")
	case ldap.FilterExtensibleMatch:
		for _, c := range f.Children {
			switch c.Tag {
			case ldap.MatchingRuleAssertionMatchingRule:
				it.Rule = string(c.Data.Bytes())
			case ldap.MatchingRuleAssertionType:
				it.Attr = string(c.Data.Bytes())
			case ldap.MatchingRuleAssertionMatchValue:
				it.Value = string(c.Data.Bytes())
			case ldap.MatchingRuleAssertionDNAttributes:
				b := c.Data.Bytes()
				it.DNAttributes = len(b) == 1 && b[0] != 0
			default:
				return Item{}, fmt.Errorf("%w: unknown matching rule assertion part %d", ErrInvalidFilter, c.Tag)
			}
		}
	default:
		return Item{}, fmt.Errorf("%w: unknown filter choice %d", ErrInvalidFilter, f.Tag)
	}
	return it, nil
}

// Conjuncts returns the filters f ANDs together at its top: the children of
// an AND, and of every AND directly inside it, or f itself when it is not an
// AND. An empty AND (absolute true) has none.
func Conjuncts(f *ber.Packet) []*ber.Packet {
	if f == nil || f.ClassType != ber.ClassContext || f.Tag != ldap.FilterAnd {
		return []*ber.Packet{f}
	}
	var out []*ber.Packet
	for _, c := range f.Children {
		if c != nil && c.ClassType == ber.ClassContext && c.Tag == ldap.FilterAnd {
			out = append(out, Conjuncts(c)...)
			continue
		}
		out = append(out, c)
	}
	return out
}

// Canonical returns a form of f that two filters AD evaluates alike share
// when they differ only in spelling: attribute names and matching rules
// case-folded; values compared by syntax (SyntaxString values case-folded,
// SyntaxDN values normalised with NormalizeDN, SyntaxOctets values kept as
// bytes); the parts of an AND or OR sorted and without duplicates. syntax nil
// means SyntaxString for every attribute. Two filters with the same canonical
// form match the same entries; different forms say nothing. It fails with
// ErrInvalidFilter when f is not a well-formed filter.
func Canonical(f *ber.Packet, syntax func(attr string) Syntax) (string, error) {
	if syntax == nil {
		syntax = func(string) Syntax { return SyntaxString }
	}
	return canonical(f, syntax, 0)
}

func canonical(f *ber.Packet, syntax func(string) Syntax, depth int) (string, error) {
	if depth > maxDepth {
		return "", fmt.Errorf("%w: nested deeper than %d", ErrInvalidFilter, maxDepth)
	}
	if f == nil || f.ClassType != ber.ClassContext {
		return "", fmt.Errorf("%w: not a filter choice", ErrInvalidFilter)
	}
	switch f.Tag {
	case ldap.FilterAnd, ldap.FilterOr:
		parts := make([]string, 0, len(f.Children))
		for _, c := range f.Children {
			s, err := canonical(c, syntax, depth+1)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		slices.Sort(parts)
		parts = slices.Compact(parts)
		op := "&"
		if f.Tag == ldap.FilterOr {
			op = "|"
		}
		return "(" + op + strings.Join(parts, "") + ")", nil
	case ldap.FilterNot:
		if len(f.Children) != 1 {
			return "", fmt.Errorf("%w: not needs one operand", ErrInvalidFilter)
		}
		s, err := canonical(f.Children[0], syntax, depth+1)
		if err != nil {
			return "", err
		}
		return "(!" + s + ")", nil
	}
	it, err := item(f)
	if err != nil {
		return "", err
	}
	attr := strings.ToLower(it.Attr)
	syn := syntax(it.Attr)
	switch it.Op {
	case ldap.FilterPresent:
		return "(" + strconv.Quote(attr) + "=*)", nil
	case ldap.FilterSubstrings:
		parts := make([]string, 0, len(f.Children[1].Children))
		for _, p := range f.Children[1].Children {
			parts = append(parts, strconv.Itoa(int(p.Tag))+":"+canonicalValue(syn, string(p.Data.Bytes()), false))
		}
		return "(" + strconv.Quote(attr) + "=" + strings.Join(parts, "*") + ")", nil
	case ldap.FilterExtensibleMatch:
		rule := strings.ToLower(it.Rule)
		valueSyntax := syn
		switch rule {
		case MatchingRuleInChain:
			valueSyntax = SyntaxDN
		case MatchingRuleBitAnd, MatchingRuleBitOr:
			valueSyntax = SyntaxString
		}
		return fmt.Sprintf("(%s:%s:%t:=%s)", strconv.Quote(attr), strconv.Quote(rule), it.DNAttributes,
			canonicalValue(valueSyntax, it.Value, true)), nil
	}
	op := map[ber.Tag]string{
		ldap.FilterEqualityMatch:  "=",
		ldap.FilterApproxMatch:    "~=",
		ldap.FilterGreaterOrEqual: ">=",
		ldap.FilterLessOrEqual:    "<=",
	}[it.Op]
	return "(" + strconv.Quote(attr) + op + canonicalValue(syn, it.Value, true) + ")", nil
}

// canonicalValue renders one assertion value for Canonical; whole says the
// value is a whole value (not a substring part), which a DN may be.
func canonicalValue(syn Syntax, v string, whole bool) string {
	switch syn {
	case SyntaxOctets:
		return "#" + hex.EncodeToString([]byte(v))
	case SyntaxDN:
		if whole {
			if n, err := NormalizeDN(v); err == nil {
				return strconv.Quote(n)
			}
		}
	}
	return strconv.Quote(strings.ToLower(v))
}

// True returns an empty AND, the absolute true filter of RFC 4526, which the
// evaluator takes as true for every entry.
func True() *ber.Packet {
	return ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterAnd, nil, ldap.FilterMap[ldap.FilterAnd])
}

// Assume returns a copy of f in which every part for which holds returns true
// is replaced by True(): the filter an entry is evaluated with when those
// parts are known to hold for it. Parts of f not replaced are shared with f,
// which is left unchanged.
func Assume(f *ber.Packet, holds func(part *ber.Packet) bool) *ber.Packet {
	return assume(f, holds, 0)
}

func assume(f *ber.Packet, holds func(*ber.Packet) bool, depth int) *ber.Packet {
	if f == nil || depth > maxDepth {
		return f
	}
	if holds(f) {
		return True()
	}
	if f.ClassType != ber.ClassContext || (f.Tag != ldap.FilterAnd && f.Tag != ldap.FilterOr && f.Tag != ldap.FilterNot) {
		return f
	}
	out := ber.Encode(f.ClassType, f.TagType, f.Tag, nil, f.Description)
	for _, c := range f.Children {
		out.AppendChild(assume(c, holds, depth+1))
	}
	return out
}
