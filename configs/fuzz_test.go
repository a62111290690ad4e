package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	examples, err := filepath.Glob("*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range examples {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, seed := range []string{
		"",
		"---\n",
		"~\n",
		"[]\n",
		"listen: {address: '127.0.0.1:389', max_connections: 10}\n",
		"upstream:\n  servers:\n    - url: ldaps://[::1]\n    - &s {url: ldap://x}\n    - *s\n",
		"upstream:\n  bind_password: ${LDAPGATE_FUZZ_UNSET}$${x}\n",
		"log: &l {level: debug}\ncache: {<<: *l}\n",
		"listen:\n  idle_timeout: 5\n  starttls: yes\n  address: !!binary AAAA\n",
		"a: b\n---\nc: d\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		switch {
		case err != nil && c != nil:
			t.Fatalf("Parse returned a config with an error: %v", err)
		case err == nil && c == nil:
			t.Fatal("Parse returned neither a config nor an error")
		case err != nil:
			for _, e := range problemsOf(t, err) {
				if !strings.HasPrefix(e.Error(), "config: ") {
					t.Fatalf("problem %q does not start with config:", e)
				}
			}
		}
	})
}
