package configs

import (
	"os"
	"path/filepath"
	"time"
)

// Bounds of the lockout guard and offline cache settings.
const (
	// maxUserBudget bounds lockout.user_budget: far above any sane lockout
	// threshold, so a typo cannot turn the guard off.
	maxUserBudget = 50
	// maxGuardEntries bounds lockout.max_users, lockout.max_clients and
	// offline.max_entries: each entry costs memory.
	maxGuardEntries = 1000000
	// maxFailureLatency bounds lockout.min_failure_latency: every refused bind
	// waits that long while holding a request slot.
	maxFailureLatency = 5 * time.Second
	// maxArgon2MemoryKiB bounds offline.argon2.memory_kib (1 GiB per hash).
	maxArgon2MemoryKiB = 1 << 20
	// minArgon2MemoryKiB is 8 MiB: less makes offline guessing cheap.
	minArgon2MemoryKiB = 8 << 10
)

// validate checks the lockout guard's settings.
func (l *Lockout) validate(p *problems) {
	if l.NegativeTTL < 0 {
		p.addf("lockout.negative_ttl", "must be 0 (off) or more, not %s: e.g. 5m", l.NegativeTTL)
	}
	if l.UserBudget < 0 || l.UserBudget > maxUserBudget {
		p.addf("lockout.user_budget", "must be between 0 (off) and %d, not %d: keep it below the domain's lockout threshold (AADDS: 5), e.g. 3", maxUserBudget, l.UserBudget)
	}
	if l.UserBudget > 0 {
		checkPositive(p, "lockout.user_window", l.UserWindow, "2m (AADDS resets its bad-password count 2 minutes after the last one)")
	}
	if (l.NegativeTTL > 0 || l.UserBudget > 0) && (l.MaxUsers < 1 || l.MaxUsers > maxGuardEntries) {
		p.addf("lockout.max_users", "must be between 1 and %d, not %d (default 10000)", maxGuardEntries, l.MaxUsers)
	}
	if l.ClientRate < 0 {
		p.addf("lockout.client_rate", "must be 0 (off) or more, not %g: failed binds per second per client address, e.g. 10", l.ClientRate)
	}
	if l.ClientRate > 0 {
		if l.ClientBurst < 1 {
			p.addf("lockout.client_burst", "must be at least 1, not %d (default 20)", l.ClientBurst)
		}
		if l.MaxClients < 1 || l.MaxClients > maxGuardEntries {
			p.addf("lockout.max_clients", "must be between 1 and %d, not %d (default 10000)", maxGuardEntries, l.MaxClients)
		}
	}
	if l.MinFailureLatency < 0 || l.MinFailureLatency > maxFailureLatency {
		p.addf("lockout.min_failure_latency", "must be between 0 (off) and %s, not %s: a little more than AD's search plus bind, e.g. 50ms", maxFailureLatency, l.MinFailureLatency)
	}
}

// validate checks the offline credential cache's settings; with the cache off
// only the file's directory is left unchecked.
func (o *Offline) validate(p *problems) {
	if !o.Enabled {
		return
	}
	checkPositive(p, "offline.max_age", o.MaxAge, "24h")
	if o.MaxEntries < 1 || o.MaxEntries > maxGuardEntries {
		p.addf("offline.max_entries", "must be between 1 and %d, not %d (default 10000)", maxGuardEntries, o.MaxEntries)
	}
	if o.MaxFailures < 1 {
		p.addf("offline.max_failures", "must be at least 1, not %d (default 3): wrong passwords per account per outage", o.MaxFailures)
	}
	if o.MaxConcurrentHashes < 1 || o.MaxConcurrentHashes > 64 {
		p.addf("offline.max_concurrent_hashes", "must be between 1 and 64, not %d (default 2): each hash takes offline.argon2.memory_kib and a CPU", o.MaxConcurrentHashes)
	}
	a := o.Argon2
	if a.Time < 1 || a.Time > 10 {
		p.addf("offline.argon2.time", "must be between 1 and 10, not %d (default 2)", a.Time)
	}
	if a.MemoryKiB < minArgon2MemoryKiB || a.MemoryKiB > maxArgon2MemoryKiB {
		p.addf("offline.argon2.memory_kib", "must be between %d (8 MiB) and %d (1 GiB), not %d (default 19456)", minArgon2MemoryKiB, maxArgon2MemoryKiB, a.MemoryKiB)
	}
	if a.Threads < 1 || a.Threads > 16 {
		p.addf("offline.argon2.threads", "must be between 1 and 16, not %d (default 1)", a.Threads)
	}
	if o.File != "" {
		dir := filepath.Dir(o.File)
		switch st, err := os.Stat(dir); {
		case err != nil:
			p.addf("offline.file", "%w: the directory must exist and be writable by the user ldapgate runs as", err)
		case !st.IsDir():
			p.addf("offline.file", "%s is not a directory: point offline.file into one, e.g. /var/lib/ldapgate/offline.json", dir)
		}
		if st, err := os.Stat(o.File); err == nil && st.IsDir() {
			p.addf("offline.file", "%s is a directory: name a file, e.g. /var/lib/ldapgate/offline.json", o.File)
		}
	}
}
