package main

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/integration/loadgen"
)

// Bounds of 'ldapgate bench'.
const (
	// benchDefaultDuration is how long a run lasts unless --duration or --count says otherwise.
	benchDefaultDuration = 10 * time.Second
	// benchMaxDuration bounds --duration: a load test, not a soak test.
	benchMaxDuration = 24 * time.Hour
	// benchMaxLogins bounds the lines of a --logins file.
	benchMaxLogins = 1_000_000
	// benchMaxLoginsBytes bounds the size of a --logins file.
	benchMaxLoginsBytes = 64 << 20
)

// benchCommand returns 'ldapgate bench'; stdin is where a password comes from
// when no file gives it.
func benchCommand(stdin io.Reader) *command {
	return &command{
		name:    "bench",
		summary: "put a login load on the gateway or a DC and report throughput and latency",
		usage:   "--url URL (--login NAME | --logins FILE) [--mode MODE] [--concurrency N] [--duration D | --count N] [OPTIONS]",
		help: `bench is a load generator for admins and failover tests: --concurrency
clients run operations back to back against --url for --duration (default
10s) or --count operations, whichever comes first, and it prints what they
got:

    throughput  successful operations per second
    latency     p50, p90, p99 and max of every operation (within 1%)
    codes       the outcome of every operation: an LDAP result code (0
                success, 49 invalid credentials, 52 unavailable, ...) or
                network, timeout, tls, no-entry, ambiguous, with the first
                error seen for each failing one
    timeline    operations per second of the run: a domain controller
                stopped during the run shows as a dip

An operation (--mode) is one of:

    bind              a simple bind with the login's name and password
    search-then-bind  what pascom's LDAP authentication does: bind as
                      --proxy-dn, search --filter for the login under
                      --base-dn, bind as the one DN found
    search            a search of --filter for the login under --base-dn, on
                      a connection bound as --proxy-dn once

Each client keeps its connection (redialing after a network error), or with
--new-conn dials (and for LDAPS handshakes) for every operation as a PBX does.
The URL is ldap://host:port or ldaps://host:port; ldaps:// and --starttls
verify the server's certificate against --ca-file (default: the system's
CAs), always.

Logins come from --login NAME with its password from --password-file (the
file's first line) or, without it, typed at a no-echo prompt (or one line
piped on standard input); or from --logins FILE: one login,password per
line, CSV-quoted where a field holds a comma or a quote, # comments and
blank lines skipped. Logins are used round-robin. The proxy password comes
from --proxy-password-file or the same prompt. Passwords are never printed.

The binds are real ones: a wrong password counts against the account's
lockout (AADDS: 5 within 2 minutes), so load with good passwords only, or
with test accounts whose lockout threshold is off.

--json prints the report as one JSON object (latencies in milliseconds).

Exit status: 0 when at least one operation succeeded; 1 when none did (or
the run was interrupted); 2 for a usage error.`,
		setup: func(fs *flag.FlagSet) runFunc {
			var o benchOptions
			fs.StringVar(&o.url, "url", "", "the target, ldap://HOST:PORT or ldaps://HOST:PORT (`URL`)")
			fs.StringVar(&o.caFile, "ca-file", "", "verify the server's certificate against the CAs in `FILE` (PEM), for ldaps:// and --starttls")
			fs.StringVar(&o.serverName, "server-name", "", "expect `NAME` in the server's certificate (default the URL's host)")
			fs.BoolVar(&o.startTLS, "starttls", false, "upgrade an ldap:// connection with StartTLS")
			fs.StringVar(&o.mode, "mode", string(loadgen.ModeBind), "what one operation is: `MODE` bind, search-then-bind or search")
			fs.StringVar(&o.login, "login", "", "load with the one login `NAME`")
			fs.StringVar(&o.passwordFile, "password-file", "", "read --login's password from the first line of `FILE`")
			fs.StringVar(&o.loginsFile, "logins", "", "load with the logins in `FILE`: login,password per line")
			fs.StringVar(&o.proxyDN, "proxy-dn", "", "the search modes bind as `DN` (or UPN), pascom's proxy user")
			fs.StringVar(&o.proxyPasswordFile, "proxy-password-file", "", "read --proxy-dn's password from the first line of `FILE`")
			fs.StringVar(&o.baseDN, "base-dn", "", "the search modes search under `DN`")
			fs.StringVar(&o.filter, "filter", loadgen.DefaultFilter, "the search modes' `FILTER`; %s is the login, escaped")
			fs.StringVar(&o.attributes, "attributes", "", "the attributes a search asks for, comma separated (`LIST`; default all, 1.1 for none)")
			fs.IntVar(&o.concurrency, "concurrency", 4, "run `N` clients at once")
			fs.DurationVar(&o.duration, "duration", benchDefaultDuration, "stop after `D` (0: only --count stops it)")
			fs.IntVar(&o.count, "count", 0, "stop after `N` operations (0: only --duration stops it)")
			fs.BoolVar(&o.newConn, "new-conn", false, "dial a new connection for every operation, as a PBX does")
			fs.DurationVar(&o.opTimeout, "op-timeout", loadgen.DefaultOpTimeout, "give up on an operation (dial, handshake, each response) after `D`")
			fs.BoolVar(&o.json, "json", false, "print the report as JSON instead of text")
			return func(e *env, args []string) error {
				if len(args) > 0 {
					return usageErrorf("unexpected argument %q: options go before the arguments, and bench takes none", args[0])
				}
				cfg, err := o.config(e.stderr, stdin)
				if err != nil {
					return err
				}
				ctx, stop := interruptible()
				defer stop()
				res, runErr := loadgen.Run(ctx, cfg)
				if res.Elapsed == 0 && runErr != nil && !errors.Is(runErr, context.Canceled) {
					return usageError{runErr} // refused before it ran: a configuration problem
				}
				rep := newBenchReport(cfg, res)
				if o.json {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					if err := enc.Encode(rep); err != nil {
						return err
					}
				} else if _, err := io.WriteString(e.stdout, rep.text()); err != nil {
					return err
				}
				if runErr != nil {
					return fmt.Errorf("interrupted: the report covers the first %s", res.Elapsed.Round(time.Millisecond))
				}
				return rep.err()
			}
		},
	}
}

