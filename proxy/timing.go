package proxy

import (
	"context"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Sleeper waits for d or until ctx ends, whichever comes first. The bind path
// uses it to hold back refusals (lockout.min_failure_latency); tests inject
// one that records instead of waiting.
type Sleeper func(ctx context.Context, d time.Duration)

// WithSleeper sets how the bind path waits before answering a refusal
// (default: a timer that honours the context; nil keeps it).
func WithSleeper(s Sleeper) AuthOption {
	return func(o *authOptions) {
		if s != nil {
			o.sleep = s
		}
	}
}

// sleepContext is the default Sleeper: a timer, cut short by ctx (a client
// that went away or a shutdown).
func sleepContext(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// holdFailure delays a 49 until at least minFailureLatency after start, so that
// every refusal takes about as long: an unknown user (one search), a wrong
// password (search or cached DN, then a bind) and a refusal from the negative
// cache or budget (no traffic) cannot be told apart by time as long as each
// takes less than the floor. A refusal that took longer is not delayed more;
// nor are successes and outages (52, 51), which say nothing about a password.
//
// The wait runs in the request's own goroutine (gldap serves each request in
// one) and blocks no other connection; the request keeps its slot of
// listen.max_in_flight meanwhile, so the floor times the failure rate is what
// refusals can hold of it (the per-client rate limit bounds that rate).
func (a *Auth) holdFailure(ctx context.Context, start time.Time, code int) {
	if a.minFailure <= 0 || code != ldap.LDAPResultInvalidCredentials {
		return
	}
	if rest := a.minFailure - a.now().Sub(start); rest > 0 {
		a.sleep(ctx, rest)
	}
}
