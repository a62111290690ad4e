package main

import (
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // a substring of stdout, "" to expect none
		wantStderr string // a substring of stderr, "" to expect none
	}{
		{"no command is a usage error listing the commands", nil, 2,
			"", "ldapgate: missing command; commands: bench, certs, check, completion, demo, help, serve, sync, version\nRun 'ldapgate help' for usage.\n"},
		{"an unknown command is a usage error listing the commands", []string{"frobnicate"}, 2,
			"", `ldapgate: unknown command "frobnicate"; commands: bench, certs, check, completion, demo, help, serve, sync, version`},
		{"a group without a subcommand lists its commands", []string{"certs"}, 2,
			"", "ldapgate: certs: missing command; commands: init\nRun 'ldapgate help certs' for usage."},
		{"an unknown subcommand is a usage error", []string{"certs", "frob"}, 2,
			"", `ldapgate: certs: unknown command "frob"; commands: init`},
		{"certs init without --dir names the flag", []string{"certs", "init", "--host", "localhost"}, 2,
			"", "ldapgate: certs init: --dir is required\nRun 'ldapgate help certs init' for usage."},
		{"certs init without --host names the flag", []string{"certs", "init", "--dir", dir}, 2,
			"", "ldapgate: certs init: --host is required"},
		{"certs init with a stray argument is a usage error", []string{"certs", "init", "--dir", dir, "--host", "x", "extra"}, 2,
			"", `ldapgate: certs init: unexpected argument "extra"`},
		{"an undefined flag is a usage error", []string{"certs", "init", "--bogus"}, 2,
			"", "ldapgate: certs init: flag provided but not defined: -bogus"},
		{"an invalid host is an error naming it", []string{"certs", "init", "--dir", dir, "--host", "bad host"}, 1,
			"", `ldapgate: certs init: invalid host "bad host"`},
		{"help lists the commands", []string{"help"}, 0,
			"COMMANDS\n    bench       put a login load on the gateway or a DC and report throughput and latency\n    certs       create TLS certificates for the gateway and test beds\n", ""},
		{"-h shows the program's manual", []string{"-h"}, 0, "NAME\n    ldapgate - ", ""},
		{"--help shows the program's manual", []string{"--help"}, 0, "SYNOPSIS\n    ldapgate COMMAND [ARGS...]\n", ""},
		{"help of a subcommand shows its options", []string{"help", "certs", "init"}, 0,
			"    --host NAME\n        a DNS NAME or IP address", ""},
		{"--help on a subcommand shows its manual", []string{"certs", "init", "--help"}, 0,
			"SYNOPSIS\n    ldapgate certs init --dir DIR --host NAME [--host NAME...] [--force]\n", ""},
		{"-h on a group shows its commands", []string{"certs", "-h"}, 0, "COMMANDS\n    init  create a CA", ""},
		{"help of an unknown command is a usage error", []string{"help", "certs", "nope"}, 2,
			"", "ldapgate: help: unknown command \"certs nope\"; commands: init\nRun 'ldapgate help' for usage."},
		{"version with an argument is a usage error", []string{"version", "now"}, 2,
			"", `ldapgate: version: unexpected argument "now"`},
		{"version -h shows its manual", []string{"version", "-h"}, 0, "NAME\n    ldapgate version - ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			check := func(stream, got, want string) {
				if want == "" && got != "" {
					t.Errorf("unexpected %s:\n%s", stream, got)
				}
				if !strings.Contains(got, want) {
					t.Errorf("%s lacks %q:\n%s", stream, want, got)
				}
			}
			check("stdout", stdout, tt.wantStdout)
			check("stderr", stderr, tt.wantStderr)
		})
	}
}

func TestHelpAndFlagHelpShowTheSameManual(t *testing.T) {
	t.Parallel()
	for _, path := range [][]string{{}, {"certs"}, {"certs", "init"}, {"version"}, {"help"}} {
		_, viaHelp, _ := runCmd(append([]string{"help"}, path...)...)
		_, viaFlag, _ := runCmd(append(path, "--help")...)
		if viaHelp != viaFlag {
			t.Errorf("'help %[1]s' and '%[1]s --help' differ:\n%[2]s\n---\n%[3]s", strings.Join(path, " "), viaHelp, viaFlag)
		}
	}
}

func TestVersionPrintsOneLine(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCmd("version")
	if code != 0 || stderr != "" {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	if !regexp.MustCompile(`^ldapgate \S+ go\d+\.\d+\S* \w+/\w+\n$`).MatchString(stdout) {
		t.Errorf("version output %q, want 'ldapgate VERSION GOVERSION OS/ARCH'", stdout)
	}
}

func TestBuildVersion(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) *debug.BuildInfo {
		info := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
		info.Settings = append(info.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev})
		if modified != "" {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return info
	}
	tests := []struct {
		name    string
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"a stamped version wins", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}}, "v1.2.3"},
		{"a module version is used when nothing is stamped", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}}, "v0.9.0"},
		{"a clean checkout shows its revision", "", vcs("0123456789abcdef0123", "false"), "dev-0123456789ab"},
		{"a modified checkout is marked dirty", "", vcs("0123456789abcdef0123", "true"), "dev-0123456789ab-dirty"},
		{"a devel build without VCS information is dev", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"a binary without build information is dev", "", nil, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := buildVersion(tt.stamped, tt.info); got != tt.want {
				t.Errorf("buildVersion = %q, want %q", got, tt.want)
			}
		})
	}
}
