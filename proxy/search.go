package proxy

// Searches on the listener: pascom's "LDAP authentication" tab (and Apache,
// Grafana, most LDAP clients) binds as a proxy user, searches
// (sAMAccountName=<login>) under a base and binds with the DN it found; its
// user import runs paged searches. The listener answers them as a read-only
// directory in front of AD:
//
//   - rights: a successful bind as search.proxy_user grants search rights on
//     that connection; other users' binds only with search.allow_user_search,
//     anonymous connections only with search.allow_anonymous_search (the
//     rootDSE is always readable). Otherwise 50.
//   - scope: the base must be search.base_dn or under it, else 32 with an empty
//     matchedDN; nothing goes upstream.
//   - forwarding: base, scope, filter (re-encoded, see reencodeFilter), size and
//     time limits and typesOnly go to AD on the service account's pooled
//     connections; referrals are neither chased nor passed on.
//   - attributes: only those in search.attributes ever come back, whatever was
//     asked for ("*" means the allow-list, "1.1" none).
//   - paging: see paging.go.
//   - the directory view: with WithViewSearch, a search the view can answer
//     exactly as AD would is answered from it (viewsearch.go).
//
// The proxy user's bind is checked by AD through the normal bind path, or,
// when search.proxy_password is set, here against that local secret (and then
// never sent to AD).

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// PagedSearcher is what the listener's searches need of the upstream: searches
// as the service account, plain and relayed page by page.
// *upstream.Cluster satisfies it.
type PagedSearcher interface {
	Searcher
	StartPaged(ctx context.Context, req *ldap.SearchRequest, pageSize uint32) (*ldap.SearchResult, *upstream.PagedSearch, string, error)
}

var _ PagedSearcher = (*upstream.Cluster)(nil)

// Errors of the search path; searchResult maps them to result codes.
var (
	// errSearchRefused: the connection has no search rights (50).
	errSearchRefused = errors.New("search not allowed on this connection")
	// errOutsideSearchBase: the search's base is not search.base_dn or under
	// it (32).
	errOutsideSearchBase = errors.New("search base outside the served subtree")
	// errBadBaseDN: the search's base is not a DN (34).
	errBadBaseDN = errors.New("search base is not a DN")
	// errBadScope: a scope other than base, one or sub (2).
	errBadScope = errors.New("unsupported search scope")
)

// Reasons of the local-secret proxy bind in the audit line.
const (
	ReasonLocalProxy        Reason = "local_proxy"         // the proxy user's local secret matched
	ReasonLocalProxyRefused Reason = "local_proxy_refused" // it did not (never sent to AD)
)

// Diagnostic texts of searches.
const (
	diagNoSuchObject   = "no such object"
	diagInvalidDN      = "invalid DN syntax in the search base"
	diagBadFilter      = "the search filter cannot be forwarded as sent"
	diagBadScope       = "unsupported search scope"
	diagUnknownCookie  = "unknown or expired paging cookie"
	diagCookieMismatch = "the paging cookie belongs to another search"
	diagPagingBusy     = "too many paged searches open, try again later"
)

// SearchOption changes how WithSearch's searches are built.
type SearchOption func(*searchOptions)

type searchOptions struct {
	afterFunc afterFunc
	now       func() time.Time
	view      ViewSearch
	audit     *zap.Logger
	observer  Observer
}

// WithSearchAudit sends the audit lines of the proxy user's local-secret binds
// (search.proxy_password) to l instead of the process log's "audit" logger
// (nil keeps it), and tells f of each decision (nil: nobody), as
// WithAuditLogger and WithObserver do for the bind path.
func WithSearchAudit(l *zap.Logger, f Observer) SearchOption {
	return func(o *searchOptions) { o.audit, o.observer = l, f }
}

// afterFunc schedules f after d, like time.AfterFunc; tests replace it to fire
// paging idle timers without waiting.
type afterFunc func(d time.Duration, f func()) interface{ Stop() bool }

func realAfterFunc(d time.Duration, f func()) interface{ Stop() bool } { return time.AfterFunc(d, f) }

