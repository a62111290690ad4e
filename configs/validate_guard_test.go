package configs

import (
	"path/filepath"
	"testing"
	"time"
)

func TestValidateLockoutAndOffline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		mutate          func(t *testing.T, c *Config)
		wantErrContains string
	}{
		{name: "the defaults are valid with the offline cache off", mutate: func(*testing.T, *Config) {}},
		{name: "the offline cache on with its defaults is valid", mutate: func(_ *testing.T, c *Config) { c.Offline.Enabled = true }},
		{
			name: "every guard switched off with zeros is valid",
			mutate: func(_ *testing.T, c *Config) {
				c.Lockout = Lockout{}
			},
		},
		{
			name:            "a negative negative_ttl is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Lockout.NegativeTTL = -time.Second },
			wantErrContains: "config: lockout.negative_ttl: must be 0 (off) or more",
		},
		{
			name:            "a user budget past the bound is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Lockout.UserBudget = 51 },
			wantErrContains: "config: lockout.user_budget: must be between 0 (off) and 50",
		},
		{
			name:            "a user budget without a window is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Lockout.UserWindow = 0 },
			wantErrContains: "config: lockout.user_window: must be more than 0",
		},
		{
			name:            "per-user state without a bound is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Lockout.MaxUsers = 0 },
			wantErrContains: "config: lockout.max_users: must be between 1 and",
		},
		{
			name:            "a negative client rate is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Lockout.ClientRate = -1 },
			wantErrContains: "config: lockout.client_rate: must be 0 (off) or more",
		},
		{
			name:            "a client rate without a burst is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Lockout.ClientBurst = 0 },
			wantErrContains: "config: lockout.client_burst: must be at least 1",
		},
		{
			name:            "a client rate without a bound on clients is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Lockout.MaxClients = 0 },
			wantErrContains: "config: lockout.max_clients: must be between 1 and",
		},
		{
			name:            "a failure latency floor over 5s is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Lockout.MinFailureLatency = 6 * time.Second },
			wantErrContains: "config: lockout.min_failure_latency: must be between 0 (off) and 5s",
		},
		{
			name:            "an offline cache without a max age is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Offline.Enabled = true; c.Offline.MaxAge = 0 },
			wantErrContains: "config: offline.max_age: must be more than 0",
		},
		{
			name:            "an offline cache without failures allowed is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Offline.Enabled = true; c.Offline.MaxFailures = 0 },
			wantErrContains: "config: offline.max_failures: must be at least 1",
		},
		{
			name:            "a cheap argon2 memory cost is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Offline.Enabled = true; c.Offline.Argon2.MemoryKiB = 1024 },
			wantErrContains: "config: offline.argon2.memory_kib: must be between 8192 (8 MiB)",
		},
		{
			name:            "zero argon2 passes are refused",
			mutate:          func(_ *testing.T, c *Config) { c.Offline.Enabled = true; c.Offline.Argon2.Time = 0 },
			wantErrContains: "config: offline.argon2.time: must be between 1 and 10",
		},
		{
			name:            "zero argon2 threads are refused",
			mutate:          func(_ *testing.T, c *Config) { c.Offline.Enabled = true; c.Offline.Argon2.Threads = 0 },
			wantErrContains: "config: offline.argon2.threads: must be between 1 and 16",
		},
		{
			name:            "an unbounded hash concurrency is refused",
			mutate:          func(_ *testing.T, c *Config) { c.Offline.Enabled = true; c.Offline.MaxConcurrentHashes = 0 },
			wantErrContains: "config: offline.max_concurrent_hashes: must be between 1 and 64",
		},
		{
			name: "an offline file in a directory that does not exist is refused",
			mutate: func(t *testing.T, c *Config) {
				c.Offline.Enabled = true
				c.Offline.File = filepath.Join(t.TempDir(), "missing", "offline.json")
			},
			wantErrContains: "config: offline.file: stat ",
		},
		{
			name: "an offline file that is a directory is refused",
			mutate: func(t *testing.T, c *Config) {
				c.Offline.Enabled = true
				c.Offline.File = t.TempDir()
			},
			wantErrContains: "is a directory: name a file",
		},
		{
			name: "an offline file in an existing directory is valid",
			mutate: func(t *testing.T, c *Config) {
				c.Offline.Enabled = true
				c.Offline.File = filepath.Join(t.TempDir(), "offline.json")
			},
		},
		{
			name: "bad offline settings are ignored while the cache is off",
			mutate: func(_ *testing.T, c *Config) {
				c.Offline = Offline{MaxAge: -1, Argon2: Argon2{MemoryKiB: 1}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig(t)
			tt.mutate(t, c)
			checkErr(t, c.Validate(), tt.wantErrContains)
		})
	}
}

func TestLockoutAndOfflineSectionsLoadFromYAML(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := `
upstream:
  servers: [{url: "ldaps://dc1.aadds.example.test"}]
  ca_file: ` + writeFile(t, "ca.pem", "x", 0o600) + `
  bind_dn: svc-pbx@aadds.example.test
  bind_password: Svc!Passw0rd-pbx
  base_dn: DC=aadds,DC=example,DC=test
lockout:
  negative_ttl: 3s
  user_budget: 2
  client_rate: 2.5
  min_failure_latency: 0s
offline:
  enabled: true
  file: ` + filepath.Join(dir, "offline.json") + `
  argon2:
    memory_kib: 8192
`
	c, err := parseWith(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default().Lockout
	want.NegativeTTL, want.UserBudget, want.ClientRate, want.MinFailureLatency = 3*time.Second, 2, 2.5, 0
	if c.Lockout != want {
		t.Errorf("lockout = %+v, want %+v", c.Lockout, want)
	}
	if !c.Offline.Enabled || c.Offline.Argon2 != (Argon2{Time: 2, MemoryKiB: 8192, Threads: 1}) || c.Offline.MaxAge != 24*time.Hour {
		t.Errorf("offline = %+v, want enabled with memory_kib 8192 and the other defaults", c.Offline)
	}
}
