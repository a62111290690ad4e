package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// fakeOps is an operations surface over DC stats and guard counts the test
// sets.
type fakeOps struct {
	ops   *operations
	dcs   []upstream.DCStats
	guard proxy.GuardStats
}

func newFakeOps(t *testing.T, change func(*configs.Config)) *fakeOps {
	t.Helper()
	cfg := configs.Default()
	if change != nil {
		change(&cfg)
	}
	f := &fakeOps{dcs: []upstream.DCStats{
		{URL: "ldaps://dc1.test:636", Breaker: upstream.BreakerClosed, LastLatency: 3 * time.Millisecond,
			Service:      upstream.PoolStats{Size: 4, Open: 2, Idle: 1, InUse: 1},
			CertNotAfter: time.Date(2031, 5, 1, 0, 0, 0, 0, time.UTC)},
		{URL: "ldaps://dc2.test:636", Breaker: upstream.BreakerClosed},
	}}
	f.ops = newOperations(&cfg, func() []upstream.DCStats { return f.dcs }, zap.NewNop())
	f.ops.setGuard(func() proxy.GuardStats { return f.guard })
	f.ops.setSync(&syncService{cfg: &cfg})
	return f
}

// get sends a request to the listener's handler and returns the status and body.
func (f *fakeOps) get(t *testing.T, method, path string, header ...string) (int, http.Header, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	httpHandler(f.ops.cfg, f.ops, nil, zap.NewNop()).ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Result().Header, string(body)
}

func TestReadyzFollowsTheDCsAndTheOfflineCache(t *testing.T) {
	t.Parallel()
	f := newFakeOps(t, func(c *configs.Config) { c.Offline.Enabled = true })
	if code, _, body := f.get(t, "GET", "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}
	if code, _, body := f.get(t, "GET", "/readyz"); code != 200 || !strings.Contains(body, "2 of 2 domain controllers usable") {
		t.Errorf("/readyz with both DCs usable: %d %q", code, body)
	}
	f.dcs[0].Drained = true
	if code, _, body := f.get(t, "GET", "/readyz"); code != 200 || !strings.Contains(body, "1 of 2") || !strings.Contains(body, "dc2") {
		t.Errorf("/readyz with dc1 drained: %d %q", code, body)
	}
	f.dcs[1].Breaker = upstream.BreakerOpen
	f.dcs[1].LastError, f.dcs[1].LastErrorAt = "dial tcp: connection refused", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	code, _, body := f.get(t, "GET", "/readyz")
	for _, want := range []string{"not ready", "dc1.test:636 is drained", "dc2.test:636's breaker is open", "connection refused",
		"ldapgate check upstream", "offline credential cache is on but holds no credentials"} {
		if code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
			t.Errorf("/readyz with no DC usable: %d %q, want 503 saying %q", code, body, want)
		}
	}
	f.guard.Offline.Entries = 3
	if code, _, body := f.get(t, "GET", "/readyz"); code != 200 || !strings.Contains(body, "offline credential cache answers binds for 3 cached accounts") {
		t.Errorf("/readyz with no DC but 3 offline credentials: %d %q", code, body)
	}
	f.dcs[1].Breaker = upstream.BreakerHalfOpen
	f.guard.Offline.Entries = 0
	if code, _, _ := f.get(t, "GET", "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with dc2 half-open (only its probe goes there): %d, want 503", code)
	}
}

func TestAdminEndpointsNeedTheCredentialHealthChecksDoNot(t *testing.T) {
	t.Parallel()
	f := newFakeOps(t, func(c *configs.Config) {
		c.HTTP.BearerToken = "s3cret-token"
		c.HTTP.BasicUser, c.HTTP.BasicPassword = "admin", "pw"
	})
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _, _ := f.get(t, "GET", path); code != 200 {
			t.Errorf("%s without a credential: %d, want 200", path, code)
		}
	}
	for _, path := range []string{"/status", "/export/users.csv"} {
		code, h, _ := f.get(t, "GET", path)
		if code != http.StatusUnauthorized || len(h.Values("WWW-Authenticate")) != 2 {
			t.Errorf("%s without a credential: %d %v, want 401 with both challenges", path, code, h.Values("WWW-Authenticate"))
		}
		if code, _, _ := f.get(t, "GET", path, "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
	}
	if code, _, _ := f.get(t, "GET", "/status", "Authorization", "Bearer s3cret-token"); code != 200 {
		t.Errorf("/status with the token: %d, want 200", code)
	}
	req := httptest.NewRequest("GET", "/status", nil)
	req.SetBasicAuth("admin", "pw")
	rec := httptest.NewRecorder()
	httpHandler(f.ops.cfg, f.ops, nil, zap.NewNop()).ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("/status with basic auth: %d, want 200", rec.Code)
	}
	for _, path := range []string{"/healthz", "/readyz", "/status"} {
		code, h, _ := f.get(t, "POST", path, "Authorization", "Bearer s3cret-token")
		if code != http.StatusMethodNotAllowed || !strings.Contains(h.Get("Allow"), "GET") {
			t.Errorf("POST %s: %d (Allow %q), want 405 allowing GET", path, code, h.Get("Allow"))
		}
	}
}

