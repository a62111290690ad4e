//go:build integration

// Fault suite: an in-process gateway whose two upstream servers are fault
// proxies in front of the test bed's dc1 and dc2, each fault applied to both
// (so no failover can hide it) under a small load. Every bind must end in the
// documented result within the configured time (52: never 49, never a
// success), the breakers must open, and good binds must come back within one
// probe interval once the fault is lifted. Then the load test: good binds
// while dc1 is really stopped and started again.
package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/faultproxy"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// The fault rigs' settings.
const (
	frOpTimeout = 2 * time.Second
	frProbe     = time.Second
	frFailures  = 2
	// frBound is the longest any one bind may wait for its answer: the op
	// timeout, an offline check and scheduling.
	frBound = frOpTimeout + 2*time.Second
	// frFast is how quickly a bind is answered once the breakers are open.
	frFast = 500 * time.Millisecond
	// frResume bounds the time from lifting a fault to the first good bind:
	// one probe interval, the probe itself and the bind.
	frResume = frProbe + 2*time.Second
)

// faultRig is a gateway in front of two relays, one per DC.
type faultRig struct {
	gw      *inprocGateway
	proxies []*faultproxy.Proxy
}

// frChanges are the gateway settings of every rig: small timeouts and a
// quick breaker, with more changes on top.
func frChanges(servers []string, more map[string]any) map[string]any {
	changes := map[string]any{
		"upstream.servers": []any{
			map[string]any{"url": "ldaps://" + servers[0], "server_name": testbed.DC1Name},
			map[string]any{"url": "ldaps://" + servers[1], "server_name": testbed.DC2Name},
		},
		"upstream.op_timeout":             frOpTimeout.String(),
		"upstream.dial_timeout":           frOpTimeout.String(),
		"upstream.breaker.failures":       frFailures,
		"upstream.breaker.probe_interval": frProbe.String(),
	}
	for k, v := range more {
		changes[k] = v
	}
	return changes
}

// newFaultRig starts a fault proxy in front of each DC and a gateway on them,
// and warms it up with a bind of jdoe (cached DN, pooled connections, dc1).
func newFaultRig(t *testing.T, name string, more map[string]any) *faultRig {
	t.Helper()
	r := &faultRig{proxies: []*faultproxy.Proxy{newFaultProxy(t, "127.0.0.1:636"), newFaultProxy(t, "127.0.0.2:636")}}
	r.gw = startInprocGateway(t, name, frChanges([]string{r.proxies[0].Addr(), r.proxies[1].Addr()}, more))
	if code, took := r.bind(t, testbed.JDoe.Login, testbed.JDoe.Password); code != 0 {
		t.Fatalf("warm-up bind through the fault proxies: %d after %s", code, took)
	}
	return r
}

func newFaultProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p := faultproxy.New(target)
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// setAll applies f to both DCs' proxies.
func (r *faultRig) setAll(t *testing.T, f faultproxy.Fault) {
	t.Helper()
	for _, p := range r.proxies {
		if err := p.SetFault(f); err != nil {
			t.Fatalf("set fault %s: %v", f, err)
		}
	}
}

// bind binds on a new connection and returns the code and how long the bind
// took; an answer later than frBound fails the test.
func (r *faultRig) bind(t *testing.T, login, password string) (uint16, time.Duration) {
	t.Helper()
	return timedBind(t, r.gw.addr, login, password)
}

func timedBind(t *testing.T, addr, login, password string) (uint16, time.Duration) {
	t.Helper()
	l, err := dialGateway(addr)
	if err != nil {
		t.Fatalf("connect to the gateway: %v", err)
	}
	defer l.Close()
	start := time.Now()
	code, _ := bindCode(t, l, login, password)
	took := time.Since(start)
	if took > frBound {
		t.Errorf("a bind of %s took %s, longer than %s", login, took, frBound)
	}
	return code, took
}

func (r *faultRig) describe() string {
	s := r.gw.cluster.Stats()
	return "  " + describeDC(s[0]) + "\n  " + describeDC(s[1])
}

