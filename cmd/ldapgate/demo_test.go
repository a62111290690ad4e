package main

import (
	"os"
	"path/filepath"
	"testing"
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
