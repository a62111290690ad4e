package configs

import (
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Bounds of the search settings.
const (
	// adMaxResultSetsPerConn is AD's MaxResultSetsPerConn: the paged searches
	// one connection may hold open.
	adMaxResultSetsPerConn = 10
	// maxOpenPagedSearches bounds search.paging.max_open: each one holds an
	// upstream connection.
	maxOpenPagedSearches = 1024
)

// validate checks the search settings against the upstream base.
func (s *Search) validate(p *problems, upstreamBase string) {
	if s.BaseDN != "" {
		dn, err := ldap.ParseDN(s.BaseDN)
		switch {
		case err != nil:
			p.addf("search.base_dn", "not a valid DN (%w): write the subtree the PBX may search, e.g. OU=AADDC Users,DC=contoso,DC=onmicrosoft,DC=com, or leave it empty for upstream.base_dn", err)
		case len(dn.RDNs) == 0:
			p.addf("search.base_dn", "is only white space: leave it empty for upstream.base_dn, or write an OU under it")
		default:
			if base, err := ldap.ParseDN(upstreamBase); err == nil && len(base.RDNs) > 0 && !base.EqualFold(dn) && !base.AncestorOfFold(dn) {
				p.addf("search.base_dn", "%q is not inside upstream.base_dn %q: use upstream.base_dn or an OU under it", s.BaseDN, upstreamBase)
			}
		}
	}
	if user := strings.TrimSpace(s.ProxyUser); user != "" && strings.Contains(user, "=") {
		if _, err := ldap.ParseDN(user); err != nil {
			p.addf("search.proxy_user", "not a valid DN (%w): write the proxy user as a DN, a UPN (svc-pbx@contoso.onmicrosoft.com) or DOMAIN\\name", err)
		}
	} else if s.ProxyUser != "" && user == "" {
		p.addf("search.proxy_user", "is only white space: leave it empty for upstream.bind_dn, or name the PBX's proxy user")
	}
	switch {
	case s.ProxyPassword == "" && s.ProxyPasswordFile != "":
		p.addf("search.proxy_password_file", "no password was read from it: load the configuration with configs.Load or configs.Parse, which read it")
	case s.ProxyPassword != "" && strings.TrimSpace(string(s.ProxyPassword)) == "":
		p.addf("search.proxy_password", "is only white space: set the proxy user's local password, or leave it empty to check the proxy user's bind with AD")
	}
	if len(s.Attributes) == 0 {
		p.addf("search.attributes", "is empty: list the attributes a search may return, e.g. [dn, sAMAccountName, displayName, mail, telephoneNumber]")
	}
	for _, a := range s.Attributes {
		if a == "1.1" || !ValidAttributeType(a) {
			p.addf("search.attributes", "%q is not an attribute name: write names such as sAMAccountName or telephoneNumber (no *, 1.1 or options)", a)
		}
	}
	s.Paging.validate(p)
}

// validate checks the bounds of paged searches.
func (pg *SearchPaging) validate(p *problems) {
	switch {
	case pg.IdleTimeout <= 0:
		p.addf("search.paging.idle_timeout", "must be more than 0, not %s: e.g. 60s", pg.IdleTimeout)
	case pg.IdleTimeout >= adMaxConnIdle:
		p.addf("search.paging.idle_timeout", "must be under 15m, not %s: AD closes connections idle for 900 s (MaxConnIdleTime), and the paged search would fail anyway", pg.IdleTimeout)
	}
	if pg.MaxPerConnection < 1 || pg.MaxPerConnection > adMaxResultSetsPerConn {
		p.addf("search.paging.max_per_connection", "must be between 1 and %d (AD's MaxResultSetsPerConn), not %d (default 1)", adMaxResultSetsPerConn, pg.MaxPerConnection)
	}
	if pg.MaxOpen < 1 || pg.MaxOpen > maxOpenPagedSearches {
		p.addf("search.paging.max_open", "must be between 1 and %d, not %d (default 16): each open paged search holds an upstream connection", maxOpenPagedSearches, pg.MaxOpen)
	}
}