func (r *faultRig) bothOpen() bool {
	s := r.gw.cluster.Stats()
	return s[0].Breaker != upstream.BreakerClosed && s[1].Breaker != upstream.BreakerClosed
}

// outageUntilBreakersOpen binds login until both breakers are open, at most
// maxBinds times; every bind must get 52. Then three more must get 52 fast.
func (r *faultRig) outageUntilBreakersOpen(t *testing.T, login, password string, maxBinds int) {
	t.Helper()
	for n := 1; !r.bothOpen(); n++ {
		if code, took := r.bind(t, login, password); code != ldap.LDAPResultUnavailable {
			t.Fatalf("bind %d of %s during the fault: %d after %s, want 52\n%s", n, login, code, took, r.describe())
		}
		if n == maxBinds {
			t.Fatalf("the breakers are not both open after %d binds\n%s", n, r.describe())
		}
	}
	for i := range 3 {
		if code, took := r.bind(t, login, password); code != ldap.LDAPResultUnavailable || took > frFast {
			t.Errorf("bind %d with both breakers open: %d after %s, want 52 within %s", i+1, code, took, frFast)
		}
	}
}

// resume lifts the fault and returns how long the first good bind of login
// took to come, failing after frResume.
func (r *faultRig) resume(t *testing.T, lift func(), login, password string) time.Duration {
	t.Helper()
	lift()
	start := time.Now()
	for {
		code, took := r.bind(t, login, password)
		if code == 0 {
			return time.Since(start)
		}
		if code != ldap.LDAPResultUnavailable {
			t.Fatalf("a bind after the fault was lifted: %d after %s, want 52 and then 0", code, took)
		}
		if time.Since(start) > frResume {
			t.Fatalf("no good bind within %s of lifting the fault (probe interval %s)\n%s", frResume, frProbe, r.describe())
		}
		time.Sleep(50 * time.Millisecond) // paces the binds while the probes run
	}
}

// load binds jdoe from n clients until stopped, each on its own connection,
// and counts the answers; a 49 is an error (jdoe's password is right).
type load struct {
	stop             chan struct{}
	wg               sync.WaitGroup
	ok, unavail, bad atomic.Int64
	other            atomic.Int64
}

func startLoad(t *testing.T, addr string, n int) *load {
	t.Helper()
	ld := &load{stop: make(chan struct{})}
	for range n {
		ld.wg.Go(func() {
			for {
				select {
				case <-ld.stop:
					return
				default:
				}
				l, err := dialGateway(addr)
				if err != nil {
					ld.other.Add(1)
					time.Sleep(50 * time.Millisecond) // back off from a listener that refused
					continue
				}
				_, err = l.SimpleBind(&ldap.SimpleBindRequest{Username: testbed.JDoe.Login, Password: testbed.JDoe.Password})
				l.Close()
				var le *ldap.Error
				switch {
				case err == nil:
					ld.ok.Add(1)
				case errors.As(err, &le) && le.ResultCode == ldap.LDAPResultInvalidCredentials:
					ld.bad.Add(1)
				case errors.As(err, &le) && le.ResultCode == ldap.LDAPResultUnavailable:
					ld.unavail.Add(1)
				default:
					ld.other.Add(1)
				}
			}
		})
	}
	t.Cleanup(func() { ld.finish(t) })
	return ld
}

func (ld *load) finish(t *testing.T) {
	select {
	case <-ld.stop:
		return
	default:
	}
	close(ld.stop)
	ld.wg.Wait()
	t.Logf("background load: %d ok, %d unavailable, %d other, %d invalid credentials", ld.ok.Load(), ld.unavail.Load(), ld.other.Load(), ld.bad.Load())
	if ld.bad.Load() > 0 {
		t.Errorf("the background load's good binds got 49 %d times: an outage must never look like a wrong password", ld.bad.Load())
	}
}

