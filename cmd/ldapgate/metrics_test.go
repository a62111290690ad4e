package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

func TestMetricsCountBindsWithBoundedLabels(t *testing.T) {
	t.Parallel()
	f := newFakeOps(t, nil)
	c := proxy.Client{Addr: "192.0.2.7:5060"}
	f.ops.observeBind(c, "jdoe", proxy.Decision{Reason: proxy.ReasonOK, CacheHit: true, Dur: 2 * time.Millisecond})
	refused := proxy.Decision{BindOutcome: proxy.BindOutcome{Code: 49}, Reason: proxy.ReasonADRefused, ADCode: "52e", Dur: 3 * time.Millisecond}
	f.ops.observeBind(c, "jdoe", refused)
	f.ops.observeBind(c, "jdoe", refused)
	// Values a client or a future AD could make up stay in the bounded sets.
	f.ops.observeBind(c, "x", proxy.Decision{BindOutcome: proxy.BindOutcome{Code: 80}, Reason: "made-up", ADCode: "dead"})

	code, h, body := f.get(t, "GET", "/metrics")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q", code, h.Get("Content-Type"))
	}
	for _, want := range []string{
		`ldapgate_binds_total{ad_code="none",reason="ok",result="0"} 1`,
		`ldapgate_binds_total{ad_code="52e",reason="ad_refused",result="49"} 2`,
		`ldapgate_binds_total{ad_code="other",reason="other",result="other"} 1`,
		`ldapgate_bind_duration_seconds_bucket{result="49",le="0.0025"} 0`,
		`ldapgate_bind_duration_seconds_bucket{result="49",le="0.005"} 2`,
		`ldapgate_bind_duration_seconds_bucket{result="0",le="0.0005"} 0`,
		`ldapgate_dn_cache_hits_total 1`,
		`ldapgate_upstream_breaker_state{dc="ldaps://dc1.test:636",state="closed"} 1`,
		`ldapgate_upstream_breaker_state{dc="ldaps://dc1.test:636",state="open"} 0`,
		`ldapgate_upstream_pool_in_use_connections{dc="ldaps://dc1.test:636",pool="service"} 1`,
		`ldapgate_upstream_pool_max_connections{dc="ldaps://dc1.test:636",pool="service"} 4`,
		`ldapgate_upstream_certificate_not_after_timestamp_seconds{dc="ldaps://dc1.test:636"} 1.93536e+09`,
		`ldapgate_upstream_last_latency_seconds{dc="ldaps://dc1.test:636"} 0.003`,
		`ldapgate_lockout_negative_cache_hits_total 0`,
		`ldapgate_sync_enabled 0`,
		`ldapgate_sync_changes_total{change="added"} 0`,
		"# HELP ldapgate_binds_total Bind decisions by the LDAP result code",
		"go_goroutines ", "process_start_time_seconds ", `ldapgate_build_info{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `ldapgate_upstream_certificate_not_after_timestamp_seconds{dc="ldaps://dc2.test:636"}`) {
		t.Errorf("dc2 has had no handshake, yet /metrics gives its certificate expiry")
	}
	// Every metric of ours has its HELP text.
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (ldapgate_\w+) `).FindAllStringSubmatch(body, -1) {
		if !regexp.MustCompile(`(?m)^# HELP ` + m[1] + ` \S`).MatchString(body) {
			t.Errorf("%s has no HELP text", m[1])
		}
	}
	if problems, err := testutil.GatherAndLint(f.ops.metrics.reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint problems: %v %v", problems, err)
	}
}

func TestMetricsFollowTheDCsAndTheSyncRuns(t *testing.T) {
	t.Parallel()
	f := newFakeOps(t, nil)
	f.dcs[0].Breaker, f.dcs[0].Drained = upstream.BreakerOpen, true
	f.ops.syncFinished(usersync.LoopRun{Manual: true, Result: usersync.Result{Kind: usersync.KindFull, Outcome: usersync.OutcomeApplied,
		Added: []string{"g1", "g2"}, Removed: []string{"g3"}, Dur: 700 * time.Millisecond}})
	f.ops.syncFinished(usersync.LoopRun{Result: usersync.Result{Kind: usersync.KindIncremental, Outcome: usersync.OutcomeSourceError,
		Err: usersync.ErrSource}})
	_, _, body := f.get(t, "GET", "/metrics")
	for _, want := range []string{
		`ldapgate_upstream_breaker_state{dc="ldaps://dc1.test:636",state="open"} 1`,
		`ldapgate_upstream_drained{dc="ldaps://dc1.test:636"} 1`,
		`ldapgate_upstream_usable{dc="ldaps://dc1.test:636"} 0`,
		`ldapgate_upstream_usable{dc="ldaps://dc2.test:636"} 1`,
		`ldapgate_sync_runs_total{kind="full",outcome="applied",trigger="manual"} 1`,
		`ldapgate_sync_runs_total{kind="incremental",outcome="source-error",trigger="schedule"} 1`,
		`ldapgate_sync_duration_seconds_bucket{kind="full",le="1"} 1`,
		`ldapgate_sync_changes_total{change="added"} 2`,
		`ldapgate_sync_changes_total{change="removed"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// A DC a reload removed is gone from the next scrape: nothing is kept.
	f.dcs = f.dcs[1:]
	if _, _, body := f.get(t, "GET", "/metrics"); strings.Contains(body, "dc1.test") {
		t.Errorf("a removed DC is still in /metrics")
	}
}
