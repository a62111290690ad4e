package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/configs"
)

// The balancer is 127.0.0.1 in these tests; the clients behind it are other
// loopback addresses, which only ever appear inside headers.
const balancerIP = "127.0.0.1"

func proxyListen(headerTimeout time.Duration) configs.Listen {
	return configs.Listen{ProxyProtocol: configs.ProxyProtocol{Trusted: []string{balancerIP + "/32"}, HeaderTimeout: headerTimeout}}
}

// dialVia connects from the local IP from to addr and, with version 1 or 2,
// sends a PROXY header naming client as the source.
func dialVia(t *testing.T, from, addr string, version byte, client string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: waitFor}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if version != 0 {
		src, err := net.ResolveTCPAddr("tcp", client)
		if err != nil {
			t.Fatal(err)
		}
		h := proxyproto.HeaderProxyFromAddrs(version, src, c.RemoteAddr())
		if _, err := h.WriteTo(c); err != nil {
			t.Fatalf("write the PROXY v%d header: %v", version, err)
		}
	}
	return c
}

// ldapOver starts go-ldap on c (TLS with cfg when not nil).
func ldapOver(t *testing.T, c net.Conn, cfg *tls.Config) *ldap.Conn {
	t.Helper()
	var l *ldap.Conn
	if cfg != nil {
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake after the PROXY header: %v", err)
		}
		l = ldap.NewConn(tc, true)
	} else {
		l = ldap.NewConn(c, false)
	}
	l.Start()
	l.SetTimeout(waitFor)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// lastClient is the Client the authenticator saw in the last bind.
func (ts *testServer) lastClient(t *testing.T) Client {
	t.Helper()
	clients, _ := ts.auth.calls()
	if len(clients) == 0 {
		t.Fatal("no bind reached the authenticator")
	}
	return clients[len(clients)-1]
}

func TestProxyHeadersFromTheBalancerNameTheClient(t *testing.T) {
	ts := startServer(t, serverSetup{cfg: proxyListen(5 * time.Second), ldaps: true})
	tests := []struct {
		name     string
		version  byte
		client   string
		ldaps    bool
		startTLS bool
	}{
		{name: "v1 on the plain listener", version: 1, client: "127.0.0.11:40001"},
		{name: "v2 on the plain listener", version: 2, client: "127.0.0.12:40002"},
		{name: "v2 with an IPv6 client", version: 2, client: "[fd00::12]:40003"},
		{name: "v2 before TLS on the LDAPS listener", version: 2, client: "127.0.0.13:40004", ldaps: true},
		{name: "v1 before TLS on the LDAPS listener", version: 1, client: "127.0.0.14:40005", ldaps: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := ts.addr
			var cfg *tls.Config
			if tt.ldaps {
				addr, cfg = ts.ldapsAddr, ts.clientTLS
			}
			c := dialVia(t, balancerIP, addr, tt.version, tt.client)
			l := ldapOver(t, c, cfg)
			if err := l.Bind("jdoe", "secret"); err != nil {
				t.Fatalf("bind behind the balancer: %v", err)
			}
			if got := ts.lastClient(t); got.Addr != tt.client || got.TLS != tt.ldaps {
				t.Fatalf("the authenticator saw %+v, want client %s with TLS %v", got, tt.client, tt.ldaps)
			}
			// The connection's own log lines name the client and the balancer.
			opened := ts.logs.FilterMessage("connection opened").FilterField(zap.String("client", tt.client)).All()
			if len(opened) != 1 || opened[0].ContextMap()["via"] != c.LocalAddr().String() {
				t.Fatalf("\"connection opened\" for %s: %v, want one with via %s", tt.client, opened, c.LocalAddr())
			}
		})
	}
}

func TestProxyHeaderOfTheBalancersOwnConnectionKeepsItsAddress(t *testing.T) {
	ts := startServer(t, serverSetup{cfg: proxyListen(5 * time.Second)})
	c := dialVia(t, balancerIP, ts.addr, 0, "")
	// HAProxy's health checks with check-send-proxy: v2 LOCAL.
	if _, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).WriteTo(c); err != nil {
		t.Fatal(err)
	}
	if err := ldapOver(t, c, nil).Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	if got := ts.lastClient(t); got.Addr != c.LocalAddr().String() {
		t.Fatalf("the authenticator saw %s, want the balancer's own %s", got.Addr, c.LocalAddr())
	}
}

// refusals returns the Warn lines about PROXY headers of the connection from peer.
func (ts *testServer) refusals(peer net.Addr, msg string) []observer.LoggedEntry {
	return ts.logs.FilterMessage(msg + ": connection closed").FilterField(zap.String("peer", peer.String())).All()
}

