package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/argon2"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// Sizes of an offline credential.
const (
	offlineSaltLen = 16
	offlineHashLen = 32
	// offlineMaxLogins bounds the login keys remembered per account.
	offlineMaxLogins = 8
	// offlineFileVersion is the version of the file format.
	offlineFileVersion = 1
	// offlineMaxFileBytes bounds what is read of offline.file.
	offlineMaxFileBytes = 64 << 20
	// offlineWriteInterval is the least time between two writes of
	// offline.file: a burst of binds costs one write.
	offlineWriteInterval = time.Second
	// offlineRefreshWrite is how stale an entry's time in offline.file may get
	// before a refresh (a good bind with the same password) writes the file:
	// users binding all day must not rewrite it every second.
	offlineRefreshWrite = 10 * time.Minute
)

// errNoOfflineEntry means the offline cache cannot answer for the login: no
// entry, or one older than offline.max_age. The outage's 52 stands.
var errNoOfflineEntry = errors.New("no offline credential")

// offlineCache is the offline credential cache (offline.*): an argon2id hash
// with a random salt of the password of each recent successful bind, used only
// while no DC can be reached. An entry is made or refreshed by a successful
// bind at AD and dropped by any refusal from AD for the account, by ForgetUser
// (the sync saw the account change or leave the view) and after
// offline.max_age without a successful bind at AD. Wrong passwords against it
// are limited per account and outage (offline.max_failures); an outage ends
// when a DC answers a bind again.
//
// Computing a hash costs offline.argon2.memory_kib and tens of milliseconds of
// one CPU, so at most offline.max_concurrent_hashes run at once: a store that
// finds them all busy is skipped (the next successful bind stores it), a check
// waits for one within the bind's timeout. A repeated successful bind with an
// unchanged password costs no hash: each entry also holds an HMAC of the
// password under a key that exists only in this process's memory (never on
// disk), which says the password is the one already hashed.
type offlineCache struct {
	cfg configs.Offline
	now func() time.Time
	log *zap.Logger
	key *macKey // the fast check's HMAC
	sem chan struct{}

	mu      sync.Mutex
	entries map[string]*offlineEntry // userKey → entry
	logins  map[string]string        // Login.Key → userKey
	// forgets counts ForgetUser calls and AD refusals: a hash computed across
	// one is not stored.
	forgets atomic.Uint64

	// outage is set by an offline check and cleared, ending the outage and
	// starting a new epoch of failure counts, by the next answer from AD.
	outage atomic.Bool
	epoch  atomic.Uint64

	successes, failures, skipped atomic.Uint64
	// hashes counts the argon2id computations, stores and checks.
	hashes atomic.Uint64

	// File persistence (offline.file); nil channels when memory only.
	dirty   chan struct{}
	pending atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	writeMu sync.Mutex
	closed  sync.Once
}

// offlineEntry is one account's offline credential.
type offlineEntry struct {
	dn         string
	logins     []string
	salt, hash []byte
	params     configs.Argon2
	verifiedAt time.Time
	// written is the verifiedAt that offline.file holds.
	written time.Time

	// fast is HMAC(process key, user, password), memory only; hasFast is false
	// for entries loaded from the file.
	fast    passwordMAC
	hasFast bool
	// fails counts wrong passwords (and checks in flight) in failEpoch.
	fails     int
	failEpoch uint64
}

// offlineFile is offline.file's format.
type offlineFile struct {
	Version int                `json:"version"`
	Entries []offlineFileEntry `json:"entries"`
}

type offlineFileEntry struct {
	DN         string    `json:"dn"`
	Logins     []string  `json:"logins,omitempty"`
	Salt       []byte    `json:"salt"`
	Hash       []byte    `json:"hash"`
	Time       int       `json:"time"`
	MemoryKiB  int       `json:"memory_kib"`
	Threads    int       `json:"threads"`
	VerifiedAt time.Time `json:"verified_at"`
}

