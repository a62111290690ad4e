package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

func demoCommand() *command {
	return &command{
		name:    "demo",
		summary: "run the gateway in front of two simulated AADDS domain controllers",
		usage:   "[--listen ADDR] [--users N] [--log-format json|console] [--log-level LEVEL]",
		help: `demo needs no directory, no root and no network: it starts two simulated
Azure AD DS domain controllers in-process (LDAPS on loopback, certificates from
a throwaway CA, the test bed's accounts: jdoe, sobrien, cwhite, ...), puts the
gateway in front of them on --listen, prints commands to try with ldap-utils,
and serves until Ctrl-C. Everything it creates is removed when it stops.`,
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
				if *users < 0 || *users > 1_000_000 {
					return usageErrorf("--users: %d is not between 0 and 1000000", *users)
				}
				log, err := newLogger(e.stderr, firstSet(lf.format, "console"), lf.level)
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
				if err := cfg.Validate(); err != nil {
					return err
				}
				printDemoHelp(e.stdout, &cfg)
				return serve(ctx, &cfg, log)
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

// printDemoHelp tells the user what is running and what to try.
func printDemoHelp(w io.Writer, cfg *configs.Config) {
	u := "ldap://" + cfg.Listen.Address
	fmt.Fprintf(w, "ldapgate demo: the gateway listens on %s in front of two simulated AADDS DCs:\n", u)
	for _, s := range cfg.Upstream.Servers {
		fmt.Fprintf(w, "  %s (%s)\n", s.URL, s.ServerName)
	}
	fmt.Fprintf(w, `
Try (ldap-utils):
  ldapwhoami -x -H %[1]s -D jdoe -w 'Passw0rd!jdoe'
  ldapwhoami -x -H %[1]s -D 'AADDS\jdoe' -w 'Passw0rd!jdoe'
  ldapwhoami -x -H %[1]s -D jdoe@aadds.example.test -w 'Passw0rd!jdoe'
  ldapwhoami -x -H %[1]s -D jdoe -w wrong          # 49 invalid credentials
  ldapwhoami -x -H %[1]s -D cwhite -w 'Passw0rd!cwhite'  # disabled: the same 49
  ldapsearch -x -H %[1]s -D svc-pbx@aadds.example.test -w 'Svc!Passw0rd-pbx' -b '%[2]s' '(sAMAccountName=jdoe)' dn
`, u, testbed.UsersDN)
	if cfg.HTTP.Address != "" {
		fmt.Fprintf(w, "  curl http://%s/export/users.csv   # pascom's \"Users from CSV\" import\n", cfg.HTTP.Address)
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
}
