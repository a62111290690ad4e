package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy"
)

// expiryWarnDays is how close a DC certificate's expiry may come before
// 'check upstream' flags it. AADDS secure LDAP certificates are often valid for
// only 3 to 6 months and are renewed by hand.
const expiryWarnDays = 30

// checkUpstreamCommand returns 'ldapgate check upstream'.
func checkUpstreamCommand() *command {
	return &command{
		name:    "upstream",
		summary: "test each domain controller: TCP, TLS and certificate, service bind, rootDSE",
		usage:   "--config FILE [--json]",
		help: `For each domain controller in upstream.servers, in order, on a new
connection of its own (not the gateway's pools), it runs and times:

    tcp      connect to the DC's address
    tls      the TLS handshake, verified against upstream.ca_file and the
             server name (server_name, else the URL's host); prints the
             certificate's subject, names, expiry with the days left, and the
             chain. A certificate that expires within 30 days is a warning.
    bind     the service account's bind (upstream.bind_dn and bind_password)
    rootdse  a read of the rootDSE: defaultNamingContext, dnsHostName and
             highestCommittedUSN (a warning when upstream.base_dn is not in
             the DC's domain)

A failed step says what is wrong and what to change, e.g. a certificate that is
not signed by a CA in upstream.ca_file, or a refused service password; the
steps after it are skipped. The service bind is a real one: a wrong
bind_password counts once per DC against the service account's lockout
(AADDS: 5 within 2 minutes). A DC's steps are bounded by upstream.dial_timeout
(tcp and tls together) and upstream.op_timeout (each of bind and rootdse).

--json prints the same as one JSON object (latencies in milliseconds).

Exit status: 0 when every DC passed every step (warnings allowed); 1 when any
DC failed a step, even if another DC is fine: the gateway would still work,
but a DC it cannot use must show in scripts and monitoring.`,
		setup: func(fs *flag.FlagSet) runFunc {
			path := fs.String("config", "", "read the configuration from `FILE`")
			asJSON := fs.Bool("json", false, "print the result as JSON instead of text")
			return func(e *env, args []string) error {
				if err := checkArgs(*path, args, 0); err != nil {
					return err
				}
				cfg, err := loadConfig(*path)
				if err != nil {
					return err
				}
				ctx, stop := interruptible()
				defer stop()
				rep := checkUpstream(ctx, *path, cfg.Upstream, time.Now)
				if *asJSON {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					if err := enc.Encode(rep); err != nil {
						return err
					}
				} else if err := rep.writeText(e.stdout); err != nil {
					return err
				}
				return rep.err()
			}
		},
	}
}

// Statuses of a check step.
const (
	statusOK      = "ok"
	statusWarn    = "warn"
	statusFail    = "fail"
	statusSkipped = "skipped"
)

// statusLabel is a status as the text report shows it.
var statusLabel = map[string]string{statusOK: "OK", statusWarn: "WARN", statusFail: "FAIL", statusSkipped: "SKIP"}

// upstreamReport is what 'check upstream' found, printed as text or JSON.
type upstreamReport struct {
	Config string    `json:"config"`
	CAFile string    `json:"ca_file"`
	OK     bool      `json:"ok"`
	DCs    []dcCheck `json:"dcs"`
	// Error is a problem before any DC was tried (an unreadable CA bundle).
	Error string `json:"error,omitempty"`
}

// dcCheck is the result of the checks of one domain controller.
type dcCheck struct {
	Index       int          `json:"index"` // in upstream.servers
	URL         string       `json:"url"`
	ServerName  string       `json:"server_name"`
	OK          bool         `json:"ok"` // no step failed
	Steps       []checkStep  `json:"steps"`
	Certificate *certInfo    `json:"certificate,omitempty"`
	RootDSE     *rootDSEInfo `json:"root_dse,omitempty"`
}

// checkStep is one timed step.
type checkStep struct {
	Name      string        `json:"name"`   // tcp, tls, bind, rootdse
	Status    string        `json:"status"` // ok, warn, fail, skipped
	Latency   time.Duration `json:"-"`
	LatencyMS float64       `json:"latency_ms"`
	// Detail is what the step found, or what is wrong and what to do.
	Detail string `json:"detail"`
}

