package configs

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		mutate          func(t *testing.T, c *Config)
		wantErrContains string
	}{
		{
			name:   "a complete configuration is valid",
			mutate: func(*testing.T, *Config) {},
		},
		{
			name:            "an empty listen address is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.Address = "" },
			wantErrContains: "config: listen.address: required",
		},
		{
			name:            "a listen address without a port is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.Address = "127.0.0.1" },
			wantErrContains: `config: listen.address: "127.0.0.1" is not host:port`,
		},
		{
			name:            "a listen address with a named port is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.Address = "127.0.0.1:ldap" },
			wantErrContains: `config: listen.address: port "ldap" is not a number`,
		},
		{
			name:   "a listen address on every interface with port 0 is valid",
			mutate: func(_ *testing.T, c *Config) { c.Listen.Address = ":0" },
		},
		{
			name:            "an LDAPS address that is not host:port is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.LDAPSAddress = "636"; c.Listen.TLS = tlsFiles(t) },
			wantErrContains: "config: listen.ldaps_address:",
		},
		{
			name: "an LDAPS address equal to the plain one is refused",
			mutate: func(t *testing.T, c *Config) {
				c.Listen.LDAPSAddress = c.Listen.Address
				c.Listen.TLS = tlsFiles(t)
			},
			wantErrContains: "config: listen.ldaps_address: same as listen.address",
		},
		{
			name: "both listeners on port 0 of one address are valid (each gets a free port)",
			mutate: func(t *testing.T, c *Config) {
				c.Listen.Address, c.Listen.LDAPSAddress = "127.0.0.1:0", "127.0.0.1:0"
				c.Listen.TLS = tlsFiles(t)
			},
		},
		{
			name:            "an LDAPS listener without a certificate is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.LDAPSAddress = "127.0.0.1:636" },
			wantErrContains: "config: listen.tls.cert_file: required because ldaps_address or starttls is set",
		},
		{
			name:            "StartTLS without a key is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.StartTLS = true },
			wantErrContains: "config: listen.tls.key_file: required because ldaps_address or starttls is set",
		},
		{
			name: "a certificate without its key is refused even when unused",
			mutate: func(t *testing.T, c *Config) {
				c.Listen.TLS.CertFile = tlsFiles(t).CertFile
			},
			wantErrContains: "config: listen.tls.key_file: required with the other",
		},
		{
			name: "a listener certificate that does not exist is refused",
			mutate: func(t *testing.T, c *Config) {
				c.Listen.StartTLS = true
				c.Listen.TLS = tlsFiles(t)
				c.Listen.TLS.CertFile = filepath.Join(t.TempDir(), "missing.pem")
			},
			wantErrContains: "config: listen.tls.cert_file: stat ",
		},
		{
			name: "an LDAPS listener with both files is valid",
			mutate: func(t *testing.T, c *Config) {
				c.Listen.LDAPSAddress = "127.0.0.1:636"
				c.Listen.StartTLS = true
				c.Listen.TLS = tlsFiles(t)
			},
		},
		{
			name:            "zero connections are refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.MaxConnections = 0 },
			wantErrContains: "config: listen.max_connections: must be at least 1",
		},
		{
			name:            "more connections per IP than in total are refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.MaxConnectionsPerIP = c.Listen.MaxConnections + 1 },
			wantErrContains: "config: listen.max_connections_per_ip: 1025 is more than max_connections (1024)",
		},
		{
			name:            "zero connections per IP are refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.MaxConnectionsPerIP = 0 },
			wantErrContains: "config: listen.max_connections_per_ip: must be at least 1",
		},
		{
			name:            "a zero client idle timeout is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.IdleTimeout = 0 },
			wantErrContains: "config: listen.idle_timeout: must be more than 0",
		},
		{
			name:            "a message cap under 1 KiB is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.MaxMessageBytes = 1023 },
			wantErrContains: "config: listen.max_message_bytes: must be between 1024 (1 KiB) and 16777216 (16 MiB), not 1023",
		},
		{
			name:            "a message cap over 16 MiB is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.MaxMessageBytes = 16<<20 + 1 },
			wantErrContains: "config: listen.max_message_bytes: must be between",
		},
		{
			name:            "zero requests in flight are refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.MaxInFlight = 0 },
			wantErrContains: "config: listen.max_in_flight: must be at least 1",
		},
		{
			name:            "a negative shutdown timeout is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Listen.ShutdownTimeout = -time.Second },
			wantErrContains: "config: listen.shutdown_timeout: must be more than 0, not -1s",
		},
		{
			name:            "no upstream servers are refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers = nil },
			wantErrContains: "config: upstream.servers: required",
		},
		{
			name: "a plain ldap:// server is refused",
			mutate: func(_ *testing.T, c *Config) {
				c.Upstream.Servers = append(c.Upstream.Servers, Server{URL: "ldap://dc2.aadds.example.test"})
			},
			wantErrContains: "config: upstream.servers[1].url: must be an ldaps:// URL: plain ldap:// would send passwords in clear",
		},
		{
			name:            "a server without a scheme is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers[0].URL = "dc1.aadds.example.test:636" },
			wantErrContains: "config: upstream.servers[0].url: must be an ldaps:// URL (AADDS answers LDAPS on 636 only)",
		},
		{
			name:            "a server without a host is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers[0].URL = "ldaps://:636" },
			wantErrContains: "config: upstream.servers[0].url: has no host",
		},
		{
			name:            "a server with an empty URL is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers[0].URL = "" },
			wantErrContains: "config: upstream.servers[0].url: required",
		},
		{
			name:            "a server URL that does not parse is refused without repeating it",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers[0].URL = "ldaps://u:hunter2@dc1 bad:636" },
			wantErrContains: "config: upstream.servers[0].url: not a URL",
		},
		{
			name:            "a server URL with a password is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers[0].URL = "ldaps://svc:pw@dc1.aadds.example.test" },
			wantErrContains: "config: upstream.servers[0].url: must not hold a user or password",
		},
		{
			name:            "a server URL with a base DN is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers[0].URL = "ldaps://dc1/DC=example,DC=test" },
			wantErrContains: "config: upstream.servers[0].url: must name only the server",
		},
		{
			name:            "a server URL with a port out of range is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers[0].URL = "ldaps://dc1:70000" },
			wantErrContains: `config: upstream.servers[0].url: port "70000" is not a number from 1 to 65535`,
		},
		{
			name: "the same server twice is refused",
			mutate: func(_ *testing.T, c *Config) {
				c.Upstream.Servers = append(c.Upstream.Servers, Server{URL: "ldaps://DC1.aadds.example.test"})
			},
			wantErrContains: "config: upstream.servers[1].url: same server as upstream.servers[0]",
		},
		{
			name:            "a server name with a port is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Servers[0].ServerName = "dc1.aadds.example.test:636" },
			wantErrContains: "config: upstream.servers[0].server_name:",
		},
		{
			name:   "an IPv6 server name is valid",
			mutate: func(_ *testing.T, c *Config) { c.Upstream.Servers[0].ServerName = "::1" },
		},
		{
			name:            "a missing CA file setting is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.CAFile = "" },
			wantErrContains: "config: upstream.ca_file: required",
		},
		{
			name:            "a CA file that does not exist is refused",
			mutate:          func(t *testing.T, c *Config) { c.Upstream.CAFile = filepath.Join(t.TempDir(), "nope.pem") },
			wantErrContains: "config: upstream.ca_file: stat ",
		},
		{
			name:            "a CA file that is a directory is refused",
			mutate:          func(t *testing.T, c *Config) { c.Upstream.CAFile = t.TempDir() },
			wantErrContains: "is a directory: point it at the PEM bundle",
		},
		{
			name:            "a missing bind DN is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.BindDN = " " },
			wantErrContains: "config: upstream.bind_dn: required",
		},
		{
			name:            "a bind DN that does not parse is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.BindDN = "CN=svc,=broken" },
			wantErrContains: "config: upstream.bind_dn: not a valid DN",
		},
		{
			name: "a bind DN as a DN is valid",
			mutate: func(_ *testing.T, c *Config) {
				c.Upstream.BindDN = "CN=PBX Service,OU=AADDC Users,DC=aadds,DC=example,DC=test"
			},
		},
		{
			name:            "no password is refused as an anonymous bind",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.BindPassword = "" },
			wantErrContains: "config: upstream.bind_password: required: set bind_password",
		},
		{
			name:            "a white space password is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.BindPassword = " \t" },
			wantErrContains: "config: upstream.bind_password: is only white space",
		},
		{
			name: "a password file that was never read is refused",
			mutate: func(_ *testing.T, c *Config) {
				c.Upstream.BindPassword = ""
				c.Upstream.BindPasswordFile = "/etc/ldapgate/bind-password"
			},
			wantErrContains: "config: upstream.bind_password_file: no password was read from it",
		},
		{
			name:            "a missing base DN is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.BaseDN = "" },
			wantErrContains: "config: upstream.base_dn: required",
		},
		{
			name:            "a base DN that does not parse is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.BaseDN = "aadds.example.test" },
			wantErrContains: "config: upstream.base_dn: not a valid DN",
		},
		{
			name:            "a user base outside the base DN is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.UserBaseDN = "OU=AADDC Users,DC=other,DC=test" },
			wantErrContains: `config: upstream.user_base_dn: "OU=AADDC Users,DC=other,DC=test" is not inside base_dn`,
		},
		{
			name:   "a user base under the base DN in another case is valid",
			mutate: func(_ *testing.T, c *Config) { c.Upstream.UserBaseDN = "ou=AADDC Users,dc=AADDS,dc=example,dc=test" },
		},
		{
			name:            "a user base DN that does not parse is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.UserBaseDN = "AADDC Users" },
			wantErrContains: "config: upstream.user_base_dn: not a valid DN",
		},
		{
			name:            "a user filter that does not compile is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.UserFilter = "(objectClass=user" },
			wantErrContains: "config: upstream.user_filter: not a valid LDAP filter",
		},
		{
			name:            "an empty user filter is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.UserFilter = "" },
			wantErrContains: "config: upstream.user_filter: not a valid LDAP filter",
		},
		{
			name:            "a NetBIOS domain with a backslash is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.NetBIOSDomain = `AADDS\` },
			wantErrContains: "config: upstream.netbios_domain:",
		},
		{
			name:            "a NetBIOS domain with a space is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.NetBIOSDomain = "AAD DS" },
			wantErrContains: "config: upstream.netbios_domain:",
		},
		{
			name:            "a DNS name as the NetBIOS domain is refused for its length",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.NetBIOSDomain = "contoso.onmicrosoft.com" },
			wantErrContains: "config: upstream.netbios_domain: \"contoso.onmicrosoft.com\" is longer than 15 characters",
		},
		{
			name:            "a zero dial timeout is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.DialTimeout = 0 },
			wantErrContains: "config: upstream.dial_timeout: must be more than 0",
		},
		{
			name:            "an operation timeout over five minutes is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.OpTimeout = 5*time.Minute + 1 },
			wantErrContains: "config: upstream.op_timeout: must be at most 5m",
		},
		{
			name:            "an empty service pool is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Pool.ServiceSize = 0 },
			wantErrContains: "config: upstream.pool.service_size: must be between 1 and 1024, not 0",
		},
		{
			name:            "a bind pool over 1024 is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Pool.BindSize = 1025 },
			wantErrContains: "config: upstream.pool.bind_size: must be between 1 and 1024, not 1025",
		},
		{
			name:            "a pool idle timeout of AD's 900 s is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Pool.IdleTimeout = 900 * time.Second },
			wantErrContains: "config: upstream.pool.idle_timeout: must be under 15m, not 15m0s: AD closes connections idle for 900 s (MaxConnIdleTime)",
		},
		{
			name:            "a zero pool idle timeout is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Pool.IdleTimeout = 0 },
			wantErrContains: "config: upstream.pool.idle_timeout: must be more than 0",
		},
		{
			name:            "a zero connection lifetime is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Pool.MaxLifetime = 0 },
			wantErrContains: "config: upstream.pool.max_lifetime: must be more than 0",
		},
		{
			name:            "a zero pool wait is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Pool.WaitTimeout = 0 },
			wantErrContains: "config: upstream.pool.wait_timeout: must be more than 0",
		},
		{
			name:            "a breaker that never opens is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Breaker.Failures = 0 },
			wantErrContains: "config: upstream.breaker.failures: must be at least 1",
		},
		{
			name:            "a zero probe interval is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Upstream.Breaker.ProbeInterval = 0 },
			wantErrContains: "config: upstream.breaker.probe_interval: must be more than 0",
		},
		{
			name:            "an empty DN cache is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Cache.DN.Size = 0 },
			wantErrContains: "config: cache.dn.size: must be at least 1",
		},
		{
			name:            "a zero DN cache TTL is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Cache.DN.TTL = 0 },
			wantErrContains: "config: cache.dn.ttl: must be more than 0",
		},
		{
			name:            "an unknown log level is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Log.Level = "verbose" },
			wantErrContains: `config: log.level: "verbose" is not a level: use debug, info, warn or error`,
		},
		{
			name:            "an unknown log format is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Log.Format = "text" },
			wantErrContains: `config: log.format: "text" is not a format: use json or console`,
		},
		{
			name:            "a sync page larger than AD's MaxPageSize is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Sync.PageSize = 1500 },
			wantErrContains: "config: sync.page_size: must be between 1 and 1000",
		},
		{
			name:            "a sync base outside the upstream base is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Sync.BaseDN = "OU=Users,DC=other,DC=test" },
			wantErrContains: "config: sync.base_dn:",
		},
		{
			name:            "a broken sync filter is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Sync.Filter = "(memberOf=" },
			wantErrContains: "config: sync.filter: not a valid LDAP filter",
		},
		{
			name: "attributes without objectGUID are refused",
			mutate: func(_ *testing.T, c *Config) {
				c.Sync.Attributes = []string{"sAMAccountName", "userAccountControl", "uSNChanged"}
			},
			wantErrContains: "config: sync.attributes: must include objectGUID",
		},
		{
			name:            "a jitter as long as the interval is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Sync.Jitter = c.Sync.Interval },
			wantErrContains: "config: sync.jitter:",
		},
		{
			name:            "a store write batch under 100 entries is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Sync.WriteBatch = 10 },
			wantErrContains: "config: sync.write_batch: must be between 100 and 1000000, not 10",
		},
		{
			name:            "a delete threshold over 100 percent is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Sync.MaxDeletePercent = 150 },
			wantErrContains: "config: sync.max_delete_percent:",
		},
		{
			name:            "a negative outage age is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Sync.OutageMaxAge = -time.Hour },
			wantErrContains: "config: sync.outage_max_age:",
		},
		{
			name:            "an unknown import mode is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Import.Mode = "mirror" },
			wantErrContains: `config: import.mode: "mirror" is not a mode`,
		},
		{
			name:            "a webhook that is not http(s) is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Import.Webhook.URL = "ftp://x/y" },
			wantErrContains: "config: import.webhook.url: not an http(s) URL",
		},
		{
			name:            "a basic-auth user without a password is refused",
			mutate:          func(_ *testing.T, c *Config) { c.HTTP.BasicUser = "pascom" },
			wantErrContains: "config: http.basic_user: basic_user and basic_password go together",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig(t)
			tt.mutate(t, c)
			err := c.Validate()
			checkErr(t, err, tt.wantErrContains)
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error repeats a password from the URL: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c := validConfig(t)
	c.Listen.MaxConnections = 0
	c.Upstream.Servers[0].URL = "ldap://dc1"
	c.Log.Level = "loud"
	var keys []string
	for _, e := range problemsOf(t, c.Validate()) {
		keys = append(keys, e.Key)
	}
	want := []string{"listen.max_connections", "upstream.servers[0].url", "log.level"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("problems on keys %q, want %q", keys, want)
	}
}

func TestValidateFillsDerivedValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		server         Server
		wantURL        string
		wantServerName string
	}{
		{
			name:           "a URL without a port gets 636 and its host as server name",
			server:         Server{URL: "ldaps://dc1.aadds.example.test"},
			wantURL:        "ldaps://dc1.aadds.example.test:636",
			wantServerName: "dc1.aadds.example.test",
		},
		{
			name:           "a URL with a trailing slash and an upper-case scheme is normalised",
			server:         Server{URL: "LDAPS://dc1.aadds.example.test:6360/"},
			wantURL:        "ldaps://dc1.aadds.example.test:6360",
			wantServerName: "dc1.aadds.example.test",
		},
		{
			name:           "an IP URL without a server name keeps the IP as server name",
			server:         Server{URL: "ldaps://127.0.0.2"},
			wantURL:        "ldaps://127.0.0.2:636",
			wantServerName: "127.0.0.2",
		},
		{
			name:           "an IPv6 URL keeps its brackets",
			server:         Server{URL: "ldaps://[::1]"},
			wantURL:        "ldaps://[::1]:636",
			wantServerName: "::1",
		},
		{
			name:           "a server name that is set is kept",
			server:         Server{URL: "ldaps://127.0.0.1:636", ServerName: "dc1.aadds.example.test"},
			wantURL:        "ldaps://127.0.0.1:636",
			wantServerName: "dc1.aadds.example.test",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig(t)
			c.Upstream.Servers = []Server{tt.server}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := c.Upstream.Servers[0]; got.URL != tt.wantURL || got.ServerName != tt.wantServerName {
				t.Errorf("server = %+v, want URL %q and server name %q", got, tt.wantURL, tt.wantServerName)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("second Validate: %v", err)
			}
		})
	}

	t.Run("user_base_dn defaults to base_dn", func(t *testing.T) {
		t.Parallel()
		c := validConfig(t)
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if c.Upstream.UserBaseDN != c.Upstream.BaseDN {
			t.Errorf("user_base_dn = %q, want base_dn %q", c.Upstream.UserBaseDN, c.Upstream.BaseDN)
		}
	})
}

// tlsFiles returns a listener certificate and key that exist.
func tlsFiles(t *testing.T) ListenTLS {
	t.Helper()
	return ListenTLS{
		CertFile: writeFile(t, "cert.pem", "certificate", 0o644),
		KeyFile:  writeFile(t, "key.pem", "key", 0o600),
	}
}
