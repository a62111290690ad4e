package adsim

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// Directory facts beyond the test bed's contract.
const (
	// ConfigDN is the Configuration naming context. Its objects (the NTDS Settings
	// of every DC) are readable by a search based in it, never by one from BaseDN.
	ConfigDN = "CN=Configuration," + testbed.BaseDN
	// SchemaDN is the Schema naming context (listed in the rootDSE only).
	SchemaDN = "CN=Schema," + ConfigDN
	// BuiltinUsersDN is the CN=Users container that holds Administrator.
	BuiltinUsersDN = "CN=Users," + testbed.BaseDN
	// MaxPageSize is AD's LDAP policy limit: a page never holds more entries, and
	// a search without the paged-results control returns at most this many.
	MaxPageSize = 1000
	// DefaultMaxPasswordAge is AADDS' default maximum password age.
	DefaultMaxPasswordAge = 90 * 24 * time.Hour
)

// ErrNoSuchAccount means no user account has the given login.
var ErrNoSuchAccount = errors.New("no such account")

// ErrNoSuchObject means no object has the given DN.
var ErrNoSuchObject = errors.New("no such object")

// ErrExists means an object with that DN or login already exists.
var ErrExists = errors.New("object already exists")

// LockoutPolicy is the domain's account lockout policy.
type LockoutPolicy struct {
	// Threshold is the number of bad passwords that locks an account; 0 never locks.
	Threshold int
	// ObservationWindow is how long after the last bad password the bad count starts over.
	ObservationWindow time.Duration
	// Duration is how long a lockout lasts; 0 means until Unlock.
	Duration time.Duration
}

// DefaultLockoutPolicy is AADDS' policy: 5 bad passwords within 2 minutes lock
// the account for 30 minutes.
func DefaultLockoutPolicy() LockoutPolicy {
	return LockoutPolicy{Threshold: 5, ObservationWindow: 2 * time.Minute, Duration: 30 * time.Minute}
}

// Config configures a Directory. The zero value is the test bed's directory.
type Config struct {
	// Clock returns the current time for lockouts, password and account expiry,
	// pwdLastSet and whenChanged. Default time.Now.
	Clock func() time.Time
	// Lockout is the lockout policy. Default (nil) DefaultLockoutPolicy().
	Lockout *LockoutPolicy
	// MaxPasswordAge is the domain's maximum password age (binds after it give
	// 532 unless the account's password never expires). Default (0) DefaultMaxPasswordAge.
	MaxPasswordAge time.Duration
	// LoadUsers is the number of bulk users user0000… seeded in OU=Load Users,
	// as testbed.LoadUser describes them: 0 (the default) to MaxLoadUsers.
	LoadUsers int
}

// MaxLoadUsers bounds Config.LoadUsers: sync.max_entries' default, so the
// benchmark can sync 100,000 simulated users and more.
const MaxLoadUsers = 200_000

// Directory is the data that every DC of one simulated domain serves: objects,
// accounts with their lockout state, the USN counter and the CA that signs the
// DCs' certificates. It is safe for concurrent use.
type Directory struct {
	now       func() time.Time
	lockout   LockoutPolicy
	maxPwdAge time.Duration
	ca        *certs.CA
	caPool    *x509.CertPool
	configNDN string // ldapfilter.NormalizeDN(ConfigDN)

	mu     sync.RWMutex
	usn    int64
	byDN   map[string]*slot // NormalizeDN → object, both naming contexts
	domain []*slot          // the domain naming context in creation order
	config []*slot          // the configuration naming context
	bySAM  map[string]*slot // lower-case sAMAccountName
	byUPN  map[string]*slot // lower-case userPrincipalName
	byGUID map[string]*slot // raw objectGUID
	names  map[string]*account
	dcs    map[string]bool // DC names in use
}

// account is the secret and the lockout state of a user object.
type account struct {
	slot     *slot
	password string
	// binds counts every bind request that named this account, on every DC.
	binds atomic.Int64
	// The lockout state, guarded by Directory.mu. Times are FILETIMEs.
	badPwdCount     int64
	badPasswordTime int64
	lockoutTime     int64
	lockedForever   bool // locked by Lock: only Unlock ends it
	names           []string
}

