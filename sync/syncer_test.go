package usersync

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/faultproxy"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

func TestFullSyncHoldsExactlyTheUsersADReturns(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 2, 40)
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter))

	r := h.run(Options{})
	want := dom.directSearch(t, dom.dcs[0], allUsersFilter, h.cfg.Attributes)
	if r.Kind != KindFull || r.Reason != "first sync" || r.Outcome != OutcomeApplied {
		t.Errorf("first run: kind %s (%s), outcome %s; want a full sync (first sync), applied", r.Kind, r.Reason, r.Outcome)
	}
	if r.DC != dom.dcs[0].URL() {
		t.Errorf("read from %s, want the preferred DC %s", r.DC, dom.dcs[0].URL())
	}
	if r.Read != len(want) || len(r.Added) != len(want) || h.view.Len() != len(want) {
		t.Errorf("read %d, added %d, view has %d; AD returns %d", r.Read, len(r.Added), h.view.Len(), len(want))
	}
	if len(want) < 40+len(testbed.Accounts) {
		t.Fatalf("the reference search returned %d users: the seed is not what the test assumes", len(want))
	}
	for _, le := range want {
		guid := formatGUID(le.GetRawAttributeValue("objectGUID"))
		e, ok := h.view.ByGUID(guid)
		if !ok {
			t.Errorf("%s (%s) is not in the view", le.DN, guid)
			continue
		}
		if e.DN != le.DN {
			t.Errorf("%s: DN %q in the view", le.DN, e.DN)
		}
		for _, name := range h.cfg.Attributes {
			wantVals := le.GetEqualFoldAttributeValues(name)
			if strings.EqualFold(name, "objectGUID") {
				wantVals = []string{guid}
			}
			slices.Sort(wantVals)
			if got := e.Get(name); !slices.Equal(got, wantVals) {
				t.Errorf("%s: %s = %q in the view, AD says %q", le.DN, name, got, wantVals)
			}
		}
	}
	st := h.view.State()
	if st.DC != dom.dcs[0].URL() || st.DSServiceName != dom.dcs[0].DSServiceName() || st.InvocationID != formatGUID(dom.dcs[0].InvocationID()) {
		t.Errorf("state %+v does not name dc1, its dsServiceName and invocationID", st)
	}
	if st.HighestCommittedUSN != dom.dir.HighestCommittedUSN() || st.Entries != len(want) || !st.LastFull.Equal(h.clock.Now()) {
		t.Errorf("state %+v: want USN %d, %d entries, last full %v", st, dom.dir.HighestCommittedUSN(), len(want), h.clock.Now())
	}
}

func TestViewLookupsFindEverySpellingOfAUser(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter))
	h.run(Options{})
	tests := []struct {
		name   string
		lookup func() (Entry, bool)
		want   string // sAMAccountName, "" for none
	}{
		{"a login in another case finds the user", func() (Entry, bool) { return h.view.ByLogin("JDoe") }, "jdoe"},
		{"a UPN finds the user", func() (Entry, bool) { return h.view.ByLogin("SOBrien@AADDS.example.test") }, "sobrien"},
		{"a DN with an escaped comma finds the user", func() (Entry, bool) { return h.view.ByDN(testbed.SOBrien.DN()) }, "sobrien"},
		{"a DN in another case with spaces after the commas finds the user", func() (Entry, bool) {
			return h.view.ByDN("cn=JOHN DOE, ou=aaddc users, DC=AADDS,dc=example,dc=test")
		}, "jdoe"},
		{"a DN in another OU finds nothing", func() (Entry, bool) {
			return h.view.ByDN("CN=John Doe,OU=Load Users," + testbed.UsersDN)
		}, ""},
		{"an unknown login finds nothing", func() (Entry, bool) { return h.view.ByLogin("nobody") }, ""},
		{"a filter-like login finds nothing", func() (Entry, bool) { return h.view.ByLogin("j*") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := tt.lookup()
			if got := e.First("sAMAccountName"); ok != (tt.want != "") || got != tt.want {
				t.Errorf("found %v %q, want %q", ok, got, tt.want)
			}
			if ok {
				if g, _ := h.view.ByGUID(strings.ToUpper(e.GUID)); g.DN != e.DN {
					t.Errorf("ByGUID(%s) does not find the same entry", e.GUID)
				}
			}
		})
	}
}

