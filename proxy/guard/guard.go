// Package guard is the connection guard in front of ldapgate's gldap server: it
// owns the client-facing accept loops (plain LDAP, LDAPS, StartTLS), terminates
// TLS, enforces connection caps, message-size and idle limits, answers the
// operations gldap v0.1.14 cannot (WhoAmI, StartTLS, writes, Compare, ...), and
// relays each framed bind or search to gldap over loopback after telling gldap,
// in-band, which client the connection belongs to (see Guard.Hello).
package guard

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("guard: server closed")

// ErrNoBackend is returned by Serve and ServeTLS before Attach succeeded.
var ErrNoBackend = errors.New("guard: no backend attached")

// ErrNoTLS is returned by ServeTLS when the guard has no TLS configuration.
var ErrNoTLS = errors.New("guard: no TLS configuration")

// ErrBackendUnverified means the server at the backend address did not prove it
// belongs to this process (see Attach).
var ErrBackendUnverified = errors.New("guard: backend did not prove it runs in this process")

// ErrInvalidConfig means a Config field is out of range; the message names it.
var ErrInvalidConfig = errors.New("guard: invalid config")

// maxBackendMessage caps one message from the backend. The backend is our own
// gldap, so this only contains a bug, not a client.
const maxBackendMessage = 64 << 20

// Config configures a Guard. Zero durations and sizes are invalid, except those
// whose default is documented.
type Config struct {
	// TLS serves LDAPS (ServeTLS) and StartTLS. Nil means neither.
	TLS *tls.Config
	// StartTLS offers the StartTLS extended operation on plain connections.
	// Needs TLS.
	StartTLS bool
	// MaxConnections caps the client connections open at once; past it a new
	// connection is closed at once.
	MaxConnections int
	// MaxConnectionsPerIP caps the connections open at once from one client IP.
	MaxConnectionsPerIP int
	// IdleTimeout closes a connection that has sent no message for this long
	// while none of its requests is in flight. It also bounds the time one
	// message may take to arrive and a client may take to accept a response.
	IdleTimeout time.Duration
	// MaxMessageBytes caps one client message (header included); a longer one
	// closes the connection before its content is read.
	MaxMessageBytes int
	// HandshakeTimeout bounds a TLS handshake (LDAPS or StartTLS). Default 10s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds connecting to the backend plus its hello. Default 5s.
	DialTimeout time.Duration
	// KnownControls are the control OIDs a request may mark critical; any other
	// critical control gets unavailableCriticalExtension. Default: paged
	// results (OIDPagedResults).
	KnownControls []string
	// ProxyTrusted are the load balancers whose connections must start with a
	// PROXY protocol header naming the client (see proxyproto.go for the
	// policy). Empty: PROXY protocol off.
	ProxyTrusted []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for that header. Default 5s.
	ProxyHeaderTimeout time.Duration
}

