package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimalYAML is a valid configuration; %[1]s is the CA file's path and
// %[2]s is appended under upstream (indented by four spaces).
const minimalYAML = `listen:
  address: 127.0.0.1:3389
upstream:
  servers:
    - url: ldaps://127.0.0.1
      server_name: dc1.aadds.example.test
  ca_file: %[1]s
  bind_dn: svc-pbx@aadds.example.test
  bind_password: Svc!Passw0rd-pbx
  base_dn: DC=aadds,DC=example,DC=test
%[2]s`

func TestParseFillsTheDefaults(t *testing.T) {
	t.Parallel()
	ca := writeFile(t, "ca.pem", "ca", 0o644)
	c, err := parseWith(fmt.Sprintf(minimalYAML, ca, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Listen.Address = "127.0.0.1:3389"
	want.Upstream.Servers = []Server{{URL: "ldaps://127.0.0.1:636", ServerName: "dc1.aadds.example.test"}}
	want.Upstream.CAFile = ca
	want.Upstream.BindDN = "svc-pbx@aadds.example.test"
	want.Upstream.BindPassword = "Svc!Passw0rd-pbx"
	want.Upstream.BaseDN = "DC=aadds,DC=example,DC=test"
	want.Upstream.UserBaseDN = want.Upstream.BaseDN
	want.Sync.BaseDN = want.Upstream.UserBaseDN
	want.Sync.Filter = want.Upstream.UserFilter
	want.Import.CSVFile = "/var/lib/ldapgate/users.csv"
	want.Import.JSONFile = "/var/lib/ldapgate/import.json"
	c.warnings = nil
	if got, want := fmt.Sprintf("%+v", *c), fmt.Sprintf("%+v", want); got != want {
		t.Errorf("config\n got %s\nwant %s", got, want)
	}
	if c.Upstream.BindPassword != want.Upstream.BindPassword {
		t.Error("the password differs from the file's")
	}
}

func TestParseReportsKeyAndLine(t *testing.T) {
	t.Parallel()
	ca := writeFile(t, "ca.pem", "ca", 0o644)
	tests := []struct {
		name            string
		yaml            string
		wantErrContains string
	}{
		{
			name:            "an unknown top-level key names the key, its line and the known keys",
			yaml:            "lisen:\n  address: 127.0.0.1:389\n",
			wantErrContains: "config: test.yaml:1: lisen: unknown key: check the spelling; the keys here are listen, upstream, cache, sync, import, http, log",
		},
		{
			name:            "an unknown nested key names its full path",
			yaml:            "listen:\n  adress: 127.0.0.1:389\n",
			wantErrContains: "config: test.yaml:2: listen.adress: unknown key: check the spelling; the keys under listen are address, ldaps_address,",
		},
		{
			name:            "an unknown key deep in a section names its full path",
			yaml:            fmt.Sprintf(minimalYAML, ca, "") + "cache:\n  dn:\n    size: 5\n    tll: 1m\n",
			wantErrContains: "config: test.yaml:14: cache.dn.tll: unknown key",
		},
		{
			name:            "an unknown key inside a list item names the item",
			yaml:            "upstream:\n  servers:\n    - url: ldaps://dc1\n    - uri: ldaps://dc2\n",
			wantErrContains: "config: test.yaml:4: upstream.servers[1].uri: unknown key",
		},
		{
			name:            "a key set twice names both lines",
			yaml:            "log:\n  level: info\n  level: debug\n",
			wantErrContains: "config: test.yaml:3: log.level: set twice (first on line 2): keep one",
		},
		{
			name:            "a number that is not one names the key",
			yaml:            "listen:\n  max_connections: many\n",
			wantErrContains: `config: test.yaml:2: listen.max_connections: must be a whole number, not "many"`,
		},
		{
			name:            "a duration without a unit is refused",
			yaml:            "listen:\n  idle_timeout: 300\n",
			wantErrContains: `config: test.yaml:2: listen.idle_timeout: must be a duration with a unit, such as 500ms, 5s or 10m, not "300"`,
		},
		{
			name:            "a boolean that is not one is refused",
			yaml:            "listen:\n  starttls: maybe\n",
			wantErrContains: `config: test.yaml:2: listen.starttls: must be true or false, not "maybe"`,
		},
		{
			name:            "a list where a value belongs is refused",
			yaml:            "log:\n  level: [info]\n",
			wantErrContains: "config: test.yaml:2: log.level: must be a single value, not a list",
		},
		{
			name:            "a value where a section belongs is refused",
			yaml:            "upstream: ldaps://dc1\n",
			wantErrContains: "config: test.yaml:1: upstream: must be a section of keys (servers, ca_file,",
		},
		{
			name:            "a single server where a list belongs is refused",
			yaml:            "upstream:\n  servers:\n    url: ldaps://dc1\n",
			wantErrContains: `config: test.yaml:3: upstream.servers: must be a list (one "- " item per entry), not a section`,
		},
		{
			name:            "a validation problem names the key's line",
			yaml:            fmt.Sprintf(minimalYAML, ca, "  user_filter: (objectClass=user\n"),
			wantErrContains: "config: test.yaml:11: upstream.user_filter: not a valid LDAP filter",
		},
		{
			name:            "a plain ldap:// server names its index and line",
			yaml:            strings.Replace(fmt.Sprintf(minimalYAML, ca, ""), "  ca_file", "    - url: ldap://127.0.0.2\n  ca_file", 1),
			wantErrContains: "config: test.yaml:7: upstream.servers[1].url: must be an ldaps:// URL",
		},
		{
			name:            "a missing required key points at its section",
			yaml:            strings.Replace(fmt.Sprintf(minimalYAML, ca, ""), "  bind_dn: svc-pbx@aadds.example.test\n", "", 1),
			wantErrContains: "config: test.yaml:3: upstream.bind_dn: required",
		},
		{
			name:            "a missing required section has no line",
			yaml:            "listen:\n  address: 127.0.0.1:389\n",
			wantErrContains: "config: test.yaml: upstream.servers: required",
		},
		{
			name:            "merge keys are refused",
			yaml:            "log: &l\n  level: info\ncache:\n  <<: *l\n",
			wantErrContains: "config: test.yaml:4: cache.<<: merge keys are not supported",
		},
		{
			name:            "a second document is refused",
			yaml:            "log:\n  level: info\n---\nlog:\n  level: debug\n",
			wantErrContains: "config: test.yaml:3: a second YAML document (after ---)",
		},
		{
			name:            "a syntax error names the file and the line",
			yaml:            "listen:\n  address: [127.0.0.1\n",
			wantErrContains: "config: test.yaml: parse YAML: yaml: line 1: did not find expected ',' or ']'",
		},
		{
			name:            "an alias is followed",
			yaml:            fmt.Sprintf(minimalYAML, ca, "  dial_timeout: &t 1s\n  op_timeout: *t\n  user_filter: ((\n"),
			wantErrContains: "config: test.yaml:13: upstream.user_filter: not a valid LDAP filter",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseWith(tt.yaml, nil)
			checkErr(t, err, tt.wantErrContains)
		})
	}
}

// aliasBomb is a small document whose one list item, holding many unknown
// keys, is repeated through aliases: walked in full it would report a million
// problems.
func aliasBomb() string {
	var item strings.Builder
	item.WriteString("&s {url: ldaps://dc1")
	for i := range 1000 {
		fmt.Fprintf(&item, ", k%d: v", i)
	}
	item.WriteString("}")
	return "upstream:\n  servers: [" + item.String() + strings.Repeat(", *s", 1000) + "]\n"
}

func TestParseStopsAfterManyProblems(t *testing.T) {
	t.Parallel()
	_, err := parseWith(aliasBomb(), nil)
	if err == nil {
		t.Fatal("no error")
	}
	problems := problemsOf(t, err)
	if len(problems) > maxDecodeProblems+10 {
		t.Errorf("%d problems reported, want about %d", len(problems), maxDecodeProblems)
	}
	if !strings.Contains(err.Error(), "config: test.yaml: stopped after 50 problems: fix these first") {
		t.Errorf("error does not say it stopped: %v", err)
	}
	if !strings.Contains(err.Error(), "config: test.yaml:2: upstream.servers[0].k0: unknown key") {
		t.Errorf("error does not name the first unknown key: %v", err)
	}
}

func TestParseCollectsEveryProblem(t *testing.T) {
	t.Parallel()
	doc := "listen:\n  adress: x\n  max_connections: 0\nupstream:\n  servers:\n    - url: ldap://dc1\n  dial_timeout: 5\nlog:\n  level: loud\n"
	_, err := parseWith(doc, nil)
	if err == nil {
		t.Fatal("no error")
	}
	var got []string
	for _, e := range problemsOf(t, err) {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Key))
	}
	want := []string{
		"2 listen.adress",
		"7 upstream.dial_timeout",
		"3 listen.max_connections",
		"6 upstream.servers[0].url",
		"4 upstream.ca_file",
		"4 upstream.bind_dn",
		"4 upstream.bind_password",
		"4 upstream.base_dn",
		"9 log.level",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems (line key):\n got %q\nwant %q", got, want)
	}
}

