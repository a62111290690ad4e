package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// allCommands returns every command under c, c first, with parents set.
func allCommands(c *command) []*command {
	out := []*command{c}
	for _, s := range c.subcommands {
		out = append(out, allCommands(c.find(s.name))...)
	}
	return out
}

func TestCompletionScriptListsEveryCommandAndOption(t *testing.T) {
	t.Parallel()
	code, script, stderr := runCmd("completion", "bash")
	if code != 0 || stderr != "" {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
	}
	for _, c := range allCommands(rootCommand()) {
		path := ""
		if c.parent != nil {
			path = c.subpath()
		}
		fs, _ := c.flagSet()
		want := []string{}
		fs.VisitAll(func(f *flag.Flag) { want = append(want, "--"+f.Name) })
		want = append(want, "--help")
		line := "    '" + path + "') echo '" + strings.Join(want, " ") + "' ;;\n"
		if !strings.Contains(script, line) {
			t.Errorf("the options of %q are missing; want the line %q", c.path(), line)
		}
		if len(c.subcommands) > 0 {
			var names []string
			for _, s := range c.subcommands {
				names = append(names, s.name)
			}
			slices.Sort(names)
			line := "    '" + path + "') echo '" + strings.Join(names, " ") + "' ;;\n"
			if !strings.Contains(script, line) {
				t.Errorf("the commands of %q are missing; want the line %q", c.path(), line)
			}
		}
	}
	if !strings.HasSuffix(script, "complete -F _ldapgate ldapgate\n") {
		t.Errorf("the script does not register _ldapgate for ldapgate")
	}
}

func TestCompletionUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"without a shell it names the supported one", []string{"completion"}, "ldapgate: completion: missing shell: bash is the one supported"},
		{"another shell is refused", []string{"completion", "zsh"}, `ldapgate: completion: unsupported shell "zsh": bash is the one supported`},
		{"a second argument is refused", []string{"completion", "bash", "zsh"}, `ldapgate: completion: unexpected argument "zsh"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(tt.args...)
			wantOutput{code: 2, emptyOut: true, stderr: []string{tt.want}}.check(t, code, stdout, stderr)
		})
	}
}

// TestCompletionInBash sources the script in bash and asks it to complete
// command lines, as bash does on TAB.
func TestCompletionInBash(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	_, script, _ := runCmd("completion", "bash")
	scriptPath := filepath.Join(t.TempDir(), "ldapgate.bash")
	if err := os.WriteFile(scriptPath, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	files := t.TempDir()
	for _, name := range []string{"ldapgate.yaml", "testbed.yaml"} {
		if err := os.WriteFile(filepath.Join(files, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(files, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		line string // the command line up to the cursor
		want []string
	}{
		{"the first word is a command", "ldapgate ", []string{"bench", "certs", "check", "completion", "demo", "help", "serve", "sync", "version"}},
		{"a prefix narrows the commands", "ldapgate c", []string{"certs", "check", "completion"}},
		{"a group offers its subcommands", "ldapgate check ", []string{"auth", "config", "upstream"}},
		{"a dash offers the command's options", "ldapgate check upstream --", []string{"--config", "--json", "--help"}},
		{"an option's value is skipped when looking for more options", "ldapgate check upstream --config x.yaml --j", []string{"--json"}},
		{"a FILE value completes file names", "ldapgate serve --config " + files + "/", []string{files + "/ldapgate.yaml", files + "/testbed.yaml", files + "/tls"}},
		{"a DIR value completes directories only", "ldapgate certs init --dir " + files + "/", []string{files + "/tls"}},
		{"a log level completes its words", "ldapgate serve --log-level ", []string{"debug", "info", "warn", "error"}},
		{"a single-dash option counts as well", "ldapgate serve -log-format c", []string{"console"}},
		{"a value it cannot guess completes nothing", "ldapgate certs init --host ", nil},
		{"help completes command names", "ldapgate help check ", []string{"auth", "config", "upstream"}},
		{"completion completes the shell", "ldapgate completion ", []string{"bash"}},
		{"an unknown word does not change the command", "ldapgate frob --", []string{"--help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			words := strings.Fields(tt.line)
			if strings.HasSuffix(tt.line, " ") {
				words = append(words, "")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bash, "--norc", "--noprofile", "-c",
				`source "$1" || exit 3; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _ldapgate; printf '%s\n' "${COMPREPLY[@]}"`,
				"bash", scriptPath)
			cmd.Args = append(cmd.Args, words...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil || stderr.Len() > 0 {
				t.Fatalf("bash: %v\n%s", err, stderr.String())
			}
			got := strings.Fields(string(out))
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("completing %q gave %q, want %q", tt.line, got, want)
			}
		})
	}
}
