package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

func syncCommand() *command {
	return &command{
		name:    "sync",
		summary: "sync the directory view from AD and run the user import once",
		usage:   "--config FILE [--dry-run] [--full] [--confirm-deletions] [--log-format json|console] [--log-level LEVEL]",
		help: `sync reads the users in scope (sync.base_dn, sync.filter) from the domain
controllers into the directory view (<sync.data_dir>/view.db) and runs the user
import once, like pascom's "import now": the CSV and JSON files, the webhook and
the record of what was applied. The sync is incremental (uSNChanged) when the
view allows it and full otherwise; --full forces a full one.

--dry-run is pascom's "save and simulate": it syncs into a temporary copy of the
view and prints the import plan as a table, writing nothing (neither the view
nor the import). When ldapgate serve holds the view, the dry run reads every
user from AD instead of copying it.

Deletions above sync.max_delete_percent of the last import are held and
reported (exit code 1); run again with --confirm-deletions to apply them. The
same flag confirms a sync that would empty a view that has users. A failed read
of AD (no DC, a cut connection, a timeout) changes nothing and never removes a
user.

ldapgate serve runs the same sync on sync.interval while sync.enabled is true;
while it runs, it holds the view and this command (without --dry-run) refuses
to start.`,
		setup: func(fs *flag.FlagSet) runFunc {
			path := fs.String("config", "", "read the configuration from `FILE`")
			dryRun := fs.Bool("dry-run", false, "sync into a temporary copy and print the import plan; write nothing")
			apply := fs.Bool("apply", false, "apply the import (the default without --dry-run)")
			full := fs.Bool("full", false, "force a full sync instead of an incremental one")
			confirm := fs.Bool("confirm-deletions", false, "apply held deletions (and a sync that empties the view)")
			var lf logFlags
			lf.register(fs)
			return func(e *env, args []string) error {
				switch {
				case len(args) > 0:
					return usageErrorf("unexpected argument %q", args[0])
				case *path == "":
					return usageError{errors.New("--config is required")}
				case *dryRun && *apply:
					return usageError{errors.New("--dry-run and --apply exclude each other")}
				}
				cfg, err := configs.Load(*path)
				if err != nil {
					return err
				}
				// The command prints its own summary: the log says only what
				// needs attention unless asked for more.
				log, err := newLogger(e.stderr, firstSet(lf.format, "console"), firstSet(lf.level, "warn"))
				if err != nil {
					return usageError{err}
				}
				defer func() { _ = log.Sync() }()
				for _, w := range cfg.Warnings() {
					log.Warn(w) // each warning already starts with "config: "
				}
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				o := usersync.Options{Full: *full, ConfirmDeletions: *confirm}
				if *dryRun {
					return syncDryRun(ctx, e, cfg, o, log)
				}
				return syncOnce(ctx, e, cfg, o, log)
			}
		},
	}
}

// errHeld means the import held deletions back.
var errHeld = errors.New("deletions held: run again with --confirm-deletions to apply them, or raise sync.max_delete_percent")

// syncOnce syncs the real view and applies the import ("import now").
func syncOnce(ctx context.Context, e *env, cfg *configs.Config, o usersync.Options, log *zap.Logger) error {
	cluster, err := upstream.New(cfg.Upstream, log)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	defer func() { _ = cluster.Close() }()
	view, err := usersync.OpenView(cfg.Sync.DataDir, usersync.ViewOptions{StaleAfter: cfg.Sync.StaleAfter, WriteBatch: cfg.Sync.WriteBatch})
	if err != nil {
		return err
	}
	defer func() { _ = view.Close() }()
	im, err := usersync.NewImporter(*cfg, log)
	if err != nil {
		return err
	}
	var imp importRun
	s, err := usersync.NewSyncer(cfg.Sync, cluster, view, log, usersync.WithImport(imp.hook(im)))
	if err != nil {
		return err
	}

	stopProgress := startProgress(e.stdout, "syncing with AD")
	r, err := s.Run(ctx, o)
	stopProgress()
	fmt.Fprintln(e.stdout, describeSync(r, false))
	if imp.plan != nil {
		fmt.Fprintln(e.stdout, describeImport(imp.plan, imp.res))
	}
	switch {
	case err != nil:
		return err
	case r.Outcome == usersync.OutcomeHeld:
		return errHeld
	}
	return nil
}

