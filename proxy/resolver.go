package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
)

// Searcher runs a search as the service account on a healthy DC and reports
// which DC answered. *upstream.Cluster satisfies it.
type Searcher interface {
	Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, string, error)
}

// View answers login lookups from the directory view (the synced snapshot of
// the users in scope) without asking AD. usersync.View satisfies it, wired in
// cmd.
type View interface {
	// LookupLogin returns the identity of the one user the login names, and
	// false when the view does not know it (the resolver then searches AD).
	LookupLogin(l Login) (Identity, bool)
}

// Identity is the user a login resolved to, as AD returned it.
type Identity struct {
	// DN is the user's distinguished name exactly as AD returned it.
	DN string
	// SAMAccountName is the user's sAMAccountName.
	SAMAccountName string
	// UserPrincipalName is the user's userPrincipalName, "" if none.
	UserPrincipalName string
	// ObjectGUID is the user's objectGUID in its usual string form
	// ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"), "" if AD did not return one.
	ObjectGUID string
}

// Source says where a resolved identity came from.
type Source string

// The sources of an Identity.
const (
	SourceCache  Source = "cache"
	SourceView   Source = "view"
	SourceSearch Source = "search"
)

// Resolution is the result of Resolver.Resolve.
type Resolution struct {
	Identity
	// From is where the identity came from.
	From Source
	// DC is the domain controller that answered the search, "" when no search ran.
	DC string
	// userKey is the account's key in the lockout guard and the offline cache
	// (userKey of DN), computed once when the identity was found and cached
	// with it: a bind on a cached DN parses no DN.
	userKey string
}

// resolved is an identity checked to be in scope, with its user key.
type resolved struct {
	Identity
	userKey string
}

// searchAttributes are the attributes the resolver reads; the DN comes with
// every entry.
var searchAttributes = []string{"sAMAccountName", "objectGUID", "userPrincipalName"}

// Resolver maps a Login to the Identity of exactly one user entry, through a
// DN cache, the optional directory view and a search as the service account.
type Resolver struct {
	search   Searcher
	view     View
	base     *ldap.DN
	userBase string
	filter   string
	realm    string
	cache    *lru.Cache[string, cachedIdentity]
	ttl      atomic.Int64     // cache.dn.ttl in force, in nanoseconds
	now      func() time.Time // ages the cache entries; time.Now but in tests
	log      *zap.Logger
}

// cachedIdentity is a DN cache entry: an identity and when it was cached. It
// expires by the TTL in force, so a changed cache.dn.ttl applies to the
// entries already cached.
type cachedIdentity struct {
	id    resolved
	added time.Time
}

// NewResolver builds a Resolver from the upstream configuration (BaseDN,
// UserBaseDN, UserFilter; empty fields take configs.Default's values) and the
// DN cache's size and TTL (SetCache changes them). Of the options only
// WithView applies.
func NewResolver(up configs.Upstream, cache configs.CacheSize, s Searcher, log *zap.Logger, opts ...AuthOption) (*Resolver, error) {
	o := buildOptions(opts)
	if s == nil {
		return nil, errors.New("new resolver: nil searcher")
	}
	if log == nil {
		log = zap.NewNop()
	}
	def := configs.Default()
	base, err := ldap.ParseDN(up.BaseDN)
	if err != nil {
		return nil, fmt.Errorf("new resolver: upstream.base_dn: %w", err)
	}
	if len(base.RDNs) == 0 {
		return nil, errors.New("new resolver: upstream.base_dn is empty")
	}
	userBase := up.UserBaseDN
	if userBase == "" {
		userBase = up.BaseDN
	}
	ub, err := ldap.ParseDN(userBase)
	if err != nil {
		return nil, fmt.Errorf("new resolver: upstream.user_base_dn: %w", err)
	}
	if !base.EqualFold(ub) && !base.AncestorOfFold(ub) {
		return nil, errors.New("new resolver: upstream.user_base_dn is not inside upstream.base_dn")
	}
	filter := strings.TrimSpace(up.UserFilter)
	if filter == "" {
		filter = def.Upstream.UserFilter
	}
	if !strings.HasPrefix(filter, "(") {
		filter = "(" + filter + ")"
	}
	if _, err := ldap.CompileFilter(filter); err != nil {
		return nil, fmt.Errorf("new resolver: upstream.user_filter: %w", err)
	}
	size, ttl := cacheBounds(cache)
	lc, err := lru.New[string, cachedIdentity](size)
	if err != nil {
		return nil, fmt.Errorf("new resolver: cache.dn.size: %w", err)
	}
	r := &Resolver{
		search:   s,
		view:     o.view,
		base:     base,
		userBase: userBase,
		filter:   filter,
		realm:    realmOf(base),
		cache:    lc,
		now:      time.Now,
		log:      log.Named("resolver"),
	}
	r.ttl.Store(int64(ttl))
	return r, nil
}

