package guard

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const (
	clientBufSize  = 4096
	backendBufSize = 16 << 10
	// keepScratch is the largest message buffer a connection keeps between
	// messages; an idle connection should not pin a 128 KiB buffer.
	keepScratch = 16 << 10
	// noticeTimeout bounds writing a Notice of Disconnection to a client that
	// may not be reading.
	noticeTimeout = time.Second
)

var (
	errIdle     = errors.New("idle timeout")
	errDraining = errors.New("server shutting down")
	errUnbind   = errors.New("unbind")
	errClosed   = errors.New("connection closed")
	errBackend  = errors.New("backend unavailable")
)

// conn is one client connection. Two goroutines serve it: the reader (serve)
// frames client messages and answers or relays each one; the pump copies the
// backend's responses to the client, message by message.
type conn struct {
	g    *Guard
	raw  net.Conn // deadlines are set here: they also govern a TLS layer on top
	ip   string   // the client IP counted in perIP; "" while not counted
	sess *Session
	log  *zap.Logger

	br      *bufio.Reader // client reader; reader goroutine only
	scratch []byte        // client messages larger than br's buffer

	// wmu serialises whole messages to the client: the pump's relayed
	// responses and the guard's own answers share bw, so a message must never
	// be interleaved with another (a plain io.Copy under a mutex corrupted
	// concurrent large searches + WhoAmI in the prototype).
	wmu sync.Mutex
	bw  *bufio.Writer

	mu       sync.Mutex // guards closed and backend
	closed   bool
	backend  net.Conn      // set once by the reader goroutine
	pumpDone chan struct{} // closed when the pump exits; nil before the backend

	pending    atomic.Int32 // relayed requests whose final response is not yet out
	answeredAt atomic.Int64 // unix nanoseconds when pending last dropped to 0
	draining   atomic.Bool
	drained    chan struct{} // signalled when pending drops to 0 while draining
}

func newConn(g *Guard, raw net.Conn, addr string) *conn {
	c := &conn{
		g:       g,
		raw:     raw,
		sess:    &Session{id: g.nextID.Add(1)},
		drained: make(chan struct{}, 1),
	}
	c.setClient(addr, "")
	return c
}

// setClient sets the client's address (ip:port), and the load balancer's
// when a PROXY protocol header named the client. The reader goroutine calls
// it before the session is shared.
func (c *conn) setClient(addr, via string) {
	c.sess.addr = addr
	c.log = c.g.log.With(zap.Uint64("conn_id", c.sess.id), zap.String("client", addr))
	if via != "" {
		c.log = c.log.With(zap.String("via", via))
	}
}

// serve runs the reader goroutine until the connection ends.
func (c *conn) serve(useTLS bool, mode proxyMode) {
	defer c.finish()
	var in *bufio.Reader // the first bytes, read while looking for a PROXY header
	if mode != proxyOff {
		var ok bool
		if in, ok = c.proxyHeader(mode, useTLS); !ok {
			return
		}
	}
	var nc net.Conn = c.raw
	if useTLS {
		src := c.raw
		if in != nil && in.Buffered() > 0 {
			src = bufferedConn{Conn: c.raw, r: in}
		}
		tc, err := c.handshake(src)
		if err != nil {
			c.log.Info("TLS handshake failed", zap.Error(err))
			return
		}
		nc, in = tc, nil
	}
	if in != nil {
		c.br = in
	} else {
		c.br = bufio.NewReaderSize(nc, clientBufSize)
	}
	c.bw = bufio.NewWriterSize(nc, clientBufSize)
	c.log.Debug("connection opened", zap.Bool("tls", useTLS))
	err := c.loop()
	switch {
	case errors.Is(err, errDraining):
		c.waitDrained()
		c.notice(resultUnavailable, "the server is shutting down")
		c.log.Debug("connection closed", zap.String("reason", "shutdown"))
	case errors.Is(err, errIdle):
		c.log.Info("connection closed", zap.String("reason", "idle"))
	case errors.Is(err, ErrMalformedMessage), errors.Is(err, ErrMessageTooLarge):
		c.notice(resultProtocolError, "malformed or oversized message")
		c.log.Info("connection closed", zap.String("reason", "protocol error"), zap.Error(err))
	case errors.Is(err, errBackend):
		c.notice(resultUnavailable, "the gateway is unavailable")
		c.log.Error("connection closed", zap.Error(err))
	case err == nil, errors.Is(err, errUnbind), errors.Is(err, io.EOF), c.isClosed():
		c.log.Debug("connection closed")
	default:
		c.log.Info("connection closed", zap.Error(err))
	}
}

