package usersync

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
)

// What was applied is recorded in <sync.data_dir>/applied.json, the import's
// commit point: Apply writes the sinks (CSV file, JSON file) first and
// applied.json last, so a crash in between only makes the next run plan and
// write the same import again. applied.json also holds the webhook batches not
// yet delivered, so a restart sends them again — with the same idempotency
// keys — and never sends an applied change twice as a new batch.

// appliedVersion is the format version of applied.json.
const appliedVersion = 1

// File modes: applied.json is the importer's own state; the CSV and JSON files
// are for the PBX and local tools (the group may read them). All hold names,
// addresses and numbers, never a secret.
const (
	appliedFileMode fs.FileMode = 0o600
	outputFileMode  fs.FileMode = 0o640
	dataDirMode     fs.FileMode = 0o750
)

// appliedState is the last applied import. Once an Importer holds one it is
// never modified: Apply builds the next one.
type appliedState struct {
	// Version is appliedVersion.
	Version int `json:"version"`
	// Sequence counts the applies that changed the import (the first is 1).
	Sequence uint64 `json:"sequence"`
	// AppliedAt is when the import last changed.
	AppliedAt time.Time `json:"applied_at"`
	// Mode is the import.mode it was applied with.
	Mode string `json:"mode"`
	// CSVSHA256 is the hex SHA-256 of the CSV of Users; CSVChangedAt is when
	// the CSV last changed (the export's Last-Modified).
	CSVSHA256    string    `json:"csv_sha256"`
	CSVChangedAt time.Time `json:"csv_changed_at"`
	// Pending are the webhook batches not delivered yet, oldest first.
	Pending []pendingBatch `json:"pending_webhook_batches"`
	// Users are the imported users, disabled ones included, sorted by username.
	Users []ImportUser `json:"users"`
}

// pendingBatch is a webhook batch waiting for delivery.
type pendingBatch struct {
	// Key is the batch's Idempotency-Key: the hex SHA-256 of Body.
	Key string `json:"idempotency_key"`
	// Sequence is the applied import the batch belongs to.
	Sequence uint64 `json:"sequence"`
	// Body is the exact JSON sent, kept as a string so a resend is byte for
	// byte the same request.
	Body string `json:"body"`
	// Attempts counts the delivery attempts so far; LastError is the last
	// failure.
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
}

// ApplyOptions change how Apply applies a plan.
type ApplyOptions struct {
	// ConfirmDeletions applies removals the deletion threshold holds
	// (ldapgate sync --apply --confirm-deletions).
	ConfirmDeletions bool `json:"confirm_deletions"`
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	// Sequence is the applied import's sequence number after Apply.
	Sequence uint64 `json:"sequence"`
	// Counts of the users created, updated, disabled, removed, whose removal is
	// held, kept and left unchanged.
	Created      int `json:"created"`
	Updated      int `json:"updated"`
	Disabled     int `json:"disabled"`
	Removed      int `json:"removed"`
	HeldRemovals int `json:"held_removals"`
	Kept         int `json:"kept"`
	Unchanged    int `json:"unchanged"`
	// Users is the number of users in the applied import; CSVRows the rows of
	// its CSV (Users without the disabled ones).
	Users   int `json:"users"`
	CSVRows int `json:"csv_rows"`
	// Changed says the import changed (and applied.json was written).
	Changed bool `json:"changed"`
	// CSVWritten says import.csv_file was (re)written: its content differed.
	CSVWritten bool `json:"csv_written"`
	// WebhookKey is the idempotency key of this Apply's webhook batch, "" when
	// there is none (no webhook, or nothing changed).
	WebhookKey string `json:"webhook_key,omitempty"`
	// WebhookDelivered is the number of batches delivered by this Apply, older
	// pending ones included; WebhookPending the number still pending.
	WebhookDelivered int `json:"webhook_delivered"`
	WebhookPending   int `json:"webhook_pending"`
}

