package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/configs"
)

// errBadFilter means a client's search filter cannot be forwarded exactly as
// it was sent.
var errBadFilter = errors.New("search filter cannot be forwarded as sent")

// maxFilterBytes bounds a forwarded filter's string form. The listener's
// message cap (listen.max_message_bytes) bounds it already; escaping at most
// triples it.
const maxFilterBytes = 3 * (16 << 20)

// reencodeFilter turns the filter string gldap made of a client's search
// request into the string sent to AD, in which every value is escaped and no
// byte of a value can be taken for filter syntax.
//
// gldap (v0.1.14) hands handlers only the filter's string form, made by
// go-ldap's DecompileFilter, which escapes NUL, '(', ')', '*', '\' and bytes
// above 0x7f but leaves other control bytes raw. So the string is compiled
// again (go-ldap's CompileFilter), serialised here with every value escaped
// (control bytes and invalid UTF-8 included), and the result compiled once
// more and compared with the first compilation, byte for byte: a filter that
// does not round-trip exactly (an attribute description that is not one, a
// substring with an empty part, …) is refused rather than forwarded changed.
// The result is also safe to log: it holds no control characters.
func reencodeFilter(decompiled string) (string, error) {
	p, err := ldap.CompileFilter(decompiled)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errBadFilter, err)
	}
	var b strings.Builder
	if err := writeFilter(&b, p, 0); err != nil {
		return "", err
	}
	out := b.String()
	if len(out) > maxFilterBytes {
		return "", fmt.Errorf("%w: longer than %d bytes", errBadFilter, maxFilterBytes)
	}
	again, err := ldap.CompileFilter(out)
	if err != nil {
		return "", fmt.Errorf("%w: re-encoded filter does not compile: %w", errBadFilter, err)
	}
	if !bytes.Equal(again.Bytes(), p.Bytes()) {
		return "", fmt.Errorf("%w: it does not survive re-encoding", errBadFilter)
	}
	return out, nil
}

// maxFilterNesting bounds the recursion; the connection guard refuses deeper
// filters before they get here.
const maxFilterNesting = 64

// writeFilter serialises one compiled filter per RFC 4515.
func writeFilter(b *strings.Builder, p *ber.Packet, depth int) error {
	if depth > maxFilterNesting {
		return fmt.Errorf("%w: nested deeper than %d", errBadFilter, maxFilterNesting)
	}
	if p.ClassType != ber.ClassContext {
		return fmt.Errorf("%w: not a filter element", errBadFilter)
	}
	b.WriteByte('(')
	switch p.Tag {
	case ldap.FilterAnd, ldap.FilterOr:
		b.WriteByte(map[ber.Tag]byte{ldap.FilterAnd: '&', ldap.FilterOr: '|'}[p.Tag])
		for _, c := range p.Children {
			if err := writeFilter(b, c, depth+1); err != nil {
				return err
			}
		}
	case ldap.FilterNot:
		if len(p.Children) != 1 {
			return fmt.Errorf("%w: not with %d operands", errBadFilter, len(p.Children))
		}
		b.WriteByte('!')
		if err := writeFilter(b, p.Children[0], depth+1); err != nil {
			return err
		}
	case ldap.FilterEqualityMatch, ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual, ldap.FilterApproxMatch:
		if len(p.Children) != 2 {
			return fmt.Errorf("%w: assertion with %d parts", errBadFilter, len(p.Children))
		}
		if err := writeAttr(b, p.Children[0].Data.String()); err != nil {
			return err
		}
		b.WriteString(map[ber.Tag]string{
			ldap.FilterEqualityMatch:  "=",
			ldap.FilterGreaterOrEqual: ">=",
			ldap.FilterLessOrEqual:    "<=",
			ldap.FilterApproxMatch:    "~=",
		}[p.Tag])
		b.WriteString(escapeFilterValue(p.Children[1].Data.String()))
	case ldap.FilterPresent:
		if err := writeAttr(b, p.Data.String()); err != nil {
			return err
		}
		b.WriteString("=*")
	case ldap.FilterSubstrings:
		if err := writeSubstrings(b, p); err != nil {
			return err
		}
	case ldap.FilterExtensibleMatch:
		if err := writeExtensible(b, p); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unknown filter choice %d", errBadFilter, p.Tag)
	}
	b.WriteByte(')')
	return nil
}

