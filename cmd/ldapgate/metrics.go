package main

// GET /metrics: the Prometheus metrics of serve, on a registry of its own
// (not client_golang's global one). Every label takes its values from a
// bounded set: result codes, reasons and AD sub-codes outside the known ones
// are counted as "other", and the DCs are the configured ones.

import (
	"errors"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// bindBuckets are the bind decision latency buckets, in seconds: 0.5 ms (a
// refusal from the negative cache) to 5 s (upstream.op_timeout's default).
var bindBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// syncBuckets are the sync run duration buckets, in seconds: an incremental
// run with nothing new to a full run near sync.timeout's default (5m).
var syncBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// The label values the bind metrics allow; any other value is "other".
var (
	knownResults = map[int]string{0: "0", 49: "49", 51: "51", 52: "52"}
	knownReasons = setOf(proxy.ReasonOK, proxy.ReasonAnonymous, proxy.ReasonEmptyPassword, proxy.ReasonInvalidLogin,
		proxy.ReasonUnknownUser, proxy.ReasonAmbiguous, proxy.ReasonOutsideBase, proxy.ReasonADRefused,
		proxy.ReasonUnavailable, proxy.ReasonBusy, proxy.ReasonNegativeCache, proxy.ReasonUserBudget,
		proxy.ReasonRateLimited, proxy.ReasonOffline, proxy.ReasonOfflineFailed, proxy.ReasonOfflineLimit,
		proxy.ReasonLocalProxy, proxy.ReasonLocalProxyRefused)
	// AD's bind sub-codes (AD-FACTS.md): 525 no such user, 52e wrong
	// password, 530 logon hours, 531 workstation, 532 password expired, 533
	// disabled, 568 too many SIDs, 701 account expired, 773 must change the
	// password, 775 locked out.
	knownADCodes = setOf("525", "52e", "530", "531", "532", "533", "568", "701", "773", "775")
	knownKinds   = setOf(usersync.KindFull, usersync.KindIncremental)
	knownOutcome = setOf(usersync.OutcomeApplied, usersync.OutcomeUnchanged, usersync.OutcomeHeld,
		usersync.OutcomeSuspiciousEmpty, usersync.OutcomeSourceError, usersync.OutcomeFailed)
)

// setOf is the set of strings of vs.
func setOf[T ~string](vs ...T) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[string(v)] = true
	}
	return m
}

// bounded returns v when it is in known, else "other".
func bounded(known map[string]bool, v string) string {
	if known[v] {
		return v
	}
	return "other"
}

// gatewayMetrics is the registry of serve with the metrics counted as events
// happen (binds, sync runs); the DCs, the lockout guard and the view are read
// when scraped (see the collectors below).
type gatewayMetrics struct {
	reg         *prometheus.Registry
	binds       *prometheus.CounterVec
	bindSeconds *prometheus.HistogramVec
	cacheHits   prometheus.Counter
	syncRuns    *prometheus.CounterVec
	syncSeconds *prometheus.HistogramVec
	syncChanges *prometheus.CounterVec
}

// newGatewayMetrics registers the metrics of o (which the scrape-time
// collectors read) with the Go and process collectors.
func newGatewayMetrics(o *operations) *gatewayMetrics {
	m := &gatewayMetrics{
		reg: prometheus.NewRegistry(),
		binds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ldapgate_binds_total",
			Help: "Bind decisions by the LDAP result code sent (0, 49, 51, 52), the reason (ok, ad_refused, unknown_user, unavailable, negative_cache, offline, ...) and AD's sub-code of a refusal (52e wrong password, 775 locked out, 533 disabled, ...; none without one).",
		}, []string{"result", "reason", "ad_code"}),
		bindSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ldapgate_bind_duration_seconds",
			Help:    "Time to decide a bind (lookup and upstream bind; without the delay lockout.min_failure_latency adds to a refusal), by result code.",
			Buckets: bindBuckets,
		}, []string{"result"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ldapgate_dn_cache_hits_total",
			Help: "Bind decisions whose user DN came from the DN cache (cache.dn) instead of a search.",
		}),
		syncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ldapgate_sync_runs_total",
			Help: "Sync runs of the directory view by kind (full, incremental), outcome (applied, unchanged, held, suspicious-empty, source-error, failed, import-failed) and trigger (schedule, manual).",
		}, []string{"kind", "outcome", "trigger"}),
		syncSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ldapgate_sync_duration_seconds",
			Help:    "Duration of sync runs (the read from AD, the view's update and the import), by kind.",
			Buckets: syncBuckets,
		}, []string{"kind"}),
		syncChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ldapgate_sync_changes_total",
			Help: "Entries the sync runs added to, changed in and removed from the directory view.",
		}, []string{"change"}),
	}
	for _, c := range []string{"added", "changed", "removed"} {
		m.syncChanges.WithLabelValues(c) // present at 0 from the start
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ldapgate_build_info",
		Help: "Always 1: the version of ldapgate and of Go it was built with.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(o.version, runtime.Version()).Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build, m.binds, m.bindSeconds, m.cacheHits, m.syncRuns, m.syncSeconds, m.syncChanges,
		newUpstreamCollector(o.dcs),
		&guardCollector{o: o},
		&syncCollector{o: o},
	)
	return m
}