// cacheBounds returns the DN cache's size and TTL, configs.Default's where c
// has none.
func cacheBounds(c configs.CacheSize) (int, time.Duration) {
	def := configs.Default().Cache.DN
	size, ttl := c.Size, c.TTL
	if size <= 0 {
		size = def.Size
	}
	if ttl <= 0 {
		ttl = def.TTL
	}
	return size, ttl
}

// SetCache applies a new cache.dn while the resolver runs, keeping what is
// cached: a smaller size drops the least recently used entries, and the TTL
// counts from when each entry was cached, so a shorter one also ends entries
// cached before. Values of 0 take configs.Default's.
func (r *Resolver) SetCache(c configs.CacheSize) {
	size, ttl := cacheBounds(c)
	r.ttl.Store(int64(ttl))
	r.cache.Resize(size)
}

// cached returns the unexpired cached identity of a login key.
func (r *Resolver) cached(key string) (resolved, bool) {
	e, ok := r.cache.Get(key)
	if !ok {
		return resolved{}, false
	}
	if r.now().Sub(e.added) >= time.Duration(r.ttl.Load()) {
		r.cache.Remove(key)
		return resolved{}, false
	}
	return e.id, true
}

// remember caches the identity of a login key.
func (r *Resolver) remember(key string, id resolved) {
	r.cache.Add(key, cachedIdentity{id: id, added: r.now()})
}

// realmOf derives the domain's DNS name from the trailing DC= components of
// the base DN: DC=aadds,DC=example,DC=test → aadds.example.test.
func realmOf(base *ldap.DN) string {
	var labels []string
	for i := len(base.RDNs) - 1; i >= 0; i-- {
		rdn := base.RDNs[i]
		if len(rdn.Attributes) != 1 || !strings.EqualFold(rdn.Attributes[0].Type, "DC") {
			break
		}
		labels = append([]string{rdn.Attributes[0].Value}, labels...)
	}
	return strings.Join(labels, ".")
}

// Invalidate drops the cached identity of a login key (Login.Key), e.g. when a
// bind suggests the DN moved.
func (r *Resolver) Invalidate(key string) {
	r.cache.Remove(key)
}

// Resolve returns the identity of the one user entry the login names: from the
// DN cache, the view, or a search. A DN outside the base is refused before any
// traffic (ErrOutsideBase); no entry is ErrUserNotFound, more than one
// ErrAmbiguous; a directory that cannot answer gives the upstream's error or
// ErrLookupFailed, never ErrUserNotFound.
func (r *Resolver) Resolve(ctx context.Context, l Login) (Resolution, error) {
	if l.Kind == LoginDN && !r.inBase(l.dn) {
		return Resolution{}, fmt.Errorf("resolve %s: %w", l.Kind, ErrOutsideBase)
	}
	if c, ok := r.cached(l.Key); ok {
		return Resolution{Identity: c.Identity, From: SourceCache, userKey: c.userKey}, nil
	}
	if r.view != nil {
		if id, ok := r.view.LookupLogin(l); ok {
			c, err := r.checkIdentity(id)
			if err != nil {
				return Resolution{}, err
			}
			r.remember(l.Key, c)
			return Resolution{Identity: id, From: SourceView, userKey: c.userKey}, nil
		}
	}
	c, dc, err := r.lookup(ctx, l)
	if err != nil {
		return Resolution{DC: dc}, err
	}
	r.remember(l.Key, c)
	return Resolution{Identity: c.Identity, From: SourceSearch, DC: dc, userKey: c.userKey}, nil
}

func (r *Resolver) lookup(ctx context.Context, l Login) (resolved, string, error) {
	switch l.Kind {
	case LoginSAM:
		return r.searchOne(ctx, r.userBase, ldap.ScopeWholeSubtree, r.userFilterFor("sAMAccountName", l.Value))
	case LoginUPN:
		id, dc, err := r.searchOne(ctx, r.userBase, ldap.ScopeWholeSubtree, r.userFilterFor("userPrincipalName", l.Value))
		if !errors.Is(err, ErrUserNotFound) {
			return id, dc, err
		}
		// AADDS users without a userPrincipalName in the domain's own suffix
		// still log in as sam@realm, which AD itself accepts.
		local, suffix, _ := l.UPNParts()
		if r.realm == "" || !strings.EqualFold(suffix, r.realm) || checkSAM(local) != nil {
			return id, dc, err
		}
		return r.searchOne(ctx, r.userBase, ldap.ScopeWholeSubtree, r.userFilterFor("sAMAccountName", local))
	case LoginDN:
		// A base search with the user filter: the identity is the DN as AD
		// spells it, and a DN that is not a user is refused.
		return r.searchOne(ctx, l.Value, ldap.ScopeBaseObject, r.filter)
	default:
		return resolved{}, "", fmt.Errorf("resolve: %w: kind %v", ErrInvalidLogin, l.Kind)
	}
}

