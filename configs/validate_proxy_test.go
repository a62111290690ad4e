package configs

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestValidateProxyProtocol(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		pp              ProxyProtocol
		wantErrContains string
	}{
		{name: "off (default)", pp: Default().Listen.ProxyProtocol},
		{name: "IPs and prefixes", pp: ProxyProtocol{Trusted: []string{"10.0.0.5", "10.0.1.0/29", "fd00::/64", " ::1 "}, HeaderTimeout: 5 * time.Second}},
		{name: "a name is refused", pp: ProxyProtocol{Trusted: []string{"10.0.0.5", "haproxy.local"}, HeaderTimeout: time.Second},
			wantErrContains: `config: listen.proxy_protocol.trusted[1]: "haproxy.local" is not an IP address or a CIDR prefix: write e.g. 10.0.0.5 or 10.0.0.0/29`},
		{name: "a bad prefix is refused", pp: ProxyProtocol{Trusted: []string{"10.0.0.0/33"}, HeaderTimeout: time.Second},
			wantErrContains: `config: listen.proxy_protocol.trusted[0]: "10.0.0.0/33" is not an IP address or a CIDR prefix`},
		{name: "trusting every IPv4 address is refused", pp: ProxyProtocol{Trusted: []string{"0.0.0.0/0"}, HeaderTimeout: time.Second},
			wantErrContains: "config: listen.proxy_protocol.trusted[0]: 0.0.0.0/0 trusts every address: any client could claim any address",
		},
		{name: "trusting every IPv6 address is refused", pp: ProxyProtocol{Trusted: []string{"::/0"}, HeaderTimeout: time.Second},
			wantErrContains: "config: listen.proxy_protocol.trusted[0]: ::/0 trusts every address"},
		{name: "no header timeout is refused", pp: ProxyProtocol{},
			wantErrContains: "config: listen.proxy_protocol.header_timeout: must be more than 0, not 0s: e.g. 5s"},
		{name: "a header timeout over a minute is refused", pp: ProxyProtocol{HeaderTimeout: 2 * time.Minute},
			wantErrContains: "config: listen.proxy_protocol.header_timeout: must be at most 1m, not 2m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig(t)
			c.Listen.ProxyProtocol = tt.pp
			checkErr(t, c.Validate(), tt.wantErrContains)
		})
	}
}

func TestTrustedPrefixes(t *testing.T) {
	t.Parallel()
	got, err := ProxyProtocol{Trusted: []string{"10.0.0.5", "10.0.1.7/29", "::ffff:10.0.2.0/120", "::ffff:10.0.3.1", "fd00::1"}}.TrustedPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.5/32"),
		netip.MustParsePrefix("10.0.1.0/29"),
		netip.MustParsePrefix("10.0.2.0/24"),
		netip.MustParsePrefix("10.0.3.1/32"),
		netip.MustParsePrefix("fd00::1/128"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("TrustedPrefixes = %v, want %v", got, want)
	}
	if _, err := (ProxyProtocol{Trusted: []string{"10.0.0.5", "nope"}}).TrustedPrefixes(); err == nil ||
		err.Error() != `config: listen.proxy_protocol.trusted[1]: "nope" is not an IP address or a CIDR prefix: write e.g. 10.0.0.5 or 10.0.0.0/29` {
		t.Fatalf("error %v, want one naming listen.proxy_protocol.trusted[1]", err)
	}
}
