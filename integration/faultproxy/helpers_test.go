package faultproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// patience bounds every wait for something that should happen promptly. It
// only matters when the code under test is broken, so it is generous.
const patience = 5 * time.Second

// dcName is the name in the test certificate, which the TLS client sets as
// ServerName, as the gateway does when it dials a DC by IP.
const dcName = "dc1.aadds.example.test"

// echoServer is a loopback TCP (or TLS) server that echoes every byte back
// and reports how each of its connections ended.
type echoServer struct {
	ln    net.Listener
	ended chan error // how each connection ended: nil for a clean EOF
	wg    sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startEcho starts an echo server, over TLS when conf is not nil, and stops
// it when the test ends.
func startEcho(t *testing.T, conf *tls.Config) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for the echo server: %v", err)
	}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	s := &echoServer{ln: ln, ended: make(chan error, 100), conns: make(map[net.Conn]struct{})}
	s.wg.Go(s.accept)
	t.Cleanup(s.stop)
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			_, err := io.Copy(c, c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
			select {
			case s.ended <- err:
			default: // nobody is counting this many connections
			}
		})
	}
}

func (s *echoServer) stop() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// waitEnded waits for one of the server's connections to end and returns
// how it ended.
func (s *echoServer) waitEnded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.ended:
		return err
	case <-time.After(patience):
		t.Fatalf("the server's connection did not end within %v", patience)
		return nil
	}
}

// tlsConfigs returns a server config with a fresh self-signed certificate
// for dcName and a client config that trusts it and sets ServerName.
func tlsConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: dcName},
		DNSNames:              []string{dcName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
	client = &tls.Config{RootCAs: pool, ServerName: dcName, MinVersion: tls.VersionTLS12}
	return server, client
}

// startProxy starts a proxy in front of target and closes it when the test
// ends.
func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p := New(target)
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// setFault sets f or fails the test.
func setFault(t *testing.T, p *Proxy, f Fault) {
	t.Helper()
	if err := p.SetFault(f); err != nil {
		t.Fatalf("SetFault(%v): %v", f, err)
	}
}

// dial connects to addr and closes the connection when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, patience)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// payload returns n bytes that differ from one position to the next, so
// that a lost or reordered chunk shows.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7 / 3)
	}
	return b
}

// roundTrip sends msg through c to the echo server and checks that exactly
// msg comes back.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(patience)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	// Write while reading, or a large msg would fill every buffer on the way.
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		werr <- err
	}()
	got := make([]byte, len(msg))
	_, rerr := io.ReadFull(c, got)
	if err := <-werr; err != nil {
		t.Fatalf("write %d bytes: %v", len(msg), err)
	}
	if rerr != nil {
		t.Fatalf("read back %d bytes: %v", len(msg), rerr)
	}
	if string(got) != string(msg) {
		t.Fatalf("the echo of %d bytes came back changed", len(msg))
	}
}

// expectSilence checks that nothing arrives on c for d and the connection
// is still open: the read ends with a timeout, not an error.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatalf("set read deadline: %v", err)
	}
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %d bytes, %v; want a timeout after %v of silence", n, err, d)
	}
}

// isReset reports whether err is what a client sees when the peer resets
// (or closes) the connection.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

// expectReset checks that c is reset promptly, with no further data.
func expectReset(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatalf("set read deadline: %v", err)
	}
	n, err := c.Read(make([]byte, 1))
	if n != 0 || !isReset(err) {
		t.Fatalf("read = %d bytes, %v; want a connection reset within %v", n, err, patience)
	}
}

// expectResetOnConnect connects to addr and checks that the connection is
// reset promptly. The reset may already be seen by the dial itself, as
// "connect: connection reset by peer", when it arrives before the dialer
// has checked the new socket.
func expectResetOnConnect(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, patience)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial %s: %v, want success or a connection reset", addr, err)
		}
		return
	}
	t.Cleanup(func() { _ = c.Close() })
	expectReset(t, c)
}

// readUntilError reads c until it fails and returns what arrived and the
// error that ended it.
func readUntilError(t *testing.T, c net.Conn) ([]byte, error) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatalf("set read deadline: %v", err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
}

// waitFor polls cond until it holds, failing the test with what after
// patience has passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %v", what, patience)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

// proxyGoroutines returns the stacks of the goroutines running code from
// this package's non-test files.
func proxyGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	source := regexp.MustCompile(`/integration/faultproxy/(\w+)\.go:`)
	var found []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, m := range source.FindAllStringSubmatch(g, -1) {
			if !strings.HasSuffix(m[1], "_test") {
				found = append(found, g)
				break
			}
		}
	}
	return found
}