// finish closes both sockets, waits for the pump and releases the slot.
func (c *conn) finish() {
	c.closeConns()
	if c.pumpDone != nil {
		<-c.pumpDone
	}
	c.g.release(c)
}

// handshake runs a server TLS handshake over src, c.raw or a bufferedConn
// over it; deadlines are set on c.raw.
func (c *conn) handshake(src net.Conn) (*tls.Conn, error) {
	tc := tls.Server(src, c.g.cfg.TLS)
	_ = c.raw.SetDeadline(time.Now().Add(c.g.cfg.HandshakeTimeout))
	if err := tc.HandshakeContext(c.g.ctx); err != nil {
		return nil, err
	}
	_ = c.raw.SetDeadline(time.Time{})
	c.sess.tls.Store(true)
	return tc, nil
}

// loop reads and dispatches client messages until the connection must end.
func (c *conn) loop() error {
	max := c.g.cfg.MaxMessageBytes
	for {
		if err := c.await(); err != nil {
			return err
		}
		msg, peeked, err := readMessage(c.br, max, &c.scratch)
		if err != nil {
			if c.draining.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
				// Shutdown cut a partial message short; it was never a request.
				return errDraining
			}
			return err
		}
		req, err := parseRequest(msg, c.g.cfg.KnownControls)
		act := classify(&req)
		if err == nil && act.kind == actRelay {
			err = c.relay(msg)
		}
		// msg and req's slices are not used past this point.
		if peeked {
			_, _ = c.br.Discard(len(msg))
		} else if cap(c.scratch) > keepScratch {
			c.scratch = nil
		}
		if err != nil {
			return err
		}
		if err := c.act(req.id, req.op, act); err != nil {
			return err
		}
	}
}