// benchOptions are bench's flags.
type benchOptions struct {
	url, caFile, serverName            string
	startTLS                           bool
	mode                               string
	login, passwordFile, loginsFile    string
	proxyDN, proxyPasswordFile, baseDN string
	filter, attributes                 string
	concurrency, count                 int
	duration, opTimeout                time.Duration
	newConn, json                      bool
}

// config turns the flags into a load, reading the files and prompting for
// passwords that no file gives (prompts on prompt, answers from in). Problems
// in the flags are usage errors; loadgen.Run checks the rest.
func (o *benchOptions) config(prompt io.Writer, in io.Reader) (loadgen.Config, error) {
	switch {
	case o.url == "":
		return loadgen.Config{}, usageErrorf("--url is required: the gateway (e.g. ldap://127.0.0.1:389) or a DC (ldaps://dc1.example.com:636)")
	case (o.login == "") == (o.loginsFile == ""):
		return loadgen.Config{}, usageErrorf("give either --login NAME or --logins FILE")
	case o.passwordFile != "" && o.login == "":
		return loadgen.Config{}, usageErrorf("--password-file goes with --login; a --logins file holds the passwords")
	case o.duration < 0 || o.duration > benchMaxDuration:
		return loadgen.Config{}, usageErrorf("--duration %s: must be between 0 and %s", o.duration, benchMaxDuration)
	case o.count < 0:
		return loadgen.Config{}, usageErrorf("--count %d: must not be negative", o.count)
	case o.duration == 0 && o.count == 0:
		return loadgen.Config{}, usageErrorf("--duration 0 and no --count: the run would never end; set one of them")
	case o.opTimeout <= 0:
		return loadgen.Config{}, usageErrorf("--op-timeout %s: must be positive, e.g. 10s", o.opTimeout)
	}
	mode := loadgen.Mode(o.mode)
	if !slices.Contains(loadgen.Modes, mode) {
		return loadgen.Config{}, usageErrorf("--mode %q: use bind, search-then-bind or search", o.mode)
	}
	searches := mode != loadgen.ModeBind
	if searches && (o.proxyDN == "" || o.baseDN == "") {
		return loadgen.Config{}, usageErrorf("--mode %s needs --proxy-dn (the account that searches) and --base-dn (where)", mode)
	}
	cfg := loadgen.Config{
		URL:          o.url,
		StartTLS:     o.startTLS,
		Mode:         mode,
		ProxyDN:      o.proxyDN,
		BaseDN:       o.baseDN,
		Filter:       o.filter,
		Concurrency:  o.concurrency,
		Duration:     o.duration,
		Count:        o.count,
		NewConnPerOp: o.newConn,
		OpTimeout:    o.opTimeout,
	}
	if o.attributes != "" {
		for _, a := range strings.Split(o.attributes, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.Attributes = append(cfg.Attributes, a)
			}
		}
	}
	if o.caFile != "" || o.serverName != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.serverName}
		if o.caFile != "" {
			pool, err := certs.LoadCAPool(o.caFile)
			if err != nil {
				return loadgen.Config{}, fmt.Errorf("--ca-file: %w", err)
			}
			t.RootCAs = pool
		}
		cfg.TLS = t
	}

	// Passwords: files first; at most one may come from a pipe on standard input.
	prompts := 0
	pw := passwordSource{prompt: prompt, in: in}
	if o.loginsFile != "" {
		logins, err := readLoginsFile(o.loginsFile)
		if err != nil {
			return loadgen.Config{}, err
		}
		cfg.Logins = logins
	} else {
		password, err := pw.get("--password-file", o.passwordFile, o.login, &prompts)
		if err != nil {
			return loadgen.Config{}, err
		}
		cfg.Logins = []loadgen.Login{{Name: o.login, Password: password}}
	}
	if searches {
		password, err := pw.get("--proxy-password-file", o.proxyPasswordFile, o.proxyDN, &prompts)
		if err != nil {
			return loadgen.Config{}, err
		}
		cfg.ProxyPassword = password
	} else if o.proxyPasswordFile != "" || o.proxyDN != "" {
		return loadgen.Config{}, usageErrorf("--proxy-dn and --proxy-password-file are for the search modes; --mode is %s", mode)
	}
	return cfg, nil
}