// certInfo describes the certificate a DC presented.
type certInfo struct {
	Subject  string      `json:"subject"`
	Names    []string    `json:"names"` // DNS and IP subject alternative names
	NotAfter time.Time   `json:"not_after"`
	DaysLeft int         `json:"days_left"`
	Verified bool        `json:"verified"`
	Chain    []chainCert `json:"chain"` // leaf first; the verified chain when verification passed
	// Expiry is when the chain stops verifying (certs.Expiry): the earliest
	// NotAfter of Chain, usually the leaf's.
	Expiry time.Time `json:"expiry"`
}

// chainCert is one certificate of a chain.
type chainCert struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
}

// rootDSEInfo is what the rootDSE said.
type rootDSEInfo struct {
	DefaultNamingContext string `json:"default_naming_context"`
	DNSHostName          string `json:"dns_host_name"`
	HighestCommittedUSN  string `json:"highest_committed_usn"`
}

// err is nil when every DC passed, else the summary for standard error.
func (r *upstreamReport) err() error {
	if r.Error != "" {
		return errors.New(r.Error)
	}
	var failed []string
	for _, d := range r.DCs {
		if !d.OK {
			failed = append(failed, fmt.Sprintf("%s (%s)", d.URL, d.failedStep()))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d domain controllers failed a check: %s", len(failed), len(r.DCs), strings.Join(failed, ", "))
}

// failedStep names the first failed step.
func (d *dcCheck) failedStep() string {
	for _, s := range d.Steps {
		if s.Status == statusFail {
			return s.Name
		}
	}
	return ""
}

// checkUpstream checks every DC of cfg in order. source names the
// configuration in the report; now is the clock for certificate expiry.
func checkUpstream(ctx context.Context, source string, cfg configs.Upstream, now func() time.Time) *upstreamReport {
	rep := &upstreamReport{Config: source, CAFile: cfg.CAFile}
	pool, err := certs.LoadCAPool(cfg.CAFile)
	if err != nil {
		rep.Error = fmt.Sprintf("upstream.ca_file: %v: point it at the PEM file with the CA of the DCs' secure LDAP certificate", err)
		return rep
	}
	c := &dcChecker{cfg: cfg, pool: pool, now: now, dialer: &net.Dialer{}}
	rep.OK = true
	for i, s := range cfg.Servers {
		d := c.check(ctx, i, s)
		rep.OK = rep.OK && d.OK
		rep.DCs = append(rep.DCs, d)
	}
	return rep
}

// dcChecker runs the steps against one DC after another.
type dcChecker struct {
	cfg    configs.Upstream
	pool   *x509.CertPool
	now    func() time.Time
	dialer *net.Dialer
}

// check runs the steps against server i; each step runs only when the one
// before it did not fail.
func (c *dcChecker) check(ctx context.Context, i int, s configs.Server) dcCheck {
	d := dcCheck{Index: i, URL: s.URL, ServerName: s.ServerName}
	add := func(name, status string, dur time.Duration, detail string) bool {
		d.Steps = append(d.Steps, checkStep{Name: name, Status: status, Latency: dur,
			LatencyMS: float64(dur.Microseconds()) / 1000, Detail: detail})
		return status != statusFail
	}
	skipRest := func(names ...string) dcCheck {
		for _, n := range names {
			add(n, statusSkipped, 0, "not tried: an earlier step failed")
		}
		return d
	}

	addr, host, err := dialAddr(s.URL)
	if err != nil {
		add("tcp", statusFail, 0, fmt.Sprintf("upstream.servers[%d].url: %v", i, err))
		return skipRest("tls", "bind", "rootdse")
	}
	name := s.ServerName
	if name == "" {
		name = host
		d.ServerName = host
	}

	// tcp and tls share upstream.dial_timeout, as in the gateway's pools.
	dialCtx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	start := time.Now()
	raw, err := c.dialer.DialContext(dialCtx, "tcp", addr)
	if !add("tcp", status(err), time.Since(start), tcpDetail(addr, err, c.cfg.DialTimeout)) {
		return skipRest("tls", "bind", "rootdse")
	}
	defer raw.Close()

	tc := tls.Client(raw, certs.ClientConfig(c.pool, name))
	start = time.Now()
	err = tc.HandshakeContext(dialCtx)
	dur := time.Since(start)
	if err != nil {
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) {
			d.Certificate = describeCert(cve.UnverifiedCertificates, false, c.now())
		}
		add("tls", statusFail, dur, tlsFailure(err, i, s.URL, name, c.cfg.CAFile, c.now()))
		return skipRest("bind", "rootdse")
	}
	cs := tc.ConnectionState()
	chain := cs.PeerCertificates
	if len(cs.VerifiedChains) > 0 {
		chain = cs.VerifiedChains[0]
	}
	d.Certificate = describeCert(chain, true, c.now())
	st, detail := statusOK, fmt.Sprintf("%s, certificate verified against upstream.ca_file", tls.VersionName(cs.Version))
	if left := d.Certificate.DaysLeft; left < expiryWarnDays {
		st = statusWarn
		detail += fmt.Sprintf("; it expires in %d days (%s): renew the secure LDAP certificate in AADDS before then",
			left, d.Certificate.Expiry.UTC().Format(time.DateOnly))
	}
	add("tls", st, dur, detail)

	lc := ldap.NewConn(tc, true)
	lc.Start()
	defer lc.Close()
	lc.SetTimeout(c.cfg.OpTimeout)
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() }) // Ctrl-C ends a hanging step
	defer stop()

	start = time.Now()
	err = lc.Bind(c.cfg.BindDN, string(c.cfg.BindPassword))
	if !add("bind", status(err), time.Since(start), bindDetail(err, c.cfg.BindDN, c.cfg.OpTimeout)) {
		return skipRest("rootdse")
	}

	start = time.Now()
	res, err := lc.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1,
		int(c.cfg.OpTimeout.Seconds()), false, "(objectClass=*)",
		[]string{"defaultNamingContext", "dnsHostName", "highestCommittedUSN"}, nil))
	dur = time.Since(start)
	if err == nil && len(res.Entries) != 1 {
		err = fmt.Errorf("%d entries for the rootDSE, want 1", len(res.Entries))
	}
	if err != nil {
		add("rootdse", statusFail, dur, fmt.Sprintf("read the rootDSE: %v: is this an Active Directory domain controller?", err))
		d.OK = false
		return d
	}
	e := res.Entries[0]
	d.RootDSE = &rootDSEInfo{
		DefaultNamingContext: e.GetAttributeValue("defaultNamingContext"),
		DNSHostName:          e.GetAttributeValue("dnsHostName"),
		HighestCommittedUSN:  e.GetAttributeValue("highestCommittedUSN"),
	}
	st, detail = rootDSEStatus(d.RootDSE, c.cfg.BaseDN)
	add("rootdse", st, dur, detail)
	d.OK = true
	return d
}

