package upstream

import (
	"context"
	"net"
	"time"
)

// Option changes how New builds a Cluster.
type Option func(*options)

// DialFunc opens the TCP connection to a DC's address ("host:port"); the Cluster
// does the TLS handshake on top of it. ctx carries upstream.dial_timeout.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

type options struct {
	now  func() time.Time
	dial DialFunc
}

// WithClock replaces time.Now for the decisions that depend on the time of day:
// a pooled connection's max_lifetime and idle_timeout, and how long a refused
// service bind is remembered. Tests use it to age connections without sleeping.
// Latencies are always measured with the real monotonic clock.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithDialer replaces the TCP dialer (by default a net.Dialer with
// upstream.dial_timeout and a 30 s keepalive). TLS is still done by the Cluster
// with the configured CA and server name; use it to go through a fault proxy or
// to count connects.
func WithDialer(dial DialFunc) Option {
	return func(o *options) {
		if dial != nil {
			o.dial = dial
		}
	}
}
