package main

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the release version, stamped at build time with
// -ldflags "-X main.version=v1.2.3". A package variable because -X can set nothing else.
var version string

// versionCommand returns the command that prints the program's version.
func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "print the version of ldapgate and of Go it was built with",
		help: `Prints one line: the program name, its version, the Go version and the
platform. The version is the one stamped at build time, else the module
version or source revision Go recorded, else "dev".`,
		setup: func(*flag.FlagSet) runFunc {
			return func(e *env, args []string) error {
				if len(args) > 0 {
					return usageErrorf("unexpected argument %q", args[0])
				}
				info, _ := debug.ReadBuildInfo() // nil when the binary carries none
				_, err := fmt.Fprintf(e.stdout, "ldapgate %s %s %s/%s\n",
					buildVersion(version, info), runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return err
			}
		},
	}
}

// buildVersion picks the version to show: stamped (from -ldflags) if set, else the
// main module's version, else "dev" with the VCS revision if Go recorded one.
func buildVersion(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "dev-" + rev
}
