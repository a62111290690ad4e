package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// loopRig is the sync loop of serve against a simulated DC, with its
// finished runs delivered on a channel; release lets the loop go on after
// each (the hook blocks the loop until then).
type loopRig struct {
	cfg      *configs.Config
	svc      *syncService
	finished chan usersync.LoopRun
	release  chan struct{}
}

func newLoopRig(t *testing.T, change func(*configs.Config)) *loopRig {
	t.Helper()
	d := newSyncDomain(t)
	cfg, err := configs.Load(d.config(t, cmdAllUsers))
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(cfg)
	}
	cluster, err := upstream.New(cfg.Upstream, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	r := &loopRig{cfg: cfg, finished: make(chan usersync.LoopRun), release: make(chan struct{})}
	done := make(chan struct{})
	hook := func(run usersync.LoopRun) {
		select {
		case r.finished <- run:
		case <-done:
			return
		}
		select {
		case <-r.release:
		case <-done:
		}
	}
	r.svc = startSync(context.Background(), cfg, cluster, &credentialWatch{}, hook, zap.NewNop())
	if r.svc.view == nil {
		t.Fatal("the sync loop did not start")
	}
	t.Cleanup(func() {
		close(done)
		r.svc.stop()
	})
	return r
}

// next waits for the next finished run; the loop stays blocked until
// r.release gets a value.
func (r *loopRig) next(t *testing.T, what string) usersync.LoopRun {
	t.Helper()
	select {
	case run := <-r.finished:
		return run
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: no sync run ended within 60s", what)
		return usersync.LoopRun{}
	}
}

// idle asserts that no run ends within a short while after the loop was let
// go (a bounded check of absence, not a synchronisation).
func (r *loopRig) idle(t *testing.T, what string) {
	t.Helper()
	select {
	case run := <-r.finished:
		t.Errorf("%s: an extra run ended: %+v", what, run)
		r.release <- struct{}{}
	case <-time.After(300 * time.Millisecond):
	}
}

func TestSyncLoopTriggersCoalesceAndHistoryIsBounded(t *testing.T) {
	t.Parallel()
	r := newLoopRig(t, func(c *configs.Config) { c.HTTP.Status.SyncRuns = 2 })

	first := r.next(t, "the first run")
	if first.Manual || first.Result.Kind != usersync.KindFull || first.Result.Err != nil {
		t.Fatalf("first run: %+v", first)
	}
	// While the loop is held after a run, a trigger waits and a second one
	// is merged into it: one more run, a full one because either asked.
	if got := r.svc.trigger(false); got != triggerQueued {
		t.Errorf("first trigger: %s, want queued", got)
	}
	if got := r.svc.trigger(true); got != triggerCoalesced {
		t.Errorf("second trigger while one waits: %s, want coalesced", got)
	}
	r.release <- struct{}{}
	manual := r.next(t, "the triggered run")
	if !manual.Manual || manual.Result.Kind != usersync.KindFull || manual.Result.Reason != "forced" {
		t.Errorf("triggered run: manual %t, %s (%s), want a manual full one (forced)", manual.Manual, manual.Result.Kind, manual.Result.Reason)
	}
	r.release <- struct{}{}
	r.idle(t, "after the coalesced trigger")

	st := r.svc.status(100)
	if !st.Enabled || len(st.Runs) != 2 || !st.Runs[0].Manual || st.Runs[1].Manual || st.Running != nil {
		t.Errorf("status after two runs: %+v", st)
	}
	if st.NextAt.IsZero() || time.Until(st.NextAt) < r.cfg.Sync.Interval-time.Minute {
		t.Errorf("next run at %v, want about sync.interval (%v) from now", st.NextAt, r.cfg.Sync.Interval)
	}
	if p := st.Plan; p == nil || p.Unchanged+p.Excluded != st.ViewEntries || p.Excluded != 1 || st.ViewEntries == 0 ||
		p.Creates+p.Updates+p.Removes+len(p.Rows) != 0 || st.LastSuccessAt.IsZero() {
		t.Errorf("pending plan %+v with %d users in the view, want every user unchanged after the import but the service account", p, st.ViewEntries)
	}

	// A third run pushes the oldest out of http.status.sync_runs = 2.
	r.svc.trigger(false)
	third := r.next(t, "the third run")
	r.release <- struct{}{}
	if third.Result.Kind != usersync.KindIncremental {
		t.Errorf("third run %s, want incremental", third.Result.Kind)
	}
	st = r.svc.status(100)
	if len(st.Runs) != 2 || st.Runs[0].Kind != "incremental" || !st.Runs[1].Manual || st.Runs[1].Kind != "full" {
		t.Errorf("history %+v, want the last two runs, newest first", st.Runs)
	}
}

func TestSyncLoopReconfigure(t *testing.T) {
	t.Parallel()
	r := newLoopRig(t, nil)
	r.next(t, "the first run")
	r.release <- struct{}{}

	same := *r.cfg
	if err := r.svc.reconfigure(&same); err != nil {
		t.Errorf("reconfigure with the same settings: %v", err)
	}
	r.idle(t, "reconfigure with the same settings")

	moved := *r.cfg
	moved.Sync.DataDir = t.TempDir()
	if err := r.svc.reconfigure(&moved); err == nil || !strings.Contains(err.Error(), "sync.data_dir") || !strings.Contains(err.Error(), "restart") {
		t.Errorf("reconfigure with another data_dir: %v, want an error saying to restart", err)
	}
	off := *r.cfg
	off.Sync.Enabled = false
	if err := r.svc.reconfigure(&off); err == nil || !strings.Contains(err.Error(), "sync.enabled") || !strings.Contains(err.Error(), "restart") {
		t.Errorf("reconfigure with sync off: %v, want an error saying to restart", err)
	}
	bad := *r.cfg
	bad.Import.Mode = "nonsense"
	if err := r.svc.reconfigure(&bad); err == nil || !strings.Contains(err.Error(), "not applied") {
		t.Errorf("reconfigure with a broken import mode: %v, want it refused", err)
	}
	r.idle(t, "refused reconfigures")

	changed := *r.cfg
	changed.Sync.Interval, changed.Sync.Jitter = 7*time.Minute, 0
	changed.Sync.StaleAfter = 42 * time.Minute
	changed.Import.CreateSoftphone = false
	if err := r.svc.reconfigure(&changed); err != nil {
		t.Fatalf("reconfigure: %v", err)
	}
	run := r.next(t, "the run after reconfigure")
	r.release <- struct{}{}
	if run.Result.Err != nil {
		t.Errorf("the run of the new settings: %v", run.Result.Err)
	}
	st := r.svc.status(100)
	if st.IntervalS != 420 || len(st.Runs) != 2 || r.svc.view.StaleAfter() != 42*time.Minute {
		t.Errorf("after reconfigure: interval %vs, %d runs kept, stale_after %v", st.IntervalS, len(st.Runs), r.svc.view.StaleAfter())
	}
	if st.Plan == nil {
		t.Errorf("no pending plan after the run")
	}
	// The trigger still works with the new loop.
	if got := r.svc.trigger(false); got != triggerQueued {
		t.Errorf("trigger after reconfigure: %s", got)
	}
	if run := r.next(t, "the triggered run after reconfigure"); !run.Manual {
		t.Errorf("the run after the trigger is not manual: %+v", run)
	}
	r.release <- struct{}{}
}
