package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jimlambrt/gldap"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/guard"
)

// ErrServerClosed is returned by Serve, ServeTLS and ListenAndServe after
// Shutdown.
var ErrServerClosed = guard.ErrServerClosed

// ErrNoAuthenticator is returned by NewServer without an Authenticator.
var ErrNoAuthenticator = errors.New("proxy: no authenticator")

// ErrNoListenAddress is returned by ListenAndServe when the configuration has
// neither a plain nor an LDAPS address.
var ErrNoListenAddress = errors.New("proxy: neither address nor ldaps_address is set")

// Result codes the listener sends itself (RFC 4511 appendix A).
const (
	codeSuccess                  = 0
	codeProtocolError            = 2
	codeInvalidCredentials       = 49
	codeInsufficientAccessRights = 50
	codeBusy                     = 51
	codeUnwillingToPerform       = 53
	codeOther                    = 80
)

// Diagnostic messages the listener sends itself.
const (
	diagInternal      = "internal error"
	diagSearchRefused = "search is not available on this gateway"
	diagUnsupported   = "operation not supported by the gateway"
)

// backendStartAttempts bounds how many loopback ports the server tries for its
// internal gldap listener before giving up.
const backendStartAttempts = 5

// ServerOption customises a Server.
type ServerOption func(*serverOptions)

type serverOptions struct {
	tls       *tls.Config
	version   string
	search    *searchSetup
	listening func(addr net.Addr, ldaps bool)
}

// WithTLSConfig serves LDAPS and StartTLS with c instead of loading the
// certificate named in configs.Listen.TLS.
func WithTLSConfig(c *tls.Config) ServerOption { return func(o *serverOptions) { o.tls = c } }

// WithVendorVersion sets the vendorVersion the rootDSE shows. Default "dev".
func WithVendorVersion(v string) ServerOption { return func(o *serverOptions) { o.version = v } }

// WithListening has ListenAndServe call f with the address of each listener it
// opened (ldaps true for cfg.LDAPSAddress), once every one of them is open and
// before it serves: how a caller that asked for port 0 learns the port.
func WithListening(f func(addr net.Addr, ldaps bool)) ServerOption {
	return func(o *serverOptions) { o.listening = f }
}

// Server is the client-facing LDAP listener: the connection guard in front of a
// gldap server on an internal loopback port, with the gateway's routes (bind
// through the Authenticator, the rootDSE, refusals for everything else).
//
// Lifecycle as net/http: NewServer, then Serve/ServeTLS (or ListenAndServe),
// then Shutdown.
type Server struct {
	cfg     configs.Listen
	baseDN  string
	auth    Authenticator
	log     *zap.Logger
	tls     *tls.Config
	certs   *certs.Reloader // nil with WithTLSConfig or without TLS
	version string
	guard   *guard.Guard
	srch    *searcher // nil without WithSearch: searches other than the rootDSE get 50

	listening func(addr net.Addr, ldaps bool) // WithListening; nil without

	// ctx is the parent of every handler's context; cancelled when Shutdown
	// gives up waiting for in-flight requests.
	ctx    context.Context
	cancel context.CancelFunc

	inflight chan struct{} // semaphore of MaxInFlight

	startOnce sync.Once
	startErr  error
	closing   atomic.Bool

	mu       sync.Mutex
	conns    map[connKey]*connState
	backends []*gldap.Server // every internal gldap server started (see superviseBackend)
	gen      uint64
	internal string // address of the current internal gldap listener
}

// connKey names a gldap connection. gldap numbers connections per Run from 1,
// so a restarted internal listener (a new generation) reuses IDs.
type connKey struct {
	gen uint64
	id  int
}

// connState is what the listener knows about one client connection.
type connState struct {
	sess *guard.Session
	log  *zap.Logger // carries client and conn_id

	mu sync.Mutex
	id boundIdentity
	// rightsDN and rightsOK cache whether id.dn may search (see
	// searcher.mayRead); valid while rightsDN == id.dn.
	rightsDN string
	rightsOK bool

	pages connPages // open paged searches (paging.go)
}

// boundIdentity is who is bound on a connection.
type boundIdentity struct {
	// dn is the canonical DN bound; "" when anonymous or bound as the proxy
	// user through its local secret with a proxy_user that is not a DN.
	dn string
	// localProxy is set when the proxy user bound with its local secret.
	localProxy bool
	// login is the proxy user's name for such a bind, for logs.
	login string
}

