package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// env is what a command may use of the outside world.
type env struct {
	stdout io.Writer // the command's output
	stderr io.Writer // errors and diagnostics
}

// runFunc runs a command with the arguments left after its flags.
type runFunc func(e *env, args []string) error

// command is one ldapgate command: either a leaf that runs (setup is set) or a
// group that dispatches to its subcommands. To add a command, write a function
// returning its *command and list it in rootCommand (or in its group).
type command struct {
	name    string // the word that selects it, e.g. "init"
	summary string // one line, lowercase, for the list in the parent's help
	usage   string // the synopsis after the command's path, e.g. "--dir DIR"
	help    string // the description: what it does, when to use it
	// setup declares the command's flags on fs and returns the function that runs
	// the command once they are parsed. Nil for a group.
	setup       func(fs *flag.FlagSet) runFunc
	subcommands []*command

	parent *command // set by find, through which every lookup goes
}

// path returns the command's full name, e.g. "ldapgate certs init".
func (c *command) path() string {
	if c.parent == nil {
		return c.name
	}
	return c.parent.path() + " " + c.name
}

// subpath returns the full name without the program name, e.g. "certs init".
func (c *command) subpath() string {
	p := c.path()
	if i := strings.IndexByte(p, ' '); i >= 0 {
		return p[i+1:]
	}
	return p
}

// find returns the subcommand called name, or nil.
func (c *command) find(name string) *command {
	for _, s := range c.subcommands {
		if s.name == name {
			s.parent = c
			return s
		}
	}
	return nil
}

// flagSet returns c's flags and the function that runs c (nil for a group).
func (c *command) flagSet() (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet(c.path(), flag.ContinueOnError)
	// dispatch prints usage and errors itself, in one format for every command.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var run runFunc
	if c.setup != nil {
		run = c.setup(fs)
	}
	return fs, run
}

// usageError is an error in how a command was called; it exits with code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// usageErrorf returns a usageError with a formatted message.
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// commandError is an error a command returned, with the command it came from.
type commandError struct {
	cmd *command
	err error
}

func (c commandError) Error() string { return c.cmd.subpath() + ": " + c.err.Error() }
func (c commandError) Unwrap() error { return c.err }

// errHelpShown means the help a user asked for was printed: exit 0.
var errHelpShown = errors.New("help shown")

// dispatch parses c's flags from args and runs c, or the subcommand that the
// first remaining argument names.
func dispatch(e *env, c *command, args []string) error {
	fs, run := c.flagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeUsage(e.stdout, c)
			return errHelpShown
		}
		return commandError{c, usageError{err}}
	}
	if run != nil {
		if err := run(e, fs.Args()); err != nil {
			return commandError{c, err}
		}
		return nil
	}
	if fs.NArg() == 0 {
		return commandError{c, usageErrorf("missing command; commands: %s", c.names())}
	}
	sub := c.find(fs.Arg(0))
	if sub == nil {
		return commandError{c, usageErrorf("unknown command %q; commands: %s", fs.Arg(0), c.names())}
	}
	return dispatch(e, sub, fs.Args()[1:])
}

// names lists c's subcommands, comma separated.
func (c *command) names() string {
	var names []string
	for _, s := range sortedByName(c.subcommands) {
		names = append(names, s.name)
	}
	return strings.Join(names, ", ")
}

// exitCode reports err on e.stderr and returns the exit code for it.
func exitCode(e *env, err error) int {
	if err == nil || errors.Is(err, errHelpShown) {
		return 0
	}
	msg := err.Error()
	var ce commandError
	if errors.As(err, &ce) && ce.cmd.parent == nil {
		msg = ce.err.Error() // the program's own name already leads the line
	}
	fmt.Fprintf(e.stderr, "ldapgate: %s\n", msg)
	var ue usageError
	if errors.As(err, &ue) {
		if errors.As(err, &ce) {
			fmt.Fprintf(e.stderr, "Run '%s' for usage.\n", helpHint(ce.cmd))
		}
		return 2
	}
	return 1
}

// helpHint returns the command line that shows c's help.
func helpHint(c *command) string {
	if c.parent == nil || c.name == "help" && c.parent.parent == nil {
		return "ldapgate help" // a mistake in 'ldapgate help X' needs the command list
	}
	return "ldapgate help " + c.subpath()
}

// writeUsage writes c's manual page to w.
func writeUsage(w io.Writer, c *command) {
	title := c.path()
	if c.summary != "" {
		title += " - " + c.summary
	}
	fmt.Fprintf(w, "NAME\n%s\n\n", indent(title))
	fmt.Fprintf(w, "SYNOPSIS\n%s\n", indent(strings.TrimSpace(c.path()+" "+c.usage)))
	if c.help != "" {
		fmt.Fprintf(w, "\nDESCRIPTION\n%s\n", indent(c.help))
	}
	if len(c.subcommands) > 0 {
		fmt.Fprintf(w, "\nCOMMANDS\n")
		width := 0
		for _, s := range c.subcommands {
			width = max(width, len(s.name))
		}
		for _, s := range sortedByName(c.subcommands) {
			fmt.Fprintf(w, "    %-*s  %s\n", width, s.name, s.summary)
		}
	}
	fmt.Fprintf(w, "\nOPTIONS\n")
	fs, _ := c.flagSet()
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "--" + f.Name
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "    %s\n%s\n", line, indent(indent(usage)))
	})
	fmt.Fprintf(w, "    -h, --help\n        show this help\n")
}

// sortedByName returns a copy of cmds sorted by name.
func sortedByName(cmds []*command) []*command {
	s := slices.Clone(cmds)
	slices.SortFunc(s, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	return s
}

// indent prefixes every non-empty line of s with four spaces.
func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "    " + l
		}
	}
	return strings.Join(lines, "\n")
}

// stringList is a flag that may be given several times, collecting every value.
type stringList []string

// String returns the values, comma separated.
func (s *stringList) String() string { return strings.Join(*s, ",") }

// Set appends one value.
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
