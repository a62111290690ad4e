package adsim_test

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestDelay(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)

	t.Run("a delay longer than the client's timeout times the client out", func(t *testing.T) {
		dc.SetDelay(time.Second)
		defer dc.SetDelay(0)
		c.SetTimeout(100 * time.Millisecond)
		defer c.SetTimeout(10 * time.Second)
		_, _, err := bindResult(c, testbed.JDoe.DN(), testbed.JDoe.Password)
		if !transportError(err) {
			t.Fatalf("bind error = %v, want a timeout", err)
		}
		if got := dc.AccountBinds("jdoe"); got != 1 {
			t.Errorf("the DC counted %d binds, want 1: the bind was carried out before the delay", got)
		}
	})
	t.Run("a delay shorter than the timeout slows the answer down", func(t *testing.T) {
		c := dial(t, dc)
		dc.SetDelay(50 * time.Millisecond)
		defer dc.SetDelay(0)
		start := time.Now()
		if code, _, err := bindResult(c, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil || code != 0 {
			t.Fatalf("bind = %d, %v", code, err)
		}
		if took := time.Since(start); took < 50*time.Millisecond {
			t.Errorf("bind took %v, want at least the 50ms delay", took)
		}
	})
}

func TestDrop(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)
	dc.SetDrop(true)
	c.SetTimeout(100 * time.Millisecond)
	_, _, err := bindResult(c, testbed.JDoe.DN(), "bad")
	if !transportError(err) {
		t.Fatalf("bind error = %v, want a timeout", err)
	}
	if st, _ := d.Account("jdoe"); st.Binds != 1 || st.BadPwdCount != 0 {
		t.Errorf("account state %+v, want the request counted but not carried out", st)
	}
	dc.SetDrop(false)
	c2 := dial(t, dc)
	if code, _, err := bindResult(c2, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil || code != 0 {
		t.Errorf("bind after lifting the drop = %d, %v; want success", code, err)
	}
}

func TestRefuse(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	existing := dial(t, dc)
	addr := dc.Addr()

	if err := dc.SetRefuse(true); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while refusing: %v, want ECONNREFUSED", err)
	}
	if code, _, err := bindResult(existing, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil || code != 0 {
		t.Errorf("bind on a connection made before refusing = %d, %v; want success", code, err)
	}
	if err := dc.SetRefuse(false); err != nil {
		t.Fatal(err)
	}
	if dc.Addr() != addr {
		t.Errorf("address %s after refusing, want the same %s", dc.Addr(), addr)
	}
	if code, _, err := bindResult(dial(t, dc), testbed.JDoe.DN(), testbed.JDoe.Password); err != nil || code != 0 {
		t.Errorf("bind on a new connection = %d, %v; want success", code, err)
	}
}

func TestStopAndRestart(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)
	bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
	if err := dc.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, nil)); err == nil {
		t.Error("search on a connection of a stopped DC succeeded")
	}
	if _, err := net.DialTimeout("tcp", dc.Addr(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial a stopped DC: %v, want ECONNREFUSED", err)
	}
	within(t, 5*time.Second, "the stopped DC's connections close", func() bool { return dc.Stats().Open == 0 })
	if err := dc.Restart(); err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, dc)
	if code, _, err := bindResult(c2, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil || code != 0 {
		t.Errorf("bind after restart = %d, %v; want success", code, err)
	}
}

func TestStopEndsConnectionsInTheirHandshake(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	raw, err := net.Dial("tcp", dc.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	within(t, 5*time.Second, "the DC holds the silent connection", func() bool { return dc.Stats().Open == 1 })
	if err := dc.Stop(); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read from a connection the stopped DC holds: %v, want it closed", err)
	}
}

func TestCutMidResponse(t *testing.T) {
	d := newDirectory(t, adsim.Config{LoadUsers: 20})
	dc := startDC(t, d, adsim.DCConfig{})

	t.Run("a search is cut after k entries", func(t *testing.T) {
		c := dial(t, dc)
		bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
		dc.CutSearchAfter(3)
		defer dc.CutSearchAfter(-1)
		entries := 0
		res, err := c.Search(loadSearch(0))
		if res != nil {
			entries = len(res.Entries)
		}
		if !transportError(err) {
			t.Fatalf("search error = %v, want the connection closed", err)
		}
		if entries > 3 {
			t.Errorf("got %d entries before the cut, want at most 3", entries)
		}
		if !c.IsClosing() {
			t.Error("the client connection is still open")
		}
	})
	t.Run("a search with fewer entries than k is cut before its result", func(t *testing.T) {
		c := dial(t, dc)
		bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
		dc.CutSearchAfter(100)
		defer dc.CutSearchAfter(-1)
		if _, err := c.Search(loadSearch(0)); !transportError(err) {
			t.Fatalf("search error = %v, want the connection closed", err)
		}
	})
	t.Run("a bind is carried out but its response never comes", func(t *testing.T) {
		c := dial(t, dc)
		dc.CutBeforeBindResponse(true)
		defer dc.CutBeforeBindResponse(false)
		_, _, err := bindResult(c, testbed.BJones.DN(), "bad")
		if !transportError(err) {
			t.Fatalf("bind error = %v, want the connection closed", err)
		}
		if st, _ := d.Account("bjones"); st.BadPwdCount != 1 {
			t.Errorf("badPwdCount = %d, want 1: the bind reached the DC", st.BadPwdCount)
		}
	})
	t.Run("searches work again once the fault is lifted", func(t *testing.T) {
		c := dial(t, dc)
		bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)
		res, err := c.Search(loadSearch(0))
		if err != nil || len(res.Entries) != 20 {
			t.Fatalf("search: %v, want 20 entries", err)
		}
	})
}