// name is the identity for a log line.
func (b boundIdentity) name() string {
	if b.dn == "" && b.localProxy {
		return b.login
	}
	return b.dn
}

func (c *connState) client() Client {
	return Client{Addr: c.sess.RemoteAddr(), ConnID: int(c.sess.ID()), TLS: c.sess.TLS()}
}

// setDN records a DN bound on the connection by the bind path, for WhoAmI
// (answered by the guard) and for search authorisation.
func (c *connState) setDN(dn string) { c.setIdentity(boundIdentity{dn: dn}) }

// setIdentity records who is bound on the connection; search rights are
// decided again for the new identity.
func (c *connState) setIdentity(id boundIdentity) {
	c.mu.Lock()
	c.id = id
	c.rightsDN, c.rightsOK = "", false
	c.mu.Unlock()
	c.sess.SetIdentity(id.dn)
}

// identity returns who is bound on the connection.
func (c *connState) identity() boundIdentity {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// boundDN returns the DN bound on the connection, "" when anonymous.
func (c *connState) boundDN() string { return c.identity().dn }

// cachedRights returns the remembered search-rights decision for dn.
func (c *connState) cachedRights(dn string) (ok, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rightsDN == "" || c.rightsDN != c.id.dn || c.rightsDN != dn {
		return false, false
	}
	return c.rightsOK, true
}

// cacheRights remembers the search-rights decision for dn while it stays bound.
func (c *connState) cacheRights(dn string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id.dn == dn {
		c.rightsDN, c.rightsOK = dn, ok
	}
}

// NewServer builds the listener. Zero fields of cfg take the defaults of
// configs.Default. TLS (for ServeTLS, cfg.LDAPSAddress and cfg.StartTLS) comes
// from WithTLSConfig, else from cfg.TLS's files through a certs.Reloader. It logs
// under log.Named("listener") (the guard under "listener.guard"); nil logs
// nothing.
func NewServer(cfg configs.Listen, baseDN string, auth Authenticator, log *zap.Logger, opts ...ServerOption) (*Server, error) {
	if auth == nil {
		return nil, ErrNoAuthenticator
	}
	if log == nil {
		log = zap.NewNop()
	}
	o := serverOptions{version: "dev"}
	for _, opt := range opts {
		opt(&o)
	}
	cfg = withListenDefaults(cfg)
	s := &Server{
		cfg:       cfg,
		baseDN:    baseDN,
		auth:      auth,
		log:       log.Named("listener"),
		tls:       o.tls,
		version:   o.version,
		inflight:  make(chan struct{}, cfg.MaxInFlight),
		conns:     make(map[connKey]*connState),
		listening: o.listening,
	}
	if s.tls == nil && (cfg.LDAPSAddress != "" || cfg.StartTLS || cfg.TLS.CertFile != "") {
		r, err := certs.NewReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("listener certificate: %w", err)
		}
		s.certs = r
		s.tls = certs.ServerConfig(r)
	}
	trusted, err := cfg.ProxyProtocol.TrustedPrefixes()
	if err != nil {
		return nil, err
	}
	g, err := guard.New(guard.Config{
		TLS:                 s.tls,
		StartTLS:            cfg.StartTLS,
		MaxConnections:      cfg.MaxConnections,
		MaxConnectionsPerIP: cfg.MaxConnectionsPerIP,
		IdleTimeout:         cfg.IdleTimeout,
		MaxMessageBytes:     cfg.MaxMessageBytes,
		ProxyTrusted:        trusted,
		ProxyHeaderTimeout:  cfg.ProxyProtocol.HeaderTimeout,
	}, s.log)
	if err != nil {
		return nil, fmt.Errorf("connection guard: %w", err)
	}
	s.guard = g
	if o.search != nil {
		if s.srch, err = newSearcher(o.search, log); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		if l, ok := auth.(clientLimiter); ok {
			s.srch.limit = l
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func withListenDefaults(c configs.Listen) configs.Listen {
	d := configs.Default().Listen
	if c.MaxConnections <= 0 {
		c.MaxConnections = d.MaxConnections
	}
	if c.MaxConnectionsPerIP <= 0 {
		c.MaxConnectionsPerIP = d.MaxConnectionsPerIP
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = d.ShutdownTimeout
	}
	return c
}

// Reconfigure applies what of cfg the listener changes while it serves: it
// loads the listener certificate again from cfg.Listen.TLS's files (renamed
// ones too), which new handshakes then use, and gives the proxy user's DN
// cache cfg.Cache.DN. A certificate that does not load is an error, and the
// old one stays. Without TLS at start, or with WithTLSConfig, there is no
// certificate to reload. Every other key of cfg.Listen and cfg.Search needs a
// new Server; connections stay open throughout.
func (s *Server) Reconfigure(cfg configs.Config) error {
	if s.srch != nil {
		s.srch.proxy.setCache(cfg.Cache.DN)
	}
	if s.certs == nil || cfg.Listen.TLS.CertFile == "" {
		return nil
	}
	if err := s.certs.ReloadFrom(cfg.Listen.TLS.CertFile, cfg.Listen.TLS.KeyFile); err != nil {
		return fmt.Errorf("listen.tls: %w", err)
	}
	return nil
}

// Serve accepts plain-LDAP connections on l (StartTLS when configured) until
// Shutdown, then returns ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	if err := s.start(); err != nil {
		return err
	}
	return s.guard.Serve(l)
}

// ServeTLS accepts LDAPS connections on l until Shutdown, then returns
// ErrServerClosed.
func (s *Server) ServeTLS(l net.Listener) error {
	if err := s.start(); err != nil {
		return err
	}
	return s.guard.ServeTLS(l)
}

// ListenAndServe listens on cfg.Address (plain LDAP) and, when set,
// cfg.LDAPSAddress, and serves both. It returns when either stops: after
// Shutdown that is ErrServerClosed.
func (s *Server) ListenAndServe() error {
	type serveFunc func(net.Listener) error
	var (
		ls     []net.Listener
		serves []serveFunc
	)
	closeAll := func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}
	if s.cfg.Address != "" {
		l, err := net.Listen("tcp", s.cfg.Address)
		if err != nil {
			return fmt.Errorf("listen %s: %w", s.cfg.Address, err)
		}
		if !configs.IsLoopbackAddr(s.cfg.Address) && !s.cfg.StartTLS {
			s.log.Warn("plain LDAP on a non-loopback address without StartTLS: passwords cross the network in clear text",
				zap.String("listen", s.cfg.Address))
		}
		ls, serves = append(ls, l), append(serves, s.Serve)
	}
	if s.cfg.LDAPSAddress != "" {
		l, err := net.Listen("tcp", s.cfg.LDAPSAddress)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", s.cfg.LDAPSAddress, err)
		}
		ls, serves = append(ls, l), append(serves, s.ServeTLS)
	}
	if len(ls) == 0 {
		return ErrNoListenAddress
	}
	if s.listening != nil {
		for i, l := range ls { // the LDAPS listener, when there is one, is the last
			s.listening(l.Addr(), i == len(ls)-1 && s.cfg.LDAPSAddress != "")
		}
	}
	errc := make(chan error, len(ls))
	for i := range ls {
		go func() { errc <- serves[i](ls[i]) }()
	}
	err := <-errc
	if !errors.Is(err, ErrServerClosed) {
		closeAll()
	}
	return err
}

