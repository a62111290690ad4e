package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
)

// waitFor bounds every wait in these tests; none of them sleeps to synchronise.
const waitFor = 10 * time.Second

const testBaseDN = "DC=example,DC=test"

func userDN(name string) string { return "CN=" + name + ",OU=Users," + testBaseDN }

// fakeAuth is an Authenticator: "" / "" is anonymous, password "secret" binds
// as userDN(name), anything else is 49. hook, when set, decides first.
type fakeAuth struct {
	mu      sync.Mutex
	clients []Client
	names   []string
	hook    func(ctx context.Context, c Client, name, password string) (BindOutcome, bool)
}

func (f *fakeAuth) Bind(ctx context.Context, c Client, name, password string) BindOutcome {
	f.mu.Lock()
	f.clients = append(f.clients, c)
	f.names = append(f.names, name)
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		if out, ok := hook(ctx, c, name, password); ok {
			return out
		}
	}
	switch {
	case name == "" && password == "":
		return BindOutcome{Code: 0}
	case password == "secret":
		return BindOutcome{Code: 0, DN: userDN(name)}
	}
	return BindOutcome{Code: 49, Diagnostic: DiagInvalidCredentials}
}

func (f *fakeAuth) calls() ([]Client, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Client(nil), f.clients...), append([]string(nil), f.names...)
}

// testServer is a Server on loopback listeners with observed logs.
type testServer struct {
	*Server
	addr      string // plain
	ldapsAddr string // "" unless started with ldaps
	auth      *fakeAuth
	logs      *observer.ObservedLogs
	caFile    string
	ca        *certs.CA // the CA of the listener's certificate
	clientTLS *tls.Config
}

type serverSetup struct {
	cfg   configs.Listen
	ldaps bool
	hook  func(ctx context.Context, c Client, name, password string) (BindOutcome, bool)
}

func startServer(t *testing.T, st serverSetup) *testServer {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	ts := &testServer{auth: &fakeAuth{hook: st.hook}, logs: logs}
	cfg := st.cfg
	if st.ldaps || cfg.StartTLS {
		ts.writeCerts(t, &cfg)
	}
	s, err := NewServer(cfg, testBaseDN, ts.auth, zap.New(core), WithVendorVersion("v-test"))
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	var served []chan error
	serve := func(f func(net.Listener) error) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		served = append(served, ch)
		go func() { ch <- f(l) }()
		return l.Addr().String()
	}
	ts.addr = serve(s.Serve)
	if st.ldaps {
		ts.ldapsAddr = serve(s.ServeTLS)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = s.Shutdown(ctx)
		for _, ch := range served {
			select {
			case err := <-ch:
				if !errors.Is(err, ErrServerClosed) {
					t.Errorf("Serve returned %v, want ErrServerClosed", err)
				}
			case <-ctx.Done():
				t.Errorf("Serve did not return within %v of Shutdown", waitFor)
			}
		}
	})
	return ts
}

