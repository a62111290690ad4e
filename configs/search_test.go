package configs

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestValidateSearch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		mutate          func(c *Config)
		wantErrContains string
	}{
		{
			name:   "the defaults are valid",
			mutate: func(*Config) {},
		},
		{
			name:   "a search base under upstream.base_dn is valid",
			mutate: func(c *Config) { c.Search.BaseDN = "OU=AADDC Users,DC=aadds,DC=example,DC=test" },
		},
		{
			name:   "a search base equal to upstream.base_dn in another case is valid",
			mutate: func(c *Config) { c.Search.BaseDN = "dc=AADDS,dc=example,dc=test" },
		},
		{
			name:            "a search base outside upstream.base_dn is refused",
			mutate:          func(c *Config) { c.Search.BaseDN = "OU=AADDC Users,DC=evil,DC=test" },
			wantErrContains: `config: search.base_dn: "OU=AADDC Users,DC=evil,DC=test" is not inside upstream.base_dn`,
		},
		{
			name:            "a search base that is not a DN is refused",
			mutate:          func(c *Config) { c.Search.BaseDN = "AADDC Users" },
			wantErrContains: "config: search.base_dn: not a valid DN",
		},
		{
			name:   "a proxy user given as a UPN is valid",
			mutate: func(c *Config) { c.Search.ProxyUser = "pbx@aadds.example.test" },
		},
		{
			name:   "a proxy user given as DOMAIN\\name is valid",
			mutate: func(c *Config) { c.Search.ProxyUser = `AADDS\pbx` },
		},
		{
			name:            "a proxy user that looks like a DN but is not one is refused",
			mutate:          func(c *Config) { c.Search.ProxyUser = "CN=pbx,,DC=x" },
			wantErrContains: "config: search.proxy_user: not a valid DN",
		},
		{
			name:            "a white-space proxy user is refused",
			mutate:          func(c *Config) { c.Search.ProxyUser = "  " },
			wantErrContains: "config: search.proxy_user: is only white space",
		},
		{
			name:            "a white-space local proxy password is refused",
			mutate:          func(c *Config) { c.Search.ProxyPassword = " \t" },
			wantErrContains: "config: search.proxy_password: is only white space",
		},
		{
			name:            "an empty attribute allow-list is refused",
			mutate:          func(c *Config) { c.Search.Attributes = nil },
			wantErrContains: "config: search.attributes: is empty",
		},
		{
			name:            "a wildcard in the allow-list is refused",
			mutate:          func(c *Config) { c.Search.Attributes = []string{"dn", "*"} },
			wantErrContains: `config: search.attributes: "*" is not an attribute name`,
		},
		{
			name:            "an attribute with an option in the allow-list is refused",
			mutate:          func(c *Config) { c.Search.Attributes = []string{"member;range=0-10"} },
			wantErrContains: `config: search.attributes: "member;range=0-10" is not an attribute name`,
		},
		{
			name:   "an OID in the allow-list is valid",
			mutate: func(c *Config) { c.Search.Attributes = []string{"dn", "2.5.4.3"} },
		},
		{
			name:            "a zero paging idle timeout is refused",
			mutate:          func(c *Config) { c.Search.Paging.IdleTimeout = 0 },
			wantErrContains: "config: search.paging.idle_timeout: must be more than 0",
		},
		{
			name:            "a paging idle timeout past AD's idle limit is refused",
			mutate:          func(c *Config) { c.Search.Paging.IdleTimeout = 15 * time.Minute },
			wantErrContains: "config: search.paging.idle_timeout: must be under 15m",
		},
		{
			name:            "more paged searches per connection than AD allows are refused",
			mutate:          func(c *Config) { c.Search.Paging.MaxPerConnection = 11 },
			wantErrContains: "config: search.paging.max_per_connection: must be between 1 and 10",
		},
		{
			name:            "no open paged searches at all is refused",
			mutate:          func(c *Config) { c.Search.Paging.MaxOpen = 0 },
			wantErrContains: "config: search.paging.max_open: must be between 1 and 1024",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig(t)
			tt.mutate(c)
			checkErr(t, c.Validate(), tt.wantErrContains)
		})
	}
}