// syncDryRun syncs a temporary copy of the view and prints the plan.
func syncDryRun(ctx context.Context, e *env, cfg *configs.Config, o usersync.Options, log *zap.Logger) error {
	tmp, err := os.MkdirTemp("", "ldapgate-dry-run-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	switch err := usersync.CopyView(cfg.Sync.DataDir, tmp, time.Second); {
	case errors.Is(err, usersync.ErrViewLocked):
		fmt.Fprintln(e.stderr, "ldapgate: sync: the view is in use (by ldapgate serve?): the dry run reads every user from AD")
	case errors.Is(err, os.ErrNotExist):
		// No view yet: the dry run is the first, full sync.
	case err != nil:
		return err
	}
	cluster, err := upstream.New(cfg.Upstream, log)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	defer func() { _ = cluster.Close() }()
	view, err := usersync.OpenView(tmp, usersync.ViewOptions{StaleAfter: cfg.Sync.StaleAfter, WriteBatch: cfg.Sync.WriteBatch})
	if err != nil {
		return err
	}
	defer func() { _ = view.Close() }()
	s, err := usersync.NewSyncer(cfg.Sync, cluster, view, log)
	if err != nil {
		return err
	}
	// The importer only plans here: Plan reads the last applied import and
	// writes nothing; Apply is never called.
	im, err := usersync.NewImporter(*cfg, log)
	if err != nil {
		return err
	}
	stopProgress := startProgress(e.stdout, "syncing with AD")
	r, err := s.Run(ctx, o)
	stopProgress()
	fmt.Fprintln(e.stdout, describeSync(r, true))
	if err != nil {
		return err
	}
	p, err := im.Plan(view.All())
	if err != nil {
		return err
	}
	return p.Table(e.stdout)
}

// importRun adapts the importer to the Syncer's import hook and keeps the
// last plan for the summary.
type importRun struct {
	plan *usersync.Plan
	res  usersync.ApplyResult
}

// hook plans the import of the view and applies it.
func (ir *importRun) hook(im *usersync.Importer) usersync.ImportFunc {
	return func(ctx context.Context, entries []usersync.Entry, confirm bool) (bool, error) {
		p, err := im.Plan(entries)
		if err != nil {
			return false, err
		}
		ir.plan = p
		ir.res, err = im.Apply(ctx, p, usersync.ApplyOptions{ConfirmDeletions: confirm})
		return p.HeldDeletions && !confirm, err
	}
}

// describeSync is the one-line summary of a sync run.
func describeSync(r usersync.Result, dry bool) string {
	var b strings.Builder
	if dry {
		b.WriteString("dry run: ")
	}
	fmt.Fprintf(&b, "%s sync", r.Kind)
	if r.Reason != "" {
		fmt.Fprintf(&b, " (%s)", r.Reason)
	}
	if r.DC != "" {
		fmt.Fprintf(&b, " from %s", r.DC)
	}
	fmt.Fprintf(&b, ": %s; %d read, %d added, %d changed, %d removed, %d in the view, %s",
		r.Outcome, r.Read, len(r.Added), len(r.Changed), len(r.Removed), r.Entries, r.Dur.Round(time.Millisecond))
	if dry {
		b.WriteString(" (a temporary copy: nothing was written)")
	}
	return b.String()
}

