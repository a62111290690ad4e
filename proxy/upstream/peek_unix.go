//go:build unix

package upstream

import (
	"errors"
	"net"
	"syscall"
)

// peerGone reports whether an idle connection must not be used: the kernel
// already holds its end (FIN or RST) or unread bytes from the DC. It closes the
// gap between a DC closing an idle connection and go-ldap's reader noticing, so
// that a stale connection is found at checkout, before a request is written.
//
// On an idle connection nothing is expected from the DC, and go-ldap's reader
// consumes whatever arrives at once; bytes still waiting are therefore the DC's
// last words (AD's Notice of Disconnection, a TLS close_notify, which TLS 1.3
// encrypts like any other record), or rarely a late TLS session ticket, and
// discarding that connection costs one new dial. The peek is non-blocking,
// consumes nothing and runs through Control, not Read, so it does not wait for
// the reader's lock.
func peerGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	cerr := rc.Control(func(fd uintptr) {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// err == nil: end of file (n == 0) or bytes waiting (n == 1).
		gone = err == nil ||
			!errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR)
	})
	return gone || cerr != nil
}
