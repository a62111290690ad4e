package usersync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
)

// Import modes (import.mode).
const (
	// ModeCreateUpdate creates and updates users and never removes one
	// (pascom's "create and update").
	ModeCreateUpdate = "create_update"
	// ModeCreateUpdateRemove also removes users gone from the view (pascom's
	// "create and update, remove missing").
	ModeCreateUpdateRemove = "create_update_remove"
)

// Action is what a plan does with one user.
type Action string

// Actions of a plan.
const (
	// ActionCreate imports a user the last applied import did not have.
	ActionCreate Action = "create"
	// ActionUpdate changes fields of an imported user (a rename is an update
	// of username: users are keyed by objectGUID).
	ActionUpdate Action = "update"
	// ActionDisable marks an imported user whose account became disabled.
	ActionDisable Action = "disable"
	// ActionRemove removes an imported user gone from the view (mode
	// create_update_remove only).
	ActionRemove Action = "remove"
	// ActionKeep keeps an imported user unchanged although it left the view
	// (mode create_update), or although its entry can no longer be imported.
	ActionKeep Action = "keep"
	// ActionUnchanged leaves an imported user as it is.
	ActionUnchanged Action = "unchanged"
)

// FieldChange is one changed field of an update or a disable.
type FieldChange struct {
	// Field is the field's JSON name in ImportUser (pascom's name where it has one).
	Field string `json:"field"`
	// Old is the value before; lists are joined with "; ".
	Old string `json:"old"`
	// New is the value after.
	New string `json:"new"`
}

// PlanItem is one user in a plan.
type PlanItem struct {
	// Action is what the plan does with the user.
	Action Action `json:"action"`
	// User is the user after the plan: the last applied state for a remove or
	// a keep.
	User ImportUser `json:"user"`
	// Previous is the user as last applied; nil for a create.
	Previous *ImportUser `json:"previous,omitempty"`
	// Changes are the changed fields of an update or a disable.
	Changes []FieldChange `json:"changes,omitempty"`
	// Held says a remove is held by the deletion threshold.
	Held bool `json:"held,omitempty"`
	// Reason says why a user is kept.
	Reason string `json:"reason,omitempty"`
}

// SkippedEntry is a view entry the import leaves out.
type SkippedEntry struct {
	// GUID and DN identify the entry.
	GUID string `json:"guid"`
	DN   string `json:"dn"`
	// Reason says why it is left out.
	Reason string `json:"reason"`
}

// Plan is the difference between the users in the view and the last applied
// import, as Importer.Plan computes it. Every list is sorted by username.
type Plan struct {
	// PlannedAt is when the plan was computed.
	PlannedAt time.Time `json:"planned_at"`
	// Mode is import.mode.
	Mode string `json:"mode"`
	// BaseSequence is the sequence number of the applied import the plan was
	// computed against (0: none yet); Apply refuses a plan whose base is no
	// longer the last applied import.
	BaseSequence uint64 `json:"base_sequence"`
	// ViewUsers is the number of entries Plan was given; AppliedUsers the
	// number of users in the last applied import.
	ViewUsers    int `json:"view_users"`
	AppliedUsers int `json:"applied_users"`

	// Creates are users new to the import.
	Creates []PlanItem `json:"creates"`
	// Updates are imported users with changed fields (Changes says which).
	Updates []PlanItem `json:"updates"`
	// Disables are imported users whose account became disabled.
	Disables []PlanItem `json:"disables"`
	// Removes are imported users gone from the view (create_update_remove);
	// each is Held when HeldDeletions is set.
	Removes []PlanItem `json:"removes"`
	// Kept are imported users the plan leaves as they were although their
	// entry is gone (create_update) or cannot be imported now (Reason).
	Kept []PlanItem `json:"kept"`
	// Unchanged are imported users with nothing to change.
	Unchanged []PlanItem `json:"unchanged"`
	// Skipped are view entries that cannot be imported (no username, a
	// username another user has); Excluded are the service account and the
	// entries matching sync.exclude_filter.
	Skipped  []SkippedEntry `json:"skipped"`
	Excluded []SkippedEntry `json:"excluded"`

	// HeldDeletions says the removals are held: Apply leaves them out unless
	// ApplyOptions.ConfirmDeletions is set. HeldReason says why.
	HeldDeletions bool   `json:"held_deletions"`
	HeldReason    string `json:"held_reason,omitempty"`
	// DeletePercent is the removals as a percentage of AppliedUsers;
	// MaxDeletePercent is sync.max_delete_percent, the most that is applied
	// without confirmation.
	DeletePercent    float64 `json:"delete_percent"`
	MaxDeletePercent float64 `json:"max_delete_percent"`
}

// HasChanges reports whether applying the plan (with removals confirmed)
// would change the import.
func (p *Plan) HasChanges() bool {
	return len(p.Creates)+len(p.Updates)+len(p.Disables)+len(p.Removes) > 0
}