// passwordSource reads passwords from files or, without one, from the terminal.
type passwordSource struct {
	prompt io.Writer
	in     io.Reader
}

// get returns the password for who: the first line of file, else typed at a
// prompt (readPassword). Only a terminal can answer more than one prompt;
// prompts counts them.
func (p passwordSource) get(flagName, file, who string, prompts *int) (string, error) {
	if file != "" {
		pw, err := readPasswordFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flagName, err)
		}
		return pw, nil
	}
	*prompts++
	if *prompts > 1 && !isTerminal(p.in) {
		return "", usageErrorf("standard input is not a terminal and gives one password only: give %s", flagName)
	}
	return readPassword(p.prompt, p.in, who)
}

// readPasswordFile returns the first line of the file at path, without its
// line break.
func readPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	pw := ""
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		if pw, err = readPassword(io.Discard, f, path); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
	}
	if pw == "" {
		return "", fmt.Errorf("%s: the first line is empty; an empty password would be an anonymous bind", path)
	}
	return pw, nil
}

// readLoginsFile reads a --logins file: login,password per line (CSV), #
// comments and blank lines skipped. An error names the line, never a password.
func readLoginsFile(path string) ([]loadgen.Login, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--logins: %w", err)
	}
	defer func() { _ = f.Close() }()
	if fi, err := f.Stat(); err == nil && fi.Size() > benchMaxLoginsBytes {
		return nil, fmt.Errorf("--logins %s: larger than %d MiB", path, benchMaxLoginsBytes>>20)
	}
	r := csv.NewReader(io.LimitReader(f, benchMaxLoginsBytes))
	r.Comment = '#'
	r.FieldsPerRecord = -1 // checked below, with a better message
	r.ReuseRecord = true
	var logins []loadgen.Login
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("--logins %s line %d: %v; quote a field that holds a comma or a quote, e.g. \"CN=Doe\\, John,OU=Users,...\",password", path, pe.Line, pe.Err)
		}
		if err != nil {
			return nil, fmt.Errorf("--logins %s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		switch {
		case len(rec) != 2:
			return nil, fmt.Errorf("--logins %s line %d: %d fields, want login,password", path, line, len(rec))
		case strings.TrimSpace(rec[0]) == "":
			return nil, fmt.Errorf("--logins %s line %d: empty login", path, line)
		case rec[1] == "":
			return nil, fmt.Errorf("--logins %s line %d: empty password for %s; an empty password would be an anonymous bind", path, line, rec[0])
		case len(logins) == benchMaxLogins:
			return nil, fmt.Errorf("--logins %s: more than %d logins", path, benchMaxLogins)
		}
		logins = append(logins, loadgen.Login{Name: rec[0], Password: rec[1]})
	}
	if len(logins) == 0 {
		return nil, fmt.Errorf("--logins %s: no login in it; write login,password per line", path)
	}
	return logins, nil
}

