package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile writes content to a new file named name in a fresh temporary
// directory with mode perm and returns its path.
func writeFile(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; the tests need it exact.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// envOf returns a getenv that looks names up in vars only.
func envOf(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// parseWith parses data like Parse, with the environment vars.
func parseWith(data string, vars map[string]string) (*Config, error) {
	return loader{source: "test.yaml", getenv: envOf(vars)}.load([]byte(data))
}

// validConfig returns a configuration that passes Validate, with a CA file in
// a temporary directory.
func validConfig(t *testing.T) *Config {
	t.Helper()
	c := Default()
	c.Upstream.Servers = []Server{{URL: "ldaps://dc1.aadds.example.test:636"}}
	c.Upstream.CAFile = writeFile(t, "ca.pem", "not parsed by configs", 0o644)
	c.Upstream.BindDN = "svc-pbx@aadds.example.test"
	c.Upstream.BindPassword = "Svc!Passw0rd-pbx"
	c.Upstream.BaseDN = "DC=aadds,DC=example,DC=test"
	return &c
}

// checkErr fails t unless err matches wantErrContains: nil when it is empty,
// else an error whose text contains it.
func checkErr(t *testing.T, err error, wantErrContains string) {
	t.Helper()
	switch {
	case wantErrContains == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantErrContains != "" && err == nil:
		t.Fatalf("no error, want one containing %q", wantErrContains)
	case wantErrContains != "" && !strings.Contains(err.Error(), wantErrContains):
		t.Fatalf("error %q does not contain %q", err, wantErrContains)
	}
}

// problemsOf lists the *Error values joined in err.
func problemsOf(t *testing.T, err error) []*Error {
	t.Helper()
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("error %v is not a joined list of problems", err)
	}
	var out []*Error
	for _, e := range joined.Unwrap() {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("problem %v is not a *configs.Error", e)
		}
		out = append(out, ce)
	}
	return out
}
