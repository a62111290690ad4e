package adsim_test

import (
	"testing"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// TestSharedCases runs the shared table of integration/testbed against the
// simulator, which must answer as Windows AD does.
func TestSharedCases(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{Name: "dc1"})

	t.Run("binds", func(t *testing.T) {
		for _, c := range testbed.BindCases() {
			t.Run(c.Name, func(t *testing.T) {
				code, sub, err := c.Run(dial(t, dc))
				if err != nil {
					t.Fatalf("bind %q: %v", c.Login, err)
				}
				wantCode, wantSub := c.Windows()
				if code != wantCode || sub != wantSub {
					t.Errorf("bind %q = %d/%q, want %d/%q as Windows AD", c.Login, code, sub, wantCode, wantSub)
				}
			})
		}
	})
	t.Run("searches", func(t *testing.T) {
		for _, c := range testbed.SearchCases() {
			t.Run(c.Name, func(t *testing.T) {
				res, err := c.Run(dial(t, dc))
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Check(res); err != nil {
					t.Error(err)
				}
			})
		}
	})
}
