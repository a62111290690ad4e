package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// errPeerClosed is what wireConn.Write answers once a read has failed: the DC has
// closed the connection (or it broke), so a request written now would go nowhere.
var errPeerClosed = errors.New("connection already closed by the server")

// wireConn sits between go-ldap and the TLS connection and answers the one
// question go-ldap cannot: did this request reach the DC?
//
// go-ldap writes each request from its processMessages goroutine and reports
// every failure, before or after the write, as an ErrorNetwork with only a message
// to tell them apart ("ldap: connection closed", "unable to send request…",
// "ldap: response channel closed", "ldap: connection timed out"). Counting the
// complete writes here is exact instead: a pooled connection carries one request
// at a time, so if sent did not move during an operation, the DC never received a
// complete request and cannot have acted on it. A partial write does not count: a
// DC does not process half a BER message.
type wireConn struct {
	net.Conn          // the *tls.Conn go-ldap reads and writes
	raw      net.Conn // the TCP connection under it, for aborting and peeking
	// writeTimeout bounds each write (go-ldap's own timeout starts only after the
	// write returned).
	writeTimeout time.Duration

	sent     atomic.Uint64 // complete writes (requests handed to the kernel)
	readDead atomic.Bool   // a read failed: the peer closed or the connection broke
}

// Read records a failed read, which means the connection is finished.
func (w *wireConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	if err != nil {
		w.readDead.Store(true)
	}
	return n, err
}

// Write refuses to write on a connection whose read side has already failed, and
// counts complete writes.
func (w *wireConn) Write(b []byte) (int, error) {
	if w.readDead.Load() {
		return 0, errPeerClosed
	}
	if w.writeTimeout > 0 {
		_ = w.Conn.SetWriteDeadline(time.Now().Add(w.writeTimeout))
	}
	n, err := w.Conn.Write(b)
	if err == nil && n == len(b) {
		w.sent.Add(1)
	}
	return n, err
}

// abort tears the TCP connection down at once (go-ldap's reader then fails and
// closes the ldap.Conn); it is how a cancelled context interrupts an operation.
func (w *wireConn) abort() { _ = w.raw.Close() }

// pconn is one LDAPS connection owned by a pool.
type pconn struct {
	conn     *ldap.Conn
	wire     *wireConn
	created  time.Time // by the Cluster's clock
	lastUsed time.Time // by the Cluster's clock; when it was last returned to the pool
}

// alive reports whether the connection can still carry a request: go-ldap has not
// started closing it, no read failed, and the kernel has not seen the DC close it.
func (pc *pconn) alive() bool {
	if pc.conn.IsClosing() || pc.wire.readDead.Load() {
		return false
	}
	return !peerGone(pc.wire.raw)
}

// close closes the connection; go-ldap's Close waits for its goroutines.
func (pc *pconn) close() { _ = pc.conn.Close() }

// run performs op on the connection with the operation timeout: the smaller of
// opTimeout and what is left of ctx. A ctx cancelled meanwhile aborts the
// connection. reached reports whether the request was completely written (see
// wireConn); when it is false the DC cannot have acted on it.
func (pc *pconn) run(ctx context.Context, opTimeout time.Duration, op func(*ldap.Conn) error) (reached bool, err error) {
	timeout := opTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = left
		}
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if timeout <= 0 {
		return false, context.DeadlineExceeded
	}
	pc.conn.SetTimeout(timeout)
	stop := context.AfterFunc(ctx, pc.wire.abort)
	defer stop()
	before := pc.wire.sent.Load()
	err = op(pc.conn)
	return pc.wire.sent.Load() != before, err
}

// dialTLS opens one LDAPS connection: TCP with the dialer, then the TLS
// handshake with tlsCfg (see handshake). It does not use ldap.DialURL
// because the connection must be wrapped (wireConn) before go-ldap starts
// reading from it; the TCP keepalive and the TLS configuration are the same.
func (d *dc) dialTLS(ctx context.Context, tlsCfg *tls.Config) (*pconn, error) {
	tc, raw, err := d.handshake(ctx, tlsCfg, true)
	if err != nil {
		return nil, err
	}
	w := &wireConn{Conn: tc, raw: raw, writeTimeout: d.c.config().OpTimeout}
	lc := ldap.NewConn(w, true)
	lc.Start()
	now := d.c.now()
	return &pconn{conn: lc, wire: w, created: now, lastUsed: now}, nil
}

// handshake connects to the DC and completes the TLS handshake with tlsCfg,
// both within upstream.dial_timeout and ctx, and records the expiry of the
// DC's leaf certificate. counted says whether the connect and the handshake
// count in Dials, Handshakes, Resumed and DialFailures (every connection for
// requests and probes), which a certificate check does not.
func (d *dc) handshake(ctx context.Context, tlsCfg *tls.Config, counted bool) (*tls.Conn, net.Conn, error) {
	count := func(n *atomic.Uint64) {
		if counted {
			n.Add(1)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.c.config().DialTimeout)
	defer cancel()
	count(&d.dials)
	raw, err := d.c.dial(ctx, "tcp", d.addr)
	if err != nil {
		count(&d.dialFailures)
		return nil, nil, fmt.Errorf("dial %s: %w", d.url, err)
	}
	tc := tls.Client(raw, tlsCfg)
	count(&d.handshakes)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		count(&d.dialFailures)
		return nil, nil, fmt.Errorf("tls handshake with %s: %w", d.url, err)
	}
	cs := tc.ConnectionState()
	if cs.DidResume {
		count(&d.resumed)
	}
	d.mu.Lock()
	if len(cs.PeerCertificates) > 0 {
		// A resumed session carries the certificates of its first handshake.
		d.certNotAfter = cs.PeerCertificates[0].NotAfter
	}
	d.certCheckedAt = d.c.now()
	d.mu.Unlock()
	return tc, raw, nil
}
