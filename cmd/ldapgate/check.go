package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ldapgate/ldapgate/configs"
)

// checkCommand returns the group of diagnostic commands: pascom's "test
// connection" and "test authentication" buttons for the command line. stdin is
// where 'check auth' reads a password when it is not a terminal.
func checkCommand(stdin io.Reader) *command {
	return &command{
		name:    "check",
		summary: "test the configuration, the domain controllers and a login",
		usage:   "COMMAND [ARGS...]",
		help: `Diagnostics for an admin at the console, run beside (or instead of) a
running gateway. They change neither the configuration nor the running
gateway; their binds to AD are real ones, though, and a wrong password counts
against the account like any other:

    check config     is the file valid, and what does ldapgate make of it
    check upstream   can each domain controller be reached, is its
                     certificate trusted and when does it expire, does the
                     service account bind, what does the rootDSE say
    check auth USER  does this login work, run through the real bind path

Each exits 0 when everything checked is fine and 1 otherwise, so scripts and
monitoring can use them.`,
		subcommands: []*command{checkConfigCommand(), checkUpstreamCommand(), checkAuthCommand(stdin)},
	}
}

// checkConfigCommand returns 'ldapgate check config'.
func checkConfigCommand() *command {
	return &command{
		name:    "config",
		summary: "validate a configuration file and print it with its defaults",
		usage:   "--config FILE",
		help: `Loads FILE the way 'ldapgate serve' does (${ENV} expansion, *_file secrets,
defaults, validation) and prints the effective configuration as YAML: every
key with the value the gateway would use. Secrets (bind_password,
proxy_password, bearer tokens, basic_password) are printed as [redacted],
also when they came from a *_file or ${ENV}, so the output can be pasted into
a ticket. Warnings (e.g. a secret in a file that others can read) follow as
YAML comments, so the output stays valid YAML; note that a redacted secret is
not the real one, so the output is not a working configuration file.

Exit status: 0 when the file is valid (warnings or not); 1 when it is not,
with every problem found listed on standard error, each naming the key and,
where it is in the file, its line.`,
		setup: func(fs *flag.FlagSet) runFunc {
			path := fs.String("config", "", "read the configuration from `FILE`")
			return func(e *env, args []string) error {
				if err := checkArgs(*path, args, 0); err != nil {
					return err
				}
				cfg, err := loadConfig(*path)
				if err != nil {
					return err
				}
				return writeEffectiveConfig(e.stdout, *path, cfg)
			}
		},
	}
}

// writeEffectiveConfig prints cfg as YAML, secrets redacted, then its warnings
// as YAML comments.
func writeEffectiveConfig(w io.Writer, path string, cfg *configs.Config) error {
	// configs.Secret redacts itself in yaml.Marshal: no secret can reach out.
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("print the configuration: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s is valid. The effective configuration, defaults filled in and\n", path)
	b.WriteString("# secrets shown as [redacted]:\n")
	b.Write(out)
	warnings := cfg.Warnings()
	if len(warnings) == 0 {
		b.WriteString("# No warnings.\n")
	}
	for _, w := range warnings {
		fmt.Fprintf(&b, "# warning: %s\n", strings.ReplaceAll(w, "\n", "\n#   "))
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// checkArgs refuses a missing --config and a wrong number of arguments; want
// is how many arguments the command takes (0 or 1, named USER).
func checkArgs(configPath string, args []string, want int) error {
	switch {
	case len(args) > want:
		extra := args[want]
		if strings.HasPrefix(extra, "-") {
			return usageErrorf("unexpected argument %q: options go before the arguments", extra)
		}
		return usageErrorf("unexpected argument %q", extra)
	case configPath == "":
		return usageErrorf("--config is required")
	case want == 1 && len(args) == 0:
		return usageErrorf("USER is required: the login to test, e.g. jdoe, jdoe@contoso.onmicrosoft.com or CONTOSO\\jdoe")
	}
	return nil
}

// configInvalidError is a configuration file that did not load: every problem
// configs found, each naming its key.
type configInvalidError struct {
	path     string
	problems []error
}

func (c *configInvalidError) Error() string {
	var b strings.Builder
	n := len(c.problems)
	if n == 1 {
		fmt.Fprintf(&b, "%s is not valid (1 problem):", c.path)
	} else {
		fmt.Fprintf(&b, "%s is not valid (%d problems):", c.path, n)
	}
	for _, p := range c.problems {
		b.WriteString("\n    " + strings.ReplaceAll(p.Error(), "\n", "\n    "))
	}
	return b.String()
}

// Unwrap returns the problems, so errors.As reaches each *configs.Error.
func (c *configInvalidError) Unwrap() []error { return c.problems }

// loadConfig loads and validates the file at path like serve does; an invalid
// file is a *configInvalidError listing every problem.
func loadConfig(path string) (*configs.Config, error) {
	cfg, err := configs.Load(path)
	if err == nil {
		return cfg, nil
	}
	problems := []error{err}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		problems = joined.Unwrap()
	}
	return nil, &configInvalidError{path: path, problems: problems}
}

// interruptible returns a context that ends on SIGINT or SIGTERM, so a check
// stuck on an unresponsive DC can be stopped with Ctrl-C.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// fmtLatency prints a step's duration in milliseconds, the unit AD latencies
// are talked about in.
func fmtLatency(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// adCodeMeanings explains the sub-codes of AD's 49 (the "data" part of its
// diagnostic). They are shown to the admin at the console only: the gateway
// never sends them to an LDAP client, because 530-533, 701 and 773 come only
// with the right password.
var adCodeMeanings = map[string]string{
	"525": "user not found",
	"52e": "wrong password",
	"530": "not permitted to log on at this time",
	"531": "not permitted to log on from this workstation",
	"532": "password expired",
	"533": "account disabled",
	"701": "account expired",
	"773": "user must change the password",
	"775": "account locked out",
}

// adCodeText is "AD said 52e: wrong password", or "" without a code.
func adCodeText(code string) string {
	if code == "" {
		return ""
	}
	if m, ok := adCodeMeanings[code]; ok {
		return fmt.Sprintf("AD said %s: %s", code, m)
	}
	return fmt.Sprintf("AD said %s", code)
}
