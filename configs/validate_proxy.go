package configs

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// maxProxyHeaderTimeout bounds listen.proxy_protocol.header_timeout: a load
// balancer sends the header with the connection, so a long wait only holds
// connections open.
const maxProxyHeaderTimeout = time.Minute

// TrustedPrefixes parses Trusted: each entry a CIDR prefix, or one IP (a /32
// or /128); IPv4-mapped IPv6 entries count as IPv4. The error of a bad entry
// is an *Error naming it (listen.proxy_protocol.trusted[i]).
func (p ProxyProtocol) TrustedPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(p.Trusted))
	for i, s := range p.Trusted {
		pfx, err := parseTrusted(s)
		if err != nil {
			return nil, &Error{Key: trustedKey(i), Err: err}
		}
		out = append(out, pfx)
	}
	return out, nil
}

func trustedKey(i int) string { return fmt.Sprintf("listen.proxy_protocol.trusted[%d]", i) }

// parseTrusted parses one entry of Trusted.
func parseTrusted(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return pfx, fmt.Errorf("%q is not an IP address or a CIDR prefix: write e.g. 10.0.0.5 or 10.0.0.0/29", s)
		}
		pfx = p.Masked()
		if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return pfx, fmt.Errorf("%q is not an IP address or a CIDR prefix: write e.g. 10.0.0.5 or 10.0.0.0/29", s)
		}
		a = a.Unmap()
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Bits() == 0 {
		return pfx, fmt.Errorf("%s trusts every address: any client could claim any address and escape the per-address limits; list only your load balancers", s)
	}
	return pfx, nil
}

// validate checks listen.proxy_protocol.
func (p ProxyProtocol) validate(probs *problems) {
	const key = "listen.proxy_protocol"
	for i, s := range p.Trusted {
		if _, err := parseTrusted(s); err != nil {
			probs.add(trustedKey(i), err)
		}
	}
	switch {
	case p.HeaderTimeout <= 0:
		probs.addf(key+".header_timeout", "must be more than 0, not %s: e.g. 5s", p.HeaderTimeout)
	case p.HeaderTimeout > maxProxyHeaderTimeout:
		probs.addf(key+".header_timeout", "must be at most 1m, not %s: a load balancer sends the header at once; e.g. 5s", p.HeaderTimeout)
	}
}
