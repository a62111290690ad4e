package usersync

import (
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
// Every sync that is applied is one read-write transaction holding the entries
// it puts, the ones it removes, their index keys and the new state: a crash or
// an error before the commit leaves the previous view. bbolt's file lock makes
// a second process fail to open the store (ErrViewLocked) instead of sharing it.

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

// store is the bbolt file behind a View.
type store struct {
	db   *bbolt.DB
	path string
}

// openStore opens (creating it when missing) the store at path. A lock held by
// another process for longer than lockTimeout is ErrViewLocked.
func openStore(path string, lockTimeout time.Duration, readOnly bool) (*store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, ReadOnly: readOnly, InitialMmapSize: mmapReserve})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked (is ldapgate serve or another ldapgate sync running?)", ErrViewLocked, path)
		}
		return nil, fmt.Errorf("open view store %s: %w", path, err)
	}
	s := &store{db: db, path: path}
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

// write applies ch to the store in one transaction; old is the snapshot the
// store holds now, for the index keys of the entries being replaced.
func (s *store) write(old *snapshot, ch *change) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
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
		// bbolt keeps a node's keys in one sorted slice until the commit
		// splits it, so puts in random order (GUIDs) each move half of it:
		// quadratic in the entries written (93% of a 100,000-user full sync).
		// Puts in key order append. The sort is stable: of two entries with
		// one index key, the later one still ends up holding it.
		var puts [4][]keyValue // entries, by_sam, by_upn, by_dn
		for _, e := range ch.put {
			raw, err := encodeEntry(e)
			if err != nil {
				return err
			}
			puts[0] = append(puts[0], keyValue{e.GUID, raw})
			for i, key := range indexKeys(e) {
				if key != "" {
					puts[i+1] = append(puts[i+1], keyValue{key, []byte(e.GUID)})
				}
			}
		}
		for i, b := range [4]*bbolt.Bucket{entries, idx[0], idx[1], idx[2]} {
			slices.SortStableFunc(puts[i], func(a, b keyValue) int { return strings.Compare(a.key, b.key) })
			for _, kv := range puts[i] {
				if err := b.Put([]byte(kv.key), kv.value); err != nil {
					return err
				}
			}
		}
		raw, err := json.Marshal(ch.state)
		if err != nil {
			return fmt.Errorf("encode state: %w", err)
		}
		return tx.Bucket(bucketMeta).Put(keyState, raw)
	})
	if err != nil {
		return fmt.Errorf("write view store %s: %w", s.path, err)
	}
	return nil
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
	return [3]*bbolt.Bucket{tx.Bucket(bucketBySAM), tx.Bucket(bucketByUPN), tx.Bucket(bucketByDN)}
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
	s, err := openStore(src, lockTimeout, true)
	if err != nil {
		return err
	}
	defer func() { _ = s.close() }()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("copy view store: %w", err)
	}
	return s.db.View(func(tx *bbolt.Tx) error { return tx.CopyFile(dst, 0o600) })
}