// NewDirectory builds a directory seeded with the test bed's accounts and groups.
func NewDirectory(cfg Config) (*Directory, error) {
	d := &Directory{
		now:       cfg.Clock,
		lockout:   DefaultLockoutPolicy(),
		maxPwdAge: cfg.MaxPasswordAge,
		byDN:      make(map[string]*slot),
		bySAM:     make(map[string]*slot),
		byUPN:     make(map[string]*slot),
		byGUID:    make(map[string]*slot),
		names:     make(map[string]*account),
		dcs:       make(map[string]bool),
	}
	if d.now == nil {
		d.now = time.Now
	}
	var err error
	if d.configNDN, err = ldapfilter.NormalizeDN(ConfigDN); err != nil {
		return nil, fmt.Errorf("new directory: %w", err)
	}
	if cfg.Lockout != nil {
		d.lockout = *cfg.Lockout
	}
	if d.maxPwdAge <= 0 {
		d.maxPwdAge = DefaultMaxPasswordAge
	}
	if cfg.LoadUsers < 0 || cfg.LoadUsers > MaxLoadUsers {
		return nil, fmt.Errorf("new directory: load users %d not in 0..%d", cfg.LoadUsers, MaxLoadUsers)
	}
	ca, err := certs.GenerateCA("adsim "+testbed.Realm+" CA", certs.DefaultCAValidity)
	if err != nil {
		return nil, fmt.Errorf("new directory: %w", err)
	}
	d.ca = ca
	d.caPool = x509.NewCertPool()
	d.caPool.AddCert(ca.Certificate())
	if err := d.seed(cfg.LoadUsers); err != nil {
		return nil, fmt.Errorf("new directory: seed: %w", err)
	}
	return d, nil
}

// CACertPEM returns the PEM certificate of the CA that signs every DC's
// certificate: the bundle a client trusts.
func (d *Directory) CACertPEM() []byte { return d.ca.CertPEM() }

// CertPool returns a pool holding only the directory's CA.
func (d *Directory) CertPool() *x509.CertPool { return d.caPool.Clone() }

// ClientTLSConfig returns a verifying client configuration (certs.ClientConfig)
// that trusts the directory's CA and expects serverName, e.g. DC.HostName().
func (d *Directory) ClientTLSConfig(serverName string) *tls.Config {
	return certs.ClientConfig(d.CertPool(), serverName)
}

// HighestCommittedUSN returns the USN of the latest change (DCs add their USNOffset).
func (d *Directory) HighestCommittedUSN() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.usn
}

// AccountState is a snapshot of one account's bind-related state.
type AccountState struct {
	// DN is the account's current DN.
	DN string
	// Binds counts the bind requests that named the account, on every DC.
	Binds int64
	// BadPwdCount is the number of bad passwords in the current observation window.
	BadPwdCount int64
	// LockoutTime is when the account was locked out, zero when it is not.
	LockoutTime time.Time
	// Locked says whether a bind now gets 775.
	Locked bool
}

// Account returns the state of the account whose sAMAccountName is login.
func (d *Directory) Account(login string) (AccountState, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	s := d.bySAM[strings.ToLower(login)]
	if s == nil || s.acct == nil {
		return AccountState{}, false
	}
	a := s.acct
	st := AccountState{DN: s.e.dn, Binds: a.binds.Load(), BadPwdCount: a.badPwdCount, Locked: d.locked(a, fileTime(d.now()))}
	if a.lockoutTime != 0 {
		st.LockoutTime = fromFileTime(a.lockoutTime)
	}
	return st, true
}

