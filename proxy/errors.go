package proxy

import (
	"context"
	"errors"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// Errors of the bind path. Each one is a reason to refuse a bind; Classify
// turns them into the result the client gets.
var (
	// ErrInvalidLogin means the bind name is none of the accepted forms, or an
	// invalid one (see ParseLogin).
	ErrInvalidLogin = errors.New("invalid login")
	// ErrEmptyPassword means a name came with an empty or whitespace-only
	// password: an RFC 4513 unauthenticated bind, which AD would answer with
	// success. It never goes upstream.
	ErrEmptyPassword = errors.New("empty password")
	// ErrOutsideBase means the login's DN, or the DN AD returned for it, is not
	// inside the configured base DN.
	ErrOutsideBase = errors.New("dn outside the base")
	// ErrUserNotFound means no user entry matches the login.
	ErrUserNotFound = errors.New("user not found")
	// ErrAmbiguous means more than one user entry matches the login.
	ErrAmbiguous = errors.New("login matches more than one user")
	// ErrLookupFailed means the directory could not answer the search for the
	// user (an error result such as insufficientAccessRights on the service
	// account): the gateway cannot tell whether the user exists.
	ErrLookupFailed = errors.New("user lookup failed")
	// ErrNegativeCache means AD refused this account with this password within
	// lockout.negative_ttl: the attempt is answered here, not sent again.
	ErrNegativeCache = errors.New("same wrong password again")
	// ErrUserBudget means the account used up lockout.user_budget distinct
	// wrong passwords within lockout.user_window: every attempt, whatever the
	// password, is answered here until the window has passed.
	ErrUserBudget = errors.New("wrong-password budget of the account used up")
	// ErrRateLimited means the client address made more failed binds than
	// lockout.client_rate allows; its binds get 51 busy until the bucket refills.
	ErrRateLimited = errors.New("too many failed binds from this client")
	// ErrOfflineRefused means no DC could be reached and the password does not
	// match the account's offline credential.
	ErrOfflineRefused = errors.New("offline credential does not match")
	// ErrOfflineLimit means no DC could be reached and the account has used up
	// offline.max_failures wrong passwords in this outage: 52 until a DC answers.
	ErrOfflineLimit = errors.New("offline failures of the account used up")
)

// Reason names why a bind got its result, for the audit log and metrics.
type Reason string

// The reasons of Classify and Auth.Decide.
const (
	ReasonOK            Reason = "ok"              // AD accepted the bind
	ReasonAnonymous     Reason = "anonymous"       // empty name and password
	ReasonEmptyPassword Reason = "empty_password"  // ErrEmptyPassword
	ReasonInvalidLogin  Reason = "invalid_login"   // ErrInvalidLogin
	ReasonUnknownUser   Reason = "unknown_user"    // ErrUserNotFound
	ReasonAmbiguous     Reason = "ambiguous"       // ErrAmbiguous
	ReasonOutsideBase   Reason = "outside_base"    // ErrOutsideBase
	ReasonADRefused     Reason = "ad_refused"      // AD answered the bind with an error result
	ReasonUnavailable   Reason = "unavailable"     // no DC could answer (52)
	ReasonBusy          Reason = "busy"            // the gateway or the DC is shedding load (51)
	ReasonNegativeCache Reason = "negative_cache"  // ErrNegativeCache (49, no upstream traffic)
	ReasonUserBudget    Reason = "user_budget"     // ErrUserBudget (49, no upstream traffic)
	ReasonRateLimited   Reason = "rate_limited"    // ErrRateLimited (51, no upstream traffic)
	ReasonOffline       Reason = "offline"         // no DC reachable; the offline credential matched (0)
	ReasonOfflineFailed Reason = "offline_refused" // ErrOfflineRefused (49)
	ReasonOfflineLimit  Reason = "offline_limit"   // ErrOfflineLimit (52)
)

// Diagnostic texts sent to the client. Every refused bind gets the same text,
// whatever AD said, so a client cannot tell a wrong password from a locked,
// disabled or unknown account.
const (
	DiagInvalidCredentials = "invalid credentials"   // every 49
	DiagUnavailable        = "directory unavailable" // every 52
	DiagBusy               = "busy, try again later" // every 51
)

// Classify is the one mapping from an error of the bind path to the LDAP result
// code sent to the client and the reason logged. nil is success. Infrastructure
// failures are 52 unavailable or 51 busy, never 49: a client must not take an
// outage for a wrong password, and it must never take an outage for success.
// Anything it does not recognise is 52.
func Classify(err error) (code int, reason Reason) {
	var ldapErr *ldap.Error
	isLDAP := errors.As(err, &ldapErr)
	switch {
	case err == nil:
		return ldap.LDAPResultSuccess, ReasonOK
	case errors.Is(err, ErrEmptyPassword), errors.Is(err, upstream.ErrEmptyPassword):
		return ldap.LDAPResultInvalidCredentials, ReasonEmptyPassword
	case errors.Is(err, ErrInvalidLogin):
		return ldap.LDAPResultInvalidCredentials, ReasonInvalidLogin
	case errors.Is(err, ErrOutsideBase):
		return ldap.LDAPResultInvalidCredentials, ReasonOutsideBase
	case errors.Is(err, ErrUserNotFound):
		return ldap.LDAPResultInvalidCredentials, ReasonUnknownUser
	case errors.Is(err, ErrAmbiguous):
		return ldap.LDAPResultInvalidCredentials, ReasonAmbiguous
	case errors.Is(err, ErrNegativeCache):
		return ldap.LDAPResultInvalidCredentials, ReasonNegativeCache
	case errors.Is(err, ErrUserBudget):
		return ldap.LDAPResultInvalidCredentials, ReasonUserBudget
	case errors.Is(err, ErrOfflineRefused):
		return ldap.LDAPResultInvalidCredentials, ReasonOfflineFailed
	case errors.Is(err, ErrRateLimited):
		return ldap.LDAPResultBusy, ReasonRateLimited
	case errors.Is(err, ErrOfflineLimit):
		return ldap.LDAPResultUnavailable, ReasonOfflineLimit
	case errors.Is(err, upstream.ErrBusy),
		ldap.IsErrorAnyOf(err, ldap.LDAPResultBusy):
		return ldap.LDAPResultBusy, ReasonBusy
	case errors.Is(err, upstream.ErrNoHealthyUpstream),
		errors.Is(err, upstream.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled),
		errors.Is(err, ErrLookupFailed),
		ldap.IsErrorAnyOf(err, ldap.LDAPResultUnavailable, ldap.LDAPResultTimeLimitExceeded),
		// go-ldap's own codes (network, decoding, …) start at 200: the request
		// may never have reached AD.
		isLDAP && ldapErr.ResultCode >= ldap.ErrorNetwork:
		return ldap.LDAPResultUnavailable, ReasonUnavailable
	case isLDAP:
		// Any other answer from AD to a bind (49 with any sub-code,
		// unwillingToPerform, …) is a refusal.
		return ldap.LDAPResultInvalidCredentials, ReasonADRefused
	default:
		return ldap.LDAPResultUnavailable, ReasonUnavailable
	}
}

// diagnosticFor returns the fixed diagnostic text for a result code.
func diagnosticFor(code int) string {
	switch code {
	case ldap.LDAPResultSuccess:
		return ""
	case ldap.LDAPResultBusy:
		return DiagBusy
	case ldap.LDAPResultUnavailable:
		return DiagUnavailable
	default:
		return DiagInvalidCredentials
	}
}

// adCode returns the AD sub-code of an *ldap.Error in err's chain, or "".
func adCode(err error) string {
	var ldapErr *ldap.Error
	if !errors.As(err, &ldapErr) || ldapErr.Err == nil {
		return ""
	}
	return ParseADCode(ldapErr.Err.Error())
}

// maxADCodeLen bounds the sub-code: AD's are three hex digits, Win32 error
// codes at most eight.
const maxADCodeLen = 8

// ParseADCode extracts the sub-code from an AD bind diagnostic such as
// "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error,
// data 52e, v4563": the hex digits after "data ", lowercased ("52e"). The
// DSID and the v-suffix differ between Windows versions and Samba and are
// ignored. It returns "" when there is no such code.
func ParseADCode(diagnostic string) string {
	const marker = "data "
	rest := diagnostic
	for {
		i := strings.Index(rest, marker)
		if i < 0 {
			return ""
		}
		// "data" must be a word of its own, not the end of "metadata ".
		if i > 0 && isAlnum(rest[i-1]) {
			rest = rest[i+len(marker):]
			continue
		}
		rest = rest[i+len(marker):]
		n := 0
		for n < len(rest) && isHex(rest[n]) {
			n++
		}
		if n > 0 && n <= maxADCodeLen && (n == len(rest) || !isAlnum(rest[n])) {
			return strings.ToLower(rest[:n])
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
}