// ErrStalePlan means a plan was computed against an applied import that is no
// longer the last one: compute a new plan.
var ErrStalePlan = errors.New("plan is stale: the import changed since it was computed")

// ErrWebhookPending means Apply applied and recorded the import but could not
// deliver every webhook batch; the rest stay pending and are sent again, with
// the same idempotency keys, by the next Apply.
var ErrWebhookPending = errors.New("webhook delivery pending")

// Importer turns the users of the view into pascom's import: it plans the
// difference against the last applied import, applies it to the sinks (the
// CSV file, the JSON file, the webhook), records what was applied in
// <sync.data_dir>/applied.json and serves the CSV over HTTP. Its methods are
// safe for concurrent use; Plan and Apply run one at a time.
type Importer struct {
	log       *zap.Logger
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error
	client    *http.Client
	mode      string
	mapping   pascomMapping
	exclude   *excluder
	maxDelete float64
	// Where the import is written; csvPath and jsonPath may be empty (no sink).
	appliedPath, csvPath, jsonPath string
	webhook                        configs.Webhook
	auth                           *HTTPAuth

	mu    sync.Mutex    // serialises Plan and Apply; guards state
	state *appliedState // nil before the first import

	export atomic.Pointer[csvSnapshot] // nil before the first import
}

// ImportOption configures an Importer.
type ImportOption func(*Importer)

// WithClock sets the importer's clock (default time.Now).
func WithClock(now func() time.Time) ImportOption { return func(im *Importer) { im.now = now } }

// WithSleep sets how the webhook waits between attempts (default: a timer
// that ends early when ctx is done, returning its error).
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) ImportOption {
	return func(im *Importer) { im.sleep = sleep }
}

// WithHTTPClient sets the webhook's HTTP client (default: one that does not
// follow redirects, so the bearer token goes nowhere else). A client's own
// redirect policy is kept; a nil one is replaced by the default's.
func WithHTTPClient(c *http.Client) ImportOption { return func(im *Importer) { im.client = c } }

// appliedFile is the name of the applied-state file in sync.data_dir.
const appliedFile = "applied.json"

// NewImporter builds the importer of cfg and loads the last applied import
// from <sync.data_dir>/applied.json (none before the first Apply).
func NewImporter(cfg configs.Config, log *zap.Logger, opts ...ImportOption) (*Importer, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Sync.DataDir == "" {
		return nil, errors.New("new importer: sync.data_dir is empty")
	}
	if m := cfg.Import.Mode; m != ModeCreateUpdate && m != ModeCreateUpdateRemove {
		return nil, fmt.Errorf("new importer: import.mode %q is neither %s nor %s", m, ModeCreateUpdate, ModeCreateUpdateRemove)
	}
	x, err := newExcluder(cfg.Upstream.BindDN, cfg.Sync.ExcludeFilter)
	if err != nil {
		return nil, fmt.Errorf("new importer: %w", err)
	}
	im := &Importer{
		log:         log.Named("import"),
		now:         time.Now,
		sleep:       sleepContext,
		mode:        cfg.Import.Mode,
		mapping:     pascomMapping{softphone: cfg.Import.CreateSoftphone, mobile: cfg.Import.CreateMobile},
		exclude:     x,
		maxDelete:   cfg.Sync.MaxDeletePercent,
		appliedPath: filepath.Join(cfg.Sync.DataDir, appliedFile),
		csvPath:     cfg.Import.CSVFile,
		jsonPath:    cfg.Import.JSONFile,
		webhook:     cfg.Import.Webhook,
		auth:        NewHTTPAuth(cfg.HTTP, log.Named("export")),
	}
	for _, o := range opts {
		o(im)
	}
	im.client = webhookClient(im.client)
	st, err := loadApplied(im.appliedPath)
	if err != nil {
		return nil, fmt.Errorf("new importer: %w", err)
	}
	if st != nil {
		csv, modified := renderCSV(st.Users), st.CSVChangedAt
		if sha256Hex(csv) != st.CSVSHA256 {
			// The CSV format changed since the import was applied: the next
			// Apply rewrites the file; until then, do not claim the old time.
			modified = im.now()
		}
		im.state = st
		im.export.Store(newCSVSnapshot(csv, modified))
	}
	return im, nil
}

// Plan computes the difference between users, the entries of the view, and
// the last applied import. It fails only on entries that break the view's
// invariants (two entries with one objectGUID).
func (im *Importer) Plan(users []Entry) (*Plan, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.plan(users, im.state)
}

