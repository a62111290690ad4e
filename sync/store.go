package usersync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The store is one bbolt file, <sync.data_dir>/view.db (mode 0600, directory
// 0700), with these buckets:
//
//	meta      "schema" → "1"; "state" → State as JSON
//	entries   objectGUID (text form) → Entry as JSON (keys sorted, so the same
//	          entry is always the same bytes)
//	by_sam    lowercase sAMAccountName → objectGUID
//	by_upn    lowercase userPrincipalName → objectGUID
//	by_dn     normalised DN (normalizeDN) → objectGUID
//
//	staging   the four buckets above, while a large change is written (below)
//
// A sync that changes at most sync.write_batch entries is applied in one
// read-write transaction holding the entries it puts, the ones it removes,
// their index keys and the new state. A larger one (a first sync, a full sync
// after a mass change) would hold every page it writes in memory until its
// commit, about 3 KB per entry, so it builds the whole new view under staging
// in transactions of sync.write_batch entries each and switches it in with a
// last small one, which moves the staged buckets into place and writes the
// state. Either way a crash or an error before the last commit leaves the
// previous view; a staging bucket left behind is dropped when the store is
// next opened for writing. bbolt's file lock makes a second process fail to
// open the store (ErrViewLocked) instead of sharing it.

// ViewFile is the store's file name inside sync.data_dir.
const ViewFile = "view.db"

// schemaVersion is the layout above; a store with another one is refused.
const schemaVersion = "1"

var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	bucketBySAM   = []byte("by_sam")
	bucketByUPN   = []byte("by_upn")
	bucketByDN    = []byte("by_dn")
	bucketStaging = []byte("staging")
	keySchema     = []byte("schema")
	keyState      = []byte("state")
)

// mmapReserve is the address space the store maps up front (bbolt's
// InitialMmapSize), 1 GiB on 64-bit systems: the file grows as before, but
// bbolt no longer remaps it while a write transaction grows it, and every
// remap first copied each key and value the transaction had touched onto the
// heap (a 100,000-user first sync: 170 MB of its peak). A 100,000-user view is
// about 210 MB. On 32-bit systems, where a gigabyte is a quarter of the
// address space, bbolt maps as it grows.
const mmapReserve = (strconv.IntSize / 64) << 30

// viewBuckets are the buckets of a view, live at the root or staged.
var viewBuckets = [4][]byte{bucketEntries, bucketBySAM, bucketByUPN, bucketByDN}

// DefaultWriteBatch is sync.write_batch's default: the most entries one
// transaction of the store writes.
const DefaultWriteBatch = 5000

// store is the bbolt file behind a View.
type store struct {
	db    *bbolt.DB
	path  string
	batch int // sync.write_batch
}

// openStore opens (creating it when missing) the store at path. A lock held by
// another process for longer than lockTimeout is ErrViewLocked. A write of
// more than batch entries is staged (see above); batch < 1 is
// DefaultWriteBatch.
func openStore(path string, lockTimeout time.Duration, readOnly bool, batch int) (*store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, ReadOnly: readOnly, InitialMmapSize: mmapReserve})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked (is ldapgate serve or another ldapgate sync running?)", ErrViewLocked, path)
		}
		return nil, fmt.Errorf("open view store %s: %w", path, err)
	}
	if batch < 1 {
		batch = DefaultWriteBatch
	}
	s := &store{db: db, path: path, batch: batch}
	if !readOnly {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			// The view holds names, numbers and mail addresses: keep it private
			// even when an older file was created with a wider mode.
			_ = os.Chmod(path, 0o600)
		}
		err = db.Update(func(tx *bbolt.Tx) error {
			for _, b := range [][]byte{bucketMeta, bucketEntries, bucketBySAM, bucketByUPN, bucketByDN} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			if tx.Bucket(bucketStaging) != nil {
				// A staged write that did not finish.
				if err := tx.DeleteBucket(bucketStaging); err != nil {
					return err
				}
			}
			meta := tx.Bucket(bucketMeta)
			if meta.Get(keySchema) == nil {
				return meta.Put(keySchema, []byte(schemaVersion))
			}
			return nil
		})
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("initialise view store %s: %w", path, err)
		}
	}
	return s, nil
}

func (s *store) close() error { return s.db.Close() }

