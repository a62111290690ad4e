package loadgen_test

import (
	"context"
	"sync"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/loadgen"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// BenchmarkGeneratorCost measures the generator's own cost: the same binds
// against the same in-process simulated DC (plain LDAP, 4 reused connections),
// once through loadgen.Run and once as a bare go-ldap loop. The two binds/s
// figures should be within a few percent of each other; the simulator and the
// client share the CPU, so the absolute figures say little.
func BenchmarkGeneratorCost(b *testing.B) {
	dc := startDC(b, adsim.DCConfig{Plain: true})
	const clients = 4
	b.Run("loadgen", func(b *testing.B) {
		cfg := baseConfig(dc)
		cfg.Concurrency, cfg.Count = clients, b.N
		b.ReportAllocs()
		res, err := loadgen.Run(context.Background(), cfg)
		if err != nil || res.OK != b.N {
			b.Fatalf("%d of %d ok (%v): %v", res.OK, b.N, res.Codes, err)
		}
		b.ReportMetric(res.Throughput, "binds/s")
	})
	b.Run("bare-go-ldap", func(b *testing.B) {
		req := &ldap.SimpleBindRequest{Username: testbed.JDoe.DN(), Password: testbed.JDoe.Password}
		var wg sync.WaitGroup
		b.ReportAllocs()
		for i := range clients {
			n := b.N / clients
			if i < b.N%clients {
				n++
			}
			wg.Go(func() {
				c, err := ldap.DialURL(dc.URL())
				if err != nil {
					b.Error(err)
					return
				}
				defer func() { _ = c.Close() }()
				for range n {
					if _, err := c.SimpleBind(req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "binds/s")
	})
}