// newOfflineCache builds the cache from cfg (nil when it is off) and loads
// offline.file when set.
func newOfflineCache(cfg configs.Offline, now func() time.Time, log *zap.Logger) (*offlineCache, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	def := configs.Default().Offline
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = def.MaxAge
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = def.MaxEntries
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = def.MaxFailures
	}
	if cfg.MaxConcurrentHashes <= 0 {
		cfg.MaxConcurrentHashes = def.MaxConcurrentHashes
	}
	if !validArgon2(cfg.Argon2) {
		cfg.Argon2 = def.Argon2
	}
	c := &offlineCache{
		cfg:     cfg,
		now:     now,
		log:     log.Named("offline"),
		sem:     make(chan struct{}, cfg.MaxConcurrentHashes),
		entries: make(map[string]*offlineEntry),
		logins:  make(map[string]string),
	}
	key, err := newMACKey()
	if err != nil {
		return nil, fmt.Errorf("offline cache key: %w", err)
	}
	c.key = key
	if cfg.File != "" {
		if err := c.load(); err != nil {
			return nil, fmt.Errorf("offline cache: %w", err)
		}
		c.dirty = make(chan struct{}, 1)
		c.stop = make(chan struct{})
		c.done = make(chan struct{})
		go c.writeLoop()
	}
	return c, nil
}

// validArgon2 bounds the parameters of a hash, also those read from the file:
// a tampered file must not make a check cost a gigabyte or an hour.
func validArgon2(a configs.Argon2) bool {
	return a.Time >= 1 && a.Time <= 10 && a.MemoryKiB >= 8<<10 && a.MemoryKiB <= 1<<20 && a.Threads >= 1 && a.Threads <= 16
}

func (c *offlineCache) hash(password string, salt []byte, a configs.Argon2) []byte {
	c.hashes.Add(1)
	return argon2.IDKey([]byte(password), salt, uint32(a.Time), uint32(a.MemoryKiB), uint8(a.Threads), offlineHashLen)
}

// answered records that AD answered a bind: an outage, if there was one, is
// over, and offline failure counts start again at the next one.
func (c *offlineCache) answered() {
	if c != nil && c.outage.CompareAndSwap(true, false) {
		c.epoch.Add(1)
	}
}

// remember stores or refreshes the account's credential after AD accepted
// password for it at now; loginKey is the login it was typed as, user the
// account's userKey.
func (c *offlineCache) remember(loginKey, dn, user, password string, now time.Time) {
	if c == nil {
		return
	}
	c.answered()
	fast := c.key.sum(user, password)
	c.mu.Lock()
	if e := c.entries[user]; e != nil && e.hasFast && subtle.ConstantTimeCompare(e.fast[:], fast[:]) == 1 {
		e.verifiedAt = now
		c.addLogin(e, user, loginKey)
		stale := now.Sub(e.written) >= offlineRefreshWrite
		c.mu.Unlock()
		if stale {
			c.markDirty()
		}
		return
	}
	c.mu.Unlock()

	select {
	case c.sem <- struct{}{}:
	default:
		c.skipped.Add(1)
		return // every hash slot is busy: the next successful bind stores it
	}
	forgets := c.forgets.Load()
	salt := make([]byte, offlineSaltLen)
	if _, err := rand.Read(salt); err != nil {
		<-c.sem
		c.log.Error("offline credential not stored: no random salt", zap.Error(err))
		return
	}
	params := c.cfg.Argon2
	hash := c.hash(password, salt, params)
	<-c.sem

	c.mu.Lock()
	defer c.markDirty()
	defer c.mu.Unlock()
	if c.forgets.Load() != forgets {
		return // the account may have changed while hashing: store nothing
	}
	e := &offlineEntry{dn: dn, salt: salt, hash: hash, params: params, verifiedAt: now, fast: fast, hasFast: true}
	if old := c.entries[user]; old != nil {
		e.logins = old.logins
	} else if len(c.entries) >= c.cfg.MaxEntries {
		c.evictOldest()
	}
	c.entries[user] = e
	c.addLogin(e, user, loginKey)
}

// addLogin records that loginKey names the account. The caller holds c.mu.
func (c *offlineCache) addLogin(e *offlineEntry, user, loginKey string) {
	if loginKey == "" {
		return
	}
	if prev, ok := c.logins[loginKey]; ok && prev == user {
		return
	}
	if len(e.logins) >= offlineMaxLogins {
		delete(c.logins, e.logins[0])
		e.logins = e.logins[1:]
	}
	e.logins = append(e.logins, loginKey)
	c.logins[loginKey] = user
}

