package adsim

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// maxMessage caps one LDAP message in either direction (AD's MaxReceiveBuffer
// is 10 MB; a search entry is far smaller).
const maxMessage = 16 << 20

// LDAP protocolOp tags (application class) the relay acts on.
const (
	tagBindResponse      = 0x61
	tagSearchResultEntry = 0x64
	tagSearchResultDone  = 0x65
	tagSearchResultRef   = 0x73
)

// Tuning of the relay.
const (
	acceptBackoffStart = 5 * time.Millisecond
	acceptBackoffMax   = time.Second
	relayBufferSize    = 16 << 10
)

var (
	errCut       = errors.New("connection cut by a fault")
	errTooLarge  = errors.New("ldap message too large")
	errMalformed = errors.New("malformed ldap message")
)

// relay carries one client connection to the DC's gldap server, message by
// message, applying the faults that act on the wire.
type relay struct {
	dc       *DC
	client   net.Conn
	upstream net.Conn
	once     sync.Once
}

// serve starts accepting on ln. Callers hold dc.mu.
func (dc *DC) serve(ln net.Listener) {
	dc.ln = ln
	dc.wg.Add(1)
	go func() {
		defer dc.wg.Done()
		dc.accept(ln)
	}()
}

// accept runs the accept loop until ln closes; other accept errors (EMFILE)
// back off instead of ending the loop.
func (dc *DC) accept(ln net.Listener) {
	backoff := acceptBackoffStart
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(backoff)
			backoff = min(2*backoff, acceptBackoffMax)
			continue
		}
		backoff = acceptBackoffStart
		dc.stats.connections.Add(1)
		dc.mu.Lock()
		if dc.ln != ln {
			// Stopped between Accept and here: behave as if refused.
			dc.mu.Unlock()
			_ = c.Close()
			continue
		}
		dc.conns[c] = struct{}{}
		dc.wg.Add(1)
		dc.mu.Unlock()
		go func() {
			defer dc.wg.Done()
			dc.handle(c)
			dc.mu.Lock()
			delete(dc.conns, c)
			dc.mu.Unlock()
		}()
	}
}

// handle terminates TLS on c, connects to gldap and relays until either side
// ends (a Stop ends it by closing c).
func (dc *DC) handle(c net.Conn) {
	client := c
	if !dc.plain {
		tc := tls.Server(c, dc.tlsConfig)
		_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return
		}
		_ = c.SetDeadline(time.Time{})
		dc.stats.handshakes.Add(1)
		client = tc
	}
	up, err := dc.dialGLDAP(dc.glAddr, handshakeTimeout)
	if err != nil {
		_ = client.Close()
		return
	}
	r := &relay{dc: dc, client: client, upstream: up}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.toServer()
		r.close()
	}()
	_ = r.toClient()
	r.close()
	<-done
}

func (r *relay) close() {
	r.once.Do(func() {
		_ = r.client.Close()
		_ = r.upstream.Close()
	})
}

// toServer copies client requests to gldap message by message.
func (r *relay) toServer() error {
	in := bufio.NewReaderSize(r.client, relayBufferSize)
	out := bufio.NewWriterSize(r.upstream, relayBufferSize)
	var buf []byte
	for {
		msg, err := readMessage(in, buf[:0])
		if err != nil {
			return err
		}
		buf = msg
		if _, err := out.Write(msg); err != nil {
			return fmt.Errorf("relay request: %w", err)
		}
		if in.Buffered() == 0 {
			// Flush when the client has nothing more queued: pipelined requests share a write.
			if err := out.Flush(); err != nil {
				return fmt.Errorf("relay request: %w", err)
			}
		}
	}
}

// toClient copies gldap's responses to the client message by message, cutting
// the connection where a fault says so.
func (r *relay) toClient() error {
	in := bufio.NewReaderSize(r.upstream, relayBufferSize)
	out := bufio.NewWriterSize(r.client, relayBufferSize)
	var buf []byte
	entries := int64(0) // entries of the current search sent
	for {
		msg, err := readMessage(in, buf[:0])
		if err != nil {
			return err
		}
		buf = msg
		f := &r.dc.faults
		switch protocolOp(msg) {
		case tagBindResponse:
			if f.cutBind.Load() {
				return r.cut(out)
			}
		case tagSearchResultEntry, tagSearchResultRef:
			if k := f.cutAfter.Load(); k >= 0 && entries >= k {
				return r.cut(out)
			}
			entries++
		case tagSearchResultDone:
			if f.cutAfter.Load() >= 0 {
				return r.cut(out)
			}
			entries = 0
		}
		if _, err := out.Write(msg); err != nil {
			return fmt.Errorf("relay response: %w", err)
		}
		if in.Buffered() == 0 {
			if err := out.Flush(); err != nil {
				return fmt.Errorf("relay response: %w", err)
			}
		}
	}
}

// cut sends what was already relayed and ends the connection.
func (r *relay) cut(out *bufio.Writer) error {
	_ = out.Flush()
	return errCut
}

// readMessage reads one BER-framed LDAP message (a SEQUENCE with a definite
// length) into buf and returns it.
func readMessage(in *bufio.Reader, buf []byte) ([]byte, error) {
	tag, err := in.ReadByte()
	if err != nil {
		return nil, err
	}
	if tag != 0x30 {
		return nil, errMalformed
	}
	first, err := in.ReadByte()
	if err != nil {
		return nil, unexpected(err)
	}
	buf = append(buf, tag, first)
	length := int(first)
	if first&0x80 != 0 {
		n := int(first & 0x7f)
		if n == 0 || n > 4 {
			return nil, errMalformed // indefinite or absurd lengths are not LDAP
		}
		length = 0
		for i := 0; i < n; i++ {
			b, err := in.ReadByte()
			if err != nil {
				return nil, unexpected(err)
			}
			buf = append(buf, b)
			length = length<<8 | int(b)
		}
	}
	if length > maxMessage {
		return nil, errTooLarge
	}
	head := len(buf)
	buf = slices.Grow(buf, length)[:head+length]
	if _, err := io.ReadFull(in, buf[head:]); err != nil {
		return nil, unexpected(err)
	}
	return buf, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// protocolOp returns the tag of the protocolOp of an LDAP message: the element
// after the messageID, or 0 when the message is too short to tell.
func protocolOp(msg []byte) byte {
	i := 1 // skip the SEQUENCE tag
	if i >= len(msg) {
		return 0
	}
	if msg[i]&0x80 != 0 {
		i += int(msg[i] & 0x7f)
	}
	i++ // now at the messageID's tag
	if i+1 >= len(msg) || msg[i] != 0x02 || msg[i+1]&0x80 != 0 {
		return 0
	}
	i += 2 + int(msg[i+1]) // skip the INTEGER
	if i >= len(msg) {
		return 0
	}
	return msg[i]
}