func TestIncrementalSyncPicksUpEachKindOfChange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		filter      string
		enabledOnly bool
		change      func(t *testing.T, d *adsim.Directory)
		added       []string
		changed     []string
		removed     []string
		check       func(t *testing.T, v *View)
	}{
		{
			name: "a new phone number changes that user", filter: allUsersFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.ModifyUser("jdoe", map[string][]string{"telephoneNumber": {"+1 555 0199"}}))
			},
			changed: []string{"jdoe"},
			check: func(t *testing.T, v *View) {
				if e, _ := v.ByLogin("jdoe"); e.First("telephoneNumber") != "+1 555 0199" {
					t.Errorf("jdoe's telephoneNumber is %q", e.First("telephoneNumber"))
				}
			},
		},
		{
			name: "a disabled account changes when disabled accounts are in scope", filter: allUsersFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.ModifyUser("jdoe", map[string][]string{"userAccountControl": {"514"}}))
			},
			changed: []string{"jdoe"},
		},
		{
			name: "a disabled account leaves the view with enabled_only", filter: allUsersFilter, enabledOnly: true,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.ModifyUser("jdoe", map[string][]string{"userAccountControl": {"514"}}))
			},
			removed: []string{"jdoe"},
		},
		{
			name: "a renamed user keeps its GUID under the new DN", filter: allUsersFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				_, err := d.RenameUser("jdoe", "John Q. Doe")
				must(t, err)
			},
			changed: []string{"jdoe"},
			check: func(t *testing.T, v *View) {
				if _, ok := v.ByDN(testbed.JDoe.DN()); ok {
					t.Errorf("the old DN still finds jdoe")
				}
				if e, ok := v.ByDN("CN=John Q. Doe," + testbed.UsersDN); !ok || e.First("sAMAccountName") != "jdoe" {
					t.Errorf("the new DN does not find jdoe")
				}
			},
		},
		{
			name: "a new user is added", filter: allUsersFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				_, err := d.AddUser(adsim.User{Login: "newbie", Password: "Passw0rd!newbie", TelephoneNumber: "+1 555 0300"})
				must(t, err)
			},
			added: []string{"newbie"},
		},
		{
			name: "a user added to PBX-Users joins a group-filtered view", filter: pbxFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.AddGroupMember(testbed.PBXUsersDN, testbed.BJones.DN()))
			},
			added: []string{"bjones"},
		},
		{
			name: "a user added to a group nested in PBX-Users joins too", filter: pbxFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.AddGroupMember(testbed.PBXAdminsDN, testbed.BJones.DN()))
			},
			added: []string{"bjones"},
		},
		{
			name: "a user removed from PBX-Users leaves a group-filtered view", filter: pbxFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.RemoveGroupMember(testbed.PBXUsersDN, testbed.JDoe.DN()))
			},
			removed: []string{"jdoe"},
		},
		{
			name: "a new group membership updates memberOf of a user in scope", filter: allUsersFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.AddGroupMember(testbed.PBXAdminsDN, testbed.JDoe.DN()))
			},
			changed: []string{"jdoe"},
			check: func(t *testing.T, v *View) {
				if e, _ := v.ByLogin("jdoe"); !slices.Contains(e.Get("memberOf"), testbed.PBXAdminsDN) {
					t.Errorf("jdoe's memberOf is %q", e.Get("memberOf"))
				}
			},
		},
		{
			name: "a deleted group member leaves at once, through its group's change", filter: pbxFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.DeleteUser("jdoe"))
			},
			removed: []string{"jdoe"},
		},
		{
			name: "a deleted user in no group stays until the full reconcile", filter: allUsersFilter,
			change: func(t *testing.T, d *adsim.Directory) {
				must(t, d.DeleteUser("bjones"))
			},
		},
		{
			name: "nothing changed in AD", filter: allUsersFilter,
			change: func(t *testing.T, d *adsim.Directory) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dom := newSimDomain(t, 2, 0)
			cfg := syncConfig(t.TempDir(), tt.filter)
			cfg.EnabledOnly = tt.enabledOnly
			h := newHarness(t, dom, dom.upstreamConfig(), cfg)
			h.run(Options{})
			before := h.view.All()
			h.clock.Advance(time.Minute)

			tt.change(t, dom.dir)
			r := h.run(Options{})
			if r.Kind != KindIncremental {
				t.Fatalf("kind %s (%s), want incremental", r.Kind, r.Reason)
			}
			old := &View{}
			old.cur.Store(newSnapshot(byGUID(before), State{}))
			if got := loginsOf(r.Added, h.view); !slices.Equal(got, tt.added) {
				t.Errorf("added %q, want %q", got, tt.added)
			}
			if got := loginsOf(r.Changed, h.view); !slices.Equal(got, tt.changed) {
				t.Errorf("changed %q, want %q", got, tt.changed)
			}
			if got := loginsOf(r.Removed, old); !slices.Equal(got, tt.removed) {
				t.Errorf("removed %q, want %q", got, tt.removed)
			}
			wantOutcome := OutcomeApplied
			if len(tt.added)+len(tt.changed)+len(tt.removed) == 0 {
				wantOutcome = OutcomeUnchanged
			}
			if r.Outcome != wantOutcome {
				t.Errorf("outcome %s, want %s", r.Outcome, wantOutcome)
			}
			if tt.check != nil {
				tt.check(t, h.view)
			}
			// A full sync now must find nothing more than deletions the
			// incremental one could not see.
			full := h.run(Options{Full: true})
			if len(full.Added)+len(full.Changed) != 0 {
				t.Errorf("the full sync after it found %q added and %q changed: the incremental sync missed them",
					loginsOf(full.Added, h.view), loginsOf(full.Changed, h.view))
			}
		})
	}
}