func TestStatusReportsDCsAndFailures(t *testing.T) {
	t.Parallel()
	f := newFakeOps(t, func(c *configs.Config) { c.HTTP.Status.AuthFailures, c.HTTP.Status.RecentFailures = 3, 2 })
	client := proxy.Client{Addr: "192.0.2.7:5060"}
	f.ops.observeBind(client, "jdoe", proxy.Decision{Reason: proxy.ReasonOK})
	for i, login := range []string{"a", "b", `c\x00`, "d"} {
		d := proxy.Decision{BindOutcome: proxy.BindOutcome{Code: 49}, Reason: proxy.ReasonADRefused, ADCode: "52e", DC: "ldaps://dc1.test:636"}
		if i == 3 {
			d = proxy.Decision{BindOutcome: proxy.BindOutcome{Code: 52}, Reason: proxy.ReasonUnavailable}
		}
		f.ops.observeBind(client, login, d)
	}
	code, h, body := f.get(t, "GET", "/status")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("/status: %d %q", code, h.Get("Content-Type"))
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("/status is not the report: %v\n%s", err, body)
	}
	if len(rep.DCs) != 2 || rep.DCs[0].URL != "ldaps://dc1.test:636" || !rep.DCs[0].Usable || rep.DCs[0].LastLatencyMS != 3 ||
		rep.DCs[0].Service.InUse != 1 || !rep.DCs[0].CertNotAfter.Equal(f.dcs[0].CertNotAfter) || !rep.Ready.Ready {
		t.Errorf("DCs in the report: %+v", rep.DCs)
	}
	if strings.Contains(body, "cert_not_after\": \"0001") || strings.Count(body, "cert_not_after") != 1 {
		t.Errorf("a DC without a handshake yet shows a certificate expiry:\n%s", body)
	}
	a := rep.Auth
	if a.Counted != 3 || len(a.ByReason) != 2 || a.ByReason[0] != (reasonCount{"ad_refused", 2}) || a.ByReason[1] != (reasonCount{"unavailable", 1}) {
		t.Errorf("failures counted %d by reason %+v, want the last 3: 2 ad_refused, 1 unavailable", a.Counted, a.ByReason)
	}
	if len(a.Recent) != 2 || a.Recent[0].Login != "d" || a.Recent[1].Login != `c\x00` || a.Recent[1].ADCode != "52e" || a.Recent[1].Client != client.Addr {
		t.Errorf("recent failures %+v, want d then c (newest first)", a.Recent)
	}
	if rep.Sync.Enabled || rep.Sync.Runs == nil {
		t.Errorf("sync of a loop that is off: %+v", rep.Sync)
	}
}

func TestPlanSummaryListsAtMostPlanRows(t *testing.T) {
	t.Parallel()
	item := func(a usersync.Action, user string) usersync.PlanItem {
		return usersync.PlanItem{Action: a, User: usersync.ImportUser{Username: user, DisplayName: strings.ToUpper(user)}}
	}
	upd := item(usersync.ActionUpdate, "bob")
	upd.Changes = []usersync.FieldChange{{Field: "phone", Old: "+1 555 0101", New: "+1 555 0102"}}
	rm := item(usersync.ActionRemove, "carol")
	rm.Held = true
	p := &usersync.Plan{Mode: "create_update_remove", ViewUsers: 40, AppliedUsers: 41,
		Creates: []usersync.PlanItem{item(usersync.ActionCreate, "alice")}, Updates: []usersync.PlanItem{upd},
		Removes: []usersync.PlanItem{rm, item(usersync.ActionRemove, "dave")}, Unchanged: make([]usersync.PlanItem, 37),
		HeldDeletions: true, HeldReason: "2 of 41 is above 1%"}

	s := newPlanSummary(p, 3)
	if s.Creates != 1 || s.Updates != 1 || s.Removes != 2 || s.Unchanged != 37 || !s.HeldDeletions || s.HeldReason != p.HeldReason {
		t.Errorf("counts %+v", s)
	}
	if len(s.Rows) != 3 || s.RowsOmitted != 1 {
		t.Fatalf("%d rows, %d omitted; want 3 and 1 (plan_rows 3)", len(s.Rows), s.RowsOmitted)
	}
	want := []planRow{
		{Action: "create", Username: "alice", DisplayName: "ALICE"},
		{Action: "update", Username: "bob", DisplayName: "BOB", Changes: []string{"phone: +1 555 0101 → +1 555 0102"}},
		{Action: "remove", Username: "carol", DisplayName: "CAROL", Held: true},
	}
	for i := range want {
		if !reflect.DeepEqual(s.Rows[i], want[i]) {
			t.Errorf("row %d: %+v, want %+v", i, s.Rows[i], want[i])
		}
	}
	if s := newPlanSummary(p, 0); len(s.Rows) != 0 || s.RowsOmitted != 4 || s.Rows == nil {
		t.Errorf("plan_rows 0: %d rows (nil %t), %d omitted", len(s.Rows), s.Rows == nil, s.RowsOmitted)
	}
}