// WithSearch makes the listener answer searches (without it, every search but
// the rootDSE gets 50): cfg's search section, its upstream layout (base DN,
// NetBIOS name) and DN cache, and dir, the upstream that runs them as the
// service account. The proxy user's DN is looked up through dir when it is
// first needed. cfg must be validated.
func WithSearch(cfg configs.Config, dir PagedSearcher, opts ...SearchOption) ServerOption {
	return func(o *serverOptions) { o.search = &searchSetup{cfg: cfg, dir: dir, opts: opts} }
}

// searchSetup is what WithSearch gives NewServer to build the searcher with.
type searchSetup struct {
	cfg  configs.Config
	dir  PagedSearcher
	opts []SearchOption
}

// searcher answers the searches of one Server.
type searcher struct {
	dir      PagedSearcher
	base     *ldap.DN
	allow    map[string]bool // lower-cased names of the allow-list, "dn" excluded
	allowed  []string        // the allow-list as configured, "dn" excluded
	proxy    *proxyUser
	anyUser  bool
	anon     bool
	paging   configs.SearchPaging
	slots    chan struct{} // one per open paged search, across all clients
	after    afterFunc
	now      func() time.Time
	view     ViewSearch    // nil: every search goes to AD
	limit    clientLimiter // the Server's Authenticator, when it limits failed binds; nil otherwise
	log      *zap.Logger
	auditLog *zap.Logger
	observer Observer
}

