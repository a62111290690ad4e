package adsim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// userAccountControl bits the simulator acts on.
const (
	// UACDisabled is ACCOUNTDISABLE: binds with the right password get 533.
	UACDisabled = 0x2
	// UACNormalAccount is NORMAL_ACCOUNT.
	UACNormalAccount = 0x200
	// UACDontExpirePassword is DONT_EXPIRE_PASSWD: the password never expires (no 532).
	UACDontExpirePassword = 0x10000
)

// The fixed schema values of AD's user and group objects.
const (
	personCategory      = "CN=Person," + SchemaDN
	groupCategory       = "CN=Group," + SchemaDN
	userAccountType     = "805306368"   // SAM_NORMAL_USER_ACCOUNT
	groupAccountType    = "268435456"   // SAM_GROUP_OBJECT
	globalSecurityGroup = "-2147483646" // groupType 0x80000002
)

// User describes a user account to create with AddUser.
type User struct {
	// Login is the sAMAccountName (required).
	Login string
	// CN is the RDN value, unescaped. Default Login.
	CN string
	// Password is the account's password.
	Password string
	// Parent is the DN of the container. Default testbed.UsersDN.
	Parent string
	// UPN is the userPrincipalName. Default Login@testbed.Realm.
	UPN string
	// GivenName, Surname, DisplayName (default CN), Mail, TelephoneNumber,
	// Mobile, IPPhone and Description become the attributes of the same names
	// (sn for Surname); empty ones are left out.
	GivenName, Surname, DisplayName, Mail, TelephoneNumber, Mobile, IPPhone, Description string
	// UserAccountControl defaults to UACNormalAccount (512).
	UserAccountControl int
	// MustChangePassword sets pwdLastSet to 0: binds with the right password get 773.
	MustChangePassword bool
	// PasswordLastSet is when the password was set. Default now.
	PasswordLastSet time.Time
	// AccountExpires is when the account expires (binds then get 701). Default never.
	AccountExpires time.Time
	// Groups are the DNs of the groups the user is a direct member of.
	Groups []string
}

// AddUser creates a user account and returns its DN. The new object gets
// uSNCreated = uSNChanged = the new highestCommittedUSN; each group it joins gets
// a new uSNChanged too.
func (d *Directory) AddUser(u User) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.addUser(u, d.now())
	if err != nil {
		return "", fmt.Errorf("add user %q: %w", u.Login, err)
	}
	return s.e.dn, nil
}

func (d *Directory) addUser(u User, now time.Time) (*slot, error) {
	if u.Login == "" {
		return nil, fmt.Errorf("no login")
	}
	if d.bySAM[strings.ToLower(u.Login)] != nil {
		return nil, fmt.Errorf("login %q: %w", u.Login, ErrExists)
	}
	cn := defaultString(u.CN, u.Login)
	dn := "CN=" + ldap.EscapeDN(cn) + "," + defaultString(u.Parent, testbed.UsersDN)
	uac := u.UserAccountControl
	if uac == 0 {
		uac = UACNormalAccount
	}
	pwdLastSet := int64(0)
	if !u.MustChangePassword {
		if u.PasswordLastSet.IsZero() {
			u.PasswordLastSet = now
		}
		pwdLastSet = fileTime(u.PasswordLastSet)
	}
	expires := int64(neverExpires)
	if !u.AccountExpires.IsZero() {
		expires = fileTime(u.AccountExpires)
	}
	usn, _ := d.nextUSN(now)
	attrs := []attribute{
		attr("objectClass", "top", "person", "organizationalPerson", "user"),
		attr("cn", cn),
	}
	attrs = appendIf(attrs, "sn", u.Surname)
	attrs = appendIf(attrs, "givenName", u.GivenName)
	attrs = append(attrs,
		attr("distinguishedName", dn),
		attr("instanceType", "4"),
		attr("whenCreated", generalizedTime(now)),
		attr("whenChanged", generalizedTime(now)),
		attr("displayName", defaultString(u.DisplayName, cn)),
		attr("uSNCreated", itoa(usn)),
		attr("uSNChanged", itoa(usn)),
		attr("name", cn),
		attr("objectGUID", guid(u.Login, itoa(usn))),
		attr("userAccountControl", itoa(int64(uac))),
		attr("badPwdCount", "0"),
		attr("badPasswordTime", "0"),
		attr("lockoutTime", "0"),
		attr("pwdLastSet", itoa(pwdLastSet)),
		attr("primaryGroupID", "513"),
		attr("accountExpires", itoa(expires)),
		attr("sAMAccountName", u.Login),
		attr("sAMAccountType", userAccountType),
		attr("userPrincipalName", defaultString(u.UPN, u.Login+"@"+testbed.Realm)),
		attr("objectCategory", personCategory),
	)
	attrs = appendIf(attrs, "mail", u.Mail)
	attrs = appendIf(attrs, "telephoneNumber", u.TelephoneNumber)
	attrs = appendIf(attrs, "mobile", u.Mobile)
	attrs = appendIf(attrs, "ipPhone", u.IPPhone)
	attrs = appendIf(attrs, "description", u.Description)
	e, err := newEntry(dn, attrs)
	if err != nil {
		return nil, err
	}
	groups := make([]*slot, 0, len(u.Groups))
	for _, g := range u.Groups {
		gs, err := d.group(g)
		if err != nil {
			return nil, err
		}
		groups = append(groups, gs)
	}
	s, err := d.add(e, &account{password: u.Password})
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		d.link(g, s, true, now)
	}
	return s, nil
}

