package guard

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/hashicorp/go-hclog"
	"github.com/jimlambrt/gldap"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// waitFor bounds every wait in these tests.
const waitFor = 10 * time.Second

// harness is a guard in front of a small gldap backend that speaks the hello.
type harness struct {
	g           *Guard
	addr        string // the guard's plain listener
	backendAddr string
	logs        *observer.ObservedLogs
	userBinds   atomic.Int32 // binds the backend saw other than hellos
	entries     int          // entries of a search under "ou=many"
	entryBytes  int
	backend     *gldap.Server
}

func startHarness(t testing.TB, cfg Config, wrap func(net.Listener) net.Listener) *harness {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 100
	}
	if cfg.MaxConnectionsPerIP == 0 {
		cfg.MaxConnectionsPerIP = 100
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 128 << 10
	}
	g, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{g: g, logs: logs, entries: 200, entryBytes: 4000}
	h.backendAddr = h.startBackend(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		l = wrap(l)
	}
	h.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- g.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return h
}

// startBackend runs gldap with a bind handler that honours the hello and a
// search handler that returns h.entries large entries.
func (h *harness) startBackend(t testing.TB) string {
	t.Helper()
	var mu sync.Mutex
	sessions := map[int]*Session{}
	srv, err := gldap.NewServer(
		gldap.WithLogger(hclog.NewNullLogger()),
		gldap.WithOnClose(func(id int) { mu.Lock(); delete(sessions, id); mu.Unlock() }),
	)
	if err != nil {
		t.Fatal(err)
	}
	mux, _ := gldap.NewMux()
	_ = mux.Bind(func(w *gldap.ResponseWriter, r *gldap.Request) {
		m, _ := r.GetSimpleBindMessage()
		resp := r.NewBindResponse(gldap.WithResponseCode(49))
		if IsHelloName(m.UserName) {
			sess, proof, err := h.g.Hello(m.UserName, string(m.Password))
			if err == nil {
				resp.SetResultCode(0)
				resp.SetDiagnosticMessage(proof)
				if sess != nil {
					mu.Lock()
					sessions[r.ConnectionID()] = sess
					mu.Unlock()
				}
			}
			_ = w.Write(resp)
			return
		}
		h.userBinds.Add(1)
		mu.Lock()
		sess := sessions[r.ConnectionID()]
		mu.Unlock()
		if sess != nil && m.Password == "pw" {
			sess.SetIdentity("cn=" + m.UserName + ",dc=example,dc=test")
			resp.SetResultCode(0)
		}
		_ = w.Write(resp)
	})
	_ = mux.Search(func(w *gldap.ResponseWriter, r *gldap.Request) {
		m, _ := r.GetSearchMessage()
		if m.BaseDN == "ou=many" {
			for i := 0; i < h.entries; i++ {
				e := r.NewSearchResponseEntry(fmt.Sprintf("cn=e%d,ou=many", i))
				e.AddAttribute("data", []string{entryData(i, h.entryBytes)})
				_ = w.Write(e)
			}
		}
		_ = w.Write(r.NewSearchDoneResponse(gldap.WithResponseCode(0)))
	})
	_ = srv.Router(mux)
	for attempt := 0; ; attempt++ {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		_ = l.Close()
		go func() { _ = srv.Run(addr) }()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		for {
			if err = h.g.Attach(ctx, addr); err == nil || ctx.Err() != nil {
				break
			}
		}
		cancel()
		if err == nil {
			h.backend = srv
			t.Cleanup(func() { _ = srv.Stop() })
			return addr
		}
		if attempt == 3 {
			t.Fatalf("attach backend: %v", err)
		}
	}
}

func entryData(i, n int) string {
	s := strings.Repeat(fmt.Sprintf("<%d>", i), n)
	return s[:n]
}

