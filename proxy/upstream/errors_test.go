package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	answer := func(code uint16) error { return ldap.NewError(code, errors.New("diag")) }
	tests := []struct {
		name string
		err  error
		want verdict
	}{
		{"success is an answer", nil, answered},
		{"49 invalid credentials is an answer", answer(ldap.LDAPResultInvalidCredentials), answered},
		{"32 no such object is an answer", answer(ldap.LDAPResultNoSuchObject), answered},
		{"50 insufficient access is an answer", answer(ldap.LDAPResultInsufficientAccessRights), answered},
		{"53 unwilling to perform is an answer", answer(ldap.LDAPResultUnwillingToPerform), answered},
		{"4 size limit exceeded is an answer", answer(ldap.LDAPResultSizeLimitExceeded), answered},
		{"go-ldap's client-side size limit is an answer", ldap.ErrSizeLimitExceeded, answered},
		{"51 busy is a DC fault", answer(ldap.LDAPResultBusy), dcFault},
		{"52 unavailable is a DC fault", answer(ldap.LDAPResultUnavailable), dcFault},
		{"80 other is a DC fault", answer(ldap.LDAPResultOther), dcFault},
		{"a network error is transport", ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: connection timed out")), transport},
		{"a malformed packet is transport", ldap.NewError(ldap.ErrorMalformedPacket, errors.New("bad")), transport},
		{"a plain write error is transport", fmt.Errorf("unable to send request: %w", syscall.EPIPE), transport},
		{"a dial error is transport", fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), transport},
		{"a context error is transport", context.DeadlineExceeded, transport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestInfrastructureErrorsNeverLookLikeAnAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{"a DC's 52", ldap.NewError(ldap.LDAPResultUnavailable, errors.New("shutting down"))},
		{"a DC's 51", ldap.NewError(ldap.LDAPResultBusy, errors.New("busy"))},
		{"go-ldap's network error", ldap.NewError(ldap.ErrorNetwork, &net.OpError{Op: "read", Err: syscall.ECONNRESET})},
		{"go-ldap's timeout", ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: connection timed out"))},
		{"a wrapped network error", fmt.Errorf("service bind: %w", ldap.NewError(ldap.ErrorNetwork, errors.New("x")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := unavailable(context.Background(), "bind on", "ldaps://dc1", tt.err)
			var le *ldap.Error
			if errors.As(err, &le) {
				t.Fatalf("errors.As found *ldap.Error %v in %v", le, err)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%v does not wrap ErrUnavailable", err)
			}
		})
	}
	t.Run("the network error under go-ldap's stays in the chain", func(t *testing.T) {
		err := unavailable(context.Background(), "bind on", "ldaps://dc1", ldap.NewError(ldap.ErrorNetwork, &net.OpError{Op: "read", Err: syscall.ECONNRESET}))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%v lost ECONNRESET", err)
		}
	})
}

// passedDeadline is a context whose deadline has passed while its own timer
// has not fired yet (Err is still nil): the moment go-ldap's timer for the
// same instant can win.
type passedDeadline struct{ context.Context }

func (passedDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestAnOperationCutByTheCallersDeadlineSaysSo: go-ldap's "connection timed
// out" for an operation whose timeout was what was left of the caller's
// deadline is the deadline, even before the context's timer has fired.
func TestAnOperationCutByTheCallersDeadlineSaysSo(t *testing.T) {
	t.Parallel()
	timedOut := ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: connection timed out"))
	err := unavailable(passedDeadline{context.Background()}, "search on", "ldaps://dc1", timedOut)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("unavailable = %v, want ErrUnavailable and context.DeadlineExceeded", err)
	}
	if err := unavailable(context.Background(), "search on", "ldaps://dc1", timedOut); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("without a deadline: %v is context.DeadlineExceeded", err)
	}
}
