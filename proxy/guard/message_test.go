package guard

import (
	"bytes"
	"errors"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Builders for client messages, encoded by go-asn1-ber as a real client would.

func envelope(id int64, op *ber.Packet, controls ...ldap.Control) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	p.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, c := range controls {
			cs.AppendChild(c.Encode())
		}
		p.AppendChild(cs)
	}
	return p.Bytes()
}

func bindOp(version int64, name string, auth *ber.Packet) *ber.Packet {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "Bind Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, version, "Version"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "User Name"))
	p.AppendChild(auth)
	return p
}

func simpleAuth(pw string) *ber.Packet {
	return ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, pw, "Password")
}

func saslAuth(mech string) *ber.Packet {
	p := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "SASL")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, mech, "Mechanism"))
	return p
}

func searchOp(t testing.TB, base, filter string) *ber.Packet {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "Search Request")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "Base DN"))
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, "Scope"))
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, "Deref Aliases"))
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Size Limit"))
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Time Limit"))
	p.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types Only"))
	f, err := ldap.CompileFilter(filter)
	if err != nil {
		t.Fatalf("compile %q: %v", filter, err)
	}
	p.AppendChild(f)
	p.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes"))
	return p
}

func extendedOp(oid string) *ber.Packet {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Extended Request")
	p.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oid, "Name"))
	return p
}

func primitiveOp(tag ber.Tag, content string) *ber.Packet {
	return ber.NewString(ber.ClassApplication, ber.TypePrimitive, tag, content, "op")
}

func constructedOp(tag ber.Tag) *ber.Packet {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "op")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cn=x", "DN"))
	return p
}

func abandonOp(id int64) *ber.Packet {
	return ber.NewInteger(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationAbandonRequest, id, "Abandon")
}

func TestClassify(t *testing.T) {
	paged := ldap.NewControlString(OIDPagedResults, true, "")
	unknownCritical := ldap.NewControlString("1.2.3.4.5", true, "")
	unknownOptional := ldap.NewControlString("1.2.3.4.5", false, "")
	tests := []struct {
		name string
		msg  []byte
		want action
	}{
		{"a simple LDAPv3 bind is relayed", envelope(1, bindOp(3, "jdoe", simpleAuth("pw"))), action{kind: actRelay}},
		{"an anonymous bind is relayed", envelope(1, bindOp(3, "", simpleAuth(""))), action{kind: actRelay}},
		{"an LDAPv2 bind is refused and closes", envelope(1, bindOp(2, "jdoe", simpleAuth("pw"))),
			action{kind: actAnswerQuit, code: resultProtocolError, diag: diagLDAPv2}},
		{"a SASL bind gets authMethodNotSupported", envelope(1, bindOp(3, "", saslAuth("EXTERNAL"))),
			action{kind: actAnswer, code: resultAuthMethodNotSupported, diag: diagSASL}},
		{"a bind with the hello's reserved name is never relayed", envelope(1, bindOp(3, helloPrefix+"00", simpleAuth("x"))),
			action{kind: actAnswer, code: resultInvalidCredentials, diag: diagInvalidCredentials}},
		{"the reserved name in another case with leading spaces", envelope(1, bindOp(3, "  CN=LDAPGATE-Guard-hello,token=1", simpleAuth("x"))),
			action{kind: actAnswer, code: resultInvalidCredentials, diag: diagInvalidCredentials}},
		{"a search is relayed", envelope(2, searchOp(t, "", "(objectClass=*)")), action{kind: actRelay}},
		{"a search with a :dn extensible match is refused", envelope(2, searchOp(t, "dc=x", "(cn:dn:=jdoe)")),
			action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagDNFilter}},
		{"a :dn match nested in and/or/not is found", envelope(2, searchOp(t, "dc=x", "(&(a=b)(|(c=d)(!(ou:dn:2.5.13.5:=x))))")),
			action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagDNFilter}},
		{"an extensible match without :dn is relayed", envelope(2, searchOp(t, "dc=x", "(cn:2.5.13.5:=jdoe)")), action{kind: actRelay}},
		{"a critical paged results control is known", envelope(2, searchOp(t, "dc=x", "(a=b)"), paged), action{kind: actRelay}},
		{"an unknown critical control is refused", envelope(2, searchOp(t, "dc=x", "(a=b)"), unknownCritical),
			action{kind: actAnswer, code: resultUnavailableCriticalExtension, diag: diagCriticalControl}},
		{"an unknown optional control is relayed", envelope(2, searchOp(t, "dc=x", "(a=b)"), unknownOptional), action{kind: actRelay}},
		{"WhoAmI is answered by the guard", envelope(3, extendedOp(oidWhoAmI)), action{kind: actWhoAmI}},
		{"StartTLS is handled by the guard", envelope(3, extendedOp(oidStartTLS)), action{kind: actStartTLS}},
		{"password modify is an unsupported extended operation", envelope(3, extendedOp("1.3.6.1.4.1.4203.1.11.1")),
			action{kind: actAnswer, code: resultProtocolError, diag: diagUnsupportedExtended}},
		{"abandon is dropped", envelope(4, abandonOp(2)), action{kind: actDrop}},
		{"abandon with an unknown critical control is still dropped", envelope(4, abandonOp(2), unknownCritical), action{kind: actDrop}},
		{"unbind closes", envelope(5, ber.Encode(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationUnbindRequest, nil, "Unbind")), action{kind: actUnbind}},
		{"delete is refused: read-only", envelope(6, primitiveOp(ldap.ApplicationDelRequest, "cn=x")),
			action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagReadOnly}},
		{"add is refused: read-only", envelope(6, constructedOp(ldap.ApplicationAddRequest)),
			action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagReadOnly}},
		{"modify is refused: read-only", envelope(6, constructedOp(ldap.ApplicationModifyRequest)),
			action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagReadOnly}},
		{"compare is refused", envelope(6, constructedOp(ldap.ApplicationCompareRequest)),
			action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagUnsupportedOp}},
		{"modify DN is refused", envelope(6, constructedOp(ldap.ApplicationModifyDNRequest)),
			action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagUnsupportedOp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseRequest(tt.msg, []string{OIDPagedResults})
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got := classify(&r); got != tt.want {
				t.Fatalf("classify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseRequestRejectsMalformedMessages(t *testing.T) {
	bind := envelope(1, bindOp(3, "jdoe", simpleAuth("pw")))
	tests := []struct {
		name string
		msg  []byte
	}{
		{"trailing bytes after the message", append(append([]byte{}, bind...), 0)},
		{"a truncated message", bind[:len(bind)-1]},
		{"a negative message ID", []byte{0x30, 0x05, 0x02, 0x01, 0xff, 0x42, 0x00}},
		{"a five-octet message ID", []byte{0x30, 0x09, 0x02, 0x05, 0, 0, 0, 0, 1, 0x42, 0x00}},
		{"a response instead of a request", envelope(1, constructedOp(ldap.ApplicationBindResponse))},
		{"an unknown application tag", envelope(1, constructedOp(30))},
		{"a context-class protocol op", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x80, 0x00}},
		{"a bind without a name", []byte{0x30, 0x08, 0x02, 0x01, 0x01, 0x60, 0x03, 0x02, 0x01, 0x03}},
		{"a high tag number", []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x7f, 0x01, 0x00}},
		{"an indefinite inner length", []byte{0x30, 0x07, 0x02, 0x01, 0x01, 0x60, 0x80, 0x00, 0x00}},
		{"controls that are not a sequence of controls", append(bind[:len(bind):len(bind)], 0xa0, 0x02, 0x04, 0x00)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.msg
			// Keep the envelope's length consistent when bytes were appended
			// inside it, so the error comes from the part under test.
			if tt.name == "controls that are not a sequence of controls" {
				msg = rewrap(msg)
			}
			if _, err := parseRequest(msg, nil); !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("err = %v, want ErrMalformedMessage", err)
			}
		})
	}
}