// observeBind counts one bind decision.
func (m *gatewayMetrics) observeBind(d proxy.Decision) {
	result := knownResults[d.Code]
	if result == "" {
		result = "other"
	}
	adCode := "none"
	if d.ADCode != "" {
		adCode = bounded(knownADCodes, d.ADCode)
	}
	m.binds.WithLabelValues(result, bounded(knownReasons, string(d.Reason)), adCode).Inc()
	m.bindSeconds.WithLabelValues(result).Observe(d.Dur.Seconds())
	if d.CacheHit {
		m.cacheHits.Inc()
	}
}

// observeSync counts one finished sync run.
func (m *gatewayMetrics) observeSync(r usersync.LoopRun) {
	res := r.Result
	kind := bounded(knownKinds, string(res.Kind))
	outcome := bounded(knownOutcome, string(res.Outcome))
	if errors.Is(res.Err, usersync.ErrImport) {
		outcome = "import-failed"
	}
	trigger := "schedule"
	if r.Manual {
		trigger = "manual"
	}
	m.syncRuns.WithLabelValues(kind, outcome, trigger).Inc()
	m.syncSeconds.WithLabelValues(kind).Observe(res.Dur.Seconds())
	m.syncChanges.WithLabelValues("added").Add(float64(len(res.Added)))
	m.syncChanges.WithLabelValues("changed").Add(float64(len(res.Changed)))
	m.syncChanges.WithLabelValues("removed").Add(float64(len(res.Removed)))
}