func (c *Config) validate() error {
	switch {
	case c.MaxConnections <= 0:
		return fmt.Errorf("%w: max connections %d", ErrInvalidConfig, c.MaxConnections)
	case c.MaxConnectionsPerIP <= 0:
		return fmt.Errorf("%w: max connections per IP %d", ErrInvalidConfig, c.MaxConnectionsPerIP)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("%w: idle timeout %v", ErrInvalidConfig, c.IdleTimeout)
	case c.MaxMessageBytes < 64:
		return fmt.Errorf("%w: max message bytes %d (at least 64)", ErrInvalidConfig, c.MaxMessageBytes)
	case c.StartTLS && c.TLS == nil:
		return fmt.Errorf("%w: StartTLS needs a TLS configuration", ErrInvalidConfig)
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ProxyHeaderTimeout <= 0 {
		c.ProxyHeaderTimeout = 5 * time.Second
	}
	if c.KnownControls == nil {
		c.KnownControls = []string{OIDPagedResults}
	}
	return nil
}

// Guard accepts client connections and relays them to the backend. Create it
// with New, call Attach once, then Serve and/or ServeTLS; stop it with Shutdown.
type Guard struct {
	cfg     Config
	log     *zap.Logger
	hellos  *hellos
	secret  string // hellos.secret as the hello's password
	backend atomic.Pointer[string]
	nextID  atomic.Uint64

	ctx    context.Context // cancelled when Shutdown gives up waiting
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool
	done      chan struct{} // closed when Shutdown starts
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[string]int
	wg        sync.WaitGroup // one per open connection
}

// New returns a Guard. It logs under log.Named("guard"); nil logs nothing.
func New(cfg Config, log *zap.Logger) (*Guard, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	h, err := newHellos()
	if err != nil {
		return nil, fmt.Errorf("hello secret: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Guard{
		cfg:       cfg,
		log:       log.Named("guard"),
		hellos:    h,
		secret:    string(h.secret),
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		listeners: make(map[*net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		perIP:     make(map[string]int),
	}, nil
}

// Attach makes addr the backend the guard relays to, once the server there has
// proved that it runs in this process: the guard sends a probe bind with a
// one-time token (no secret) and the backend's bind handler, through
// Guard.Hello, must answer an HMAC of that token keyed with the secret. This
// closes the window in which another local process could take the loopback
// port between picking it and gldap listening on it (gldap: Run takes an
// address, not a net.Listener). Call it again to retry while the backend
// starts.
func (g *Guard) Attach(ctx context.Context, addr string) error {
	token, err := g.hellos.issue(kindProbe, nil)
	if err != nil {
		return fmt.Errorf("probe token: %w", err)
	}
	defer g.hellos.forget(token)
	d := net.Dialer{Timeout: g.cfg.DialTimeout}
	bc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial backend: %w", err)
	}
	defer bc.Close()
	deadline := time.Now().Add(g.cfg.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = bc.SetDeadline(deadline)
	if _, err := bc.Write(encodeSimpleBind(helloMessageID, probePrefix+token, "")); err != nil {
		return fmt.Errorf("probe backend: %w", err)
	}
	var scratch []byte
	msg, _, err := readMessage(bufio.NewReader(bc), 1<<16, &scratch)
	if err != nil {
		return fmt.Errorf("probe backend: %w", err)
	}
	id, code, diag, err := parseBindResponse(msg)
	if err != nil {
		return fmt.Errorf("probe backend: %w", err)
	}
	if id != helloMessageID || code != resultSuccess || !hmac.Equal(diag, []byte(g.hellos.proof(token))) {
		return ErrBackendUnverified
	}
	_, _ = bc.Write([]byte{0x30, 0x05, 0x02, 0x01, 0x01, opUnbindRequest, 0x00})
	g.backend.Store(&addr)
	return nil
}

// Serve accepts plain-LDAP connections on l (with StartTLS if configured) until
// Shutdown, and then returns ErrServerClosed. Accept errors such as EMFILE are
// logged and retried with exponential backoff capped at one second; Serve
// returns early only when l is closed by someone else.
func (g *Guard) Serve(l net.Listener) error { return g.serve(l, false) }

// ServeTLS is Serve for LDAPS: every connection starts with a TLS handshake.
func (g *Guard) ServeTLS(l net.Listener) error {
	if g.cfg.TLS == nil {
		return ErrNoTLS
	}
	return g.serve(l, true)
}

func (g *Guard) serve(l net.Listener, useTLS bool) error {
	if g.backend.Load() == nil {
		return ErrNoBackend
	}
	if !g.trackListener(&l, true) {
		return ErrServerClosed
	}
	defer g.trackListener(&l, false)
	log := g.log.With(zap.String("listen", l.Addr().String()), zap.Bool("tls", useTLS))
	log.Info("listening")
	var delay time.Duration
	for {
		raw, err := l.Accept()
		if err != nil {
			if g.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			delay = max(5*time.Millisecond, min(2*delay, time.Second))
			log.Error("accept failed; retrying", zap.Error(err), zap.Duration("retry_in", delay))
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-g.done:
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		delay = 0
		g.admit(raw, useTLS)
	}
}

func (g *Guard) trackListener(l *net.Listener, add bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if add {
		if g.closing {
			return false
		}
		g.listeners[l] = struct{}{}
	} else {
		delete(g.listeners, l)
	}
	return true
}

func (g *Guard) isClosing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}

// admit applies the connection caps and starts serving raw. A connection
// that must send a PROXY protocol header is counted against the per-address
// cap once the header has named the client (claimIP).
func (g *Guard) admit(raw net.Conn, useTLS bool) {
	addr := raw.RemoteAddr().String()
	ip := hostOf(raw.RemoteAddr())
	mode := g.proxyModeOf(raw.RemoteAddr())
	g.mu.Lock()
	var refused string
	var limit int
	switch {
	case g.closing:
		refused = "shutting down"
	case len(g.conns) >= g.cfg.MaxConnections:
		refused, limit = "too many connections", g.cfg.MaxConnections
	case mode != proxyRequired && g.perIP[ip] >= g.cfg.MaxConnectionsPerIP:
		refused, limit = refusedPerIP, g.cfg.MaxConnectionsPerIP
	}
	if refused != "" {
		g.mu.Unlock()
		g.log.Warn("connection refused", zap.String("client", addr), zap.String("reason", refused), zap.Int("limit", limit))
		_ = raw.Close()
		return
	}
	c := newConn(g, raw, addr)
	if mode != proxyRequired {
		c.ip = ip
		g.perIP[ip]++
	}
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	g.mu.Unlock()
	go c.serve(useTLS, mode)
}

// refusedPerIP is the reason logged for a connection over the per-address cap.
const refusedPerIP = "too many connections from this address"

// claimIP counts c, whose PROXY protocol header named its client, against
// ip's per-address cap; over the cap it logs the refusal and returns false.
func (g *Guard) claimIP(c *conn, ip string) bool {
	g.mu.Lock()
	ok := g.perIP[ip] < g.cfg.MaxConnectionsPerIP
	if ok {
		g.perIP[ip]++
		c.ip = ip
	}
	g.mu.Unlock()
	if !ok {
		c.log.Warn("connection refused", zap.String("reason", refusedPerIP), zap.Int("limit", g.cfg.MaxConnectionsPerIP))
	}
	return ok
}

// release forgets a finished connection.
func (g *Guard) release(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	if c.ip != "" {
		if g.perIP[c.ip]--; g.perIP[c.ip] <= 0 {
			delete(g.perIP, c.ip)
		}
	}
	g.mu.Unlock()
	g.wg.Done()
}

// OpenConnections returns the number of client connections open now.
func (g *Guard) OpenConnections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap().String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// Shutdown stops accepting, stops reading new requests, lets every request in
// flight get its response, then closes each connection (idle ones at once, with
// a Notice of Disconnection). When ctx ends first it closes everything that is
// left and returns ctx's error.
func (g *Guard) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if !g.closing {
		g.closing = true
		close(g.done)
	}
	for l := range g.listeners {
		_ = (*l).Close()
	}
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	finished := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		g.cancel()
		return nil
	case <-ctx.Done():
	}
	g.cancel()
	g.mu.Lock()
	for c := range g.conns {
		c.closeConns()
	}
	g.mu.Unlock()
	// Closing the sockets ends every connection goroutine promptly.
	<-finished
	return fmt.Errorf("shutdown: %w", ctx.Err())
}