func TestFullReconcileRemovesWhatIncrementalCannotSee(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter))
	h.run(Options{})
	must(t, dom.dir.DeleteUser("bjones"))

	h.clock.Advance(h.cfg.Interval)
	if r := h.run(Options{}); r.Kind != KindIncremental || len(r.Removed) != 0 {
		t.Fatalf("incremental sync: kind %s, removed %d; want incremental, none removed", r.Kind, len(r.Removed))
	}
	if _, ok := h.view.ByLogin("bjones"); !ok {
		t.Fatalf("bjones left the view before the full reconcile")
	}
	h.clock.Advance(h.cfg.FullInterval)
	r := h.run(Options{})
	if r.Kind != KindFull || r.Reason != "full interval" {
		t.Errorf("after sync.full_interval: kind %s (%s), want full (full interval)", r.Kind, r.Reason)
	}
	if len(r.Removed) != 1 {
		t.Errorf("the full reconcile removed %d entries, want 1 (bjones)", len(r.Removed))
	}
	if _, ok := h.view.ByLogin("bjones"); ok {
		t.Errorf("bjones is still in the view after the full reconcile")
	}
}

func TestIncrementalSyncFallsBackToFull(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		break_ func(t *testing.T, h *harness)
		reason string
		dc     int // index of the DC the full sync must read
	}{
		{"when the preferred DC is another one", func(t *testing.T, h *harness) {
			must(t, h.cluster.SetDrained(h.dom.dcs[0].URL(), true))
		}, "preferred DC changed", 1},
		{"when the DC was restored from a backup (new invocationID)", func(t *testing.T, h *harness) {
			h.dom.dcs[0].Restore()
		}, "invocationID changed", 0},
		{"when the DC stopped answering", func(t *testing.T, h *harness) {
			must(t, h.dom.dcs[0].Stop())
		}, "DC not usable", 1},
		{"when sync.full_interval has passed", func(t *testing.T, h *harness) {
			h.clock.Advance(h.cfg.FullInterval)
		}, "full interval", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dom := newSimDomain(t, 2, 0)
			ucfg := dom.upstreamConfig()
			ucfg.Breaker.Failures = 1 // a DC that stops answering is out at once
			h := newHarness(t, dom, ucfg, syncConfig(t.TempDir(), allUsersFilter))
			h.run(Options{})
			n := h.view.Len()
			tt.break_(t, h)
			r := h.run(Options{})
			if r.Kind != KindFull || !strings.HasPrefix(r.Reason, tt.reason) {
				t.Errorf("kind %s (%s), want full (%s)", r.Kind, r.Reason, tt.reason)
			}
			dc := dom.dcs[tt.dc]
			if r.DC != dc.URL() || h.view.State().DC != dc.URL() {
				t.Errorf("read from %s, state names %s; want %s", r.DC, h.view.State().DC, dc.URL())
			}
			if st := h.view.State(); st.InvocationID != formatGUID(dc.InvocationID()) || st.DSServiceName != dc.DSServiceName() {
				t.Errorf("state %+v does not hold %s's identity", st, dc.HostName())
			}
			wantUSN := dom.dir.HighestCommittedUSN() + int64(tt.dc)*dcUSNOffset
			if got := h.view.State().HighestCommittedUSN; got != wantUSN {
				t.Errorf("stored USN %d, want %s's %d", got, dc.HostName(), wantUSN)
			}
			// The other DC's USNs differ in every entry's uSNChanged: that is
			// rewritten, but no user changed.
			if len(r.Added)+len(r.Changed)+len(r.Removed) != 0 || h.view.Len() != n {
				t.Errorf("added %d, changed %d, removed %d: a DC switch changed users", len(r.Added), len(r.Changed), len(r.Removed))
			}
			if next := h.run(Options{}); next.Kind != KindIncremental || next.DC != dc.URL() {
				t.Errorf("the run after: %s from %s, want incremental from %s", next.Kind, next.DC, dc.URL())
			}
		})
	}
}