// evictOldest drops the entry verified longest ago. The caller holds c.mu.
func (c *offlineCache) evictOldest() {
	var oldest string
	var at time.Time
	for k, e := range c.entries {
		if oldest == "" || e.verifiedAt.Before(at) {
			oldest, at = k, e.verifiedAt
		}
	}
	c.removeLocked(oldest)
}

// removeLocked drops an entry and its logins. The caller holds c.mu.
func (c *offlineCache) removeLocked(user string) bool {
	e := c.entries[user]
	if e == nil {
		return false
	}
	for _, l := range e.logins {
		if c.logins[l] == user {
			delete(c.logins, l)
		}
	}
	delete(c.entries, user)
	return true
}

// forget drops the account's credential.
func (c *offlineCache) forget(dn string) {
	if c == nil {
		return
	}
	c.forgets.Add(1)
	c.mu.Lock()
	removed := c.removeLocked(userKey(dn))
	c.mu.Unlock()
	if removed {
		c.markDirty()
	}
}

// lookup finds the account a login names while no DC can be reached: by its
// DN when the resolver knew it, else by the login keys the account was bound
// with. It returns the DN and userKey, or errNoOfflineEntry.
func (c *offlineCache) lookup(loginKey, dn string, now time.Time) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	user := ""
	if dn != "" {
		user = userKey(dn)
	} else {
		user = c.logins[loginKey]
	}
	e := c.entries[user]
	if e == nil {
		return "", "", errNoOfflineEntry
	}
	if now.Sub(e.verifiedAt) > c.cfg.MaxAge {
		c.removeLocked(user)
		c.markDirty()
		return "", "", errNoOfflineEntry
	}
	return e.dn, user, nil
}

// verify checks password against the account's credential while no DC can be
// reached: nil on a match, ErrOfflineRefused on a mismatch, ErrOfflineLimit
// once the account used up its failures in this outage, errNoOfflineEntry
// when there is nothing to check against.
func (c *offlineCache) verify(ctx context.Context, user, password string) error {
	c.outage.Store(true)
	epoch := c.epoch.Load()
	c.mu.Lock()
	e := c.entries[user]
	if e == nil {
		c.mu.Unlock()
		return errNoOfflineEntry
	}
	if e.failEpoch != epoch {
		e.fails, e.failEpoch = 0, epoch
	}
	if e.fails >= c.cfg.MaxFailures {
		c.mu.Unlock()
		return ErrOfflineLimit
	}
	e.fails++ // counted before the check, so concurrent guesses cannot overrun it
	salt, want, params := e.salt, e.hash, e.params
	c.mu.Unlock()

	undo := func() {
		c.mu.Lock()
		if e.fails > 0 && e.failEpoch == epoch {
			e.fails--
		}
		c.mu.Unlock()
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		undo()
		return fmt.Errorf("wait for an offline check: %w: %w", upstream.ErrUnavailable, ctx.Err())
	}
	got := c.hash(password, salt, params)
	<-c.sem
	if subtle.ConstantTimeCompare(got, want) != 1 {
		c.failures.Add(1)
		return ErrOfflineRefused
	}
	undo()
	c.successes.Add(1)
	return nil
}

// OfflineStats counts what the offline credential cache did.
type OfflineStats struct {
	// Entries is the accounts cached now.
	Entries int
	// Successes is the binds accepted offline; Failures those refused offline.
	Successes, Failures uint64
	// Skipped is the stores skipped because every hash slot was busy.
	Skipped uint64
}

func (c *offlineCache) stats() OfflineStats {
	if c == nil {
		return OfflineStats{}
	}
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return OfflineStats{Entries: n, Successes: c.successes.Load(), Failures: c.failures.Load(), Skipped: c.skipped.Load()}
}

// --- offline.file --------------------------------------------------------------