func TestProxyHeaderRefusals(t *testing.T) {
	ts := startServer(t, serverSetup{cfg: proxyListen(300 * time.Millisecond), ldaps: true})
	bind := bindMessage(1, 3, "jdoe", ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "secret", "pw"))
	tests := []struct {
		name  string
		from  string
		ldaps bool
		send  func(t *testing.T, c net.Conn)
		warn  string // "": no Warn line
		hint  string
	}{
		{
			name: "a header from an untrusted address", from: "127.0.0.2",
			send: func(t *testing.T, c net.Conn) {
				src, _ := net.ResolveTCPAddr("tcp", "127.0.0.99:1234")
				_, _ = proxyproto.HeaderProxyFromAddrs(2, src, c.RemoteAddr()).WriteTo(c)
				_, _ = c.Write(bind)
			},
			warn: "PROXY protocol header from an untrusted address", hint: "add its address to listen.proxy_protocol.trusted",
		},
		{
			name: "a v1 header from an untrusted address on the LDAPS listener", from: "127.0.0.2", ldaps: true,
			send: func(t *testing.T, c net.Conn) { _, _ = c.Write([]byte("PROXY TCP4 127.0.0.99 127.0.0.1 1234 636\r\n")) },
			warn: "PROXY protocol header from an untrusted address", hint: "add its address to listen.proxy_protocol.trusted",
		},
		{
			name: "plain LDAP from the balancer without a header", from: balancerIP,
			send: func(t *testing.T, c net.Conn) { _, _ = c.Write(bind) },
			warn: "no PROXY protocol header", hint: "send-proxy",
		},
		{
			name: "nothing from the balancer within header_timeout", from: balancerIP,
			send: func(t *testing.T, c net.Conn) {},
			warn: "no PROXY protocol header", hint: "send-proxy",
		},
		{
			name: "a malformed v1 header from the balancer", from: balancerIP,
			send: func(t *testing.T, c net.Conn) { _, _ = c.Write([]byte("PROXY TCP4 not-an-ip 127.0.0.1 1234 389\r\n")) },
			warn: "malformed PROXY protocol header", hint: "send-proxy",
		},
		{
			name: "a TLS handshake without a header on the LDAPS listener", from: balancerIP, ldaps: true,
			send: func(t *testing.T, c net.Conn) {
				go func() { _ = tls.Client(c, ts.clientTLS).Handshake() }()
			},
			warn: "no PROXY protocol header", hint: "send-proxy",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := ts.addr
			if tt.ldaps {
				addr = ts.ldapsAddr
			}
			clients, _ := ts.auth.calls()
			before := len(clients)
			c := dialVia(t, tt.from, addr, 0, "")
			tt.send(t, c)
			if !closedSoon(c) {
				t.Fatal("the connection stayed open")
			}
			var got []observer.LoggedEntry
			waitUntil(t, "the refusal is logged", func() bool { got = ts.refusals(c.LocalAddr(), tt.warn); return len(got) > 0 })
			if len(got) != 1 || got[0].Level != zapcore.WarnLevel || !strings.Contains(got[0].ContextMap()["hint"].(string), tt.hint) {
				t.Fatalf("refusal lines for %s: %v, want one Warn %q with a hint about %q", c.LocalAddr(), got, tt.warn, tt.hint)
			}
			if clients, _ := ts.auth.calls(); len(clients) != before {
				t.Fatalf("a refused connection reached the authenticator: %+v", clients[before:])
			}
		})
	}

	t.Run("a health check that connects and closes is not a warning", func(t *testing.T) {
		c := dialVia(t, balancerIP, ts.addr, 0, "")
		_ = c.Close()
		waitUntil(t, "the connection is gone", func() bool { return ts.guard.OpenConnections() == 0 })
		if got := ts.logs.FilterField(zap.String("peer", c.LocalAddr().String())).All(); len(got) > 0 {
			t.Fatalf("log lines for a connect-and-close: %v", got)
		}
	})
	t.Run("plain LDAP from an untrusted address keeps its own address", func(t *testing.T) {
		l, local := ts.dialFrom(t, "127.0.0.2")
		if err := l.Bind("jdoe", "secret"); err != nil {
			t.Fatal(err)
		}
		if got := ts.lastClient(t); got.Addr != local.String() {
			t.Fatalf("the authenticator saw %s, want %s", got.Addr, local)
		}
	})
}

func TestPerIPLimitAppliesToTheClientBehindTheBalancer(t *testing.T) {
	cfg := proxyListen(5 * time.Second)
	cfg.MaxConnectionsPerIP = 2
	ts := startServer(t, serverSetup{cfg: cfg})
	// Two connections of one client behind the balancer, bound so their
	// headers have been read.
	for i := range 2 {
		c := dialVia(t, balancerIP, ts.addr, 2, fmt.Sprintf("127.0.0.21:%d", 10000+i))
		if err := ldapOver(t, c, nil).Bind("jdoe", "secret"); err != nil {
			t.Fatal(err)
		}
	}
	extra := dialVia(t, balancerIP, ts.addr, 2, "127.0.0.21:30000")
	if !closedSoon(extra) {
		t.Fatal("a third connection of 127.0.0.21 stayed open")
	}
	refused := ts.logs.FilterMessage("connection refused").FilterField(zap.String("client", "127.0.0.21:30000")).All()
	if len(refused) != 1 || refused[0].Level != zapcore.WarnLevel || refused[0].ContextMap()["via"] != extra.LocalAddr().String() {
		t.Fatalf("refusal lines for 127.0.0.21:30000: %v, want one Warn naming the balancer", refused)
	}
	// The balancer's own address is not capped: another client gets in on
	// its fourth connection.
	other := dialVia(t, balancerIP, ts.addr, 2, "127.0.0.22:10000")
	if err := ldapOver(t, other, nil).Bind("jdoe", "secret"); err != nil {
		t.Fatalf("another client behind the balancer: %v", err)
	}
	if got := ts.lastClient(t); got.Addr != "127.0.0.22:10000" {
		t.Fatalf("the authenticator saw %s, want 127.0.0.22:10000", got.Addr)
	}
}
