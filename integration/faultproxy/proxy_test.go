package faultproxy

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRelay(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := tlsConfigs(t)
	tests := []struct {
		name  string
		tls   bool
		fault Fault
	}{
		{name: "relays plain TCP unchanged in both directions", fault: None()},
		{name: "passes a TLS handshake and its data through untouched", tls: true, fault: None()},
		{name: "keeps TLS records in order under latency", tls: true, fault: Latency(2 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var conf *tls.Config
			if tt.tls {
				conf = serverTLS
			}
			srv := startEcho(t, conf)
			p := startProxy(t, srv.addr())
			setFault(t, p, tt.fault)

			var c net.Conn = dial(t, p.Addr())
			if tt.tls {
				tc := tls.Client(c, clientTLS)
				if err := tc.SetDeadline(time.Now().Add(patience)); err != nil {
					t.Fatalf("set deadline: %v", err)
				}
				if err := tc.Handshake(); err != nil {
					t.Fatalf("TLS handshake through the proxy: %v", err)
				}
				c = tc
			}
			msgs := [][]byte{[]byte("hello"), payload(1 << 20), []byte("bye")}
			var sent int
			for _, m := range msgs {
				roundTrip(t, c, m)
				sent += len(m)
			}

			if got := p.Accepted(); got != 1 {
				t.Errorf("Accepted() = %d, want 1", got)
			}
			if got := p.Active(); got != 1 {
				t.Errorf("Active() = %d, want 1", got)
			}
			if tt.tls {
				// TLS adds its own bytes; both directions carried at least the data.
				waitFor(t, "both byte counters cover the data", func() bool {
					return p.BytesToTarget() > int64(sent) && p.BytesToClient() > int64(sent)
				})
			} else {
				waitFor(t, "both byte counters equal the data", func() bool {
					return p.BytesToTarget() == int64(sent) && p.BytesToClient() == int64(sent)
				})
			}

			if err := c.Close(); err != nil {
				t.Fatalf("close client: %v", err)
			}
			if err := srv.waitEnded(t); err != nil {
				t.Errorf("the server's connection ended with %v, want a clean close", err)
			}
			waitFor(t, "Active() drops to 0 after the client closed", func() bool { return p.Active() == 0 })
		})
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	const d = 50 * time.Millisecond
	msg := []byte("ping")

	t.Run("adds at least 2d to each round trip on an existing connection", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		c := dial(t, p.Addr())
		roundTrip(t, c, msg)

		setFault(t, p, Latency(d))
		for range 3 {
			start := time.Now()
			roundTrip(t, c, msg)
			if took := time.Since(start); took < 2*d {
				t.Fatalf("round trip took %v, want at least %v", took, 2*d)
			}
		}
	})

	t.Run("adds at least 2d to each round trip on a new connection", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		setFault(t, p, Latency(d))
		c := dial(t, p.Addr())
		start := time.Now()
		roundTrip(t, c, msg)
		if took := time.Since(start); took < 2*d {
			t.Fatalf("round trip took %v, want at least %v", took, 2*d)
		}
	})

	t.Run("keeps many small writes in order", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		setFault(t, p, Latency(time.Millisecond))
		c := dial(t, p.Addr())
		want := payload(64 << 10)
		werr := make(chan error, 1)
		go func() {
			for i := 0; i < len(want); i += 100 {
				if _, err := c.Write(want[i:min(i+100, len(want))]); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		got, err := readN(c, len(want))
		if werr := <-werr; werr != nil {
			t.Fatalf("write: %v", werr)
		}
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if string(got) != string(want) {
			t.Fatal("bytes came back reordered or changed")
		}
	})

	t.Run("lifting it delivers queued chunks without waiting out the delay", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		c := dial(t, p.Addr())
		setFault(t, p, Latency(time.Hour))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		expectSilence(t, c, 50*time.Millisecond)
		setFault(t, p, None())
		got, err := readN(c, len(msg))
		if err != nil || string(got) != string(msg) {
			t.Fatalf("read = %q, %v; want %q within %v", got, err, msg, patience)
		}
	})
}

