package adsim

import (
	"time"
)

// bindResult is what a simple bind comes to.
type bindResult struct {
	code int    // LDAP result code
	diag string // diagnostic message
	// user is the connection's identity after the bind: nil is anonymous.
	user *account
}

// bindDiagnostics precomputes the messages so that a failed bind allocates nothing.
type bindDiagnostics map[string]string

func newBindDiagnostics() bindDiagnostics {
	m := make(bindDiagnostics)
	for _, c := range []string{codeNoSuchUser, codeBadPassword, codePasswordExpired, codeDisabled, codeAccountExpired, codeMustChange, codeLockedOut} {
		m[c] = BindDiagnostic(c)
	}
	return m
}

func (m bindDiagnostics) fail(code string) bindResult {
	return bindResult{code: resultInvalidCredentials, diag: m[code]}
}

// authenticate evaluates a simple bind of name with password the way Windows AD
// does. a is the account name resolved to (nil when none). An empty password is
// an unauthenticated bind (RFC 4513 section 5.1.2): AD answers success and the
// connection stays anonymous, whatever the name.
func (d *Directory) authenticate(a *account, name, password string, diags bindDiagnostics) bindResult {
	switch {
	case password == "":
		return bindResult{code: resultSuccess}
	case name == "":
		// A password without a name: AD (like Samba) checks it against no account.
		return diags.fail(codeBadPassword)
	case a == nil:
		return diags.fail(codeNoSuchUser)
	}
	now := d.now()
	ft := fileTime(now)
	d.mu.RLock()
	e, locked := a.slot.e, d.locked(a, ft)
	deleted := a.slot.deleted
	good := password == a.password
	resets := a.badPwdCount != 0 || a.lockoutTime != 0
	d.mu.RUnlock()
	switch {
	case deleted:
		return diags.fail(codeNoSuchUser)
	case locked:
		// AD says 775 whatever the password, and counts nothing more.
		return diags.fail(codeLockedOut)
	case !good:
		d.badPassword(a, now)
		return diags.fail(codeBadPassword)
	}
	if resets {
		d.goodPassword(a, now)
	}
	uac := e.int64Value("userAccountControl")
	pwdLastSet := e.int64Value("pwdLastSet")
	expires := e.int64Value("accountExpires")
	switch {
	case uac&UACDisabled != 0:
		return diags.fail(codeDisabled)
	case expires != 0 && expires != neverExpires && expires <= ft:
		return diags.fail(codeAccountExpired)
	case pwdLastSet == 0:
		return diags.fail(codeMustChange)
	case uac&UACDontExpirePassword == 0 && now.Sub(fromFileTime(pwdLastSet)) > d.maxPwdAge:
		return diags.fail(codePasswordExpired)
	}
	return bindResult{code: resultSuccess, user: a}
}

// locked reports whether a is locked out at FILETIME now. Callers hold d.mu.
func (d *Directory) locked(a *account, now int64) bool {
	if a.lockoutTime == 0 {
		return false
	}
	return a.lockedForever || d.lockout.Duration == 0 || now < a.lockoutTime+int64(d.lockout.Duration/100)
}

// badPassword counts a bad password against a and locks it out at the threshold.
func (d *Directory) badPassword(a *account, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a.slot.deleted {
		return
	}
	ft := fileTime(now)
	if d.locked(a, ft) {
		return // another bind locked it meanwhile
	}
	if a.lockoutTime != 0 {
		// The lockout has expired: AD starts counting afresh.
		a.lockoutTime, a.badPwdCount = 0, 0
	}
	if a.badPasswordTime != 0 && ft-a.badPasswordTime > int64(d.lockout.ObservationWindow/100) {
		a.badPwdCount = 0
	}
	a.badPwdCount++
	a.badPasswordTime = ft
	locks := d.lockout.Threshold > 0 && a.badPwdCount >= int64(d.lockout.Threshold)
	if locks {
		a.lockoutTime = ft
	}
	d.saveLockout(a.slot, now, locks)
}

// goodPassword resets the bad password count (and an expired lockout) after a
// bind with the right password, as AD does at a successful logon.
func (d *Directory) goodPassword(a *account, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ft := fileTime(now)
	if a.slot.deleted || d.locked(a, ft) || (a.badPwdCount == 0 && a.lockoutTime == 0) {
		return
	}
	replicated := a.lockoutTime != 0
	a.badPwdCount, a.lockoutTime = 0, 0
	d.saveLockout(a.slot, now, replicated)
}
