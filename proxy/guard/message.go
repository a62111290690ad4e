package guard

import (
	"bytes"
	"fmt"
)

// LDAP protocolOp tags (RFC 4511 section 4.2 ff.), as the full identifier octet:
// class APPLICATION, constructed unless noted.
const (
	opBindRequest     = 0x60
	opBindResponse    = 0x61
	opUnbindRequest   = 0x42 // primitive
	opSearchRequest   = 0x63
	opSearchEntry     = 0x64
	opSearchDone      = 0x65
	opModifyRequest   = 0x66
	opModifyResponse  = 0x67
	opAddRequest      = 0x68
	opAddResponse     = 0x69
	opDelRequest      = 0x4a // primitive
	opDelResponse     = 0x6b
	opModDNRequest    = 0x6c
	opModDNResponse   = 0x6d
	opCompareRequest  = 0x6e
	opCompareResponse = 0x6f
	opAbandonRequest  = 0x50 // primitive
	opSearchReference = 0x73
	opExtendedRequest = 0x77
	opExtendedResp    = 0x78
	opIntermediate    = 0x79
)

// LDAP result codes the guard sends itself (RFC 4511 appendix A).
const (
	resultSuccess                      = 0
	resultOperationsError              = 1
	resultProtocolError                = 2
	resultAuthMethodNotSupported       = 7
	resultUnavailableCriticalExtension = 12
	resultInvalidCredentials           = 49
	resultUnavailable                  = 52
	resultUnwillingToPerform           = 53
)

// Extended operation OIDs the guard knows.
const (
	oidWhoAmI       = "1.3.6.1.4.1.4203.1.11.3"
	oidStartTLS     = "1.3.6.1.4.1.1466.20037"
	oidNoticeOfDisc = "1.3.6.1.4.1.1466.20036"
	// OIDPagedResults is the simple paged results control (RFC 2696), the one
	// control the gateway understands by default.
	OIDPagedResults = "1.2.840.113556.1.4.319"
)

// maxFilterDepth bounds the nesting of and/or/not in a search filter the guard
// walks; deeper filters are refused rather than recursed into.
const maxFilterDepth = 64

// request is what the guard needs to know about one client message. Its byte
// slices point into the message and are only valid as long as it is.
type request struct {
	id int64
	op byte
	// bind
	version  int64
	bindName []byte
	authTag  byte
	// extended
	oid []byte
	// search
	dnFilter       bool // an extensibleMatch with a dnAttributes element
	filterTooDeep  bool // nesting beyond maxFilterDepth
	unknownControl bool // a critical control not in the known set
}

// tlv splits the first BER element off b: single-octet identifiers (LDAP uses no
// tag above 30) and definite lengths of at most 4 octets. ok is false when b does
// not start with such an element that fits in b.
func tlv(b []byte) (tag byte, content, rest []byte, ok bool) {
	if len(b) < 2 || b[0]&0x1f == 0x1f {
		return 0, nil, nil, false
	}
	tag = b[0]
	l := int(b[1])
	b = b[2:]
	if l >= 0x80 {
		n := l & 0x7f
		if n == 0 || n > 4 || len(b) < n {
			return 0, nil, nil, false
		}
		l = 0
		for _, x := range b[:n] {
			l = l<<8 | int(x)
		}
		b = b[n:]
	}
	if l > len(b) {
		return 0, nil, nil, false
	}
	return tag, b[:l], b[l:], true
}

// parseInt decodes a BER INTEGER or ENUMERATED of up to 4 content octets.
func parseInt(c []byte) (int64, bool) {
	if len(c) == 0 || len(c) > 4 {
		return 0, false
	}
	v := int64(int8(c[0]))
	for _, x := range c[1:] {
		v = v<<8 | int64(x)
	}
	return v, true
}

// parseRequest classifies one complete client message. known lists the control
// OIDs that may be marked critical. It returns ErrMalformedMessage when the
// message is not an LDAPMessage the guard can route; the connection is then
// closed (RFC 4511 section 4.1.1).
func parseRequest(msg []byte, known []string) (request, error) {
	var r request
	tag, body, rest, ok := tlv(msg)
	if !ok || tag != tagSequence || len(rest) != 0 {
		return r, fmt.Errorf("envelope: %w", ErrMalformedMessage)
	}
	tag, idc, body, ok := tlv(body)
	if !ok || tag != 0x02 {
		return r, fmt.Errorf("message id: %w", ErrMalformedMessage)
	}
	if r.id, ok = parseInt(idc); !ok || r.id < 0 {
		return r, fmt.Errorf("message id: %w", ErrMalformedMessage)
	}
	tag, opc, body, ok := tlv(body)
	if !ok || tag&0xc0 != 0x40 {
		return r, fmt.Errorf("protocol op: %w", ErrMalformedMessage)
	}
	r.op = tag
	if len(body) > 0 {
		tag, ctrls, rest, ok := tlv(body)
		if !ok || tag != 0xa0 || len(rest) != 0 {
			return r, fmt.Errorf("controls: %w", ErrMalformedMessage)
		}
		crit, err := unknownCritical(ctrls, known)
		if err != nil {
			return r, err
		}
		r.unknownControl = crit
	}
	var err error
	switch r.op {
	case opBindRequest:
		err = r.parseBind(opc)
	case opSearchRequest:
		err = r.parseSearch(opc)
	case opExtendedRequest:
		tag, oid, _, ok := tlv(opc)
		if !ok || tag != 0x80 {
			err = fmt.Errorf("extended request name: %w", ErrMalformedMessage)
		}
		r.oid = oid
	case opUnbindRequest, opAbandonRequest, opDelRequest,
		opModifyRequest, opAddRequest, opModDNRequest, opCompareRequest:
		// Answered or dropped without looking inside.
	default:
		err = fmt.Errorf("protocol op 0x%02x is not a request: %w", r.op, ErrMalformedMessage)
	}
	return r, err
}

