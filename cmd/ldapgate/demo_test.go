package main

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ldapgate/ldapgate/configs"
)

func TestCommandFor(t *testing.T) {
	t.Parallel()
	repo := t.TempDir() // a module root: it has cmd/ldapgate/main.go
	if err := os.MkdirAll(filepath.Join(repo, "cmd", "ldapgate"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "cmd", "ldapgate", "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	installed := filepath.Join(t.TempDir(), "ldapgate")
	other := filepath.Join(t.TempDir(), "ldapgate")
	for _, p := range []string{installed, other} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const cached = "/root/.cache/go-build/68/686f64cd885ae5d9748ed957ffcd4d21b79a376074426afee8d0db89099b9fae-d/ldapgate"
	tests := []struct {
		name, exe, wd, onPath, want string
	}{
		{"go run's fresh build, from the module root, is go run", "/tmp/go-build149861542/b001/exe/ldapgate", repo, "", "go run ./cmd/ldapgate"},
		{"go run's cached build, from the module root, is go run", cached, repo, "", "go run ./cmd/ldapgate"},
		{"go run's build in a custom GOCACHE is go run", "/tmp/tmp.x1/68/686f64cd885ae5d9748ed957ffcd4d21b79a376074426afee8d0db89099b9fae-d/ldapgate", repo, "", "go run ./cmd/ldapgate"},
		{"go run from elsewhere names the executable, which lives while the demo runs", "/tmp/go-build149861542/b001/exe/ldapgate", elsewhere, "", "/tmp/go-build149861542/b001/exe/ldapgate"},
		{"the ldapgate on PATH is ldapgate", installed, elsewhere, installed, "ldapgate"},
		{"another ldapgate on PATH is not this one", other, repo, installed, other},
		{"a built binary is its path", other, repo, "", other},
		{"a path with a space is quoted", "/opt/my tools/ldapgate", repo, "", "'/opt/my tools/ldapgate'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := commandFor(tt.exe, tt.wd, tt.onPath); got != tt.want {
				t.Errorf("commandFor(%q, %q, %q) = %q, want %q", tt.exe, tt.wd, tt.onPath, got, tt.want)
			}
		})
	}
}

func TestShellWord(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/tmp/ldapgate-demo-123/ldapgate.yaml": "/tmp/ldapgate-demo-123/ldapgate.yaml",
		"/tmp/a b/ldapgate.yaml":               "'/tmp/a b/ldapgate.yaml'",
		"/tmp/it's/x":                          `'/tmp/it'\''s/x'`,
		"/tmp/$HOME":                           "'/tmp/$HOME'",
		"":                                     "''",
	} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDemoConfigFile: the file the demo writes, which the printed commands
// read, loads back into exactly the configuration the demo builds.
func TestDemoConfigFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "it's a dir") // quoting is the writer's job
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("unused by Load"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := demoConfig("127.0.0.1:0", []configs.Server{
		{URL: "ldaps://127.0.0.1:40599", ServerName: "dc1.aadds.example.test"},
		{URL: "ldaps://127.0.0.1:45695", ServerName: "dc2.aadds.example.test"},
	}, ca)
	want.HTTP.Address = ""
	want.Sync.DataDir = filepath.Join(dir, "data")
	path, err := writeDemoConfig(dir, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := configs.Load(path)
	if err != nil {
		t.Fatalf("load the demo's %s: %v", path, err)
	}
	if err := want.Validate(); err != nil { // fills in what Load fills in
		t.Fatal(err)
	}
	want.Upstream.BindPasswordFile = filepath.Join(dir, "bind-password")
	if string(got.Upstream.BindPassword) != string(want.Upstream.BindPassword) {
		t.Error("the service account's password did not come back from its file")
	}
	if !reflect.DeepEqual(*got, want) {
		g, _ := yaml.Marshal(got)
		w, _ := yaml.Marshal(want)
		t.Errorf("%s loads as\n%s\nwant\n%s", path, g, w)
	}
	for _, name := range []string{"ldapgate.yaml", "bind-password"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600: it holds a password or names its file", name, fi.Mode().Perm())
		}
	}
}

func TestDemoWithItsLDAPPortTakenSaysSoAndFreesItsHTTPPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := free.Addr().String()
	_ = free.Close()

	code, stdout, stderr := runCmd("demo", "--listen", taken.Addr().String(), "--http", httpAddr, "--log-level", "error")
	if code != 1 || !strings.Contains(stderr, taken.Addr().String()) || !strings.Contains(stderr, "address already in use") {
		t.Errorf("demo on a taken port: exit %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stdout, "ldapwhoami") {
		t.Errorf("demo printed commands for a gateway that did not start:\n%s", stdout)
	}
	// The HTTP listener started before the LDAP one failed; it is closed.
	l, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatalf("the HTTP listener's %s is still held after the demo failed: %v", httpAddr, err)
	}
	_ = l.Close()
}