// AddGroup creates a global security group named cn in testbed.UsersDN and
// returns its DN.
func (d *Directory) AddGroup(cn string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.addGroup(cn, d.now())
	if err != nil {
		return "", fmt.Errorf("add group %q: %w", cn, err)
	}
	return s.e.dn, nil
}

func (d *Directory) addGroup(cn string, now time.Time) (*slot, error) {
	if d.bySAM[strings.ToLower(cn)] != nil {
		return nil, fmt.Errorf("name %q: %w", cn, ErrExists)
	}
	dn := "CN=" + ldap.EscapeDN(cn) + "," + testbed.UsersDN
	usn, _ := d.nextUSN(now)
	e, err := newEntry(dn, []attribute{
		attr("objectClass", "top", "group"),
		attr("cn", cn),
		attr("distinguishedName", dn),
		attr("instanceType", "4"),
		attr("whenCreated", generalizedTime(now)),
		attr("whenChanged", generalizedTime(now)),
		attr("uSNCreated", itoa(usn)),
		attr("uSNChanged", itoa(usn)),
		attr("name", cn),
		attr("objectGUID", guid(cn, itoa(usn))),
		attr("sAMAccountName", cn),
		attr("sAMAccountType", groupAccountType),
		attr("groupType", globalSecurityGroup),
		attr("objectCategory", groupCategory),
	})
	if err != nil {
		return nil, err
	}
	return d.add(e, nil)
}

// AddGroupMember makes memberDN (a user or a group) a direct member of groupDN.
// As in AD, only the group's uSNChanged moves: memberOf is a back link.
func (d *Directory) AddGroupMember(groupDN, memberDN string) error {
	return d.changeMembership(groupDN, memberDN, true)
}

// RemoveGroupMember removes memberDN from groupDN's direct members; only the
// group's uSNChanged moves.
func (d *Directory) RemoveGroupMember(groupDN, memberDN string) error {
	return d.changeMembership(groupDN, memberDN, false)
}

func (d *Directory) changeMembership(groupDN, memberDN string, add bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, err := d.group(groupDN)
	if err != nil {
		return fmt.Errorf("change members of %s: %w", groupDN, err)
	}
	m, err := d.object(memberDN)
	if err != nil {
		return fmt.Errorf("change members of %s: %w", groupDN, err)
	}
	if add == slices.ContainsFunc(g.e.values("member"), func(v string) bool { return ldapfilter.EqualDN(v, m.e.dn) }) {
		return nil // already as asked: AD would answer attributeOrValueExists / noSuchAttribute
	}
	d.link(g, m, add, d.now())
	return nil
}