// userFilterFor is the only place a typed value enters a filter, and it goes
// through ldap.EscapeFilter.
func (r *Resolver) userFilterFor(attr, value string) string {
	return "(&" + r.filter + "(" + attr + "=" + ldap.EscapeFilter(value) + "))"
}

func (r *Resolver) searchOne(ctx context.Context, base string, scope int, filter string) (resolved, string, error) {
	// Two entries are enough to know the login is ambiguous.
	req := ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 2, 0, false, filter, searchAttributes, nil)
	req.EnforceSizeLimit = true
	res, dc, err := r.search.Search(ctx, req)
	r.log.Debug("user search", zap.String("dn", base), zap.String("filter", filter),
		zap.String("upstream", dc), zap.Error(err))
	switch {
	case ldap.IsErrorAnyOf(err, ldap.LDAPResultSizeLimitExceeded), errors.Is(err, ldap.ErrSizeLimitExceeded):
		return resolved{}, dc, fmt.Errorf("search user: %w", ErrAmbiguous)
	case scope == ldap.ScopeBaseObject && ldap.IsErrorAnyOf(err, ldap.LDAPResultNoSuchObject, ldap.LDAPResultInvalidDNSyntax):
		return resolved{}, dc, fmt.Errorf("search user: %w", ErrUserNotFound)
	case err != nil && isLDAPResult(err):
		return resolved{}, dc, fmt.Errorf("search user: %w: %w", ErrLookupFailed, err)
	case err != nil:
		return resolved{}, dc, fmt.Errorf("search user: %w", err)
	}
	// Search references (AD's referrals to other partitions) are not entries.
	var entries []*ldap.Entry
	if res != nil {
		entries = res.Entries
	}
	switch len(entries) {
	case 0:
		return resolved{}, dc, fmt.Errorf("search user: %w", ErrUserNotFound)
	case 1:
	default:
		return resolved{}, dc, fmt.Errorf("search user: %w", ErrAmbiguous)
	}
	e := entries[0]
	id := Identity{
		DN:                e.DN,
		SAMAccountName:    e.GetEqualFoldAttributeValue("sAMAccountName"),
		UserPrincipalName: e.GetEqualFoldAttributeValue("userPrincipalName"),
		ObjectGUID:        formatGUID(e.GetEqualFoldRawAttributeValue("objectGUID")),
	}
	c, err := r.checkIdentity(id)
	if err != nil {
		return resolved{}, dc, err
	}
	return c, dc, nil
}

// isLDAPResult reports whether err carries a result code AD sent (go-ldap's
// own codes, 200 and up, are local failures).
func isLDAPResult(err error) bool {
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork
}

// checkIdentity refuses an identity whose DN is not inside the base: the bind
// goes to that DN, so it has to be in scope whatever the search returned. It
// returns the identity with its user key, from the same parse of the DN.
func (r *Resolver) checkIdentity(id Identity) (resolved, error) {
	dn, err := ldap.ParseDN(id.DN)
	if err != nil || !r.inBase(dn) {
		return resolved{}, fmt.Errorf("resolved dn: %w", ErrOutsideBase)
	}
	return resolved{Identity: id, userKey: formatDN(dn, true)}, nil
}

// inBase compares RDN by RDN, ignoring case: a string suffix test would take
// "CN=x,DC=evilaadds,DC=example,DC=test" for a child of "DC=aadds,…".
func (r *Resolver) inBase(dn *ldap.DN) bool {
	return dn != nil && r.base.AncestorOfFold(dn)
}

// formatGUID renders AD's 16-byte objectGUID (the first three fields little
// endian) the way AD tools print it.
func formatGUID(b []byte) string {
	if len(b) != 16 {
		return ""
	}
	const hexDigits = "0123456789abcdef"
	order := []int{3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15}
	out := make([]byte, 0, 36)
	for _, i := range order {
		if i < 0 {
			out = append(out, '-')
			continue
		}
		out = append(out, hexDigits[b[i]>>4], hexDigits[b[i]&0xf])
	}
	return string(out)
}
