package guard

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// The guard's cost, against gldap on its own (go test -bench . -benchmem).
// Client, guard and gldap share the machine, so these measure CPU as much as
// latency.

func benchBind(b *testing.B, viaGuard bool) {
	h := startHarness(b, Config{}, nil)
	addr := h.backendAddr
	if viaGuard {
		addr = h.addr
	}
	l := dial(b, addr)
	if !viaGuard {
		// Straight to gldap there is no hello: map the connection by hand.
		token, _ := h.g.hellos.issue(kindHello, &Session{id: 1})
		if err := l.Bind(helloPrefix+token, h.g.secret); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Bind("jdoe", "pw"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBindViaGuard(b *testing.B)        { benchBind(b, true) }
func BenchmarkBindStraightToGldap(b *testing.B) { benchBind(b, false) }

func benchConnect(b *testing.B, viaGuard bool) {
	h := startHarness(b, Config{MaxConnections: 1 << 20, MaxConnectionsPerIP: 1 << 20}, nil)
	addr := h.backendAddr
	if viaGuard {
		addr = h.addr
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l, err := ldap.DialURL("ldap://" + addr)
		if err != nil {
			b.Fatal(err)
		}
		if viaGuard {
			err = l.Bind("jdoe", "pw")
		} else {
			token, _ := h.g.hellos.issue(kindHello, &Session{id: 1})
			err = l.Bind(helloPrefix+token, h.g.secret)
		}
		if err != nil {
			b.Fatal(err)
		}
		_ = l.Close()
	}
}

func BenchmarkConnectAndBindViaGuard(b *testing.B)        { benchConnect(b, true) }
func BenchmarkConnectAndBindStraightToGldap(b *testing.B) { benchConnect(b, false) }

// BenchmarkFrameAndClassify is the guard's own work per client message.
func BenchmarkFrameAndClassify(b *testing.B) {
	msg := envelope(7, searchOp(b, "OU=Users,DC=example,DC=test", "(&(objectClass=user)(sAMAccountName=jdoe))"))
	stream := bytes.Repeat(msg, 64)
	r := bytes.NewReader(stream)
	br := bufio.NewReaderSize(r, clientBufSize)
	var scratch []byte
	known := []string{OIDPagedResults}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if br.Buffered() == 0 {
			r.Reset(stream)
			br.Reset(r)
		}
		m, peeked, err := readMessage(br, 128<<10, &scratch)
		if err != nil {
			b.Fatal(err)
		}
		req, err := parseRequest(m, known)
		if err != nil || classify(&req).kind != actRelay {
			b.Fatal(err)
		}
		if peeked {
			_, _ = br.Discard(len(m))
		}
	}
}