func newSearcher(set *searchSetup, log *zap.Logger) (*searcher, error) {
	if set.dir == nil {
		return nil, errors.New("search: nil upstream")
	}
	o := searchOptions{afterFunc: realAfterFunc, now: time.Now}
	for _, opt := range set.opts {
		opt(&o)
	}
	cfg := set.cfg
	d := configs.Default().Search
	sc := cfg.Search
	if len(sc.Attributes) == 0 {
		sc.Attributes = d.Attributes
	}
	if sc.Paging.IdleTimeout <= 0 {
		sc.Paging.IdleTimeout = d.Paging.IdleTimeout
	}
	if sc.Paging.MaxPerConnection <= 0 {
		sc.Paging.MaxPerConnection = d.Paging.MaxPerConnection
	}
	if sc.Paging.MaxOpen <= 0 {
		sc.Paging.MaxOpen = d.Paging.MaxOpen
	}
	baseDN := sc.BaseDN
	if baseDN == "" {
		baseDN = cfg.Upstream.BaseDN
	}
	base, err := ldap.ParseDN(baseDN)
	if err != nil || len(base.RDNs) == 0 {
		return nil, fmt.Errorf("search.base_dn: %q is not a DN", baseDN)
	}
	s := &searcher{
		dir:      set.dir,
		base:     base,
		allow:    make(map[string]bool),
		anyUser:  sc.AllowUserSearch,
		anon:     sc.AllowAnonymousSearch,
		paging:   sc.Paging,
		slots:    make(chan struct{}, sc.Paging.MaxOpen),
		after:    o.afterFunc,
		now:      o.now,
		view:     o.view,
		log:      log.Named("search"),
		auditLog: auditLogger(firstLogger(o.audit, log)),
		observer: o.observer,
	}
	for _, a := range sc.Attributes {
		if strings.EqualFold(a, "dn") || s.allow[strings.ToLower(a)] {
			continue
		}
		s.allow[strings.ToLower(a)] = true
		s.allowed = append(s.allowed, a)
	}
	var logins View
	if v, ok := o.view.(View); ok {
		logins = v
	}
	s.proxy, err = newProxyUser(cfg, set.dir, logins, log)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// searchQuery is a client's search as it goes upstream.
type searchQuery struct {
	base   string // the base DN, re-serialised from its parsed form
	filter string // re-encoded (escaped) filter
	attrs  []string
	req    *ldap.SearchRequest
	paging *gldap.ControlPaging // the client's paging control, nil if unpaged
	view   *ViewAnswer          // the view's answer, nil when AD answers
}

// serve answers one search that is not a rootDSE read: it writes the entries
// and returns the final response.
func (s *searcher) serve(ctx context.Context, w *gldap.ResponseWriter, r *gldap.Request, m *gldap.SearchMessage, st *connState) *gldap.SearchResponseDone {
	start := s.now()
	sl := searchLog{base: m.BaseDN, scope: int(m.Scope), filter: m.Filter}
	q, err := s.prepare(ctx, m, st)
	if q != nil {
		sl.filter, sl.paged = q.filter, q.paging != nil
	}
	var done *gldap.SearchResponseDone
	if err == nil && (q.paging == nil || len(q.paging.Cookie) == 0) {
		// A later page stays with the source of its first page (paging.go).
		s.fromView(q, &sl)
	}
	if err == nil {
		if q.paging != nil {
			done, err = s.servePaged(ctx, w, r, q, st, &sl)
		} else {
			done, err = s.serveUnpaged(ctx, w, r, q, &sl)
		}
	}
	if err != nil {
		code, diag, matched := s.searchResult(err)
		done = r.NewSearchDoneResponse(gldap.WithResponseCode(code))
		done.SetDiagnosticMessage(diag)
		done.SetMatchedDN(matched)
		sl.code, sl.err = code, err
	}
	sl.dur = s.now().Sub(start)
	s.record(st, sl)
	return done
}

// prepare checks the connection's rights and the base, and builds the
// upstream request.
func (s *searcher) prepare(ctx context.Context, m *gldap.SearchMessage, st *connState) (*searchQuery, error) {
	if err := s.mayRead(ctx, st); err != nil {
		return nil, err
	}
	base, err := ldap.ParseDN(m.BaseDN)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errBadBaseDN, err)
	case len(base.RDNs) == 0 || !(s.base.EqualFold(base) || s.base.AncestorOfFold(base)):
		return nil, errOutsideSearchBase
	}
	var scope int
	switch m.Scope {
	case gldap.BaseObject:
		scope = ldap.ScopeBaseObject
	case gldap.SingleLevel:
		scope = ldap.ScopeSingleLevel
	case gldap.WholeSubtree:
		scope = ldap.ScopeWholeSubtree
	default:
		return nil, fmt.Errorf("%w: %d", errBadScope, m.Scope)
	}
	q := &searchQuery{base: formatDN(base, false)}
	if q.filter, err = reencodeFilter(m.Filter); err != nil {
		q.filter = LogSafe(m.Filter)
		return q, err
	}
	q.attrs = s.upstreamAttributes(m.Attributes)
	q.req = ldap.NewSearchRequest(q.base, scope, clampDeref(m.DerefAliases), clampLimit(m.SizeLimit), clampLimit(m.TimeLimit),
		m.TypesOnly, q.filter, q.attrs, nil)
	for _, c := range m.Controls {
		if p, ok := c.(*gldap.ControlPaging); ok {
			q.paging = p
		}
	}
	return q, nil
}

// mayRead decides whether the connection may search.
func (s *searcher) mayRead(ctx context.Context, st *connState) error {
	id := st.identity()
	switch {
	case id.localProxy:
		return nil
	case id.dn == "":
		if s.anon {
			return nil
		}
		return errSearchRefused
	case s.anyUser:
		return nil
	}
	if ok, known := st.cachedRights(id.dn); known {
		if ok {
			return nil
		}
		return errSearchRefused
	}
	ok, err := s.proxy.is(ctx, id.dn)
	if err != nil {
		return err
	}
	st.cacheRights(id.dn, ok)
	if !ok {
		return errSearchRefused
	}
	return nil
}

// serveUnpaged forwards an unpaged search. AD answers at most MaxPageSize
// entries and then sizeLimitExceeded, which the client gets as it is.
func (s *searcher) serveUnpaged(ctx context.Context, w *gldap.ResponseWriter, r *gldap.Request, q *searchQuery, sl *searchLog) (*gldap.SearchResponseDone, error) {
	if q.view != nil {
		return s.serveFromView(w, r, q, sl), nil
	}
	res, dc, err := s.dir.Search(ctx, q.req)
	sl.dc = dc
	sl.entries = s.writeEntries(w, r, res)
	if err != nil {
		return nil, err
	}
	return r.NewSearchDoneResponse(gldap.WithResponseCode(codeSuccess)), nil
}