// plan computes the plan of users against st (nil: no import applied yet).
func (im *Importer) plan(users []Entry, st *appliedState) (*Plan, error) {
	// Empty lists, not nil ones, so the JSON shows [] rather than null.
	p := &Plan{
		PlannedAt:        im.now(),
		Mode:             im.mode,
		ViewUsers:        len(users),
		MaxDeletePercent: im.maxDelete,
		Creates:          []PlanItem{},
		Updates:          []PlanItem{},
		Disables:         []PlanItem{},
		Removes:          []PlanItem{},
		Kept:             []PlanItem{},
		Unchanged:        []PlanItem{},
		Skipped:          []SkippedEntry{},
		Excluded:         []SkippedEntry{},
	}
	prev := map[string]*ImportUser{}
	if st != nil {
		p.BaseSequence = st.Sequence
		p.AppliedUsers = len(st.Users)
		for i := range st.Users {
			prev[st.Users[i].GUID] = &st.Users[i]
		}
	}

	// Map the entries; seen holds the applied users still accounted for.
	seen := make(map[string]bool, len(users))
	dns := make(map[string]string, len(users))
	var mapped []ImportUser
	for i := range users {
		e := &users[i]
		if _, dup := dns[e.GUID]; dup && e.GUID != "" {
			return nil, fmt.Errorf("plan: two entries with objectGUID %s (%s)", e.GUID, e.DN)
		}
		dns[e.GUID] = e.DN
		if why := im.exclude.reason(e); why != "" {
			p.Excluded = append(p.Excluded, SkippedEntry{GUID: e.GUID, DN: e.DN, Reason: why})
			continue
		}
		seen[e.GUID] = true
		u, why := im.mapping.user(e)
		if why != "" {
			p.skip(e.GUID, e.DN, why, prev)
			continue
		}
		mapped = append(mapped, u)
	}
	// A username is pascom's key: give it to one user only, preferring the
	// one that already has it, then the lowest objectGUID.
	slices.SortFunc(mapped, func(a, b ImportUser) int {
		return cmp.Or(cmp.Compare(a.Username, b.Username), cmp.Compare(ownerRank(a, prev), ownerRank(b, prev)), cmp.Compare(a.GUID, b.GUID))
	})
	winners := mapped[:0]
	for _, u := range mapped {
		if n := len(winners); n > 0 && winners[n-1].Username == u.Username {
			p.skip(u.GUID, dns[u.GUID], fmt.Sprintf("username %q is already taken by objectGUID %s", u.Username, winners[n-1].GUID), prev)
			continue
		}
		winners = append(winners, u)
	}

	for _, u := range winners {
		old, ok := prev[u.GUID]
		if !ok {
			p.Creates = append(p.Creates, PlanItem{Action: ActionCreate, User: u})
			continue
		}
		changes := diffUsers(old, &u)
		item := PlanItem{User: u, Previous: old, Changes: changes}
		switch {
		case len(changes) == 0:
			item.Action, item.Previous = ActionUnchanged, nil
			p.Unchanged = append(p.Unchanged, item)
		case u.Disabled && !old.Disabled:
			item.Action = ActionDisable
			p.Disables = append(p.Disables, item)
		default:
			item.Action = ActionUpdate
			p.Updates = append(p.Updates, item)
		}
	}
	for guid, old := range prev {
		if seen[guid] {
			continue
		}
		item := PlanItem{User: *old}
		if im.mode == ModeCreateUpdateRemove {
			item.Action = ActionRemove
			p.Removes = append(p.Removes, item)
		} else {
			item.Action = ActionKeep
			item.Reason = "not in the view; import.mode create_update never removes"
			p.Kept = append(p.Kept, item)
		}
	}
	p.checkDeletions(len(winners))
	for _, l := range [][]PlanItem{p.Creates, p.Updates, p.Disables, p.Removes, p.Kept, p.Unchanged} {
		slices.SortFunc(l, func(a, b PlanItem) int {
			return cmp.Or(cmp.Compare(a.User.Username, b.User.Username), cmp.Compare(a.User.GUID, b.User.GUID))
		})
	}
	for _, l := range [][]SkippedEntry{p.Skipped, p.Excluded} {
		slices.SortFunc(l, func(a, b SkippedEntry) int { return cmp.Or(cmp.Compare(a.DN, b.DN), cmp.Compare(a.GUID, b.GUID)) })
	}
	return p, nil
}

// ownerRank orders users with one username: 0 for the user already imported
// with it, 1 for any other.
func ownerRank(u ImportUser, prev map[string]*ImportUser) int {
	if old, ok := prev[u.GUID]; ok && old.Username == u.Username {
		return 0
	}
	return 1
}

// skip records an entry that cannot be imported. An entry already imported
// keeps its last applied state (a keep), so a broken entry never removes a user.
func (p *Plan) skip(guid, dn, why string, prev map[string]*ImportUser) {
	p.Skipped = append(p.Skipped, SkippedEntry{GUID: guid, DN: dn, Reason: why})
	if old, ok := prev[guid]; ok {
		p.Kept = append(p.Kept, PlanItem{Action: ActionKeep, User: *old, Reason: "cannot be imported now (" + why + "); the last applied state is kept"})
	}
}

