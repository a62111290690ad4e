package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// readSize is the most one read takes from a socket: one chunk.
	readSize = 32 << 10
	// queueLen is how many chunks may wait per direction (under Latency or
	// Blackhole) before the proxy stops reading from that side.
	queueLen = 64
)

// conn is one relayed connection: the accepted client socket and the socket
// dialled to the target, with one pipe per direction.
type conn struct {
	p      *Proxy
	client *net.TCPConn
	// ctx is cancelled when the connection is torn down: it bounds the dial
	// and wakes every goroutine of the connection.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	server *net.TCPConn // nil until dialled
	dead   bool
}

func newConn(p *Proxy, client *net.TCPConn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{p: p, client: client, ctx: ctx, cancel: cancel}
}

// run dials the target and relays until both directions have ended or the
// connection is killed.
func (c *conn) run() {
	server, err := c.dial()
	if err != nil {
		// The closest a proxy that has already accepted can come to the
		// target's own refusal.
		c.kill(true)
		return
	}
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		closeConn(server, true)
		return
	}
	c.server = server
	c.mu.Unlock()

	up := newPipe(c, c.client, server, &c.p.toTarget, false)
	down := newPipe(c, server, c.client, &c.p.toClient, true)
	var wg sync.WaitGroup
	wg.Go(up.read)
	wg.Go(up.write)
	wg.Go(down.read)
	wg.Go(down.write)
	wg.Wait()
	c.kill(false)
}

// dial connects to the target, giving up when the connection is killed.
func (c *conn) dial() (*net.TCPConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(c.ctx, "tcp", c.p.target)
	if err != nil {
		return nil, fmt.Errorf("dial target: %w", err)
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		_ = nc.Close() // not relayed; nothing to report beyond the error below
		return nil, fmt.Errorf("dial target: got %T, want *net.TCPConn", nc)
	}
	return tc, nil
}

// kill tears the connection down once: both sockets are closed, with a TCP
// RST when reset is set, and every goroutine of the connection wakes up.
func (c *conn) kill(reset bool) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	server := c.server
	c.mu.Unlock()

	c.cancel()
	closeConn(c.client, reset)
	if server != nil {
		closeConn(server, reset)
	}
	c.p.untrack(c)
}

// closeConn closes tc, with a TCP RST instead of a FIN when reset is set.
// Errors are ignored: the socket is being thrown away either way.
func closeConn(tc *net.TCPConn, reset bool) {
	if reset {
		_ = tc.SetLinger(0)
	}
	_ = tc.Close()
}

// chunk is what one read returned, stamped with when it was read.
type chunk struct {
	data []byte
	at   time.Time
}

// pipe moves bytes in one direction: read takes chunks from src into a
// queue, write hands them to dst when the current fault allows it. Two
// goroutines keep a delayed or held chunk from blocking reads, and a single
// writer keeps the order.
type pipe struct {
	c      *conn
	src    *net.TCPConn
	dst    *net.TCPConn
	chunks chan chunk
	count  *atomic.Int64 // the proxy's byte counter for this direction
	cut    bool          // CutAfter applies: target to client

	// Owned by the write goroutine.
	written int64         // bytes written to dst
	cutFrom int64         // written when the current CutAfter was first seen
	cutGen  chan struct{} // the changed channel of that CutAfter
}

func newPipe(c *conn, src, dst *net.TCPConn, count *atomic.Int64, cut bool) *pipe {
	return &pipe{c: c, src: src, dst: dst, chunks: make(chan chunk, queueLen), count: count, cut: cut}
}

// read queues what src sends until it ends. An EOF closes the queue (the
// writer passes it on as a half-close once the queue drains); any other
// error resets the whole connection, as a reset from either side would.
func (pp *pipe) read() {
	buf := make([]byte, readSize)
	for {
		if !pp.awaitReading() {
			return
		}
		n, err := pp.src.Read(buf)
		if n > 0 {
			select {
			case pp.chunks <- chunk{data: bytes.Clone(buf[:n]), at: time.Now()}:
			case <-pp.c.ctx.Done():
				return
			}
		}
		switch {
		case err == nil:
		case pp.c.ctx.Err() != nil:
			return
		case errors.Is(err, io.EOF):
			close(pp.chunks)
			return
		default:
			pp.c.kill(true)
			return
		}
	}
}

// awaitReading waits while the fault is Blackhole, so that held bytes stay
// in the kernel's buffers. It reports false once the connection is killed.
func (pp *pipe) awaitReading() bool {
	for {
		f, changed := pp.c.p.current()
		if f.kind != kindBlackhole {
			return true
		}
		select {
		case <-changed:
		case <-pp.c.ctx.Done():
			return false
		}
	}
}

// write delivers queued chunks to dst until the queue is closed and
// drained, then half-closes dst. It also watches for fault changes while
// idle, so that CutAfter(0) cuts an idle connection at once.
func (pp *pipe) write() {
	for {
		f, changed := pp.c.p.current()
		if pp.cutBudget(f, changed) == 0 {
			pp.c.kill(true)
			return
		}
		select {
		case ch, ok := <-pp.chunks:
			if !ok {
				// The source sent FIN: pass it on. An error here means dst
				// is gone, which its own reader reports.
				_ = pp.dst.CloseWrite()
				return
			}
			if !pp.deliver(ch) {
				return
			}
		case <-changed:
		case <-pp.c.ctx.Done():
			return
		}
	}
}

// deliver writes one chunk once the current fault allows it, waiting out a
// Latency or Blackhole and following any change of fault meanwhile. It
// reports false when the connection is done for.
func (pp *pipe) deliver(ch chunk) bool {
	for {
		f, changed := pp.c.p.current()
		var timer *time.Timer // nil: wait for a change of fault
		switch f.kind {
		case kindReset, kindRefuse:
			pp.c.kill(true)
			return false
		case kindBlackhole:
		case kindLatency:
			wait := time.Until(ch.at.Add(f.delay))
			if wait <= 0 {
				return pp.send(ch.data)
			}
			timer = time.NewTimer(wait)
		case kindCutAfter:
			left := pp.cutBudget(f, changed)
			if left < 0 || int64(len(ch.data)) < left {
				return pp.send(ch.data)
			}
			pp.send(ch.data[:left])
			pp.c.kill(true)
			return false
		default:
			return pp.send(ch.data)
		}
		if !pp.hold(timer, changed) {
			return false
		}
	}
}

// hold waits until timer fires (if there is one) or the fault changes. It
// reports false once the connection is killed.
func (pp *pipe) hold(timer *time.Timer, changed chan struct{}) bool {
	var due <-chan time.Time
	if timer != nil {
		defer timer.Stop()
		due = timer.C
	}
	select {
	case <-due:
		return true
	case <-changed:
		return true
	case <-pp.c.ctx.Done():
		return false
	}
}

// cutBudget returns how many more bytes this pipe may write under f, or -1
// when f does not limit it. A CutAfter counts from the first time this pipe
// sees it, which for an existing connection is when it was set.
func (pp *pipe) cutBudget(f Fault, changed chan struct{}) int64 {
	if f.kind != kindCutAfter || !pp.cut {
		return -1
	}
	if pp.cutGen != changed {
		pp.cutGen = changed
		pp.cutFrom = pp.written
	}
	return f.limit - (pp.written - pp.cutFrom)
}

// send writes data to dst and counts it; on error it resets the connection
// and reports false.
func (pp *pipe) send(data []byte) bool {
	n, err := pp.dst.Write(data)
	pp.written += int64(n)
	pp.count.Add(int64(n))
	if err != nil {
		pp.c.kill(true)
		return false
	}
	return true
}
