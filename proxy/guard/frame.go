package guard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// ErrMalformedMessage means a client sent bytes that are not a well-formed LDAP
// message (RFC 4511 section 5.1: BER with definite lengths only). The guard
// closes such a connection.
var ErrMalformedMessage = errors.New("malformed LDAP message")

// ErrMessageTooLarge means a message's length header announced more bytes than
// the configured maximum. The guard closes the connection without reading (or
// allocating) the announced bytes.
var ErrMessageTooLarge = errors.New("LDAP message too large")

// tagSequence is the universal, constructed SEQUENCE tag every LDAPMessage starts with.
const tagSequence = 0x30

// peekHeader reads the header of the next LDAP message from br without consuming
// it: the SEQUENCE tag and its definite length. It returns the header's length
// and the content's length, and refuses a message larger than max before any of
// its content is read, so an announced length never becomes an allocation.
//
// ber.ReadPacket is not used here: its only size cap, ber.MaxPacketLengthBytes,
// is process-global and also caps go-ldap's reads from AD.
func peekHeader(br *bufio.Reader, max int) (hdr, body int, err error) {
	b, err := br.Peek(2)
	if err != nil {
		return 0, 0, eofAsUnexpected(err, len(b))
	}
	if b[0] != tagSequence {
		return 0, 0, fmt.Errorf("message tag 0x%02x: %w", b[0], ErrMalformedMessage)
	}
	l := b[1]
	switch {
	case l < 0x80:
		hdr, body = 2, int(l)
	case l == 0x80:
		return 0, 0, fmt.Errorf("indefinite length: %w", ErrMalformedMessage)
	default:
		n := int(l & 0x7f)
		if n > 4 {
			// Five or more length octets would only be legal with leading
			// zeros; no LDAP implementation sends them, and 4 octets already
			// exceed every cap this guard accepts.
			return 0, 0, fmt.Errorf("%d length octets: %w", n, ErrMessageTooLarge)
		}
		b, err = br.Peek(2 + n)
		if err != nil {
			return 0, 0, eofAsUnexpected(err, len(b))
		}
		v := 0
		for _, x := range b[2:] {
			v = v<<8 | int(x)
		}
		hdr, body = 2+n, v
	}
	if body > max-hdr {
		return 0, 0, fmt.Errorf("%d bytes announced, at most %d allowed: %w", hdr+body, max, ErrMessageTooLarge)
	}
	return hdr, body, nil
}

// eofAsUnexpected turns an EOF in the middle of a header into
// io.ErrUnexpectedEOF, keeping a clean EOF (nothing read) as io.EOF.
func eofAsUnexpected(err error, got int) error {
	if errors.Is(err, io.EOF) && got > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readMessage reads one whole LDAP message of at most max bytes from br. When
// the message fits br's buffer it is returned as a view into that buffer
// (peeked is true): it stays valid until the next read from br, and the caller
// must br.Discard(len(msg)) once done with it. A larger message is read into
// *scratch, which grows only to the announced size, never beyond max.
func readMessage(br *bufio.Reader, max int, scratch *[]byte) (msg []byte, peeked bool, err error) {
	hdr, body, err := peekHeader(br, max)
	if err != nil {
		return nil, false, err
	}
	total := hdr + body
	if total <= br.Size() {
		msg, err = br.Peek(total)
		if err != nil {
			return nil, false, eofAsUnexpected(err, len(msg)+1)
		}
		return msg, true, nil
	}
	if cap(*scratch) < total {
		*scratch = make([]byte, total)
	}
	buf := (*scratch)[:total]
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, false, eofAsUnexpected(err, 1)
	}
	return buf, false, nil
}

// copyMessage copies exactly n bytes from br to w through br's buffer, without
// allocating (io.CopyN would allocate a LimitedReader per message).
func copyMessage(w io.Writer, br *bufio.Reader, n int) error {
	for n > 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return eofAsUnexpected(err, 1)
			}
		}
		k := min(n, br.Buffered())
		b, _ := br.Peek(k)
		if _, err := w.Write(b); err != nil {
			return err
		}
		_, _ = br.Discard(k)
		n -= k
	}
	return nil
}