// handler serves the registry in Prometheus' text (or OpenMetrics) format.
func (m *gatewayMetrics) handler(log *zap.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(log),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// upstreamCollector reports each DC from Cluster.Stats at scrape time; it
// keeps no copy, so a DC a reload removes is gone from the next scrape.
type upstreamCollector struct {
	dcs func() []upstream.DCStats

	breaker, usable, drained                           *prometheus.Desc
	poolOpen, poolIdle, poolInUse, poolMax, pinned     *prometheus.Desc
	dials, dialFailures, handshakes, resumed           *prometheus.Desc
	binds, searches, probes, staleRetries, failures    *prometheus.Desc
	lastLatency, lastErrorAt, certNotAfter, certChecks *prometheus.Desc
	breakerStates                                      []string
}

func newUpstreamCollector(dcs func() []upstream.DCStats) *upstreamCollector {
	dc := []string{"dc"}
	pool := []string{"dc", "pool"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("ldapgate_upstream_"+name, help, labels, nil)
	}
	return &upstreamCollector{
		dcs:           dcs,
		breakerStates: []string{upstream.BreakerClosed, upstream.BreakerOpen, upstream.BreakerHalfOpen},
		breaker:       d("breaker_state", "1 for the DC's circuit breaker state (closed, open, half-open), 0 for the others. Open: the DC gets no traffic until a probe succeeds.", []string{"dc", "state"}),
		usable:        d("usable", "1 when requests go to the DC now (breaker closed and not drained).", dc),
		drained:       d("drained", "1 when an admin drained the DC (no new requests, no probes).", dc),
		poolOpen:      d("pool_open_connections", "Connections of the DC's pool that exist (idle and in use), by pool (service: searches as the service account; bind: user binds).", pool),
		poolIdle:      d("pool_idle_connections", "Connections waiting in the DC's pool.", pool),
		poolInUse:     d("pool_in_use_connections", "Connections of the DC's pool checked out by requests.", pool),
		poolMax:       d("pool_max_connections", "The most connections the DC's pool keeps (upstream.pool.service_size, upstream.pool.bind_size).", pool),
		pinned:        d("paged_search_connections", "Service connections held by open paged searches, outside the pool.", dc),
		dials:         d("dials_total", "TCP connects attempted to the DC (pools and probes).", dc),
		dialFailures:  d("dial_failures_total", "Connects or TLS handshakes to the DC that failed.", dc),
		handshakes:    d("tls_handshakes_total", "TLS handshakes attempted with the DC; flat in steady state while binds grow.", dc),
		resumed:       d("tls_resumed_total", "TLS handshakes with the DC that resumed an earlier session.", dc),
		binds:         d("binds_total", "User binds written to the DC.", dc),
		searches:      d("searches_total", "Searches written to the DC.", dc),
		probes:        d("probes_total", "Health probes sent to the DC while its breaker was open.", dc),
		staleRetries:  d("stale_retries_total", "Requests moved to a new connection because the pooled one was found dead before the request was written.", dc),
		failures:      d("failures_total", "Failures the DC's breaker counted (transport errors, timeouts, results 51, 52, 80).", dc),
		lastLatency:   d("last_latency_seconds", "Duration of the last request that reached the DC.", dc),
		lastErrorAt:   d("last_error_timestamp_seconds", "Unix time of the last failure the DC's breaker counted (absent before the first).", dc),
		certNotAfter:  d("certificate_not_after_timestamp_seconds", "Unix time the DC's LDAPS certificate expires, as seen at the last TLS handshake (absent before the first; a standby DC gets a check every upstream.cert_check_interval).", dc),
		certChecks:    d("certificate_checks_total", "TLS handshakes made only to read the certificate of a DC without other traffic (not in tls_handshakes_total).", dc),
	}
}

// Describe sends the descriptions of every metric.
func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.breaker, c.usable, c.drained, c.poolOpen, c.poolIdle, c.poolInUse, c.poolMax,
		c.pinned, c.dials, c.dialFailures, c.handshakes, c.resumed, c.binds, c.searches, c.probes, c.staleRetries,
		c.failures, c.lastLatency, c.lastErrorAt, c.certNotAfter, c.certChecks} {
		ch <- d
	}
}

// Collect reads Cluster.Stats once and sends every DC's metrics.
func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, s := range c.dcs() {
		for _, state := range c.breakerStates {
			gauge(c.breaker, boolValue(s.Breaker == state), s.URL, state)
		}
		gauge(c.usable, boolValue(dcUsable(s)), s.URL)
		gauge(c.drained, boolValue(s.Drained), s.URL)
		for _, p := range []struct {
			name string
			st   upstream.PoolStats
		}{{"service", s.Service}, {"bind", s.Bind}} {
			gauge(c.poolOpen, float64(p.st.Open), s.URL, p.name)
			gauge(c.poolIdle, float64(p.st.Idle), s.URL, p.name)
			gauge(c.poolInUse, float64(p.st.InUse), s.URL, p.name)
			gauge(c.poolMax, float64(p.st.Size), s.URL, p.name)
		}
		gauge(c.pinned, float64(s.Pinned), s.URL)
		counter(c.dials, s.Dials, s.URL)
		counter(c.dialFailures, s.DialFailures, s.URL)
		counter(c.handshakes, s.Handshakes, s.URL)
		counter(c.resumed, s.Resumed, s.URL)
		counter(c.binds, s.Binds, s.URL)
		counter(c.searches, s.Searches, s.URL)
		counter(c.probes, s.Probes, s.URL)
		counter(c.staleRetries, s.StaleRetries, s.URL)
		counter(c.failures, s.Failures, s.URL)
		counter(c.certChecks, s.CertChecks, s.URL)
		gauge(c.lastLatency, s.LastLatency.Seconds(), s.URL)
		if !s.LastErrorAt.IsZero() {
			gauge(c.lastErrorAt, unixSeconds(s.LastErrorAt), s.URL)
		}
		if !s.CertNotAfter.IsZero() {
			gauge(c.certNotAfter, unixSeconds(s.CertNotAfter), s.URL)
		}
	}
}

// guardCollector reports the lockout guard's and the offline cache's counts
// (Auth.GuardStats) at scrape time.
type guardCollector struct{ o *operations }