// load reads the whole store into a snapshot.
func (s *store) load() (*snapshot, error) {
	entries := map[string]*Entry{}
	var st State
	err := s.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil // a read-only open of a store never initialised
		}
		if v := string(meta.Get(keySchema)); v != schemaVersion {
			return fmt.Errorf("schema %q, this ldapgate reads %q: move the file away to rebuild the view", v, schemaVersion)
		}
		if raw := meta.Get(keyState); raw != nil {
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("state: %w", err)
			}
		}
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			e := new(Entry)
			if err := json.Unmarshal(v, e); err != nil {
				return fmt.Errorf("entry %s: %w", k, err)
			}
			if e.GUID != string(k) {
				return fmt.Errorf("entry %s holds GUID %s", k, e.GUID)
			}
			entries[e.GUID] = e
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load view store %s: %w", s.path, err)
	}
	return newSnapshot(entries, st), nil
}

// change is what one sync does to the view.
type change struct {
	put    []*Entry // new or changed entries
	remove []string // GUIDs
	state  State
}

// write applies ch to the store: in one transaction when it changes at most
// s.batch entries, staged otherwise (see above). old is the snapshot the store
// holds now, for the index keys of the entries being replaced.
func (s *store) write(old *snapshot, ch *change) error {
	var err error
	if len(ch.put)+len(ch.remove) > s.batch {
		err = s.writeStaged(ch)
	} else {
		err = s.writeOnce(old, ch)
	}
	if err != nil {
		return fmt.Errorf("write view store %s: %w", s.path, err)
	}
	return nil
}

// writeOnce applies ch in one transaction.
func (s *store) writeOnce(old *snapshot, ch *change) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		entries := tx.Bucket(bucketEntries)
		idx := indexBuckets(tx)
		// Drop the old index keys first, so that a login or DN that moved from one
		// entry to another in the same sync ends up pointing at the new holder.
		for _, g := range ch.remove {
			if e := old.byGUID[g]; e != nil {
				if err := unindex(idx, e); err != nil {
					return err
				}
			}
			if err := entries.Delete([]byte(g)); err != nil {
				return err
			}
		}
		for _, e := range ch.put {
			if prev := old.byGUID[e.GUID]; prev != nil {
				if err := unindex(idx, prev); err != nil {
					return err
				}
			}
		}
		p := sortPuts(ch.put)
		if err := putEntries(entries, p.entries); err != nil {
			return err
		}
		for i, b := range idx {
			if err := putKeys(b, p.index[i]); err != nil {
				return err
			}
		}
		return putState(tx, ch.state)
	})
}

// writeStaged builds the view after ch under the staging bucket, s.batch
// entries per transaction: what survives of the live buckets (entries not
// removed or replaced, index keys not held by one of those), then ch's puts.
// A last transaction moves the staged buckets into place and writes the state.
// Index keys end up as writeOnce leaves them: a put takes a key over, and of
// two puts with one key the later one holds it.
func (s *store) writeStaged(ch *change) error {
	gone := make(map[string]bool, len(ch.put)+len(ch.remove))
	for _, g := range ch.remove {
		gone[g] = true
	}
	for _, e := range ch.put {
		gone[e.GUID] = true
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		_, err := newStaging(tx)
		return err
	}); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	for i, name := range viewBuckets {
		keep := func(_, v []byte) bool { return !gone[string(v)] }
		if i == 0 {
			keep = func(k, _ []byte) bool { return !gone[string(k)] }
		}
		if err := s.copyLive(name, keep); err != nil {
			return fmt.Errorf("stage %s: %w", name, err)
		}
	}
	p := sortPuts(ch.put)
	for part := range slices.Chunk(p.entries, s.batch) {
		if err := s.db.Update(func(tx *bbolt.Tx) error {
			return putEntries(tx.Bucket(bucketStaging).Bucket(bucketEntries), part)
		}); err != nil {
			return fmt.Errorf("stage %s: %w", bucketEntries, err)
		}
	}
	for i, keys := range p.index {
		for part := range slices.Chunk(keys, s.batch) {
			if err := s.db.Update(func(tx *bbolt.Tx) error {
				return putKeys(tx.Bucket(bucketStaging).Bucket(viewBuckets[i+1]), part)
			}); err != nil {
				return fmt.Errorf("stage %s: %w", viewBuckets[i+1], err)
			}
		}
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		st := tx.Bucket(bucketStaging)
		for _, name := range viewBuckets {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("switch %s: %w", name, err)
			}
			if err := tx.MoveBucket(name, st, nil); err != nil {
				return fmt.Errorf("switch %s: %w", name, err)
			}
		}
		if err := tx.DeleteBucket(bucketStaging); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
		return putState(tx, ch.state)
	})
}