// dialAddr returns host:port and the host of an ldaps:// URL (validated
// configs have that form; the port defaults to 636).
func dialAddr(raw string) (addr, host string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", err
	}
	if u.Scheme != "ldaps" || u.Hostname() == "" {
		return "", "", fmt.Errorf("%q is not an ldaps://host[:port] URL", raw)
	}
	port := u.Port()
	if port == "" {
		port = ldap.DefaultLdapsPort
	}
	return net.JoinHostPort(u.Hostname(), port), u.Hostname(), nil
}

func status(err error) string {
	if err != nil {
		return statusFail
	}
	return statusOK
}

// tcpDetail says what the connect did.
func tcpDetail(addr string, err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case err == nil:
		return "connected to " + addr
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer from %s within upstream.dial_timeout (%s): a firewall or NSG dropping TCP 636, or the wrong address", addr, timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("%s refused the connection: nothing listens there; AADDS answers secure LDAP on 636 only once secure LDAP is enabled", addr)
	default:
		return fmt.Sprintf("connect to %s: %v", addr, err)
	}
}

// tlsFailure explains a failed handshake with server i: what is wrong with the
// certificate and which setting to change.
func tlsFailure(err error, i int, rawURL, name, caFile string, now time.Time) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		recHeader tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Sprintf("TLS: the certificate of %s is not signed by a CA in upstream.ca_file (%s): %v — export the AADDS secure LDAP certificate's CA (the certificate itself when it is self-signed) and point ca_file at it",
			name, caFile, unknownCA)
	case errors.As(err, &hostname):
		return fmt.Sprintf("TLS: the certificate of %s does not name %s (%v): set upstream.servers[%d].server_name to a name it holds",
			rawURL, name, hostname, i)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Sprintf("TLS: the certificate of %s is outside its validity period at %s (%v): renew the secure LDAP certificate in AADDS (or check this machine's clock)",
			name, now.UTC().Format(time.RFC3339), invalid)
	case errors.As(err, &recHeader):
		return fmt.Sprintf("TLS: %s does not speak TLS (%v): point the URL at the LDAPS port, 636 (ldapgate never talks plain LDAP upstream)", rawURL, err)
	default:
		return fmt.Sprintf("TLS handshake with %s failed: %v", name, err)
	}
}

