package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
	"net"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// maxNegativePerUser bounds the wrong passwords remembered per account: past
// it the one expiring first is forgotten. The budget stops an account's wrong
// passwords reaching AD long before, so this only bounds memory.
const maxNegativePerUser = 16

// passwordMAC is HMAC-SHA256 of an account's key and a password under the
// process's random key: the negative cache never holds a password, and the
// value is worthless outside this process.
type passwordMAC [sha256.Size]byte

// macKey computes passwordMACs under one random key that exists only in this
// process's memory. Its HMAC states are pooled: building HMAC-SHA256 afresh
// for every bind cost more allocations than the rest of a cached bind.
type macKey struct{ pool sync.Pool }

// macState is one pooled HMAC with its scratch space.
type macState struct {
	h   hash.Hash
	buf []byte
	out passwordMAC
}

// newMACKey returns a macKey under a new random key.
func newMACKey() (*macKey, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	k := &macKey{}
	k.pool.New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	return k, nil
}

// sum returns the MAC of user, a NUL and password.
func (k *macKey) sum(user, password string) passwordMAC {
	s := k.pool.Get().(*macState)
	defer k.pool.Put(s)
	s.h.Reset()
	s.buf = append(append(append(s.buf[:0], user...), 0), password...)
	s.h.Write(s.buf)
	clear(s.buf) // no password lingers in the pool
	s.h.Sum(s.out[:0])
	return s.out
}

// lockoutGuard keeps the gateway from locking AD accounts (AD-FACTS.md: AADDS
// locks after 5 bad passwords within 2 minutes):
//
//   - the negative cache answers the same wrong password for the same account
//     again within lockout.negative_ttl with 49, without asking AD;
//   - the per-user budget lets at most lockout.user_budget distinct wrong
//     passwords of an account reach AD; then every attempt of that account,
//     the right password included, is answered 49 here until
//     lockout.user_window has passed since the last wrong one. Letting a right
//     password through would mean sending every guess to AD to find out, so an
//     attacker cycling passwords would lock the account anyway. The count
//     starts over the way AD's does (a window after the last wrong password,
//     not a sliding window, which would let a slow attacker reach AD's
//     threshold), and attempts in flight are counted before they reach AD, so
//     concurrent guesses cannot overrun it: an attempt that would exceed it
//     waits for those in flight to end;
//   - the per-client rate limit answers 51 to a client address that failed
//     more than lockout.client_rate binds per second (burst
//     lockout.client_burst), before any traffic.
//
// Per-account state is keyed on the canonical DN (userKey) and created only for
// logins that resolved to an account, so random names cannot fill it; it and
// the per-client limiters live in bounded LRU caches. It is safe for concurrent
// use.
type lockoutGuard struct {
	key    *macKey
	negTTL time.Duration
	budget int
	window time.Duration

	usersMu sync.Mutex // makes get-or-create of a user's state atomic
	users   *lru.Cache[string, *userState]

	clientRate  rate.Limit
	clientBurst int
	clientsMu   sync.Mutex
	clients     *lru.Cache[string, *rate.Limiter]
}

// userState is one account's negative cache and budget.
type userState struct {
	mu sync.Mutex
	// neg maps the MACs of wrong passwords to when they stop being refused here.
	neg map[passwordMAC]time.Time
	// bad is the wrong passwords AD refused since the count last started over,
	// lastBad when the latest of them was refused.
	bad     int
	lastBad time.Time
	// pending is the attempts admitted and not yet decided; wake is closed and
	// replaced each time one ends, for attempts waiting for room in the budget.
	pending int
	wake    chan struct{}
}