func TestChangedScopeForcesAFullSync(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	dataDir := t.TempDir()
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(dataDir, allUsersFilter))
	h.run(Options{})
	all := h.view.Len()

	cfg := syncConfig(dataDir, pbxFilter)
	s2, err := NewSyncer(cfg, h.cluster, h.view, nil, WithSyncClock(h.clock))
	must(t, err)
	r, err := s2.Run(context.Background(), Options{})
	must(t, err)
	if r.Kind != KindFull || r.Reason != "scope changed" {
		t.Errorf("kind %s (%s), want full (scope changed)", r.Kind, r.Reason)
	}
	if got := logins(h.view); !slices.Equal(got, []string{"asmith", "jdoe", "sobrien"}) || len(r.Removed) != all-3 {
		t.Errorf("view after the filter change: %q (removed %d of %d)", got, len(r.Removed), all)
	}
}

// cutMidPaging returns a fault that lets through what a full sync reads
// before its paged search and half of the paged search, measured on the
// harness's own pooled connection through p.
func cutMidPaging(t *testing.T, h *harness, p *faultproxy.Proxy) faultproxy.Fault {
	t.Helper()
	ctx := context.Background()
	dcURL := h.view.State().DC
	before := p.BytesToClient()
	root, _, err := h.cluster.RootDSE(ctx, "highestCommittedUSN", "dsServiceName")
	must(t, err)
	_, err = h.syncer.dcInfo(ctx, dcURL, root)
	must(t, err)
	prefix := p.BytesToClient() - before

	before = p.BytesToClient()
	_, err = h.syncer.search(ctx, dcURL, h.syncer.filter, h.syncer.attrs)
	must(t, err)
	paged := p.BytesToClient() - before
	if paged < 10*prefix {
		t.Fatalf("the paged search is %d bytes, the reads before it %d: too small to cut in the middle", paged, prefix)
	}
	return faultproxy.CutAfter(prefix + paged/2)
}