// describeImport is the one-line summary of an applied import.
func describeImport(p *usersync.Plan, res usersync.ApplyResult) string {
	line := fmt.Sprintf("import: %d created, %d updated, %d disabled, %d removed, %d unchanged; %d users, %d CSV rows",
		res.Created, res.Updated, res.Disabled, res.Removed, res.Unchanged, res.Users, res.CSVRows)
	if res.HeldRemovals > 0 {
		line += fmt.Sprintf("; %d removals held (%s)", res.HeldRemovals, p.HeldReason)
	}
	return line
}

// startProgress shows what runs and for how long on one line that is
// rewritten, when w is a terminal; the returned function clears the line.
func startProgress(w io.Writer, what string) (stop func()) {
	if !isTerminal(w) {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			fmt.Fprintf(w, "\r%s… %.1fs", what, time.Since(start).Seconds())
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// isTerminal reports whether stream (standard input or output) is a terminal
// (a character device is one).
func isTerminal(stream any) bool {
	f, ok := stream.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// syncService is the sync loop of serve ("automate") with the importer it
// feeds; the importer also serves the CSV export. It keeps what /status shows
// of the loop: the last runs (http.status.sync_runs), the run in progress,
// the next scheduled run and the pending import plan. Its methods are safe
// for concurrent use; a service with a nil view is the loop that is off.
type syncService struct {
	view *usersync.View
	stop func()

	cluster  *upstream.Cluster
	watch    *credentialWatch
	log      *zap.Logger
	finished func(usersync.LoopRun) // the metrics' hook; nil: none
	// triggers holds at most one waiting manual run (see trigger).
	triggers chan usersync.Options

	mu          sync.Mutex
	cfg         *configs.Config    // the configuration the loop runs with
	syncer      *usersync.Syncer   // the loop's Syncer (after reconfigure: the next one)
	importer    *usersync.Importer // the loop's importer, the export's too
	restart     chan struct{}      // closed to end the current Loop (reconfigure)
	runs        []syncRun          // the last runs, oldest first
	running     *syncRun           // the run in progress
	next        time.Time          // the next scheduled run; zero while one runs
	lastSuccess time.Time          // the last run without an error
	plan        *usersync.Plan     // the pending import plan after the last run
}

// startSync starts the sync loop of serve when sync.enabled: the view is
// opened (and served from at once), and a run every sync.interval keeps it
// and the import in step with AD until ctx ends or stop is called. stop waits
// for a run in progress to end (its reads are cancelled) and closes the view.
// finished, when not nil, is told of every run that ended (the metrics).
//
// A sync loop that cannot start (the view held by another process, a data
// directory ldapgate may not write) is logged as an error and the gateway
// serves binds without it: authentication does not depend on the view.
func startSync(ctx context.Context, cfg *configs.Config, cluster *upstream.Cluster, watch *credentialWatch, finished func(usersync.LoopRun), log *zap.Logger) *syncService {
	none := &syncService{stop: func() {}, cfg: cfg}
	if !cfg.Sync.Enabled {
		return none
	}
	view, err := usersync.OpenView(cfg.Sync.DataDir, usersync.ViewOptions{StaleAfter: cfg.Sync.StaleAfter, WriteBatch: cfg.Sync.WriteBatch})
	if err != nil {
		log.Error("sync loop not started: serving binds without the directory view", zap.Error(err))
		return none
	}
	ss := &syncService{view: view, cluster: cluster, watch: watch, log: log, finished: finished,
		triggers: make(chan usersync.Options, 1), cfg: cfg}
	if last := view.State().LastSync(); !last.IsZero() {
		ss.lastSuccess = last
	}
	s, im, err := ss.build(cfg)
	if err != nil {
		_ = view.Close()
		log.Error("sync loop not started: serving binds without the directory view", zap.Error(err))
		return none
	}
	ss.syncer, ss.importer = s, im
	ss.runLoop(ctx, s)
	return ss
}

// build makes the Syncer and the Importer of cfg on the service's view.
func (ss *syncService) build(cfg *configs.Config) (*usersync.Syncer, *usersync.Importer, error) {
	im, err := usersync.NewImporter(*cfg, ss.log)
	if err != nil {
		return nil, nil, err
	}
	var imp importRun
	s, err := usersync.NewSyncer(cfg.Sync, ss.cluster, ss.view, ss.log, usersync.WithImport(ss.watch.wrap(imp.hook(im))))
	if err != nil {
		return nil, nil, err
	}
	return s, im, nil
}

// runLoop runs s.Loop, and the Loop of each Syncer reconfigure makes, until
// ctx ends or the service is stopped.
func (ss *syncService) runLoop(ctx context.Context, s *usersync.Syncer) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	ss.mu.Lock()
	ss.restart = make(chan struct{})
	restart := ss.restart
	ss.mu.Unlock()
	go func() {
		defer close(done)
		for {
			_ = s.Loop(ctx, usersync.LoopControl{
				Trigger:   ss.triggers,
				Stop:      restart,
				Started:   ss.started,
				Finished:  ss.ended,
				Scheduled: ss.scheduled,
			})
			if ctx.Err() != nil {
				return
			}
			// reconfigure ended the Loop: run the new Syncer's.
			ss.mu.Lock()
			s, restart = ss.syncer, ss.restart
			ss.mu.Unlock()
		}
	}()
	ss.log.Info("sync loop started", zap.String("data_dir", ss.cfg.Sync.DataDir), zap.Int("entries", ss.view.Len()),
		zap.Time("last_sync", ss.view.State().LastSync()), zap.Duration("interval", ss.cfg.Sync.Interval))
	ss.stop = func() {
		cancel()
		<-done
		_ = ss.view.Close()
	}
}

// started records the run in progress.
func (ss *syncService) started(r usersync.LoopRun) {
	run := newSyncRun(r)
	ss.mu.Lock()
	ss.running, ss.next = &run, time.Time{}
	ss.mu.Unlock()
}

// ended records a finished run in the history, plans the pending import
// (what the next import would do if AD did not change: held deletions show
// here) and tells the metrics.
func (ss *syncService) ended(r usersync.LoopRun) {
	run := newSyncRun(r)
	ss.mu.Lock()
	im := ss.importer
	ss.mu.Unlock()
	plan, err := im.Plan(ss.view.All())
	if err != nil {
		ss.log.Warn("sync: the pending import plan could not be computed", zap.Error(err))
	}
	ss.mu.Lock()
	ss.running = nil
	ss.runs = append(ss.runs, run)
	if n := ss.cfg.HTTP.Status.SyncRuns; len(ss.runs) > n {
		ss.runs = slices.Delete(ss.runs, 0, len(ss.runs)-n)
	}
	if r.Result.Err == nil {
		ss.lastSuccess = r.Started.Add(r.Result.Dur)
	}
	if plan != nil {
		ss.plan = plan
	}
	ss.mu.Unlock()
	if ss.finished != nil {
		ss.finished(r)
	}
}

// scheduled records the time of the next scheduled run.
func (ss *syncService) scheduled(next time.Time) {
	ss.mu.Lock()
	ss.next = next
	ss.mu.Unlock()
}

// syncTrigger is what trigger did.
type syncTrigger string

const (
	// triggerQueued: a run starts now, or right after the one in progress.
	triggerQueued syncTrigger = "queued"
	// triggerCoalesced: a manual run was already waiting; it will be a full
	// one if either asked for it.
	triggerCoalesced syncTrigger = "coalesced"
	// triggerOff: the sync loop is off.
	triggerOff syncTrigger = "off"
)

// trigger asks for a sync now (full forces a full one), as the status page's
// "run sync" does. While a run is in progress the new one starts right after
// it; at most one run waits: a trigger while one is waiting is merged into it
// (coalesced), so triggers never queue up.
func (ss *syncService) trigger(full bool) syncTrigger {
	if ss.view == nil {
		return triggerOff
	}
	o := usersync.Options{Full: full}
	result := triggerQueued
	for {
		select {
		case ss.triggers <- o:
			return result
		default:
		}
		// One is waiting: take it and put back the union of both.
		select {
		case old := <-ss.triggers:
			o.Full = o.Full || old.Full
			result = triggerCoalesced
		default:
		}
	}
}

// reconfigure applies a changed configuration's sync and import settings
// (sync.*, import.*, the service account that the import excludes) to the
// running loop: it builds a new Syncer and Importer on the same open view and,
// after the run in progress (which is not cancelled), runs them at once and
// then on the new sync.interval; the history and a waiting trigger are kept.
// sync.stale_after applies at once to the view. It is what the reload
// (SIGHUP, file change) calls; nothing changes when these settings are the
// same. cfg must be validated.
//
// A change of sync.enabled or sync.data_dir needs a restart: reconfigure
// returns an error saying so and changes nothing, as it does when the new
// settings cannot be built. http.* (the listener, its credentials, which the
// export shares, and the status bounds) needs a restart too and is not
// compared; sync.outage_max_age is the listener's (see view.go), not the
// loop's.
func (ss *syncService) reconfigure(cfg *configs.Config) error {
	ss.mu.Lock()
	old := ss.cfg
	ss.mu.Unlock()
	switch {
	case cfg.Sync.Enabled != old.Sync.Enabled:
		return fmt.Errorf("sync.enabled changed from %t to %t: restart ldapgate to apply it", old.Sync.Enabled, cfg.Sync.Enabled)
	case cfg.Sync.DataDir != old.Sync.DataDir:
		return fmt.Errorf("sync.data_dir changed from %q to %q: restart ldapgate to apply it (the view stays open where it is)", old.Sync.DataDir, cfg.Sync.DataDir)
	}
	// The export keeps the listener's credentials until a restart.
	next := *cfg
	next.HTTP = old.HTTP
	if ss.view == nil || reflect.DeepEqual(loopSettings(&next), loopSettings(old)) {
		ss.mu.Lock()
		ss.cfg = &next
		ss.mu.Unlock()
		return nil
	}
	s, im, err := ss.build(&next)
	if err != nil {
		return fmt.Errorf("sync: the new settings are not applied: %w", err)
	}
	ss.view.SetStaleAfter(next.Sync.StaleAfter)
	ss.mu.Lock()
	ss.cfg, ss.syncer, ss.importer = &next, s, im
	close(ss.restart)
	ss.restart = make(chan struct{})
	ss.mu.Unlock()
	ss.log.Info("sync settings reloaded: the loop restarts after the run in progress",
		zap.Duration("interval", next.Sync.Interval), zap.String("import_mode", next.Import.Mode))
	return nil
}

// loopSettings are the settings the Syncer and the Importer are built from.
func loopSettings(cfg *configs.Config) any {
	return struct {
		Sync   configs.Sync
		Import configs.Import
		BindDN string
	}{cfg.Sync, cfg.Import, cfg.Upstream.BindDN}
}

// currentImporter is the importer the export serves (nil when the loop is
// off).
func (ss *syncService) currentImporter() *usersync.Importer {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.importer
}

// status is the loop's part of the status report, with at most rows rows of
// the pending import plan.
func (ss *syncService) status(rows int) syncStatus {
	st := syncStatus{Runs: []syncRun{}}
	if ss.view == nil {
		return st
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st.Enabled = true
	st.IntervalS = ss.cfg.Sync.Interval.Seconds()
	if ss.running != nil {
		run := *ss.running
		st.Running = &run
	}
	st.NextAt, st.LastSuccessAt = ss.next, ss.lastSuccess
	st.ViewEntries = ss.view.Len()
	for i := len(ss.runs) - 1; i >= 0; i-- {
		st.Runs = append(st.Runs, ss.runs[i])
	}
	if ss.plan != nil {
		st.Plan = newPlanSummary(ss.plan, rows)
	}
	return st
}