// writeCerts issues a CA and a server certificate for 127.0.0.1 and points
// cfg.TLS at the files, so the listener loads them through certs.Reloader.
func (ts *testServer) writeCerts(t *testing.T, cfg *configs.Listen) {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.GenerateCA("ldapgate test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts.ca, ts.caFile = ca, filepath.Join(dir, "ca.pem")
	cfg.TLS.CertFile = filepath.Join(dir, "server.pem")
	cfg.TLS.KeyFile = filepath.Join(dir, "server.key")
	for path, data := range map[string][]byte{ts.caFile: ca.CertPEM(), cfg.TLS.CertFile: certPEM, cfg.TLS.KeyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	ts.clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func (ts *testServer) dial(t *testing.T) *ldap.Conn {
	t.Helper()
	l, err := ldap.DialURL("ldap://" + ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	l.SetTimeout(waitFor)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// dialFrom opens a go-ldap connection whose local address the test knows.
func (ts *testServer) dialFrom(t *testing.T, localIP string) (*ldap.Conn, net.Addr) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: waitFor}
	c, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	l := ldap.NewConn(c, false)
	l.Start()
	l.SetTimeout(waitFor)
	t.Cleanup(func() { _ = l.Close() })
	return l, c.LocalAddr()
}

func (ts *testServer) raw(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", ts.addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func rootDSERequest(attrs ...string) *ldap.SearchRequest {
	return ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", attrs, nil)
}

func wantCode(t *testing.T, what string, err error, code uint16) {
	t.Helper()
	if !ldap.IsErrorWithCode(err, code) {
		t.Fatalf("%s: got %v, want result %d", what, err, code)
	}
}

// readPacket reads one LDAP message from a raw connection.
func readPacket(t *testing.T, c net.Conn) *ber.Packet {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	p, err := ber.ReadPacket(c)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return p
}

// result returns the message ID, protocolOp tag and result code of a response.
func result(t *testing.T, p *ber.Packet) (id int64, op ber.Tag, code int64) {
	t.Helper()
	if len(p.Children) < 2 || len(p.Children[1].Children) < 1 {
		t.Fatalf("not an LDAP result: %v", p)
	}
	return p.Children[0].Value.(int64), p.Children[1].Tag, p.Children[1].Children[0].Value.(int64)
}

// closedSoon reports whether the server closes c: a read ends in EOF or a
// reset within waitFor (anything it sends first is skipped).
func closedSoon(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", waitFor, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Raw client messages, for what go-ldap will not send.

func message(id int64, op *ber.Packet) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	p.AppendChild(op)
	return p.Bytes()
}

func bindMessage(id, version int64, name string, auth *ber.Packet) []byte {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "Bind Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, version, "Version"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "User Name"))
	p.AppendChild(auth)
	return message(id, p)
}

func whoAmIMessage(id int64) []byte {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Extended Request")
	p.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidWhoAmI, "Name"))
	return message(id, p)
}

func TestAnonymousClientsReadTheRootDSE(t *testing.T) {
	ts := startServer(t, serverSetup{})
	l := ts.dial(t)
	check := func(t *testing.T) {
		res, err := l.Search(rootDSERequest())
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Entries) != 1 {
			t.Fatalf("%d entries, want the rootDSE", len(res.Entries))
		}
		e := res.Entries[0]
		for attr, want := range map[string]string{
			"namingContexts":       testBaseDN,
			"defaultNamingContext": testBaseDN,
			"supportedLDAPVersion": "3",
			"supportedControl":     oidPagedResults,
			"supportedExtension":   oidWhoAmI,
			"vendorName":           "ldapgate",
			"vendorVersion":        "v-test",
		} {
			if got := e.GetAttributeValues(attr); len(got) != 1 || got[0] != want {
				t.Errorf("%s = %q, want %q", attr, got, want)
			}
		}
	}
	t.Run("before any bind", check)
	if err := l.UnauthenticatedBind(""); err != nil {
		t.Fatalf("anonymous bind: %v", err)
	}
	t.Run("after an anonymous bind", check)
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	t.Run("after a user bind", check)

	res, err := l.Search(rootDSERequest("vendorName"))
	if err != nil {
		t.Fatal(err)
	}
	if attrs := res.Entries[0].Attributes; len(attrs) != 1 || attrs[0].Name != "vendorName" {
		t.Fatalf("asked for vendorName, got %v", attrs)
	}
	// A paging client (pascom's import) gets the control back and stops.
	paged, err := l.SearchWithPaging(rootDSERequest(), 10)
	if err != nil || len(paged.Entries) != 1 {
		t.Fatalf("paged rootDSE search: %v entries, err %v", len(paged.Entries), err)
	}
}

func TestOtherSearchesAreRefusedForNow(t *testing.T) {
	ts := startServer(t, serverSetup{})
	l := ts.dial(t)
	req := ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(sAMAccountName=jdoe)", nil, nil)
	_, err := l.Search(req)
	wantCode(t, "anonymous search", err, ldap.LDAPResultInsufficientAccessRights)
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	_, err = l.Search(req)
	wantCode(t, "search after a bind", err, ldap.LDAPResultInsufficientAccessRights)
}

func TestTheAuthenticatorSeesTheClientAddress(t *testing.T) {
	ts := startServer(t, serverSetup{})
	a, addrA := ts.dialFrom(t, "127.0.0.1")
	b, addrB := ts.dialFrom(t, "127.0.0.2")
	if err := a.Bind("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind("bob", "wrong"); !ldap.IsErrorWithCode(err, 49) {
		t.Fatalf("bob's bind: %v, want 49", err)
	}
	if err := a.Bind("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	clients, names := ts.auth.calls()
	want := []struct {
		name string
		addr net.Addr
	}{{"alice", addrA}, {"bob", addrB}, {"alice", addrA}}
	if len(clients) != len(want) {
		t.Fatalf("%d binds reached the authenticator, want %d", len(clients), len(want))
	}
	for i, w := range want {
		if names[i] != w.name || clients[i].Addr != w.addr.String() || clients[i].TLS || clients[i].ConnID == 0 {
			t.Errorf("bind %d: %q from %+v, want %q from %s without TLS", i, names[i], clients[i], w.name, w.addr)
		}
	}
	if clients[0].ConnID != clients[2].ConnID || clients[0].ConnID == clients[1].ConnID {
		t.Errorf("connection IDs %d, %d, %d: want one per connection", clients[0].ConnID, clients[1].ConnID, clients[2].ConnID)
	}
	// The bind path's log lines carry the client and the connection ID.
	logged := ts.logs.FilterMessage("bind").FilterField(zap.String("client", addrB.String())).All()
	if len(logged) != 1 || logged[0].ContextMap()["result"] != int64(49) {
		t.Fatalf("bind log for %s: %v", addrB, logged)
	}
}

func TestWhoAmIReportsTheBoundIdentity(t *testing.T) {
	ts := startServer(t, serverSetup{})
	l := ts.dial(t)
	whoami := func() string {
		t.Helper()
		res, err := l.WhoAmI(nil)
		if err != nil {
			t.Fatalf("whoami: %v", err)
		}
		return res.AuthzID
	}
	if got := whoami(); got != "" {
		t.Fatalf("before a bind: %q, want anonymous", got)
	}
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	if got := whoami(); got != "dn:"+userDN("jdoe") {
		t.Fatalf("after a bind: %q", got)
	}
	_ = l.Bind("jdoe", "wrong")
	if got := whoami(); got != "" {
		t.Fatalf("after a failed bind: %q, want anonymous", got)
	}
}

func TestStartTLSThenBind(t *testing.T) {
	ts := startServer(t, serverSetup{cfg: configs.Listen{StartTLS: true}})
	l := ts.dial(t)
	res, err := l.Search(rootDSERequest("supportedExtension"))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Entries[0].GetAttributeValues("supportedExtension"); len(got) != 2 || got[1] != oidStartTLS {
		t.Fatalf("supportedExtension = %q, want WhoAmI and StartTLS", got)
	}
	if err := l.StartTLS(ts.clientTLS); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatalf("bind over TLS: %v", err)
	}
	who, err := l.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+userDN("jdoe") {
		t.Fatalf("whoami over TLS: %+v %v", who, err)
	}
	clients, _ := ts.auth.calls()
	if !clients[len(clients)-1].TLS {
		t.Fatal("the authenticator was told the connection is not TLS")
	}
	// A second StartTLS on the same connection: RFC 4513 section 3.1.1.
	_, err = l.Extended(ldap.NewExtendedRequest(oidStartTLS, nil))
	wantCode(t, "StartTLS inside TLS", err, ldap.LDAPResultOperationsError)
}