func dial(t testing.TB, addr string) *ldap.Conn {
	t.Helper()
	l, err := ldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	l.SetTimeout(waitFor)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestConcurrentLargeSearchesAndWhoAmIKeepTheStreamIntact(t *testing.T) {
	h := startHarness(t, Config{}, nil)
	// Entries larger than the guard's 4 KiB client buffer, so that they
	// bypass it, interleaved with the guard's own WhoAmI answers.
	h.entries, h.entryBytes = 60, 6000
	l := dial(t, h.addr)
	l.SetTimeout(time.Minute) // -race slows the 2-core machines down a lot
	if err := l.Bind("jdoe", "pw"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				res, err := l.Search(ldap.NewSearchRequest("ou=many", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
				if err != nil {
					errs <- fmt.Errorf("search: %w", err)
					return
				}
				if len(res.Entries) != h.entries {
					errs <- fmt.Errorf("search returned %d entries, want %d", len(res.Entries), h.entries)
					return
				}
				for k, e := range res.Entries {
					if e.DN != fmt.Sprintf("cn=e%d,ou=many", k) || e.GetAttributeValue("data") != entryData(k, h.entryBytes) {
						errs <- fmt.Errorf("entry %d is corrupt: %q", k, e.DN)
						return
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				res, err := l.WhoAmI(nil)
				if err != nil {
					errs <- fmt.Errorf("whoami: %w", err)
					return
				}
				if res.AuthzID != "dn:cn=jdoe,dc=example,dc=test" {
					errs <- fmt.Errorf("whoami = %q", res.AuthzID)
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

func TestAClientCannotSendTheHelloThroughTheGuard(t *testing.T) {
	h := startHarness(t, Config{}, nil)
	l := dial(t, h.addr)
	// Even the exact shape of a hello, with a made-up token and secret.
	err := l.Bind(helloPrefix+"00112233445566778899aabbccddeeff", strings.Repeat("ab", 32))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("bind with the reserved name: %v, want 49", err)
	}
	if n := h.userBinds.Load(); n != 0 {
		t.Fatalf("the backend saw %d non-hello binds; the guard relayed the reserved name", n)
	}
	res, err := l.WhoAmI(nil)
	if err != nil || res.AuthzID != "" {
		t.Fatalf("after the refused bind: whoami %+v err %v, want anonymous", res, err)
	}
}

func TestAForgedHelloStraightToTheBackendMapsNothing(t *testing.T) {
	h := startHarness(t, Config{}, nil)
	// A local process that found the internal port.
	l := dial(t, h.backendAddr)
	err := l.Bind(helloPrefix+"00112233445566778899aabbccddeeff", h.g.secret)
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("guessed token: %v, want 49", err)
	}
	if err := l.Bind("jdoe", "pw"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("user bind on an unmapped connection: %v, want 49", err)
	}
	// A token that was real once cannot be replayed.
	token, _ := h.g.hellos.issue(kindHello, &Session{id: 99})
	l2 := dial(t, h.backendAddr)
	if err := l2.Bind(helloPrefix+token, h.g.secret); err != nil {
		t.Fatalf("genuine hello: %v", err)
	}
	l3 := dial(t, h.backendAddr)
	if err := l3.Bind(helloPrefix+token, h.g.secret); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("replayed hello: %v, want 49", err)
	}
	if err := l3.Bind("jdoe", "pw"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("user bind after a replayed hello: %v, want 49", err)
	}
}

// flakyListener fails Accept with EMFILE a few times, as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	failures atomic.Int32
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

func TestAcceptErrorsBackOffAndTheListenerSurvives(t *testing.T) {
	h := startHarness(t, Config{}, func(l net.Listener) net.Listener {
		f := &flakyListener{Listener: l}
		f.failures.Store(5)
		return f
	})
	l := dial(t, h.addr)
	if err := l.Bind("jdoe", "pw"); err != nil {
		t.Fatalf("bind after accept errors: %v", err)
	}
	logged := h.logs.FilterMessage("accept failed; retrying").All()
	if len(logged) != 5 {
		t.Fatalf("logged %d accept failures, want 5", len(logged))
	}
	last := logged[4].ContextMap()["retry_in"].(time.Duration)
	if last != 80*time.Millisecond {
		t.Fatalf("fifth retry after %v, want 80ms (exponential from 5ms)", last)
	}
}

func TestBackoffIsCappedAtOneSecond(t *testing.T) {
	var delay time.Duration
	for i := 0; i < 20; i++ {
		delay = max(5*time.Millisecond, min(2*delay, time.Second))
	}
	if delay != time.Second {
		t.Fatalf("delay after 20 failures = %v", delay)
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

// closedSoon reports whether the server closes c: a read returns EOF (or a
// reset) before waitFor.
func closedSoon(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // a Notice of Disconnection, say
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	}
}

func TestConnectionsOverTheTotalCapAreClosedAndLogged(t *testing.T) {
	h := startHarness(t, Config{MaxConnections: 2}, nil)
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	waitUntil(t, "two connections are open", func() bool { return h.g.OpenConnections() == 2 })
	extra, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedSoon(t, extra) {
		t.Fatal("the third connection stayed open")
	}
	refused := h.logs.FilterMessage("connection refused").FilterField(zap.String("client", extra.LocalAddr().String())).All()
	if len(refused) != 1 || refused[0].ContextMap()["reason"] != "too many connections" {
		t.Fatalf("refusal log for %s: %v", extra.LocalAddr(), refused)
	}
}

func TestShutdownRefusesNewConnectionsAndServeReturns(t *testing.T) {
	h := startHarness(t, Config{}, nil)
	l := dial(t, h.addr)
	if err := l.Bind("jdoe", "pw"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
	if err := l.Bind("jdoe", "pw"); err == nil {
		t.Fatal("an open connection still works after Shutdown")
	}
}

func TestWithoutABackendAClientGetsUnavailableAndTheFailureIsLogged(t *testing.T) {
	h := startHarness(t, Config{}, nil)
	if err := h.backend.Stop(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(encodeSimpleBind(1, "jdoe", "pw"))
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	var scratch []byte
	msg, _, err := readMessage(bufio.NewReader(c), 1<<16, &scratch)
	if err != nil {
		t.Fatalf("no Notice of Disconnection: %v", err)
	}
	if want := encodeResult(0, opExtendedResp, resultUnavailable, "the gateway is unavailable", []byte(oidNoticeOfDisc), nil); !bytes.Equal(msg, want) {
		t.Fatalf("got % x, want a Notice of Disconnection with unavailable", msg)
	}
	if !closedSoon(t, c) {
		t.Fatal("the connection stayed open")
	}
	if n := h.logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessage("connection closed").Len(); n != 1 {
		t.Fatalf("%d error logs for the backend failure, want 1", n)
	}
}