// link adds or removes member m of group g: the group's member values (a change
// with a new USN) and m's memberOf back link (no USN). Callers hold d.mu.
func (d *Directory) link(g, m *slot, add bool, now time.Time) {
	members := removeDN(g.e.values("member"), m.e.dn)
	memberOf := removeDN(m.e.values("memberOf"), g.e.dn)
	if add {
		members = append(members, m.e.dn)
		memberOf = append(memberOf, g.e.dn)
	}
	_, stamp := d.nextUSN(now)
	d.put(g, g.e.with(append(stamp, attribute{name: "member", values: members})...))
	d.put(m, m.e.with(attribute{name: "memberOf", values: memberOf}))
}

// ModifyUser replaces attributes of the user whose sAMAccountName is login
// (an empty value list removes the attribute) with one new uSNChanged. Bind
// behaviour follows: userAccountControl, pwdLastSet and accountExpires are read
// at every bind. Identity and bookkeeping attributes (DN, cn, name, objectGUID,
// objectClass, uSN*, when*, memberOf, sAMAccountName) and the lockout state
// cannot be changed here: use RenameUser, the group membership calls, Lock and Unlock.
func (d *Directory) ModifyUser(login string, attrs map[string][]string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.user(login)
	if err != nil {
		return fmt.Errorf("modify user: %w", err)
	}
	changes := make([]attribute, 0, len(attrs)+2)
	for name, values := range attrs {
		if protectedAttribute(name) {
			return fmt.Errorf("modify user %q: attribute %s cannot be changed", login, name)
		}
		if strings.EqualFold(name, "userPrincipalName") && len(values) > 0 {
			if o := d.byUPN[strings.ToLower(values[0])]; o != nil && o != s {
				return fmt.Errorf("modify user %q: userPrincipalName %q: %w", login, values[0], ErrExists)
			}
		}
		changes = append(changes, attribute{name: canonicalName(s.e, name), values: slices.Clone(values)})
	}
	_, stamp := d.nextUSN(d.now())
	d.put(s, s.e.with(append(changes, stamp...)...))
	return nil
}

