// Package proxy is the client-facing side of ldapgate: the LDAP listener (gldap
// behind the connection guard), login normalisation, the resolver that maps a
// login to the user's AD DN, and the bind path that forwards the bind upstream.
package proxy

import "context"

// Client describes the connection a request arrived on, as the connection guard
// saw it.
type Client struct {
	// Addr is the client's address (ip:port); behind a load balancer, the one
	// its PROXY protocol header named (listen.proxy_protocol).
	Addr string
	// ConnID is the listener's connection identifier.
	ConnID int
	// TLS is true when the connection is LDAPS or upgraded with StartTLS.
	TLS bool
}

// BindOutcome is the gateway's decision on one bind request.
type BindOutcome struct {
	// Code is the LDAP result code sent to the client.
	Code int
	// Diagnostic is the diagnostic message sent to the client; for every refused
	// bind it is the same fixed text.
	Diagnostic string
	// DN is the canonical identity now bound on the connection: the user's DN as
	// AD returned it, "" for an anonymous bind or a failure.
	DN string
}

// Authenticator decides bind requests. The listener calls it for every bind that
// is not the connection guard's own hello.
type Authenticator interface {
	Bind(ctx context.Context, c Client, name, password string) BindOutcome
}
