package guard

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

func TestPeekHeader(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		max      int
		wantHdr  int
		wantBody int
		wantErr  error
	}{
		{"short form length", []byte{0x30, 0x05, 1, 2, 3, 4, 5}, 100, 2, 5, nil},
		{"long form, one octet", append([]byte{0x30, 0x81, 0x80}, make([]byte, 0x80)...), 200, 3, 0x80, nil},
		{"long form, two octets", []byte{0x30, 0x82, 0x01, 0x00}, 1000, 4, 256, nil},
		{"a message of exactly max bytes", []byte{0x30, 0x08}, 10, 2, 8, nil},
		{"one byte over max", []byte{0x30, 0x09}, 10, 0, 0, ErrMessageTooLarge},
		{"a 10 MB length header", []byte{0x30, 0x84, 0x00, 0x98, 0x96, 0x80}, 128 << 10, 0, 0, ErrMessageTooLarge},
		{"the largest 4-octet length", []byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff}, 128 << 10, 0, 0, ErrMessageTooLarge},
		{"five length octets", []byte{0x30, 0x85, 0, 0, 0, 0, 1}, 128 << 10, 0, 0, ErrMessageTooLarge},
		{"indefinite length", []byte{0x30, 0x80}, 100, 0, 0, ErrMalformedMessage},
		{"not a SEQUENCE", []byte{0x31, 0x01, 0x00}, 100, 0, 0, ErrMalformedMessage},
		{"TLS ClientHello on a plain port", []byte{0x16, 0x03, 0x01, 0x00, 0xa5}, 100, 0, 0, ErrMalformedMessage},
		{"nothing at all", nil, 100, 0, 0, io.EOF},
		{"cut inside the header", []byte{0x30}, 100, 0, 0, io.ErrUnexpectedEOF},
		{"cut inside a long length", []byte{0x30, 0x82, 0x01}, 100, 0, 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(bytes.NewReader(tt.in))
			hdr, body, err := peekHeader(br, tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if hdr != tt.wantHdr || body != tt.wantBody {
				t.Fatalf("header %d + body %d, want %d + %d", hdr, body, tt.wantHdr, tt.wantBody)
			}
			if err == nil && br.Buffered() < hdr {
				t.Fatalf("peekHeader consumed input")
			}
		})
	}
}

func TestReadMessageSmallIsAViewAndLargeIsCopied(t *testing.T) {
	small := encodeSimpleBind(1, "cn=a", "pw")
	large := encodeSimpleBind(2, "cn=b", string(bytes.Repeat([]byte("x"), 10000)))
	br := bufio.NewReaderSize(bytes.NewReader(append(append([]byte{}, small...), large...)), 4096)
	var scratch []byte
	msg, peeked, err := readMessage(br, 1<<20, &scratch)
	if err != nil || !peeked || !bytes.Equal(msg, small) {
		t.Fatalf("small message: peeked=%v err=%v equal=%v", peeked, err, bytes.Equal(msg, small))
	}
	_, _ = br.Discard(len(msg))
	msg, peeked, err = readMessage(br, 1<<20, &scratch)
	if err != nil || peeked || !bytes.Equal(msg, large) {
		t.Fatalf("large message: peeked=%v err=%v equal=%v", peeked, err, bytes.Equal(msg, large))
	}
	if _, _, err := readMessage(br, 1<<20, &scratch); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last message: err = %v, want EOF", err)
	}
}

func TestReadMessageRefusesA10MBHeaderWithoutAllocatingIt(t *testing.T) {
	// The header promises 10 MB and the stream then delivers them: the guard
	// must refuse on the header alone.
	in := io.MultiReader(bytes.NewReader([]byte{0x30, 0x84, 0x00, 0x98, 0x96, 0x80}), zeros{})
	br := bufio.NewReaderSize(in, 4096)
	var scratch []byte
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := readMessage(br, 128<<10, &scratch)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("err = %v, want ErrMessageTooLarge", err)
	}
	if cap(scratch) != 0 {
		t.Fatalf("scratch grew to %d bytes", cap(scratch))
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("allocated %d bytes while refusing the header", d)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestCopyMessageCopiesExactlyOneMessage(t *testing.T) {
	a := bytes.Repeat([]byte{1}, 10000)
	b := []byte{2, 2, 2}
	br := bufio.NewReaderSize(bytes.NewReader(append(append([]byte{}, a...), b...)), 16)
	var out bytes.Buffer
	if err := copyMessage(&out, br, len(a)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), a) {
		t.Fatalf("copied %d bytes, want exactly the first message (%d)", out.Len(), len(a))
	}
	rest, _ := io.ReadAll(br)
	if !bytes.Equal(rest, b) {
		t.Fatalf("left %v, want %v", rest, b)
	}
	if err := copyMessage(&out, br, 1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("copy past the end: err = %v", err)
	}
}
