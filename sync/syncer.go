package usersync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// Clock is the time a Syncer uses: Now for timestamps and schedule decisions,
// After for the loop's waits. Tests inject a fake one so they never sleep.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ImportFunc turns the view into the PBX import after a sync: it plans the
// import of entries (every entry of the view) and applies it. With
// confirmDeletions false it must hold removals above its threshold and report
// held true; with true it applies them. cmd wires the importer (plan.go) in.
type ImportFunc func(ctx context.Context, entries []Entry, confirmDeletions bool) (held bool, err error)

// SyncerOption changes how NewSyncer builds a Syncer.
type SyncerOption func(*Syncer)

// WithSyncClock replaces the Syncer's real clock.
func WithSyncClock(c Clock) SyncerOption {
	return func(s *Syncer) {
		if c != nil {
			s.clock = c
		}
	}
}

// WithSyncJitter replaces the random source of the loop's jitter: jitter(n)
// returns a number in [0, n).
func WithSyncJitter(jitter func(n int64) int64) SyncerOption {
	return func(s *Syncer) {
		if jitter != nil {
			s.jitter = jitter
		}
	}
}

// WithImport calls imp after every sync that applied the view or found it
// unchanged (so that held deletions can be confirmed without a change in AD).
func WithImport(imp ImportFunc) SyncerOption {
	return func(s *Syncer) { s.imp = imp }
}

// Options are the choices of one Run.
type Options struct {
	// Full forces a full sync.
	Full bool
	// ConfirmDeletions applies what safety holds back: a sync that would empty a
	// non-empty view (OutcomeSuspiciousEmpty), and the import's held removals.
	ConfirmDeletions bool
}

// Syncer keeps a View in step with AD through the upstream Cluster: Run does one
// sync, Loop runs them on sync.interval for serve. One run at a time: a Run
// called while another is in progress waits for it (or for its context).
type Syncer struct {
	cfg     configs.Sync
	cluster *upstream.Cluster
	view    *View
	log     *zap.Logger
	clock   Clock
	jitter  func(n int64) int64
	imp     ImportFunc

	filter      string   // sync.filter, with the enabled-only clause
	attrs       []string // sync.attributes, objectGUID included
	scope       string   // State.Scope of this configuration
	watchGroups bool     // the scope or the attributes depend on group membership

	running chan struct{} // holds a token while a run is in progress
}

