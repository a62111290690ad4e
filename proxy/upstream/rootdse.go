package upstream

import (
	"context"
	"fmt"

	"github.com/go-ldap/ldap/v3"
)

// SearchAt runs req (unpaged) on the DC with this URL only, without failover:
// the sync loop reads a DC's rootDSE and NTDS Settings object from the same DC
// whose uSNChanged values it then searches, because USNs are per DC. Errors are
// as for SearchPagedAt: ErrNoHealthyUpstream when that DC's breaker is open or
// the DC is drained, ErrUnknownServer for a URL that is not one of
// upstream.servers, ErrUnavailable or ErrBusy for infrastructure failures and
// an *ldap.Error for the DC's answer.
func (c *Cluster) SearchAt(ctx context.Context, url string, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	if d := c.dcByURL(url); d != nil {
		res, _, err := c.searchOn(ctx, []*dc{d}, func(l *ldap.Conn) (*ldap.SearchResult, error) { return l.Search(req) })
		return res, err
	}
	return nil, fmt.Errorf("search at: %w: %q", ErrUnknownServer, url)
}

// RootDSE reads attrs of the rootDSE of the first usable DC (with the failover
// of Search) and returns the entry and the URL of the DC that answered. An
// empty answer is an error: every DC has a rootDSE.
func (c *Cluster) RootDSE(ctx context.Context, attrs ...string) (*ldap.Entry, string, error) {
	res, url, err := c.Search(ctx, rootDSEAttrsRequest(attrs))
	if err != nil {
		return nil, url, fmt.Errorf("read rootDSE: %w", err)
	}
	e, err := oneEntry(res, url)
	return e, url, err
}

// RootDSEAt reads attrs of the rootDSE of the DC with this URL only; errors are
// as for SearchAt.
func (c *Cluster) RootDSEAt(ctx context.Context, url string, attrs ...string) (*ldap.Entry, error) {
	res, err := c.SearchAt(ctx, url, rootDSEAttrsRequest(attrs))
	if err != nil {
		return nil, fmt.Errorf("read rootDSE: %w", err)
	}
	return oneEntry(res, url)
}

func rootDSEAttrsRequest(attrs []string) *ldap.SearchRequest {
	return ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", attrs, nil)
}

func oneEntry(res *ldap.SearchResult, url string) (*ldap.Entry, error) {
	if res == nil || len(res.Entries) != 1 {
		n := 0
		if res != nil {
			n = len(res.Entries)
		}
		return nil, fmt.Errorf("read rootDSE of %s: %d entries, want 1", url, n)
	}
	return res.Entries[0], nil
}