// Shutdown stops accepting, lets in-flight requests finish within
// cfg.ShutdownTimeout (or ctx, whichever ends first), cancels those that do not,
// and stops the internal gldap server.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	s.closing.Store(true)
	err := s.guard.Shutdown(ctx)
	// Anything still running lost its client; let the bind path give up.
	s.cancel()
	s.mu.Lock()
	backends := s.backends
	var states []*connState
	for _, st := range s.conns {
		states = append(states, st)
	}
	s.mu.Unlock()
	if s.srch != nil {
		for _, st := range states {
			s.srch.endAll(st, "shutdown", true)
		}
	}
	stopped := make(chan struct{})
	go func() {
		for _, b := range backends {
			_ = b.Stop()
		}
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		// gldap: Stop waits for every handler; a stuck one must not hold up
		// the process exit.
		if err == nil {
			err = fmt.Errorf("stop internal server: %w", ctx.Err())
		}
	}
	return err
}

// start starts the internal gldap server once.
func (s *Server) start() error {
	if s.closing.Load() {
		return ErrServerClosed
	}
	s.startOnce.Do(func() {
		errc, err := s.startBackend()
		if err != nil {
			s.startErr = fmt.Errorf("internal listener: %w", err)
			return
		}
		go s.superviseBackend(errc)
	})
	return s.startErr
}

