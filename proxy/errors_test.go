package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

func TestParseADCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		diagnostic string
		want       string
	}{
		{"Windows Server 2016 and later", "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563", "52e"},
		{"Windows Server 2012", "80090308: LdapErr: DSID-0C0903C5, comment: AcceptSecurityContext error, data 775, v2580", "775"},
		{"Windows Server 2003", "80090308: LdapErr: DSID-0C090334, comment: AcceptSecurityContext error, data 525, v893", "525"},
		{"Windows Server 2008", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 533, v1db1", "533"},
		{"Samba", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1", "52e"},
		{"Samba with a NUL after the version", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 773, v1db1\x00", "773"},
		{"a code at the end of the text", "AcceptSecurityContext error, data 701", "701"},
		{"a code followed by a space", "error, data 532 v4563", "532"},
		{"an upper-case code is lowered", "error, data 52E, v4563", "52e"},
		{"an eight-digit code", "error, data 8009030c, v4563", "8009030c"},
		{"data 0 from a non-credential error", "00002028: LdapErr: DSID-0C090259, comment: The server requires binds to turn on integrity checking if SSL\\TLS are not already active on the connection, data 0, v4563", "0"},
		{"no data part", "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, v4563", ""},
		{"an empty diagnostic", "", ""},
		{"a plain message", "Invalid credentials", ""},
		{"data without a code", "error, data , v4563", ""},
		{"data with a non-hex code", "error, data xyz, v4563", ""},
		{"a code glued to letters is not a code", "error, data 52ez, v4563", ""},
		{"a code of nine digits is not a code", "error, data 123456789, v4563", ""},
		{"metadata is not data", "metadata 52e", ""},
		{"the first well-formed data code wins", "metadata 1, data 52e, data 775", "52e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ParseADCode(tt.diagnostic); got != tt.want {
				t.Errorf("ParseADCode(%q) = %q, want %q", tt.diagnostic, got, tt.want)
			}
		})
	}
}

func FuzzParseADCode(f *testing.F) {
	for _, s := range []string{
		"80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563",
		"data 775, v2580", "data 525, v893", "data ", "data", "metadata 52e", "data 52e", "data 123456789",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, diagnostic string) {
		code := ParseADCode(diagnostic)
		if code == "" {
			return
		}
		if len(code) > maxADCodeLen || strings.Trim(code, "0123456789abcdef") != "" {
			t.Fatalf("ParseADCode(%q) = %q, not a short lower-case hex code", diagnostic, code)
		}
		if !strings.Contains(strings.ToLower(diagnostic), "data "+code) {
			t.Fatalf("ParseADCode(%q) = %q, which does not follow %q", diagnostic, code, "data ")
		}
	})
}

func TestClassify(t *testing.T) {
	t.Parallel()
	adRefusal := func(code uint16, diag string) error { return ldap.NewError(code, errors.New(diag)) }
	tests := []struct {
		name       string
		err        error
		wantCode   int
		wantReason Reason
	}{
		{"no error is success", nil, 0, ReasonOK},
		{"an empty password is 49", ErrEmptyPassword, 49, ReasonEmptyPassword},
		{"upstream's refusal of an empty password is 49", upstream.ErrEmptyPassword, 49, ReasonEmptyPassword},
		{"an invalid login is 49", fmt.Errorf("%w: star", ErrInvalidLogin), 49, ReasonInvalidLogin},
		{"a DN outside the base is 49", fmt.Errorf("resolve: %w", ErrOutsideBase), 49, ReasonOutsideBase},
		{"an unknown user is 49", fmt.Errorf("search user: %w", ErrUserNotFound), 49, ReasonUnknownUser},
		{"an ambiguous login is 49", fmt.Errorf("search user: %w", ErrAmbiguous), 49, ReasonAmbiguous},
		{"AD's 49 is 49", fmt.Errorf("upstream bind: %w", adRefusal(49, adsim.BindDiagnostic("52e"))), 49, ReasonADRefused},
		{"AD's 49 for a locked account is 49", adRefusal(49, adsim.BindDiagnostic("775")), 49, ReasonADRefused},
		{"AD's unwillingToPerform to a bind is 49", adRefusal(ldap.LDAPResultUnwillingToPerform, "unwilling"), 49, ReasonADRefused},
		{"AD's noSuchObject to a bind is 49", adRefusal(ldap.LDAPResultNoSuchObject, "no object"), 49, ReasonADRefused},
		{"AD's busy is 51", adRefusal(ldap.LDAPResultBusy, "busy"), 51, ReasonBusy},
		{"AD's unavailable is 52", adRefusal(ldap.LDAPResultUnavailable, "unavailable"), 52, ReasonUnavailable},
		{"AD's time limit is 52", adRefusal(ldap.LDAPResultTimeLimitExceeded, "time limit"), 52, ReasonUnavailable},
		{"a go-ldap network error is 52", ldap.NewError(ldap.ErrorNetwork, errors.New("connection closed")), 52, ReasonUnavailable},
		{"upstream busy is 51", fmt.Errorf("bind: %w", upstream.ErrBusy), 51, ReasonBusy},
		{"no healthy upstream is 52", fmt.Errorf("bind: %w", upstream.ErrNoHealthyUpstream), 52, ReasonUnavailable},
		{"upstream unavailable is 52", fmt.Errorf("%w: dial: refused", upstream.ErrUnavailable), 52, ReasonUnavailable},
		{"a refused service account is 52", fmt.Errorf("%w: %w", upstream.ErrUnavailable, upstream.ErrServiceBind), 52, ReasonUnavailable},
		{"a deadline is 52", fmt.Errorf("bind: %w", context.DeadlineExceeded), 52, ReasonUnavailable},
		{"a cancellation is 52", context.Canceled, 52, ReasonUnavailable},
		{"a failed lookup is 52 even with AD's answer inside", fmt.Errorf("%w: %w", ErrLookupFailed, adRefusal(50, "no rights")), 52, ReasonUnavailable},
		{"a failed lookup with AD's busy inside is 51", fmt.Errorf("%w: %w", ErrLookupFailed, adRefusal(51, "busy")), 51, ReasonBusy},
		{"an error nobody knows is 52", errors.New("surprise"), 52, ReasonUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, reason := Classify(tt.err)
			if code != tt.wantCode || reason != tt.wantReason {
				t.Errorf("Classify(%v) = %d, %s; want %d, %s", tt.err, code, reason, tt.wantCode, tt.wantReason)
			}
		})
	}
}
