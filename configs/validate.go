package configs

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Bounds that validation enforces.
const (
	minMessageBytes = 1 << 10
	maxMessageBytes = 16 << 20
	maxUpstreamWait = 5 * time.Minute
	maxPoolSize     = 1024
	// adMaxConnIdle is AD's MaxConnIdleTime (900 s): AD closes connections
	// idle longer, so a pool must retire them first.
	adMaxConnIdle = 15 * time.Minute
	// maxNetBIOSLen is the longest NetBIOS domain name.
	maxNetBIOSLen = 15
	// defaultLDAPSPort is where AADDS (and every AD DC) answers LDAPS.
	defaultLDAPSPort = "636"
)

// Validate fills in the values derived from others (Upstream.UserBaseDN from
// BaseDN; each server's URL normalised to "ldaps://host:port" and ServerName
// from its host) and checks the whole configuration. It reports every problem,
// each an *Error naming its key, joined with errors.Join; Load and Parse call
// it. It checks that the files the configuration names exist and can be read,
// but leaves their contents (certificates, keys) to the certs package.
//
// Validate accepts both BindPassword and BindPasswordFile being set, because
// after loading BindPassword holds the file's content; Load and Parse refuse a
// file that sets both.
func (c *Config) Validate() error {
	return c.validate().err()
}

// validate is Validate's list of problems.
func (c *Config) validate() problems {
	c.fillDerived()
	var p problems
	c.Listen.validate(&p)
	c.Upstream.validate(&p)
	checkCache(&p, "cache.dn", c.Cache.DN)
	c.Search.validate(&p, c.Upstream.BaseDN)
	c.Sync.validate(&p, c.Upstream.BaseDN)
	c.Import.validate(&p)
	c.HTTP.validate(&p)
	c.Lockout.validate(&p)
	c.Offline.validate(&p)
	c.Audit.validate(&p)
	c.Reload.validate(&p)
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		p.addf("log.level", "%q is not a level: use debug, info, warn or error", c.Log.Level)
	}
	if !slices.Contains([]string{"json", "console"}, c.Log.Format) {
		p.addf("log.format", "%q is not a format: use json or console", c.Log.Format)
	}
	return p
}

// fillDerived sets the defaults that depend on other values; it is the one
// place they are applied. Values it cannot derive are left for validate to
// report.
func (c *Config) fillDerived() {
	u := &c.Upstream
	if u.UserBaseDN == "" {
		u.UserBaseDN = u.BaseDN
	}
	defer c.fillSyncDerived()
	for i := range u.Servers {
		s := &u.Servers[i]
		normalised, host, err := normaliseServerURL(s.URL)
		if err != nil {
			continue
		}
		s.URL = normalised
		if s.ServerName == "" {
			// An IP host is fine here too: crypto/tls verifies it against the
			// certificate's IP SANs.
			s.ServerName = host
		}
	}
}

