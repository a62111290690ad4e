package adsim

import (
	"crypto/sha256"
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

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// ErrClosed means the DC has been closed.
var ErrClosed = errors.New("dc closed")

// handshakeTimeout bounds a client's TLS handshake.
const handshakeTimeout = 10 * time.Second

// DCConfig configures one simulated domain controller.
type DCConfig struct {
	// Name is the DC's host label: its dnsHostName is Name.testbed.Realm and its
	// NTDS Settings object is named after it. Default "dc1". Unique per Directory.
	Name string
	// Plain serves plain LDAP instead of LDAPS. Default false (LDAPS).
	Plain bool
	// USNOffset is added to every USN the DC reports (highestCommittedUSN,
	// uSNCreated, uSNChanged and filters on them), because in AD USNs are per DC:
	// a client that mixes DCs in an incremental sync gets it wrong. Default 0.
	USNOffset int64
}

// DC is one simulated domain controller serving a Directory over LDAPS (or plain
// LDAP) with its own listener, counters and fault hooks. Its methods are safe for
// concurrent use.
//
// Clients connect to a front listener that terminates TLS and relays each LDAP
// message to a gldap server on an internal loopback port. The relay owns the
// connections, so it can count them and their handshakes, refuse or cut them
// mid-response, and stop a DC with clients still connected (gldap's own Stop
// waits for idle clients to leave).
type DC struct {
	dir       *Directory
	name      string
	host      string
	plain     bool
	usnOffset int64
	diags     bindDiagnostics
	ntdsDN    string
	serverDN  string
	restores  int // guarded by dir.mu

	stats  counters
	faults faults

	gl     *gldap.Server
	glAddr string
	glDone chan error

	stop atomic.Pointer[chan struct{}] // closed by Stop: ends delays

	mu        sync.Mutex
	tlsConfig *tls.Config
	addr      string
	ln        net.Listener
	conns     map[net.Conn]struct{} // accepted client connections, from before their handshake
	closed    bool
	wg        sync.WaitGroup // accept loops and connections

	sessMu   sync.RWMutex
	sessions map[int]*session // by gldap connection ID

	// glOpen counts the connections dialled to gldap whose OnClose has not
	// run yet; glIdle is signalled when it drops to 0. Close stops gldap only
	// when it is 0: gldap's Stop waits on its connections' WaitGroup, and the
	// race detector reports that wait against the Add of a connection
	// accepted earlier unless every connection has ended first.
	glMu   sync.Mutex
	glIdle *sync.Cond
	glOpen int

	accountBinds sync.Map // *account → *atomic.Int64
}

// counters are a DC's totals.
type counters struct {
	connections, handshakes, binds, searches, others atomic.Int64
}

// Stats are a DC's totals since NewDC.
type Stats struct {
	// Connections counts accepted TCP connections.
	Connections int64
	// Handshakes counts completed TLS handshakes (full or resumed).
	Handshakes int64
	// Binds, Searches and OtherOps count requests received (dropped and failed ones too).
	Binds, Searches, OtherOps int64
	// Open is the number of client connections open now.
	Open int
}

// session is the state of one client connection: who it is bound as and its
// paged searches.
type session struct {
	mu         sync.Mutex
	user       *account // nil: anonymous
	pages      map[uint64]*pagedSearch
	nextCookie uint64
}

// NewDC creates a DC of the directory and adds its server and NTDS Settings
// objects to the configuration naming context. Start it with Start.
func (d *Directory) NewDC(cfg DCConfig) (*DC, error) {
	name := strings.ToLower(defaultString(cfg.Name, "dc1"))
	if err := validLabel(name); err != nil {
		return nil, fmt.Errorf("new dc: %w", err)
	}
	dc := &DC{
		dir:       d,
		name:      name,
		host:      name + "." + testbed.Realm,
		plain:     cfg.Plain,
		usnOffset: cfg.USNOffset,
		diags:     newBindDiagnostics(),
		serverDN:  "CN=" + strings.ToUpper(name) + "," + serversDN,
		conns:     make(map[net.Conn]struct{}),
		sessions:  make(map[int]*session),
	}
	dc.glIdle = sync.NewCond(&dc.glMu)
	dc.ntdsDN = "CN=NTDS Settings," + dc.serverDN
	dc.faults.cutAfter.Store(-1)
	stop := make(chan struct{})
	dc.stop.Store(&stop)
	if err := d.addDCObjects(dc); err != nil {
		return nil, fmt.Errorf("new dc %s: %w", name, err)
	}
	return dc, nil
}

func validLabel(name string) error {
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("dc name %q is not a host label", name)
		}
	}
	return nil
}

