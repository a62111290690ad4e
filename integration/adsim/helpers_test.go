package adsim_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newDirectory builds a directory and closes nothing: directories hold no resources.
func newDirectory(t testing.TB, cfg adsim.Config) *adsim.Directory {
	t.Helper()
	d, err := adsim.NewDirectory(cfg)
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}
	return d
}

// startDC starts a DC of d on a free loopback port and closes it when the test ends.
func startDC(t testing.TB, d *adsim.Directory, cfg adsim.DCConfig) *adsim.DC {
	t.Helper()
	dc, err := d.NewDC(cfg)
	if err != nil {
		t.Fatalf("NewDC(%+v): %v", cfg, err)
	}
	if err := dc.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := dc.Close(); err != nil {
			t.Errorf("Close %s: %v", dc.HostName(), err)
		}
	})
	return dc
}

// dial opens a verified LDAPS connection to dc, closed when the test ends.
func dial(t testing.TB, dc *adsim.DC) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(dc.URL(), ldap.DialWithTLSConfig(dc.ClientTLSConfig()))
	if err != nil {
		t.Fatalf("dial %s: %v", dc.URL(), err)
	}
	c.SetTimeout(10 * time.Second)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// bindResult binds and returns the LDAP result code and AD data sub-code.
func bindResult(c *ldap.Conn, name, password string) (int, string, error) {
	_, err := c.SimpleBind(&ldap.SimpleBindRequest{Username: name, Password: password, AllowEmptyPassword: true})
	return resultOf(err)
}

// resultOf splits an LDAP error into its result code and AD sub-code; other
// errors are returned as they are.
func resultOf(err error) (int, string, error) {
	if err == nil {
		return 0, "", nil
	}
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode >= ldap.ErrorNetwork {
		return 0, "", err
	}
	return int(le.ResultCode), adCode(le.Err.Error()), nil
}

// adCode extracts the "data XXX" sub-code of an AD diagnostic message.
func adCode(diag string) string {
	_, rest, ok := strings.Cut(diag, ", data ")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, ",")
	return code
}

// bindAs binds c or fails the test.
func bindAs(t testing.TB, c *ldap.Conn, name, password string) {
	t.Helper()
	if err := c.Bind(name, password); err != nil {
		t.Fatalf("bind as %s: %v", name, err)
	}
}

// within fails the test unless cond holds within d, checking as it goes.
func within(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}