// benchReport is what bench prints: the load and its result.
type benchReport struct {
	URL         string           `json:"url"`
	Mode        loadgen.Mode     `json:"mode"`
	Concurrency int              `json:"concurrency"`
	NewConn     bool             `json:"new_conn"`
	Ops         int              `json:"ops"`
	OK          int              `json:"ok"`
	Failed      int              `json:"failed"`
	ElapsedS    float64          `json:"elapsed_s"`
	Throughput  float64          `json:"throughput"` // ok per second
	LatencyMS   benchLatency     `json:"latency_ms"`
	Codes       []benchCode      `json:"codes"`
	Timeline    []loadgen.Second `json:"timeline"`
}

// benchLatency are the latency figures in milliseconds.
type benchLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// benchCode is one outcome and how often it came.
type benchCode struct {
	Code  string `json:"code"`
	Name  string `json:"name"`
	Count int    `json:"count"`
	// FirstError is the first error seen with this outcome ("" for success).
	FirstError string `json:"first_error,omitempty"`
}

func newBenchReport(cfg loadgen.Config, res loadgen.Result) *benchReport {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r := &benchReport{
		URL: cfg.URL, Mode: cfg.Mode, Concurrency: cfg.Concurrency, NewConn: cfg.NewConnPerOp,
		Ops: res.Ops, OK: res.OK, Failed: res.Failed,
		ElapsedS:   res.Elapsed.Seconds(),
		Throughput: res.Throughput,
		LatencyMS:  benchLatency{P50: ms(res.P50), P90: ms(res.P90), P99: ms(res.P99), Max: ms(res.Max)},
		Codes:      []benchCode{},
		Timeline:   res.Timeline,
	}
	// Most frequent first.
	codes := slices.SortedFunc(maps.Keys(res.Codes), func(a, b string) int {
		if d := res.Codes[b] - res.Codes[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, c := range codes {
		r.Codes = append(r.Codes, benchCode{Code: c, Name: codeName(c), Count: res.Codes[c], FirstError: terminalSafe(res.FirstErrors[c])})
	}
	return r
}

// codeName names an outcome: an LDAP result code's name, or what the
// loadgen outcome means.
func codeName(code string) string {
	switch code {
	case loadgen.CodeNetwork:
		return "connection failed or broke"
	case loadgen.CodeTimeout:
		return "no answer within --op-timeout"
	case loadgen.CodeTLS:
		return "TLS handshake failed"
	case loadgen.CodeNoEntry:
		return "the search found no entry"
	case loadgen.CodeAmbiguous:
		return "the search found more than one entry"
	case loadgen.CodeClient:
		return "the client could not read the answer"
	}
	if n, err := strconv.Atoi(code); err == nil {
		if name, ok := ldap.LDAPResultCodeMap[uint16(n)]; ok {
			return strings.ToLower(name)
		}
	}
	return "result " + code
}

// text is the report for a terminal.
func (r *benchReport) text() string {
	var b strings.Builder
	conns := "reused connections"
	if r.NewConn {
		conns = "a new connection per operation"
	}
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-11s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("target", "%s: %s, %d clients, %s", r.URL, r.Mode, r.Concurrency, conns)
	line("operations", "%d in %.1fs: %d ok, %d failed", r.Ops, r.ElapsedS, r.OK, r.Failed)
	line("throughput", "%.1f ok/s", r.Throughput)
	line("latency", "p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms", r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.Max)
	if len(r.Codes) == 0 {
		line("codes", "none: no operation ended")
	}
	for i, c := range r.Codes {
		label := ""
		if i == 0 {
			label = "codes"
		}
		line(label, "%-9s %8d  %s", c.Code, c.Count, c.Name)
		if c.FirstError != "" {
			line("", "%9s first: %s", "", c.FirstError)
		}
	}
	peak := 1
	for _, s := range r.Timeline {
		peak = max(peak, s.OK+s.Failed)
	}
	line("timeline", "%6s %8s %8s", "second", "ok", "failed")
	const width = 40
	for _, s := range r.Timeline {
		bar := strings.Repeat("#", s.OK*width/peak) + strings.Repeat("x", s.Failed*width/peak)
		line("", "%6d %8d %8d  %s", s.Second, s.OK, s.Failed, bar)
	}
	return b.String()
}

// err is nil when at least one operation succeeded, else why none did.
func (r *benchReport) err() error {
	if r.OK > 0 {
		return nil
	}
	if len(r.Codes) == 0 {
		return errors.New("no operation ended: raise --duration or --op-timeout")
	}
	c := r.Codes[0]
	why := c.Name
	if c.FirstError != "" {
		why += ": " + c.FirstError
	}
	return fmt.Errorf("no operation succeeded; the most common outcome was %s (%s)", c.Code, why)
}