func TestStartTLSIsRefusedWhenNotOffered(t *testing.T) {
	ts := startServer(t, serverSetup{})
	l := ts.dial(t)
	wantCode(t, "StartTLS", l.StartTLS(&tls.Config{InsecureSkipVerify: true}), ldap.LDAPResultProtocolError)
	// go-ldap stops reading after a refused StartTLS, so the connection goes
	// on in raw bytes: it stays usable.
	c := ts.raw(t)
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Extended Request")
	p.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidStartTLS, "Name"))
	_, _ = c.Write(message(1, p))
	if id, op, code := result(t, readPacket(t, c)); id != 1 || op != ldap.ApplicationExtendedResponse || code != ldap.LDAPResultProtocolError {
		t.Fatalf("StartTLS: message %d op %d code %d, want protocolError", id, op, code)
	}
	_, _ = c.Write(whoAmIMessage(2))
	if id, _, code := result(t, readPacket(t, c)); id != 2 || code != 0 {
		t.Fatalf("whoami after the refusal: message %d code %d", id, code)
	}
}

func TestLDAPS(t *testing.T) {
	ts := startServer(t, serverSetup{ldaps: true})
	l, err := ldap.DialURL("ldaps://"+ts.ldapsAddr, ldap.DialWithTLSConfig(ts.clientTLS))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.SetTimeout(waitFor)
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	who, err := l.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+userDN("jdoe") {
		t.Fatalf("whoami over LDAPS: %+v %v", who, err)
	}
	clients, _ := ts.auth.calls()
	if len(clients) != 1 || !clients[0].TLS {
		t.Fatalf("authenticator saw %+v, want one TLS client", clients)
	}
	// Plain LDAP on the LDAPS port is not a TLS handshake: closed.
	c, err := net.Dial("tcp", ts.ldapsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(bindMessage(1, 3, "jdoe", ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "secret", "pw")))
	if !closedSoon(c) {
		t.Fatal("plain LDAP on the LDAPS port was not closed")
	}
}

