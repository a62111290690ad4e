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
