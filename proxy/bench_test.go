package proxy

import (
	"context"
	"io"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// Benchmarks of the bind path's hot spots (go test -bench . -benchmem ./proxy):
// what the gateway spends per bind besides the upstream round trip.

// benchLogins are the four forms a PBX sends.
var benchLogins = []struct{ name, login string }{
	{"sam", "jdoe"},
	{"upn", "jdoe@aadds.example.test"},
	{"downlevel", `AADDS\jdoe`},
	{"dn", testbed.JDoe.DN()},
}

func BenchmarkParseLogin(b *testing.B) {
	for _, l := range benchLogins {
		b.Run(l.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseLogin(l.login, testbed.NetBIOS); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkResolveCacheHit(b *testing.B) {
	cfg := authTestConfig()
	r, err := NewResolver(cfg.Upstream, cfg.Cache.DN, newFakeDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, l := range benchLogins {
		b.Run(l.name, func(b *testing.B) {
			login, err := ParseLogin(l.login, testbed.NetBIOS)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.Resolve(ctx, login); err != nil { // warms the cache
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if res, err := r.Resolve(ctx, login); err != nil || res.From != SourceCache {
					b.Fatalf("%+v, %v", res, err)
				}
			}
		})
	}
}

func BenchmarkReencodeFilter(b *testing.B) {
	for _, f := range []struct{ name, filter string }{
		{"pascom-lookup", "(sAMAccountName=jdoe)"},
		{"pascom-import", "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2))(memberOf=CN=PBX-Users,OU=AADDC Users,DC=aadds,DC=example,DC=test))"},
		{"substrings", "(|(displayName=*doe*)(mail=j*@aadds.example.test))"},
	} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reencodeFilter(f.filter); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchBinder answers every bind with success at once, so the benchmark
// measures the gateway's own work; searches (cache misses) go to the fake
// directory.
type benchBinder struct{ *fakeDir }

func (benchBinder) Bind(context.Context, string, string) (upstream.BindResult, error) {
	return upstream.BindResult{DC: "ldaps://dc1.aadds.example.test:636"}, nil
}

// BenchmarkDecideCacheHit is the whole bind path for a login whose DN is
// cached: parse, rate limit, resolve, lockout guard, the (instant) upstream
// bind, and the audit line, written as JSON to a discarded log like serve's.
func BenchmarkDecideCacheHit(b *testing.B) {
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	for _, l := range benchLogins {
		b.Run(l.name, func(b *testing.B) {
			a, err := NewAuth(authTestConfig(), benchBinder{newFakeDir()}, log)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = a.Close() })
			ctx := context.Background()
			c := Client{Addr: "192.0.2.10:40000", ConnID: 7}
			if d := a.Decide(ctx, c, l.login, testbed.JDoe.Password); d.Code != 0 {
				b.Fatalf("warm-up: %+v", d)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := a.Decide(ctx, c, l.login, testbed.JDoe.Password); d.Code != 0 || !d.CacheHit {
					b.Fatalf("%+v", d)
				}
			}
		})
	}
}
