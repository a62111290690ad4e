package guard

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"
)

// PROXY protocol (HAProxy's, v1 and v2) on the client listeners.
//
// Policy: a connection from an address in Config.ProxyTrusted must start with
// a header (on LDAPS before TLS): the header's source becomes the client
// address that the per-address cap, the logs and the bind path see; a header
// the balancer sends for its own connections (v2 LOCAL, v1 UNKNOWN: health
// checks) keeps the balancer's address. No header, a malformed one, or one
// naming no TCP source closes the connection. A connection from any other
// address keeps its own address; when PROXY protocol is on and it starts like
// a header it is closed, the header never believed. With ProxyTrusted empty
// nothing is looked at (a header is then a malformed LDAP message).
//
// The spec (haproxy.org, proxy-protocol.txt) asks a receiver not to guess
// whether a header is present: from a trusted address it is required.

// proxyMode is how a connection's first bytes are treated.
type proxyMode uint8

const (
	proxyOff      proxyMode = iota // PROXY protocol off
	proxyRefused                   // an untrusted peer: a header closes the connection
	proxyRequired                  // a trusted peer: a header must come first
)

// proxyModeOf returns how a connection from peer is treated.
func (g *Guard) proxyModeOf(peer net.Addr) proxyMode {
	if len(g.cfg.ProxyTrusted) == 0 {
		return proxyOff
	}
	ip, err := netip.ParseAddr(hostOf(peer))
	if err != nil {
		return proxyRefused
	}
	for _, p := range g.cfg.ProxyTrusted {
		if p.Contains(ip) {
			return proxyRequired
		}
	}
	return proxyRefused
}

// startsLikeHeader reports whether b, a connection's first byte, can start a
// PROXY header ("PROXY ..." for v1, "\r\n\r\n\x00\r\nQUIT\n" for v2). Neither
// can start an LDAP message (a SEQUENCE, 0x30) or a TLS record (0x16).
func startsLikeHeader(b byte) bool { return b == proxyproto.SIGV1[0] || b == proxyproto.SIGV2[0] }

// proxyHeader reads what PROXY protocol puts before a connection's first
// message, under mode (not proxyOff). It returns a reader over the raw
// connection that holds whatever followed the header, and false when the
// connection must close (logged here).
func (c *conn) proxyHeader(mode proxyMode, useTLS bool) (*bufio.Reader, bool) {
	peer := c.raw.RemoteAddr().String()
	timeout := c.g.cfg.ProxyHeaderTimeout
	if mode == proxyRefused {
		// The wait the connection would have had for its first byte anyway.
		timeout = c.g.cfg.IdleTimeout
		if useTLS {
			timeout = c.g.cfg.HandshakeTimeout
		}
	}
	br := bufio.NewReaderSize(c.raw, clientBufSize)
	_ = c.raw.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.raw.SetReadDeadline(time.Time{}) }()
	// Checked after setting the deadline, as in await.
	if c.draining.Load() {
		return nil, false
	}
	first, err := br.Peek(1)
	switch {
	case c.draining.Load():
		return nil, false
	case errors.Is(err, io.EOF):
		// A TCP health check connects and closes.
		c.log.Debug("connection closed before sending anything")
		return nil, false
	case errors.Is(err, os.ErrDeadlineExceeded) && mode == proxyRequired:
		c.refuseHeader("no PROXY protocol header", hintTrusted, nil, zap.Duration("header_timeout", timeout))
		return nil, false
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Info("connection closed", zap.String("reason", "idle"))
		return nil, false
	case err != nil:
		c.log.Info("connection closed", zap.Error(err))
		return nil, false
	case mode == proxyRefused && startsLikeHeader(first[0]):
		c.refuseHeader("PROXY protocol header from an untrusted address", hintUntrusted, nil)
		return nil, false
	case mode == proxyRefused:
		return br, true
	}
	h, err := proxyproto.Read(br)
	if errors.Is(err, proxyproto.ErrNoProxyProtocol) {
		c.refuseHeader("no PROXY protocol header", hintTrusted, nil)
		return nil, false
	}
	if err != nil {
		c.refuseHeader("malformed PROXY protocol header", hintTrusted, err)
		return nil, false
	}
	if h.Command.IsLocal() || h.TransportProtocol == proxyproto.UNSPEC {
		c.log.Debug("PROXY protocol header for the balancer's own connection", zap.Int("version", int(h.Version)))
		return br, c.g.claimIP(c, hostOf(c.raw.RemoteAddr()))
	}
	src, _, ok := h.TCPAddrs()
	if !ok {
		c.refuseHeader("PROXY protocol header names no TCP source", hintTrusted, nil, zap.Int("transport", int(h.TransportProtocol)))
		return nil, false
	}
	c.setClient(src.String(), peer)
	c.log.Debug("PROXY protocol header", zap.Int("version", int(h.Version)))
	return br, c.g.claimIP(c, hostOf(src))
}

// What to do about a refused header, for the log line.
const (
	hintTrusted   = "a trusted address must start each connection with a valid header (HAProxy: send-proxy or send-proxy-v2 on the server line); if it is not a load balancer, take it out of listen.proxy_protocol.trusted"
	hintUntrusted = "if this is your load balancer, add its address to listen.proxy_protocol.trusted"
)

// refuseHeader logs why a connection's PROXY protocol header (or its absence)
// closes it: one Warn line with the peer's address and what to do.
func (c *conn) refuseHeader(msg, hint string, err error, fields ...zap.Field) {
	fields = append(fields, zap.String("peer", c.raw.RemoteAddr().String()), zap.Uint64("conn_id", c.sess.id), zap.String("hint", hint))
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	c.g.log.Warn(msg+": connection closed", fields...)
}

// bufferedConn is a connection whose first bytes were already read into r:
// TLS over a connection that started with a PROXY header reads through it.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
