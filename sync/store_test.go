package usersync

import (
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// storeEntry is a view entry with the three index keys.
func storeEntry(guid, sam, upn string) *Entry {
	attrs := map[string][]string{"sAMAccountName": {sam}, "mail": {sam + "@example.com"}}
	if upn != "" {
		attrs["userPrincipalName"] = []string{upn}
	}
	return &Entry{GUID: guid, DN: "CN=" + sam + ",OU=Users,DC=example,DC=com", Attrs: attrs}
}

// dumpStore returns every bucket of the store at path, nested ones by their
// path, as key → value.
func dumpStore(t *testing.T, s *store) map[string]map[string]string {
	t.Helper()
	got := map[string]map[string]string{}
	var walk func(prefix string, b *bbolt.Bucket) error
	walk = func(prefix string, b *bbolt.Bucket) error {
		got[prefix] = map[string]string{}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(prefix+"/"+string(k), b.Bucket(k))
			}
			got[prefix][string(k)] = string(v)
			return nil
		})
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error { return walk(string(name), b) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestAStagedWriteLeavesWhatOneTransactionLeaves applies the same syncs to a
// store that writes each in one transaction and to one that stages every
// write in batches of three entries, and compares every bucket: entries
// removed, changed and added, a login moving from one entry to another, two
// new entries with one login (the later holds it), and a changed entry taking
// the UPN of an entry the sync leaves alone.
func TestAStagedWriteLeavesWhatOneTransactionLeaves(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	once, err := openStore(filepath.Join(dir, "once.db"), time.Second, false, 1000)
	must(t, err)
	defer once.close()
	staged, err := openStore(filepath.Join(dir, "staged.db"), time.Second, false, 3)
	must(t, err)
	defer staged.close()

	var first []*Entry
	for i := range 20 {
		first = append(first, storeEntry(fmt.Sprintf("guid-%02d", i), fmt.Sprintf("user%02d", i), fmt.Sprintf("user%02d@example.com", i)))
	}
	second := []*Entry{
		storeEntry("guid-01", "user01", "renamed01@example.com"),  // changed UPN
		storeEntry("guid-02", "user03", "user02@example.com"),     // takes user03's login
		storeEntry("guid-05", "user05", "user06@example.com"),     // takes the UPN of user06, left alone
		storeEntry("guid-30", "newcomer", "newcomer@example.com"), // new
		storeEntry("guid-31", "twin", "twin-a@example.com"),       // two new entries with one login:
		storeEntry("guid-29", "twin", "twin-b@example.com"),       // the later one holds it
		storeEntry("guid-07", "user07", ""),                       // lost its UPN
		storeEntry("guid-40", "user10", "user10-new@example.com"), // a new entry with a removed one's login
	}
	syncs := []*change{
		{put: first, state: State{DC: "ldaps://dc1", HighestCommittedUSN: 100}},
		{put: second, remove: []string{"guid-03", "guid-10", "guid-11"}, state: State{DC: "ldaps://dc1", HighestCommittedUSN: 200}},
		{remove: []string{"guid-00", "guid-04", "guid-08", "guid-09"}, state: State{DC: "ldaps://dc2", HighestCommittedUSN: 300}},
	}
	snapOnce, snapStaged := newSnapshot(map[string]*Entry{}, State{}), newSnapshot(map[string]*Entry{}, State{})
	for i, ch := range syncs {
		must(t, once.write(snapOnce, ch))
		must(t, staged.write(snapStaged, ch))
		snapOnce, snapStaged = snapOnce.with(ch), snapStaged.with(ch)
		a, b := dumpStore(t, once), dumpStore(t, staged)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("after sync %d the staged store differs:\none transaction:\n%v\nstaged:\n%v", i+1, a, b)
		}
		if _, ok := b["staging"]; ok {
			t.Fatalf("after sync %d the staging bucket is still there", i+1)
		}
	}
	got := dumpStore(t, staged)
	for key, want := range map[string]string{"user03": "guid-02", "twin": "guid-29", "user10": "guid-40"} {
		if got["by_sam"][key] != want {
			t.Errorf("by_sam[%s] = %q, want %q", key, got["by_sam"][key], want)
		}
	}
	if got["by_upn"]["user06@example.com"] != "guid-05" {
		t.Errorf("by_upn[user06@example.com] = %q, want guid-05", got["by_upn"]["user06@example.com"])
	}
	loaded, err := staged.load()
	must(t, err)
	if len(loaded.byGUID) != len(snapStaged.byGUID) || loaded.state != snapStaged.state {
		t.Errorf("loaded %d entries and state %+v, want %d and %+v", len(loaded.byGUID), loaded.state, len(snapStaged.byGUID), snapStaged.state)
	}
}

// TestAStagedWriteCutShortLeavesTheLastView: a staging bucket left by a
// process that died mid-write changes nothing a reader sees, and is gone once
// the store is opened for writing again.
func TestAStagedWriteCutShortLeavesTheLastView(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), ViewFile)
	s, err := openStore(path, time.Second, false, 2)
	must(t, err)
	ch := &change{put: []*Entry{storeEntry("g1", "a", ""), storeEntry("g2", "b", ""), storeEntry("g3", "c", "")}, state: State{HighestCommittedUSN: 7}}
	must(t, s.write(newSnapshot(map[string]*Entry{}, State{}), ch))
	before := dumpStore(t, s)
	// What a write cut short leaves: a staging bucket with part of a view.
	must(t, s.db.Update(func(tx *bbolt.Tx) error {
		st, err := newStaging(tx)
		if err != nil {
			return err
		}
		return st.Bucket(bucketEntries).Put([]byte("g9"), []byte(`{"guid":"g9"}`))
	}))
	snap, err := s.load()
	must(t, err)
	if len(snap.byGUID) != 3 || snap.state.HighestCommittedUSN != 7 {
		t.Errorf("with a staging bucket left over, the view loads %d entries and USN %d, want 3 and 7", len(snap.byGUID), snap.state.HighestCommittedUSN)
	}
	must(t, s.close())

	s, err = openStore(path, time.Second, false, 2)
	must(t, err)
	defer s.close()
	after := dumpStore(t, s)
	if _, ok := after["staging"]; ok {
		t.Errorf("the staging bucket is still there after the store was opened for writing")
	}
	delete(before, "staging")
	if !maps.EqualFunc(before, after, maps.Equal) {
		t.Errorf("reopening changed the view:\nbefore %v\nafter  %v", before, after)
	}
}