// rewrap fixes the outer SEQUENCE length of a short-form message.
func rewrap(msg []byte) []byte {
	body := msg[2:]
	return appendTLV(nil, tagSequence, body)
}

func TestDeeplyNestedFilterIsRefusedNotRecursed(t *testing.T) {
	f := []byte{0x87, 0x01, 'a'} // (a=*)
	for i := 0; i < 10000; i++ {
		f = appendTLV(nil, 0xa2, f) // (!...)
	}
	search := []byte{0x04, 0x00, 0x0a, 0x01, 0x00, 0x0a, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01, 0x01, 0x00}
	search = append(search, f...)
	search = append(search, 0x30, 0x00)
	msg := appendTLV(nil, tagSequence, append([]byte{0x02, 0x01, 0x07}, appendTLV(nil, opSearchRequest, search)...))
	r, err := parseRequest(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := classify(&r); got.kind != actAnswer || got.code != resultUnwillingToPerform {
		t.Fatalf("classify = %+v, want 53", got)
	}
}

func TestEncodeResultDecodesWithGoLDAP(t *testing.T) {
	msg := encodeResult(2147483647, opExtendedResp, resultSuccess, "diag", []byte(oidStartTLS), []byte("dn:cn=x"))
	p, err := ber.DecodePacketErr(msg)
	if err != nil {
		t.Fatal(err)
	}
	if id := p.Children[0].Value.(int64); id != 2147483647 {
		t.Fatalf("message id %d", id)
	}
	res := p.Children[1]
	if res.Tag != ldap.ApplicationExtendedResponse || len(res.Children) != 5 {
		t.Fatalf("response tag %d with %d children", res.Tag, len(res.Children))
	}
	if got := res.Children[4].Data.String(); got != "dn:cn=x" {
		t.Fatalf("value %q", got)
	}
	if err := ldap.GetLDAPError(p); err != nil {
		t.Fatalf("result: %v", err)
	}
	// The hello bind round-trips through our own parser.
	hello := encodeSimpleBind(helloMessageID, helloPrefix+"ab", "secret")
	r, err := parseRequest(hello, nil)
	if err != nil || r.id != helloMessageID || !bytes.Equal(r.bindName, []byte(helloPrefix+"ab")) {
		t.Fatalf("hello parses as id %d name %q err %v", r.id, r.bindName, err)
	}
}

func TestResponseInfo(t *testing.T) {
	for _, id := range []int64{0, 1, 127, 128, 65535, 2147483647} {
		msg := encodeResult(id, opSearchDone, 0, "", nil, nil)
		gotID, op, ok := responseInfo(msg[:min(len(msg), 2+7)], 2)
		if !ok || gotID != id || op != opSearchDone {
			t.Fatalf("id %d: got %d op 0x%02x ok %v", id, gotID, op, ok)
		}
	}
}