// addDCObjects adds dc's server object and NTDS Settings (with its invocationId).
func (d *Directory) addDCObjects(dc *DC) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dcs[dc.name] {
		return fmt.Errorf("dc name %q: %w", dc.name, ErrExists)
	}
	now := d.now()
	if err := d.addContainer(dc.serverDN, []string{"top", "server"}, []attribute{attr("dNSHostName", dc.host)}, now); err != nil {
		return err
	}
	if err := d.addContainer(dc.ntdsDN, []string{"top", "applicationSettings", "nTDSDSA"}, []attribute{
		attr("invocationId", invocationID(dc.name, 0)),
		attr("options", "1"),
		attr("objectCategory", "CN=NTDS-DSA,"+SchemaDN),
	}, now); err != nil {
		return err
	}
	d.dcs[dc.name] = true
	return nil
}

// invocationID derives a DC's invocationId for its generation-th restore.
func invocationID(name string, generation int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "adsim invocationId\x00%s\x00%d", name, generation))
	return string(sum[:16])
}

// HostName returns the DC's DNS name (dnsHostName), also a name in its certificate.
func (dc *DC) HostName() string { return dc.host }

// DSServiceName returns the DN of the DC's NTDS Settings object (the rootDSE's dsServiceName).
func (dc *DC) DSServiceName() string { return dc.ntdsDN }

// InvocationID returns the DC's current invocationId (16 raw bytes).
func (dc *DC) InvocationID() []byte {
	dc.dir.mu.RLock()
	defer dc.dir.mu.RUnlock()
	return []byte(dc.dir.byDN[normalizedKey(dc.ntdsDN)].e.first("invocationId"))
}

// Restore gives the DC a new invocationId, as restoring it from a backup does, so
// that clients holding an incremental sync state must do a full sync. It returns
// the new invocationId.
func (dc *DC) Restore() []byte {
	d := dc.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	dc.restores++
	id := invocationID(dc.name, dc.restores)
	s := d.byDN[normalizedKey(dc.ntdsDN)]
	_, stamp := d.nextUSN(d.now())
	d.put(s, s.e.with(append(stamp, attr("invocationId", id))...))
	return []byte(id)
}

// ClientTLSConfig returns a verifying TLS client configuration for this DC: the
// directory's CA and the DC's host name, so dialing its IP address verifies too.
func (dc *DC) ClientTLSConfig() *tls.Config { return dc.dir.ClientTLSConfig(dc.host) }

// Start starts serving on addr ("127.0.0.1:0" picks a free port).
func (dc *DC) Start(addr string) error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	switch {
	case dc.closed:
		return fmt.Errorf("start %s: %w", dc.name, ErrClosed)
	case dc.gl != nil:
		return fmt.Errorf("start %s: already started", dc.name)
	}
	if err := dc.startGLDAP(); err != nil {
		return fmt.Errorf("start %s: %w", dc.name, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("start %s: %w", dc.name, err)
	}
	if !dc.plain {
		if dc.tlsConfig, err = dc.serverTLS(ln.Addr().(*net.TCPAddr).IP); err != nil {
			_ = ln.Close()
			return fmt.Errorf("start %s: %w", dc.name, err)
		}
	}
	dc.addr = ln.Addr().String()
	dc.serve(ln)
	return nil
}

