package upstream

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// wrongPassword is the bad password the tests send; like every real password it
// must never show up in a log.
const wrongPassword = "Wr0ng!Passw0rd-upstream"

// domain is a simulated AD domain with its DCs, started on loopback.
type domain struct {
	dir    *adsim.Directory
	dcs    []*adsim.DC
	caFile string
}

// newDomain starts n DCs of one directory (lockout off, so tests may send bad
// passwords freely) and closes them when the test ends.
func newDomain(t *testing.T, n int, cfg adsim.Config) *domain {
	t.Helper()
	if cfg.Lockout == nil {
		cfg.Lockout = &adsim.LockoutPolicy{}
	}
	dir, err := adsim.NewDirectory(cfg)
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, dir.CACertPEM(), 0o600); err != nil {
		t.Fatalf("write CA: %v", err)
	}
	d := &domain{dir: dir, caFile: caFile}
	for i := range n {
		dc, err := dir.NewDC(adsim.DCConfig{Name: fmt.Sprintf("dc%d", i+1), USNOffset: int64(i) * 100000})
		if err != nil {
			t.Fatalf("NewDC: %v", err)
		}
		if err := dc.Start("127.0.0.1:0"); err != nil {
			t.Fatalf("start %s: %v", dc.HostName(), err)
		}
		t.Cleanup(func() {
			if err := dc.Close(); err != nil {
				t.Errorf("close %s: %v", dc.HostName(), err)
			}
		})
		d.dcs = append(d.dcs, dc)
	}
	return d
}

// config is an upstream configuration for the domain's DCs in order, dialled by
// IP address and verified with the DC's host name. Probes run only when a test
// asks (probe interval one hour).
func (d *domain) config() configs.Upstream {
	cfg := configs.Default().Upstream
	for _, dc := range d.dcs {
		cfg.Servers = append(cfg.Servers, configs.Server{URL: dc.URL(), ServerName: dc.HostName()})
	}
	cfg.CAFile = d.caFile
	cfg.BindDN = testbed.Service.DN()
	cfg.BindPassword = configs.Secret(testbed.Service.Password)
	cfg.BaseDN = testbed.BaseDN
	cfg.UserBaseDN = testbed.UsersDN
	// Generous: the machine may be busy with other tests; tests of timeouts
	// set their own.
	cfg.DialTimeout = 5 * time.Second
	cfg.OpTimeout = 10 * time.Second
	cfg.Pool = configs.Pool{ServiceSize: 2, BindSize: 4, MaxLifetime: 10 * time.Minute, IdleTimeout: 5 * time.Minute, WaitTimeout: time.Second}
	cfg.Breaker = configs.Breaker{Failures: 3, ProbeInterval: time.Hour}
	return cfg
}

// newCluster builds a Cluster that logs into an observer at debug level and,
// when the test ends, closes it and checks that no password reached the log.
func newCluster(t *testing.T, cfg configs.Upstream, opts ...Option) (*Cluster, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	c, err := New(cfg, zap.New(core), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNoSecretLogged(t, logs, string(cfg.BindPassword))
	})
	return c, logs
}

// assertNoSecretLogged fails when any password appears in a message or field.
func assertNoSecretLogged(t *testing.T, logs *observer.ObservedLogs, extra ...string) {
	t.Helper()
	secrets := append([]string{wrongPassword}, extra...)
	for _, a := range testbed.Accounts {
		secrets = append(secrets, a.Password)
	}
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("a password is in the log: %q", line)
			}
		}
	}
}

// countLogs counts the entries at level whose message starts with prefix.
func countLogs(logs *observer.ObservedLogs, level zapcore.Level, prefix string) int {
	n := 0
	for _, e := range logs.All() {
		if e.Level == level && strings.HasPrefix(e.Message, prefix) {
			n++
		}
	}
	return n
}

// eventually waits up to timeout for cond, polling; it fails with what it
// waited for.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval of a bounded wait
	}
}

// ctxTimeout is a context for one test step.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// statsOf returns the Stats entry of url.
func statsOf(t *testing.T, c *Cluster, url string) DCStats {
	t.Helper()
	for _, s := range c.Stats() {
		if s.URL == url {
			return s
		}
	}
	t.Fatalf("no stats for %s", url)
	return DCStats{}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// breakableDialer dials TCP normally and can make the writes of the connections
// it made so far fail, as a connection reset by the DC while it sat idle would,
// without the reader noticing.
type breakableDialer struct {
	mu    sync.Mutex
	conns []*breakableConn
}

func (b *breakableDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	bc := &breakableConn{Conn: c}
	b.mu.Lock()
	b.conns = append(b.conns, bc)
	b.mu.Unlock()
	return bc, nil
}

// breakWrites makes every write on the existing connections fail.
func (b *breakableDialer) breakWrites() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.broken.Store(true)
	}
}

// breakableConn hides the TCP connection's SyscallConn, so only its writes
// tell that it is broken.
type breakableConn struct {
	net.Conn
	broken atomic.Bool
}

func (c *breakableConn) Write(b []byte) (int, error) {
	if c.broken.Load() {
		return 0, fmt.Errorf("write: %w", net.ErrClosed)
	}
	return c.Conn.Write(b)
}
