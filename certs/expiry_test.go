package certs

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestExpiry(t *testing.T) {
	t.Parallel()
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := func(d time.Duration) *x509.Certificate { return &x509.Certificate{NotAfter: base.Add(d)} }
	tests := []struct {
		name  string
		chain []*x509.Certificate
		want  time.Time
	}{
		{"an empty chain has no expiry", nil, time.Time{}},
		{"a lone leaf expires with itself", []*x509.Certificate{cert(0)}, base},
		{"a leaf expiring before its CA sets the expiry", []*x509.Certificate{cert(time.Hour), cert(48 * time.Hour)}, base.Add(time.Hour)},
		{"a CA expiring before the leaf sets the expiry", []*x509.Certificate{cert(48 * time.Hour), cert(2 * time.Hour), cert(72 * time.Hour)}, base.Add(2 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Expiry(tt.chain); !got.Equal(tt.want) {
				t.Errorf("Expiry = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExpiryOfAnIssuedChain(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	leaf, _, _ := issue(t, ca, []string{"localhost"}, 24*time.Hour)
	if got := Expiry([]*x509.Certificate{leaf, ca.Certificate()}); !got.Equal(leaf.NotAfter) {
		t.Errorf("Expiry = %v, want the leaf's NotAfter %v", got, leaf.NotAfter)
	}
}
