package main

// The status report: what GET /status serves as JSON and the status page
// renders. Everything in it is a snapshot taken when it is built; it never
// holds a password or a bind request, and the logins in it are escaped as the
// audit log escapes them.

import (
	"time"

	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// statusReport is the gateway's state for an admin.
type statusReport struct {
	// Version is the program's version (as 'ldapgate version' prints it).
	Version string `json:"version"`
	// StartedAt is when serve started; GeneratedAt when the report was built.
	StartedAt   time.Time `json:"started_at"`
	GeneratedAt time.Time `json:"generated_at"`
	// Ready is what /readyz answers.
	Ready readiness `json:"ready"`
	// DCs are the domain controllers in the configured order.
	DCs []dcStatus `json:"dcs"`
	// Sync is the directory view's sync loop and the user import.
	Sync syncStatus `json:"sync"`
	// Auth is the recent failed binds and the lockout guard's counts.
	Auth authStatus `json:"auth"`
}

// readiness says whether the gateway can decide binds, and why (or why not).
type readiness struct {
	// Ready is true when at least one DC is usable (breaker closed, not
	// drained) or the offline credential cache is on and holds credentials.
	Ready bool `json:"ready"`
	// Reason says why, for a person: for a gateway that is not ready, what is
	// wrong and what to check.
	Reason string `json:"reason"`
}

// dcStatus is one domain controller.
type dcStatus struct {
	// URL is the DC as configured (upstream.servers[].url).
	URL string `json:"url"`
	// Breaker is closed, open or half-open.
	Breaker string `json:"breaker"`
	// Drained is true when an admin took the DC out of service.
	Drained bool `json:"drained"`
	// Usable is true when requests go to the DC now (breaker closed, not
	// drained).
	Usable bool `json:"usable"`
	// LastLatencyMS is the duration of the last request that reached the DC,
	// in milliseconds (0 before the first).
	LastLatencyMS float64 `json:"last_latency_ms"`
	// LastError is the last failure the breaker counted, and when.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// CertNotAfter is the expiry of the DC's certificate seen at the last TLS
	// handshake (zero before the first).
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
	// Service and Bind are the service-account (searches) and user-bind pools.
	Service poolStatus `json:"service_pool"`
	Bind    poolStatus `json:"bind_pool"`
	// Binds, Searches, Probes, Dials, DialFailures, Handshakes, Resumed and
	// Failures are the DC's counters since the start (see upstream.DCStats).
	Binds        uint64 `json:"binds"`
	Searches     uint64 `json:"searches"`
	Probes       uint64 `json:"probes"`
	Dials        uint64 `json:"dials"`
	DialFailures uint64 `json:"dial_failures"`
	Handshakes   uint64 `json:"tls_handshakes"`
	Resumed      uint64 `json:"tls_resumed"`
	Failures     uint64 `json:"failures"`
}

// poolStatus is one connection pool of a DC.
type poolStatus struct {
	// Size is the most connections the pool keeps.
	Size int `json:"size"`
	// Open is the connections that exist: Idle in the pool, InUse by requests.
	Open  int `json:"open"`
	Idle  int `json:"idle"`
	InUse int `json:"in_use"`
}

// syncStatus is the sync loop.
type syncStatus struct {
	// Enabled is true when the loop runs (sync.enabled and the view opened).
	Enabled bool `json:"enabled"`
	// IntervalS is sync.interval in seconds.
	IntervalS float64 `json:"interval_s"`
	// Running is the run in progress, nil when none is.
	Running *syncRun `json:"running,omitempty"`
	// NextAt is when the next scheduled run starts (zero while one runs or
	// when the loop is off).
	NextAt time.Time `json:"next_at,omitzero"`
	// LastSuccessAt is when the last run without an error ended (at the start,
	// the view's last sync).
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	// ViewEntries is the users in the directory view.
	ViewEntries int `json:"view_entries"`
	// Runs are the last runs, newest first (at most http.status.sync_runs).
	Runs []syncRun `json:"runs"`
	// Plan is the pending import plan, nil before the first run ended.
	Plan *planSummary `json:"plan,omitempty"`
}

// syncRun is one run of the sync loop.
type syncRun struct {
	// Kind is full or incremental; Reason says why a full one ran.
	Kind   string `json:"kind"`
	Reason string `json:"reason,omitempty"`
	// Manual is true for a run an admin started (trigger), false for a
	// scheduled one.
	Manual bool `json:"manual"`
	// Outcome is applied, unchanged, held, source_error, … ("" while it runs).
	Outcome string `json:"outcome,omitempty"`
	// DC is the DC that was read.
	DC string `json:"dc,omitempty"`
	// StartedAt is when it started; DurationMS how long it took.
	StartedAt  time.Time `json:"started_at"`
	DurationMS float64   `json:"duration_ms"`
	// Read, Added, Changed and Removed count the entries read from AD and the
	// view's changes; Entries is the view's size after the run.
	Read    int `json:"read"`
	Added   int `json:"added"`
	Changed int `json:"changed"`
	Removed int `json:"removed"`
	Entries int `json:"entries"`
	// ImportHeld is true when the import held deletions back.
	ImportHeld bool `json:"import_held,omitempty"`
	// Error says what went wrong, if anything.
	Error string `json:"error,omitempty"`
}

// newSyncRun is the record of a run of the loop (Result is empty for a run
// that has just started).
func newSyncRun(r usersync.LoopRun) syncRun {
	res := r.Result
	run := syncRun{
		Kind:       string(res.Kind),
		Reason:     res.Reason,
		Manual:     r.Manual,
		Outcome:    string(res.Outcome),
		DC:         res.DC,
		StartedAt:  r.Started,
		DurationMS: millis(res.Dur),
		Read:       res.Read,
		Added:      len(res.Added),
		Changed:    len(res.Changed),
		Removed:    len(res.Removed),
		Entries:    res.Entries,
		ImportHeld: res.ImportHeld,
	}
	if r.Options.Full && run.Kind == "" {
		run.Kind = string(usersync.KindFull)
	}
	if res.Err != nil {
		run.Error = res.Err.Error()
	}
	return run
}

// planSummary is the pending import plan: the view against the last applied
// import, computed after each run, so it shows what the next import would do
// if AD did not change (held deletions above all).
type planSummary struct {
	// PlannedAt is when it was computed; Mode is import.mode.
	PlannedAt time.Time `json:"planned_at"`
	Mode      string    `json:"mode"`
	// ViewUsers is the users in the view, AppliedUsers those in the last
	// applied import.
	ViewUsers    int `json:"view_users"`
	AppliedUsers int `json:"applied_users"`
	// The counts of the plan's actions, complete.
	Creates   int `json:"creates"`
	Updates   int `json:"updates"`
	Disables  int `json:"disables"`
	Removes   int `json:"removes"`
	Kept      int `json:"kept"`
	Unchanged int `json:"unchanged"`
	Skipped   int `json:"skipped"`
	Excluded  int `json:"excluded"`
	// HeldDeletions says the removals are held (HeldReason: why).
	HeldDeletions bool   `json:"held_deletions"`
	HeldReason    string `json:"held_reason,omitempty"`
	// Rows are the plan's changes (creates, updates, disables, removes, kept),
	// at most http.status.plan_rows of them; RowsOmitted counts the rest.
	Rows        []planRow `json:"rows"`
	RowsOmitted int       `json:"rows_omitted"`
}

// planRow is one user the pending plan changes, as the dry-run table shows it.
type planRow struct {
	// Action is create, update, disable, remove or keep.
	Action string `json:"action"`
	// Username and DisplayName identify the user.
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	// Extension (telephoneNumber), Mobile and Devices are the user's phone
	// fields as the dry-run table shows them.
	Extension string `json:"extension,omitempty"`
	Mobile    string `json:"mobile,omitempty"`
	Devices   string `json:"devices,omitempty"`
	// Changes are the changed fields ("field: old → new"); Reason says why a
	// user is kept.
	Changes []string `json:"changes,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	// Held is true for a removal the deletion threshold holds.
	Held bool `json:"held,omitempty"`
}

// newPlanSummary summarises p with at most rows rows.
func newPlanSummary(p *usersync.Plan, rows int) *planSummary {
	s := &planSummary{
		PlannedAt:     p.PlannedAt,
		Mode:          p.Mode,
		ViewUsers:     p.ViewUsers,
		AppliedUsers:  p.AppliedUsers,
		Creates:       len(p.Creates),
		Updates:       len(p.Updates),
		Disables:      len(p.Disables),
		Removes:       len(p.Removes),
		Kept:          len(p.Kept),
		Unchanged:     len(p.Unchanged),
		Skipped:       len(p.Skipped),
		Excluded:      len(p.Excluded),
		HeldDeletions: p.HeldDeletions,
		HeldReason:    p.HeldReason,
		Rows:          []planRow{},
	}
	for _, items := range [][]usersync.PlanItem{p.Creates, p.Updates, p.Disables, p.Removes, p.Kept} {
		for _, it := range items {
			if len(s.Rows) >= rows {
				s.RowsOmitted++
				continue
			}
			row := planRow{Action: string(it.Action), Username: it.User.Username, DisplayName: it.User.DisplayName,
				Extension: it.User.Phone, Mobile: it.User.Mobile, Devices: it.User.Devices(), Reason: it.Reason, Held: it.Held}
			for _, c := range it.Changes {
				row.Changes = append(row.Changes, c.Field+": "+c.Old+" → "+c.New)
			}
			s.Rows = append(s.Rows, row)
		}
	}
	return s
}

// authStatus is the recent failed binds and the lockout guard's counts.
type authStatus struct {
	// Counted is the failed binds the counts cover: the last ones, at most
	// http.status.auth_failures; Since is the time of the oldest of them.
	Counted int       `json:"counted"`
	Since   time.Time `json:"since,omitzero"`
	// ByReason counts them by reason, most frequent first.
	ByReason []reasonCount `json:"by_reason"`
	// Recent are the last failed binds, newest first (at most
	// http.status.recent_failures).
	Recent []authFailure `json:"recent"`
	// Guard is the lockout guard's and the offline cache's counts since the
	// start.
	Guard guardStatus `json:"guard"`
}

// reasonCount is how many of the counted failures had one reason.
type reasonCount struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// authFailure is one failed bind. There is no password in it.
type authFailure struct {
	At time.Time `json:"at"`
	// Client is the client's address.
	Client string `json:"client"`
	// Login is the bind name as typed, escaped (control characters, invalid
	// UTF-8) and cut as in the audit log.
	Login string `json:"login"`
	// Result is the LDAP result code sent (49, 51, 52).
	Result int `json:"result"`
	// Reason is why (proxy.Reason); ADCode is AD's sub-code ("52e", "775", …).
	Reason string `json:"reason"`
	ADCode string `json:"ad_code,omitempty"`
	// DC is the DC that answered, if one did.
	DC string `json:"dc,omitempty"`
}

// guardStatus is proxy.GuardStats for the report.
type guardStatus struct {
	NegativeHits   uint64 `json:"negative_hits"`
	BudgetRefusals uint64 `json:"budget_refusals"`
	RateLimited    uint64 `json:"rate_limited"`
	// OfflineEnabled is offline.enabled; OfflineEntries the accounts cached.
	OfflineEnabled   bool   `json:"offline_enabled"`
	OfflineEntries   int    `json:"offline_entries"`
	OfflineSuccesses uint64 `json:"offline_successes"`
	OfflineFailures  uint64 `json:"offline_failures"`
}

// newDCStatus is the report of one DC's stats.
func newDCStatus(d upstream.DCStats) dcStatus {
	return dcStatus{
		URL:           d.URL,
		Breaker:       d.Breaker,
		Drained:       d.Drained,
		Usable:        dcUsable(d),
		LastLatencyMS: millis(d.LastLatency),
		LastError:     d.LastError,
		LastErrorAt:   d.LastErrorAt,
		CertNotAfter:  d.CertNotAfter,
		Service:       poolStatus(d.Service),
		Bind:          poolStatus(d.Bind),
		Binds:         d.Binds,
		Searches:      d.Searches,
		Probes:        d.Probes,
		Dials:         d.Dials,
		DialFailures:  d.DialFailures,
		Handshakes:    d.Handshakes,
		Resumed:       d.Resumed,
		Failures:      d.Failures,
	}
}

// dcUsable reports whether requests go to the DC now, as the Cluster decides.
func dcUsable(d upstream.DCStats) bool { return d.Breaker == upstream.BreakerClosed && !d.Drained }

// millis is d in milliseconds.
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