// checkDeletions holds the removals when they are more than
// sync.max_delete_percent of the last applied import, or when the view has no
// importable user while the import has users: an empty answer from AD is a
// reason for suspicion, not for removing everyone.
func (p *Plan) checkDeletions(importable int) {
	n := len(p.Removes)
	if n == 0 || p.AppliedUsers == 0 {
		return
	}
	p.DeletePercent = 100 * float64(n) / float64(p.AppliedUsers)
	switch {
	case importable == 0:
		p.HeldDeletions = true
		p.HeldReason = fmt.Sprintf("the view has no user to import while the last import had %d: every removal is held", p.AppliedUsers)
	case p.DeletePercent > p.MaxDeletePercent:
		p.HeldDeletions = true
		p.HeldReason = fmt.Sprintf("%d removals are %.1f%% of the %d users last imported, more than sync.max_delete_percent (%g%%)",
			n, p.DeletePercent, p.AppliedUsers, p.MaxDeletePercent)
	}
	if p.HeldDeletions {
		for i := range p.Removes {
			p.Removes[i].Held = true
		}
	}
}

// diffUsers lists the fields that differ between old and new.
func diffUsers(old, new *ImportUser) []FieldChange {
	var changes []FieldChange
	of, nf := old.fields(), new.fields()
	for i := range of {
		if of[i].value != nf[i].value {
			changes = append(changes, FieldChange{Field: of[i].name, Old: of[i].value, New: nf[i].value})
		}
	}
	return changes
}

// Table writes the plan as pascom's "save and simulate" shows it: one row per
// user (changes first, then kept, unchanged and skipped entries), with the
// action, username, display name, extension, mobile, devices and changed
// fields, and a summary line.
func (p *Plan) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) {
		for i, c := range cells {
			if i > 0 {
				_, _ = io.WriteString(tw, "\t")
			}
			_, _ = io.WriteString(tw, tableCell(c))
		}
		_, _ = io.WriteString(tw, "\n")
	}
	row("ACTION", "USERNAME", "DISPLAY NAME", "EXTENSION", "MOBILE", "DEVICES", "CHANGES")
	for _, l := range [][]PlanItem{p.Creates, p.Updates, p.Disables, p.Removes, p.Kept, p.Unchanged} {
		for _, it := range l {
			action := string(it.Action)
			if it.Held {
				action += " (held)"
			}
			u := it.User
			row(action, u.Username, u.DisplayName, u.Phone, u.Mobile, u.Devices(), describeChanges(it))
		}
	}
	for _, s := range p.Skipped {
		row("skip", "", s.DN, "", "", "", s.Reason)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("plan table: %w", err)
	}
	if _, err := io.WriteString(w, p.Summary()+"\n"); err != nil {
		return fmt.Errorf("plan table: %w", err)
	}
	return nil
}

// Summary is the plan in one line, e.g. "2 to create, 1 to update, 0 to
// disable, 0 to remove, 0 kept, 5 unchanged, 0 skipped, 1 excluded".
func (p *Plan) Summary() string {
	remove := strconv.Itoa(len(p.Removes)) + " to remove"
	if p.HeldDeletions {
		remove += " (held: " + p.HeldReason + "; confirm the deletions or raise sync.max_delete_percent)"
	}
	return fmt.Sprintf("%d to create, %d to update, %d to disable, %s, %d kept, %d unchanged, %d skipped, %d excluded",
		len(p.Creates), len(p.Updates), len(p.Disables), remove, len(p.Kept), len(p.Unchanged), len(p.Skipped), len(p.Excluded))
}

// Devices describes the devices pascom gives the user: "softphone, mobile,
// ip phone 00:11:22:33:44:55".
func (u *ImportUser) Devices() string {
	var d []string
	if u.Softphone {
		d = append(d, "softphone")
	}
	if u.MobileDevice {
		d = append(d, "mobile")
	}
	if u.PhoneMAC != "" {
		d = append(d, "ip phone "+u.PhoneMAC)
	}
	return strings.Join(d, ", ")
}

// describeChanges renders an item's changes, or its reason.
func describeChanges(it PlanItem) string {
	if it.Reason != "" {
		return it.Reason
	}
	parts := make([]string, 0, len(it.Changes))
	for _, c := range it.Changes {
		parts = append(parts, c.Field+" "+strconv.Quote(c.Old)+" -> "+strconv.Quote(c.New))
	}
	return strings.Join(parts, ", ")
}

// tableCell makes a value safe for one cell of a terminal table: control
// characters (tabs, newlines, escape sequences from directory data) become
// spaces, and an empty value is "-".
func tableCell(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return s
}