// validate checks the listener settings.
func (l *Listen) validate(p *problems) {
	if l.Address == "" {
		p.addf("listen.address", "required: the host:port the PBX connects to, e.g. 127.0.0.1:389")
	} else {
		checkHostPort(p, "listen.address", l.Address, "127.0.0.1:389")
	}
	if l.LDAPSAddress != "" {
		checkHostPort(p, "listen.ldaps_address", l.LDAPSAddress, "127.0.0.1:636")
		// Port 0 picks a free port for each listener: the same ":0" twice is fine.
		if _, port, _ := net.SplitHostPort(l.LDAPSAddress); l.LDAPSAddress == l.Address && port != "0" {
			p.addf("listen.ldaps_address", "same as listen.address: give LDAPS its own port, e.g. 636")
		}
	}
	needTLS := l.LDAPSAddress != "" || l.StartTLS
	for _, f := range []struct{ key, path, what string }{
		{"listen.tls.cert_file", l.TLS.CertFile, "the listener's PEM certificate chain"},
		{"listen.tls.key_file", l.TLS.KeyFile, "the listener's PEM private key"},
	} {
		switch {
		case f.path != "":
			checkReadable(p, f.key, f.path, f.what)
		case needTLS:
			p.addf(f.key, "required because ldaps_address or starttls is set: point it at %s (ldapgate certs init makes a pair)", f.what)
		case l.TLS.CertFile != "" || l.TLS.KeyFile != "":
			p.addf(f.key, "required with the other of cert_file and key_file: set both, or neither")
		}
	}
	if l.MaxConnections < 1 {
		p.addf("listen.max_connections", "must be at least 1, not %d (default 1024)", l.MaxConnections)
	}
	switch {
	case l.MaxConnectionsPerIP < 1:
		p.addf("listen.max_connections_per_ip", "must be at least 1, not %d (default 256)", l.MaxConnectionsPerIP)
	case l.MaxConnections >= 1 && l.MaxConnectionsPerIP > l.MaxConnections:
		p.addf("listen.max_connections_per_ip", "%d is more than max_connections (%d): lower it or raise max_connections", l.MaxConnectionsPerIP, l.MaxConnections)
	}
	checkPositive(p, "listen.idle_timeout", l.IdleTimeout, "5m")
	if l.MaxMessageBytes < minMessageBytes || l.MaxMessageBytes > maxMessageBytes {
		p.addf("listen.max_message_bytes", "must be between %d (1 KiB) and %d (16 MiB), not %d; the default 131072 fits any bind or search a PBX sends", minMessageBytes, maxMessageBytes, l.MaxMessageBytes)
	}
	if l.MaxInFlight < 1 {
		p.addf("listen.max_in_flight", "must be at least 1, not %d (default 512)", l.MaxInFlight)
	}
	checkPositive(p, "listen.shutdown_timeout", l.ShutdownTimeout, "10s")
	l.ProxyProtocol.validate(p)
}

// validate checks the upstream settings.
func (u *Upstream) validate(p *problems) {
	if len(u.Servers) == 0 {
		p.addf("upstream.servers", "required: list at least one domain controller, e.g. - url: ldaps://ldaps.contoso.onmicrosoft.com:636")
	}
	seen := make(map[string]int)
	for i, s := range u.Servers {
		key := fmt.Sprintf("upstream.servers[%d]", i)
		normalised, _, err := normaliseServerURL(s.URL)
		if err != nil {
			p.add(key+".url", err)
			continue
		}
		if first, dup := seen[strings.ToLower(normalised)]; dup {
			p.addf(key+".url", "same server as upstream.servers[%d]: list each domain controller once", first)
		} else {
			seen[strings.ToLower(normalised)] = i
		}
		if !validServerName(s.ServerName) {
			p.addf(key+".server_name", "%q is not a host name: write the name in the DC's certificate, e.g. dc1.contoso.com, without scheme, port or path", s.ServerName)
		}
	}
	if u.CAFile == "" {
		p.addf("upstream.ca_file", "required: point it at the PEM bundle that signed the DCs' certificates (for AADDS, export the secure LDAP certificate); upstream TLS is always verified")
	} else {
		checkReadable(p, "upstream.ca_file", u.CAFile, "the PEM bundle that signed the DCs' certificates")
	}
	u.validateAccount(p)
	u.validateDirectory(p)
	checkUpstreamTimeout(p, "upstream.dial_timeout", u.DialTimeout)
	checkUpstreamTimeout(p, "upstream.op_timeout", u.OpTimeout)
	u.Pool.validate(p)
	if u.Breaker.Failures < 1 {
		p.addf("upstream.breaker.failures", "must be at least 1, not %d (default 3)", u.Breaker.Failures)
	}
	checkPositive(p, "upstream.breaker.probe_interval", u.Breaker.ProbeInterval, "10s")
	if u.CertCheckInterval < 0 {
		p.addf("upstream.cert_check_interval", "must be 0 (no check) or positive, not %s: set it to 1h (the default)", u.CertCheckInterval)
	}
}

