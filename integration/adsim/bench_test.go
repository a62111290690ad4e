package adsim_test

import (
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// BenchmarkBind measures good binds by DN on one reused LDAPS connection (the
// go-ldap client runs in the same process and shares the CPU).
func BenchmarkBind(b *testing.B) {
	d := newDirectory(b, adsim.Config{})
	c := dial(b, startDC(b, d, adsim.DCConfig{}))
	req := &ldap.SimpleBindRequest{Username: testbed.JDoe.DN(), Password: testbed.JDoe.Password}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.SimpleBind(req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "binds/s")
}

// BenchmarkBindParallel measures good binds of bulk users, one reused LDAPS
// connection per goroutine (GOMAXPROCS goroutines unless -cpu says otherwise).
func BenchmarkBindParallel(b *testing.B) {
	d := newDirectory(b, adsim.Config{LoadUsers: 64})
	dc := startDC(b, d, adsim.DCConfig{})
	conns := make(chan *ldap.Conn, 64)
	for range cap(conns) {
		conns <- dial(b, dc)
	}
	next := make(chan int, 64)
	for i := range cap(next) {
		next <- i
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := <-conns
		login, password := testbed.LoadUser(<-next)
		req := &ldap.SimpleBindRequest{Username: login, Password: password}
		for pb.Next() {
			if _, err := c.SimpleBind(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "binds/s")
}
