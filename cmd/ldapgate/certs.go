package main

import (
	"flag"
	"fmt"

	"github.com/ldapgate/ldapgate/certs"
)

// certsCommand returns the group of certificate commands.
func certsCommand() *command {
	return &command{
		name:        "certs",
		summary:     "create TLS certificates for the gateway and test beds",
		usage:       "COMMAND [ARGS...]",
		help:        `Commands for the certificates the gateway and its test bed use.`,
		subcommands: []*command{certsInitCommand()},
	}
}

// certsInitCommand returns the command that writes a throwaway CA and server certificate.
func certsInitCommand() *command {
	return &command{
		name:    "init",
		summary: "create a CA and a server certificate signed by it",
		usage:   "--dir DIR --host NAME [--host NAME...] [--force]",
		help: `Writes a throwaway certificate authority (ca.pem, ca.key) and a server
certificate signed by it (server.pem, server.key) into DIR, for test beds
and for the gateway's own LDAPS listener. Keys are ECDSA P-256 and written
with mode 0600; the CA is valid for 10 years, the server certificate for 2.

Each --host becomes a subject alternative name of the server certificate: an
IP address as an IP SAN, anything else as a DNS SAN ("*.example.test" is a
wildcard).

Running it again is safe: an existing CA is reused, and an existing server
certificate is kept when it is signed by that CA, still valid and names every
--host; otherwise it is issued again from the same CA, so clients that trust
ca.pem keep working. --force replaces both.`,
		setup: func(fs *flag.FlagSet) runFunc {
			dir := fs.String("dir", "", "write the files into `DIR` (created when missing)")
			var hosts stringList
			fs.Var(&hosts, "host", "a DNS `NAME` or IP address the server certificate is for; repeat for several")
			force := fs.Bool("force", false, "generate a new CA and server certificate even if DIR holds usable ones")
			return func(e *env, args []string) error {
				switch {
				case len(args) > 0:
					return usageErrorf("unexpected argument %q", args[0])
				case *dir == "":
					return usageErrorf("--dir is required")
				case len(hosts) == 0:
					return usageErrorf("--host is required")
				}
				res, err := certs.WriteInit(*dir, hosts, *force)
				if err != nil {
					return err
				}
				for _, o := range []certs.Outcome{res.CA, res.Server} {
					verb := "kept"
					if o.Written {
						verb = "wrote"
					}
					if _, err := fmt.Fprintf(e.stdout, "%s %s and %s (%s)\n", verb, o.CertFile, o.KeyFile, o.Reason); err != nil {
						return err
					}
				}
				return nil
			}
		},
	}
}
