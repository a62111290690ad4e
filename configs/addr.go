package configs

import "net"

// IsLoopbackAddr reports whether a listen address (host:port) is on loopback
// only: "localhost" or a loopback IP. An address that is not host:port, or a
// wildcard host, is not.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