func TestSearchDefaults(t *testing.T) {
	t.Parallel()
	s := Default().Search
	if s.AllowUserSearch || s.AllowAnonymousSearch {
		t.Error("searches by users or anonymous clients are allowed by default")
	}
	if s.BaseDN != "" || s.ProxyUser != "" || s.ProxyPassword != "" {
		t.Errorf("base_dn %q, proxy_user %q: want empty (upstream.base_dn, upstream.bind_dn) and no local secret", s.BaseDN, s.ProxyUser)
	}
	for _, need := range []string{"dn", "sAMAccountName", "userPrincipalName", "displayName", "givenName", "sn", "mail",
		"telephoneNumber", "mobile", "ipPhone", "memberOf", "objectClass", "objectGUID", "userAccountControl",
		"homePhone", "facsimileTelephoneNumber", "company"} {
		if !strings.Contains(" "+strings.Join(s.Attributes, " ")+" ", " "+need+" ") {
			t.Errorf("the default allow-list lacks %s", need)
		}
	}
	for _, never := range []string{"pwdLastSet", "badPwdCount", "whenCreated", "unicodePwd", "lockoutTime"} {
		if strings.Contains(" "+strings.Join(s.Attributes, " ")+" ", " "+never+" ") {
			t.Errorf("the default allow-list holds %s", never)
		}
	}
	if s.Paging != (SearchPaging{IdleTimeout: time.Minute, MaxPerConnection: 1, MaxOpen: 16}) {
		t.Errorf("paging defaults %+v", s.Paging)
	}
}

func TestParseReadsTheProxyPasswordFile(t *testing.T) {
	t.Parallel()
	ca := writeFile(t, "ca.pem", "ca", 0o644)
	withSearch := func(lines string) string {
		return fmt.Sprintf(minimalYAML, ca, "") + "search:\n" + lines
	}
	tests := []struct {
		name            string
		yaml            func(t *testing.T) string
		wantPassword    string
		wantWarning     string
		wantErrContains string
	}{
		{
			name: "the file's content without its newline becomes the local secret",
			yaml: func(t *testing.T) string {
				return withSearch("  proxy_password_file: " + writeFile(t, "pw", "L0cal!pbx\n", 0o600) + "\n")
			},
			wantPassword: "L0cal!pbx",
		},
		{
			name: "a file others can read gives a warning naming the key",
			yaml: func(t *testing.T) string {
				return withSearch("  proxy_password_file: " + writeFile(t, "pw", "L0cal!pbx\n", 0o644) + "\n")
			},
			wantPassword: "L0cal!pbx",
			wantWarning:  "config: test.yaml:12: search.proxy_password_file: ",
		},
		{
			name: "a literal local secret from the environment is taken",
			yaml: func(*testing.T) string {
				return withSearch("  proxy_password: ${PBX_PW}\n")
			},
			wantPassword: "Env!pbx",
		},
		{
			name: "a missing file names the key",
			yaml: func(*testing.T) string {
				return withSearch("  proxy_password_file: /nonexistent/ldapgate/proxy-pw\n")
			},
			wantErrContains: "config: test.yaml:12: search.proxy_password_file: stat /nonexistent/ldapgate/proxy-pw",
		},
		{
			name: "a secret and a secret file together are refused",
			yaml: func(t *testing.T) string {
				return withSearch("  proxy_password: x\n  proxy_password_file: " + writeFile(t, "pw", "y", 0o600) + "\n")
			},
			wantErrContains: "search.proxy_password_file: proxy_password is set too: set only one of proxy_password and proxy_password_file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseWith(tt.yaml(t), map[string]string{"PBX_PW": "Env!pbx"})
			checkErr(t, err, tt.wantErrContains)
			if err != nil {
				return
			}
			if string(c.Search.ProxyPassword) != tt.wantPassword {
				t.Errorf("local secret = %q, want %q", string(c.Search.ProxyPassword), tt.wantPassword)
			}
			if string(c.Upstream.BindPassword) != "Svc!Passw0rd-pbx" {
				t.Error("reading the proxy password changed the service account's")
			}
			w := c.Warnings()
			switch {
			case tt.wantWarning == "" && len(w) > 0:
				t.Errorf("unexpected warnings %q", w)
			case tt.wantWarning != "" && (len(w) != 1 || !strings.HasPrefix(w[0], tt.wantWarning)):
				t.Errorf("warnings %q, want one starting %q", w, tt.wantWarning)
			}
			if strings.Contains(fmt.Sprintf("%+v %#v", c.Search, c.Search), tt.wantPassword) {
				t.Error("printing the search section shows the local secret")
			}
		})
	}
}
