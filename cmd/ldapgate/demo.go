package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
	usersync "github.com/ldapgate/ldapgate/sync"
)

func demoCommand() *command {
	return &command{
		name:    "demo",
		summary: "run the gateway in front of two simulated AADDS domain controllers",
		usage:   "[--listen ADDR] [--http ADDR] [--users N] [--log-format json|console] [--log-level LEVEL]",
		help: `demo needs no directory, no root and no network: it starts two simulated
Azure AD DS domain controllers in-process (LDAPS on loopback, certificates from
a throwaway CA, the test bed's accounts: jdoe, sobrien, cwhite, ...), writes a
configuration for the gateway in front of them, runs the first user import,
starts the gateway on --listen and the CSV export on --http, prints commands to
try (with ldap-utils, curl and ldapgate itself) once they work, and serves until
Ctrl-C. A port of 0 picks a free one; the printed commands carry the real one.
Everything it creates is removed when it stops.`,
		setup: func(fs *flag.FlagSet) runFunc {
			listen := fs.String("listen", testbed.GatewayAddr, "serve plain LDAP on `ADDR`")
			httpAddr := fs.String("http", configs.Default().HTTP.Address, "serve the CSV export on `ADDR` (empty: off)")
			users := fs.Int("users", 0, "seed `N` bulk users user0000… besides the test bed's accounts")
			var lf logFlags
			lf.register(fs)
			return func(e *env, args []string) error {
				if len(args) > 0 {
					return usageErrorf("unexpected argument %q", args[0])
				}
				if *users < 0 || *users > adsim.MaxLoadUsers {
					return usageErrorf("--users: %d is not between 0 and %d", *users, adsim.MaxLoadUsers)
				}
				log, level, err := newLeveledLogger(e.stderr, firstSet(lf.format, "console"), lf.level)
				if err != nil {
					return usageError{err}
				}
				defer func() { _ = log.Sync() }()
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()

				dir, err := adsim.NewDirectory(adsim.Config{LoadUsers: *users})
				if err != nil {
					return fmt.Errorf("simulated directory: %w", err)
				}
				tmp, err := os.MkdirTemp("", "ldapgate-demo-")
				if err != nil {
					return err
				}
				defer func() { _ = os.RemoveAll(tmp) }()
				caFile := filepath.Join(tmp, "ca.pem")
				if err := os.WriteFile(caFile, dir.CACertPEM(), 0o600); err != nil {
					return err
				}
				var servers []configs.Server
				for _, name := range []string{"dc1", "dc2"} {
					dc, err := dir.NewDC(adsim.DCConfig{Name: name})
					if err != nil {
						return fmt.Errorf("simulated %s: %w", name, err)
					}
					if err := dc.Start("127.0.0.1:0"); err != nil {
						return fmt.Errorf("simulated %s: %w", name, err)
					}
					defer func() { _ = dc.Close() }()
					servers = append(servers, configs.Server{URL: dc.URL(), ServerName: dc.HostName()})
				}
				cfg := demoConfig(*listen, servers, caFile)
				cfg.HTTP.Address = *httpAddr
				cfg.Sync.DataDir = filepath.Join(tmp, "data") // the view and the import go with the demo
				cfgPath, err := writeDemoConfig(tmp, cfg)
				if err != nil {
					return err
				}
				// The gateway runs the file the printed commands read.
				loaded, err := configs.Load(cfgPath)
				if err != nil {
					return err
				}
				// The first import before anything is printed: the CSV export
				// and the directory view are there when the commands run.
				if err := syncOnce(ctx, e, loaded, usersync.Options{}, log); err != nil {
					return fmt.Errorf("first sync: %w", err)
				}
				self := selfCommand()
				src := reloadSource{path: cfgPath, level: level, levelFlag: lf.level != ""}
				return serve(ctx, loaded, log, src, func(ldapAddr, httpAddr string) {
					printDemoHelp(e.stdout, demoHelp{
						ldap: ldapAddr, http: httpAddr, servers: loaded.Upstream.Servers, config: cfgPath, self: self,
					})
				})
			}
		},
	}
}

// demoConfig is the gateway's configuration in front of the simulated DCs: the
// defaults plus the test bed's directory layout and service account.
func demoConfig(listen string, servers []configs.Server, caFile string) configs.Config {
	cfg := configs.Default()
	cfg.Listen.Address = listen
	cfg.Upstream.Servers = servers
	cfg.Upstream.CAFile = caFile
	cfg.Upstream.BindDN = testbed.Service.UPN()
	cfg.Upstream.BindPassword = configs.Secret(testbed.Service.Password)
	cfg.Upstream.BaseDN = testbed.BaseDN
	cfg.Upstream.UserBaseDN = testbed.UsersDN
	cfg.Upstream.NetBIOSDomain = testbed.NetBIOS
	// The import takes PBX-Users' members, nested groups included, as a pascom
	// "AD User Sync" pre-filter would.
	cfg.Sync.Filter = "(&(objectCategory=person)(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + "))"
	return cfg
}