// newLockoutGuard builds the guard from cfg; nil when every part is off.
func newLockoutGuard(cfg configs.Lockout) (*lockoutGuard, error) {
	userOn := cfg.NegativeTTL > 0 || cfg.UserBudget > 0
	clientOn := cfg.ClientRate > 0
	if !userOn && !clientOn {
		return nil, nil
	}
	def := configs.Default().Lockout
	g := &lockoutGuard{negTTL: max(cfg.NegativeTTL, 0), budget: max(cfg.UserBudget, 0), window: cfg.UserWindow}
	if g.budget > 0 && g.window <= 0 {
		g.window = def.UserWindow
	}
	if userOn {
		key, err := newMACKey()
		if err != nil {
			return nil, fmt.Errorf("lockout guard key: %w", err)
		}
		g.key = key
		size := cfg.MaxUsers
		if size <= 0 {
			size = def.MaxUsers
		}
		users, err := lru.New[string, *userState](size)
		if err != nil {
			return nil, fmt.Errorf("lockout guard: %w", err)
		}
		g.users = users
	}
	if clientOn {
		g.clientRate, g.clientBurst = rate.Limit(cfg.ClientRate), cfg.ClientBurst
		if g.clientBurst < 1 {
			g.clientBurst = def.ClientBurst
		}
		size := cfg.MaxClients
		if size <= 0 {
			size = def.MaxClients
		}
		clients, err := lru.New[string, *rate.Limiter](size)
		if err != nil {
			return nil, fmt.Errorf("lockout guard: %w", err)
		}
		g.clients = clients
	}
	return g, nil
}

// checkClient returns the client address's bucket of failed binds, or
// ErrRateLimited when it is empty. Nothing is taken: a bind that then fails
// takes its token with clientFailed. Taking one up front and giving it back
// on success would refuse concurrent good binds from one busy PBX; this way
// concurrent failures can overrun the bucket by the binds in flight, which
// listen.max_in_flight bounds and the per-user budget makes harmless to AD.
func (g *lockoutGuard) checkClient(addr string, now time.Time) (*rate.Limiter, error) {
	if g == nil || g.clients == nil {
		return nil, nil
	}
	ip := clientIP(addr)
	g.clientsMu.Lock()
	lim, ok := g.clients.Get(ip)
	if !ok {
		lim = rate.NewLimiter(g.clientRate, g.clientBurst)
		g.clients.Add(ip, lim)
	}
	g.clientsMu.Unlock()
	if lim.TokensAt(now) < 1 {
		return nil, fmt.Errorf("%w (%s)", ErrRateLimited, ip)
	}
	return lim, nil
}

// clientFailed takes one failed bind from the client's bucket.
func clientFailed(lim *rate.Limiter, now time.Time) {
	if lim != nil {
		lim.AllowN(now, 1)
	}
}

// clientIP is the address without its port; the rate limit is per host.
func clientIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// userTicket is an attempt admitted for an account; exactly one of its
// methods ends it.
type userTicket struct {
	g   *lockoutGuard
	st  *userState
	mac passwordMAC
}

// admit decides whether an attempt for the account user with password may go
// upstream: ErrNegativeCache or ErrUserBudget when it is answered here. When
// the budget has room only for the attempts already in flight, it waits for
// one of them to end, until ctx ends: then the error wraps
// upstream.ErrUnavailable (52), since attempts that outlive the bind's timeout
// are hung at a DC that does not answer.
//
// now is the time of the request: the guard reads no clock of its own.
func (g *lockoutGuard) admit(ctx context.Context, user, password string, now time.Time) (userTicket, error) {
	if g == nil || g.users == nil {
		return userTicket{}, nil
	}
	t := userTicket{g: g, st: g.state(user), mac: g.key.sum(user, password)}
	st := t.st
	for {
		st.mu.Lock()
		if exp, ok := st.neg[t.mac]; ok {
			if now.Before(exp) {
				st.mu.Unlock()
				return userTicket{}, ErrNegativeCache
			}
			delete(st.neg, t.mac)
		}
		if g.budget == 0 {
			st.mu.Unlock()
			return t, nil
		}
		if st.bad > 0 && now.Sub(st.lastBad) >= g.window {
			st.bad = 0 // AD's count has started over too
		}
		if st.bad >= g.budget {
			st.mu.Unlock()
			return userTicket{}, ErrUserBudget
		}
		if st.bad+st.pending < g.budget {
			st.pending++
			st.mu.Unlock()
			return t, nil
		}
		if st.wake == nil {
			st.wake = make(chan struct{})
		}
		wake := st.wake
		st.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return userTicket{}, fmt.Errorf("wait for the account's attempts in flight: %w: %w", upstream.ErrUnavailable, ctx.Err())
		}
	}
}