// readN reads exactly n bytes from c within patience.
func readN(c net.Conn, n int) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(patience)); err != nil {
		return nil, err
	}
	got := make([]byte, n)
	read := 0
	for read < n {
		m, err := c.Read(got[read:])
		read += m
		if err != nil {
			return got[:read], err
		}
	}
	return got, nil
}

func TestBlackhole(t *testing.T) {
	t.Parallel()
	const quiet = 100 * time.Millisecond
	msg := []byte("anyone there?")

	t.Run("an existing connection stops answering but stays open", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		c := dial(t, p.Addr())
		roundTrip(t, c, msg)

		setFault(t, p, Blackhole())
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		expectSilence(t, c, quiet)
		if got := p.Active(); got != 1 {
			t.Errorf("Active() = %d, want 1", got)
		}

		setFault(t, p, None())
		got, err := readN(c, len(msg))
		if err != nil || string(got) != string(msg) {
			t.Fatalf("after lifting the blackhole read = %q, %v; want the held %q", got, err, msg)
		}
		roundTrip(t, c, msg)
	})

	t.Run("a new connection completes the handshake but is never answered", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		setFault(t, p, Blackhole())
		c := dial(t, p.Addr())
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		expectSilence(t, c, quiet)
		waitFor(t, "the proxy accepted the connection", func() bool { return p.Accepted() == 1 })

		setFault(t, p, None())
		got, err := readN(c, len(msg))
		if err != nil || string(got) != string(msg) {
			t.Fatalf("after lifting the blackhole read = %q, %v; want the held %q", got, err, msg)
		}
	})
}

func TestReset(t *testing.T) {
	t.Parallel()

	t.Run("resets an existing connection on both sides", func(t *testing.T) {
		t.Parallel()
		srv := startEcho(t, nil)
		p := startProxy(t, srv.addr())
		c := dial(t, p.Addr())
		roundTrip(t, c, []byte("hello"))

		setFault(t, p, Reset())
		if got := p.Active(); got != 0 {
			t.Errorf("Active() = %d right after SetFault(Reset()), want 0", got)
		}
		expectReset(t, c)
		if err := srv.waitEnded(t); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the server's connection ended with %v, want a reset", err)
		}
	})

	t.Run("resets each new connection after accepting it", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		setFault(t, p, Reset())
		for i := range 3 {
			expectResetOnConnect(t, p.Addr())
			if got := p.Accepted(); got != int64(i+1) {
				t.Errorf("Accepted() = %d after %d connections, want %d", got, i+1, i+1)
			}
		}
	})

	t.Run("lifting it lets new connections through again", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		setFault(t, p, Reset())
		expectResetOnConnect(t, p.Addr())
		setFault(t, p, None())
		roundTrip(t, dial(t, p.Addr()), []byte("hello"))
	})
}

func TestCutAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		n      int64
		before int // bytes echoed before the fault is set; -1: connect after
		send   int
	}{
		{name: "a new connection gets exactly n bytes, then a reset", n: 1000, before: -1, send: 4000},
		{name: "an existing connection counts from when the fault is set", n: 1000, before: 300, send: 4000},
		{name: "a cut in the middle of a later chunk still stops at n", n: 2500, before: 0, send: 4000},
		{name: "a response of exactly n bytes arrives whole before the reset", n: 1000, before: 0, send: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startEcho(t, nil)
			p := startProxy(t, srv.addr())
			var c net.Conn
			if tt.before >= 0 {
				c = dial(t, p.Addr())
				if tt.before > 0 {
					roundTrip(t, c, payload(tt.before))
				}
			}
			setFault(t, p, CutAfter(tt.n))
			if c == nil {
				c = dial(t, p.Addr())
			}

			want := payload(tt.send)
			if _, err := c.Write(want); err != nil {
				t.Fatalf("write: %v", err)
			}
			got, err := readUntilError(t, c)
			if !isReset(err) {
				t.Fatalf("read ended with %v, want a connection reset", err)
			}
			if int64(len(got)) != tt.n || string(got) != string(want[:tt.n]) {
				t.Fatalf("got %d bytes before the reset, want exactly the first %d", len(got), tt.n)
			}
			if err := srv.waitEnded(t); err == nil {
				t.Error("the server's connection ended cleanly, want a reset")
			}
		})
	}

	t.Run("n = 0 resets a new connection at once", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		setFault(t, p, CutAfter(0))
		expectResetOnConnect(t, p.Addr())
	})

	t.Run("n = 0 resets an idle existing connection at once", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		c := dial(t, p.Addr())
		roundTrip(t, c, []byte("hello"))
		setFault(t, p, CutAfter(0))
		expectReset(t, c)
	})
}