// writeDemoConfig writes cfg, a demoConfig with its HTTP address and data
// directory set, into dir as ldapgate.yaml, and returns the file's path. The
// file holds the keys the demo sets, the rest are defaults; the service
// account's password goes into a file beside it.
func writeDemoConfig(dir string, cfg configs.Config) (string, error) {
	pwFile := filepath.Join(dir, "bind-password")
	cfgFile := filepath.Join(dir, "ldapgate.yaml")
	// JSON strings are YAML double-quoted scalars: every value is quoted.
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	u := cfg.Upstream
	var b strings.Builder
	fmt.Fprintf(&b, `# The configuration of 'ldapgate demo': the gateway in front of two simulated
# AADDS domain controllers. It is removed when the demo stops.
listen:
  address: %s
http:
  address: %s
upstream:
  servers:
`, q(cfg.Listen.Address), q(cfg.HTTP.Address))
	for _, s := range u.Servers {
		fmt.Fprintf(&b, "    - url: %s\n      server_name: %s\n", q(s.URL), q(s.ServerName))
	}
	fmt.Fprintf(&b, `  ca_file: %s
  bind_dn: %s
  bind_password_file: %s
  base_dn: %s
  user_base_dn: %s
  netbios_domain: %s
# The import takes PBX-Users' members, nested groups included, as a pascom
# "AD User Sync" pre-filter would.
sync:
  data_dir: %s
  filter: %s
`, q(u.CAFile), q(u.BindDN), q(pwFile), q(u.BaseDN), q(u.UserBaseDN), q(u.NetBIOSDomain), q(cfg.Sync.DataDir), q(cfg.Sync.Filter))
	if err := os.WriteFile(pwFile, []byte(string(u.BindPassword)+"\n"), 0o600); err != nil {
		return "", err
	}
	return cfgFile, os.WriteFile(cfgFile, []byte(b.String()), 0o600)
}

// demoHelp is what printDemoHelp shows: the addresses as the listeners got
// them, and how to run ldapgate itself.
type demoHelp struct {
	ldap, http string // host:port; http "" when off
	servers    []configs.Server
	config     string // the demo's configuration file
	self       string // how to run this program, from selfCommand
}

// printDemoHelp tells the user what is running and what to try.
func printDemoHelp(w io.Writer, h demoHelp) {
	u := "ldap://" + h.ldap
	var b strings.Builder
	fmt.Fprintf(&b, "ldapgate demo: the gateway listens on %s in front of two simulated AADDS DCs:\n", u)
	for _, s := range h.servers {
		fmt.Fprintf(&b, "  %s (%s)\n", s.URL, s.ServerName)
	}
	fmt.Fprintf(&b, "Its configuration: %s\n", h.config)
	if h.http != "" {
		fmt.Fprintf(&b, "Its status page: http://%s/ (in a browser: the DCs, the syncs, drain a DC, sync now)\n", h.http)
	}
	fmt.Fprintf(&b, `
Try (ldap-utils, curl):
  ldapwhoami -x -H %[1]s -D jdoe -w 'Passw0rd!jdoe'
  ldapwhoami -x -H %[1]s -D 'AADDS\jdoe' -w 'Passw0rd!jdoe'
  ldapwhoami -x -H %[1]s -D jdoe@aadds.example.test -w 'Passw0rd!jdoe'
  ldapwhoami -x -H %[1]s -D jdoe -w wrong          # 49 invalid credentials
  ldapwhoami -x -H %[1]s -D cwhite -w 'Passw0rd!cwhite'  # disabled: the same 49
  ldapsearch -x -H %[1]s -D svc-pbx@aadds.example.test -w 'Svc!Passw0rd-pbx' -b %[2]s '(sAMAccountName=jdoe)' dn
`, u, shellQuote(testbed.UsersDN))
	if h.http != "" {
		fmt.Fprintf(&b, "  curl http://%s%s   # pascom's \"Users from CSV\" import\n", h.http, usersync.ExportPath)
	}
	cfg := shellWord(h.config)
	fmt.Fprintf(&b, "  %s sync --config %s --dry-run   # pascom's \"save and simulate\"\n", h.self, cfg)
	fmt.Fprintf(&b, "  %s check upstream --config %s   # each DC: TLS, certificate expiry, latency\n", h.self, cfg)
	b.WriteString("\nPress Ctrl-C to stop.\n")
	_, _ = io.WriteString(w, b.String())
}

// selfCommand is how a printed command runs this program: "go run
// ./cmd/ldapgate" when go run started it from the module's root, "ldapgate"
// when that is this executable on PATH, else the executable's path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "ldapgate"
	}
	wd, _ := os.Getwd()
	onPath, _ := exec.LookPath("ldapgate")
	return commandFor(exe, wd, onPath)
}

// goRunCacheDir matches the directory of an executable go run left in the
// build cache ($GOCACHE/xx/<64 hex digits>-d/ldapgate, Go 1.24 and later).
var goRunCacheDir = regexp.MustCompile(`^[0-9a-f]{64}-d$`)

// commandFor is selfCommand's decision for the executable exe started in the
// directory wd, with onPath the ldapgate found on PATH ("" when none).
func commandFor(exe, wd, onPath string) string {
	goRun := goRunCacheDir.MatchString(filepath.Base(filepath.Dir(exe)))
	for _, part := range strings.Split(filepath.ToSlash(exe), "/") {
		// A fresh go run build: $TMPDIR/go-buildNNN/b001/exe/ldapgate.
		goRun = goRun || strings.HasPrefix(part, "go-build")
	}
	if goRun {
		if _, err := os.Stat(filepath.Join(wd, "cmd", "ldapgate", "main.go")); err == nil {
			return "go run ./cmd/ldapgate"
		}
		return shellWord(exe) // it lives as long as the demo runs
	}
	if onPath != "" {
		a, errA := os.Stat(onPath)
		b, errB := os.Stat(exe)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return "ldapgate"
		}
	}
	return shellWord(exe)
}

// shellWord is s as one shell word: as it is when no character in it is
// special to the shell, else quoted.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:=,@%") == "" {
		return s
	}
	return shellQuote(s)
}