// validateAccount checks the service account.
func (u *Upstream) validateAccount(p *problems) {
	switch dn := strings.TrimSpace(u.BindDN); {
	case dn == "":
		p.addf("upstream.bind_dn", "required: the service account as a UPN (svc-pbx@contoso.onmicrosoft.com) or a DN")
	case strings.Contains(dn, "="):
		if _, err := ldap.ParseDN(dn); err != nil {
			p.addf("upstream.bind_dn", "not a valid DN (%w): write a DN such as CN=svc-pbx,OU=AADDC Users,DC=contoso,DC=onmicrosoft,DC=com, or a UPN", err)
		}
	}
	switch {
	case u.BindPassword == "" && u.BindPasswordFile == "":
		p.addf("upstream.bind_password", "required: set bind_password (e.g. \"${LDAPGATE_BIND_PASSWORD}\") or bind_password_file; an empty password would be an anonymous bind to AD")
	case u.BindPassword == "":
		p.addf("upstream.bind_password_file", "no password was read from it: load the configuration with configs.Load or configs.Parse, which read it")
	case strings.TrimSpace(string(u.BindPassword)) == "":
		p.addf("upstream.bind_password", "is only white space: set the service account's password (AD treats an empty password as an anonymous bind)")
	}
}

// validateDirectory checks the base DNs, the user filter and the NetBIOS name.
func (u *Upstream) validateDirectory(p *problems) {
	base, err := ldap.ParseDN(u.BaseDN)
	switch {
	case err != nil:
		p.addf("upstream.base_dn", "not a valid DN (%w): write the domain's DN, e.g. DC=contoso,DC=onmicrosoft,DC=com", err)
		base = nil
	case len(base.RDNs) == 0:
		p.addf("upstream.base_dn", "required: the domain's DN, e.g. DC=contoso,DC=onmicrosoft,DC=com")
		base = nil
	}
	switch users, err := ldap.ParseDN(u.UserBaseDN); {
	case err != nil:
		p.addf("upstream.user_base_dn", "not a valid DN (%w): write the OU holding the users, e.g. OU=AADDC Users,DC=contoso,DC=onmicrosoft,DC=com", err)
	case base != nil && !base.EqualFold(users) && !base.AncestorOfFold(users):
		p.addf("upstream.user_base_dn", "%q is not inside base_dn %q: use base_dn or an OU under it, e.g. OU=AADDC Users,%s", u.UserBaseDN, u.BaseDN, u.BaseDN)
	}
	if _, err := ldap.CompileFilter(u.UserFilter); err != nil {
		p.addf("upstream.user_filter", "not a valid LDAP filter (%w): write one such as (&(objectCategory=person)(objectClass=user))", err)
	}
	switch n := u.NetBIOSDomain; {
	case strings.ContainsAny(n, "\\/:*?\"<>| \t"):
		p.addf("upstream.netbios_domain", "%q has a character a NetBIOS domain name cannot hold (such as \\ or a space): write the short name alone, e.g. CONTOSO", n)
	case len(n) > maxNetBIOSLen:
		p.addf("upstream.netbios_domain", "%q is longer than %d characters: write the short (pre-Windows 2000) name, e.g. CONTOSO, not the DNS name", n, maxNetBIOSLen)
	}
}

// validate checks the pool settings.
func (pl *Pool) validate(p *problems) {
	checkPoolSize(p, "upstream.pool.service_size", pl.ServiceSize)
	checkPoolSize(p, "upstream.pool.bind_size", pl.BindSize)
	checkPositive(p, "upstream.pool.max_lifetime", pl.MaxLifetime, "10m")
	switch {
	case pl.IdleTimeout <= 0:
		p.addf("upstream.pool.idle_timeout", "must be more than 0, not %s: e.g. 5m", pl.IdleTimeout)
	case pl.IdleTimeout >= adMaxConnIdle:
		p.addf("upstream.pool.idle_timeout", "must be under 15m, not %s: AD closes connections idle for 900 s (MaxConnIdleTime), and the next request on such a connection fails", pl.IdleTimeout)
	}
	checkPositive(p, "upstream.pool.wait_timeout", pl.WaitTimeout, "2s")
}