func TestFailNext(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)
	if err := dc.FailNext(2, ldap.LDAPResultBusy); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		wantCode int
	}{
		{"the first operation gets busy", ldap.LDAPResultBusy},
		{"the second operation gets busy", ldap.LDAPResultBusy},
		{"the third operation is carried out", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, err := bindResult(c, testbed.JDoe.UPN(), testbed.JDoe.Password)
			if err != nil || code != tt.wantCode {
				t.Errorf("bind = %d, %v; want %d", code, err, tt.wantCode)
			}
		})
	}
	t.Run("a failed search gets the code", func(t *testing.T) {
		if err := dc.FailNext(1, ldap.LDAPResultUnavailable); err != nil {
			t.Fatal(err)
		}
		_, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, nil))
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailable) {
			t.Errorf("search error = %v, want unavailable", err)
		}
	})
	t.Run("a failed bind is not carried out", func(t *testing.T) {
		if err := dc.FailNext(1, ldap.LDAPResultBusy); err != nil {
			t.Fatal(err)
		}
		_, _, _ = bindResult(c, testbed.JDoe.UPN(), "bad")
		if st, _ := d.Account("jdoe"); st.BadPwdCount != 0 {
			t.Errorf("badPwdCount = %d, want 0", st.BadPwdCount)
		}
	})
}

func TestHandshakesOnlyOnNewConnections(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)
	// The server completes a TLS 1.3 handshake just after the client does.
	within(t, 5*time.Second, "the first connection's handshake is counted", func() bool { return dc.Stats().Handshakes == 1 })
	before := dc.Stats()
	for range 50 {
		if code, _, err := bindResult(c, testbed.JDoe.DN(), testbed.JDoe.Password); err != nil || code != 0 {
			t.Fatalf("bind = %d, %v", code, err)
		}
	}
	after := dc.Stats()
	if after.Handshakes != before.Handshakes || after.Connections != before.Connections {
		t.Errorf("50 binds on one connection moved handshakes %d→%d, connections %d→%d; want no change",
			before.Handshakes, after.Handshakes, before.Connections, after.Connections)
	}
	dial(t, dc)
	within(t, 5*time.Second, "a new connection's handshake is counted", func() bool { return dc.Stats().Handshakes == after.Handshakes+1 })
}

// transportError reports whether err is a failure to get an answer (a closed
// connection, a timeout) rather than an LDAP result.
func transportError(err error) bool {
	_, _, e := resultOf(err)
	return e != nil
}

func TestPlainLDAP(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{Plain: true})
	c, err := ldap.DialURL(dc.URL())
	if err != nil {
		t.Fatalf("dial %s: %v", dc.URL(), err)
	}
	defer c.Close()
	if code, _, err := bindResult(c, testbed.JDoe.UPN(), testbed.JDoe.Password); err != nil || code != 0 {
		t.Errorf("bind over plain LDAP = %d, %v; want success", code, err)
	}
	if dc.Stats().Handshakes != 0 {
		t.Errorf("plain LDAP counted %d TLS handshakes", dc.Stats().Handshakes)
	}
}

func TestClearFaults(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	dc.SetDelay(time.Hour)
	dc.SetDrop(true)
	dc.CutSearchAfter(0)
	dc.CutBeforeBindResponse(true)
	if err := dc.FailNext(5, ldap.LDAPResultBusy); err != nil {
		t.Fatal(err)
	}
	dc.ClearFaults()
	c := dial(t, dc)
	if code, _, err := bindResult(c, testbed.Service.UPN(), testbed.Service.Password); err != nil || code != 0 {
		t.Fatalf("bind after ClearFaults = %d, %v; want success", code, err)
	}
	if _, err := c.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeSingleLevel, 0, 0, 0, false, "(sAMAccountName=jdoe)", nil, nil)); err != nil {
		t.Errorf("search after ClearFaults: %v", err)
	}
}
