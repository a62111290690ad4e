package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"
)

func TestExampleFilesLoad(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ldapgate.example.yaml", "testbed.yaml"} {
		if !slices.Contains(files, want) {
			t.Errorf("%s is missing from configs/", want)
		}
	}
	for _, file := range files {
		t.Run(file+" loads and validates", func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			l := loader{source: file, getenv: envOf(nil)}
			c, d, err := l.decode(data)
			if err != nil {
				t.Fatal(err)
			}
			// The files name paths on a real host (/etc/ldapgate, the test
			// bed's /var/tmp): point them at temporary files, so this checks
			// the configuration rather than this machine.
			redirectFiles(t, c)
			probs := d.probs
			l.readSecrets(c, &probs, d.lines)
			probs = append(probs, c.validate()...)
			if len(probs) > 0 {
				t.Fatal(probs.err())
			}
		})
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	const file = "ldapgate.example.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, d, err := loader{source: file, getenv: envOf(nil)}.decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range schemaKeys(reflect.TypeFor[Config](), "") {
		if _, ok := d.lines[key.path]; ok {
			continue
		}
		// A key that cannot be set alongside another (bind_password) is
		// shown in a comment.
		if !regexp.MustCompile(`(?m)^\s*#\s*` + regexp.QuoteMeta(key.name) + `:`).Match(data) {
			t.Errorf("%s does not show the key %s", file, key.path)
		}
	}
}

// schemaKey is one key of the configuration schema.
type schemaKey struct {
	path, name string
}

// schemaKeys lists every key under the struct type t, a list's keys under its
// first item.
func schemaKeys(t reflect.Type, parent string) []schemaKey {
	var keys []schemaKey
	for _, f := range yamlFields(t) {
		path := joinKey(parent, f.name)
		keys = append(keys, schemaKey{path: path, name: f.name})
		ft := t.Field(f.index).Type
		switch {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, schemaKeys(ft, path)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, schemaKeys(ft.Elem(), path+"[0]")...)
		}
	}
	return keys
}

// redirectFiles points every file c names at a temporary file.
func redirectFiles(t *testing.T, c *Config) {
	t.Helper()
	for _, f := range []struct {
		path    *string
		content string
	}{
		{&c.Upstream.CAFile, "ca"},
		{&c.Upstream.BindPasswordFile, "password\n"},
		{&c.Listen.TLS.CertFile, "cert"},
		{&c.Listen.TLS.KeyFile, "key"},
	} {
		if *f.path != "" {
			*f.path = writeFile(t, filepath.Base(*f.path), f.content, 0o600)
		}
	}
}