func TestAClientCannotForgeTheHello(t *testing.T) {
	ts := startServer(t, serverSetup{})
	forgedName := "cn=ldapgate-guard-hello,token=00112233445566778899aabbccddeeff"
	forgedSecret := strings.Repeat("ab", 32)

	t.Run("through the guard the reserved name is answered 49 and never relayed", func(t *testing.T) {
		l := ts.dial(t)
		wantCode(t, "bind with the reserved name", l.Bind(forgedName, forgedSecret), 49)
		wantCode(t, "bind with the reserved name in upper case", l.Bind(strings.ToUpper(forgedName), forgedSecret), 49)
		if _, names := ts.auth.calls(); len(names) != 0 {
			t.Fatalf("the authenticator saw %q", names)
		}
	})

	t.Run("straight to the internal port a guessed hello maps nothing", func(t *testing.T) {
		ts.mu.Lock()
		internal := ts.internal
		mapped := len(ts.conns)
		ts.mu.Unlock()
		l, err := ldap.DialURL("ldap://" + internal)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		l.SetTimeout(waitFor)
		wantCode(t, "forged hello", l.Bind(forgedName, forgedSecret), 49)
		wantCode(t, "probe with a guessed token", l.UnauthenticatedBind("cn=ldapgate-guard-probe,token=00"), 49)
		wantCode(t, "user bind on the unmapped connection", l.Bind("jdoe", "secret"), 49)
		_, err = l.Search(rootDSERequest())
		wantCode(t, "search on the unmapped connection", err, ldap.LDAPResultInsufficientAccessRights)
		if _, names := ts.auth.calls(); len(names) != 0 {
			t.Fatalf("the authenticator saw %q", names)
		}
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if len(ts.conns) != mapped {
			t.Fatalf("%d connections mapped, was %d", len(ts.conns), mapped)
		}
	})

	t.Run("a genuine client still binds", func(t *testing.T) {
		l := ts.dial(t)
		if err := l.Bind("jdoe", "secret"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAPanickingHandlerDoesNotTakeTheServerDown(t *testing.T) {
	// One in-flight slot: a panic must not leak it either.
	ts := startServer(t, serverSetup{cfg: configs.Listen{MaxInFlight: 1}, hook: func(_ context.Context, _ Client, name, _ string) (BindOutcome, bool) {
		if name == "boom" {
			panic("authenticator exploded")
		}
		return BindOutcome{}, false
	}})
	l := ts.dial(t)
	wantCode(t, "bind that panics", l.Bind("boom", "secret"), ldap.LDAPResultOther)
	other := ts.dial(t)
	if err := other.Bind("jdoe", "secret"); err != nil {
		t.Fatalf("another client's bind: %v", err)
	}
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatalf("the same connection after the panic: %v", err)
	}
	logged := ts.logs.FilterMessage("handler panicked").All()
	if len(logged) != 1 {
		t.Fatalf("%d panic logs, want 1", len(logged))
	}
	fields := logged[0].ContextMap()
	if fields["panic"] != "authenticator exploded" || !strings.Contains(fmt.Sprint(fields["stack"]), "fakeAuth") || fields["client"] == nil {
		t.Fatalf("panic log fields: %v", fields)
	}
	if logged[0].Level != zapcore.ErrorLevel {
		t.Fatalf("panic logged at %v, want error", logged[0].Level)
	}
}

func TestTwoThousandIdleConnectionsDoNotBlockGoodBinds(t *testing.T) {
	const idle = 2000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if need := uint64(2*idle + 500); lim.Cur < need {
		lim.Cur = min(need, lim.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		if lim.Cur < need {
			t.Skipf("RLIMIT_NOFILE is %d, need %d", lim.Cur, need)
		}
	}
	ts := startServer(t, serverSetup{cfg: configs.Listen{MaxConnections: idle + 100, MaxConnectionsPerIP: idle}})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: waitFor}
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < idle; i++ {
		c, err := d.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	waitUntil(t, fmt.Sprintf("%d idle connections are open", idle), func() bool {
		return ts.guard.OpenConnections() == idle
	})
	for i := 0; i < 20; i++ {
		l, _ := ts.dialFrom(t, "127.0.0.1")
		if err := l.Bind("jdoe", "secret"); err != nil {
			t.Fatalf("bind %d with %d idle connections open: %v", i, idle, err)
		}
		_ = l.Close()
	}
	if refused := ts.logs.FilterMessage("connection refused").Len(); refused != 0 {
		t.Fatalf("%d connections refused", refused)
	}
}

func TestAConnectionOverThePerIPCapIsClosedAndLogged(t *testing.T) {
	ts := startServer(t, serverSetup{cfg: configs.Listen{MaxConnectionsPerIP: 2}})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: waitFor}
	for i := 0; i < 2; i++ {
		c, err := d.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitUntil(t, "two connections from 127.0.0.3 are open", func() bool { return ts.guard.OpenConnections() == 2 })
	extra, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedSoon(extra) {
		t.Fatal("the third connection from 127.0.0.3 stayed open")
	}
	refused := ts.logs.FilterMessage("connection refused").FilterField(zap.String("client", extra.LocalAddr().String())).All()
	if len(refused) != 1 || refused[0].Level != zapcore.WarnLevel {
		t.Fatalf("refusal log for %s: %v", extra.LocalAddr(), refused)
	}
	l, _ := ts.dialFrom(t, "127.0.0.1")
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatalf("another address is not limited: %v", err)
	}
}

func TestMalformedInputClosesOnlyThatConnection(t *testing.T) {
	ts := startServer(t, serverSetup{})
	good := ts.dial(t)
	if err := good.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}

	t.Run("a 10 MB length header gets a Notice of Disconnection and a close", func(t *testing.T) {
		c := ts.raw(t)
		_, _ = c.Write([]byte{0x30, 0x84, 0x00, 0x98, 0x96, 0x80, 0x02, 0x01, 0x01})
		id, op, code := result(t, readPacket(t, c))
		if id != 0 || op != ldap.ApplicationExtendedResponse || code != ldap.LDAPResultProtocolError {
			t.Fatalf("got message %d op %d code %d, want a Notice of Disconnection with protocolError", id, op, code)
		}
		if !closedSoon(c) {
			t.Fatal("the connection stayed open")
		}
	})

	t.Run("random bytes", func(t *testing.T) {
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 20; i++ {
			c := ts.raw(t)
			junk := make([]byte, 1+rng.Intn(2048))
			rng.Read(junk)
			if i%2 == 0 {
				junk[0] = 0x30 // past the first check
			}
			_, _ = c.Write(junk)
			_ = c.(*net.TCPConn).CloseWrite()
			if !closedSoon(c) {
				t.Fatalf("connection %d with %d random bytes stayed open", i, len(junk))
			}
		}
	})

	t.Run("an LDAPv2 bind gets protocolError and a close", func(t *testing.T) {
		c := ts.raw(t)
		_, _ = c.Write(bindMessage(1, 2, "jdoe", ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "secret", "pw")))
		id, op, code := result(t, readPacket(t, c))
		if id != 1 || op != ldap.ApplicationBindResponse || code != ldap.LDAPResultProtocolError {
			t.Fatalf("got message %d op %d code %d, want bind response 2", id, op, code)
		}
		if !closedSoon(c) {
			t.Fatal("the connection stayed open")
		}
	})

	t.Run("a message cut short stays framed until the idle deadline", func(t *testing.T) {
		// covered with a short idle timeout in TestAPartialMessageIsClosedAtTheIdleDeadline
	})

	if err := good.Bind("jdoe", "secret"); err != nil {
		t.Fatalf("the well-behaved client was disturbed: %v", err)
	}
	if _, names := ts.auth.calls(); len(names) != 2 {
		t.Fatalf("the authenticator saw %q: malformed input reached it", names)
	}
}

func TestOperationsTheGatewayRefuses(t *testing.T) {
	ts := startServer(t, serverSetup{})
	l := ts.dial(t)
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	add := ldap.NewAddRequest("CN=new,"+testBaseDN, nil)
	add.Attribute("objectClass", []string{"person"})
	mod := ldap.NewModifyRequest(userDN("jdoe"), nil)
	mod.Replace("telephoneNumber", []string{"123"})
	_, cmpErr := l.Compare(userDN("jdoe"), "cn", "jdoe")
	unknownCritical := ldap.NewControlString("1.2.3.4.5", true, "")
	_, ctrlErr := l.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, []ldap.Control{unknownCritical}))
	_, dnErr := l.Search(ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(&(objectClass=user)(ou:dn:=Users))", nil, nil))
	_, extErr := l.Extended(ldap.NewExtendedRequest("1.3.6.1.4.1.4203.1.11.1", nil))
	tests := []struct {
		name string
		err  error
		code uint16
	}{
		{"add", l.Add(add), ldap.LDAPResultUnwillingToPerform},
		{"modify", l.Modify(mod), ldap.LDAPResultUnwillingToPerform},
		{"delete", l.Del(ldap.NewDelRequest(userDN("jdoe"), nil)), ldap.LDAPResultUnwillingToPerform},
		{"modify DN", l.ModifyDN(ldap.NewModifyDNRequest(userDN("jdoe"), "CN=x", true, "")), ldap.LDAPResultUnwillingToPerform},
		{"compare", cmpErr, ldap.LDAPResultUnwillingToPerform},
		{"a search with an unknown critical control", ctrlErr, ldap.LDAPResultUnavailableCriticalExtension},
		{"a search with a :dn extensible match", dnErr, ldap.LDAPResultUnwillingToPerform},
		{"an unsupported extended operation", extErr, ldap.LDAPResultProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			wantCode(t, tt.name, tt.err, tt.code)
		})
	}
	who, err := l.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+userDN("jdoe") {
		t.Fatalf("the connection after the refusals: %+v %v", who, err)
	}
	if len(extErr.(*ldap.Error).Err.Error()) == 0 || !strings.Contains(extErr.Error(), "unsupported extended operation") {
		t.Fatalf("extended refusal: %v", extErr)
	}
}