// Apply applies a plan from Plan: it writes the CSV and JSON files, records
// the import in applied.json, and delivers the webhook batches. Removals the
// plan holds are applied only with o.ConfirmDeletions; otherwise those users
// stay in the import and are counted in HeldRemovals.
//
// A plan computed against an older import fails with ErrStalePlan. When the
// import is applied but a webhook batch could not be delivered, Apply returns
// the result and an error wrapping ErrWebhookPending; the batch is sent again
// by the next Apply. Any other error means the import was not recorded: the
// next plan computes the same changes again.
func (im *Importer) Apply(ctx context.Context, p *Plan, o ApplyOptions) (ApplyResult, error) {
	if p == nil {
		return ApplyResult{}, errors.New("apply: no plan")
	}
	if err := ctx.Err(); err != nil {
		return ApplyResult{}, fmt.Errorf("apply: %w", err)
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	prev := im.state
	var base uint64
	if prev != nil {
		base = prev.Sequence
	}
	if p.BaseSequence != base || p.Mode != im.mode {
		return ApplyResult{}, fmt.Errorf("apply: %w (planned against import %d, last applied %d)", ErrStalePlan, p.BaseSequence, base)
	}

	res, users := applyPlan(p, !p.HeldDeletions || o.ConfirmDeletions)
	now := im.now()
	next := &appliedState{Version: appliedVersion, Sequence: base, Mode: im.mode, Users: users}
	changed := res.Created + res.Updated + res.Disabled + res.Removed
	res.Changed = prev == nil || changed > 0
	if prev != nil {
		next.AppliedAt, next.Pending = prev.AppliedAt, prev.Pending
		next.CSVSHA256, next.CSVChangedAt = prev.CSVSHA256, prev.CSVChangedAt
	}
	if res.Changed {
		next.Sequence, next.AppliedAt = base+1, now
	}
	csv := renderCSV(users)
	csvChanged := false
	if sum := sha256Hex(csv); sum != next.CSVSHA256 {
		// Also when only the CSV's format changed since the last run.
		next.CSVSHA256, next.CSVChangedAt, csvChanged = sum, now, true
	}
	res.Sequence, res.Users, res.CSVRows = next.Sequence, len(users), bytes.Count(csv, []byte("\r\n"))-1

	// The sinks first, the record last.
	if im.csvPath != "" {
		written, err := writeIfChanged(im.csvPath, csv, outputFileMode)
		if err != nil {
			return res, fmt.Errorf("apply: csv file: %w", err)
		}
		res.CSVWritten = written
	}
	if im.webhook.URL != "" && changed > 0 {
		b, err := newPendingBatch(next.Sequence, im.mode, planChanges(p, res.Removed > 0))
		if err != nil {
			return res, fmt.Errorf("apply: %w", err)
		}
		next.Pending = append(slices.Clone(next.Pending), b)
		res.WebhookKey = b.Key
	}
	if im.jsonPath != "" && (res.Changed || !fileExists(im.jsonPath)) {
		if err := writeImportDocument(im.jsonPath, p, o, res, next); err != nil {
			return res, fmt.Errorf("apply: json file: %w", err)
		}
	}
	if res.Changed || csvChanged || !fileExists(im.appliedPath) {
		if err := saveApplied(im.appliedPath, next); err != nil {
			return res, fmt.Errorf("apply: %w", err)
		}
	}
	im.commit(next, csv)
	im.logApplied(p, res)

	if len(next.Pending) > 0 && im.webhook.URL == "" {
		im.log.Warn("webhook batches pending but import.webhook.url is empty: not sent", zap.Int("pending", len(next.Pending)))
	}
	werr := im.flushWebhook(ctx, &res)
	res.WebhookPending = len(im.state.Pending)
	if werr != nil {
		return res, fmt.Errorf("apply: %w: %w", ErrWebhookPending, werr)
	}
	return res, nil
}

// applyPlan returns the counts and the users of the import after applying p
// (sorted by username). Removals are applied only when removeNow; held ones
// stay in the import.
func applyPlan(p *Plan, removeNow bool) (ApplyResult, []ImportUser) {
	var res ApplyResult
	users := make([]ImportUser, 0, len(p.Creates)+len(p.Updates)+len(p.Disables)+len(p.Removes)+len(p.Kept)+len(p.Unchanged))
	for _, l := range [][]PlanItem{p.Creates, p.Updates, p.Disables} {
		for _, it := range l {
			users = append(users, it.User)
		}
	}
	res.Created, res.Updated, res.Disabled = len(p.Creates), len(p.Updates), len(p.Disables)
	for _, it := range p.Removes {
		if removeNow {
			res.Removed++
			continue
		}
		users = append(users, it.User)
		res.HeldRemovals++
	}
	for _, l := range [][]PlanItem{p.Kept, p.Unchanged} {
		for _, it := range l {
			users = append(users, it.User)
		}
	}
	res.Kept, res.Unchanged = len(p.Kept), len(p.Unchanged)
	slices.SortFunc(users, func(a, b ImportUser) int {
		return cmp.Or(cmp.Compare(a.Username, b.Username), cmp.Compare(a.GUID, b.GUID))
	})
	return res, users
}

// planChanges returns the changes of p a webhook batch sends, the removals
// only when removed. Built only when a batch is (a copy of every changed
// user: 30 MB for a first import of 100,000).
func planChanges(p *Plan, removed bool) []PlanItem {
	n := len(p.Creates) + len(p.Updates) + len(p.Disables)
	if removed {
		n += len(p.Removes)
	}
	changes := make([]PlanItem, 0, n)
	for _, l := range [][]PlanItem{p.Creates, p.Updates, p.Disables} {
		changes = append(changes, l...)
	}
	if removed {
		for _, it := range p.Removes {
			it.Held = false
			changes = append(changes, it)
		}
	}
	return changes
}

// commit makes st the last applied import; csv is its CSV.
func (im *Importer) commit(st *appliedState, csv []byte) {
	im.state = st
	im.export.Store(newCSVSnapshot(csv, st.CSVChangedAt))
}

// logApplied logs what Apply did: a held removal is a warning, an import that
// did not change a debug line.
func (im *Importer) logApplied(p *Plan, res ApplyResult) {
	if res.HeldRemovals > 0 {
		im.log.Warn("removals held", zap.Int("held_removals", res.HeldRemovals),
			zap.Float64("delete_percent", p.DeletePercent), zap.Float64("max_delete_percent", p.MaxDeletePercent),
			zap.String("reason", p.HeldReason))
	}
	if !res.Changed {
		im.log.Debug("import unchanged", zap.Uint64("sequence", res.Sequence), zap.Int("users", res.Users))
		return
	}
	im.log.Info("import applied", zap.Uint64("sequence", res.Sequence), zap.Int("users", res.Users),
		zap.Int("created", res.Created), zap.Int("updated", res.Updated), zap.Int("disabled", res.Disabled),
		zap.Int("removed", res.Removed), zap.Int("held_removals", res.HeldRemovals), zap.Int("kept", res.Kept),
		zap.Int("unchanged", res.Unchanged), zap.Bool("csv_written", res.CSVWritten))
}

// loadApplied reads the applied import at path; nil when there is none yet.
// A damaged file is an error, not an empty import: planning against nothing
// would create every user again.
func loadApplied(path string) (*appliedState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read applied import: %w", err)
	}
	var st appliedState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("read applied import %s: %w", path, err)
	}
	if st.Version != appliedVersion {
		return nil, fmt.Errorf("read applied import %s: format version %d, want %d", path, st.Version, appliedVersion)
	}
	if len(st.CSVSHA256) != sha256.Size*2 {
		return nil, fmt.Errorf("read applied import %s: csv_sha256 %q is not a SHA-256", path, st.CSVSHA256)
	}
	return &st, nil
}

// saveApplied records st at path, atomically.
func saveApplied(path string, st *appliedState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("record applied import: %w", err)
	}
	if err := writeFileAtomic(path, appliedFileMode, func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	}); err != nil {
		return fmt.Errorf("record applied import: %w", err)
	}
	return nil
}

// writeIfChanged writes data to path atomically unless the file already holds
// exactly data, so an unchanged import keeps the file's modification time.
func writeIfChanged(path string, data []byte, mode fs.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	err := writeFileAtomic(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	return err == nil, err
}

// writeFileAtomic replaces path with what write writes: into a temporary file
// in the same directory, synced, then renamed over path, so a reader sees the
// old content or the new one, never a part. On failure the temporary file is
// removed and path is untouched. The directory is created when missing.
func writeFileAtomic(path string, mode fs.FileMode, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dataDirMode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriter(f)
	if err := write(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Make the rename durable. Best effort: some file systems cannot sync a
	// directory, and the new content is in place either way.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// sha256Hex returns the hex SHA-256 of data.
func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