// bindDetail explains the service bind's result.
func bindDetail(err error, bindDN string, timeout time.Duration) string {
	if err == nil {
		return "bound as " + bindDN
	}
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode >= ldap.ErrorNetwork {
		if ldap.IsErrorWithCode(err, ldap.ErrorNetwork) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Sprintf("no answer to the service bind within upstream.op_timeout (%s): %v", timeout, err)
		}
		return fmt.Sprintf("no answer to the service bind: %v", err)
	}
	diag := ""
	if le.Err != nil {
		diag = le.Err.Error()
	}
	if le.ResultCode != ldap.LDAPResultInvalidCredentials {
		return fmt.Sprintf("the DC refused the service account's bind with %d %s (%s): check upstream.bind_dn (%s) and the account",
			le.ResultCode, ldap.LDAPResultCodeMap[le.ResultCode], diag, bindDN)
	}
	code := proxy.ParseADCode(diag)
	hint := "check upstream.bind_password (and upstream.bind_dn: an unknown account can get 52e too)"
	switch code {
	case "525":
		hint = fmt.Sprintf("check upstream.bind_dn (%s): AD does not know it", bindDN)
	case "532", "773":
		hint = "set a new password for the service account in Entra ID, put it in upstream.bind_password, and make it never expire"
	case "533", "701":
		hint = "enable the service account (and its expiry date) in Entra ID"
	case "775":
		hint = "the account is locked out (AADDS: for 30 minutes after 5 wrong passwords); find what else uses an old password, e.g. a second gateway"
	}
	if code != "" {
		return fmt.Sprintf("the DC refused the service account's password (%s): %s", adCodeText(code), hint)
	}
	return fmt.Sprintf("the DC refused the service account's password: %s (%s)", hint, diag)
}

// rootDSEStatus warns when upstream.base_dn is not in the DC's domain.
func rootDSEStatus(r *rootDSEInfo, baseDN string) (string, string) {
	detail := "defaultNamingContext " + r.DefaultNamingContext
	if r.DefaultNamingContext == "" {
		return statusWarn, "the rootDSE has no defaultNamingContext: is this an Active Directory domain controller?"
	}
	domain, err1 := ldap.ParseDN(r.DefaultNamingContext)
	base, err2 := ldap.ParseDN(baseDN)
	if err1 == nil && err2 == nil && !domain.EqualFold(base) && !domain.AncestorOfFold(base) {
		return statusWarn, fmt.Sprintf("%s, but upstream.base_dn (%s) is not in this domain: set base_dn to the domain or an OU in it", detail, baseDN)
	}
	return statusOK, detail
}

