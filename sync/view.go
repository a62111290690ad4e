package usersync

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// View is the directory view: the entries in scope as of the last applied
// sync, persisted in a bbolt store (see store.go for the layout) and served
// from an immutable in-memory snapshot. Readers never block: a sync builds the
// next snapshot, commits it to the store in one transaction, then swaps it in
// atomically, so a reader sees either the whole previous view or the whole new
// one. Opening the store loads the last applied view at once, before any sync.
//
// The view holds the entries sync.filter selects (users), keyed by
// objectGUID; groups are not stored: an entry's memberOf holds the group DNs AD
// returned (direct memberships), and nested membership is what AD evaluated for
// the filter (IN_CHAIN). The entries a View returns share their Attrs with the
// snapshot: treat them as read-only. A View is safe for concurrent use.
type View struct {
	store      *store
	staleAfter atomic.Int64 // a time.Duration: sync.stale_after
	cur        atomic.Pointer[snapshot]
	wmu        sync.Mutex // one writer at a time
	closed     atomic.Bool
}

// ViewOptions configures OpenView.
type ViewOptions struct {
	// StaleAfter is how long after the last sync Fresh reports true
	// (sync.stale_after). Default 15m.
	StaleAfter time.Duration
	// LockTimeout is how long OpenView waits for the store's file lock before it
	// fails with ErrViewLocked. Default 1s.
	LockTimeout time.Duration
	// WriteBatch is the most entries one transaction of the store writes
	// (sync.write_batch); a sync that changes more is staged and switched in
	// at once. Default DefaultWriteBatch.
	WriteBatch int
}

// ViewPath returns the store's path in dataDir (sync.data_dir).
func ViewPath(dataDir string) string { return filepath.Join(dataDir, ViewFile) }

// OpenView opens the view stored in dataDir (creating the directory with mode
// 0700 and the store with mode 0600 when missing) and loads it. It fails with
// ErrViewLocked when another process has the store open.
func OpenView(dataDir string, o ViewOptions) (*View, error) {
	if o.StaleAfter <= 0 {
		o.StaleAfter = 15 * time.Minute
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("view data directory: %w", err)
	}
	s, err := openStore(ViewPath(dataDir), o.LockTimeout, false, o.WriteBatch)
	if err != nil {
		return nil, err
	}
	snap, err := s.load()
	if err != nil {
		_ = s.close()
		return nil, err
	}
	v := &View{store: s}
	v.staleAfter.Store(int64(o.StaleAfter))
	v.cur.Store(snap)
	return v, nil
}

// CopyView copies the view stored in srcDir into dstDir (for a dry run that
// must not touch the real one). It fails with ErrViewLocked when another
// process has the source open, and with an error wrapping os.ErrNotExist when
// there is no view yet.
func CopyView(srcDir, dstDir string, lockTimeout time.Duration) error {
	if lockTimeout <= 0 {
		lockTimeout = time.Second
	}
	return copyStore(ViewPath(srcDir), ViewPath(dstDir), lockTimeout)
}

// Close closes the store. Lookups keep answering from the last snapshot; a
// sync after Close fails.
func (v *View) Close() error {
	if v.closed.Swap(true) {
		return nil
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	return v.store.close()
}

// Path returns the store's file.
func (v *View) Path() string { return v.store.path }

// ByLogin returns the entry whose sAMAccountName or userPrincipalName is
// login, compared case-insensitively.
func (v *View) ByLogin(login string) (Entry, bool) {
	s := v.cur.Load()
	key := strings.ToLower(strings.TrimSpace(login))
	if e := s.bySAM[key]; e != nil {
		return *e, true
	}
	if e := s.byUPN[key]; e != nil {
		return *e, true
	}
	return Entry{}, false
}

// ByDN returns the entry with this DN, in any spelling AD would accept (case,
// escaping, spaces after commas).
func (v *View) ByDN(dn string) (Entry, bool) {
	if e := v.cur.Load().byDN[normalizeDN(dn)]; e != nil {
		return *e, true
	}
	return Entry{}, false
}

// ByGUID returns the entry with this objectGUID (text form, any case).
func (v *View) ByGUID(guid string) (Entry, bool) {
	if e := v.cur.Load().byGUID[strings.ToLower(guid)]; e != nil {
		return *e, true
	}
	return Entry{}, false
}

// All returns every entry of the view, ordered by GUID.
func (v *View) All() []Entry {
	s := v.cur.Load()
	out := make([]Entry, len(s.sorted))
	for i, e := range s.sorted {
		out[i] = *e
	}
	return out
}

// Len returns the number of entries in the view.
func (v *View) Len() int { return len(v.cur.Load().sorted) }

// State returns the sync state of the view.
func (v *View) State() State { return v.cur.Load().state }

// StaleAfter is sync.stale_after: how long after its last sync the view is
// fresh.
func (v *View) StaleAfter() time.Duration { return time.Duration(v.staleAfter.Load()) }

// SetStaleAfter changes sync.stale_after of the open view (a reload); a
// duration that is not positive is ignored.
func (v *View) SetStaleAfter(d time.Duration) {
	if d > 0 {
		v.staleAfter.Store(int64(d))
	}
}

// Fresh reports whether the view was confirmed against AD no longer than
// sync.stale_after before now; a view never synced is not fresh.
func (v *View) Fresh(now time.Time) bool {
	last := v.State().LastSync()
	return !last.IsZero() && now.Sub(last) <= v.StaleAfter()
}

// snapshot returns the current snapshot.
func (v *View) snapshot() *snapshot { return v.cur.Load() }

// apply commits ch to the store and then swaps in the snapshot it makes. On
// any error the store and the snapshot stay as they were.
func (v *View) apply(ch *change) error {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	if v.closed.Load() {
		return fmt.Errorf("apply sync: view closed")
	}
	old := v.cur.Load()
	if err := v.store.write(old, ch); err != nil {
		return err
	}
	v.cur.Store(old.with(ch))
	return nil
}

// snapshot is one immutable state of the view. Its maps are never written
// after newSnapshot returns.
type snapshot struct {
	byGUID map[string]*Entry
	bySAM  map[string]*Entry
	byUPN  map[string]*Entry
	byDN   map[string]*Entry
	sorted []*Entry // by GUID
	state  State
}

// newSnapshot indexes entries (by GUID).
func newSnapshot(entries map[string]*Entry, st State) *snapshot {
	s := &snapshot{
		byGUID: entries,
		bySAM:  make(map[string]*Entry, len(entries)),
		byUPN:  make(map[string]*Entry, len(entries)),
		byDN:   make(map[string]*Entry, len(entries)),
		sorted: make([]*Entry, 0, len(entries)),
		state:  st,
	}
	for _, e := range entries {
		s.sorted = append(s.sorted, e)
	}
	slices.SortFunc(s.sorted, func(a, b *Entry) int { return strings.Compare(a.GUID, b.GUID) })
	for _, e := range s.sorted {
		keys := indexKeys(e)
		for i, m := range []map[string]*Entry{s.bySAM, s.byUPN, s.byDN} {
			if keys[i] != "" {
				m[keys[i]] = e
			}
		}
	}
	return s
}

// with returns the snapshot after ch.
func (s *snapshot) with(ch *change) *snapshot {
	entries := maps.Clone(s.byGUID)
	if entries == nil {
		entries = make(map[string]*Entry, len(ch.put))
	}
	for _, g := range ch.remove {
		delete(entries, g)
	}
	for _, e := range ch.put {
		entries[e.GUID] = e
	}
	return newSnapshot(entries, ch.state)
}