func (r *request) parseBind(c []byte) error {
	tag, v, c, ok := tlv(c)
	if !ok || tag != 0x02 {
		return fmt.Errorf("bind version: %w", ErrMalformedMessage)
	}
	if r.version, ok = parseInt(v); !ok {
		return fmt.Errorf("bind version: %w", ErrMalformedMessage)
	}
	tag, r.bindName, c, ok = tlv(c)
	if !ok || tag != 0x04 {
		return fmt.Errorf("bind name: %w", ErrMalformedMessage)
	}
	tag, _, _, ok = tlv(c)
	if !ok {
		return fmt.Errorf("bind authentication: %w", ErrMalformedMessage)
	}
	r.authTag = tag
	return nil
}

func (r *request) parseSearch(c []byte) error {
	// baseObject, scope, derefAliases, sizeLimit, timeLimit, typesOnly: gldap
	// checks their types; the guard only needs to step over them.
	for i := 0; i < 6; i++ {
		var ok bool
		if _, _, c, ok = tlv(c); !ok {
			return fmt.Errorf("search field %d: %w", i, ErrMalformedMessage)
		}
	}
	tag, f, _, ok := tlv(c)
	if !ok {
		return fmt.Errorf("search filter: %w", ErrMalformedMessage)
	}
	dn, err := filterHasDNAttributes(tag, f, 0)
	switch {
	case err == errFilterTooDeep:
		r.filterTooDeep = true
	case err != nil:
		return err
	}
	r.dnFilter = dn
	return nil
}

// errFilterTooDeep marks a filter nested beyond maxFilterDepth.
var errFilterTooDeep = fmt.Errorf("filter nested deeper than %d", maxFilterDepth)

// filterHasDNAttributes reports whether a filter holds an extensibleMatch with a
// dnAttributes element ("(cn:dn:=x)").
//
// gldap: go-ldap's DecompileFilter type-asserts the element's decoded value,
// which is nil for a context-class BOOLEAN, so any such filter fails to parse
// and gldap v0.1.14 drops the whole connection.
func filterHasDNAttributes(tag byte, c []byte, depth int) (bool, error) {
	if depth > maxFilterDepth {
		return false, errFilterTooDeep
	}
	switch tag {
	case 0xa0, 0xa1, 0xa2: // and, or, not
		for len(c) > 0 {
			t, sub, rest, ok := tlv(c)
			if !ok {
				return false, fmt.Errorf("search filter: %w", ErrMalformedMessage)
			}
			dn, err := filterHasDNAttributes(t, sub, depth+1)
			if dn || err != nil {
				return dn, err
			}
			c = rest
		}
	case 0xa9: // extensibleMatch
		for len(c) > 0 {
			t, _, rest, ok := tlv(c)
			if !ok {
				return false, fmt.Errorf("search filter: %w", ErrMalformedMessage)
			}
			if t == 0x84 { // dnAttributes
				return true, nil
			}
			c = rest
		}
	}
	return false, nil
}

// unknownCritical walks a Controls sequence and reports whether one of them is
// critical and not in known.
func unknownCritical(c []byte, known []string) (bool, error) {
	found := false
	for len(c) > 0 {
		tag, ctrl, rest, ok := tlv(c)
		if !ok || tag != tagSequence {
			return false, fmt.Errorf("control: %w", ErrMalformedMessage)
		}
		c = rest
		tag, oid, ctrl, ok := tlv(ctrl)
		if !ok || tag != 0x04 {
			return false, fmt.Errorf("control type: %w", ErrMalformedMessage)
		}
		critical := false
		if len(ctrl) > 0 && ctrl[0] == 0x01 {
			var v []byte
			tag, v, ctrl, ok = tlv(ctrl)
			if !ok || len(v) != 1 {
				return false, fmt.Errorf("control criticality: %w", ErrMalformedMessage)
			}
			critical = v[0] != 0
		}
		if len(ctrl) > 0 {
			tag, _, ctrl, ok = tlv(ctrl)
			if !ok || tag != 0x04 || len(ctrl) != 0 {
				return false, fmt.Errorf("control value: %w", ErrMalformedMessage)
			}
		}
		if critical && !isKnown(oid, known) {
			found = true
		}
	}
	return found, nil
}