// describeCert summarises chain (leaf first) at now.
func describeCert(chain []*x509.Certificate, verified bool, now time.Time) *certInfo {
	if len(chain) == 0 {
		return nil
	}
	leaf := chain[0]
	ci := &certInfo{
		Subject:  leaf.Subject.String(),
		Names:    append([]string(nil), leaf.DNSNames...),
		NotAfter: leaf.NotAfter.UTC(),
		Verified: verified,
		Expiry:   certs.Expiry(chain).UTC(),
	}
	for _, ip := range leaf.IPAddresses {
		ci.Names = append(ci.Names, ip.String())
	}
	ci.DaysLeft = daysUntil(ci.Expiry, now)
	for _, c := range chain {
		ci.Chain = append(ci.Chain, chainCert{Subject: c.Subject.String(), Issuer: c.Issuer.String(), NotAfter: c.NotAfter.UTC()})
	}
	return ci
}

// writeText prints the report for a human.
func (r *upstreamReport) writeText(w io.Writer) error {
	var b strings.Builder
	if r.Error != "" {
		fmt.Fprintf(&b, "FAIL  %s\n", r.Error)
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "%d domain controllers in %s; CA bundle %s\n", len(r.DCs), r.Config, r.CAFile)
	for _, d := range r.DCs {
		fmt.Fprintf(&b, "\nupstream.servers[%d] %s (certificate name %s)\n", d.Index, d.URL, d.ServerName)
		for _, s := range d.Steps {
			lat := ""
			if s.Status != statusSkipped {
				lat = fmtLatency(s.Latency)
			}
			fmt.Fprintf(&b, "  %-4s  %-7s  %9s  %s\n", statusLabel[s.Status], s.Name, lat, s.Detail)
			switch {
			case s.Name == "tls" && d.Certificate != nil:
				d.Certificate.writeText(&b)
			case s.Name == "rootdse" && d.RootDSE != nil:
				fmt.Fprintf(&b, "%s dnsHostName %s, highestCommittedUSN %s\n", detailIndent, d.RootDSE.DNSHostName, d.RootDSE.HighestCommittedUSN)
			}
		}
	}
	passed := 0
	for _, d := range r.DCs {
		if d.OK {
			passed++
		}
	}
	verdict := "OK"
	if passed < len(r.DCs) {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\n%s: %d of %d domain controllers passed every check.\n", verdict, passed, len(r.DCs))
	_, err := io.WriteString(w, b.String())
	return err
}

// detailIndent lines detail lines up under a step's detail column.
var detailIndent = strings.Repeat(" ", len("  FAIL  rootdse  123456.7ms"))

func (c *certInfo) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "%s subject  %s\n", detailIndent, c.Subject)
	fmt.Fprintf(b, "%s names    %s\n", detailIndent, strings.Join(c.Names, ", "))
	fmt.Fprintf(b, "%s expires  %s (%s)\n", detailIndent, c.Expiry.Format("2006-01-02 15:04 MST"), daysLeft(c.DaysLeft))
	label := "chain   "
	if !c.Verified {
		label = "sent    "
	}
	for i, cc := range c.Chain {
		self := ""
		if cc.Subject == cc.Issuer {
			self = " (self-signed)"
		}
		fmt.Fprintf(b, "%s %s %d. %s%s, expires %s\n", detailIndent, label, i+1, cc.Subject, self, cc.NotAfter.Format(time.DateOnly))
		label = "        "
	}
	if last := c.Chain[len(c.Chain)-1]; !c.Verified && last.Subject != last.Issuer {
		fmt.Fprintf(b, "%s %s    issued by %s: the CA that upstream.ca_file must hold\n", detailIndent, label, last.Issuer)
	}
}

// daysUntil is the whole days from now until t, negative once t has passed.
func daysUntil(t, now time.Time) int { return int(math.Floor(t.Sub(now).Hours() / 24)) }

// daysLeft says how many days a certificate has left ("expired 3 days ago").
func daysLeft(n int) string {
	switch {
	case n < 0:
		return fmt.Sprintf("expired %d days ago", -n)
	case n == 1:
		return "1 day left"
	default:
		return fmt.Sprintf("%d days left", n)
	}
}