// writeEntries writes the entries of res with the allowed attributes only and
// returns how many it wrote. AD's search references are dropped.
func (s *searcher) writeEntries(w *gldap.ResponseWriter, r *gldap.Request, res *ldap.SearchResult) int {
	if res == nil {
		return 0
	}
	n := 0
	for _, e := range res.Entries {
		entry := r.NewSearchResponseEntry(e.DN)
		for _, a := range e.Attributes {
			if !s.allowedAttr(a.Name) {
				continue
			}
			entry.AddAttribute(a.Name, attributeValues(a))
		}
		if err := w.Write(entry); err != nil {
			break // the client is gone
		}
		n++
	}
	return n
}

// attributeValues returns a's values as strings. go-ldap's decoder and the
// view's answers fill Values with the same bytes as ByteValues, so those are
// used as they are instead of copying every value once more.
func attributeValues(a *ldap.EntryAttribute) []string {
	if len(a.Values) == len(a.ByteValues) {
		return a.Values
	}
	values := make([]string, len(a.ByteValues))
	for i, v := range a.ByteValues {
		values[i] = string(v)
	}
	return values
}

// allowedAttr reports whether an attribute (with or without options such as
// ";range=0-1499") is on the allow-list.
func (s *searcher) allowedAttr(desc string) bool {
	typ, _, _ := strings.Cut(desc, ";")
	return s.allow[strings.ToLower(typ)]
}

