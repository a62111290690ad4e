//go:build unix

package upstream

import (
	"errors"
	"net"
	"syscall"
)

// peerGone reports whether the kernel already knows that the DC closed or reset
// the connection: a non-blocking MSG_PEEK sees end of file or an error. It closes
// the gap between a DC closing an idle connection and go-ldap's reader noticing,
// so that a stale connection is found at checkout, before a request is written.
// It does not consume anything (bytes waiting, such as a TLS session ticket, stay
// for go-ldap's reader) and uses Control, not Read, so it does not wait for the
// reader's lock.
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
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil && n == 0:
			gone = true // orderly close (FIN)
		case err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR):
			gone = true // reset or another socket error
		}
	})
	return gone || cerr != nil
}
