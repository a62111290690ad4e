package faultproxy

import (
	"fmt"
	"time"
)

// kind says which fault a Fault is.
type kind int

const (
	kindNone kind = iota
	kindLatency
	kindBlackhole
	kindReset
	kindCutAfter
	kindRefuse
)

// Fault is a behaviour of the Proxy, made by None, Latency, Blackhole, Reset,
// CutAfter or Refuse and applied with SetFault. The zero Fault is None.
type Fault struct {
	kind  kind
	delay time.Duration // Latency
	limit int64         // CutAfter
}

// None relays bytes unchanged in both directions.
func None() Fault { return Fault{} }

// Latency delays every chunk of bytes in each direction by d, counted from the
// moment the proxy read it, and keeps their order; every round trip therefore
// takes at least 2*d longer. The proxy keeps reading meanwhile, so throughput
// is not divided by the delay. Chunks already waiting when the fault changes
// follow the new fault at once. d <= 0 is None.
func Latency(d time.Duration) Fault {
	if d <= 0 {
		return None()
	}
	return Fault{kind: kindLatency, delay: d}
}

// Blackhole makes the target look hung: new connections are accepted (the
// TCP handshake completes) and existing ones stay open, but no byte is
// forwarded in either direction and the proxy stops reading. Nothing is
// discarded: when the fault changes, whatever was held is delivered, as after
// a healed network partition.
func Blackhole() Fault { return Fault{kind: kindBlackhole} }

// Reset closes every relayed connection with a TCP RST on both sides, and
// each new one right after accepting it. The listener keeps accepting. A
// new client may see the reset already from connect ("connection reset by
// peer") rather than from its first read or write.
func Reset() Fault { return Fault{kind: kindReset} }

// CutAfter forwards at most n bytes from the target to the client on each
// connection, then resets both sides. The count starts when the connection
// is accepted, or for an existing connection when the fault is set, so
// CutAfter(0) resets every connection at once. Bytes to the target are not
// counted. n < 0 is 0.
//
// The n bytes are written before the reset and a client reads them before
// it sees the error, as long as its receive buffer has room for them: bytes
// still queued in the proxy's socket go with the reset.
func CutAfter(n int64) Fault { return Fault{kind: kindCutAfter, limit: max(n, 0)} }

// Refuse closes the listening socket, so connects fail with "connection
// refused", and resets every relayed connection. Setting any other fault
// opens the listener again on the same address.
func Refuse() Fault { return Fault{kind: kindRefuse} }

// String describes f, e.g. "latency 50ms" or "cut after 1000 bytes".
func (f Fault) String() string {
	switch f.kind {
	case kindLatency:
		return "latency " + f.delay.String()
	case kindBlackhole:
		return "blackhole"
	case kindReset:
		return "reset"
	case kindCutAfter:
		return fmt.Sprintf("cut after %d bytes", f.limit)
	case kindRefuse:
		return "refuse"
	default:
		return "none"
	}
}