// serverTLS issues the DC's certificate for its names and ip.
func (dc *DC) serverTLS(ip net.IP) (*tls.Config, error) {
	hosts := []string{dc.host, "*." + testbed.Realm, "localhost", "127.0.0.1", "::1"}
	if !ip.IsUnspecified() {
		hosts = append(hosts, ip.String())
	}
	certPEM, keyPEM, err := dc.dir.ca.IssueServer(hosts, certs.DefaultServerValidity)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// startGLDAP runs the gldap server on a free loopback port. Callers hold dc.mu.
func (dc *DC) startGLDAP() error {
	mux, err := dc.routes()
	if err != nil {
		return err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		// gldap listens itself and cannot report its port: pick a free one.
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("find a port for gldap: %w", err)
		}
		addr := probe.Addr().String()
		_ = probe.Close()
		srv, err := gldap.NewServer(
			// gldap logs whole packets, passwords included, at debug level: never log.
			gldap.WithLogger(hclog.NewNullLogger()),
			gldap.WithOnClose(dc.forgetSession),
		)
		if err != nil {
			return fmt.Errorf("new gldap server: %w", err)
		}
		if err := srv.Router(mux); err != nil {
			return fmt.Errorf("gldap router: %w", err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Run(addr) }()
		if lastErr = dc.waitListening(addr, done); lastErr == nil {
			dc.gl, dc.glAddr, dc.glDone = srv, addr, done
			return nil
		}
	}
	return fmt.Errorf("start gldap: %w", lastErr)
}

// waitListening waits until gldap listens on addr or its Run returned.
func (dc *DC) waitListening(addr string, done <-chan error) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("gldap stopped: %w", err)
		default:
		}
		c, err := dc.dialGLDAP(addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		// Run has not listened yet: it is a goroutine started a moment ago.
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("gldap did not listen on %s within 5s", addr)
}

// routes builds the gldap routes of the DC.
func (dc *DC) routes() (*gldap.Mux, error) {
	mux, err := gldap.NewMux()
	if err != nil {
		return nil, fmt.Errorf("new mux: %w", err)
	}
	for _, route := range []func() error{
		func() error { return mux.Bind(dc.handleBind) },
		func() error { return mux.Search(dc.handleSearch) },
		func() error { return mux.Modify(dc.refuseWrite(gldap.ApplicationModifyResponse)) },
		func() error { return mux.Add(dc.refuseWrite(gldap.ApplicationAddResponse)) },
		func() error { return mux.Delete(dc.refuseWrite(gldap.ApplicationDelResponse)) },
		func() error { return mux.DefaultRoute(dc.refuseWrite(gldap.ApplicationExtendedResponse)) },
	} {
		if err := route(); err != nil {
			return nil, fmt.Errorf("add route: %w", err)
		}
	}
	return mux, nil
}

// Addr returns the address the DC listens on (host:port), "" before Start.
func (dc *DC) Addr() string {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	return dc.addr
}

// URL returns the DC's LDAP URL: ldaps://host:port, or ldap:// when Plain.
func (dc *DC) URL() string {
	scheme := "ldaps://"
	if dc.plain {
		scheme = "ldap://"
	}
	return scheme + dc.Addr()
}

// SetRefuse closes the DC's listener, so new connections are refused (existing
// ones carry on), or with on false listens again on the same address.
func (dc *DC) SetRefuse(on bool) error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if on {
		dc.unlisten()
		return nil
	}
	return dc.listen()
}

// Stop makes the DC unreachable, as if it went down: the listener closes (new
// connections are refused), every client connection is closed and pending
// delays end. Restart brings it back on the same address with the same data.
func (dc *DC) Stop() error {
	dc.shutdown(false)
	return nil
}