// upstreamAttributes maps the client's attribute list to what AD is asked
// for: the allow-list for none or "*", nothing for "1.1", and of the names
// asked for only those on the allow-list. When nothing is left, AD gets "1.1",
// never an empty list (which would mean every attribute).
func (s *searcher) upstreamAttributes(asked []string) []string {
	if len(asked) == 0 {
		return s.allowedOrNone(s.allowed)
	}
	var out []string
	seen := make(map[string]bool)
	add := func(a string) {
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	for _, a := range asked {
		switch {
		case a == "*":
			for _, b := range s.allowed {
				add(b)
			}
		case s.allowedAttr(a):
			add(a)
		}
		// "1.1", "+", "dn" and names off the list add nothing.
	}
	return s.allowedOrNone(out)
}

func (s *searcher) allowedOrNone(attrs []string) []string {
	if len(attrs) == 0 {
		return []string{"1.1"}
	}
	return attrs
}

// searchResult is the one mapping from an error of the search path to the
// result code, diagnostic text and matched DN the client gets. AD's own
// answers (sizeLimitExceeded, noSuchObject under the base, …) pass through
// with AD's text; outages are Classify's 52 or 51.
func (s *searcher) searchResult(err error) (code int, diag, matched string) {
	var le *ldap.Error
	switch {
	case err == nil:
		return codeSuccess, "", ""
	case errors.Is(err, errSearchRefused):
		return codeInsufficientAccessRights, diagSearchRefused, ""
	case errors.Is(err, errOutsideSearchBase):
		return ldap.LDAPResultNoSuchObject, diagNoSuchObject, ""
	case errors.Is(err, errBadBaseDN):
		return ldap.LDAPResultInvalidDNSyntax, diagInvalidDN, ""
	case errors.Is(err, errBadFilter):
		return codeProtocolError, diagBadFilter, ""
	case errors.Is(err, errBadScope):
		return codeProtocolError, diagBadScope, ""
	case errors.Is(err, errUnknownCookie):
		return codeUnwillingToPerform, diagUnknownCookie, ""
	case errors.Is(err, errCookieMismatch):
		return codeUnwillingToPerform, diagCookieMismatch, ""
	case errors.Is(err, errPagingBusy):
		return codeBusy, diagPagingBusy, ""
	case errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork && !errors.Is(err, upstream.ErrUnavailable):
		// The DC's answer; its matched DN only when it lies inside the base.
		diag := ""
		if le.Err != nil {
			diag = le.Err.Error()
		}
		if dn, perr := ldap.ParseDN(le.MatchedDN); perr == nil && (s.base.EqualFold(dn) || s.base.AncestorOfFold(dn)) {
			matched = le.MatchedDN
		}
		return int(le.ResultCode), diag, matched
	}
	code, _ = Classify(err)
	return code, diagnosticFor(code), ""
}

// searchLog is what the search's log line says.
type searchLog struct {
	base    string
	scope   int
	filter  string
	paged   bool
	page    int // page number within a paged search, from 1
	entries int
	// source is sourceView or sourceAD once the search got that far; the
	// view* fields say how the view answered, or why it did not.
	source     string
	viewRule   string
	viewStale  bool
	viewAge    time.Duration
	viewReason string
	dc         string
	code       int
	err        error
	dur        time.Duration
}

// record writes the one log line of a search. Values from the client are
// escaped: the filter is re-encoded (or escaped when it could not be).
func (s *searcher) record(st *connState, sl searchLog) {
	fields := []zap.Field{
		zap.String("user", st.identity().name()),
		zap.String("base", LogSafe(sl.base)),
		zap.Int("scope", sl.scope),
		zap.String("filter", LogSafe(sl.filter)),
		zap.Bool("paged", sl.paged),
		zap.Int("entries", sl.entries),
		zap.Int("result", sl.code),
		zap.String("dc", sl.dc),
		zap.Duration("dur", sl.dur),
	}
	if sl.page > 0 {
		fields = append(fields, zap.Int("page", sl.page))
	}
	if sl.source != "" {
		fields = append(fields, zap.String("source", sl.source))
	}
	switch {
	case sl.source == sourceView && sl.viewRule != "":
		fields = append(fields, zap.String("view_rule", sl.viewRule), zap.Bool("stale", sl.viewStale),
			zap.Duration("view_age", sl.viewAge.Round(time.Second)))
	case sl.viewReason != "":
		fields = append(fields, zap.String("view_miss", LogSafe(sl.viewReason)))
	}
	level := zapcore.InfoLevel
	if sl.err != nil {
		fields = append(fields, zap.String("error", LogSafe(sl.err.Error())))
		if c := sl.code; c == codeBusy || c == ldap.LDAPResultUnavailable {
			level = zapcore.WarnLevel
		}
	}
	st.log.Named("search").Log(level, "search", fields...)
}

// clampLimit turns a client's size or time limit into go-ldap's int; a
// negative one (not valid LDAP) means none.
func clampLimit(n int64) int {
	if n < 0 || n > 1<<31-1 {
		return 0
	}
	return int(n)
}

// clampDeref keeps a valid derefAliases value; AADDS has no aliases anyway.
func clampDeref(n int) int {
	if n < ldap.NeverDerefAliases || n > ldap.DerefAlways {
		return ldap.NeverDerefAliases
	}
	return n
}

// proxyUser is the configured proxy user and how its identity is known.
type proxyUser struct {
	login Login // search.proxy_user (default upstream.bind_dn), parsed
	// local is set when the proxy user has a local secret: keys are the
	// Login keys that name it, secret the SHA-256 of the password.
	local  bool
	keys   map[string]bool
	secret [sha256.Size]byte
	dn     string // the DN a local proxy bind records, when proxy_user is a DN
	// resolver maps the proxy user to its DN in AD (no local secret).
	resolver *Resolver
	netbios  string
}

func newProxyUser(cfg configs.Config, dir Searcher, view View, log *zap.Logger) (*proxyUser, error) {
	name := strings.TrimSpace(cfg.Search.ProxyUser)
	if name == "" {
		name = strings.TrimSpace(cfg.Upstream.BindDN)
	}
	login, err := ParseLogin(name, cfg.Upstream.NetBIOSDomain)
	if err != nil {
		return nil, fmt.Errorf("search.proxy_user: %w", err)
	}
	p := &proxyUser{login: login, netbios: cfg.Upstream.NetBIOSDomain}
	if cfg.Search.ProxyPassword == "" {
		var opts []AuthOption
		if view != nil {
			opts = append(opts, WithView(view))
		}
		p.resolver, err = NewResolver(cfg.Upstream, cfg.Cache.DN, dir, log, opts...)
		if err != nil {
			return nil, fmt.Errorf("search.proxy_user: %w", err)
		}
		return p, nil
	}
	p.local = true
	p.secret = sha256.Sum256([]byte(cfg.Search.ProxyPassword))
	p.keys = map[string]bool{login.Key: true}
	realm := ""
	if base, err := ldap.ParseDN(cfg.Upstream.BaseDN); err == nil {
		realm = strings.ToLower(realmOf(base))
	}
	switch login.Kind {
	case LoginSAM:
		if realm != "" {
			p.keys["upn:"+strings.ToLower(login.Value)+"@"+realm] = true
		}
	case LoginUPN:
		local, suffix, _ := login.UPNParts()
		if realm != "" && strings.EqualFold(suffix, realm) && checkSAM(local) == nil {
			p.keys[samLogin(local).Key] = true
		}
	case LoginDN:
		p.dn = login.Value
	}
	return p, nil
}

// setCache gives the proxy user's resolver a new cache.dn (none with a local
// secret).
func (p *proxyUser) setCache(c configs.CacheSize) {
	if p.resolver != nil {
		p.resolver.SetCache(c)
	}
}

// is reports whether dn, the canonical identity bound on a connection, is the
// proxy user's. The proxy user's DN comes from the resolver (and its cache),
// so every way of typing the account compares equal. An outage is an error.
func (p *proxyUser) is(ctx context.Context, dn string) (bool, error) {
	if p.local {
		return false, nil // only the local secret makes the proxy user then
	}
	res, err := p.resolver.Resolve(ctx, p.login)
	switch {
	case errors.Is(err, ErrUserNotFound), errors.Is(err, ErrAmbiguous), errors.Is(err, ErrOutsideBase):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up the proxy user: %w", err)
	}
	want, err1 := ldap.ParseDN(res.DN)
	got, err2 := ldap.ParseDN(dn)
	return err1 == nil && err2 == nil && want.EqualFold(got), nil
}

// localBind decides a bind when the proxy user has a local secret and the bind
// name is one of the proxy user's spellings; ok is false for every other bind,
// which goes down the normal bind path. The password is compared in constant
// time (of equal-length digests) and never leaves the process.
func (s *searcher) localBind(c Client, name, password string) (out BindOutcome, ok bool) {
	p := s.proxy
	if !p.local {
		return BindOutcome{}, false
	}
	login, err := ParseLogin(name, p.netbios)
	if err != nil || !p.keys[login.Key] {
		return BindOutcome{}, false
	}
	start := s.now()
	d := s.compareSecret(c, password, start)
	d.User, d.Dur = p.login.Value, s.now().Sub(start)
	writeAudit(s.auditLog, c, name, d)
	if s.observer != nil {
		s.observer(c, LogSafe(name), d)
	}
	return d.BindOutcome, true
}

// compareSecret decides a local-secret bind of the proxy user from client c,
// within the client's rate of failed binds when the server's Authenticator
// limits it: a wrong non-empty password uses up one, and a client past its
// rate gets 51 without a comparison.
func (s *searcher) compareSecret(c Client, password string, start time.Time) Decision {
	var lim *rate.Limiter
	if s.limit != nil {
		var err error
		if lim, err = s.limit.limitClient(c.Addr, start); err != nil {
			return refusal(Decision{}, err)
		}
	}
	refused := Decision{BindOutcome: BindOutcome{Code: codeInvalidCredentials, Diagnostic: DiagInvalidCredentials}, Reason: ReasonLocalProxyRefused}
	if strings.TrimSpace(password) == "" {
		return refused // not a guess: nothing is counted
	}
	got := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(got[:], s.proxy.secret[:]) != 1 {
		clientFailed(lim, start)
		return refused
	}
	return Decision{BindOutcome: BindOutcome{Code: codeSuccess, DN: s.proxy.dn}, Reason: ReasonLocalProxy}
}
