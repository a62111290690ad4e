package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// syncDomain is one simulated DC and a configuration file for it whose sync
// section reads the users OU into dataDir.
type syncDomain struct {
	dir     *adsim.Directory
	dc      *adsim.DC
	dataDir string
	caFile  string
}

func newSyncDomain(t *testing.T) *syncDomain {
	t.Helper()
	dir, err := adsim.NewDirectory(adsim.Config{Lockout: &adsim.LockoutPolicy{}, LoadUsers: 20})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dir.NewDC(adsim.DCConfig{Name: "dc1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	tmp := t.TempDir()
	caFile := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(caFile, dir.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return &syncDomain{dir: dir, dc: dc, dataDir: filepath.Join(tmp, "data"), caFile: caFile}
}

// config writes a configuration file with the sync filter and returns its path.
func (d *syncDomain) config(t *testing.T, filter string) string {
	t.Helper()
	yaml := fmt.Sprintf(`upstream:
  servers:
    - url: %s
      server_name: %s
  ca_file: %s
  bind_dn: %s
  bind_password: %q
  base_dn: %s
  user_base_dn: %s
sync:
  data_dir: %s
  filter: %q
  page_size: 7
`, d.dc.URL(), d.dc.HostName(), d.caFile, testbed.Service.UPN(), testbed.Service.Password,
		testbed.BaseDN, testbed.UsersDN, d.dataDir, filter)
	path := filepath.Join(t.TempDir(), "ldapgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (d *syncDomain) files() []string {
	var out []string
	entries, _ := os.ReadDir(d.dataDir)
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

const cmdAllUsers = "(&(objectCategory=person)(objectClass=user))"

func TestSyncCommandDryRunPrintsThePlanAndWritesNothing(t *testing.T) {
	t.Parallel()
	d := newSyncDomain(t)
	code, stdout, stderr := runCmd("sync", "--config", d.config(t, cmdAllUsers), "--dry-run")
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		"dry run: full sync (first sync) from " + d.dc.URL() + ": applied;",
		"(a temporary copy: nothing was written)",
		"ACTION",
		"create  jdoe",
		"+1 555 0101",
		"to create,",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "svc-pbx") {
		t.Errorf("the service account is in the plan:\n%s", stdout)
	}
	if files := d.files(); len(files) != 0 {
		t.Errorf("the dry run wrote %q into the data directory", files)
	}
}

func TestSyncCommandAppliesOnceAndHoldsMassDeletions(t *testing.T) {
	t.Parallel()
	d := newSyncDomain(t)
	all := d.config(t, cmdAllUsers)

	code, stdout, stderr := runCmd("sync", "--config", all)
	if code != 0 {
		t.Fatalf("first sync: exit code %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "full sync (first sync) from "+d.dc.URL()+": applied;") || !strings.Contains(stdout, "import: ") {
		t.Errorf("first sync: stdout\n%s", stdout)
	}
	for _, f := range []string{usersync.ViewFile, "applied.json", "users.csv", "import.json"} {
		if _, err := os.Stat(filepath.Join(d.dataDir, f)); err != nil {
			t.Errorf("after an applied sync: %v", err)
		}
	}
	csvBefore, _ := os.ReadFile(filepath.Join(d.dataDir, "users.csv"))

	code, stdout, _ = runCmd("sync", "--config", all)
	if code != 0 || !strings.Contains(stdout, "incremental sync from "+d.dc.URL()+": unchanged;") || !strings.Contains(stdout, "import: 0 created, 0 updated, 0 disabled, 0 removed") {
		t.Errorf("second sync: exit code %d, stdout\n%s", code, stdout)
	}

	// Only the PBX users stay in scope: most of the import would go.
	pbx := d.config(t, "(&(objectCategory=person)(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:="+testbed.PBXUsersDN+"))")
	code, stdout, stderr = runCmd("sync", "--config", pbx)
	if code != 1 || !strings.Contains(stderr, "deletions held") || !strings.Contains(stdout, "removals held (") {
		t.Errorf("a filter change removing most users: exit code %d, stdout\n%s\nstderr\n%s", code, stdout, stderr)
	}
	if csv, _ := os.ReadFile(filepath.Join(d.dataDir, "users.csv")); string(csv) != string(csvBefore) {
		t.Errorf("the CSV changed although the removals are held")
	}
	code, stdout, stderr = runCmd("sync", "--config", pbx, "--confirm-deletions")
	if code != 0 || strings.Contains(stdout, "held") || !strings.Contains(stdout, "import: 0 created, 0 updated, 0 disabled, 26 removed") {
		t.Errorf("--confirm-deletions: exit code %d, stdout\n%s\nstderr\n%s", code, stdout, stderr)
	}
	csv, _ := os.ReadFile(filepath.Join(d.dataDir, "users.csv"))
	if rows := strings.Count(string(csv), "\n"); rows != 1+3 {
		t.Errorf("the CSV after confirming has %d lines, want the header and the 3 PBX users:\n%s", rows, csv)
	}
}

func TestSyncCommandRefusesAViewInUse(t *testing.T) {
	t.Parallel()
	d := newSyncDomain(t)
	cfg := d.config(t, cmdAllUsers)
	if code, _, stderr := runCmd("sync", "--config", cfg); code != 0 {
		t.Fatalf("first sync: %s", stderr)
	}
	v, err := usersync.OpenView(d.dataDir, usersync.ViewOptions{}) // as serve holds it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })

	code, _, stderr := runCmd("sync", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "view store is in use by another process") || !strings.Contains(stderr, "ldapgate serve") {
		t.Errorf("sync while the view is held: exit code %d, stderr\n%s", code, stderr)
	}
	code, stdout, stderr := runCmd("sync", "--config", cfg, "--dry-run")
	if code != 0 || !strings.Contains(stderr, "reads every user from AD") || !strings.Contains(stdout, "full sync (first sync)") {
		t.Errorf("a dry run while the view is held: exit code %d, stdout\n%s\nstderr\n%s", code, stdout, stderr)
	}
}

func TestSyncCommandUsage(t *testing.T) {
	t.Parallel()
	cfg := newSyncDomain(t).config(t, cmdAllUsers)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"--config is required", []string{"sync"}, "ldapgate: sync: --config is required"},
		{"--dry-run and --apply exclude each other", []string{"sync", "--config", cfg, "--dry-run", "--apply"}, "exclude each other"},
		{"a stray argument is refused", []string{"sync", "--config", cfg, "now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit code %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
}

func TestServeRunsTheSyncLoopUntilStopped(t *testing.T) {
	t.Parallel()
	d := newSyncDomain(t)
	cfg, err := configs.Load(d.config(t, cmdAllUsers))
	if err != nil {
		t.Fatal(err)
	}
	runs := make(chan string, 4)
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core, zap.Hooks(func(e zapcore.Entry) error {
		if e.Message == "sync" {
			runs <- e.Level.String()
		}
		return nil
	}))
	cluster, err := upstream.New(cfg.Upstream, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Close() })

	svc := startSync(context.Background(), cfg, cluster, &credentialWatch{}, nil, log)
	if svc.view == nil || svc.importer == nil {
		t.Fatalf("the sync loop did not start: %v", logs.All())
	}
	select {
	case level := <-runs:
		if level != "info" {
			t.Errorf("the first run logged at %s: %v", level, logs.All())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no sync ran within 30s")
	}
	if svc.view.Len() == 0 || svc.importer.Handler() == nil {
		t.Errorf("after the first run the view has %d entries", svc.view.Len())
	}
	svc.stop()
	// Stopped, the view is released for 'ldapgate sync'.
	v, err := usersync.OpenView(d.dataDir, usersync.ViewOptions{LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("the view is still held after stop: %v", err)
	}
	_ = v.Close()

	// A second loop on a view that is held does not start, and says why.
	held, _ := usersync.OpenView(d.dataDir, usersync.ViewOptions{})
	t.Cleanup(func() { _ = held.Close() })
	before := len(logs.All())
	if svc := startSync(context.Background(), cfg, cluster, &credentialWatch{}, nil, log); svc.view != nil {
		svc.stop()
		t.Errorf("a sync loop started on a view another process holds")
	}
	if got := logs.All()[before:]; len(got) != 1 || got[0].Level != zapcore.ErrorLevel || !strings.Contains(fmt.Sprint(got[0].ContextMap()), "in use") {
		t.Errorf("logs of the refused start: %v", got)
	}

	cfg.Sync.Enabled = false
	if svc := startSync(context.Background(), cfg, cluster, &credentialWatch{}, nil, log); svc.view != nil {
		t.Errorf("a sync loop started with sync.enabled false")
	}
}
