package main

import (
	"context"
	"sync"

	usersync "github.com/ldapgate/ldapgate/sync"
)

// credentialWatch tells the bind path when a sync sees an account's password,
// state or scope change — pwdLastSet, userAccountControl or lockoutTime moved,
// or the user left the view — so its offline credential and negative-cache
// entries are dropped at once instead of living until they expire.
type credentialWatch struct {
	mu     sync.Mutex
	last   map[string]credentialState // by objectGUID; nil before the first sync
	forget func(dn string)            // set once the bind path exists
}

// credentialState is what of an entry decides whether a cached credential
// still stands.
type credentialState struct{ dn, pwdLastSet, uac, lockoutTime string }

// setForget names the function that drops an account's cached credentials.
func (w *credentialWatch) setForget(f func(dn string)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.forget = f
}

// observe compares the view's users with the previous sync's and forgets every
// account whose credential state changed or that is gone.
func (w *credentialWatch) observe(entries []usersync.Entry) {
	next := make(map[string]credentialState, len(entries))
	for i := range entries {
		e := &entries[i]
		next[e.GUID] = credentialState{dn: e.DN, pwdLastSet: e.First("pwdLastSet"),
			uac: e.First("userAccountControl"), lockoutTime: e.First("lockoutTime")}
	}
	w.mu.Lock()
	prev, forget := w.last, w.forget
	w.last = next
	w.mu.Unlock()
	if prev == nil || forget == nil {
		return
	}
	for guid, old := range prev {
		cur, ok := next[guid]
		if ok && cur == old {
			continue
		}
		forget(old.dn)
		if ok && cur.dn != old.dn {
			forget(cur.dn)
		}
	}
}

// wrap runs observe before each import the syncer runs.
func (w *credentialWatch) wrap(f usersync.ImportFunc) usersync.ImportFunc {
	return func(ctx context.Context, entries []usersync.Entry, confirm bool) (bool, error) {
		w.observe(entries)
		return f(ctx, entries, confirm)
	}
}