// load reads offline.file if it exists. A file that group or others can read
// is made 0600 first (with a warning); expired and malformed entries are
// dropped.
func (c *offlineCache) load() error {
	f, err := os.Open(c.cfg.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", c.cfg.File, err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", c.cfg.File, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("%s can be read by group or others (mode %04o) and chmod failed: %w", c.cfg.File, perm, err)
		}
		c.log.Warn("offline credential file could be read by group or others: made it 0600",
			zap.String("file", c.cfg.File), zap.String("mode", fmt.Sprintf("%04o", perm)))
	}
	data, err := io.ReadAll(io.LimitReader(f, offlineMaxFileBytes+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", c.cfg.File, err)
	}
	if len(data) > offlineMaxFileBytes {
		return fmt.Errorf("%s is larger than %d bytes", c.cfg.File, offlineMaxFileBytes)
	}
	dropped, err := c.parse(data, c.now())
	if err != nil {
		return fmt.Errorf("%s: %w", c.cfg.File, err)
	}
	c.log.Info("offline credentials loaded", zap.String("file", c.cfg.File),
		zap.Int("entries", len(c.entries)), zap.Int("dropped", dropped))
	return nil
}

// parse adds the entries of an offline file's content that are well formed,
// within bounds and not expired at now, and returns how many it dropped.
func (c *offlineCache) parse(data []byte, now time.Time) (dropped int, err error) {
	var file offlineFile
	if err := json.Unmarshal(data, &file); err != nil {
		return 0, fmt.Errorf("parse: %w", err)
	}
	if file.Version != offlineFileVersion {
		return 0, fmt.Errorf("version %d, want %d", file.Version, offlineFileVersion)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fe := range file.Entries {
		params := configs.Argon2{Time: fe.Time, MemoryKiB: fe.MemoryKiB, Threads: fe.Threads}
		if fe.DN == "" || len(fe.Salt) != offlineSaltLen || len(fe.Hash) != offlineHashLen || !validArgon2(params) ||
			now.Sub(fe.VerifiedAt) > c.cfg.MaxAge || fe.VerifiedAt.After(now.Add(time.Minute)) {
			dropped++
			continue
		}
		user := userKey(fe.DN)
		if old := c.entries[user]; old != nil && !old.verifiedAt.Before(fe.VerifiedAt) {
			dropped++
			continue
		}
		if _, dup := c.entries[user]; !dup && len(c.entries) >= c.cfg.MaxEntries {
			c.evictOldest()
		}
		c.removeLocked(user)
		e := &offlineEntry{dn: fe.DN, salt: fe.Salt, hash: fe.Hash, params: params, verifiedAt: fe.VerifiedAt, written: fe.VerifiedAt}
		c.entries[user] = e
		for i, l := range fe.Logins {
			if i == offlineMaxLogins {
				break
			}
			c.addLogin(e, user, l)
		}
	}
	return dropped, nil
}

// markDirty asks the writer to write offline.file.
func (c *offlineCache) markDirty() {
	if c.dirty == nil {
		return
	}
	c.pending.Store(true)
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// writeLoop writes offline.file when asked, at most once per
// offlineWriteInterval, until close.
func (c *offlineCache) writeLoop() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-c.dirty:
		}
		c.flush()
		t := time.NewTimer(offlineWriteInterval)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// flush writes offline.file now if anything changed since the last write.
func (c *offlineCache) flush() {
	if c == nil || c.dirty == nil {
		return
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if !c.pending.Swap(false) {
		return
	}
	c.mu.Lock()
	file := offlineFile{Version: offlineFileVersion, Entries: make([]offlineFileEntry, 0, len(c.entries))}
	for _, e := range c.entries {
		e.written = e.verifiedAt
		file.Entries = append(file.Entries, offlineFileEntry{
			DN: e.dn, Logins: append([]string(nil), e.logins...), Salt: e.salt, Hash: e.hash,
			Time: e.params.Time, MemoryKiB: e.params.MemoryKiB, Threads: e.params.Threads, VerifiedAt: e.verifiedAt,
		})
	}
	c.mu.Unlock()
	data, err := json.Marshal(file)
	if err == nil {
		err = writeFileAtomic(c.cfg.File, data)
	}
	if err != nil {
		c.pending.Store(true) // try again with the next change or at close
		c.log.Error("write the offline credential file", zap.String("file", c.cfg.File), zap.Error(err))
	}
}

// close stops the writer and writes what is left.
func (c *offlineCache) close() {
	if c == nil || c.dirty == nil {
		return
	}
	c.closed.Do(func() {
		close(c.stop)
		<-c.done
		c.flush()
	})
}

// writeFileAtomic replaces path with data: a temporary file (mode 0600) in the
// same directory, synced, renamed over path, and the directory synced, so a
// crash leaves the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // best effort: the rename is durable once the directory is
		_ = d.Close()
	}
	return nil
}