func TestFailedSyncKeepsTheViewByteForByte(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		full    bool
		fault   func(t *testing.T, h *harness, p *faultproxy.Proxy)
		outcome Outcome
		is      error
		inErr   string
	}{
		{
			name: "a connection cut in the middle of the paged full search", full: true,
			fault: func(t *testing.T, h *harness, p *faultproxy.Proxy) {
				must(t, p.SetFault(cutMidPaging(t, h, p)))
			},
			outcome: OutcomeSourceError, is: upstream.ErrUnavailable, inErr: "search " + testbed.UsersDN,
		},
		{
			name: "a DC that cuts its search responses", full: false,
			fault: func(t *testing.T, h *harness, p *faultproxy.Proxy) {
				h.dom.dcs[0].CutSearchAfter(3)
			},
			outcome: OutcomeSourceError, is: upstream.ErrUnavailable,
		},
		{
			name: "no DC answering", full: false,
			fault: func(t *testing.T, h *harness, p *faultproxy.Proxy) {
				must(t, p.SetFault(faultproxy.Refuse()))
			},
			outcome: OutcomeSourceError, is: ErrSource,
		},
		{
			name: "a DC answering busy", full: true,
			fault: func(t *testing.T, h *harness, p *faultproxy.Proxy) {
				must(t, h.dom.dcs[0].FailNext(1000, ldap.LDAPResultBusy))
			},
			outcome: OutcomeSourceError, is: upstream.ErrUnavailable,
		},
		{
			name: "a DC slower than sync.timeout", full: true,
			fault: func(t *testing.T, h *harness, p *faultproxy.Proxy) {
				h.syncer.cfg.Timeout = 300 * time.Millisecond
				h.dom.dcs[0].SetDelay(5 * time.Second)
			},
			outcome: OutcomeSourceError, is: context.DeadlineExceeded,
		},
		{
			name: "an incremental sync that would grow the view past sync.max_entries", full: false,
			fault: func(t *testing.T, h *harness, p *faultproxy.Proxy) {
				h.syncer.cfg.MaxEntries = h.view.Len()
			},
			outcome: OutcomeFailed, is: ErrTooManyEntries,
		},
		{
			name: "more users in scope than sync.max_entries", full: true,
			fault: func(t *testing.T, h *harness, p *faultproxy.Proxy) {
				h.syncer.cfg.MaxEntries = h.view.Len()
			},
			outcome: OutcomeFailed, is: ErrTooManyEntries,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dom := newSimDomain(t, 1, 60)
			p := faultproxy.New(strings.TrimPrefix(dom.dcs[0].URL(), "ldaps://"))
			must(t, p.Start("127.0.0.1:0"))
			t.Cleanup(func() { _ = p.Close() })
			ucfg := dom.upstreamConfig("ldaps://" + p.Addr())
			ucfg.Breaker.Failures = 1000 // the view is under test here, not the breaker
			h := newHarness(t, dom, ucfg, syncConfig(t.TempDir(), allUsersFilter))
			h.run(Options{})
			h.clock.Advance(time.Minute)
			// Changes a successful sync would apply, whatever its kind.
			_, err := dom.dir.AddUser(adsim.User{Login: "latecomer", Password: "Passw0rd!late"})
			must(t, err)
			must(t, dom.dir.ModifyUser("jdoe", map[string][]string{"mobile": {"+1 555 0999"}}))
			db, state, n := h.dbBytes(), h.view.State(), h.view.Len()

			tt.fault(t, h, p)
			r, err := h.syncer.Run(context.Background(), Options{Full: tt.full})
			if err == nil || !errors.Is(err, tt.is) || r.Outcome != tt.outcome {
				t.Fatalf("Run: outcome %s, error %v; want %s and an error that is %v", r.Outcome, err, tt.outcome, tt.is)
			}
			if tt.inErr != "" && !strings.Contains(err.Error(), tt.inErr) {
				t.Errorf("error %q does not say it failed in %q", err, tt.inErr)
			}
			if len(r.Added)+len(r.Changed)+len(r.Removed) != 0 || r.Entries != n {
				t.Errorf("a failed run reports changes: %d added, %d changed, %d removed, %d entries", len(r.Added), len(r.Changed), len(r.Removed), r.Entries)
			}
			if !bytes.Equal(h.dbBytes(), db) {
				t.Errorf("the store file changed")
			}
			if h.view.State() != state || h.view.Len() != n {
				t.Errorf("the view in memory changed")
			}
			if e, _ := h.view.ByLogin("jdoe"); e.First("mobile") == "+1 555 0999" {
				t.Errorf("jdoe's new mobile reached the view")
			}

			// Healed, the next run completes.
			must(t, p.SetFault(faultproxy.None()))
			dom.dcs[0].ClearFaults()
			h.syncer.cfg.Timeout, h.syncer.cfg.MaxEntries = 30*time.Second, 1000
			r = h.run(Options{})
			if r.Outcome != OutcomeApplied || len(r.Added) != 1 || len(r.Changed) != 1 {
				t.Errorf("the next run: %s, %d added, %d changed; want applied, latecomer added and jdoe changed", r.Outcome, len(r.Added), len(r.Changed))
			}
		})
	}
}

