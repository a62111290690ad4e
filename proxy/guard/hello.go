package guard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
)

// The in-band hello.
//
// gldap v0.1.14 gives a handler no client address and no handle on the
// connection other than Request.ConnectionID(), and a handler can read bind
// messages but not the name or value of an extended request. So before the
// guard relays any client byte to gldap it sends, on the fresh backend
// connection, a simple bind whose name is reserved (helloPrefix + a one-time
// token) and whose password is a per-process random secret, with message ID
// helloMessageID; it waits for and consumes the response. The backend's bind
// handler passes such a bind to Guard.Hello, which checks the secret in
// constant time and redeems the token (single use), returning the Session the
// token was issued for: from then on that gldap connection ID is that client.
//
// A client cannot forge it: the guard never relays a client bind whose name is
// in the reserved space (it answers 49 itself), the secret never leaves the
// process except on the loopback connection to the verified backend, a token is
// redeemed at most once and only while its hello is in flight, and a gldap
// connection that did not start with a valid hello is mapped to nothing.
const (
	// reservedPrefix is the bind-name space reserved for the guard (compared
	// case-insensitively, after leading spaces).
	reservedPrefix = "cn=ldapgate-guard"
	helloPrefix    = reservedPrefix + "-hello,token="
	probePrefix    = reservedPrefix + "-probe,token="
	// helloMessageID is the message ID of the hello and the probe: the largest
	// one LDAP allows, so it is easy to tell apart in a trace.
	helloMessageID = 2147483647
)

// ErrHelloRefused means a bind in the reserved name space was not a valid hello:
// wrong secret, unknown or already redeemed token, or malformed name. The
// backend answers it with invalidCredentials and maps nothing.
var ErrHelloRefused = errors.New("guard hello refused")

// IsHelloName reports whether a bind name belongs to the space reserved for the
// guard's hello. The backend's bind handler must hand every such bind to
// Guard.Hello and never treat it as a user bind.
func IsHelloName(name string) bool {
	return hasFoldPrefix([]byte(name), reservedPrefix)
}

// Session is one client connection as the guard sees it. The backend gets it
// from Guard.Hello and records the bound identity on it for WhoAmI. It is safe
// for concurrent use.
type Session struct {
	id       uint64
	addr     string
	tls      atomic.Bool
	identity atomic.Pointer[string]
}

// ID is the guard's identifier of the connection (the conn_id in its logs).
func (s *Session) ID() uint64 { return s.id }

// RemoteAddr is the client's address (ip:port).
func (s *Session) RemoteAddr() string { return s.addr }

// TLS reports whether the connection is LDAPS or has been upgraded by StartTLS.
func (s *Session) TLS() bool { return s.tls.Load() }

// SetIdentity records the DN now bound on the connection ("" for anonymous);
// the guard answers WhoAmI with it.
func (s *Session) SetIdentity(dn string) { s.identity.Store(&dn) }

// Identity returns the DN recorded by SetIdentity, "" when anonymous.
func (s *Session) Identity() string {
	if p := s.identity.Load(); p != nil {
		return *p
	}
	return ""
}

// helloKind tells a hello token from a probe token.
type helloKind uint8

const (
	kindHello helloKind = iota + 1
	kindProbe
)

type ticket struct {
	kind helloKind
	sess *Session
}

// hellos issues and redeems one-time tokens.
type hellos struct {
	secret []byte // hex of 32 random bytes: it travels as an LDAP password
	mu     sync.Mutex
	issued map[string]ticket
}

func newHellos() (*hellos, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	secret := make([]byte, hex.EncodedLen(len(raw)))
	hex.Encode(secret, raw[:])
	return &hellos{secret: secret, issued: make(map[string]ticket)}, nil
}

// issue registers a fresh token for sess (nil for a probe).
func (h *hellos) issue(kind helloKind, sess *Session) (string, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(raw[:])
	h.mu.Lock()
	h.issued[token] = ticket{kind: kind, sess: sess}
	h.mu.Unlock()
	return token, nil
}

// take removes a token and returns what it was issued for. Every attempt burns
// the token, so a guessed token cannot be tried twice.
func (h *hellos) take(token string) (ticket, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.issued[token]
	delete(h.issued, token)
	return t, ok
}

// forget drops a token whose hello is over, redeemed or not.
func (h *hellos) forget(token string) {
	h.mu.Lock()
	delete(h.issued, token)
	h.mu.Unlock()
}

// proof is what the backend answers a probe with: it shows the backend runs in
// this process without the probe revealing the secret.
func (h *hellos) proof(token string) string {
	m := hmac.New(sha256.New, h.secret)
	m.Write([]byte("ldapgate probe:"))
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil))
}

// Hello checks a bind whose name IsHelloName, as received by the backend's bind
// handler, and redeems its token. For a hello it returns the Session the token
// was issued for; the handler maps its connection ID to it and answers success.
// For the guard's startup probe (Attach) it returns a nil Session and a proof
// the handler must send back as the diagnostic message of a successful bind
// response. Any other bind in the reserved space gets ErrHelloRefused: answer
// invalidCredentials and map nothing.
func (g *Guard) Hello(name, password string) (*Session, string, error) {
	switch {
	case strings.HasPrefix(name, helloPrefix):
		token := name[len(helloPrefix):]
		secretOK := subtle.ConstantTimeCompare([]byte(password), g.hellos.secret) == 1
		t, ok := g.hellos.take(token)
		if !secretOK || !ok || t.kind != kindHello {
			return nil, "", ErrHelloRefused
		}
		return t.sess, "", nil
	case strings.HasPrefix(name, probePrefix):
		token := name[len(probePrefix):]
		t, ok := g.hellos.take(token)
		if !ok || t.kind != kindProbe {
			return nil, "", ErrHelloRefused
		}
		return nil, g.hellos.proof(token), nil
	}
	return nil, "", ErrHelloRefused
}
