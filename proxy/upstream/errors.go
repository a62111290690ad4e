package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Errors returned by the Cluster. Every infrastructure failure wraps exactly one of
// ErrNoHealthyUpstream, ErrBusy and ErrUnavailable; an answer from a DC (49 and
// every other LDAP result code except 51, 52 and 80) comes back as the *ldap.Error
// go-ldap made of it, and an error that wraps one of these sentinels never holds an
// *ldap.Error, so errors.As(err, &ldapErr) is true only for a DC's answer (and for
// go-ldap's ldap.ErrSizeLimitExceeded when a search sets EnforceSizeLimit: the DC
// answered with more entries than asked for).
var (
	// ErrNoHealthyUpstream means no DC could be tried: every DC's breaker is open
	// or the DC is drained. Nothing was sent and nothing was dialled; the listener
	// answers 52 unavailable at once.
	ErrNoHealthyUpstream = errors.New("no healthy upstream")
	// ErrBusy means no pooled connection of the preferred DC became free within
	// upstream.pool.wait_timeout (or before the caller's context ended). Nothing was
	// sent; the listener answers 51 busy.
	ErrBusy = errors.New("upstream busy")
	// ErrUnavailable wraps transport failures (dial, TLS, a connection cut),
	// timeouts and the results busy (51), unavailable (52) and other (80) from a
	// DC; the listener answers 52 unavailable.
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrServiceBind means a DC refused the service account's bind (wrong
	// upstream.bind_password or upstream.bind_dn, account disabled or expired). It
	// is a configuration error, not a fault of the DC; it always comes wrapped
	// together with ErrUnavailable.
	ErrServiceBind = errors.New("service account bind refused")
	// ErrEmptyPassword is returned by Bind for an empty password, which is never
	// sent upstream: AD answers such an "unauthenticated bind" with success.
	ErrEmptyPassword = errors.New("empty password")
	// ErrUnknownServer is returned by SetDrained and SearchPagedAt for a URL that
	// is not one of upstream.servers.
	ErrUnknownServer = errors.New("unknown upstream server")
	// ErrClosed is returned (wrapped with ErrUnavailable) once Close was called.
	ErrClosed = errors.New("upstream closed")
	// ErrStopped wraps the error of SearchPagesAt's page function, which ended
	// the search: the caller stopped reading, the DC did nothing wrong.
	ErrStopped = errors.New("search stopped by its reader")
)

// LDAP result codes that say the DC, not the request, is in trouble.
const (
	resultBusy        = ldap.LDAPResultBusy        // 51
	resultUnavailable = ldap.LDAPResultUnavailable // 52
	resultOther       = ldap.LDAPResultOther       // 80
)

// verdict is what an error from one operation on a DC means.
type verdict int

const (
	// answered: the DC processed the request and answered (success, 49, 32, 50…).
	answered verdict = iota
	// dcFault: the DC answered 51, 52 or 80: it is up but cannot serve.
	dcFault
	// transport: no answer: network error, TLS error, timeout, a cut or
	// malformed response.
	transport
)

// classify sorts the error of one LDAP operation. go-ldap reports its own
// client-side failures (network, timeout, malformed packet) as *ldap.Error with
// codes from 200 up (ldap.ErrorNetwork…); real result codes from a server are
// below 200.
func classify(err error) verdict {
	if err == nil {
		return answered
	}
	if errors.Is(err, ErrStopped) {
		return answered // the DC answered every page asked for
	}
	if errors.Is(err, ldap.ErrSizeLimitExceeded) {
		// go-ldap's client-side EnforceSizeLimit: the DC answered, with more
		// entries than asked for.
		return answered
	}
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode >= ldap.ErrorNetwork {
		return transport
	}
	switch le.ResultCode {
	case resultBusy, resultUnavailable, resultOther:
		return dcFault
	}
	return answered
}

// detach returns an error that describes err without exposing an *ldap.Error, so
// that an infrastructure failure can never be mistaken for a DC's answer by
// errors.As. The underlying network error stays in the chain where there is one.
func detach(err error) error {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return err
	}
	if le.ResultCode < ldap.ErrorNetwork {
		// A result code from the DC (51, 52, 80 or a refused service bind).
		return errors.New(le.Error())
	}
	if le.Err != nil && !errors.As(le.Err, new(*ldap.Error)) {
		return le.Err
	}
	return errors.New(le.Error())
}

// unavailable wraps err as an ErrUnavailable for the operation op on the DC url;
// when ctx has ended, the error wraps ctx.Err() too, whatever go-ldap made of
// the aborted connection.
func unavailable(ctx context.Context, op, url string, err error) error {
	if cerr := ended(ctx); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %s %s: %w: %w", ErrUnavailable, op, url, cerr, detach(err))
	}
	return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, op, url, detach(err))
}

// ended returns ctx.Err(), or context.DeadlineExceeded once ctx's deadline
// has passed even though ctx's own timer has not fired yet: an operation's
// timeout is what is left of ctx (see pconn.run), and go-ldap's timer for it
// can fire first. The failover loops and the errors use it, so that such an
// operation neither fails over with no time left nor comes out as go-ldap's
// "connection timed out" instead of the caller's deadline.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