// switchRelay relays TCP connections to a target it can switch, dropping the
// connections it relays when it does: how a test points a DC's address at a
// server with the wrong certificate.
type switchRelay struct {
	ln     net.Listener
	target atomic.Value // string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newSwitchRelay(t *testing.T, target string) *switchRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &switchRelay{ln: ln, conns: map[net.Conn]struct{}{}}
	s.target.Store(target)
	s.wg.Go(s.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		s.dropAll()
		s.wg.Wait()
	})
	return s
}

func (s *switchRelay) addr() string { return s.ln.Addr().String() }

func (s *switchRelay) switchTo(target string) {
	s.target.Store(target)
	s.dropAll()
}

func (s *switchRelay) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

func (s *switchRelay) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

func (s *switchRelay) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() {
			defer c.Close()
			up, err := net.DialTimeout("tcp", s.target.Load().(string), 5*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			s.track(c, true)
			s.track(up, true)
			defer s.track(c, false)
			defer s.track(up, false)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
			_ = c.Close()
			_ = up.Close()
			<-done
		})
	}
}

func TestFaultsEndInUnavailableAndServiceResumes(t *testing.T) {
	jdoe, asmith := testbed.JDoe, testbed.ASmith
	faults := []struct {
		name  string
		fault faultproxy.Fault
		// login is who binds during the fault: jdoe's DN is cached by the
		// warm-up (the bind is the only traffic), asmith's is not (a search
		// comes first).
		login testbed.Account
	}{
		{"latency above the op timeout", faultproxy.Latency(frOpTimeout), jdoe},
		{"a blackhole", faultproxy.Blackhole(), jdoe},
		{"a cut in the middle of the user search", faultproxy.CutAfter(20), asmith},
		{"a refused port", faultproxy.Refuse(), jdoe},
	}
	for _, f := range faults {
		t.Run(f.name+" on both DCs: 52 within the op timeout, breakers open, service back within a probe interval", func(t *testing.T) {
			r := newFaultRig(t, "fault", nil)
			ld := startLoad(t, r.gw.addr, 4)
			r.setAll(t, f.fault)
			r.outageUntilBreakersOpen(t, f.login.Login, f.login.Password, 4*frFailures+4)
			s := r.gw.cluster.Stats()
			t.Logf("during %s: dc1 %s, dc2 %s", f.fault, s[0].Breaker, s[1].Breaker)
			took := r.resume(t, func() { r.setAll(t, faultproxy.None()) }, f.login.Login, f.login.Password)
			t.Logf("%s lifted: the first good bind came %s later (probe interval %s)", f.fault, took.Round(time.Millisecond), frProbe)
			if s := r.gw.stats(0); s.Breaker != upstream.BreakerClosed {
				t.Errorf("dc1's breaker after the good bind: %s, want closed", s.Breaker)
			}
			ld.finish(t)
		})
	}

	t.Run("a reset in the middle of a bind: that bind and the next get 52, then service resumes", func(t *testing.T) {
		r := newFaultRig(t, "fault-reset", nil)
		ld := startLoad(t, r.gw.addr, 4)
		// Slow the round trip so that the bind is surely in flight, then
		// reset once its request has reached the DC.
		r.setAll(t, faultproxy.Latency(frOpTimeout/4))
		before := r.proxies[0].BytesToTarget() + r.proxies[1].BytesToTarget()
		type result struct {
			code uint16
			took time.Duration
		}
		done := make(chan result, 1)
		go func() {
			l, err := dialGateway(r.gw.addr)
			if err != nil {
				done <- result{code: 0xffff}
				return
			}
			defer l.Close()
			start := time.Now()
			_, err = l.SimpleBind(&ldap.SimpleBindRequest{Username: jdoe.Login, Password: jdoe.Password})
			var le *ldap.Error
			switch {
			case err == nil:
				done <- result{0, time.Since(start)}
			case errors.As(err, &le):
				done <- result{le.ResultCode, time.Since(start)}
			default:
				done <- result{0xffff, time.Since(start)}
			}
		}()
		waitFor(t, frBound, func() bool { return r.proxies[0].BytesToTarget()+r.proxies[1].BytesToTarget() > before },
			"no bytes reached a DC within %s", frBound)
		r.setAll(t, faultproxy.Reset())
		res := <-done
		if res.code != ldap.LDAPResultUnavailable && res.code != 0 {
			t.Fatalf("the bind reset in flight got %d after %s, want 52 (or 0 if its answer beat the reset)", res.code, res.took)
		}
		t.Logf("the bind in flight when the connections were reset: %d after %s", res.code, res.took.Round(time.Millisecond))
		r.outageUntilBreakersOpen(t, jdoe.Login, jdoe.Password, 4*frFailures+4)
		took := r.resume(t, func() { r.setAll(t, faultproxy.None()) }, jdoe.Login, jdoe.Password)
		t.Logf("reset lifted: the first good bind came %s later", took.Round(time.Millisecond))
		ld.finish(t)
	})

	untrusted := newUntrustedTLSServer(t)
	for _, tlsFault := range []struct{ name, target string }{
		{"a certificate from an unknown CA", untrusted},
		{"a port that does not speak TLS (the DC's plain LDAP port)", "127.0.0.1:389"},
	} {
		t.Run("a TLS failure, "+tlsFault.name+", on both DCs: 52, breakers open, service back when fixed", func(t *testing.T) {
			relays := []*switchRelay{newSwitchRelay(t, "127.0.0.1:636"), newSwitchRelay(t, "127.0.0.2:636")}
			r := &faultRig{}
			r.gw = startInprocGateway(t, "fault-tls", frChanges([]string{relays[0].addr(), relays[1].addr()}, nil))
			if code, took := r.bind(t, jdoe.Login, jdoe.Password); code != 0 {
				t.Fatalf("warm-up bind: %d after %s", code, took)
			}
			ld := startLoad(t, r.gw.addr, 4)
			for _, rl := range relays {
				rl.switchTo(tlsFault.target)
			}
			r.outageUntilBreakersOpen(t, jdoe.Login, jdoe.Password, 4*frFailures+4)
			s := r.gw.cluster.Stats()
			t.Logf("during %s: dc1 %s (last error %q), dc2 %s", tlsFault.name, s[0].Breaker, s[0].LastError, s[1].Breaker)
			took := r.resume(t, func() {
				relays[0].switchTo("127.0.0.1:636")
				relays[1].switchTo("127.0.0.2:636")
			}, jdoe.Login, jdoe.Password)
			t.Logf("fixed: the first good bind came %s later", took.Round(time.Millisecond))
			ld.finish(t)
		})
	}
}