// await waits for the first byte of the next message. The connection is idle,
// and closed, once IdleTimeout has passed since both its last message and the
// final response to its last request: a connection waiting on a slow bind is
// busy, and one that has just been answered gets a full period to go on.
//
// gldap: WithReadTimeout is an absolute deadline on the connection's lifetime,
// not an idle timeout, so the guard keeps the deadlines itself.
func (c *conn) await() error {
	idle := c.g.cfg.IdleTimeout
	waited := c.br.Buffered() == 0
	deadline := time.Now().Add(idle)
	for {
		_ = c.raw.SetReadDeadline(deadline)
		// Checked after setting the deadline: drain sets the flag before
		// expiring the deadline, so one of the two always stops the wait.
		if c.draining.Load() {
			return errDraining
		}
		_, err := c.br.Peek(1)
		if err == nil {
			if waited {
				// The rest of the message gets a full period too.
				_ = c.raw.SetReadDeadline(time.Now().Add(idle))
			}
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if c.draining.Load() {
			return errDraining
		}
		now := time.Now()
		if c.pending.Load() > 0 {
			deadline = now.Add(idle)
			continue
		}
		if answered := time.Unix(0, c.answeredAt.Load()).Add(idle); answered.After(now) {
			deadline = answered
			continue
		}
		return errIdle
	}
}

// relay sends a client message to the backend, connecting and saying hello
// first if this is the connection's first relayed message.
func (c *conn) relay(msg []byte) error {
	if c.backend == nil {
		if err := c.attach(); err != nil {
			return fmt.Errorf("%w: %w", errBackend, err)
		}
	}
	// Counted before the write so the response cannot overtake the count.
	c.pending.Add(1)
	if _, err := c.backend.Write(msg); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// attach connects to the backend, sends the hello, consumes its response and
// starts the pump. Connecting lazily keeps idle client connections at one
// socket each.
func (c *conn) attach() error {
	addr := c.g.backend.Load()
	d := net.Dialer{Timeout: c.g.cfg.DialTimeout}
	bc, err := d.DialContext(c.g.ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	token, err := c.g.hellos.issue(kindHello, c.sess)
	if err != nil {
		_ = bc.Close()
		return err
	}
	defer c.g.hellos.forget(token)
	br := bufio.NewReaderSize(bc, backendBufSize)
	if err := c.hello(bc, br, token); err != nil {
		_ = bc.Close()
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = bc.Close()
		return errClosed
	}
	c.backend = bc
	c.pumpDone = make(chan struct{})
	c.mu.Unlock()
	go c.pump(br)
	return nil
}

func (c *conn) hello(bc net.Conn, br *bufio.Reader, token string) error {
	_ = bc.SetDeadline(time.Now().Add(c.g.cfg.DialTimeout))
	if _, err := bc.Write(encodeSimpleBind(helloMessageID, helloPrefix+token, c.g.secret)); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	var scratch []byte
	msg, peeked, err := readMessage(br, 1<<16, &scratch)
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	id, code, _, err := parseBindResponse(msg)
	if peeked {
		_, _ = br.Discard(len(msg))
	}
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if id != helloMessageID || code != resultSuccess {
		return fmt.Errorf("hello: backend answered %d: %w", code, ErrHelloRefused)
	}
	_ = bc.SetDeadline(time.Time{})
	return nil
}

// pump copies the backend's messages to the client one whole message at a time
// under wmu, flushing whenever it has caught up with the backend.
func (c *conn) pump(br *bufio.Reader) {
	defer close(c.pumpDone)
	defer c.closeConns() // the backend dropped the connection: so do we
	idle := c.g.cfg.IdleTimeout
	for {
		hdr, body, err := peekHeader(br, maxBackendMessage)
		if err != nil {
			if !c.isClosed() && !errors.Is(err, io.EOF) {
				c.log.Warn("backend read failed", zap.Error(err))
			}
			return
		}
		n := hdr + body
		head, err := br.Peek(min(n, hdr+7)) // messageID (at most 4 octets) and protocolOp tag
		if err != nil {
			return
		}
		id, op, ok := responseInfo(head, hdr)
		if !ok {
			c.log.Error("backend sent an unparseable message")
			return
		}
		final := id != 0 && op != opSearchEntry && op != opSearchReference && op != opIntermediate
		c.wmu.Lock()
		_ = c.raw.SetWriteDeadline(time.Now().Add(idle))
		err = copyMessage(c.bw, br, n)
		if err == nil && br.Buffered() == 0 {
			err = c.bw.Flush()
		}
		if err == nil && final {
			// Under wmu: whoever takes wmu next (StartTLS's check, the
			// shutdown notice) sees the count and the response together.
			c.requestDone()
		}
		c.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// requestDone counts one final response, never below zero.
func (c *conn) requestDone() {
	for {
		v := c.pending.Load()
		if v <= 0 {
			return
		}
		if c.pending.CompareAndSwap(v, v-1) {
			if v == 1 {
				c.answeredAt.Store(time.Now().UnixNano())
			}
			if v == 1 && c.draining.Load() {
				select {
				case c.drained <- struct{}{}:
				default:
				}
			}
			return
		}
	}
}

// drain asks the reader to stop reading new requests (Shutdown).
func (c *conn) drain() {
	c.draining.Store(true)
	_ = c.raw.SetReadDeadline(time.Now())
}

// waitDrained waits until every relayed request has its response, the backend
// is gone, or Shutdown gives up.
func (c *conn) waitDrained() {
	for c.pending.Load() > 0 {
		select {
		case <-c.drained:
		case <-c.pumpDone:
			return
		case <-c.g.ctx.Done():
			return
		}
	}
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// closeConns closes the client and backend sockets; safe to call many times
// from any goroutine.
func (c *conn) closeConns() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	b := c.backend
	c.mu.Unlock()
	// The raw socket, not a TLS layer: tls.Conn.Close would wait for a write
	// the pump may be blocked in.
	_ = c.raw.Close()
	if b != nil {
		_ = b.Close()
	}
}

// write sends one whole message of the guard's own to the client.
func (c *conn) write(msg []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.raw.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.bw.Write(msg); err != nil {
		return err
	}
	return c.bw.Flush()
}

// notice sends a Notice of Disconnection (RFC 4511 section 4.4.1), best effort.
func (c *conn) notice(code int, diag string) {
	if c.bw == nil || c.isClosed() {
		return
	}
	_ = c.write(encodeResult(0, opExtendedResp, code, diag, []byte(oidNoticeOfDisc), nil), noticeTimeout)
}

// actionKind is what the guard does with one client message.
type actionKind uint8

const (
	actRelay      actionKind = iota // send it to the backend
	actAnswer                       // answer code/diag itself
	actAnswerQuit                   // answer code/diag, then close
	actDrop                         // ignore it (abandon)
	actUnbind                       // close cleanly
	actWhoAmI                       // answer RFC 4532 from the session's identity
	actStartTLS                     // RFC 4511 section 4.14
	actMalformed                    // Notice of Disconnection, close
)

type action struct {
	kind actionKind
	code int
	diag string
}

// Diagnostic messages of the guard's own answers.
const (
	diagUnsupportedExtended = "unsupported extended operation"
	diagReadOnly            = "the gateway is read-only"
	diagUnsupportedOp       = "operation not supported by the gateway"
	diagDNFilter            = "extensible match filters with :dn are not supported"
	diagDeepFilter          = "search filter nested too deeply"
	diagCriticalControl     = "unsupported critical control"
	diagLDAPv2              = "only LDAPv3 is supported"
	diagSASL                = "only simple bind is supported"
	diagInvalidCredentials  = "invalid credentials"
)

// classify decides what to do with a parsed client request.
func classify(r *request) action {
	if r.unknownControl && responseOp(r.op) != 0 {
		return action{kind: actAnswer, code: resultUnavailableCriticalExtension, diag: diagCriticalControl}
	}
	switch r.op {
	case opBindRequest:
		switch {
		case r.version != 3:
			return action{kind: actAnswerQuit, code: resultProtocolError, diag: diagLDAPv2}
		case r.authTag != 0x80:
			return action{kind: actAnswer, code: resultAuthMethodNotSupported, diag: diagSASL}
		case hasFoldPrefix(r.bindName, reservedPrefix):
			// The hello's name space: never relayed from a client.
			return action{kind: actAnswer, code: resultInvalidCredentials, diag: diagInvalidCredentials}
		}
		return action{kind: actRelay}
	case opSearchRequest:
		switch {
		case r.dnFilter:
			return action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagDNFilter}
		case r.filterTooDeep:
			return action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagDeepFilter}
		}
		return action{kind: actRelay}
	case opExtendedRequest:
		switch string(r.oid) {
		case oidWhoAmI:
			return action{kind: actWhoAmI}
		case oidStartTLS:
			return action{kind: actStartTLS}
		}
		return action{kind: actAnswer, code: resultProtocolError, diag: diagUnsupportedExtended}
	case opAbandonRequest:
		return action{kind: actDrop}
	case opUnbindRequest:
		return action{kind: actUnbind}
	case opCompareRequest, opModDNRequest:
		return action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagUnsupportedOp}
	case opAddRequest, opModifyRequest, opDelRequest:
		return action{kind: actAnswer, code: resultUnwillingToPerform, diag: diagReadOnly}
	}
	return action{kind: actMalformed}
}

// act carries out a decision other than relaying.
func (c *conn) act(id int64, op byte, a action) error {
	idle := c.g.cfg.IdleTimeout
	switch a.kind {
	case actRelay, actDrop:
		return nil
	case actAnswer:
		return c.write(encodeResult(id, responseOp(op), a.code, a.diag, nil, nil), idle)
	case actAnswerQuit:
		_ = c.write(encodeResult(id, responseOp(op), a.code, a.diag, nil, nil), noticeTimeout)
		return fmt.Errorf("%s: %w", a.diag, ErrMalformedMessage)
	case actUnbind:
		return errUnbind
	case actWhoAmI:
		authz := []byte{}
		if dn := c.sess.Identity(); dn != "" {
			authz = []byte("dn:" + dn)
		}
		return c.write(encodeResult(id, opExtendedResp, resultSuccess, "", nil, authz), idle)
	case actStartTLS:
		return c.startTLS(id)
	}
	return fmt.Errorf("protocol op 0x%02x: %w", op, ErrMalformedMessage)
}

// startTLS answers a StartTLS request and, when it succeeds, runs the TLS
// handshake on the client connection; framing continues inside TLS.
func (c *conn) startTLS(id int64) error {
	refuse := func(code int, diag string) error {
		return c.write(encodeResult(id, opExtendedResp, code, diag, nil, nil), c.g.cfg.IdleTimeout)
	}
	// The pump counts a final response while holding wmu, so a client that has
	// read every response is never told that operations are outstanding.
	c.wmu.Lock()
	outstanding := c.pending.Load() > 0
	c.wmu.Unlock()
	switch {
	case c.g.cfg.TLS == nil || !c.g.cfg.StartTLS:
		return refuse(resultProtocolError, diagUnsupportedExtended)
	case c.sess.TLS():
		// RFC 4513 section 3.1.1: operationsError when TLS is already on.
		return refuse(resultOperationsError, "TLS is already established")
	case outstanding:
		return refuse(resultOperationsError, "operations are outstanding")
	case c.br.Buffered() > 0:
		return fmt.Errorf("data after StartTLS before its response: %w", ErrMalformedMessage)
	}
	ok := encodeResult(id, opExtendedResp, resultSuccess, "", []byte(oidStartTLS), nil)
	if err := c.write(ok, c.g.cfg.IdleTimeout); err != nil {
		return err
	}
	// c.br holds nothing (checked above), so the raw connection is where the
	// handshake's bytes are.
	tc, err := c.handshake(c.raw)
	if err != nil {
		return fmt.Errorf("StartTLS handshake: %w", err)
	}
	c.wmu.Lock()
	c.bw.Reset(tc)
	c.wmu.Unlock()
	c.br.Reset(tc)
	return nil
}