// Restart ends a Stop or SetRefuse: the DC listens again on its address.
func (dc *DC) Restart() error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if stop := dc.stop.Load(); isClosed(*stop) {
		fresh := make(chan struct{})
		dc.stop.Store(&fresh)
	}
	return dc.listen()
}

// Close stops the DC for good and waits for its goroutines.
func (dc *DC) Close() error {
	gl := dc.shutdown(true)
	dc.wg.Wait()
	if gl == nil {
		return nil
	}
	if !dc.waitGLDAPIdle(5 * time.Second) {
		return fmt.Errorf("close %s: gldap connections still open after 5s", dc.name)
	}
	if err := gl.Stop(); err != nil {
		return fmt.Errorf("close %s: %w", dc.name, err)
	}
	if err := <-dc.glDone; err != nil {
		return fmt.Errorf("close %s: %w", dc.name, err)
	}
	return nil
}

// shutdown closes the listener and every connection and ends pending delays;
// with final set the DC cannot listen again. It returns the gldap server.
func (dc *DC) shutdown(final bool) *gldap.Server {
	dc.mu.Lock()
	dc.closed = dc.closed || final
	dc.unlisten()
	conns := make([]net.Conn, 0, len(dc.conns))
	for c := range dc.conns {
		conns = append(conns, c)
	}
	if stop := dc.stop.Load(); !isClosed(*stop) {
		close(*stop)
	}
	gl := dc.gl
	if final {
		dc.gl = nil
	}
	dc.mu.Unlock()
	for _, c := range conns {
		// Closing the accepted connection ends its handshake or its relay, which
		// then closes its gldap side.
		_ = c.Close()
	}
	return gl
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// listen opens the listener on the DC's address again. Callers hold dc.mu.
func (dc *DC) listen() error {
	switch {
	case dc.closed:
		return fmt.Errorf("listen %s: %w", dc.name, ErrClosed)
	case dc.addr == "":
		return fmt.Errorf("listen %s: not started", dc.name)
	case dc.ln != nil:
		return nil
	}
	ln, err := net.Listen("tcp", dc.addr)
	if err != nil {
		return fmt.Errorf("listen %s again: %w", dc.name, err)
	}
	dc.serve(ln)
	return nil
}

// unlisten closes the listener. Callers hold dc.mu.
func (dc *DC) unlisten() {
	if dc.ln != nil {
		_ = dc.ln.Close()
		dc.ln = nil
	}
}

// Stats returns the DC's totals.
func (dc *DC) Stats() Stats {
	dc.mu.Lock()
	open := len(dc.conns)
	dc.mu.Unlock()
	return Stats{
		Connections: dc.stats.connections.Load(),
		Handshakes:  dc.stats.handshakes.Load(),
		Binds:       dc.stats.binds.Load(),
		Searches:    dc.stats.searches.Load(),
		OtherOps:    dc.stats.others.Load(),
		Open:        open,
	}
}

// AccountBinds returns how many bind requests naming the account whose
// sAMAccountName is login this DC received, with any password (empty ones too).
func (dc *DC) AccountBinds(login string) int64 {
	dc.dir.mu.RLock()
	s := dc.dir.bySAM[strings.ToLower(login)]
	dc.dir.mu.RUnlock()
	if s == nil || s.acct == nil {
		return 0
	}
	if n, ok := dc.accountBinds.Load(s.acct); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func (dc *DC) countAccountBind(a *account) {
	a.binds.Add(1)
	n, ok := dc.accountBinds.Load(a)
	if !ok {
		n, _ = dc.accountBinds.LoadOrStore(a, new(atomic.Int64))
	}
	n.(*atomic.Int64).Add(1)
}

// session returns the state of a gldap connection, creating it on first use.
func (dc *DC) session(id int) *session {
	dc.sessMu.RLock()
	s := dc.sessions[id]
	dc.sessMu.RUnlock()
	if s != nil {
		return s
	}
	dc.sessMu.Lock()
	defer dc.sessMu.Unlock()
	if s = dc.sessions[id]; s == nil {
		s = &session{}
		dc.sessions[id] = s
	}
	return s
}

// forgetSession drops a closed connection's state (gldap's OnClose).
func (dc *DC) forgetSession(id int) {
	dc.sessMu.Lock()
	delete(dc.sessions, id)
	dc.sessMu.Unlock()
	dc.gldapClosed()
}

// dialGLDAP connects to gldap at addr, counted in glOpen until its OnClose.
func (dc *DC) dialGLDAP(addr string, timeout time.Duration) (net.Conn, error) {
	dc.glMu.Lock()
	dc.glOpen++
	dc.glMu.Unlock()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		dc.gldapClosed() // gldap never saw it
	}
	return c, err
}

// gldapClosed counts one connection to gldap as ended.
func (dc *DC) gldapClosed() {
	dc.glMu.Lock()
	defer dc.glMu.Unlock()
	if dc.glOpen--; dc.glOpen <= 0 {
		dc.glOpen = 0
		dc.glIdle.Broadcast()
	}
}

// waitGLDAPIdle waits, at most d, until every connection to gldap has ended.
func (dc *DC) waitGLDAPIdle(d time.Duration) bool {
	idle := make(chan struct{})
	go func() {
		dc.glMu.Lock()
		for dc.glOpen > 0 {
			dc.glIdle.Wait()
		}
		dc.glMu.Unlock()
		close(idle)
	}()
	select {
	case <-idle:
		return true
	case <-time.After(d):
		dc.glMu.Lock()
		dc.glOpen = 0 // lets the waiter go
		dc.glIdle.Broadcast()
		dc.glMu.Unlock()
		return false
	}
}

func (s *session) setUser(a *account) {
	s.mu.Lock()
	s.user = a
	s.mu.Unlock()
}

func (s *session) bound() *account {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// handleBind answers a simple bind like Windows AD (see Directory.authenticate).
func (dc *DC) handleBind(w *gldap.ResponseWriter, r *gldap.Request) {
	dc.stats.binds.Add(1)
	m, err := r.GetSimpleBindMessage()
	if err != nil {
		return // unreachable: the route matches simple binds only
	}
	stop := *dc.stop.Load()
	dc.dir.mu.RLock()
	a := dc.dir.lookupAccount(m.UserName)
	dc.dir.mu.RUnlock()
	if a != nil {
		dc.countAccountBind(a)
	}
	if dc.faults.drop.Load() {
		return
	}
	sess := dc.session(r.ConnectionID())
	resp := r.NewBindResponse()
	if code, ok := dc.faults.takeFailure(); ok {
		sess.setUser(nil)
		resp.SetResultCode(code)
	} else {
		res := dc.dir.authenticate(a, m.UserName, string(m.Password), dc.diags)
		sess.setUser(res.user)
		resp.SetResultCode(res.code)
		resp.SetDiagnosticMessage(res.diag)
	}
	dc.wait(stop)
	_ = w.Write(resp)
}

// refuseWrite answers operations the simulator does not carry out (add, modify,
// delete, extended operations) with unwillingToPerform in a response of the
// given application type.
func (dc *DC) refuseWrite(app int) gldap.HandlerFunc {
	return func(w *gldap.ResponseWriter, r *gldap.Request) {
		dc.stats.others.Add(1)
		stop := *dc.stop.Load()
		if dc.faults.drop.Load() {
			return
		}
		code := resultUnwillingToPerform
		if c, ok := dc.faults.takeFailure(); ok {
			code = c
		}
		dc.wait(stop)
		_ = w.Write(r.NewResponse(gldap.WithApplicationCode(app), gldap.WithResponseCode(code), gldap.WithDiagnosticMessage(diagUnwilling), gldap.WithMatchedDN("")))
	}
}
