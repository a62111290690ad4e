package main

import (
	"flag"
	"strings"
)

// helpCommand returns the command that prints the manual of any command in root.
func helpCommand(root *command) *command {
	return &command{
		name:    "help",
		summary: "show the manual of a command",
		usage:   "[COMMAND [SUBCOMMAND...]]",
		help: `Prints the manual of the named command, or of ldapgate itself.
'ldapgate help certs init' is the same as 'ldapgate certs init --help'.`,
		setup: func(*flag.FlagSet) runFunc {
			return func(e *env, args []string) error {
				c := root
				for i, name := range args {
					sub := c.find(name)
					if sub == nil {
						return usageErrorf("unknown command %q; commands: %s", strings.Join(args[:i+1], " "), c.names())
					}
					c = sub
				}
				writeUsage(e.stdout, c)
				return nil
			}
		},
	}
}