func writeSubstrings(b *strings.Builder, p *ber.Packet) error {
	if len(p.Children) != 2 || len(p.Children[1].Children) == 0 {
		return fmt.Errorf("%w: substrings without parts", errBadFilter)
	}
	if err := writeAttr(b, p.Children[0].Data.String()); err != nil {
		return err
	}
	b.WriteByte('=')
	parts := p.Children[1].Children
	for i, c := range parts {
		switch {
		case c.Tag == ldap.FilterSubstringsInitial && i == 0:
		case c.Tag == ldap.FilterSubstringsAny, c.Tag == ldap.FilterSubstringsFinal && i == len(parts)-1:
			b.WriteByte('*')
		default:
			return fmt.Errorf("%w: substring parts out of order", errBadFilter)
		}
		b.WriteString(escapeFilterValue(c.Data.String()))
	}
	if parts[len(parts)-1].Tag != ldap.FilterSubstringsFinal {
		b.WriteByte('*')
	}
	return nil
}

func writeExtensible(b *strings.Builder, p *ber.Packet) error {
	var rule, attr, value string
	var dnAttrs, hasValue bool
	for _, c := range p.Children {
		switch c.Tag {
		case ldap.MatchingRuleAssertionMatchingRule:
			rule = c.Data.String()
		case ldap.MatchingRuleAssertionType:
			attr = c.Data.String()
		case ldap.MatchingRuleAssertionMatchValue:
			value, hasValue = c.Data.String(), true
		case ldap.MatchingRuleAssertionDNAttributes:
			dnAttrs = len(c.Data.Bytes()) == 1 && c.Data.Bytes()[0] != 0
		default:
			return fmt.Errorf("%w: unknown extensible match part %d", errBadFilter, c.Tag)
		}
	}
	switch {
	case !hasValue || (rule == "" && attr == ""):
		return fmt.Errorf("%w: extensible match without a value, rule or type", errBadFilter)
	case dnAttrs:
		// The connection guard refuses filters with dnAttributes (gldap drops
		// the connection on them), so one here came from a matching rule
		// named "dn", which DecompileFilter writes as ":dn:=" and
		// CompileFilter reads back as dnAttributes: not what was sent.
		return fmt.Errorf("%w: extensible match with dnAttributes or a rule named dn", errBadFilter)
	}
	if attr != "" {
		if err := writeAttr(b, attr); err != nil {
			return err
		}
	}
	if dnAttrs {
		b.WriteString(":dn")
	}
	if rule != "" {
		if !configs.ValidAttributeType(rule) {
			return fmt.Errorf("%w: matching rule %q", errBadFilter, LogSafe(rule))
		}
		b.WriteString(":" + rule)
	}
	b.WriteString(":=")
	b.WriteString(escapeFilterValue(value))
	return nil
}

// writeAttr writes an attribute description (a type with options such as
// ";binary"), refusing anything else: it is written unescaped.
func writeAttr(b *strings.Builder, desc string) error {
	if !validAttrDescription(desc) {
		return fmt.Errorf("%w: attribute description %q", errBadFilter, LogSafe(desc))
	}
	b.WriteString(desc)
	return nil
}

// validAttrDescription accepts attributetype *(";" option) per RFC 4512.
func validAttrDescription(desc string) bool {
	typ, opts, _ := strings.Cut(desc, ";")
	if !configs.ValidAttributeType(typ) {
		return false
	}
	for opts != "" {
		var opt string
		opt, opts, _ = strings.Cut(opts, ";")
		if opt == "" || strings.IndexFunc(opt, func(r rune) bool {
			return !(r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
		}) >= 0 {
			return false
		}
	}
	return true
}

// escapeFilterValue escapes an assertion value per RFC 4515: '*', '(', ')',
// '\' and NUL as the standard asks, and also every other control character,
// every non-printing character and every byte of invalid UTF-8, so that the
// filter string is plain printable text (fit for a log line) whose values
// compile back to exactly the same bytes.
func escapeFilterValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		switch {
		case r == utf8.RuneError,
			r == '*', r == '(', r == ')', r == '\\',
			!unicode.IsPrint(r) && r != ' ':
			for _, c := range []byte(v[i : i+size]) {
				fmt.Fprintf(&b, `\%02x`, c)
			}
		default:
			b.WriteString(v[i : i+size])
		}
		i += size
	}
	return b.String()
}
