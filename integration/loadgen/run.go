package loadgen

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what a load did. Only operations that ended within the run count:
// one still in flight when the duration ran out, or when the context was
// cancelled, is dropped (its connection closed), not counted as failed.
type Result struct {
	// Ops is the number of operations that ended: OK + Failed.
	Ops, OK, Failed int
	// Elapsed is the run's length: Duration when that ended it, else until the
	// last operation ended (or the context was cancelled).
	Elapsed time.Duration
	// Throughput is successful operations per second of Elapsed.
	Throughput float64
	// P50, P90 and P99 are latency quantiles of every ended operation,
	// successful or not, within 1%; Max is exact. An operation's latency
	// includes its dial and TLS handshake when it made one.
	P50, P90, P99, Max time.Duration
	// Codes counts operations by outcome: an LDAP result code in decimal ("0"
	// success, "49" invalidCredentials, "52" unavailable, ...) or one of the
	// Code constants for an outcome without one.
	Codes map[string]int
	// FirstErrors holds, for each failing outcome in Codes, the first error
	// seen with it, so a user can tell why (a certificate that does not verify,
	// AD's diagnostic text). It never holds a password.
	FirstErrors map[string]string
	// Timeline counts operations by the second of the run they ended in, one
	// element per second of Elapsed, seconds without any included: a domain
	// controller that stops answering during the run shows as a dip.
	Timeline []Second
}

// Second is one second of a run's timeline.
type Second struct {
	// Second is the second of the run, from 0.
	Second int
	// OK and Failed count the operations that ended in that second.
	OK, Failed int
}

// Outcomes as keys of Result.Codes: success, and those that have no LDAP result code.
const (
	// CodeSuccess is a successful operation: LDAP result code 0.
	CodeSuccess = "0"
	// CodeNetwork: the connection could not be made or broke.
	CodeNetwork = "network"
	// CodeTimeout: no answer within Config.OpTimeout (dial, handshake or response).
	CodeTimeout = "timeout"
	// CodeTLS: the TLS handshake failed, e.g. the server's certificate does
	// not verify against the CA given.
	CodeTLS = "tls"
	// CodeNoEntry: a search found no entry for the login.
	CodeNoEntry = "no-entry"
	// CodeAmbiguous: search-then-bind found more than one entry for the login,
	// so it did not bind.
	CodeAmbiguous = "ambiguous"
	// CodeClient: the client library refused the answer (e.g. it did not decode).
	CodeClient = "client"
)

// Run runs the load cfg describes until its Duration or Count is reached, or
// ctx is cancelled, and reports what it did. It returns an error without
// running when cfg is invalid (naming each problem), and the partial Result
// with ctx's error when ctx was cancelled. Failed operations are not errors:
// they are counted in the Result.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return Result{}, err
	}
	g := newRun(cfg)
	g.start = time.Now()
	runCtx, cancel := context.WithCancel(ctx)
	if cfg.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
	}
	defer cancel()
	g.ctx = runCtx

	workers := cfg.Concurrency
	if cfg.Count > 0 {
		workers = min(workers, cfg.Count)
	}
	g.workers = make([]*worker, workers)
	for i := range g.workers {
		g.workers[i] = &worker{g: g, shard: g.shards[i%len(g.shards)]}
	}

	// The stopper ends the run on the deadline or cancellation: operations
	// in flight are abandoned by closing their connections.
	stopped := make(chan time.Duration, 1)
	go func() {
		<-runCtx.Done()
		at := time.Since(g.start)
		g.stopped.Store(true)
		for _, w := range g.workers {
			w.closeConn()
		}
		stopped <- at
	}()

	var wg sync.WaitGroup
	for _, w := range g.workers {
		wg.Go(w.loop)
	}
	wg.Wait()
	elapsed := time.Since(g.start)
	cancel()
	if at := <-stopped; g.stopped.Load() && at < elapsed {
		elapsed = at
	}
	if cfg.Duration > 0 {
		elapsed = min(elapsed, cfg.Duration)
	}
	for _, w := range g.workers {
		w.closeConn()
	}
	res := g.result(elapsed)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadgen: stopped after %s: %w", elapsed.Round(time.Millisecond), err)
	}
	return res, nil
}

