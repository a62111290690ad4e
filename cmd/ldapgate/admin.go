package main

// The operations surface of serve on the HTTP listener: /healthz, /readyz,
// /status and /metrics (metrics.go) (see http.go for the routes and their authentication).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// operations counts what the metrics and the status report show and builds
// them. serve makes it before the sync loop and the bind path, which report
// to it (syncFinished, observeBind), and names them to it (setSync, setGuard)
// before the HTTP listener starts.
type operations struct {
	cfg      *configs.Config
	version  string
	started  time.Time
	now      func() time.Time
	dcs      func() []upstream.DCStats // Cluster.Stats
	guard    func() proxy.GuardStats   // Auth.GuardStats; nil until setGuard
	sync     *syncService              // nil until setSync
	failures *failureLog
	metrics  *gatewayMetrics
	log      *zap.Logger
}

// newOperations builds the operations surface of cfg over the DCs that dcs
// reports.
func newOperations(cfg *configs.Config, dcs func() []upstream.DCStats, log *zap.Logger) *operations {
	info, _ := debug.ReadBuildInfo()
	o := &operations{
		cfg:      cfg,
		version:  buildVersion(version, info),
		started:  time.Now(),
		now:      time.Now,
		dcs:      dcs,
		failures: newFailureLog(cfg.HTTP.Status.AuthFailures),
		log:      log.Named("http"),
	}
	o.metrics = newGatewayMetrics(o)
	return o
}

// setSync names the sync loop.
func (o *operations) setSync(ss *syncService) { o.sync = ss }

// setGuard names the source of the lockout guard's counts (Auth.GuardStats).
func (o *operations) setGuard(f func() proxy.GuardStats) { o.guard = f }

// observeBind is the bind path's observer (proxy.WithObserver): it counts
// the decision in the metrics and keeps a failure for /status. It runs on
// the request's goroutine and does not block.
func (o *operations) observeBind(c proxy.Client, login string, d proxy.Decision) {
	o.metrics.observeBind(d)
	o.failures.observe(o.now(), c, login, d)
}

// syncFinished is the sync loop's hook (startSync): it counts the run.
func (o *operations) syncFinished(r usersync.LoopRun) { o.metrics.observeSync(r) }

// importer is the sync loop's importer, which serves the export (nil when
// the loop is off).
func (o *operations) importer() *usersync.Importer {
	if o.sync == nil {
		return nil
	}
	return o.sync.currentImporter()
}

// guardStats is the lockout guard's counts (zero before setGuard).
func (o *operations) guardStats() proxy.GuardStats {
	if o.guard == nil {
		return proxy.GuardStats{}
	}
	return o.guard()
}

// readiness decides /readyz from the DCs and the offline cache.
func (o *operations) readiness(dcs []upstream.DCStats, g proxy.GuardStats) readiness {
	var usable, down []string
	for _, d := range dcs {
		switch {
		case dcUsable(d):
			usable = append(usable, d.URL)
		case d.Drained:
			down = append(down, d.URL+" is drained")
		default:
			why := d.URL + "'s breaker is " + d.Breaker
			if d.LastError != "" {
				why += fmt.Sprintf(" (last error %s: %s)", d.LastErrorAt.Format(time.RFC3339), d.LastError)
			}
			down = append(down, why)
		}
	}
	if len(usable) > 0 {
		return readiness{Ready: true, Reason: fmt.Sprintf("%d of %d domain controllers usable: %s", len(usable), len(dcs), strings.Join(usable, ", "))}
	}
	noDC := "no domain controller is usable: " + strings.Join(down, "; ")
	if o.cfg.Offline.Enabled && g.Offline.Entries > 0 {
		return readiness{Ready: true, Reason: fmt.Sprintf("%s; the offline credential cache answers binds for %d cached accounts", noDC, g.Offline.Entries)}
	}
	why := noDC + ". Check that the DCs are reachable and their certificates valid for upstream.ca_file ('ldapgate check upstream'), or undrain a DC"
	if o.cfg.Offline.Enabled {
		why += "; the offline credential cache is on but holds no credentials yet"
	}
	return readiness{Reason: why}
}

// status builds the status report.
func (o *operations) status() statusReport {
	dcs := o.dcs()
	g := o.guardStats()
	st := o.cfg.HTTP.Status
	rep := statusReport{
		Version:     o.version,
		StartedAt:   o.started,
		GeneratedAt: o.now(),
		Ready:       o.readiness(dcs, g),
		DCs:         make([]dcStatus, 0, len(dcs)),
		Sync:        syncStatus{Runs: []syncRun{}},
		Auth:        o.failures.report(st.RecentFailures),
	}
	for _, d := range dcs {
		rep.DCs = append(rep.DCs, newDCStatus(d))
	}
	if o.sync != nil {
		rep.Sync = o.sync.status(st.PlanRows)
	}
	rep.Auth.Guard = guardStatus{
		NegativeHits:     g.NegativeHits,
		BudgetRefusals:   g.BudgetRefusals,
		RateLimited:      g.RateLimited,
		OfflineEnabled:   o.cfg.Offline.Enabled,
		OfflineEntries:   g.Offline.Entries,
		OfflineSuccesses: g.Offline.Successes,
		OfflineFailures:  g.Offline.Failures,
	}
	return rep
}

// serveMetrics answers the metrics (see metrics.go).
func (o *operations) serveMetrics() http.Handler { return o.metrics.handler(o.log) }

// serveHealthz answers 200 while the process serves.
func (o *operations) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	noCache(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintln(w, "ok")
}

// serveReadyz answers 200 when the gateway can decide binds and 503 with what
// to check when it cannot.
func (o *operations) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	r := o.readiness(o.dcs(), o.guardStats())
	noCache(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(w, "not ready: "+r.Reason)
		return
	}
	_, _ = fmt.Fprintln(w, "ready: "+r.Reason)
}

// serveStatus answers the status report as JSON.
func (o *operations) serveStatus(w http.ResponseWriter, _ *http.Request) {
	body, err := json.MarshalIndent(o.status(), "", "  ")
	if err != nil {
		o.log.Error("status report", zap.Error(err))
		http.Error(w, "the status report could not be built: see the log", http.StatusInternalServerError)
		return
	}
	noCache(w)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

// noCache keeps proxies and browsers from caching an answer about now.
func noCache(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}
