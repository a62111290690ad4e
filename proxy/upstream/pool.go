package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"
)

// kind names the two pools of a DC. Their connections never mix: a user bind
// changes a connection's identity, so searches run only on connections bound as
// the service account and user binds only on the others.
type kind string

const (
	kindService kind = "service"
	kindBind    kind = "bind"
)

// pool is a bounded LIFO of idle LDAPS connections to one DC. A slot is held for
// every connection in use or being dialled, so at most size connections exist;
// idle ones are recycled after max_lifetime or idle_timeout, checked at checkout
// and by sweep. A retired pool (its DC left upstream.servers, or its connection
// set was replaced) still serves the requests that already chose it, but keeps
// no connection: each is closed when its request returns it.
type pool struct {
	d     *dc
	kind  kind
	size  int
	tls   *tls.Config   // the connection set's: CA bundle and server name
	slots chan struct{} // a send takes a slot, a receive gives it back
	// prepare runs on every new connection before it is pooled (the service
	// bind); nil for user-bind connections.
	prepare func(context.Context, *pconn) error

	mu      sync.Mutex
	idle    []*pconn // most recently used last
	open    int      // connections that exist: idle + in use
	closed  bool
	retired bool
	done    chan struct{} // closed by close: wakes waiters
}

func newPool(d *dc, k kind, size int, tlsCfg *tls.Config, prepare func(context.Context, *pconn) error) *pool {
	return &pool{
		d:       d,
		kind:    k,
		size:    size,
		tls:     tlsCfg,
		slots:   make(chan struct{}, size),
		prepare: prepare,
		done:    make(chan struct{}),
	}
}

// acquire takes a slot, waiting at most wait and while ctx lasts.
func (p *pool) acquire(ctx context.Context, wait time.Duration) error {
	if p.d.c.closed.Load() {
		// Also for a retired pool, which Close may have left behind.
		return fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
	select {
	case <-p.done:
		return fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	default:
	}
	select {
	case p.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: all %d %s connections to %s in use for %v", ErrBusy, p.size, p.kind, p.d.url, wait)
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for a %s connection to %s: %w", ErrBusy, p.kind, p.d.url, ctx.Err())
	case <-p.done:
		return fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
}

// release gives a slot back.
func (p *pool) release() { <-p.slots }

// expired reports whether an idle connection is due for recycling.
func (p *pool) expired(pc *pconn, now time.Time) bool {
	cfg := p.d.c.config().Pool
	return (cfg.MaxLifetime > 0 && now.Sub(pc.created) >= cfg.MaxLifetime) ||
		(cfg.IdleTimeout > 0 && now.Sub(pc.lastUsed) >= cfg.IdleTimeout)
}

// takeIdle pops the most recently used idle connection that is still fit for
// use, closing every unfit one it meets. The caller holds a slot.
func (p *pool) takeIdle() *pconn {
	for {
		p.mu.Lock()
		if len(p.idle) == 0 {
			p.mu.Unlock()
			return nil
		}
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.mu.Unlock()
		if !p.expired(pc, p.d.c.now()) && pc.alive() {
			return pc
		}
		p.discard(pc)
	}
}

// dial opens a new connection for this pool and prepares it. The caller holds a
// slot.
func (p *pool) dial(ctx context.Context) (*pconn, error) {
	pc, err := p.d.dialTLS(ctx, p.tls)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.open++
	p.mu.Unlock()
	if p.prepare != nil {
		if err := p.prepare(ctx, pc); err != nil {
			p.discard(pc)
			return nil, err
		}
	}
	return pc, nil
}

// get checks out a connection: an idle one, or a new one when fresh is set or
// none is idle. The caller holds a slot. isNew reports a dialled connection.
func (p *pool) get(ctx context.Context, fresh bool) (pc *pconn, isNew bool, err error) {
	if !fresh {
		if pc := p.takeIdle(); pc != nil {
			return pc, false, nil
		}
	}
	pc, err = p.dial(ctx)
	return pc, err == nil, err
}

// put returns a healthy connection to the idle list, or closes it when the pool
// is closed or retired or the DC drained.
func (p *pool) put(pc *pconn) {
	pc.lastUsed = p.d.c.now()
	p.mu.Lock()
	if !p.keeps() {
		p.mu.Unlock()
		p.discard(pc)
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// keeps reports whether the pool takes connections back; p.mu is held.
func (p *pool) keeps() bool { return !p.closed && !p.retired && !p.d.drained.Load() }

// detach takes a checked-out connection out of the pool's count: its new
// owner (a paged search) closes it or gives it back with adopt. The caller
// still holds the slot it checked the connection out with and releases it.
func (p *pool) detach(pc *pconn) {
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}

// adopt takes back a connection detached earlier, as an idle one, when it is
// fit for use and the pool has room; otherwise it closes it.
func (p *pool) adopt(pc *pconn) {
	now := p.d.c.now()
	p.mu.Lock()
	if !p.keeps() || p.open >= p.size || p.expired(pc, now) || !pc.alive() {
		p.mu.Unlock()
		pc.close()
		return
	}
	pc.lastUsed = now
	p.open++
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// discard closes a connection that is no longer pooled.
func (p *pool) discard(pc *pconn) {
	pc.close()
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}

// sweep closes idle connections that are expired or dead, so a quiet pool does
// not keep connections past AD's idle limit.
func (p *pool) sweep() {
	now := p.d.c.now()
	var drop []*pconn
	p.mu.Lock()
	keep := p.idle[:0]
	for _, pc := range p.idle {
		if p.expired(pc, now) || !pc.alive() {
			drop = append(drop, pc)
		} else {
			keep = append(keep, pc)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
	for _, pc := range drop {
		p.discard(pc)
	}
}

// closeIdle closes every idle connection (draining, shutdown).
func (p *pool) closeIdle() {
	p.mu.Lock()
	drop := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range drop {
		p.discard(pc)
	}
}

// retire makes the pool keep no connection: idle ones are closed now, the ones
// in use when they are returned. Requests waiting for a slot still get one.
func (p *pool) retire() {
	p.mu.Lock()
	p.retired = true
	p.mu.Unlock()
	p.closeIdle()
}

// unused reports whether a retired pool has nothing left: no connection
// and no slot taken, so no request is using it or waiting in it.
func (p *pool) unused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open == 0 && len(p.slots) == 0
}

// close stops the pool: waiters give up, idle connections are closed now and
// connections in use when they are returned.
func (p *pool) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	p.mu.Unlock()
	p.closeIdle()
}

// PoolStats describes one pool of one DC.
type PoolStats struct {
	// Size is the most connections the pool keeps (pool.service_size or
	// pool.bind_size).
	Size int
	// Open is the connections that exist, idle or in use.
	Open int
	// Idle is the connections waiting in the pool.
	Idle int
	// InUse is the connections checked out by requests.
	InUse int
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Size: p.size, Open: p.open, Idle: len(p.idle), InUse: p.open - len(p.idle)}
}
