package usersync

import (
	"errors"
	"time"
)

// State is the view's sync state, stored in the same transaction as the
// entries it describes.
type State struct {
	// DC is the URL (as in upstream.servers) of the DC the view was last read
	// from; an incremental sync must ask the same DC, because USNs are per DC.
	DC string `json:"dc"`
	// DSServiceName is that DC's dsServiceName (the DN of its NTDS Settings
	// object) when it was read.
	DSServiceName string `json:"ds_service_name"`
	// InvocationID is the invocationId of that NTDS Settings object, as a GUID; a
	// DC restored from a backup gets a new one, and its USNs cannot be trusted.
	InvocationID string `json:"invocation_id"`
	// HighestCommittedUSN is the DC's highestCommittedUSN read before the last
	// applied sync: the next incremental sync asks for uSNChanged above it.
	HighestCommittedUSN int64 `json:"highest_committed_usn"`
	// Scope identifies the base DN, filter and attributes the view was read
	// with; when the configuration changes them, the next sync is a full one.
	Scope string `json:"scope"`
	// LastFull is when the last full sync was applied.
	LastFull time.Time `json:"last_full"`
	// LastIncremental is when the last incremental sync was applied (zero when
	// none has been since the last full sync).
	LastIncremental time.Time `json:"last_incremental"`
	// Entries is the number of entries in the view.
	Entries int `json:"entries"`
	// Added, Changed and Removed are the counts of the last applied sync.
	Added   int `json:"added"`
	Changed int `json:"changed"`
	Removed int `json:"removed"`
}

// LastSync is when the view was last confirmed against AD: the later of
// LastFull and LastIncremental; zero for a view that was never synced.
func (s State) LastSync() time.Time {
	if s.LastIncremental.After(s.LastFull) {
		return s.LastIncremental
	}
	return s.LastFull
}

// Kind is the kind of a sync run.
type Kind string

// The kinds of sync.
const (
	// KindFull reads every entry in scope and replaces the view with them.
	KindFull Kind = "full"
	// KindIncremental reads what changed on the view's DC since its stored USN.
	KindIncremental Kind = "incremental"
)

// Outcome is what a sync run did to the view.
type Outcome string

// The outcomes of a sync run. Only OutcomeApplied, OutcomeUnchanged and
// OutcomeHeld write the store; every other outcome leaves it byte for byte as
// it was.
const (
	// OutcomeApplied means the view changed and the change was stored.
	OutcomeApplied Outcome = "applied"
	// OutcomeUnchanged means AD had nothing new for the view; only the sync state
	// (USN, time) was stored.
	OutcomeUnchanged Outcome = "unchanged"
	// OutcomeHeld means the view was applied (or unchanged) but the import
	// refused to remove users above its threshold (sync.max_delete_percent)
	// until the deletions are confirmed.
	OutcomeHeld Outcome = "held"
	// OutcomeSuspiciousEmpty means AD answered successfully with no entry while
	// the view has some: not applied until confirmed (Options.ConfirmDeletions).
	OutcomeSuspiciousEmpty Outcome = "suspicious-empty"
	// OutcomeSourceError means AD could not be read completely (no DC usable,
	// a search failed, timed out or was cut off): nothing was applied, and no
	// entry was removed.
	OutcomeSourceError Outcome = "source-error"
	// OutcomeFailed means the read succeeded but could not be applied: more than
	// sync.max_entries entries, a malformed entry, or the store failed.
	OutcomeFailed Outcome = "failed"
)

// failed reports whether a run with this outcome left the view as it was
// without AD's say-so: AD could not be read, its empty answer is held, or
// what it returned could not be stored.
func (o Outcome) failed() bool {
	return o == OutcomeSourceError || o == OutcomeSuspiciousEmpty || o == OutcomeFailed
}

// Result describes one sync run.
type Result struct {
	// Kind is full or incremental (what ran, after any fallback).
	Kind Kind
	// Reason says why a full sync ran ("forced", "first sync", "full interval",
	// "preferred DC changed", "invocationID changed", …); empty for an
	// incremental one.
	Reason string
	// DC is the URL of the DC that was read ("" when none could be).
	DC string
	// Read is the number of entries read from AD.
	Read int
	// Added, Changed and Removed are the GUIDs the run added to, changed in and
	// removed from the view (applied or, for OutcomeSuspiciousEmpty, proposed).
	Added, Changed, Removed []string
	// Entries is the number of entries in the view after the run.
	Entries int
	// Dur is how long the run took.
	Dur time.Duration
	// Outcome is what the run did to the view.
	Outcome Outcome
	// ImportRan is true when the import hook was called; ImportHeld when it held
	// deletions.
	ImportRan, ImportHeld bool
	// Err is the error Run returned, if any.
	Err error
}

// Errors of a sync run. A source failure also wraps the upstream error
// (upstream.ErrNoHealthyUpstream, upstream.ErrUnavailable, …) that caused it.
var (
	// ErrSource means AD could not be read completely; the view was kept.
	ErrSource = errors.New("directory read failed")
	// ErrSuspiciousEmpty means AD returned no entry where the view has some; the
	// view was kept. Run again with Options.ConfirmDeletions to apply it.
	ErrSuspiciousEmpty = errors.New("directory returned no entry while the view has some: not applied, confirm to apply")
	// ErrTooManyEntries means a full sync found more than sync.max_entries
	// entries in scope; the view was kept.
	ErrTooManyEntries = errors.New("more entries in scope than sync.max_entries")
	// ErrViewLocked means another process holds the view's store (an ldapgate
	// serve, or another ldapgate sync).
	ErrViewLocked = errors.New("view store is in use by another process")
	// ErrImport means the view was applied but the import that follows failed.
	ErrImport = errors.New("import failed")
)