func isKnown(oid []byte, known []string) bool {
	for _, k := range known {
		if string(oid) == k {
			return true
		}
	}
	return false
}

// responseOp maps a request's protocolOp tag to its response's, 0 for requests
// that have no response (abandon, unbind).
func responseOp(op byte) byte {
	switch op {
	case opBindRequest:
		return opBindResponse
	case opSearchRequest:
		return opSearchDone
	case opModifyRequest:
		return opModifyResponse
	case opAddRequest:
		return opAddResponse
	case opDelRequest:
		return opDelResponse
	case opModDNRequest:
		return opModDNResponse
	case opCompareRequest:
		return opCompareResponse
	case opExtendedRequest:
		return opExtendedResp
	}
	return 0
}

// responseInfo reads the message ID and protocolOp tag of a backend message
// from its first bytes (at least through the protocolOp's identifier octet).
func responseInfo(head []byte, hdr int) (id int64, op byte, ok bool) {
	b := head[hdr:]
	if len(b) < 3 || b[0] != 0x02 || b[1] == 0 || b[1] > 4 || len(b) < 3+int(b[1]) {
		return 0, 0, false
	}
	n := int(b[1])
	id, ok = parseInt(b[2 : 2+n])
	return id, b[2+n], ok
}

// appendLength appends a BER definite length.
func appendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xff:
		return append(dst, 0x81, byte(n))
	case n <= 0xffff:
		return append(dst, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// appendTLV appends one element with the given identifier octet and content.
func appendTLV(dst []byte, tag byte, content []byte) []byte {
	dst = append(dst, tag)
	dst = appendLength(dst, len(content))
	return append(dst, content...)
}

// appendInt appends a minimal two's-complement INTEGER or ENUMERATED.
func appendInt(dst []byte, tag byte, v int64) []byte {
	n := 1
	for x := v; x > 127 || x < -128; x >>= 8 {
		n++
	}
	dst = append(dst, tag, byte(n))
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// encodeResult builds an LDAPMessage carrying an LDAPResult-shaped response
// (op is the response's protocolOp tag). For an ExtendedResponse, name and value
// add responseName [10] and responseValue [11] when not nil.
func encodeResult(id int64, op byte, code int, diag string, name, value []byte) []byte {
	res := appendInt(nil, 0x0a, int64(code))
	res = appendTLV(res, 0x04, nil) // matchedDN
	res = appendTLV(res, 0x04, []byte(diag))
	if name != nil {
		res = appendTLV(res, 0x8a, name)
	}
	if value != nil {
		res = appendTLV(res, 0x8b, value)
	}
	msg := appendInt(nil, 0x02, id)
	msg = appendTLV(msg, op, res)
	return appendTLV(make([]byte, 0, len(msg)+6), tagSequence, msg)
}

// encodeSimpleBind builds a simple BindRequest (LDAPv3).
func encodeSimpleBind(id int64, name, password string) []byte {
	req := appendInt(nil, 0x02, 3)
	req = appendTLV(req, 0x04, []byte(name))
	req = appendTLV(req, 0x80, []byte(password))
	msg := appendInt(nil, 0x02, id)
	msg = appendTLV(msg, opBindRequest, req)
	return appendTLV(nil, tagSequence, msg)
}

// parseBindResponse returns the message ID, result code and diagnostic message
// of a BindResponse message.
func parseBindResponse(msg []byte) (id int64, code int64, diag []byte, err error) {
	bad := fmt.Errorf("bind response: %w", ErrMalformedMessage)
	tag, body, _, ok := tlv(msg)
	if !ok || tag != tagSequence {
		return 0, 0, nil, bad
	}
	tag, idc, body, ok := tlv(body)
	if !ok || tag != 0x02 {
		return 0, 0, nil, bad
	}
	if id, ok = parseInt(idc); !ok {
		return 0, 0, nil, bad
	}
	tag, res, _, ok := tlv(body)
	if !ok || tag != opBindResponse {
		return 0, 0, nil, bad
	}
	tag, cc, res, ok := tlv(res)
	if !ok || tag != 0x0a {
		return 0, 0, nil, bad
	}
	if code, ok = parseInt(cc); !ok {
		return 0, 0, nil, bad
	}
	if _, _, res, ok = tlv(res); !ok { // matchedDN
		return 0, 0, nil, bad
	}
	if tag, diag, _, ok = tlv(res); !ok || tag != 0x04 {
		return 0, 0, nil, bad
	}
	return id, code, diag, nil
}

// hasFoldPrefix reports whether b, after leading spaces, starts with prefix
// (ASCII case-insensitive).
func hasFoldPrefix(b []byte, prefix string) bool {
	b = bytes.TrimLeft(b, " ")
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}
