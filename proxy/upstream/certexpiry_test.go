package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

func TestStatsReportTheCertificateExpiryOfTheLastHandshake(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	for _, dc := range d.dcs {
		if got := statsOf(t, c, dc.URL()).CertNotAfter; !got.IsZero() {
			t.Errorf("%s before any handshake: CertNotAfter %v, want unset", dc.HostName(), got)
		}
	}
	if _, err := c.Bind(ctxTimeout(t, 30*time.Second), testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
		t.Fatal(err)
	}

	// The leaf certificate dc1 presents, read by a client of its own.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(d.dir.CACertPEM())
	conn, err := tls.Dial("tcp", d.dcs[0].Addr(), &tls.Config{RootCAs: roots, ServerName: d.dcs[0].HostName(), MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	_ = conn.Close()

	if got := statsOf(t, c, d.dcs[0].URL()).CertNotAfter; !got.Equal(leaf.NotAfter) {
		t.Errorf("dc1 after a bind: CertNotAfter %v, want the leaf's NotAfter %v", got, leaf.NotAfter)
	}
	if got := statsOf(t, c, d.dcs[1].URL()).CertNotAfter; !got.IsZero() {
		t.Errorf("dc2, never dialled: CertNotAfter %v, want unset", got)
	}
}

func TestStandbyDCsGetACertificateCheckWithoutBindOrCountedHandshake(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	cfg := d.config()
	cfg.Breaker.ProbeInterval = 20 * time.Millisecond
	cfg.CertCheckInterval = time.Hour
	clock := newFakeClock()
	c, _ := newCluster(t, cfg, WithClock(clock.Now))
	dc2 := d.dcs[1]

	eventually(t, 10*time.Second, "a certificate check of both DCs", func() bool {
		for _, s := range c.Stats() {
			if s.CertNotAfter.IsZero() {
				return false
			}
		}
		return true
	})
	for _, s := range c.Stats() {
		if s.CertChecks != 1 || s.Dials != 0 || s.Handshakes != 0 || s.Binds+s.Searches != 0 {
			t.Errorf("%s after the check: %d checks, %d dials, %d handshakes, %d binds, %d searches; want 1 check and nothing counted",
				s.URL, s.CertChecks, s.Dials, s.Handshakes, s.Binds, s.Searches)
		}
	}
	if got := dc2.Stats().Binds; got != 0 {
		t.Errorf("the check bound %d times on dc2, want no bind", got)
	}
	// Half an hour later a bind makes dc1's handshake, which counts as its
	// check: within the hour of the checks, none is due.
	clock.Advance(30 * time.Minute)
	if _, err := c.Bind(ctxTimeout(t, 30*time.Second), testbed.JDoe.DN(), testbed.JDoe.Password); err != nil {
		t.Fatal(err)
	}
	clock.Advance(29 * time.Minute)
	checks := func(i int) uint64 { return c.Stats()[i].CertChecks }
	tick := func() { c.checkCerts(ctxTimeout(t, 30*time.Second)) } // what the probe loop does each interval
	tick()
	if checks(0) != 1 || checks(1) != 1 {
		t.Errorf("checks within the hour: dc1 %d, dc2 %d; want 1, 1", checks(0), checks(1))
	}
	clock.Advance(2 * time.Minute)
	eventually(t, 10*time.Second, "dc2's next check after an hour", func() bool { return checks(1) == 2 })
	if checks(0) != 1 {
		t.Errorf("dc1, with a handshake 31 minutes ago, got %d checks, want 1", checks(0))
	}

	// A drained DC gets none.
	if err := c.SetDrained(dc2.URL(), true); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	tick()
	if checks(1) != 2 {
		t.Errorf("drained dc2 got a certificate check")
	}
}