func TestParseExpandsEnvironmentVariables(t *testing.T) {
	t.Parallel()
	ca := writeFile(t, "ca.pem", "ca", 0o644)
	env := map[string]string{
		"PW":      "from-env",
		"YAMLISH": "a: b\n- c\n# d",
		"CONNS":   "777",
		"EMPTY":   "",
		"DIR":     filepath.Dir(ca),
		"TIMEOUT": "7s",
	}
	doc := func(extra string) string {
		return fmt.Sprintf(minimalYAML, "${DIR}/ca.pem", extra)
	}
	tests := []struct {
		name            string
		yaml            string
		check           func(t *testing.T, c *Config)
		wantErrContains string
	}{
		{
			name: "a variable fills a path",
			yaml: doc(""),
			check: func(t *testing.T, c *Config) {
				if c.Upstream.CAFile != ca {
					t.Errorf("ca_file = %q, want %q", c.Upstream.CAFile, ca)
				}
			},
		},
		{
			name: "a variable fills a secret",
			yaml: strings.Replace(doc(""), "Svc!Passw0rd-pbx", "${PW}", 1),
			check: func(t *testing.T, c *Config) {
				if c.Upstream.BindPassword != "from-env" {
					t.Error("bind_password was not taken from $PW")
				}
			},
		},
		{
			name: "a value with YAML syntax stays one string",
			yaml: doc("  user_filter: (cn=${YAMLISH})\n"),
			check: func(t *testing.T, c *Config) {
				if want := "(cn=a: b\n- c\n# d)"; c.Upstream.UserFilter != want {
					t.Errorf("user_filter = %q, want %q", c.Upstream.UserFilter, want)
				}
			},
		},
		{
			name: "a variable fills a number and a duration",
			yaml: strings.Replace(doc("  dial_timeout: ${TIMEOUT}\n"), "listen:\n", "listen:\n  max_connections: ${CONNS}\n", 1),
			check: func(t *testing.T, c *Config) {
				if c.Listen.MaxConnections != 777 || c.Upstream.DialTimeout != 7*time.Second {
					t.Errorf("max_connections = %d, dial_timeout = %s; want 777 and 7s", c.Listen.MaxConnections, c.Upstream.DialTimeout)
				}
			},
		},
		{
			name: "a quoted variable fills a duration",
			yaml: doc("  dial_timeout: \"${TIMEOUT}\"\n"),
			check: func(t *testing.T, c *Config) {
				if c.Upstream.DialTimeout != 7*time.Second {
					t.Errorf("dial_timeout = %s, want 7s", c.Upstream.DialTimeout)
				}
			},
		},
		{
			name: "$${ is a literal ${",
			yaml: strings.Replace(doc(""), "Svc!Passw0rd-pbx", "Pa$${PW}$$x", 1),
			check: func(t *testing.T, c *Config) {
				if c.Upstream.BindPassword != "Pa${PW}$$x" {
					t.Error("bind_password was not taken literally")
				}
			},
		},
		{
			name: "a set but empty variable gives an empty value",
			yaml: doc("  netbios_domain: ${EMPTY}\n"),
			check: func(t *testing.T, c *Config) {
				if c.Upstream.NetBIOSDomain != "" {
					t.Errorf("netbios_domain = %q, want empty", c.Upstream.NetBIOSDomain)
				}
			},
		},
		{
			name:            "an empty variable in a number names the key",
			yaml:            doc("  op_timeout: ${EMPTY}\n"),
			wantErrContains: `config: test.yaml:11: upstream.op_timeout: must be a duration with a unit, such as 500ms, 5s or 10m, not ""`,
		},
		{
			name:            "an unset variable names the key, the line and the variable",
			yaml:            doc("  netbios_domain: ${NETBIOS_NAME}\n"),
			wantErrContains: "config: test.yaml:11: upstream.netbios_domain: environment variable NETBIOS_NAME is not set",
		},
		{
			name:            "an unterminated ${ is refused",
			yaml:            strings.Replace(doc(""), "Svc!Passw0rd-pbx", "Pa${zq9", 1),
			wantErrContains: "config: test.yaml:9: upstream.bind_password: unterminated ${",
		},
		{
			name:            "a variable in a key is not expanded",
			yaml:            doc("  ${PW}: x\n"),
			wantErrContains: "config: test.yaml:11: upstream.${PW}: unknown key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseWith(tt.yaml, env)
			checkErr(t, err, tt.wantErrContains)
			if err == nil {
				tt.check(t, c)
			}
			if err != nil && strings.Contains(err.Error(), "zq9") {
				t.Errorf("error repeats a password: %v", err)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	env := envOf(map[string]string{"A": "1", "B_2": "two", "EMPTY": ""})
	tests := []struct {
		name            string
		in              string
		want            string
		wantSubstituted bool
		wantErrContains string
	}{
		{name: "text without ${ is kept", in: "Pa$$w0rd $HOME $", want: "Pa$$w0rd $HOME $"},
		{name: "a variable is replaced", in: "${A}", want: "1", wantSubstituted: true},
		{name: "several variables are replaced", in: "x${A}y${B_2}z", want: "x1ytwoz", wantSubstituted: true},
		{name: "an empty variable is replaced by nothing", in: "a${EMPTY}b", want: "ab", wantSubstituted: true},
		{name: "$${ is a literal ${", in: "$${A}", want: "${A}"},
		{name: "$${ next to a variable keeps both", in: "$${A}${A}", want: "${A}1", wantSubstituted: true},
		{name: "three dollars keep one and a literal ${", in: "$$${A}", want: "$${A}"},
		{name: "an unset variable is named", in: "${NOPE}", wantErrContains: "environment variable NOPE is not set"},
		{name: "an unterminated ${ is refused", in: "a${A", wantErrContains: "unterminated ${"},
		{name: "an empty name is refused", in: "${}", wantErrContains: "must hold an environment variable name"},
		{name: "a name with a dash is refused", in: "${A-B}", wantErrContains: "must hold an environment variable name"},
		{name: "a name starting with a digit is refused", in: "${1A}", wantErrContains: "must hold an environment variable name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, substituted, err := expand(tt.in, env)
			checkErr(t, err, tt.wantErrContains)
			if err == nil && (got != tt.want || substituted != tt.wantSubstituted) {
				t.Errorf("expand(%q) = %q, %v; want %q, %v", tt.in, got, substituted, tt.want, tt.wantSubstituted)
			}
		})
	}
}

func TestParseReadsThePasswordFile(t *testing.T) {
	t.Parallel()
	ca := writeFile(t, "ca.pem", "ca", 0o644)
	withFile := func(path string) string {
		return strings.Replace(fmt.Sprintf(minimalYAML, ca, ""), "bind_password: Svc!Passw0rd-pbx", "bind_password_file: "+path, 1)
	}
	tests := []struct {
		name            string
		yaml            func(t *testing.T) string
		wantPassword    string
		wantWarning     string
		wantErrContains string
	}{
		{
			name:         "a trailing newline is removed",
			yaml:         func(t *testing.T) string { return withFile(writeFile(t, "pw", "s3cret pw \n", 0o600)) },
			wantPassword: "s3cret pw ",
		},
		{
			name:         "a trailing CRLF is removed",
			yaml:         func(t *testing.T) string { return withFile(writeFile(t, "pw", "s3cret\r\n", 0o400)) },
			wantPassword: "s3cret",
		},
		{
			name:         "a file without a newline is read as is",
			yaml:         func(t *testing.T) string { return withFile(writeFile(t, "pw", "s3cret", 0o600)) },
			wantPassword: "s3cret",
		},
		{
			name:         "a file others can read gives a warning naming the key and the file",
			yaml:         func(t *testing.T) string { return withFile(writeFile(t, "pw", "s3cret\n", 0o644)) },
			wantPassword: "s3cret",
			wantWarning:  "config: test.yaml:9: upstream.bind_password_file: ",
		},
		{
			name:            "an empty file is refused",
			yaml:            func(t *testing.T) string { return withFile(writeFile(t, "pw", "\n", 0o600)) },
			wantErrContains: "config: test.yaml:9: upstream.bind_password_file: ",
		},
		{
			name:            "a missing file names the key and the file",
			yaml:            func(t *testing.T) string { return withFile("/nonexistent/ldapgate/pw") },
			wantErrContains: "config: test.yaml:9: upstream.bind_password_file: stat /nonexistent/ldapgate/pw: no such file or directory",
		},
		{
			name:            "a directory is refused",
			yaml:            func(t *testing.T) string { return withFile(t.TempDir()) },
			wantErrContains: "is not a regular file",
		},
		{
			name:            "a huge file is refused",
			yaml:            func(t *testing.T) string { return withFile(writeFile(t, "pw", strings.Repeat("x", 5000), 0o600)) },
			wantErrContains: "is longer than 4096 bytes",
		},
		{
			name: "a password and a password file together are refused",
			yaml: func(t *testing.T) string {
				return fmt.Sprintf(minimalYAML, ca, "  bind_password_file: "+writeFile(t, "pw", "s3cret", 0o600)+"\n")
			},
			wantErrContains: "config: test.yaml:11: upstream.bind_password_file: bind_password is set too: set only one of bind_password and bind_password_file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseWith(tt.yaml(t), nil)
			checkErr(t, err, tt.wantErrContains)
			if err != nil {
				if problems := problemsOf(t, err); len(problems) != 1 {
					t.Errorf("%d problems, want 1: %v", len(problems), err)
				}
				return
			}
			if string(c.Upstream.BindPassword) != tt.wantPassword {
				t.Errorf("password = %q, want %q", string(c.Upstream.BindPassword), tt.wantPassword)
			}
			w := c.Warnings()
			switch {
			case tt.wantWarning == "" && len(w) > 0:
				t.Errorf("unexpected warnings %q", w)
			case tt.wantWarning != "" && (len(w) != 1 || !strings.HasPrefix(w[0], tt.wantWarning) || !strings.Contains(w[0], "mode 0644): chmod 600")):
				t.Errorf("warnings %q, want one starting %q", w, tt.wantWarning)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	ca := writeFile(t, "ca.pem", "ca", 0o644)
	withSecret := fmt.Sprintf(minimalYAML, ca, "")
	withoutSecret := strings.Replace(withSecret, "Svc!Passw0rd-pbx", "${LDAPGATE_TEST_UNUSED_PW}", 1)
	tests := []struct {
		name            string
		content         string
		perm            fs.FileMode
		wantWarning     string
		wantErrContains string
	}{
		{
			name:    "a private file with a password loads without warnings",
			content: withSecret,
			perm:    0o600,
		},
		{
			name:        "a readable file with a password warns with the file, line and key",
			content:     withSecret,
			perm:        0o644,
			wantWarning: ":9: upstream.bind_password: a secret is written in a file that group or others can read (mode 0644): chmod 600 ",
		},
		{
			name:            "a problem names the file",
			content:         withSecret + "log:\n  level: loud\n",
			perm:            0o600,
			wantErrContains: "ldapgate.yaml:12: log.level:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "ldapgate.yaml", tt.content, tt.perm)
			c, err := Load(path)
			checkErr(t, err, tt.wantErrContains)
			if err != nil {
				if !strings.Contains(err.Error(), "config: "+path+":") {
					t.Errorf("error %q does not name %s", err, path)
				}
				return
			}
			w := c.Warnings()
			switch {
			case tt.wantWarning == "" && len(w) > 0:
				t.Errorf("unexpected warnings %q", w)
			case tt.wantWarning != "" && (len(w) != 1 || !strings.HasPrefix(w[0], "config: "+path+tt.wantWarning)):
				t.Errorf("warnings %q, want one like %q", w, tt.wantWarning)
			}
		})
	}

	t.Run("a password from the environment in a readable file gives no warning", func(t *testing.T) {
		t.Parallel()
		path := writeFile(t, "ldapgate.yaml", withoutSecret, 0o644)
		l := loader{source: path, mode: 0o644, getenv: envOf(map[string]string{"LDAPGATE_TEST_UNUSED_PW": "pw"})}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.load(data)
		if err != nil {
			t.Fatal(err)
		}
		if w := c.Warnings(); len(w) > 0 {
			t.Errorf("unexpected warnings %q", w)
		}
	})

	t.Run("a missing file is an error naming it", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "missing.yaml")
		_, err := Load(path)
		checkErr(t, err, "config: open "+path+": no such file or directory")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v is not fs.ErrNotExist", err)
		}
	})
}