// run is the state of one Run.
type run struct {
	cfg     Config
	addr    string // host:port to dial
	isTLS   bool   // ldaps://
	ctx     context.Context
	start   time.Time
	issued  atomic.Uint64 // operations started
	stopped atomic.Bool   // set by the stopper: record no more
	workers []*worker
	shards  []*shard
}

// shard is one part of the run's counts; workers share shards round-robin so
// that recording an operation seldom waits for another worker.
type shard struct {
	mu          sync.Mutex
	hist        histogram
	ok, failed  int
	codes       map[string]int
	firstErrors map[string]string
	timeline    []Second
}

func newRun(cfg Config) *run {
	g := &run{cfg: cfg}
	g.addr, g.isTLS = dialTarget(cfg.URL)
	n := min(cfg.Concurrency, 4*runtime.GOMAXPROCS(0))
	g.shards = make([]*shard, n)
	for i := range g.shards {
		g.shards[i] = &shard{codes: make(map[string]int), firstErrors: make(map[string]string)}
	}
	return g
}

// next claims the next operation's number; false when the run is over.
func (g *run) next() (uint64, bool) {
	if g.stopped.Load() {
		return 0, false
	}
	n := g.issued.Add(1) - 1
	if g.cfg.Count > 0 && n >= uint64(g.cfg.Count) {
		return 0, false
	}
	return n, true
}

// record counts one operation that ended at end (since the start) after
// taking d, with outcome code (err is nil for success).
func (g *run) record(s *shard, end, d time.Duration, code string, err error) {
	if g.stopped.Load() || g.cfg.Duration > 0 && end > g.cfg.Duration {
		return // abandoned at the end of the run
	}
	sec := int(end / time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hist.record(d)
	s.codes[code]++
	for len(s.timeline) <= sec {
		s.timeline = append(s.timeline, Second{Second: len(s.timeline)})
	}
	if err == nil {
		s.ok++
		s.timeline[sec].OK++
		return
	}
	s.failed++
	s.timeline[sec].Failed++
	if _, seen := s.firstErrors[code]; !seen {
		s.firstErrors[code] = err.Error()
	}
}

// result merges the shards into the run's Result.
func (g *run) result(elapsed time.Duration) Result {
	res := Result{
		Elapsed:     elapsed,
		Codes:       make(map[string]int),
		FirstErrors: make(map[string]string),
		Timeline:    make([]Second, int((elapsed+time.Second-1)/time.Second)),
	}
	for i := range res.Timeline {
		res.Timeline[i].Second = i
	}
	var h histogram
	for _, s := range g.shards {
		s.mu.Lock()
		h.merge(&s.hist)
		res.OK += s.ok
		res.Failed += s.failed
		for c, n := range s.codes {
			res.Codes[c] += n
		}
		for c, e := range s.firstErrors {
			if _, seen := res.FirstErrors[c]; !seen {
				res.FirstErrors[c] = e
			}
		}
		for _, sec := range s.timeline {
			for len(res.Timeline) <= sec.Second { // an operation that ended in the last instant
				res.Timeline = append(res.Timeline, Second{Second: len(res.Timeline)})
			}
			res.Timeline[sec.Second].OK += sec.OK
			res.Timeline[sec.Second].Failed += sec.Failed
		}
		s.mu.Unlock()
	}
	res.Ops = res.OK + res.Failed
	if elapsed > 0 {
		res.Throughput = float64(res.OK) / elapsed.Seconds()
	}
	res.P50, res.P90, res.P99 = h.quantile(0.50), h.quantile(0.90), h.quantile(0.99)
	res.Max = h.max
	return res
}
