package guard

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzClientMessages feeds arbitrary client bytes through the guard's framing,
// request parser and classifier: they must never panic, never hand out a
// message above the cap and never grow a buffer beyond it, whatever the length
// headers claim. Seeds: testdata/fuzz/FuzzClientMessages.
func FuzzClientMessages(f *testing.F) {
	f.Add(encodeSimpleBind(1, "jdoe", "pw"))
	f.Add([]byte{0x30, 0x84, 0x00, 0x98, 0x96, 0x80})
	const max = 4096
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 1024)
		var scratch []byte
		for i := 0; i < 64; i++ {
			msg, peeked, err := readMessage(br, max, &scratch)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrMalformedMessage) && !errors.Is(err, ErrMessageTooLarge) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if len(msg) > max || cap(scratch) > max {
				t.Fatalf("message of %d bytes, buffer of %d, cap %d", len(msg), cap(scratch), max)
			}
			r, err := parseRequest(msg, []string{OIDPagedResults})
			if err == nil {
				a := classify(&r)
				if a.kind == actRelay && r.op != opBindRequest && r.op != opSearchRequest {
					t.Fatalf("would relay protocol op 0x%02x", r.op)
				}
				if a.kind == actRelay && r.op == opBindRequest && IsHelloName(string(r.bindName)) {
					t.Fatalf("would relay a bind named %q", r.bindName)
				}
			} else if !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("parse error class: %v", err)
			}
			if peeked {
				_, _ = br.Discard(len(msg))
			}
		}
	})
}
