//go:build integration

package integration

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"go.yaml.in/yaml/v3"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// The test bed's DCs as configs/testbed.yaml lists them.
var (
	reloadDC1 = map[string]any{"url": "ldaps://127.0.0.1:636", "server_name": "dc1.aadds.example.test"}
	reloadDC2 = map[string]any{"url": "ldaps://127.0.0.2:636", "server_name": "dc2.aadds.example.test"}
)

// rewriteConfig replaces the gateway's configuration file with
// gatewayConfig(changes), with the running sync.data_dir, the way
// configuration management does: a new file renamed over the old one.
func (g *procGateway) rewriteConfig(t *testing.T, changes map[string]any) {
	t.Helper()
	data, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var current struct {
		Sync struct {
			DataDir string `yaml:"data_dir"`
		} `yaml:"sync"`
	}
	if err := yaml.Unmarshal(data, &current); err != nil {
		t.Fatalf("read the running configuration: %v", err)
	}
	changes = with(changes, "sync.data_dir", current.Sync.DataDir)
	tmp := filepath.Join(filepath.Dir(g.cfgPath), ".ldapgate.yaml.new")
	if err := os.WriteFile(tmp, gatewayConfig(t, changes), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, g.cfgPath); err != nil {
		t.Fatal(err)
	}
}

// withMsg matches the log lines with message msg.
func withMsg(msg string) func(logLine) bool {
	return func(l logLine) bool { return l.str("msg") == msg }
}

// with returns a copy of changes with key set to v.
func with(changes map[string]any, key string, v any) map[string]any {
	out := maps.Clone(changes)
	out[key] = v
	return out
}

// clientConn is one client connection to a gateway that a test keeps open
// across reloads.
type clientConn struct {
	g    *procGateway
	conn *ldap.Conn
	id   int // the gateway's connection id, from the first audit line
}

func openClientConn(t *testing.T, g *procGateway) *clientConn {
	t.Helper()
	conn, err := dialGateway(g.addr)
	if err != nil {
		t.Fatalf("dial the gateway: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &clientConn{g: g, conn: conn}
}

// bind binds jdoe on the connection and returns the DC of its audit line. The
// audit line must carry the connection's id every time: the connection was
// never replaced.
func (c *clientConn) bind(t *testing.T, what string) string {
	t.Helper()
	offset := logSize(t, c.g.logPath)
	if code, diag := bindCode(t, c.conn, testbed.JDoe.Login, testbed.JDoe.Password); code != 0 {
		t.Fatalf("%s: jdoe's bind on the same connection: result %d (%s), want 0", what, code, diag)
	}
	line := waitAudit(t, c.g.logPath, offset, 1)[0]
	if c.id == 0 {
		c.id = line.num("conn_id")
	} else if got := line.num("conn_id"); got != c.id {
		t.Fatalf("%s: the bind came on connection %d, want the first one, %d", what, got, c.id)
	}
	return line.str("dc")
}

// TestReloadOnSIGHUPKeepsTheClientConnection: a broken configuration and a
// SIGHUP leave the running one serving; a new upstream list and a SIGHUP move
// the next bind of the same, never closed, client connection to the new DC.
func TestReloadOnSIGHUPKeepsTheClientConnection(t *testing.T) {
	base := map[string]any{"reload.watch": false, "upstream.servers": []any{reloadDC1, reloadDC2}}
	g := startProcGateway(t, "gateway", base)
	conn := openClientConn(t, g)
	if dc := conn.bind(t, "before any reload"); dc != reloadDC1["url"] {
		t.Fatalf("first bind on %s, want dc1", dc)
	}

	// A broken value: refused, the old configuration keeps serving.
	offset := logSize(t, g.logPath)
	g.rewriteConfig(t, map[string]any{"reload.watch": false, "upstream.servers": []any{reloadDC2}, "upstream.pool.bind_size": 0})
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	refused := waitLog(t, g.logPath, offset, withMsg("config reload refused: keeping the running config"), "the refusal")
	if errText := refused.str("error"); !strings.Contains(errText, "upstream.pool.bind_size") {
		t.Errorf("the refusal says %q, want it to name upstream.pool.bind_size", errText)
	}
	if dc := conn.bind(t, "after the refused reload"); dc != reloadDC1["url"] {
		t.Errorf("bind after the refused reload on %s, want dc1 still", dc)
	}

	// A good one: dc2 only.
	offset = logSize(t, g.logPath)
	g.rewriteConfig(t, map[string]any{"reload.watch": false, "upstream.servers": []any{reloadDC2}})
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloaded := waitLog(t, g.logPath, offset, withMsg("config reloaded"), "the reload")
	if changed, _ := reloaded["changed"].([]any); !slices.Equal(changed, []any{"upstream.servers"}) || reloaded.str("trigger") != "SIGHUP" {
		t.Errorf("config reloaded line %v, want trigger SIGHUP and upstream.servers the changed key", reloaded)
	}
	if restart, _ := reloaded["needs_restart"].([]any); len(restart) != 0 {
		t.Errorf("config reloaded line %v, want no key that needs a restart", reloaded)
	}
	t.Logf("the gateway logged %v, then %v", refused, reloaded)
	if dc := conn.bind(t, "after the reload"); dc != reloadDC2["url"] {
		t.Errorf("bind after the reload on %s, want dc2", dc)
	}
	if !g.alive() {
		t.Fatal("the gateway exited")
	}
}

// TestReloadOnFileChangeAlone: with reload.watch (the default), renaming a new
// configuration over the file is enough.
func TestReloadOnFileChangeAlone(t *testing.T) {
	// A short debounce keeps the wait for the reload well within logWithin.
	watch := map[string]any{"reload.debounce": "200ms"}
	g := startProcGateway(t, "gateway", with(watch, "upstream.servers", []any{reloadDC1, reloadDC2}))
	conn := openClientConn(t, g)
	if dc := conn.bind(t, "before the change"); dc != reloadDC1["url"] {
		t.Fatalf("first bind on %s, want dc1", dc)
	}
	offset := logSize(t, g.logPath)
	g.rewriteConfig(t, with(with(watch, "upstream.servers", []any{reloadDC2, reloadDC1}), "cache.dn.ttl", "1m"))
	reloaded := waitLog(t, g.logPath, offset, withMsg("config reloaded"), "the reload")
	changed, _ := reloaded["changed"].([]any)
	if reloaded.str("trigger") != "file change" || !slices.Equal(changed, []any{"upstream.servers", "cache.dn.ttl"}) {
		t.Errorf("config reloaded line %v, want trigger file change with upstream.servers and cache.dn.ttl", reloaded)
	}
	if dc := conn.bind(t, "after the change"); dc != reloadDC2["url"] {
		t.Errorf("bind after the change on %s, want dc2, now first in the list", dc)
	}
}