// normaliseServerURL checks a DC's URL and returns it as "ldaps://host:port",
// with its host.
func normaliseServerURL(raw string) (string, string, error) {
	if raw == "" {
		return "", "", errors.New("required: the DC's LDAPS URL, e.g. ldaps://ldaps.contoso.onmicrosoft.com:636")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, which may hold a password
		}
		return "", "", fmt.Errorf("not a URL (%w): write e.g. ldaps://ldaps.contoso.onmicrosoft.com:636", err)
	}
	switch {
	case u.Scheme == "ldap":
		return "", "", errors.New("must be an ldaps:// URL: plain ldap:// would send passwords in clear (and AADDS answers LDAPS on 636 only)")
	case u.Scheme != "ldaps" || u.Opaque != "":
		return "", "", errors.New("must be an ldaps:// URL (AADDS answers LDAPS on 636 only), e.g. ldaps://ldaps.contoso.onmicrosoft.com:636")
	case u.User != nil:
		return "", "", errors.New("must not hold a user or password: use bind_dn and bind_password")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", "", errors.New("must name only the server, as ldaps://host:port: put the base DN in base_dn")
	case u.Hostname() == "":
		return "", "", errors.New("has no host: write e.g. ldaps://ldaps.contoso.onmicrosoft.com:636")
	}
	port := u.Port()
	if port == "" {
		port = defaultLDAPSPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("port %q is not a number from 1 to 65535: AADDS answers LDAPS on 636", port)
	}
	return "ldaps://" + net.JoinHostPort(u.Hostname(), port), u.Hostname(), nil
}

// validServerName reports whether name can be a TLS server name: a host name or
// an IP address, without scheme, port or path.
func validServerName(name string) bool {
	if name == "" || strings.ContainsAny(name, "/ \t@") {
		return false
	}
	return !strings.Contains(name, ":") || net.ParseIP(name) != nil
}

// checkHostPort checks that addr is host:port with a numeric port; the host may
// be empty (every interface) and the port 0 (any free port).
func checkHostPort(p *problems, key, addr, example string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.addf(key, "%q is not host:port: write e.g. %s", addr, example)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.addf(key, "port %q is not a number from 0 to 65535: write e.g. %s", port, example)
	}
}

// checkReadable checks that path names a file this process can open; what
// describes the file for the message.
func checkReadable(p *problems, key, path, what string) {
	st, err := os.Stat(path)
	if err != nil {
		p.addf(key, "%w: point it at %s", err, what)
		return
	}
	if st.IsDir() {
		p.addf(key, "%s is a directory: point it at %s", path, what)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		p.addf(key, "%w: make it readable by the user ldapgate runs as", err)
		return
	}
	_ = f.Close() // opened only to check that it can be read
}

// checkPositive checks that d is more than zero.
func checkPositive(p *problems, key string, d time.Duration, example string) {
	if d <= 0 {
		p.addf(key, "must be more than 0, not %s: e.g. %s", d, example)
	}
}

// checkUpstreamTimeout checks a timeout on upstream calls: more than zero and
// at most 5m, since a request waiting longer has long been given up on.
func checkUpstreamTimeout(p *problems, key string, d time.Duration) {
	switch {
	case d <= 0:
		p.addf(key, "must be more than 0, not %s: e.g. 5s", d)
	case d > maxUpstreamWait:
		p.addf(key, "must be at most 5m, not %s: a PBX gives up on a login long before; e.g. 5s", d)
	}
}

// checkPoolSize checks a per-DC connection count.
func checkPoolSize(p *problems, key string, n int) {
	if n < 1 || n > maxPoolSize {
		p.addf(key, "must be between 1 and %d, not %d: connections per DC", maxPoolSize, n)
	}
}

// checkCache checks one cache's bounds.
func checkCache(p *problems, key string, c CacheSize) {
	if c.Size < 1 {
		p.addf(key+".size", "must be at least 1, not %d (default 10000)", c.Size)
	}
	checkPositive(p, key+".ttl", c.TTL, "15m")
}
