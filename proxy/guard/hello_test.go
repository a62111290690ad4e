package guard

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func newTestGuard(t *testing.T, cfg Config) *Guard {
	t.Helper()
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 100
	}
	if cfg.MaxConnectionsPerIP == 0 {
		cfg.MaxConnectionsPerIP = 100
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 128 << 10
	}
	g, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestHelloRedeemsATokenOnce(t *testing.T) {
	g := newTestGuard(t, Config{})
	sess := &Session{id: 7, addr: "192.0.2.1:4000"}
	token, err := g.hellos.issue(kindHello, sess)
	if err != nil {
		t.Fatal(err)
	}
	got, proof, err := g.Hello(helloPrefix+token, g.secret)
	if err != nil || got != sess || proof != "" {
		t.Fatalf("first hello: session %v proof %q err %v", got, proof, err)
	}
	if got, _, err := g.Hello(helloPrefix+token, g.secret); !errors.Is(err, ErrHelloRefused) || got != nil {
		t.Fatalf("replayed hello: session %v err %v, want refused", got, err)
	}
}

func TestHelloWithAWrongSecretIsRefusedAndBurnsTheToken(t *testing.T) {
	g := newTestGuard(t, Config{})
	token, _ := g.hellos.issue(kindHello, &Session{id: 1})
	wrong := strings.Repeat("0", len(g.secret))
	if s, _, err := g.Hello(helloPrefix+token, wrong); !errors.Is(err, ErrHelloRefused) || s != nil {
		t.Fatalf("wrong secret: session %v err %v", s, err)
	}
	if s, _, err := g.Hello(helloPrefix+token, g.secret); !errors.Is(err, ErrHelloRefused) || s != nil {
		t.Fatalf("the token survived a failed attempt: session %v err %v", s, err)
	}
}

func TestHelloRefusesGuessesAndOtherNames(t *testing.T) {
	g := newTestGuard(t, Config{})
	other := newTestGuard(t, Config{})
	token, _ := g.hellos.issue(kindHello, &Session{id: 1})
	tests := []struct{ name, user, password string }{
		{"a guessed token with the right secret", helloPrefix + "00112233445566778899aabbccddeeff", g.secret},
		{"the right token with another process's secret", helloPrefix + token, other.secret},
		{"an empty password", helloPrefix + token, ""},
		{"the reserved space in another case", strings.ToUpper(helloPrefix) + token, g.secret},
		{"a probe name for a hello token", probePrefix + "ffff", ""},
		{"just the reserved prefix", reservedPrefix, g.secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, _, err := g.Hello(tt.user, tt.password); !errors.Is(err, ErrHelloRefused) || s != nil {
				t.Fatalf("session %v err %v, want refused", s, err)
			}
		})
	}
}

func TestProbeProofNeedsTheSecret(t *testing.T) {
	g := newTestGuard(t, Config{})
	other := newTestGuard(t, Config{})
	token, _ := g.hellos.issue(kindProbe, nil)
	s, proof, err := g.Hello(probePrefix+token, "")
	if err != nil || s != nil || proof == "" {
		t.Fatalf("probe: session %v proof %q err %v", s, proof, err)
	}
	if proof == other.hellos.proof(token) {
		t.Fatal("another secret gives the same proof")
	}
	if _, _, err := g.Hello(probePrefix+token, ""); !errors.Is(err, ErrHelloRefused) {
		t.Fatalf("a probe token answered twice (an oracle): err %v", err)
	}
}

func TestIsHelloName(t *testing.T) {
	for name, want := range map[string]bool{
		helloPrefix + "x":             true,
		" cn=LDAPGATE-GUARD-anything": true,
		"cn=ldapgate-guar":            false,
		"cn=jdoe,dc=example,dc=test":  false,
		"":                            false,
	} {
		if got := IsHelloName(name); got != want {
			t.Errorf("IsHelloName(%q) = %v, want %v", name, got, want)
		}
	}
}