func TestEmptyAnswerWhereTheViewHadUsersIsSuspicious(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	filter := "(&(objectCategory=person)(objectClass=user)(description=pbx))"
	for _, login := range []string{"pbx1", "pbx2", "pbx3"} {
		_, err := dom.dir.AddUser(adsim.User{Login: login, Password: "Passw0rd!" + login, Description: "pbx"})
		must(t, err)
	}
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), filter))
	if r := h.run(Options{}); h.view.Len() != 3 {
		t.Fatalf("first sync: %d entries (%s)", h.view.Len(), r.Outcome)
	}
	for _, login := range []string{"pbx1", "pbx2", "pbx3"} {
		must(t, dom.dir.ModifyUser(login, map[string][]string{"description": nil}))
	}
	db := h.dbBytes()

	for _, full := range []bool{false, true} {
		r, err := h.syncer.Run(context.Background(), Options{Full: full})
		if !errors.Is(err, ErrSuspiciousEmpty) || r.Outcome != OutcomeSuspiciousEmpty {
			t.Errorf("full %v: outcome %s, error %v; want suspicious-empty", full, r.Outcome, err)
		}
		if len(r.Removed) != 3 || h.view.Len() != 3 || !bytes.Equal(h.dbBytes(), db) {
			t.Errorf("full %v: proposed %d removals, view has %d, store changed %v; want 3 proposed, none applied",
				full, len(r.Removed), h.view.Len(), !bytes.Equal(h.dbBytes(), db))
		}
	}
	r := h.run(Options{Full: true, ConfirmDeletions: true})
	if r.Outcome != OutcomeApplied || h.view.Len() != 0 {
		t.Errorf("confirmed: outcome %s, %d entries; want applied and an empty view", r.Outcome, h.view.Len())
	}
}

func TestImportRunsAfterEverySuccessfulSync(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	type call struct {
		entries int
		confirm bool
	}
	var calls []call
	held, fail := false, error(nil)
	imp := func(_ context.Context, entries []Entry, confirm bool) (bool, error) {
		calls = append(calls, call{len(entries), confirm})
		return held, fail
	}
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter), WithImport(imp))
	n := len(testbed.Accounts)

	r := h.run(Options{})
	if !r.ImportRan || len(calls) != 1 || calls[0] != (call{n, false}) {
		t.Errorf("after the first sync: calls %+v, want one with %d entries", calls, n)
	}
	h.run(Options{}) // unchanged: the import still runs, so held removals can be confirmed
	held = true
	if r := h.run(Options{ConfirmDeletions: true}); r.Outcome != OutcomeHeld || !r.ImportHeld {
		t.Errorf("an import that holds deletions: outcome %s, want held", r.Outcome)
	}
	if len(calls) != 3 || !calls[2].confirm {
		t.Errorf("calls %+v: want 3, the last one confirming deletions", calls)
	}
	held, fail = false, errors.New("webhook down")
	if _, err := h.syncer.Run(context.Background(), Options{}); !errors.Is(err, ErrImport) {
		t.Errorf("a failed import: error %v, want ErrImport", err)
	}
	dom.dcs[0].CutSearchAfter(0)
	_, _ = h.syncer.Run(context.Background(), Options{})
	if len(calls) != 4 {
		t.Errorf("the import ran after a failed sync (%d calls)", len(calls))
	}
}

func TestOneRunAtATime(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	entered, release := make(chan struct{}), make(chan struct{})
	imp := func(context.Context, []Entry, bool) (bool, error) {
		entered <- struct{}{}
		<-release
		return false, nil
	}
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter), WithImport(imp))
	done := make(chan error, 1)
	go func() {
		_, err := h.syncer.Run(context.Background(), Options{})
		done <- err
	}()
	<-entered // the first run holds the Syncer

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.syncer.Run(ctx, Options{}); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "in progress") {
		t.Errorf("a run while another is in progress: %v, want it to wait (and give up with its context)", err)
	}
	close(release)
	must(t, <-done)
	go func() { <-entered }()
	if _, err := h.syncer.Run(context.Background(), Options{}); err != nil {
		t.Errorf("the run after: %v", err)
	}
}