func TestRefuse(t *testing.T) {
	t.Parallel()

	t.Run("refuses new connections and resets existing ones", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		c := dial(t, p.Addr())
		roundTrip(t, c, []byte("hello"))

		setFault(t, p, Refuse())
		expectReset(t, c)
		expectRefused(t, p.Addr())
		if got := p.Active(); got != 0 {
			t.Errorf("Active() = %d, want 0", got)
		}
	})

	t.Run("lifting it reopens the listener on the same port", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		addr := p.Addr()
		setFault(t, p, Refuse())
		setFault(t, p, Refuse()) // refusing twice changes nothing
		expectRefused(t, addr)

		setFault(t, p, Blackhole())
		if got := p.Addr(); got != addr {
			t.Fatalf("Addr() = %s after reopening, want %s", got, addr)
		}
		c := dial(t, addr)
		setFault(t, p, None())
		roundTrip(t, c, []byte("hello"))
	})

	t.Run("reports a clear error when the port was taken meanwhile", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, startEcho(t, nil).addr())
		addr := p.Addr()
		setFault(t, p, Refuse())
		squatter, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("take the refused port: %v", err)
		}

		err = p.SetFault(None())
		if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), addr) {
			t.Fatalf("SetFault(None()) = %v, want an error naming %s and wrapping EADDRINUSE", err, addr)
		}

		if err := squatter.Close(); err != nil {
			t.Fatalf("close the squatter: %v", err)
		}
		expectRefused(t, addr)
		setFault(t, p, None())
		roundTrip(t, dial(t, addr), []byte("hello"))
	})

	t.Run("set before Start, it reserves the port and refuses from the start", func(t *testing.T) {
		t.Parallel()
		p := New(startEcho(t, nil).addr())
		t.Cleanup(func() { _ = p.Close() })
		setFault(t, p, Refuse())
		if err := p.Start("127.0.0.1:0"); err != nil {
			t.Fatalf("Start: %v", err)
		}
		expectRefused(t, p.Addr())
		setFault(t, p, None())
		roundTrip(t, dial(t, p.Addr()), []byte("hello"))
	})
}

