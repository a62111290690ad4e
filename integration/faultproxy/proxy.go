// Package faultproxy is a TCP proxy that tests put in front of a domain
// controller to inject the faults the gateway must survive: latency, a hung
// peer, resets, a response cut off mid-stream and a refused port. It relays
// raw bytes, so TLS passes through untouched.
package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Start and SetFault once the Proxy is closed.
var ErrClosed = errors.New("faultproxy: proxy closed")

// Proxy relays TCP connections from a loopback listener to one target
// address, applying the current Fault to new and existing connections.
// Its methods are safe for concurrent use.
//
//	p := faultproxy.New("127.0.0.1:636")
//	if err := p.Start("127.0.0.1:0"); err != nil { ... }
//	defer p.Close()
//	// point the client at p.Addr(), then, while it runs:
//	err := p.SetFault(faultproxy.Blackhole())
type Proxy struct {
	target string

	mu      sync.Mutex
	fault   Fault
	changed chan struct{}    // closed and replaced whenever fault changes
	addr    string           // the listening address, fixed by Start
	ln      *net.TCPListener // nil before Start, while refusing and after Close
	conns   map[*conn]struct{}
	closed  bool
	done    chan struct{} // closed by Close

	wg sync.WaitGroup // accept loops and connections

	accepted atomic.Int64
	toTarget atomic.Int64
	toClient atomic.Int64
}

// New returns a Proxy that relays to target ("host:port") once started.
// Its fault is None until SetFault says otherwise.
func New(target string) *Proxy {
	return &Proxy{
		target:  target,
		changed: make(chan struct{}),
		conns:   make(map[*conn]struct{}),
		done:    make(chan struct{}),
	}
}

// Start listens on listenAddr, which must be a loopback address such as
// "127.0.0.1:0", and starts accepting connections. If the fault is Refuse
// the address is reserved and closed at once, to be opened by the next
// SetFault.
func (p *Proxy) Start(listenAddr string) error {
	laddr, err := net.ResolveTCPAddr("tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("faultproxy: listen address %q: %w", listenAddr, err)
	}
	if !laddr.IP.IsLoopback() {
		return fmt.Errorf("faultproxy: listen address %q is not a loopback address", listenAddr)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrClosed
	case p.addr != "":
		return fmt.Errorf("faultproxy: already started on %s", p.addr)
	}
	ln, err := net.ListenTCP("tcp", laddr)
	if err != nil {
		return fmt.Errorf("faultproxy: listen on %s: %w", listenAddr, err)
	}
	p.addr = ln.Addr().String()
	if p.fault.kind == kindRefuse {
		if err := ln.Close(); err != nil {
			return fmt.Errorf("faultproxy: close listener to refuse: %w", err)
		}
		return nil
	}
	p.serve(ln)
	return nil
}

// Addr returns the address the proxy listens on ("127.0.0.1:port"), or ""
// before Start. It stays the same while the fault is Refuse.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// SetFault makes f the behaviour of new and existing connections. Leaving
// Refuse opens the listener again on the same address; if that address has
// been taken meanwhile, SetFault returns the error (which wraps the
// net.OpError, so errors.Is(err, syscall.EADDRINUSE) holds) and the proxy
// keeps refusing. It may be called before Start.
func (p *Proxy) SetFault(f Fault) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if f.kind != kindRefuse && p.addr != "" && p.ln == nil {
		laddr, err := net.ResolveTCPAddr("tcp", p.addr)
		if err == nil {
			var ln *net.TCPListener
			if ln, err = net.ListenTCP("tcp", laddr); err == nil {
				p.serve(ln)
			}
		}
		if err != nil {
			p.mu.Unlock()
			return fmt.Errorf("faultproxy: reopen listener on %s: %w", p.addr, err)
		}
	}
	var ln *net.TCPListener
	var doomed []*conn
	if f.kind == kindRefuse {
		ln, p.ln = p.ln, nil
	}
	if f.kind == kindReset || f.kind == kindRefuse {
		doomed = p.snapshot()
	}
	p.fault = f
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()

	for _, c := range doomed {
		c.kill(true)
	}
	if ln != nil {
		if err := ln.Close(); err != nil {
			return fmt.Errorf("faultproxy: close listener to refuse: %w", err)
		}
	}
	return nil
}

// Close stops listening, closes every relayed connection and returns once
// all of the proxy's goroutines have ended. Closing twice is harmless.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	ln := p.ln
	p.ln = nil
	doomed := p.snapshot()
	p.mu.Unlock()

	var err error
	if ln != nil {
		if cerr := ln.Close(); cerr != nil {
			err = fmt.Errorf("faultproxy: close listener: %w", cerr)
		}
	}
	for _, c := range doomed {
		c.kill(false)
	}
	p.wg.Wait()
	return err
}

// Accepted returns how many connections the proxy has accepted, including
// those it reset at once.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Active returns how many connections are being relayed (or held) now.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// BytesToTarget returns how many bytes the proxy has written to the target
// over all connections.
func (p *Proxy) BytesToTarget() int64 { return p.toTarget.Load() }

// BytesToClient returns how many bytes the proxy has written to clients
// over all connections.
func (p *Proxy) BytesToClient() int64 { return p.toClient.Load() }

// current returns the fault and the channel that is closed when it changes.
func (p *Proxy) current() (Fault, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault, p.changed
}

// serve starts accepting on ln. The caller holds p.mu and has checked that
// the proxy is not closed, so wg.Add cannot race with Close's wg.Wait.
func (p *Proxy) serve(ln *net.TCPListener) {
	p.ln = ln
	p.wg.Go(func() { p.acceptLoop(ln) })
}

// acceptLoop accepts connections on ln until it is closed.
func (p *Proxy) acceptLoop(ln *net.TCPListener) {
	var backoff time.Duration
	for {
		nc, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off rather than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		p.accepted.Add(1)
		if c := p.track(nc); c != nil {
			p.wg.Go(c.run)
		}
	}
}

// track registers a new connection, or resets it and returns nil when the
// current fault (or Close) says it must not be relayed.
func (p *Proxy) track(nc *net.TCPConn) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.fault.kind == kindReset || p.fault.kind == kindRefuse {
		closeConn(nc, true)
		return nil
	}
	c := newConn(p, nc)
	p.conns[c] = struct{}{}
	return c
}

// untrack forgets a connection that has been torn down.
func (p *Proxy) untrack(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// snapshot lists the tracked connections. The caller holds p.mu.
func (p *Proxy) snapshot() []*conn {
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}
