package configs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestTestbedConfigMatchesTheTestBed(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testbed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The CA file exists only where the test bed runs: substitute a temporary
	// one so the rest of the file is checked everywhere.
	caPath := filepath.Join(testbed.DefaultDir, "tls", "ca.pem")
	if !bytes.Contains(data, []byte("ca_file: "+caPath+"\n")) {
		t.Fatalf("testbed.yaml does not name the test bed's CA %s", caPath)
	}
	tmpCA := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(tmpCA, []byte("ca"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := configs.Parse(bytes.ReplaceAll(data, []byte(caPath), []byte(tmpCA)), "testbed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []configs.Server{
		{URL: testbed.DC1URL, ServerName: testbed.DC1Name},
		{URL: testbed.DC2URL, ServerName: testbed.DC2Name},
	}
	u := c.Upstream
	checks := []struct {
		key       string
		got, want any
	}{
		{"listen.address", c.Listen.Address, testbed.GatewayAddr},
		{"upstream.servers", len(u.Servers), len(want)},
		{"upstream.bind_dn", u.BindDN, testbed.Service.UPN()},
		{"upstream.bind_password is the service account's", string(u.BindPassword) == testbed.Service.Password, true},
		{"upstream.base_dn", u.BaseDN, testbed.BaseDN},
		{"upstream.user_base_dn", u.UserBaseDN, testbed.UsersDN},
		{"upstream.netbios_domain", u.NetBIOSDomain, testbed.NetBIOS},
		{"log.format", c.Log.Format, "json"},
	}
	for i := range min(len(u.Servers), len(want)) {
		checks = append(checks, struct {
			key       string
			got, want any
		}{"upstream.servers", u.Servers[i], want[i]})
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.key, ch.got, ch.want)
		}
	}
}