// Entry returns a copy of the attributes of the object named dn (any spelling).
func (d *Directory) Entry(dn string) (map[string][]string, bool) {
	ndn, err := ldapfilter.NormalizeDN(dn)
	if err != nil {
		return nil, false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	s := d.byDN[ndn]
	if s == nil {
		return nil, false
	}
	out := make(map[string][]string, len(s.e.attrs))
	for _, a := range s.e.attrs {
		out[a.name] = append([]string(nil), a.values...)
	}
	return out, true
}

// lookupAccount resolves a bind name the way AD does: a DN (any case or
// escaping), a UPN, NetBIOS\login or a bare sAMAccountName. Callers hold d.mu.
func (d *Directory) lookupAccount(name string) *account {
	// The exact stored spellings come first: they cost no allocation.
	if a := d.names[name]; a != nil {
		return a
	}
	lower := strings.ToLower(name)
	if a := d.names[lower]; a != nil {
		return a
	}
	if strings.IndexByte(name, '=') >= 0 {
		if ndn, err := ldapfilter.NormalizeDN(name); err == nil {
			return d.names[ndn]
		}
	}
	return nil
}

// accountNames lists the keys under which lookupAccount finds an account.
func accountNames(e *entry) []string {
	names := []string{e.dn, strings.ToLower(e.dn), e.ndn}
	if sam := e.first("sAMAccountName"); sam != "" {
		l := strings.ToLower(sam)
		names = append(names, l, strings.ToLower(testbed.NetBIOS)+`\`+l)
	}
	if upn := e.first("userPrincipalName"); upn != "" {
		names = append(names, strings.ToLower(upn))
	}
	return names
}

// put stores e as the current version of s and keeps every index in step.
// Callers hold d.mu for writing.
func (d *Directory) put(s *slot, e *entry) {
	if old := s.e; old != nil {
		d.unindex(s, old)
	}
	s.e = e
	if s.deleted {
		return
	}
	d.byDN[e.ndn] = s
	if v := e.first("sAMAccountName"); v != "" {
		d.bySAM[strings.ToLower(v)] = s
	}
	if v := e.first("userPrincipalName"); v != "" {
		d.byUPN[strings.ToLower(v)] = s
	}
	if v := e.first("objectGUID"); v != "" {
		d.byGUID[v] = s
	}
	if a := s.acct; a != nil {
		a.names = accountNames(e)
		for _, n := range a.names {
			d.names[n] = a
		}
	}
}

func (d *Directory) unindex(s *slot, e *entry) {
	deleteIf(d.byDN, e.ndn, s)
	deleteIf(d.bySAM, strings.ToLower(e.first("sAMAccountName")), s)
	deleteIf(d.byUPN, strings.ToLower(e.first("userPrincipalName")), s)
	deleteIf(d.byGUID, e.first("objectGUID"), s)
	if a := s.acct; a != nil {
		for _, n := range a.names {
			if d.names[n] == a {
				delete(d.names, n)
			}
		}
		a.names = nil
	}
}

func deleteIf[V comparable](m map[string]V, k string, v V) {
	if m[k] == v {
		delete(m, k)
	}
}

// add creates an object. Callers hold d.mu for writing.
func (d *Directory) add(e *entry, acct *account) (*slot, error) {
	if d.byDN[e.ndn] != nil {
		return nil, fmt.Errorf("add %s: %w", e.dn, ErrExists)
	}
	if e.parent != "" && d.byDN[e.parent] == nil && len(d.byDN) > 0 {
		// Only the domain, the first object, has no parent in the directory.
		return nil, fmt.Errorf("add %s: parent: %w", e.dn, ErrNoSuchObject)
	}
	s := &slot{acct: acct}
	if acct != nil {
		acct.slot = s
	}
	d.put(s, e)
	if e.isUnder(d.configNDN) {
		d.config = append(d.config, s)
	} else {
		d.domain = append(d.domain, s)
	}
	return s, nil
}

// nextUSN commits a change: it returns the new highestCommittedUSN and the
// attributes that record it on the changed object.
func (d *Directory) nextUSN(now time.Time) (int64, []attribute) {
	d.usn++
	return d.usn, []attribute{attr("uSNChanged", itoa(d.usn)), attr("whenChanged", generalizedTime(now))}
}

// guid derives a stable objectGUID from what identifies an object's creation.
func guid(parts ...string) string {
	sum := sha256.Sum256([]byte("adsim objectGUID\x00" + strings.Join(parts, "\x00")))
	return string(sum[:16])
}

// syntaxOf tells the filter evaluator how AD compares an attribute.
func syntaxOf(name string) ldapfilter.Syntax {
	for _, n := range [...]string{"distinguishedName", "member", "memberOf", "objectCategory", "manager", "managedBy", "dsServiceName", "serverReference"} {
		if strings.EqualFold(name, n) {
			return ldapfilter.SyntaxDN
		}
	}
	for _, n := range [...]string{"objectGUID", "objectSid", "invocationId"} {
		if strings.EqualFold(name, n) {
			return ldapfilter.SyntaxOctets
		}
	}
	return ldapfilter.SyntaxString
}