// startBackend runs a new generation of the internal gldap server on a free
// loopback port and attaches the guard to it.
//
// gldap: Run takes an address, not a net.Listener, so the port is picked by
// listening on :0 and closing; Attach then proves that what answers on it is
// this process and not another one that took the port in between.
func (s *Server) startBackend() (<-chan error, error) {
	var lastErr error
	for attempt := 0; attempt < backendStartAttempts; attempt++ {
		srv, gen, err := s.newBackend()
		if err != nil {
			return nil, err
		}
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		errc := make(chan error, 1)
		go func() { errc <- srv.Run(addr) }()
		if lastErr = s.attach(addr, errc); lastErr == nil {
			s.mu.Lock()
			s.internal = addr
			s.mu.Unlock()
			s.log.Debug("internal listener ready", zap.String("addr", addr), zap.Uint64("generation", gen))
			return errc, nil
		}
		_ = srv.Stop()
	}
	return nil, lastErr
}

// attach waits for gldap to listen on addr and attaches the guard to it.
func (s *Server) attach(addr string, runErr <-chan error) error {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	for {
		err := s.guard.Attach(ctx, addr)
		if err == nil || errors.Is(err, guard.ErrBackendUnverified) {
			return err
		}
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case err := <-runErr:
			t.Stop()
			return fmt.Errorf("run gldap on %s: %w", addr, err)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("attach to %s: %w", addr, err)
		case <-t.C:
		}
	}
}

// superviseBackend restarts the internal gldap server when its Run ends other
// than by Shutdown. gldap: Run returns on the first accept error (EMFILE...)
// and does not close its listener; connections it already serves carry on, and
// new ones go to the next generation, with backoff capped at one second.
func (s *Server) superviseBackend(errc <-chan error) {
	var delay time.Duration
	for {
		err := <-errc
		if s.closing.Load() {
			return
		}
		delay = max(10*time.Millisecond, min(2*delay, time.Second))
		s.log.Error("internal listener stopped; restarting", zap.Error(err), zap.Duration("retry_in", delay))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		next, err := s.startBackend()
		if err != nil {
			s.log.Error("restart internal listener", zap.Error(err))
			ch := make(chan error, 1)
			ch <- err
			errc = ch
			continue
		}
		delay = 0
		errc = next
	}
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick internal port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("pick internal port: %w", err)
	}
	return addr, nil
}

// newBackend builds one generation of the internal gldap server.
func (s *Server) newBackend() (*gldap.Server, uint64, error) {
	s.mu.Lock()
	s.gen++
	gen := s.gen
	s.mu.Unlock()
	// gldap logs whole packets, passwords included, at debug level: never give
	// it more than Error. What it reports at Error is a dropped connection.
	hl := hclog.New(&hclog.LoggerOptions{
		Name:   "gldap",
		Level:  hclog.Error,
		Output: gldapLog{s.log.Named("gldap")},
	})
	srv, err := gldap.NewServer(
		gldap.WithLogger(hl),
		gldap.WithOnClose(func(id int) { s.forget(connKey{gen, id}) }),
	)
	if err != nil {
		return nil, 0, fmt.Errorf("gldap server: %w", err)
	}
	mux, err := gldap.NewMux()
	if err != nil {
		return nil, 0, fmt.Errorf("gldap mux: %w", err)
	}
	for _, route := range []error{
		mux.Bind(s.bindHandler(gen)),
		mux.Search(s.searchHandler(gen)),
		mux.Unbind(s.unbindHandler(gen)),
		mux.DefaultRoute(s.defaultHandler(gen)),
		srv.Router(mux),
	} {
		if route != nil {
			return nil, 0, fmt.Errorf("gldap routes: %w", route)
		}
	}
	s.mu.Lock()
	s.backends = append(s.backends, srv)
	s.mu.Unlock()
	return srv, gen, nil
}

// gldapLog sends gldap's (Error level) log lines to zap.
type gldapLog struct{ log *zap.Logger }

