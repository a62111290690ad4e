package usersync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestARestartServesTheLastViewAtOnce(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	dataDir := t.TempDir()
	cfg := syncConfig(dataDir, allUsersFilter)
	h := newHarness(t, dom, dom.upstreamConfig(), cfg)
	h.run(Options{})
	want, state := h.view.All(), h.view.State()
	must(t, h.view.Close())
	must(t, dom.dcs[0].Stop()) // nothing to sync from after the restart

	v, err := OpenView(dataDir, ViewOptions{StaleAfter: cfg.StaleAfter})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if got := v.All(); !sameEntries(got, want) {
		t.Errorf("the reopened view has %d entries, not the %d it was closed with", len(got), len(want))
	}
	if v.State() != state {
		t.Errorf("state %+v after reopening, want %+v", v.State(), state)
	}
	if e, ok := v.ByLogin("jdoe"); !ok || e.DN != testbed.JDoe.DN() {
		t.Errorf("ByLogin(jdoe) after reopening: %v %q", ok, e.DN)
	}
	if !v.Fresh(state.LastFull.Add(cfg.StaleAfter)) || v.Fresh(state.LastFull.Add(cfg.StaleAfter+time.Second)) {
		t.Errorf("Fresh is not true up to sync.stale_after (%v) after the last sync and false after", cfg.StaleAfter)
	}
	if fi, err := os.Stat(ViewPath(dataDir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the store: %v, %v; want mode 0600", fi.Mode(), err)
	}
}

func TestANewViewIsEmptyAndNotFresh(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "new", "dir")
	v, err := OpenView(dataDir, ViewOptions{})
	must(t, err)
	t.Cleanup(func() { _ = v.Close() })
	if v.Len() != 0 || len(v.All()) != 0 || v.Fresh(time.Now()) {
		t.Errorf("a new view: %d entries, fresh %v; want empty and not fresh", v.Len(), v.Fresh(time.Now()))
	}
	fi, err := os.Stat(dataDir)
	must(t, err)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestOpenFailsWhileAnotherOpenerHoldsTheStore(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	v, err := OpenView(dataDir, ViewOptions{})
	must(t, err)
	start := time.Now()
	_, err = OpenView(dataDir, ViewOptions{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrViewLocked) {
		t.Fatalf("second OpenView: %v, want ErrViewLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the second open took %v: it must give up after its lock timeout", d)
	}
	if err := CopyView(dataDir, t.TempDir(), 100*time.Millisecond); !errors.Is(err, ErrViewLocked) {
		t.Errorf("CopyView of a store held for writing: %v, want ErrViewLocked", err)
	}
	must(t, v.Close())
	v2, err := OpenView(dataDir, ViewOptions{})
	if err != nil {
		t.Fatalf("OpenView after Close: %v", err)
	}
	_ = v2.Close()
}

func TestCopyViewMakesAnIndependentCopy(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	src := t.TempDir()
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(src, allUsersFilter))
	h.run(Options{})
	want := h.view.All()
	must(t, h.view.Close())

	dst := t.TempDir()
	must(t, CopyView(src, dst, 0))
	if err := CopyView(t.TempDir(), t.TempDir(), 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CopyView of no view: %v, want os.ErrNotExist", err)
	}
	c, err := OpenView(dst, ViewOptions{})
	must(t, err)
	t.Cleanup(func() { _ = c.Close() })
	if !sameEntries(c.All(), want) {
		t.Errorf("the copy holds %d entries, the source %d", c.Len(), len(want))
	}
}

func TestTheStoreIndexesAgreeWithTheView(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter))
	h.run(Options{})
	_, err := dom.dir.RenameUser("jdoe", "Johnny Doe")
	must(t, err)
	must(t, dom.dir.ModifyUser("sobrien", map[string][]string{"userPrincipalName": {"sean@" + testbed.Realm}}))
	must(t, dom.dir.DeleteUser("bjones"))
	h.run(Options{Full: true})

	got := map[string]map[string]string{}
	err = h.view.store.db.View(func(tx *bbolt.Tx) error {
		for _, name := range []string{"by_sam", "by_upn", "by_dn"} {
			got[name] = map[string]string{}
			err := tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				got[name][string(k)] = string(v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	must(t, err)
	want := map[string]map[string]string{"by_sam": {}, "by_upn": {}, "by_dn": {}}
	for _, e := range h.view.All() {
		keys := indexKeys(&e)
		for i, name := range []string{"by_sam", "by_upn", "by_dn"} {
			if keys[i] != "" {
				want[name][keys[i]] = e.GUID
			}
		}
	}
	for name := range want {
		if fmt.Sprint(got[name]) != fmt.Sprint(want[name]) {
			t.Errorf("%s in the store:\n%v\nwant\n%v", name, got[name], want[name])
		}
	}
	if _, ok := got["by_sam"]["bjones"]; ok {
		t.Errorf("the deleted user is still indexed")
	}
	if got["by_upn"]["sobrien@"+testbed.Realm] != "" {
		t.Errorf("sobrien's old UPN is still indexed")
	}
}

func TestReadersNeverSeeAHalfAppliedSync(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 30)
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter))
	setMobiles := func(gen int) {
		for i := range 30 {
			login, _ := testbed.LoadUser(i)
			must(t, dom.dir.ModifyUser(login, map[string][]string{"mobile": {fmt.Sprintf("+1 557 9%03d", gen)}}))
		}
	}
	setMobiles(999)
	h.run(Options{})
	n := h.view.Len()

	// Each generation gives every bulk user the same new mobile number in one
	// sync: a reader must see all of them with one number.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	errs := make(chan error, 8)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				all := h.view.All()
				seen := map[string]bool{}
				for _, e := range all {
					if e.First("givenName") == "Load" {
						seen[e.First("mobile")] = true
					}
				}
				if len(all) != n || len(seen) != 1 {
					errs <- fmt.Errorf("a reader saw %d entries with %d different mobile numbers", len(all), len(seen))
					return
				}
				if _, ok := h.view.ByLogin("user0001"); !ok {
					errs <- fmt.Errorf("user0001 disappeared during a swap")
					return
				}
				_ = h.view.Fresh(time.Now())
				reads.Add(1)
			}
		}()
	}
	for gen := range 3 {
		setMobiles(gen)
		if r := h.run(Options{}); len(r.Changed) != 30 {
			t.Errorf("generation %d changed %d users, want 30", gen, len(r.Changed))
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads.Load() == 0 {
		t.Errorf("no reader finished a read")
	}
}

func TestAClosedViewRefusesToApply(t *testing.T) {
	t.Parallel()
	dom := newSimDomain(t, 1, 0)
	h := newHarness(t, dom, dom.upstreamConfig(), syncConfig(t.TempDir(), allUsersFilter))
	must(t, h.view.Close())
	r, err := h.syncer.Run(context.Background(), Options{})
	if err == nil || r.Outcome != OutcomeFailed {
		t.Errorf("Run on a closed view: %s, %v; want failed", r.Outcome, err)
	}
}

// sameEntries compares two lists of entries in every stored byte.
func sameEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool { return identical(&x, &y) })
}
