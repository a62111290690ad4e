// Command ldapgate is the LDAP authentication gateway: a phone system binds with
// plain LDAP, ldapgate forwards the bind over verified LDAPS to Azure AD Domain
// Services. This package is wiring only: it reads flags, builds the parts from the
// other packages, handles signals and exits.
package main

import (
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code:
// 0 on success, 1 when the command failed, 2 when it was called wrongly.
func run(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	return exitCode(e, dispatch(e, rootCommand(), args))
}

// rootCommand returns the tree of every ldapgate command.
func rootCommand() *command {
	root := &command{
		name:    "ldapgate",
		summary: "LDAP authentication gateway in front of Azure AD Domain Services",
		usage:   "COMMAND [ARGS...]",
		help: `ldapgate lets a phone system that speaks plain LDAP authenticate its users
against Azure AD Domain Services, which only answers LDAPS. Each command
below has its own options: run 'ldapgate help COMMAND' to read them.`,
		subcommands: []*command{
			serveCommand(),
			syncCommand(),
			checkCommand(os.Stdin),
			demoCommand(),
			benchCommand(os.Stdin),
			certsCommand(),
			versionCommand(),
		},
	}
	root.subcommands = append(root.subcommands, helpCommand(root), completionCommand(root))
	return root
}