var (
	guardNegativeHits = prometheus.NewDesc("ldapgate_lockout_negative_cache_hits_total",
		"Binds answered 49 from the negative cache (the same wrong password again), without asking AD.", nil, nil)
	guardBudgetRefusals = prometheus.NewDesc("ldapgate_lockout_budget_refusals_total",
		"Binds answered 49 because the account's budget of wrong passwords (lockout.user_budget) was used up, without asking AD.", nil, nil)
	guardRateLimited = prometheus.NewDesc("ldapgate_lockout_rate_limited_total",
		"Binds answered 51 by the per-client rate limit of failed binds (lockout.client_rate).", nil, nil)
	offlineEntries = prometheus.NewDesc("ldapgate_offline_cache_entries",
		"Accounts in the offline credential cache (offline.*); 0 when it is off.", nil, nil)
	offlineSuccesses = prometheus.NewDesc("ldapgate_offline_cache_successes_total",
		"Binds accepted by the offline credential cache while no DC could be reached.", nil, nil)
	offlineFailures = prometheus.NewDesc("ldapgate_offline_cache_failures_total",
		"Binds refused by the offline credential cache while no DC could be reached.", nil, nil)
	offlineSkipped = prometheus.NewDesc("ldapgate_offline_cache_skipped_total",
		"Credentials the offline cache did not store because every hashing slot was busy.", nil, nil)
)

// Describe sends the descriptions of every metric.
func (c *guardCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{guardNegativeHits, guardBudgetRefusals, guardRateLimited,
		offlineEntries, offlineSuccesses, offlineFailures, offlineSkipped} {
		ch <- d
	}
}

// Collect reads GuardStats once.
func (c *guardCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.o.guardStats()
	for _, m := range []struct {
		d *prometheus.Desc
		t prometheus.ValueType
		v float64
	}{
		{guardNegativeHits, prometheus.CounterValue, float64(g.NegativeHits)},
		{guardBudgetRefusals, prometheus.CounterValue, float64(g.BudgetRefusals)},
		{guardRateLimited, prometheus.CounterValue, float64(g.RateLimited)},
		{offlineEntries, prometheus.GaugeValue, float64(g.Offline.Entries)},
		{offlineSuccesses, prometheus.CounterValue, float64(g.Offline.Successes)},
		{offlineFailures, prometheus.CounterValue, float64(g.Offline.Failures)},
		{offlineSkipped, prometheus.CounterValue, float64(g.Offline.Skipped)},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v)
	}
}

// syncCollector reports the sync loop's state at scrape time.
type syncCollector struct{ o *operations }

var (
	syncEnabled = prometheus.NewDesc("ldapgate_sync_enabled",
		"1 when the sync loop runs (sync.enabled and the view opened).", nil, nil)
	syncViewEntries = prometheus.NewDesc("ldapgate_sync_view_entries",
		"Users in the directory view.", nil, nil)
	syncLastSuccess = prometheus.NewDesc("ldapgate_sync_last_success_timestamp_seconds",
		"Unix time the last sync run without an error ended (at the start, the view's last sync; absent before any).", nil, nil)
	syncDeletionsHeld = prometheus.NewDesc("ldapgate_sync_import_deletions_held",
		"1 when the pending import plan holds removals above sync.max_delete_percent until they are confirmed.", nil, nil)
)

// Describe sends the descriptions of every metric.
func (c *syncCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{syncEnabled, syncViewEntries, syncLastSuccess, syncDeletionsHeld} {
		ch <- d
	}
}

// Collect reads the loop's state once.
func (c *syncCollector) Collect(ch chan<- prometheus.Metric) {
	if c.o.sync == nil {
		ch <- prometheus.MustNewConstMetric(syncEnabled, prometheus.GaugeValue, 0)
		return
	}
	st := c.o.sync.status(0)
	ch <- prometheus.MustNewConstMetric(syncEnabled, prometheus.GaugeValue, boolValue(st.Enabled))
	if !st.Enabled {
		return
	}
	ch <- prometheus.MustNewConstMetric(syncViewEntries, prometheus.GaugeValue, float64(st.ViewEntries))
	if !st.LastSuccessAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(syncLastSuccess, prometheus.GaugeValue, unixSeconds(st.LastSuccessAt))
	}
	ch <- prometheus.MustNewConstMetric(syncDeletionsHeld, prometheus.GaugeValue, boolValue(st.Plan != nil && st.Plan.HeldDeletions))
}

// boolValue is 1 for true, 0 for false.
func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is t as Unix time in seconds.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