// newStaging makes an empty staging bucket holding the view's four buckets,
// dropping one a write cut short left.
func newStaging(tx *bbolt.Tx) (*bbolt.Bucket, error) {
	if tx.Bucket(bucketStaging) != nil {
		if err := tx.DeleteBucket(bucketStaging); err != nil {
			return nil, err
		}
	}
	st, err := tx.CreateBucket(bucketStaging)
	if err != nil {
		return nil, err
	}
	for _, name := range viewBuckets {
		if _, err := st.CreateBucket(name); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// copyLive copies the pairs of the live bucket name that keep accepts into
// its staged twin, at most s.batch per transaction, in key order.
func (s *store) copyLive(name []byte, keep func(k, v []byte) bool) error {
	var after []byte // the last key looked at
	for done := false; !done; {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			dst := tx.Bucket(bucketStaging).Bucket(name)
			c := tx.Bucket(name).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for n := 0; k != nil && n < s.batch; k, v = c.Next() {
				after = append(after[:0], k...)
				if !keep(k, v) {
					continue
				}
				// v is the live page's memory, valid until the commit, which
				// copies it into the staged page.
				if err := dst.Put(k, v); err != nil {
					return err
				}
				n++
			}
			done = k == nil
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// puts are a write's puts in key order, bucket by bucket.
//
// bbolt keeps a node's keys in one sorted slice until the commit splits it,
// so puts in random order (GUIDs) each move half of it: quadratic in the
// entries written (93% of a 100,000-user full sync). Puts in key order
// append. The sorts are stable: of two entries with one index key, the later
// one still ends up holding it.
type puts struct {
	entries []*Entry      // by GUID
	index   [3][]keyValue // by_sam, by_upn, by_dn: key → GUID
}

func sortPuts(put []*Entry) puts {
	p := puts{entries: slices.Clone(put)}
	slices.SortStableFunc(p.entries, func(a, b *Entry) int { return strings.Compare(a.GUID, b.GUID) })
	for _, e := range put {
		for i, key := range indexKeys(e) {
			if key != "" {
				p.index[i] = append(p.index[i], keyValue{key, []byte(e.GUID)})
			}
		}
	}
	for i := range p.index {
		slices.SortStableFunc(p.index[i], func(a, b keyValue) int { return strings.Compare(a.key, b.key) })
	}
	return p
}

// putEntries puts es, encoded, into the entries bucket b.
func putEntries(b *bbolt.Bucket, es []*Entry) error {
	for _, e := range es {
		raw, err := encodeEntry(e)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(e.GUID), raw); err != nil {
			return err
		}
	}
	return nil
}

// putKeys puts kvs into the index bucket b.
func putKeys(b *bbolt.Bucket, kvs []keyValue) error {
	for _, kv := range kvs {
		if err := b.Put([]byte(kv.key), kv.value); err != nil {
			return err
		}
	}
	return nil
}

// putState writes st into the meta bucket.
func putState(tx *bbolt.Tx, st State) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return tx.Bucket(bucketMeta).Put(keyState, raw)
}

// encodeEntry is e as the entries bucket stores it: JSON with the attribute
// names sorted, so the same entry is always the same bytes.
func encodeEntry(e *Entry) ([]byte, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode entry %s: %w", e.GUID, err)
	}
	return raw, nil
}

// keyValue is one put of a write.
type keyValue struct {
	key   string
	value []byte
}

// indexBuckets returns by_sam, by_upn and by_dn, in the order of indexKeys.
func indexBuckets(tx *bbolt.Tx) [3]*bbolt.Bucket {
	return [3]*bbolt.Bucket{tx.Bucket(viewBuckets[1]), tx.Bucket(viewBuckets[2]), tx.Bucket(viewBuckets[3])}
}

// indexKeys returns e's keys in by_sam, by_upn and by_dn ("" for none).
func indexKeys(e *Entry) [3]string {
	return [3]string{
		strings.ToLower(e.First("sAMAccountName")),
		strings.ToLower(e.First("userPrincipalName")),
		normalizeDN(e.DN),
	}
}

// unindex removes e's index keys that still point at e.
func unindex(idx [3]*bbolt.Bucket, e *Entry) error {
	for i, key := range indexKeys(e) {
		if key == "" {
			continue
		}
		if string(idx[i].Get([]byte(key))) == e.GUID {
			if err := idx[i].Delete([]byte(key)); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyStore writes a consistent copy of the store at src to dst (mode 0600),
// reading it under a shared lock. A store that another process holds for
// writing is ErrViewLocked; a missing one is an error wrapping os.ErrNotExist.
func copyStore(src, dst string, lockTimeout time.Duration) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("copy view store: %w", err)
	}
	s, err := openStore(src, lockTimeout, true, 0)
	if err != nil {
		return err
	}
	defer func() { _ = s.close() }()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("copy view store: %w", err)
	}
	return s.db.View(func(tx *bbolt.Tx) error { return tx.CopyFile(dst, 0o600) })
}
