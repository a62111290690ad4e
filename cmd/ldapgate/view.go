package main

// The directory view as the listener sees it: proxy never imports sync, so
// this adapter gives it usersync's view through proxy's two small interfaces,
// proxy.ViewSearch (searches answered from the view) and proxy.View (logins
// looked up in the view before AD).

import (
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// viewAdapter answers the listener's searches and login lookups from the
// directory view.
type viewAdapter struct {
	searcher   *usersync.ViewSearcher
	dcs        func() []upstream.DCStats
	now        func() time.Time
	userBase   string // upstream.user_base_dn: where the resolver looks logins up
	userFilter string // upstream.user_filter, in parentheses
}

var (
	_ proxy.ViewSearch = (*viewAdapter)(nil)
	_ proxy.View       = (*viewAdapter)(nil)
	_ proxy.ViewResult = (*usersync.SearchAnswer)(nil)
)

// newViewAdapter adapts view, judging outages by the breakers of dcs
// (Cluster.Stats). cfg must be validated.
func newViewAdapter(cfg *configs.Config, view *usersync.View, dcs func() []upstream.DCStats) *viewAdapter {
	outage := cfg.Sync.OutageMaxAge
	if outage == 0 {
		outage = -1 // configs: 0 disables answers from a stale view
	}
	filter := strings.TrimSpace(cfg.Upstream.UserFilter)
	if filter == "" {
		filter = configs.Default().Upstream.UserFilter
	}
	if !strings.HasPrefix(filter, "(") {
		filter = "(" + filter + ")"
	}
	userBase := cfg.Upstream.UserBaseDN
	if userBase == "" {
		userBase = cfg.Upstream.BaseDN
	}
	return &viewAdapter{
		searcher:   usersync.NewViewSearcher(view, usersync.ViewSearchOptions{OutageMaxAge: outage}),
		dcs:        dcs,
		now:        time.Now,
		userBase:   userBase,
		userFilter: filter,
	}
}

// dcsDown reports whether no DC can be asked: every breaker open (or a probe
// in flight) or the DC drained.
func (a *viewAdapter) dcsDown() bool {
	for _, s := range a.dcs() {
		if s.Breaker == upstream.BreakerClosed && !s.Drained {
			return false
		}
	}
	return true
}

// SearchView answers req from the view (usersync.ViewSearcher's rules), stale
// only while no DC is usable.
func (a *viewAdapter) SearchView(req *ldap.SearchRequest) (proxy.ViewAnswer, error) {
	ans, err := a.searcher.Search(req, usersync.SearchConditions{Now: a.now(), DCsDown: a.dcsDown()})
	if err != nil {
		return proxy.ViewAnswer{}, err
	}
	return proxy.ViewAnswer{Result: ans, Rule: ans.Rule, Stale: ans.Stale, Age: ans.Age}, nil
}

// LookupLogin answers the resolver's own search from a fresh view: the
// search it would send AD (the user filter and the login under
// upstream.user_base_dn, or a base read of a DN), answered only when the view
// gives exactly AD's answer and that answer is one user. Anything else — a
// stale view, a login the view does not hold, no user — goes to AD as before.
func (a *viewAdapter) LookupLogin(l proxy.Login) (proxy.Identity, bool) {
	var req *ldap.SearchRequest
	attrs := []string{"sAMAccountName", "objectGUID", "userPrincipalName"}
	switch l.Kind {
	case proxy.LoginSAM, proxy.LoginUPN:
		attr := "sAMAccountName"
		if l.Kind == proxy.LoginUPN {
			attr = "userPrincipalName"
		}
		filter := "(&" + a.userFilter + "(" + attr + "=" + ldap.EscapeFilter(l.Value) + "))"
		req = ldap.NewSearchRequest(a.userBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, 0, false, filter, attrs, nil)
	case proxy.LoginDN:
		req = ldap.NewSearchRequest(l.Value, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 2, 0, false, a.userFilter, attrs, nil)
	default:
		return proxy.Identity{}, false
	}
	// Never a stale view for logins: DCsDown stays false.
	ans, err := a.searcher.Search(req, usersync.SearchConditions{Now: a.now()})
	if err != nil || ans.Len() != 1 {
		return proxy.Identity{}, false
	}
	e := ans.ViewEntry(0)
	return proxy.Identity{
		DN:                e.DN,
		SAMAccountName:    e.First("sAMAccountName"),
		UserPrincipalName: e.First("userPrincipalName"),
		ObjectGUID:        e.GUID,
	}, true
}

// viewOptions are the options that give the bind path and the listener the
// view: none when there is no view (sync disabled or not started).
func viewOptions(cfg *configs.Config, view *usersync.View, cluster *upstream.Cluster, log *zap.Logger) ([]proxy.AuthOption, []proxy.SearchOption) {
	if view == nil {
		return nil, nil
	}
	a := newViewAdapter(cfg, view, cluster.Stats)
	log.Info("searches and logins are answered from the directory view when it is exact",
		zap.Duration("stale_after", cfg.Sync.StaleAfter), zap.Duration("outage_max_age", cfg.Sync.OutageMaxAge))
	return []proxy.AuthOption{proxy.WithView(a)}, []proxy.SearchOption{proxy.WithViewSearch(a)}
}
