package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// readme is the repository's README, relative to this package.
const readme = "../../README.md"

// TestREADMECommandsExist checks every ldapgate command line the README shows,
// in its code blocks and inline code: the command path names a command and
// every option is one that command has. A renamed flag or command fails here
// instead of in an admin's shell.
func TestREADMECommandsExist(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	lines := readmeCodeLines(string(data))
	checked := 0
	for _, l := range lines {
		for _, words := range shellCommands(l) {
			args, ok := ldapgateArgs(words)
			if !ok {
				continue
			}
			checked++
			if problem := checkCommandLine(args); problem != "" {
				t.Errorf("%s: %s\n  %s", readme, problem, l)
			}
		}
	}
	t.Logf("%d ldapgate command lines checked", checked)
	if checked < 20 {
		t.Fatalf("%s: found only %d ldapgate command lines; the extraction is broken", readme, checked)
	}
}

// checkCommandLine walks args (after the program name) down the command tree
// and says what is wrong with it, "" when nothing is.
func checkCommandLine(args []string) string {
	c := rootCommand()
	i := 0
	for ; i < len(args) && c.setup == nil; i++ {
		if placeholder.MatchString(args[i]) {
			return "" // "ldapgate COMMAND --help": any command
		}
		sub := c.find(args[i])
		if sub == nil {
			if strings.HasPrefix(args[i], "-") {
				break
			}
			return "ldapgate " + strings.Join(args[:i+1], " ") + ": no such command; commands: " + c.names()
		}
		c = sub
	}
	fs, _ := c.flagSet()
	for _, a := range args[i:] {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if fs.Lookup(name) == nil && name != "h" && name != "help" {
			return c.path() + ": no option " + a
		}
	}
	return ""
}

// ldapgateArgs returns the arguments of a command whose program is ldapgate
// (by name, by path, or go run ./cmd/ldapgate); ok is false for any other.
func ldapgateArgs(words []string) (args []string, ok bool) {
	switch {
	case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/ldapgate":
		return words[3:], true
	case len(words) >= 1 && (words[0] == "ldapgate" || strings.HasSuffix(words[0], "/ldapgate")):
		return words[1:], true
	}
	return nil, false
}

var (
	inlineCode = regexp.MustCompile("`([^`]+)`")
	// placeholder is a word that stands for one, such as COMMAND or FILE.
	placeholder = regexp.MustCompile(`^[A-Z][A-Z_]*$`)
)

// readmeCodeLines returns the lines of the README's fenced code blocks (a
// line ending in a backslash joined with the next) and its inline code spans.
func readmeCodeLines(text string) []string {
	var out []string
	fenced := false
	var cont string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			for _, m := range inlineCode.FindAllStringSubmatch(l, -1) {
				out = append(out, m[1])
			}
			continue
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cont += s + " "
			continue
		}
		out = append(out, cont+l)
		cont = ""
	}
	return out
}

// shellCommands splits a shell line into its simple commands (at unquoted
// |, ||, &&, ; and $( ), each as its words with quotes removed, up to an
// unquoted # comment.
func shellCommands(line string) [][]string {
	var (
		cmds  [][]string
		words []string
		word  strings.Builder
		inW   bool
		quote rune
	)
	endWord := func() {
		if inW {
			words = append(words, word.String())
		}
		word.Reset()
		inW = false
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
		words = nil
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				word.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inW = r, true
		case r == '#' && !inW:
			endCmd()
			return cmds
		case r == '|' || r == '&' || r == ';' || r == '(' || r == ')':
			endCmd()
		case r == '$' && i+1 < len(rs) && rs[i+1] == '(':
			endCmd()
			i++
		case r == ' ' || r == '\t':
			endWord()
		default:
			word.WriteRune(r)
			inW = true
		}
	}
	endCmd()
	return cmds
}