func TestLoopRunsOnTheIntervalWithJitter(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	cfg := syncConfig(t.TempDir(), allUsersFilter)
	cfg.Interval, cfg.Jitter, cfg.FullInterval = 5*time.Minute, 30*time.Second, 12*time.Minute
	var jitterArgs []int64
	jitter := func(n int64) int64 {
		jitterArgs = append(jitterArgs, n)
		return int64(7 * time.Second)
	}
	h := newHarness(t, dom, dom.upstreamConfig(), cfg, WithSyncJitter(jitter))
	// Each run is observed through the view's state once the loop waits.
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan error, 1)
	go func() { loopDone <- h.syncer.Loop(ctx, LoopControl{}) }()

	wantKinds := []string{"full", "incremental", "incremental", "full"}
	var kinds []string
	for i := range wantKinds {
		wait := <-h.clock.waits // the loop finished run i and waits
		if want := cfg.Interval + 7*time.Second; wait != want {
			t.Errorf("wait after run %d: %v, want interval + jitter = %v", i+1, wait, want)
		}
		st := h.view.State()
		if st.LastIncremental.Equal(h.clock.Now()) {
			kinds = append(kinds, "incremental")
		} else if st.LastFull.Equal(h.clock.Now()) {
			kinds = append(kinds, "full")
		}
		if i < len(wantKinds)-1 {
			h.clock.Advance(wait)
		}
	}
	cancel()
	must(t, <-loopDone)
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("runs %q, want %q (a full one every sync.full_interval)", kinds, wantKinds)
	}
	for _, n := range jitterArgs {
		if n != int64(cfg.Jitter)+1 {
			t.Errorf("jitter drawn from [0, %v), want [0, %v]", time.Duration(n), cfg.Jitter)
		}
	}
	if got := countSyncLines(h); got != len(wantKinds) {
		t.Errorf("%d sync log lines for %d runs", got, len(wantKinds))
	}
}

func TestLoopRetriesAFailedRunSoonerAndBacksOff(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	ucfg := dom.upstreamConfig()
	ucfg.Breaker.Failures = 1000 // the DC cuts searches; its breaker is not under test
	cfg := syncConfig(t.TempDir(), allUsersFilter)
	cfg.Interval, cfg.Jitter, cfg.RetryInterval = 5*time.Minute, 30*time.Second, 40*time.Second
	h := newHarness(t, dom, ucfg, cfg, WithSyncJitter(func(int64) int64 { return int64(7 * time.Second) }))
	dom.dcs[0].CutSearchAfter(0) // AD unreadable: every run is a source error
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan error, 1)
	var finished []Outcome // written by the loop before it waits, read after
	go func() {
		loopDone <- h.syncer.Loop(ctx, LoopControl{Finished: func(r LoopRun) { finished = append(finished, r.Result.Outcome) }})
	}()

	// Waits after each run: retry_interval doubled per failure in a row up to
	// the interval; after a success, interval + jitter; a new failure starts
	// again at retry_interval.
	want := []time.Duration{40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute,
		5*time.Minute + 7*time.Second, 40 * time.Second}
	for i, w := range want {
		wait := <-h.clock.waits
		if wait != w {
			t.Errorf("wait after run %d (%s): %v, want %v", i+1, finished[len(finished)-1], wait, w)
		}
		switch i {
		case 4:
			dom.dcs[0].CutSearchAfter(-1) // AD is back for run 6
		case 5:
			dom.dcs[0].CutSearchAfter(0) // and gone again for run 7
		}
		if i < len(want)-1 {
			h.clock.Advance(wait)
		}
	}
	cancel()
	must(t, <-loopDone)
	wantOutcomes := []Outcome{OutcomeSourceError, OutcomeSourceError, OutcomeSourceError, OutcomeSourceError,
		OutcomeSourceError, OutcomeApplied, OutcomeSourceError}
	if !slices.Equal(finished, wantOutcomes) {
		t.Errorf("outcomes %q, want %q", finished, wantOutcomes)
	}
}

func countSyncLines(h *harness) int {
	n := 0
	for _, e := range h.logs.All() {
		if e.Message == "sync" {
			n++
		}
	}
	return n
}

func byGUID(entries []Entry) map[string]*Entry {
	m := make(map[string]*Entry, len(entries))
	for i := range entries {
		m[entries[i].GUID] = &entries[i]
	}
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