func protectedAttribute(name string) bool {
	for _, n := range [...]string{"distinguishedName", "cn", "name", "objectGUID", "objectClass", "uSNCreated", "uSNChanged", "whenCreated", "whenChanged", "memberOf", "sAMAccountName", "objectCategory", "instanceType", "badPwdCount", "badPasswordTime", "lockoutTime"} {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// canonicalName keeps the case of an attribute the entry already has.
func canonicalName(e *entry, name string) string {
	if i := e.index(name); i >= 0 {
		return e.attrs[i].name
	}
	return name
}

// SetPassword sets the password of the user whose sAMAccountName is login and
// sets pwdLastSet to now, with a new uSNChanged.
func (d *Directory) SetPassword(login, password string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.user(login)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	now := d.now()
	s.acct.password = password
	_, stamp := d.nextUSN(now)
	d.put(s, s.e.with(append(stamp, attr("pwdLastSet", itoa(fileTime(now))))...))
	return nil
}

// RenameUser changes the CN (and so the DN) of the user whose sAMAccountName is
// login and returns the new DN; objectGUID stays. The user gets a new
// uSNChanged; its groups' member values follow without one, as in AD.
func (d *Directory) RenameUser(login, newCN string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.user(login)
	if err != nil {
		return "", fmt.Errorf("rename user: %w", err)
	}
	oldDN := s.e.dn
	dn := "CN=" + ldap.EscapeDN(newCN) + "," + parentDN(oldDN)
	if o, err := d.object(dn); err == nil && o != s {
		return "", fmt.Errorf("rename user %q to %s: %w", login, dn, ErrExists)
	}
	_, stamp := d.nextUSN(d.now())
	next := s.e.with(append(stamp, attr("cn", newCN), attr("name", newCN), attr("distinguishedName", dn))...)
	renamed, err := newEntry(dn, next.attrs)
	if err != nil {
		return "", fmt.Errorf("rename user %q: %w", login, err)
	}
	d.put(s, renamed)
	for _, g := range s.e.values("memberOf") {
		if gs := d.byDN[normalizedKey(g)]; gs != nil {
			members := append(removeDN(gs.e.values("member"), oldDN), dn)
			d.put(gs, gs.e.with(attribute{name: "member", values: members}))
		}
	}
	return dn, nil
}

// DeleteUser deletes the user whose sAMAccountName is login. As in AD the
// deletion takes a USN (the tombstone's) but a uSNChanged search no longer finds
// the object; the groups it leaves get a new uSNChanged.
func (d *Directory) DeleteUser(login string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.user(login)
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	now := d.now()
	for _, g := range s.e.values("memberOf") {
		if gs := d.byDN[normalizedKey(g)]; gs != nil {
			d.link(gs, s, false, now)
		}
	}
	d.nextUSN(now)
	d.unindex(s, s.e)
	s.deleted = true
	d.domain = slices.DeleteFunc(d.domain, func(o *slot) bool { return o == s })
	return nil
}

// Lock locks the account whose sAMAccountName is login out until Unlock, as an
// administrator or a strict fine-grained policy would (lockoutTime moves).
func (d *Directory) Lock(login string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.user(login)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	now := d.now()
	s.acct.lockedForever = true
	s.acct.lockoutTime = fileTime(now)
	d.saveLockout(s, now, true)
	return nil
}

// Unlock ends a lockout and resets the bad password count, as an administrator does.
func (d *Directory) Unlock(login string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.user(login)
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	s.acct.lockedForever = false
	s.acct.lockoutTime = 0
	s.acct.badPwdCount = 0
	d.saveLockout(s, d.now(), true)
	return nil
}

// saveLockout writes the account's lockout state into its entry; replicated
// changes (lockoutTime) take a USN, badPwdCount and badPasswordTime (per DC in
// AD, not replicated) do not. Callers hold d.mu for writing.
func (d *Directory) saveLockout(s *slot, now time.Time, replicated bool) {
	a := s.acct
	changes := []attribute{
		attr("badPwdCount", itoa(a.badPwdCount)),
		attr("badPasswordTime", itoa(a.badPasswordTime)),
		attr("lockoutTime", itoa(a.lockoutTime)),
	}
	if replicated {
		_, stamp := d.nextUSN(now)
		changes = append(changes, stamp...)
	}
	d.put(s, s.e.with(changes...))
}

// user finds a user account by sAMAccountName. Callers hold d.mu.
func (d *Directory) user(login string) (*slot, error) {
	s := d.bySAM[strings.ToLower(login)]
	if s == nil || s.acct == nil {
		return nil, fmt.Errorf("%q: %w", login, ErrNoSuchAccount)
	}
	return s, nil
}

// object finds an object by DN. Callers hold d.mu.
func (d *Directory) object(dn string) (*slot, error) {
	ndn, err := ldapfilter.NormalizeDN(dn)
	if err != nil {
		return nil, err
	}
	s := d.byDN[ndn]
	if s == nil {
		return nil, fmt.Errorf("%s: %w", dn, ErrNoSuchObject)
	}
	return s, nil
}

// group finds a group by DN. Callers hold d.mu.
func (d *Directory) group(dn string) (*slot, error) {
	s, err := d.object(dn)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(s.e.values("objectClass"), func(v string) bool { return strings.EqualFold(v, "group") }) {
		return nil, fmt.Errorf("%s is not a group: %w", dn, ErrNoSuchObject)
	}
	return s, nil
}

// removeDN returns a copy of dns without any spelling of dn.
func removeDN(dns []string, dn string) []string {
	out := make([]string, 0, len(dns)+1)
	for _, v := range dns {
		if !ldapfilter.EqualDN(v, dn) {
			out = append(out, v)
		}
	}
	return out
}

// normalizedKey normalises a DN the directory wrote itself (so it parses); an
// unparsable one yields a key that matches nothing.
func normalizedKey(dn string) string {
	n, err := ldapfilter.NormalizeDN(dn)
	if err != nil {
		return "\x00invalid"
	}
	return n
}

// parentDN returns dn without its first RDN (which may hold escaped commas).
func parentDN(dn string) string {
	for i := 0; i < len(dn); i++ {
		switch dn[i] {
		case '\\':
			i++
		case ',':
			return dn[i+1:]
		}
	}
	return ""
}

func appendIf(attrs []attribute, name, value string) []attribute {
	if value == "" {
		return attrs
	}
	return append(attrs, attr(name, value))
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