func TestSASLAbandonAndUnbind(t *testing.T) {
	ts := startServer(t, serverSetup{})
	c := ts.raw(t)
	sasl := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "SASL")
	sasl.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "EXTERNAL", "Mechanism"))
	_, _ = c.Write(bindMessage(1, 3, "", sasl))
	if id, op, code := result(t, readPacket(t, c)); id != 1 || op != ldap.ApplicationBindResponse || code != ldap.LDAPResultAuthMethodNotSupported {
		t.Fatalf("SASL bind: message %d op %d code %d, want 7", id, op, code)
	}
	// Abandon has no response: the next message read is the WhoAmI's.
	_, _ = c.Write(message(2, ber.NewInteger(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationAbandonRequest, 1, "Abandon")))
	_, _ = c.Write(whoAmIMessage(3))
	if id, op, code := result(t, readPacket(t, c)); id != 3 || op != ldap.ApplicationExtendedResponse || code != 0 {
		t.Fatalf("after abandon: message %d op %d code %d, want the WhoAmI response", id, op, code)
	}
	_, _ = c.Write(message(4, ber.Encode(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationUnbindRequest, nil, "Unbind")))
	if !closedSoon(c) {
		t.Fatal("unbind did not close the connection")
	}
}

func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	ts := startServer(t, serverSetup{
		cfg: configs.Listen{IdleTimeout: idle},
		hook: func(_ context.Context, _ Client, name, _ string) (BindOutcome, bool) {
			if name == "slow" {
				entered <- struct{}{}
				<-release
			}
			return BindOutcome{}, false
		},
	})

	t.Run("an idle connection is closed", func(t *testing.T) {
		c := ts.raw(t)
		start := time.Now()
		if !closedSoon(c) {
			t.Fatal("the idle connection stayed open")
		}
		if d := time.Since(start); d < idle {
			t.Fatalf("closed after %v, before the idle timeout of %v", d, idle)
		}
	})

	t.Run("a connection waiting on a slow bind is not idle", func(t *testing.T) {
		l := ts.dial(t)
		done := make(chan error, 1)
		go func() { done <- l.Bind("slow", "secret") }()
		select {
		case <-entered:
		case <-time.After(waitFor):
			t.Fatal("the bind never reached the authenticator")
		}
		// The subject of the test is time passing: several idle periods
		// with a request in flight and nothing sent.
		time.Sleep(4 * idle)
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("the slow bind: %v", err)
		}
		who, err := l.WhoAmI(nil)
		if err != nil || who.AuthzID != "dn:"+userDN("slow") {
			t.Fatalf("after the slow bind: %+v %v", who, err)
		}
	})

	t.Run("a busy connection that keeps sending is never idle", func(t *testing.T) {
		l := ts.dial(t)
		deadline := time.Now().Add(3 * idle)
		for time.Now().Before(deadline) {
			if _, err := l.WhoAmI(nil); err != nil {
				t.Fatalf("whoami: %v", err)
			}
		}
	})

	if n := ts.logs.FilterMessage("connection closed").FilterField(zap.String("reason", "idle")).Len(); n == 0 {
		t.Fatal("no idle close was logged")
	}
}