// state returns the account's state, creating it.
func (g *lockoutGuard) state(user string) *userState {
	g.usersMu.Lock()
	defer g.usersMu.Unlock()
	st, ok := g.users.Get(user)
	if !ok {
		st = &userState{}
		g.users.Add(user, st)
	}
	return st
}

// succeeded ends an attempt AD accepted: the account's wrong passwords and
// count are forgotten.
func (t userTicket) succeeded() {
	if t.st == nil {
		return
	}
	t.st.mu.Lock()
	defer t.st.mu.Unlock()
	t.st.neg, t.st.bad, t.st.lastBad = nil, 0, time.Time{}
	t.st.done()
}

// wrongPassword ends an attempt AD refused for a wrong password at now: it is
// remembered and counted.
func (t userTicket) wrongPassword(now time.Time) {
	if t.st == nil {
		return
	}
	st, g := t.st, t.g
	st.mu.Lock()
	defer st.mu.Unlock()
	if g.negTTL > 0 {
		if st.neg == nil {
			st.neg = make(map[passwordMAC]time.Time)
		}
		if len(st.neg) >= maxNegativePerUser {
			st.dropFirstExpiring()
		}
		st.neg[t.mac] = now.Add(g.negTTL)
	}
	if g.budget > 0 {
		if st.bad > 0 && now.Sub(st.lastBad) >= g.window {
			st.bad = 0
		}
		st.bad++
		st.lastBad = now
	}
	st.done()
}

// other ends an attempt that neither succeeded nor was a wrong password (an
// outage, or AD refusing for another reason).
func (t userTicket) other() {
	if t.st == nil {
		return
	}
	t.st.mu.Lock()
	defer t.st.mu.Unlock()
	t.st.done()
}

// done frees the attempt's place in the budget. The caller holds s.mu.
func (s *userState) done() {
	if s.pending > 0 {
		s.pending--
	}
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

func (s *userState) dropFirstExpiring() {
	var first passwordMAC
	var at time.Time
	for m, exp := range s.neg {
		if at.IsZero() || exp.Before(at) {
			first, at = m, exp
		}
	}
	delete(s.neg, first)
}

// forgetPasswords drops the account's remembered wrong passwords (its password
// may have changed, and an old wrong one may be the new right one); its count
// stays, as AD's does.
func (g *lockoutGuard) forgetPasswords(user string) {
	if g == nil || g.users == nil {
		return
	}
	st, ok := g.users.Peek(user)
	if !ok {
		return
	}
	st.mu.Lock()
	st.neg = nil
	st.mu.Unlock()
}

// userKey is the key of an account in the guard and the offline cache: its DN
// as AD returned it, folded (AD compares DNs ignoring case), so every spelling
// of a login is one account.
func userKey(dn string) string {
	p, err := ldap.ParseDN(dn)
	if err != nil {
		return "unparsed:" + dn
	}
	return formatDN(p, true)
}

// wrongPasswordCode reports whether AD's refusal code may have counted against
// the account's lockout: a wrong password (52e), or a 49 without a code this
// gateway knows to mean the password was right (530–533, 701, 773: reported
// only for the right password) or that the account is gone or locked (525,
// 775). Unknown codes count, to be safe.
func wrongPasswordCode(code int, adCode string) bool {
	if code != ldap.LDAPResultInvalidCredentials {
		return false
	}
	switch adCode {
	case "525", "530", "531", "532", "533", "701", "773", "775":
		return false
	}
	return true
}