// NewSyncer builds the Syncer of cfg (validated by configs) reading through
// cluster into view.
func NewSyncer(cfg configs.Sync, cluster *upstream.Cluster, view *View, log *zap.Logger, opts ...SyncerOption) (*Syncer, error) {
	switch {
	case cluster == nil || view == nil:
		return nil, errors.New("new syncer: no cluster or no view")
	case cfg.PageSize < 1 || cfg.PageSize > 1000:
		return nil, fmt.Errorf("new syncer: sync.page_size %d is not between 1 and 1000", cfg.PageSize)
	case cfg.MaxEntries < 1:
		return nil, fmt.Errorf("new syncer: sync.max_entries %d is below 1", cfg.MaxEntries)
	case cfg.Interval <= 0 || cfg.Timeout <= 0:
		return nil, errors.New("new syncer: sync.interval and sync.timeout must be positive")
	case cfg.BaseDN == "" || cfg.Filter == "":
		return nil, errors.New("new syncer: sync.base_dn and sync.filter are required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Syncer{
		cfg:     cfg,
		cluster: cluster,
		view:    view,
		log:     log.Named("sync"),
		clock:   realClock{},
		jitter:  rand.Int64N,
		running: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	s.filter = cfg.Filter
	if !strings.HasPrefix(s.filter, "(") {
		s.filter = "(" + s.filter + ")"
	}
	if cfg.EnabledOnly {
		s.filter = "(&" + s.filter + enabledOnlyFilter + ")"
	}
	s.attrs = slices.Clone(cfg.Attributes)
	if !slices.ContainsFunc(s.attrs, func(a string) bool { return strings.EqualFold(a, "objectGUID") }) {
		s.attrs = append(s.attrs, "objectGUID")
	}
	sorted := make([]string, len(s.attrs))
	for i, a := range s.attrs {
		sorted[i] = strings.ToLower(a)
	}
	slices.Sort(sorted)
	s.scope = "base=" + normalizeDN(cfg.BaseDN) + "\x00filter=" + s.filter + "\x00attributes=" + strings.Join(sorted, ",")
	s.watchGroups = strings.Contains(strings.ToLower(s.filter), "memberof") || slices.Contains(sorted, "memberof")
	return s, nil
}

// View returns the view the Syncer keeps.
func (s *Syncer) View() *View { return s.view }

// Run does one sync and returns what it did. It is incremental when the view
// has a state read with the current scope from the DC that is preferred now,
// and the last full sync is younger than sync.full_interval; otherwise (or with
// o.Full, or when the incremental one finds its DC replaced, restored or
// unusable) it is full. The run is bounded by sync.timeout. It is applied in one
// store transaction or not at all; the error is nil for OutcomeApplied,
// OutcomeUnchanged and OutcomeHeld (unless the import failed: ErrImport), and
// says why for the others (ErrSource, ErrSuspiciousEmpty, ErrTooManyEntries,
// a store error). Run logs one line.
func (s *Syncer) Run(ctx context.Context, o Options) (Result, error) {
	select {
	case s.running <- struct{}{}:
	case <-ctx.Done():
		return Result{Outcome: OutcomeSourceError, Err: ctx.Err()}, fmt.Errorf("sync: waiting for the run in progress: %w", ctx.Err())
	}
	defer func() { <-s.running }()

	start := time.Now()
	r := s.run(ctx, o)
	r.Dur = time.Since(start)
	s.logResult(r)
	return r, r.Err
}

func (s *Syncer) run(ctx context.Context, o Options) Result {
	readCtx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	st := s.view.State()
	r := Result{Kind: KindFull, Reason: s.fullReason(st, o)}

	var ch *change
	var err error
	if r.Reason == "" {
		r.Kind = KindIncremental
		ch, err = s.incremental(readCtx, st, &r)
		var fb errFallback
		if errors.As(err, &fb) {
			r = Result{Kind: KindFull, Reason: fb.reason}
			ch, err = nil, nil
		}
	}
	if r.Kind == KindFull {
		ch, err = s.full(readCtx, st, &r)
	}
	if err != nil {
		return s.fail(r, err)
	}
	snap := s.view.snapshot()
	r.Entries = len(snap.byGUID) + len(r.Added) - len(r.Removed)
	if r.Entries > s.cfg.MaxEntries {
		// A full sync stops reading past the limit; an incremental one can
		// only find out here.
		err := fmt.Errorf("%w: the view would hold %d, the most is %d", ErrTooManyEntries, r.Entries, s.cfg.MaxEntries)
		return s.fail(r, err)
	}
	if r.Entries == 0 && len(snap.byGUID) > 0 && !o.ConfirmDeletions {
		r.Entries = len(snap.byGUID)
		r.Outcome = OutcomeSuspiciousEmpty
		r.Err = fmt.Errorf("%w (%d entries in the view, %s sync from %s)", ErrSuspiciousEmpty, len(snap.byGUID), r.Kind, r.DC)
		return r
	}
	ch.state.Added, ch.state.Changed, ch.state.Removed = len(r.Added), len(r.Changed), len(r.Removed)
	ch.state.Entries = r.Entries
	if err := s.view.apply(ch); err != nil {
		r.Entries = len(snap.byGUID)
		r.Outcome, r.Err = OutcomeFailed, fmt.Errorf("sync: %w", err)
		return r
	}
	r.Outcome = OutcomeApplied
	if len(r.Added)+len(r.Changed)+len(r.Removed) == 0 {
		r.Outcome = OutcomeUnchanged
	}
	if s.imp != nil {
		r.ImportRan = true
		held, err := s.imp(ctx, s.view.All(), o.ConfirmDeletions)
		if err != nil {
			r.Err = fmt.Errorf("sync: view %s, but %w: %w", r.Outcome, ErrImport, err)
			return r
		}
		if held {
			r.ImportHeld, r.Outcome = true, OutcomeHeld
		}
	}
	return r
}

// fullReason says why the next run must be full, or "" for an incremental one.
func (s *Syncer) fullReason(st State, o Options) string {
	switch {
	case o.Full:
		return "forced"
	case st.DC == "" || st.LastFull.IsZero():
		return "first sync"
	case st.Scope != s.scope:
		return "scope changed"
	case !s.clock.Now().Before(st.LastFull.Add(s.cfg.FullInterval)):
		return "full interval"
	}
	if p := s.preferredDC(); p != "" && p != st.DC {
		return "preferred DC changed"
	}
	return ""
}

// preferredDC is the DC a search would go to now: the first whose breaker is
// closed and that is not drained ("" when none is).
func (s *Syncer) preferredDC() string {
	for _, d := range s.cluster.Stats() {
		if d.Breaker == upstream.BreakerClosed && !d.Drained {
			return d.URL
		}
	}
	return ""
}

// full reads everything and diffs it against the view.
func (s *Syncer) full(ctx context.Context, st State, r *Result) (*change, error) {
	fresh, info, err := s.readFull(ctx, r)
	if err != nil {
		return nil, err
	}
	snap := s.view.snapshot()
	ch := &change{state: s.stateAfter(info, st, KindFull)}
	ch.merge(snap, fresh, r)
	for _, e := range snap.sorted {
		if fresh[e.GUID] == nil {
			r.Removed = append(r.Removed, e.GUID)
			ch.remove = append(ch.remove, e.GUID)
		}
	}
	return ch, nil
}

// merge queues every read entry that is new or differs from the snapshot,
// counting it in r as added or (when more than its USNs moved) changed.
func (ch *change) merge(snap *snapshot, read map[string]*Entry, r *Result) {
	for _, g := range sortedKeys(read) {
		e := read[g]
		old := snap.byGUID[g]
		switch {
		case old == nil:
			r.Added = append(r.Added, g)
			ch.put = append(ch.put, e)
		case !identical(old, e):
			if !sameEntry(old, e) {
				r.Changed = append(r.Changed, g)
			}
			ch.put = append(ch.put, e)
		}
	}
}

// incremental reads the changes since st and merges them into the view.
func (s *Syncer) incremental(ctx context.Context, st State, r *Result) (*change, error) {
	put, remove, info, err := s.readIncremental(ctx, st, r)
	if err != nil {
		return nil, err
	}
	snap := s.view.snapshot()
	ch := &change{state: s.stateAfter(info, st, KindIncremental)}
	ch.merge(snap, put, r)
	slices.Sort(remove)
	for _, g := range slices.Compact(remove) {
		if snap.byGUID[g] != nil {
			r.Removed = append(r.Removed, g)
			ch.remove = append(ch.remove, g)
		}
	}
	return ch, nil
}

// stateAfter is the state a sync of kind from the DC info leaves.
func (s *Syncer) stateAfter(info dcInfo, prev State, kind Kind) State {
	st := State{
		DC:                  info.url,
		DSServiceName:       info.dsServiceName,
		InvocationID:        info.invocationID,
		HighestCommittedUSN: info.usn,
		Scope:               s.scope,
		LastFull:            prev.LastFull,
		LastIncremental:     prev.LastIncremental,
	}
	now := s.clock.Now().UTC()
	if kind == KindFull {
		st.LastFull, st.LastIncremental = now, time.Time{}
	} else {
		st.LastIncremental = now
	}
	return st
}

// fail fills r for an error that kept the view.
func (s *Syncer) fail(r Result, err error) Result {
	r.Added, r.Changed, r.Removed = nil, nil, nil
	r.Entries = s.view.Len()
	r.Outcome = OutcomeFailed
	if errors.Is(err, ErrSource) {
		r.Outcome = OutcomeSourceError
	}
	r.Err = fmt.Errorf("sync: %w", err)
	return r
}

// logResult writes the one line of a run.
func (s *Syncer) logResult(r Result) {
	fields := []zap.Field{
		zap.String("kind", string(r.Kind)),
		zap.String("dc", r.DC),
		zap.String("result", string(r.Outcome)),
		zap.Int("read", r.Read),
		zap.Int("added", len(r.Added)),
		zap.Int("changed", len(r.Changed)),
		zap.Int("removed", len(r.Removed)),
		zap.Int("entries", r.Entries),
		zap.Duration("dur", r.Dur),
	}
	if r.Reason != "" {
		fields = append(fields, zap.String("reason", r.Reason))
	}
	if r.ImportRan {
		fields = append(fields, zap.Bool("import_held", r.ImportHeld))
	}
	if r.Err != nil {
		fields = append(fields, zap.Error(r.Err))
	}
	switch {
	case errors.Is(r.Err, context.Canceled):
		s.log.Info("sync interrupted", fields...) // shutdown: nothing was applied
	case r.Outcome == OutcomeFailed || errors.Is(r.Err, ErrImport):
		s.log.Error("sync", fields...)
	case r.Outcome == OutcomeSourceError || r.Outcome == OutcomeSuspiciousEmpty || r.Outcome == OutcomeHeld:
		s.log.Warn("sync", fields...)
	default:
		s.log.Info("sync", fields...)
	}
}

// LoopControl connects Loop to its owner (serve's sync service). Every field
// is optional.
type LoopControl struct {
	// Trigger starts a run with the options received: at once while the loop
	// waits, right after the run in progress otherwise. A trigger already
	// waiting when the loop starts is taken by its first run. Its owner
	// bounds what is waiting (a buffer of one coalesces triggers).
	Trigger <-chan Options
	// Stop ends the loop when closed: at once while it waits, after the run
	// in progress otherwise, which, unlike with the context, is not cancelled.
	Stop <-chan struct{}
	// Started is told of each run before it starts.
	Started func(LoopRun)
	// Finished is told of each run with its result; not of a run the
	// context's end interrupted.
	Finished func(LoopRun)
	// Scheduled is told the time of the next scheduled run each time the loop
	// starts waiting for it.
	Scheduled func(next time.Time)
}

// LoopRun describes one run of Loop.
type LoopRun struct {
	// Started is when the run started, by the Syncer's clock.
	Started time.Time
	// Manual is true for a run the Trigger started.
	Manual bool
	// Options are the run's options.
	Options Options
	// Result is what the run did (in Finished only).
	Result Result
}

// Loop runs a sync at once and then one every sync.interval plus a random
// jitter of up to sync.jitter, counted from the end of the previous run (so
// runs never overlap), and one for each lc.Trigger, until ctx ends or lc.Stop
// is closed; it returns nil then. Run decides each time whether the sync is
// incremental or full (sync.full_interval) unless the trigger forces a full
// one. A failed run is logged and the loop goes on: the view keeps its last
// good state, and the next run comes after sync.retry_interval, doubled for
// each failure in a row up to sync.interval.
func (s *Syncer) Loop(ctx context.Context, lc LoopControl) error {
	run := LoopRun{}
	failures := 0 // failed runs in a row
	select {
	case run.Options = <-lc.Trigger:
		run.Manual = true
	default:
	}
	for {
		select {
		case <-lc.Stop:
			return nil
		default:
		}
		run.Started = s.clock.Now()
		if lc.Started != nil {
			lc.Started(run)
		}
		run.Result, _ = s.Run(ctx, run.Options)
		if ctx.Err() != nil {
			return nil
		}
		if lc.Finished != nil {
			lc.Finished(run)
		}
		wait := s.cfg.Interval
		if run.Result.Outcome.failed() {
			failures++
			wait = retryWait(s.cfg.RetryInterval, s.cfg.Interval, failures)
		} else {
			failures = 0
			if s.cfg.Jitter > 0 {
				wait += time.Duration(s.jitter(int64(s.cfg.Jitter) + 1))
			}
		}
		if lc.Scheduled != nil {
			lc.Scheduled(s.clock.Now().Add(wait))
		}
		run = LoopRun{}
		select {
		case <-ctx.Done():
			return nil
		case <-lc.Stop:
			return nil
		case run.Options = <-lc.Trigger:
			run.Manual = true
		case <-s.clock.After(wait):
		}
	}
}

// retryWait is the wait after the failures-th failed run in a row: retry,
// doubled for each earlier failure, at most interval.
func retryWait(retry, interval time.Duration, failures int) time.Duration {
	wait := retry
	for i := 1; i < failures && wait < interval; i++ {
		wait *= 2
	}
	return min(wait, interval)
}

func sortedKeys(m map[string]*Entry) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