func TestAPartialMessageIsClosedAtTheIdleDeadline(t *testing.T) {
	const idle = 300 * time.Millisecond
	ts := startServer(t, serverSetup{cfg: configs.Listen{IdleTimeout: idle}})
	c := ts.raw(t)
	msg := bindMessage(1, 3, "jdoe", ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "secret", "pw"))
	start := time.Now()
	_, _ = c.Write(msg[:5])
	if !closedSoon(c) {
		t.Fatal("a connection stuck inside a message stayed open")
	}
	if d := time.Since(start); d < idle {
		t.Fatalf("closed after %v, before the deadline of %v", d, idle)
	}
	if _, names := ts.auth.calls(); len(names) != 0 {
		t.Fatalf("the partial bind reached the authenticator: %q", names)
	}
}

func TestBusyPastMaxInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	ts := startServer(t, serverSetup{
		cfg: configs.Listen{MaxInFlight: 1},
		hook: func(_ context.Context, _ Client, name, _ string) (BindOutcome, bool) {
			if name == "slow" {
				entered <- struct{}{}
				<-release
			}
			return BindOutcome{}, false
		},
	})
	slow := ts.dial(t)
	done := make(chan error, 1)
	go func() { done <- slow.Bind("slow", "secret") }()
	<-entered
	l := ts.dial(t)
	wantCode(t, "bind while the only slot is taken", l.Bind("jdoe", "secret"), ldap.LDAPResultBusy)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatalf("bind once the slot is free: %v", err)
	}
}