func (g gldapLog) Write(p []byte) (int, error) {
	g.log.Warn("gldap", zap.String("line", strings.TrimSpace(string(p))))
	return len(p), nil
}

func (s *Server) state(k connKey) *connState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[k]
}

// forget ends a connection's paged searches when gldap closes it, and then
// drops its state. gldap calls it after Stop has stopped waiting for the
// connection, so it may run during Shutdown: the state stays visible to
// Shutdown until its paged searches have ended.
func (s *Server) forget(k connKey) {
	s.mu.Lock()
	st := s.conns[k]
	s.mu.Unlock()
	if st != nil && s.srch != nil {
		s.srch.endAll(st, "disconnect", true)
	}
	s.mu.Lock()
	delete(s.conns, k)
	s.mu.Unlock()
}

// acquire takes an in-flight slot without waiting.
func (s *Server) acquire() bool {
	select {
	case s.inflight <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) release() { <-s.inflight }

// recoverHandler turns a handler panic into a logged error and a response with
// result other (80). gldap: handlers run on their own goroutines and gldap
// recovers only panics on the connection's goroutine, so without this one
// panicking request would kill the process.
func (s *Server) recoverHandler(w *gldap.ResponseWriter, r *gldap.Request, k connKey, op string) {
	p := recover()
	if p == nil {
		return
	}
	log := s.log
	if st := s.state(k); st != nil {
		log = st.log
	}
	log.Error("handler panicked", zap.String("op", op), zap.String("panic", fmt.Sprint(p)), zap.Stack("stack"))
	var resp gldap.Response
	switch op {
	case "bind":
		resp = r.NewBindResponse(gldap.WithResponseCode(codeOther))
	case "search":
		resp = r.NewSearchDoneResponse(gldap.WithResponseCode(codeOther))
	default:
		resp = r.NewResponse(gldap.WithResponseCode(codeOther))
	}
	if d, ok := resp.(interface{ SetDiagnosticMessage(string) }); ok {
		d.SetDiagnosticMessage(diagInternal)
	}
	_ = w.Write(resp)
}

func bindResponse(r *gldap.Request, code int, diag string) *gldap.BindResponse {
	resp := r.NewBindResponse(gldap.WithResponseCode(code))
	resp.SetDiagnosticMessage(diag)
	return resp
}

func (s *Server) bindHandler(gen uint64) gldap.HandlerFunc {
	return func(w *gldap.ResponseWriter, r *gldap.Request) {
		k := connKey{gen, r.ConnectionID()}
		defer s.recoverHandler(w, r, k, "bind")
		m, err := r.GetSimpleBindMessage()
		if err != nil {
			_ = w.Write(bindResponse(r, codeProtocolError, "not a simple bind"))
			return
		}
		if guard.IsHelloName(m.UserName) {
			_ = w.Write(s.hello(r, k, m))
			return
		}
		st := s.state(k)
		if st == nil {
			// Only the guard connects here, and it always says hello first.
			s.log.Warn("bind on an internal connection without a hello", zap.Int("gldap_conn", k.id))
			_ = w.Write(bindResponse(r, codeInvalidCredentials, DiagInvalidCredentials))
			return
		}
		// RFC 4513 section 5.1: the connection is anonymous while a bind is in
		// progress and stays so if it fails; RFC 4511 section 4.2.1: a bind
		// abandons what is outstanding, paged searches included.
		st.setDN("")
		if s.srch != nil {
			s.srch.endAll(st, "rebind", false)
			if out, ok := s.srch.localBind(st.client(), m.UserName, string(m.Password)); ok {
				if out.Code == codeSuccess {
					st.setIdentity(boundIdentity{dn: out.DN, localProxy: true, login: s.srch.proxy.login.Value})
				}
				_ = w.Write(bindResponse(r, out.Code, out.Diagnostic))
				return
			}
		}
		if !s.acquire() {
			st.log.Warn("bind refused: too many requests in flight", zap.Int("max_in_flight", s.cfg.MaxInFlight))
			_ = w.Write(bindResponse(r, codeBusy, DiagBusy))
			return
		}
		out := s.authenticate(st, m)
		if out.Code == codeSuccess {
			st.setDN(out.DN)
		}
		st.log.Debug("bind", zap.Int("result", out.Code), zap.String("dn", out.DN))
		_ = w.Write(bindResponse(r, out.Code, out.Diagnostic))
	}
}

// authenticate runs the bind path in the in-flight slot the caller took, and
// frees it (also on a panic) before the response goes out, so that a client's
// next request never finds it taken.
func (s *Server) authenticate(st *connState, m *gldap.SimpleBindMessage) BindOutcome {
	defer s.release()
	return s.auth.Bind(s.ctx, st.client(), m.UserName, string(m.Password))
}

// hello answers a bind in the guard's reserved name space (see guard.Hello).
func (s *Server) hello(r *gldap.Request, k connKey, m *gldap.SimpleBindMessage) *gldap.BindResponse {
	if s.state(k) != nil {
		s.log.Warn("second hello on an internal connection refused", zap.Int("gldap_conn", k.id))
		return bindResponse(r, codeInvalidCredentials, DiagInvalidCredentials)
	}
	sess, proof, err := s.guard.Hello(m.UserName, string(m.Password))
	switch {
	case err != nil:
		s.log.Warn("forged hello refused", zap.Int("gldap_conn", k.id), zap.Error(err))
		return bindResponse(r, codeInvalidCredentials, DiagInvalidCredentials)
	case sess == nil:
		return bindResponse(r, codeSuccess, proof)
	}
	st := &connState{
		sess: sess,
		log:  s.log.With(zap.String("client", sess.RemoteAddr()), zap.Uint64("conn_id", sess.ID())),
	}
	s.mu.Lock()
	s.conns[k] = st
	s.mu.Unlock()
	return bindResponse(r, codeSuccess, "")
}

func (s *Server) searchHandler(gen uint64) gldap.HandlerFunc {
	return func(w *gldap.ResponseWriter, r *gldap.Request) {
		k := connKey{gen, r.ConnectionID()}
		defer s.recoverHandler(w, r, k, "search")
		done := func(code int, diag string) { _ = w.Write(searchDone(r, code, diag)) }
		st := s.state(k)
		if st == nil {
			s.log.Warn("search on an internal connection without a hello", zap.Int("gldap_conn", k.id))
			done(codeInsufficientAccessRights, diagSearchRefused)
			return
		}
		if !s.acquire() {
			st.log.Warn("search refused: too many requests in flight", zap.Int("max_in_flight", s.cfg.MaxInFlight))
			done(codeBusy, DiagBusy)
			return
		}
		_ = w.Write(s.search(w, r, st))
	}
}

// search answers a search in the in-flight slot the caller took, and frees it:
// it writes the entries and returns the final response, which the caller sends
// after the slot is free.
func (s *Server) search(w *gldap.ResponseWriter, r *gldap.Request, st *connState) *gldap.SearchResponseDone {
	defer s.release()
	m, err := r.GetSearchMessage()
	if err != nil {
		return searchDone(r, codeProtocolError, "not a search request")
	}
	if isRootDSE(m) {
		return s.writeRootDSE(w, r, m)
	}
	if s.srch == nil {
		st.log.Debug("search refused: searches are not configured", zap.String("base", LogSafe(m.BaseDN)), zap.Bool("bound", st.boundDN() != ""))
		return searchDone(r, codeInsufficientAccessRights, diagSearchRefused)
	}
	return s.srch.serve(s.ctx, w, r, m, st)
}

func searchDone(r *gldap.Request, code int, diag string) *gldap.SearchResponseDone {
	resp := r.NewSearchDoneResponse(gldap.WithResponseCode(code))
	resp.SetDiagnosticMessage(diag)
	return resp
}

func (s *Server) unbindHandler(gen uint64) gldap.HandlerFunc {
	return func(w *gldap.ResponseWriter, r *gldap.Request) {
		// The guard answers unbind itself by closing; only a direct internal
		// connection gets here, and gldap closes it after this returns.
		s.log.Debug("unbind on an internal connection", zap.Int("gldap_conn", r.ConnectionID()))
	}
}

func (s *Server) defaultHandler(gen uint64) gldap.HandlerFunc {
	return func(w *gldap.ResponseWriter, r *gldap.Request) {
		k := connKey{gen, r.ConnectionID()}
		defer s.recoverHandler(w, r, k, "other")
		_ = w.Write(r.NewResponse(gldap.WithResponseCode(codeUnwillingToPerform), gldap.WithDiagnosticMessage(diagUnsupported)))
	}
}
