package main

import (
	"flag"
	"strings"
	"testing"
	"unicode"
)

// TestEveryCommandHasAManualPage holds every command, present and future, to
// the man-style help the dispatcher prints: a one-line summary for the
// parent's list, a description, and a usage text for every option.
func TestEveryCommandHasAManualPage(t *testing.T) {
	t.Parallel()
	for _, c := range allCommands(rootCommand()) {
		t.Run(c.path(), func(t *testing.T) {
			t.Parallel()
			switch s := c.summary; {
			case s == "":
				t.Errorf("no summary: the parent's COMMANDS list would show an empty line")
			case strings.Contains(s, "\n") || strings.HasSuffix(s, "."):
				t.Errorf("summary %q: want one line without a final period", s)
			case unicode.IsUpper([]rune(s)[0]) && c.parent != nil:
				t.Errorf("summary %q: want it lowercase, like the others in the list", s)
			}
			if strings.TrimSpace(c.help) == "" {
				t.Errorf("no help: the manual would have no DESCRIPTION")
			}
			for _, l := range strings.Split(c.help, "\n") {
				if len([]rune(l)) > 80 {
					t.Errorf("a DESCRIPTION line is longer than 80 characters: %q", l)
				}
			}
			fs, _ := c.flagSet()
			fs.VisitAll(func(f *flag.Flag) {
				if strings.TrimSpace(f.Usage) == "" {
					t.Errorf("--%s has no usage text", f.Name)
				}
			})
			args := []string{"help"}
			if c.parent != nil {
				args = append(args, strings.Fields(c.subpath())...)
			}
			code, stdout, stderr := runCmd(args...)
			if code != 0 || stderr != "" {
				t.Fatalf("ldapgate %s: exit code %d, stderr:\n%s", strings.Join(args, " "), code, stderr)
			}
			for _, section := range []string{"NAME\n", "\nSYNOPSIS\n    " + c.path(), "\nDESCRIPTION\n", "\nOPTIONS\n"} {
				if !strings.Contains(stdout, section) {
					t.Errorf("the manual lacks %q:\n%s", section, stdout)
				}
			}
		})
	}
}