func TestGracefulShutdownWaitsForAnInFlightBind(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	ts := startServer(t, serverSetup{hook: func(_ context.Context, _ Client, name, _ string) (BindOutcome, bool) {
		if name == "slow" {
			entered <- struct{}{}
			<-release
		}
		return BindOutcome{}, false
	}})
	idle := ts.raw(t)
	l := ts.dial(t)
	done := make(chan error, 1)
	go func() { done <- l.Bind("slow", "secret") }()
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(context.Background()) }()
	waitUntil(t, "the listener stops accepting", func() bool {
		c, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	if !closedSoon(idle) {
		t.Fatal("an idle connection was not closed by Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a bind was in flight", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the in-flight bind: %v", err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Shutdown did not return after the bind finished")
	}
}

func TestShutdownGivesUpOnAStuckBindAfterTheTimeout(t *testing.T) {
	var sawCancel atomic.Bool
	entered := make(chan struct{}, 1)
	ts := startServer(t, serverSetup{
		cfg: configs.Listen{ShutdownTimeout: 200 * time.Millisecond},
		hook: func(ctx context.Context, _ Client, name, _ string) (BindOutcome, bool) {
			entered <- struct{}{}
			<-ctx.Done()
			sawCancel.Store(true)
			return BindOutcome{Code: 52, Diagnostic: DiagUnavailable}, true
		},
	})
	l := ts.dial(t)
	go func() { _ = l.Bind("stuck", "secret") }()
	<-entered
	err := ts.Shutdown(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want a deadline error", err)
	}
	waitUntil(t, "the stuck bind sees its context cancelled", sawCancel.Load)
}

func TestConcurrentSearchesAndWhoAmIOnOneConnection(t *testing.T) {
	ts := startServer(t, serverSetup{})
	l := ts.dial(t)
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				res, err := l.Search(rootDSERequest())
				if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("vendorName") != "ldapgate" {
					errs <- fmt.Errorf("rootDSE search: %v", err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				who, err := l.WhoAmI(nil)
				if err != nil || who.AuthzID != "dn:"+userDN("jdoe") {
					errs <- fmt.Errorf("whoami: %+v %v", who, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The real OpenLDAP clients, as an administrator would run them.

func ldapTool(t *testing.T, ts *testServer, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (apt-get install ldap-utils)", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LDAPTLS_REQCERT=demand")
	if ts.caFile != "" {
		cmd.Env = append(cmd.Env, "LDAPTLS_CACERT="+ts.caFile)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

func TestLdapwhoami(t *testing.T) {
	ts := startServer(t, serverSetup{cfg: configs.Listen{StartTLS: true}, ldaps: true})
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"plain, simple bind", []string{"-x", "-H", "ldap://" + ts.addr, "-D", "jdoe", "-w", "secret"}, "dn:" + userDN("jdoe")},
		{"plain, anonymous", []string{"-x", "-H", "ldap://" + ts.addr}, "anonymous"},
		{"StartTLS required", []string{"-x", "-ZZ", "-H", "ldap://" + ts.addr, "-D", "jdoe@example.test", "-w", "secret"}, "dn:" + userDN("jdoe@example.test")},
		{"LDAPS", []string{"-x", "-H", "ldaps://" + ts.ldapsAddr, "-D", `EXAMPLE\jdoe`, "-w", "secret"}, "dn:" + userDN(`EXAMPLE\jdoe`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ldapTool(t, ts, "ldapwhoami", tt.args...); got != tt.want {
				t.Fatalf("ldapwhoami printed %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLdapsearchReadsTheRootDSE(t *testing.T) {
	ts := startServer(t, serverSetup{})
	out := ldapTool(t, ts, "ldapsearch", "-x", "-LLL", "-H", "ldap://"+ts.addr, "-b", "", "-s", "base", "(objectClass=*)", "+")
	for _, want := range []string{"namingContexts: " + testBaseDN, "vendorName: ldapgate", "supportedExtension: " + oidWhoAmI, "supportedControl: " + oidPagedResults} {
		if !strings.Contains(out, want) {
			t.Errorf("ldapsearch output lacks %q:\n%s", want, out)
		}
	}
	// A paged search, as pascom's import runs it.
	out = ldapTool(t, ts, "ldapsearch", "-x", "-LLL", "-E", "pr=100/noprompt", "-H", "ldap://"+ts.addr, "-b", "", "-s", "base", "vendorName")
	if !strings.Contains(out, "vendorName: ldapgate") {
		t.Errorf("paged ldapsearch output:\n%s", out)
	}
}

// gldapListener reaches into a gldap.Server for its listener: the test needs
// to make Run stop the way an accept error does, and gldap offers no hook.
func gldapListener(t *testing.T, s any) net.Listener {
	t.Helper()
	f := reflect.ValueOf(s).Elem().FieldByName("listener")
	if !f.IsValid() {
		t.Skip("gldap.Server has no listener field any more")
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(net.Listener)
}

func TestTheInternalListenerIsRestartedWhenGldapsRunStops(t *testing.T) {
	ts := startServer(t, serverSetup{})
	before := ts.dial(t)
	if err := before.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	ts.mu.Lock()
	first, oldAddr := ts.backends[0], ts.internal
	ts.mu.Unlock()
	// gldap: Run returns on any accept error (EMFILE...); closing its
	// listener makes it return the same way.
	_ = gldapListener(t, first).Close()
	waitUntil(t, "a second generation of the internal listener is attached", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.gen == 2 && ts.internal != oldAddr
	})
	if n := ts.logs.FilterMessage("internal listener stopped; restarting").Len(); n != 1 {
		t.Fatalf("%d restart logs, want 1", n)
	}
	who, err := before.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+userDN("jdoe") {
		t.Fatalf("a connection of the first generation: %+v %v", who, err)
	}
	if err := before.Bind("alice", "secret"); err != nil {
		t.Fatalf("a bind on a connection of the first generation: %v", err)
	}
	after := ts.dial(t)
	if err := after.Bind("bob", "secret"); err != nil {
		t.Fatalf("a bind on a new connection: %v", err)
	}
	who, err = after.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+userDN("bob") {
		t.Fatalf("whoami on the new connection: %+v %v", who, err)
	}
}

func TestListenAndServe(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s, err := NewServer(configs.Listen{Address: "0.0.0.0:0"}, testBaseDN, &fakeAuth{}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe() }()
	waitUntil(t, "the listener is up", func() bool { return logs.FilterMessage("listening").Len() == 1 })
	addr := logs.FilterMessage("listening").All()[0].ContextMap()["listen"].(string)
	if logs.FilterMessageSnippet("without StartTLS").Len() != 1 {
		t.Error("no warning about plain LDAP on a non-loopback address")
	}
	_, port, _ := net.SplitHostPort(addr)
	l, err := ldap.DialURL("ldap://127.0.0.1:" + port)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind("jdoe", "secret"); err != nil {
		t.Fatal(err)
	}
	shutdownListenAndServe(t, s, served)
}

// shutdownListenAndServe shuts s down; ListenAndServe, whose result served
// receives, must then return ErrServerClosed.
func shutdownListenAndServe(t *testing.T, s *Server, served <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe = %v, want ErrServerClosed", err)
	}
}

// TestWithListening: a caller that asked for port 0 learns each port ListenAndServe
// opened, plain and LDAPS apart, and a client reaches the gateway on each.
func TestWithListening(t *testing.T) {
	var ts testServer
	cfg := configs.Listen{Address: "127.0.0.1:0", LDAPSAddress: "127.0.0.1:0"}
	ts.writeCerts(t, &cfg)
	type listening struct {
		addr  string
		ldaps bool
	}
	got := make(chan listening, 2)
	s, err := NewServer(cfg, testBaseDN, &fakeAuth{}, nil, WithListening(func(a net.Addr, ldaps bool) {
		got <- listening{a.String(), ldaps}
	}))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe() }()
	urls := map[bool]string{}
	for range 2 {
		select {
		case l := <-got:
			if _, ok := urls[l.ldaps]; ok {
				t.Fatalf("the listener with ldaps=%v was reported twice", l.ldaps)
			}
			scheme := map[bool]string{false: "ldap://", true: "ldaps://"}[l.ldaps]
			urls[l.ldaps] = scheme + l.addr
		case err := <-served:
			t.Fatalf("ListenAndServe returned %v before it reported both listeners", err)
		case <-time.After(waitFor):
			t.Fatalf("WithListening reported %v within %v, want the plain and the LDAPS listener", urls, waitFor)
		}
	}
	for _, u := range urls {
		if strings.HasSuffix(u, ":0") {
			t.Errorf("reported %s, want the port the listener got", u)
		}
		l, err := ldap.DialURL(u, ldap.DialWithTLSConfig(ts.clientTLS))
		if err != nil {
			t.Fatalf("dial %s: %v", u, err)
		}
		if err := l.Bind("jdoe", "secret"); err != nil {
			t.Errorf("bind on %s: %v", u, err)
		}
		_ = l.Close()
	}
	shutdownListenAndServe(t, s, served)
}

// TestReconfigureServesTheNewCertificateAndKeepsConnections: Reconfigure with
// other certificate files serves them to new handshakes while an LDAPS
// connection opened before keeps working; files that do not load are refused
// and the certificate stays.
func TestReconfigureServesTheNewCertificateAndKeepsConnections(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{cfg: configs.Listen{Address: "127.0.0.1:0"}, ldaps: true})
	serial := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", ts.ldapsAddr, ts.clientTLS)
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	open, err := ldap.DialURL("ldaps://"+ts.ldapsAddr, ldap.DialWithTLSConfig(ts.clientTLS))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.SetTimeout(waitFor)
	if err := open.Bind(userDN("alice"), "secret"); err != nil {
		t.Fatalf("bind before Reconfigure: %v", err)
	}

	// A new certificate from the same CA, in other files.
	dir := t.TempDir()
	certPEM, keyPEM, err := ts.ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := configs.Default()
	cfg.Listen.TLS = configs.ListenTLS{CertFile: filepath.Join(dir, "new.pem"), KeyFile: filepath.Join(dir, "new.key")}
	for path, data := range map[string][]byte{cfg.Listen.TLS.CertFile: certPEM, cfg.Listen.TLS.KeyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	after := serial()
	if after == before {
		t.Fatal("a handshake after Reconfigure got the old certificate")
	}
	if err := open.Bind(userDN("bob"), "secret"); err != nil {
		t.Fatalf("bind on the connection opened before Reconfigure: %v", err)
	}

	cfg.Listen.TLS.KeyFile = filepath.Join(dir, "missing.key")
	if err := ts.Reconfigure(cfg); err == nil || !strings.Contains(err.Error(), "listen.tls") {
		t.Fatalf("Reconfigure with a missing key = %v, want an error naming listen.tls", err)
	}
	if got := serial(); got != after {
		t.Error("a refused Reconfigure changed the certificate")
	}
}
