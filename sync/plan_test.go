package usersync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// impConfig returns the default configuration with the test bed's service
// account and every import file in a fresh data directory.
func impConfig(t *testing.T) configs.Config {
	t.Helper()
	cfg := configs.Default()
	dir := t.TempDir()
	cfg.Sync.DataDir = dir
	cfg.Import.CSVFile = filepath.Join(dir, "users.csv")
	cfg.Import.JSONFile = filepath.Join(dir, "import.json")
	cfg.Upstream.BindDN = testbed.Service.UPN()
	return cfg
}

// impClock is a manual clock.
type impClock struct {
	mu sync.Mutex
	t  time.Time
}

func newImpClock() *impClock {
	return &impClock{t: time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)}
}

func (c *impClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *impClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// impNew builds an importer of cfg with clock and fails the test on error.
func impNew(t *testing.T, cfg configs.Config, clock *impClock, opts ...ImportOption) *Importer {
	t.Helper()
	im, err := NewImporter(cfg, nil, append([]ImportOption{WithClock(clock.now)}, opts...)...)
	if err != nil {
		t.Fatalf("NewImporter: %v", err)
	}
	return im
}

// impApply plans users and applies the plan.
func impApply(t *testing.T, im *Importer, users []Entry, o ApplyOptions) (*Plan, ApplyResult) {
	t.Helper()
	p, err := im.Plan(users)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	res, err := im.Apply(context.Background(), p, o)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return p, res
}

// impLines renders a plan as one line per user, for comparisons.
func impLines(p *Plan) []string {
	var lines []string
	for _, l := range [][]PlanItem{p.Creates, p.Updates, p.Disables, p.Removes, p.Kept, p.Unchanged} {
		for _, it := range l {
			line := string(it.Action) + " " + it.User.Username
			if it.Held {
				line = "held " + line
			}
			if it.Action == ActionCreate && it.User.Disabled {
				line += " (disabled)"
			}
			if d := describeChanges(it); d != "" && it.Action != ActionKeep {
				line += ": " + d
			}
			lines = append(lines, line)
		}
	}
	for _, s := range p.Skipped {
		lines = append(lines, "skip "+s.DN+": "+s.Reason)
	}
	for _, s := range p.Excluded {
		lines = append(lines, "exclude "+s.DN)
	}
	return lines
}

func TestPlanDiff(t *testing.T) {
	jdoe := impEntry("g-jdoe", "jdoe", "displayName", "John Doe", "telephoneNumber", "+1 555 0101", "mobile", "+1 555 0201")
	asmith := impEntry("g-asmith", "asmith", "displayName", "Alice Smith")
	svc := impEntry("g-svc", "svc-pbx")
	renamed := impWith(impWith(jdoe, "sAMAccountName", "john.doe"), "userPrincipalName", "john.doe@"+testbed.Realm)
	renamed.DN = "CN=John Doe,OU=Sales," + testbed.UsersDN
	disabled := impWith(jdoe, "userAccountControl", "514")
	tests := []struct {
		name    string
		config  func(*configs.Config) // changed before the second run, when set
		applied []Entry               // the users of the last applied import; nil: none
		users   []Entry               // the view now
		want    []string
	}{
		{name: "the first plan creates every user, sorted by username",
			users: []Entry{jdoe, impEntry("g-zed", "zed"), asmith},
			want:  []string{"create asmith", "create jdoe", "create zed"}},
		{name: "a user new in the view is created",
			applied: []Entry{jdoe}, users: []Entry{jdoe, asmith},
			want: []string{"create asmith", "unchanged jdoe"}},
		{name: "a changed extension is an update that names the field, old and new",
			applied: []Entry{jdoe}, users: []Entry{impWith(jdoe, "telephoneNumber", "+1 555 0199")},
			want: []string{`update jdoe: phone "+1 555 0101" -> "+1 555 0199"`}},
		{name: "a rename is an update of the username, not a remove and a create",
			applied: []Entry{jdoe}, users: []Entry{renamed},
			want: []string{`update john.doe: username "jdoe" -> "john.doe"`}},
		{name: "an account that became disabled is disabled, not removed",
			applied: []Entry{jdoe, asmith}, users: []Entry{disabled, asmith},
			want: []string{`disable jdoe: disabled "false" -> "true"`, "unchanged asmith"}},
		{name: "an account enabled again is an update",
			applied: []Entry{disabled}, users: []Entry{jdoe},
			want: []string{`update jdoe: disabled "true" -> "false"`}},
		{name: "an account disabled when first seen is created disabled",
			users: []Entry{disabled},
			want:  []string{"create jdoe (disabled)"}},
		{name: "a user gone from the view is removed in mode create_update_remove",
			applied: []Entry{jdoe, asmith}, users: []Entry{jdoe},
			want: []string{"remove asmith", "unchanged jdoe"}},
		{name: "a user gone from the view is kept in mode create_update",
			config:  func(c *configs.Config) { c.Import.Mode = ModeCreateUpdate },
			applied: []Entry{jdoe, asmith}, users: []Entry{jdoe},
			want: []string{"keep asmith", "unchanged jdoe"}},
		{name: "the service account and exclude_filter matches never appear",
			config:  func(c *configs.Config) { c.Sync.ExcludeFilter = "(sAMAccountName=test-*)" },
			applied: []Entry{jdoe}, users: []Entry{jdoe, svc, impEntry("g-t", "test-1")},
			want: []string{"unchanged jdoe", "exclude CN=svc-pbx," + testbed.UsersDN, "exclude CN=test-1," + testbed.UsersDN}},
		{name: "an imported user newly excluded is removed",
			config:  func(c *configs.Config) { c.Sync.ExcludeFilter = "(sAMAccountName=asmith)" },
			applied: []Entry{jdoe, asmith}, users: []Entry{jdoe, asmith},
			want: []string{"remove asmith", "unchanged jdoe", "exclude CN=asmith," + testbed.UsersDN}},
		{name: "an entry that cannot be imported is skipped, and an imported one is kept as it was",
			applied: []Entry{jdoe, asmith}, users: []Entry{jdoe, impWith(impWith(asmith, "sAMAccountName"), "userPrincipalName")},
			want: []string{"keep asmith", "unchanged jdoe", "skip CN=asmith," + testbed.UsersDN + ": no sAMAccountName or userPrincipalName"}},
		{name: "of two users with one username the one imported with it keeps it",
			applied: []Entry{jdoe}, users: []Entry{impWith(impEntry("g-0", "x"), "sAMAccountName", "JDOE"), jdoe},
			want: []string{"unchanged jdoe", "skip CN=x," + testbed.UsersDN + `: username "jdoe" is already taken by objectGUID g-jdoe`}},
		{name: "turning create_mobile on gives users with a mobile number a mobile device",
			config:  func(c *configs.Config) { c.Import.CreateMobile = true },
			applied: []Entry{jdoe, asmith}, users: []Entry{jdoe, asmith},
			want: []string{`update jdoe: mobile_device "false" -> "true"`, "unchanged asmith"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := impConfig(t)
			cfg.Sync.MaxDeletePercent = 100 // the threshold has its own test
			clock := newImpClock()
			if tc.applied != nil {
				impApply(t, impNew(t, cfg, clock), tc.applied, ApplyOptions{})
			}
			if tc.config != nil {
				tc.config(&cfg)
			}
			// Every plan is computed after a restart: against applied.json.
			p, err := impNew(t, cfg, clock).Plan(tc.users)
			if err != nil {
				t.Fatal(err)
			}
			if got := impLines(p); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestPlanWritesNothing(t *testing.T) {
	cfg := impConfig(t)
	if _, err := impNew(t, cfg, newImpClock()).Plan(impSeededList(t)); err != nil {
		t.Fatal(err)
	}
	impOnlyFiles(t, cfg.Sync.DataDir)
}

func TestPlanRefusesDuplicateGUIDs(t *testing.T) {
	im := impNew(t, impConfig(t), newImpClock())
	if _, err := im.Plan([]Entry{impEntry("g1", "a"), impEntry("g1", "b")}); err == nil {
		t.Fatal("Plan accepted two entries with one objectGUID")
	}
}

func TestPlanAfterRestartIsUnchanged(t *testing.T) {
	cfg := impConfig(t)
	clock := newImpClock()
	users := impSeededList(t)
	_, first := impApply(t, impNew(t, cfg, clock), users, ApplyOptions{})
	csvBefore, err := os.Stat(cfg.Import.CSVFile)
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Hour)

	im := impNew(t, cfg, clock)
	p, err := im.Plan(users)
	if err != nil {
		t.Fatal(err)
	}
	if p.HasChanges() || len(p.Unchanged) != first.Users {
		t.Fatalf("plan after a restart: %s; want %d unchanged and nothing else", p.Summary(), first.Users)
	}
	res, err := im.Apply(context.Background(), p, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.CSVWritten || res.Sequence != first.Sequence {
		t.Errorf("applying an unchanged plan: %+v; want nothing changed or written at sequence %d", res, first.Sequence)
	}
	if csvAfter, err := os.Stat(cfg.Import.CSVFile); err != nil || !csvAfter.ModTime().Equal(csvBefore.ModTime()) {
		t.Errorf("the CSV file was rewritten (%v)", err)
	}
}

func TestPlanIsStaleAfterAnotherApply(t *testing.T) {
	im := impNew(t, impConfig(t), newImpClock())
	users := []Entry{impEntry("g1", "ann")}
	p1, err := im.Plan(users)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := im.Plan(append(users, impEntry("g2", "bob")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Apply(context.Background(), p1, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Apply(context.Background(), p2, ApplyOptions{}); !errors.Is(err, ErrStalePlan) {
		t.Errorf("applying a plan computed before another apply: %v, want ErrStalePlan", err)
	}
}

// impUsers returns n users u000, u001, ...
func impUsers(n int) []Entry {
	var l []Entry
	for i := range n {
		l = append(l, impEntry(fmt.Sprintf("g%03d", i), fmt.Sprintf("u%03d", i)))
	}
	return l
}

func TestDeletionThreshold(t *testing.T) {
	hundred := impUsers(100)
	newcomer := impEntry("g-new", "newcomer")
	with := func(l []Entry) []Entry { return append([]Entry{newcomer}, l...) }
	tests := []struct {
		name       string
		maxPercent float64
		users      []Entry // the view after an import of hundred
		confirm    bool
		wantHeld   bool
		wantUsers  int // users in the import after Apply
	}{
		{"removing 9 of 100 users is applied", 10, with(hundred[9:]), false, false, 92},
		{"removing exactly 10 of 100 users is applied", 10, with(hundred[10:]), false, false, 91},
		{"removing 11 of 100 users is held, and the rest applied", 10, with(hundred[11:]), false, true, 101},
		{"removing 11 of 100 users is applied when confirmed", 10, with(hundred[11:]), true, true, 90},
		{"with max_delete_percent 0 one removal is held", 0, with(hundred[1:]), false, true, 101},
		{"an empty view is held even with max_delete_percent 100", 100, nil, false, true, 100},
		{"an empty view is applied when confirmed", 100, nil, true, true, 0},
		{"a view of only excluded users is as suspicious as an empty one", 100, []Entry{impEntry("g-svc", "svc-pbx")}, false, true, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := impConfig(t)
			cfg.Sync.MaxDeletePercent = tc.maxPercent
			im := impNew(t, cfg, newImpClock())
			impApply(t, im, hundred, ApplyOptions{})
			p, err := im.Plan(tc.users)
			if err != nil {
				t.Fatal(err)
			}
			if p.HeldDeletions != tc.wantHeld {
				t.Fatalf("held = %v (%s), want %v", p.HeldDeletions, p.Summary(), tc.wantHeld)
			}
			if tc.wantHeld && (p.HeldReason == "" || !p.Removes[0].Held) {
				t.Errorf("held plan without reason or held items: %s", p.Summary())
			}
			res, err := im.Apply(context.Background(), p, ApplyOptions{ConfirmDeletions: tc.confirm})
			if err != nil {
				t.Fatal(err)
			}
			if res.Users != tc.wantUsers {
				t.Errorf("users after apply = %d, want %d (%+v)", res.Users, tc.wantUsers, res)
			}
			held := tc.wantHeld && !tc.confirm
			if (res.HeldRemovals == len(p.Removes)) != held || (res.Removed == len(p.Removes)) == held {
				t.Errorf("held removals %d, removed %d of %d; want held=%v", res.HeldRemovals, res.Removed, len(p.Removes), held)
			}
			csv, err := os.ReadFile(cfg.Import.CSVFile)
			if err != nil {
				t.Fatal(err)
			}
			if inCSV := bytes.Contains(csv, []byte(`"u000"`)); inCSV != held {
				t.Errorf("u000 in the CSV: %v; a held removal stays in it, an applied one leaves it", inCSV)
			}
			if !held {
				return
			}
			// What was held is planned again, still held, and nothing else.
			again, err := im.Plan(tc.users)
			if err != nil {
				t.Fatal(err)
			}
			if !again.HeldDeletions || len(again.Removes) != len(p.Removes) || len(again.Creates)+len(again.Updates)+len(again.Disables) != 0 {
				t.Errorf("the next plan: %s; want the same removals held and nothing else", again.Summary())
			}
		})
	}
}

func TestPlanTable(t *testing.T) {
	cfg := impConfig(t)
	clock := newImpClock()
	im := impNew(t, cfg, clock)
	seeded := impSeeded(t)
	impApply(t, im, impSeededList(t), ApplyOptions{})
	users := []Entry{
		impWith(seeded["jdoe"], "telephoneNumber", "+1 555 0199"),
		seeded["asmith"], seeded["sobrien"], seeded["svc-pbx"], seeded["dmust"],
		impWith(seeded["bjones"], "userAccountControl", "514"),
		impEntry("g-new", "newcomer", "displayName", "New\tComer\x1b[31m", "ipPhone", "0004132a3b4c"),
	}
	p, err := im.Plan(users)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Table(&b); err != nil {
		t.Fatal(err)
	}
	impGolden(t, "plan-table.txt", b.Bytes())
}

// impGolden compares got with testdata/name; with LDAPGATE_UPDATE_GOLDEN=1
// it rewrites the file instead.
func impGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("LDAPGATE_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
