package adsim

// LDAP result codes the simulator answers with.
const (
	resultSuccess            = 0
	resultOperationsError    = 1
	resultProtocolError      = 2
	resultSizeLimitExceeded  = 4
	resultNoSuchObject       = 32
	resultInvalidDNSyntax    = 34
	resultInvalidCredentials = 49
	resultUnwillingToPerform = 53
)

// AD's "data" sub-codes of a failed simple bind.
const (
	codeNoSuchUser      = "525"
	codeBadPassword     = "52e"
	codePasswordExpired = "532"
	codeDisabled        = "533"
	codeAccountExpired  = "701"
	codeMustChange      = "773"
	codeLockedOut       = "775"
)

// BindDiagnostic is the diagnostic message Windows AD sends with a failed simple
// bind (result 49) whose sub-code is code, e.g. "52e".
func BindDiagnostic(code string) string {
	return "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data " + code + ", v4563"
}

// Diagnostic messages of other refusals, as Windows AD words them.
const (
	// DiagBindRequired answers a search that an anonymous connection may not make.
	DiagBindRequired = "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563"
	diagNoSuchObject = "0000208D: NameErr: DSID-0310021B, problem 2001 (NO_OBJECT), data 0, best match of:\n\t'" // + matched DN + "'\n"
	diagInvalidDN    = "00002081: NameErr: DSID-03100241, problem 2003 (BAD_ATT_SYNTAX), data 0, best match of:\n\t''\n"
	diagUnwilling    = "00002035: LdapErr: DSID-0C090FF5, comment: The simulator does not write; the gateway never needs to, data 0, v4563"
	diagBadCookie    = "00002024: LdapErr: DSID-0C090BB8, comment: Error processing control, data 0, v4563"
)
