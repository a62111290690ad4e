package certs

import (
	"crypto/x509"
	"time"
)

// Expiry returns the moment chain stops verifying: the earliest NotAfter of its
// certificates, usually the leaf's. It returns the zero time for an empty chain.
// Pass tls.ConnectionState.PeerCertificates to watch an upstream's certificate;
// time.Until(Expiry(chain)) is the time left.
func Expiry(chain []*x509.Certificate) time.Time {
	var earliest time.Time
	for _, c := range chain {
		if earliest.IsZero() || c.NotAfter.Before(earliest) {
			earliest = c.NotAfter
		}
	}
	return earliest
}