// newUntrustedTLSServer listens with a self-signed certificate for the DCs'
// names, which the gateway's CA bundle does not trust, and completes
// handshakes for whoever accepts it.
func newUntrustedTLSServer(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: testbed.DC1Name},
		DNSNames:     []string{testbed.DC1Name, testbed.DC2Name},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake() // the gateway aborts it: unknown authority
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestGoodBindsWhileDC1IsKilledAndRestarted is the load test: 8 clients bind
// good accounts for at least 20 s (bounded count) through a gateway on both
// real DCs while dc1 is stopped and started again. No good bind may get 49;
// the success rate and the longest stall are logged for the closing note.
func TestGoodBindsWhileDC1IsKilledAndRestarted(t *testing.T) {
	const (
		clients     = 8
		minDuration = 20 * time.Second
		maxBinds    = 20000 // per client
	)
	gw := startInprocGateway(t, "dc1-kill-load", map[string]any{
		"upstream.op_timeout":             frOpTimeout.String(),
		"upstream.dial_timeout":           frOpTimeout.String(),
		"upstream.breaker.failures":       frFailures,
		"upstream.breaker.probe_interval": frProbe.String(),
	})
	accounts := []testbed.Account{testbed.JDoe, testbed.ASmith, testbed.SOBrien, testbed.JDoe, testbed.ASmith, testbed.SOBrien, testbed.JDoe, testbed.ASmith}

	type clientStats struct {
		ok, unavailable, invalid, other int
		longestBind                     time.Duration
		successes                       []time.Time
	}
	stats := make([]clientStats, clients)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			st := &stats[i]
			a := accounts[i]
			var l *ldap.Conn
			defer func() {
				if l != nil {
					l.Close()
				}
			}()
			for n := 0; n < maxBinds; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if l == nil {
					var err error
					if l, err = dialGateway(gw.addr); err != nil {
						st.other++
						time.Sleep(20 * time.Millisecond) // back off from a refused connect
						continue
					}
				}
				t0 := time.Now()
				_, err := l.SimpleBind(&ldap.SimpleBindRequest{Username: a.Login, Password: a.Password})
				took := time.Since(t0)
				st.longestBind = max(st.longestBind, took)
				var le *ldap.Error
				switch {
				case err == nil:
					st.ok++
					st.successes = append(st.successes, time.Now())
				case errors.As(err, &le) && le.ResultCode == ldap.LDAPResultInvalidCredentials:
					st.invalid++
				case errors.As(err, &le) && le.ResultCode == ldap.LDAPResultUnavailable:
					st.unavailable++
				default:
					st.other++
					l.Close()
					l = nil
				}
			}
		})
	}

	time.Sleep(3 * time.Second) // load before the kill: part of the measurement
	killedAt := time.Now()
	stopDC1(t)
	t.Logf("dc1 stopped %s into the load (took %s)", killedAt.Sub(start).Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))
	time.Sleep(5 * time.Second) // the load runs on dc2 alone
	restartAt := time.Now()
	startDC1(t)
	t.Logf("dc1 started again %s into the load (took %s)", restartAt.Sub(start).Round(time.Millisecond), time.Since(restartAt).Round(time.Millisecond))
	if rest := minDuration - time.Since(start); rest > 0 {
		time.Sleep(rest) // the load runs on after the restart for the rest of the 20 s
	}
	waitFor(t, 30*time.Second, func() bool { return gw.stats(0).Breaker == upstream.BreakerClosed },
		"dc1's breaker is not closed 30s after dc1 started again\n  %s", describeDC(gw.stats(0)))
	before := gw.stats(0).Binds
	waitFor(t, 15*time.Second, func() bool { return gw.stats(0).Binds > before },
		"no bind went back to dc1 within 15s of its breaker closing")
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	var total, ok, unavailable, invalid, other int
	var longestBind time.Duration
	var all []time.Time
	for _, st := range stats {
		ok += st.ok
		unavailable += st.unavailable
		invalid += st.invalid
		other += st.other
		longestBind = max(longestBind, st.longestBind)
		all = append(all, st.successes...)
	}
	total = ok + unavailable + invalid + other
	// The longest stall: the longest time in which no client had a success.
	longestStall, stallAt := stallOf(all, start)
	t.Logf("%d clients, %s: %d binds, %d ok (%.2f%%), %d unavailable (52), %d other, %d invalid credentials (49); longest single bind %s; longest time without any success %s (starting %s into the run)",
		clients, elapsed.Round(time.Millisecond), total, ok, 100*float64(ok)/float64(max(total, 1)), unavailable, other, invalid,
		longestBind.Round(time.Millisecond), longestStall.Round(time.Millisecond), stallAt.Round(time.Millisecond))
	t.Logf("breakers at the end:\n  %s\n  %s", describeDC(gw.stats(0)), describeDC(gw.stats(1)))
	if invalid > 0 {
		t.Errorf("%d good binds got 49 while dc1 was killed and restarted: an outage must never look like a wrong password", invalid)
	}
	if ok == 0 {
		t.Errorf("no bind succeeded")
	}
}

// stallOf returns the longest gap between consecutive successes (and before
// the first), and when it began, relative to start.
func stallOf(successes []time.Time, start time.Time) (time.Duration, time.Duration) {
	if len(successes) == 0 {
		return 0, 0
	}
	slices.SortFunc(successes, time.Time.Compare)
	prev := start
	var longest, at time.Duration
	for _, s := range successes {
		if gap := s.Sub(prev); gap > longest {
			longest, at = gap, prev.Sub(start)
		}
		prev = s
	}
	return longest, at
}