// expectRefused checks that connecting to addr is refused.
func expectRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, patience)
	if err == nil {
		_ = c.Close()
		t.Fatalf("dial %s succeeded, want connection refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

func TestSwitchingFaults(t *testing.T) {
	t.Parallel()
	p := startProxy(t, startEcho(t, nil).addr())
	c := dial(t, p.Addr())
	msg := []byte("still here")

	ok := t.Run("one connection carries on through latency and a blackhole", func(t *testing.T) {
		roundTrip(t, c, msg)
		setFault(t, p, Latency(20*time.Millisecond))
		roundTrip(t, c, msg)
		setFault(t, p, Blackhole())
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		expectSilence(t, c, 50*time.Millisecond)
		setFault(t, p, Latency(time.Millisecond))
		if got, err := readN(c, len(msg)); err != nil || string(got) != string(msg) {
			t.Fatalf("read = %q, %v; want the held %q", got, err, msg)
		}
		setFault(t, p, None())
		roundTrip(t, c, payload(100<<10))
	})
	if !ok {
		return
	}

	t.Run("and is then cut after n more bytes", func(t *testing.T) {
		setFault(t, p, CutAfter(5))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		got, err := readUntilError(t, c)
		if string(got) != string(msg[:5]) || !isReset(err) {
			t.Fatalf("read %q then %v, want %q then a reset", got, err, msg[:5])
		}
		if got := p.Accepted(); got != 1 {
			t.Errorf("Accepted() = %d, want 1: the same connection all along", got)
		}
	})
}

func TestTargetDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	target := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	p := startProxy(t, target)
	t.Run("a client is reset when the target refuses", func(t *testing.T) {
		expectResetOnConnect(t, p.Addr())
		waitFor(t, "Active() drops to 0", func() bool { return p.Active() == 0 })
	})
}

func TestStart(t *testing.T) {
	t.Parallel()

	t.Run("rejects listen addresses that are not loopback", func(t *testing.T) {
		t.Parallel()
		for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "not an address"} {
			p := New("127.0.0.1:1")
			if err := p.Start(addr); err == nil {
				t.Errorf("Start(%q) succeeded, want an error", addr)
			}
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})

	t.Run("Addr is empty before Start and fixed after", func(t *testing.T) {
		t.Parallel()
		p := New("127.0.0.1:1")
		if got := p.Addr(); got != "" {
			t.Errorf("Addr() before Start = %q, want empty", got)
		}
		if err := p.Start("127.0.0.1:0"); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { _ = p.Close() })
		if got := p.Addr(); !strings.HasPrefix(got, "127.0.0.1:") || strings.HasSuffix(got, ":0") {
			t.Errorf("Addr() = %q, want 127.0.0.1 with the chosen port", got)
		}
	})

	t.Run("rejects a second Start", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, "127.0.0.1:1")
		if err := p.Start("127.0.0.1:0"); err == nil {
			t.Error("second Start succeeded, want an error")
		}
	})
}

// TestClose is not parallel: it counts every goroutine of the package.
func TestClose(t *testing.T) {
	srv := startEcho(t, nil)
	p := New(srv.addr())
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}

	t.Run("ends every connection promptly and leaves no goroutine behind", func(t *testing.T) {
		// One connection per state a goroutine can wait in: relaying, a chunk
		// delayed by an hour, and held by a blackhole.
		idle := dial(t, p.Addr())
		roundTrip(t, idle, []byte("hello"))
		setFault(t, p, Latency(time.Hour))
		delayed := dial(t, p.Addr())
		if _, err := delayed.Write([]byte("later")); err != nil {
			t.Fatalf("write: %v", err)
		}
		setFault(t, p, Blackhole())
		held := dial(t, p.Addr())
		if _, err := held.Write([]byte("never")); err != nil {
			t.Fatalf("write: %v", err)
		}
		waitFor(t, "three connections are relayed", func() bool { return p.Active() == 3 })
		if len(proxyGoroutines()) == 0 {
			t.Fatal("found no proxy goroutine while relaying: the goroutine check is blind")
		}

		closed := make(chan error, 1)
		go func() { closed <- p.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
		case <-time.After(patience):
			t.Fatalf("Close did not return within %v", patience)
		}

		if left := proxyGoroutines(); len(left) > 0 {
			t.Fatalf("%d proxy goroutines left after Close:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
		for _, c := range []net.Conn{idle, delayed, held} {
			expectReset(t, c)
		}
		if got := p.Active(); got != 0 {
			t.Errorf("Active() = %d after Close, want 0", got)
		}
	})

	t.Run("a closed proxy rejects further use", func(t *testing.T) {
		if err := p.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		if err := p.SetFault(None()); !errors.Is(err, ErrClosed) {
			t.Errorf("SetFault after Close = %v, want ErrClosed", err)
		}
		if err := p.Start("127.0.0.1:0"); !errors.Is(err, ErrClosed) {
			t.Errorf("Start after Close = %v, want ErrClosed", err)
		}
		expectRefused(t, p.Addr())
	})
}
