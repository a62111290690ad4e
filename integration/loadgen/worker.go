package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// worker is one client: it runs operations back to back on its connection.
type worker struct {
	g     *run
	shard *shard

	mu   sync.Mutex // guards conn: the stopper closes it from outside
	conn *ldap.Conn
	// proxyBound: conn is bound as the proxy account (ModeSearch binds once
	// per connection).
	proxyBound bool
}

// loop runs operations until the run is over.
func (w *worker) loop() {
	cfg := &w.g.cfg
	for {
		n, ok := w.g.next()
		if !ok {
			return
		}
		login := cfg.Logins[n%uint64(len(cfg.Logins))]
		t0 := time.Now()
		code, err := w.op(login)
		end := time.Now()
		w.g.record(w.shard, end.Sub(w.g.start), end.Sub(t0), code, err)
	}
}

// op runs one operation and returns its outcome (a Result.Codes key) and, for
// a failure, why.
func (w *worker) op(login Login) (string, error) {
	cfg := &w.g.cfg
	c, err := w.connect()
	if err != nil {
		return classify(err), err
	}
	code, err := w.do(c, login)
	if cfg.NewConnPerOp || code == CodeNetwork || code == CodeTimeout || code == CodeClient {
		// A connection that timed out may still get the late answer: start afresh.
		w.dropConn(c)
	}
	return code, err
}

// do runs the operation of the run's mode on c.
func (w *worker) do(c *ldap.Conn, login Login) (string, error) {
	cfg := &w.g.cfg
	bind := func(name, password string) error {
		_, err := c.SimpleBind(&ldap.SimpleBindRequest{Username: name, Password: password})
		return err
	}
	if cfg.Mode == ModeBind {
		return outcome(bind(login.Name, login.Password))
	}
	// The search modes: bound as the proxy account first. ModeSearch stays
	// bound; search-then-bind's user bind changes the identity each time.
	if cfg.Mode == ModeSearchThenBind || !w.proxyBound {
		if err := bind(cfg.ProxyDN, cfg.ProxyPassword); err != nil {
			return outcome(fmt.Errorf("bind as the proxy %s: %w", cfg.ProxyDN, err))
		}
		w.proxyBound = true
	}
	res, err := c.Search(ldap.NewSearchRequest(cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, searchFilter(cfg.Filter, login.Name), cfg.Attributes, nil))
	if err != nil {
		return outcome(fmt.Errorf("search for %s: %w", login.Name, err))
	}
	switch {
	case len(res.Entries) == 0:
		return CodeNoEntry, fmt.Errorf("search for %s under %s: no entry", login.Name, cfg.BaseDN)
	case cfg.Mode == ModeSearch:
		return CodeSuccess, nil
	case len(res.Entries) > 1:
		return CodeAmbiguous, fmt.Errorf("search for %s under %s: %d entries, not one", login.Name, cfg.BaseDN, len(res.Entries))
	}
	w.proxyBound = false
	return outcome(bind(res.Entries[0].DN, login.Password))
}

// connect returns the worker's connection, dialing one when it has none.
func (w *worker) connect() (*ldap.Conn, error) {
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := w.g.dial()
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.g.stopped.Load() { // the stopper has been: it would not close this one
		_ = c.Close()
		return nil, errors.New("loadgen: the run is over")
	}
	w.conn, w.proxyBound = c, false
	return c, nil
}

// dropConn closes c, the worker's connection.
func (w *worker) dropConn(c *ldap.Conn) {
	w.mu.Lock()
	if w.conn == c {
		w.conn = nil
	}
	w.mu.Unlock()
	_ = c.Close()
}

// closeConn closes the worker's connection, if it has one.
func (w *worker) closeConn() {
	w.mu.Lock()
	c := w.conn
	w.conn = nil
	w.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// tlsError is a failed TLS handshake.
type tlsError struct{ err error }

func (t tlsError) Error() string { return "tls handshake: " + t.err.Error() }
func (t tlsError) Unwrap() error { return t.err }

// dial connects to the target within OpTimeout: TCP, TLS for ldaps://,
// StartTLS when asked.
func (g *run) dial() (*ldap.Conn, error) {
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.OpTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", g.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", g.addr, err)
	}
	if g.isTLS {
		tc := tls.Client(raw, g.cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, tlsError{err}
		}
		raw = tc
	}
	c := ldap.NewConn(raw, g.isTLS)
	c.Start()
	c.SetTimeout(g.cfg.OpTimeout)
	if g.cfg.StartTLS {
		if err := c.StartTLS(g.cfg.TLS); err != nil {
			_ = c.Close()
			var le *ldap.Error
			if errors.As(err, &le) && le.ResultCode != ldap.ErrorNetwork {
				return nil, fmt.Errorf("starttls: %w", err) // the server refused it
			}
			return nil, tlsError{err}
		}
	}
	return c, nil
}

// dialTarget returns the host:port to dial for an ldap:// or ldaps:// URL
// (validated), with the scheme's default port, and whether it is ldaps.
func dialTarget(rawURL string) (addr string, isTLS bool) {
	u, _ := url.Parse(rawURL)
	isTLS = u.Scheme == "ldaps"
	port := u.Port()
	if port == "" {
		port = "389"
		if isTLS {
			port = "636"
		}
	}
	return net.JoinHostPort(u.Hostname(), port), isTLS
}

// outcome returns err's outcome code and err.
func outcome(err error) (string, error) {
	if err == nil {
		return CodeSuccess, nil
	}
	return classify(err), err
}

// classify maps an operation's error to its Result.Codes key.
func classify(err error) string {
	var te tlsError
	if errors.As(err, &te) {
		if isTimeout(te.err) {
			return CodeTimeout
		}
		return CodeTLS
	}
	var le *ldap.Error
	if errors.As(err, &le) {
		switch {
		case le.ResultCode == ldap.ErrorNetwork && isTimeout(le.Err):
			return CodeTimeout
		case le.ResultCode == ldap.ErrorNetwork:
			return CodeNetwork
		case le.ResultCode > ldap.ErrorNetwork: // go-ldap's own codes
			return CodeClient
		}
		return strconv.Itoa(int(le.ResultCode))
	}
	if isTimeout(err) {
		return CodeTimeout
	}
	return CodeNetwork
}

// isTimeout reports whether err is a timeout: the dial's or handshake's
// deadline, or go-ldap's request timeout.
func isTimeout(err error) bool {
	var ne net.Error
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return true
	}
	// go-ldap (v3.4): a request's timeout is ErrorNetwork with this text, no
	// sentinel to compare against.
	return err.Error() == "ldap: connection timed out"
}
