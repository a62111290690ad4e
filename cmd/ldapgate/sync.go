package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	view, err := usersync.OpenView(cfg.Sync.DataDir, usersync.ViewOptions{StaleAfter: cfg.Sync.StaleAfter})
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
	view, err := usersync.OpenView(tmp, usersync.ViewOptions{StaleAfter: cfg.Sync.StaleAfter})
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
// feeds; the importer also serves the CSV export.
type syncService struct {
	view     *usersync.View
	importer *usersync.Importer
	stop     func()
}

// startSync starts the sync loop of serve when sync.enabled: the view is
// opened (and served from at once), and a run every sync.interval keeps it
// and the import in step with AD until ctx ends or stop is called. stop waits
// for a run in progress to end (its reads are cancelled) and closes the view.
//
// A sync loop that cannot start (the view held by another process, a data
// directory ldapgate may not write) is logged as an error and the gateway
// serves binds without it: authentication does not depend on the view.
func startSync(ctx context.Context, cfg *configs.Config, cluster *upstream.Cluster, watch *credentialWatch, log *zap.Logger) *syncService {
	none := &syncService{stop: func() {}}
	if !cfg.Sync.Enabled {
		return none
	}
	view, err := usersync.OpenView(cfg.Sync.DataDir, usersync.ViewOptions{StaleAfter: cfg.Sync.StaleAfter})
	if err != nil {
		log.Error("sync loop not started: serving binds without the directory view", zap.Error(err))
		return none
	}
	im, err := usersync.NewImporter(*cfg, log)
	if err == nil {
		var imp importRun
		var s *usersync.Syncer
		if s, err = usersync.NewSyncer(cfg.Sync, cluster, view, log, usersync.WithImport(watch.wrap(imp.hook(im)))); err == nil {
			return runLoop(ctx, s, im, cfg, log)
		}
	}
	_ = view.Close()
	log.Error("sync loop not started: serving binds without the directory view", zap.Error(err))
	return none
}

// runLoop runs s.Loop until ctx ends or the service is stopped.
func runLoop(ctx context.Context, s *usersync.Syncer, im *usersync.Importer, cfg *configs.Config, log *zap.Logger) *syncService {
	view := s.View()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Loop(ctx)
	}()
	log.Info("sync loop started", zap.String("data_dir", cfg.Sync.DataDir), zap.Int("entries", view.Len()),
		zap.Time("last_sync", view.State().LastSync()), zap.Duration("interval", cfg.Sync.Interval))
	return &syncService{view: view, importer: im, stop: func() {
		cancel()
		<-done
		_ = view.Close()
	}}
}
