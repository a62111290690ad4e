package configs

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	const password = "Svc!Passw0rd-pbx"
	c := Default()
	c.Upstream.BindPassword = password
	tests := []struct {
		name   string
		render func() (string, error)
		want   string
	}{
		{name: "%v of the secret is redacted", render: sprintf("%v", c.Upstream.BindPassword), want: "[redacted]"},
		{name: "%s of the secret is redacted", render: sprintf("%s", c.Upstream.BindPassword), want: "[redacted]"},
		{name: "%q of the secret is redacted", render: sprintf("%q", c.Upstream.BindPassword), want: "[redacted]"},
		{name: "%#v of the secret is redacted", render: sprintf("%#v", c.Upstream.BindPassword), want: "[redacted]"},
		{name: "%d of the secret is redacted", render: sprintf("%d", c.Upstream.BindPassword), want: "[redacted]"},
		{name: "%x of the secret is redacted", render: sprintf("%x", c.Upstream.BindPassword), want: "[redacted]"},
		{name: "%v of the whole config is redacted", render: sprintf("%v", c), want: "[redacted]"},
		{name: "%+v of the whole config is redacted", render: sprintf("%+v", c), want: "BindPassword:[redacted]"},
		{name: "%#v of the whole config is redacted", render: sprintf("%#v", &c), want: "BindPassword:[redacted]"},
		{
			name: "yaml.Marshal of the config is redacted",
			render: func() (string, error) {
				out, err := yaml.Marshal(c)
				return string(out), err
			},
			want: "bind_password: '[redacted]'",
		},
		{
			name: "json.Marshal of the config is redacted",
			render: func() (string, error) {
				out, err := json.Marshal(c)
				return string(out), err
			},
			want: `"BindPassword":"[redacted]"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.render()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(got, password) || !strings.Contains(got, tt.want) {
				t.Errorf("rendered %q, want it to contain %q and not the password", got, tt.want)
			}
		})
	}

	t.Run("an unset secret prints empty", func(t *testing.T) {
		t.Parallel()
		if got := fmt.Sprintf("%v|%s", Secret(""), Secret("")); got != "|" {
			t.Errorf("got %q, want %q", got, "|")
		}
	})
	t.Run("the value stays usable as a string", func(t *testing.T) {
		t.Parallel()
		if string(c.Upstream.BindPassword) != password {
			t.Error("string(secret) is not the password")
		}
	})
}

func TestPrintedConfigLoadsAgain(t *testing.T) {
	t.Parallel()
	// `ldapgate check config` prints the effective configuration as YAML: it
	// must read back (durations as "5m0s", not nanoseconds).
	c := validConfig(t)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseWith(string(out), nil)
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out)
	}
	back.Upstream.BindPassword = c.Upstream.BindPassword
	if got, want := fmt.Sprintf("%+v", back.Upstream), fmt.Sprintf("%+v", c.Upstream); got != want {
		t.Errorf("read back\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(string(out), "idle_timeout: 5m0s") {
		t.Errorf("durations not printed as durations:\n%s", out)
	}
}

// sprintf returns a render function formatting arg with format.
func sprintf(format string, arg any) func() (string, error) {
	return func() (string, error) { return fmt.Sprintf(format, arg), nil }
}
