package adsim

import (
	"fmt"
	"strings"
	"time"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// Where each DC's server and NTDS Settings objects live.
const (
	siteDN    = "CN=Default-First-Site-Name,CN=Sites," + ConfigDN
	serversDN = "CN=Servers," + siteDN
)

// expiredAt is eexpired's accountExpires, as integration/samba/seed.py sets it
// (2021-01-01T00:00:00Z).
const expiredAt = 132539328000000000

// contact holds the attributes integration/samba/seed.py gives each seeded
// account, so that the simulator and the Samba test bed return the same data.
type contact struct {
	given, sn, phone, mobile, description string
	noMail                                bool
}

// seedContact returns the contact attributes seed.py gives login.
func seedContact(login string) contact {
	switch login {
	case testbed.JDoe.Login:
		return contact{given: "John", sn: "Doe", phone: "+1 555 0101", mobile: "+1 555 0201"}
	case testbed.ASmith.Login:
		return contact{given: "Alice", sn: "Smith", mobile: "+1 555 0202"}
	case testbed.Service.Login:
		return contact{noMail: true, description: "ldapgate service account (the PBX's proxy user)"}
	}
	for _, a := range testbed.Accounts {
		if a.Login == login {
			given, sn, _ := strings.Cut(a.CN, " ")
			return contact{given: given, sn: strings.TrimSuffix(sn, ", Jr.")}
		}
	}
	return contact{}
}

// seed builds the test bed's directory: the domain, its containers, the PBX
// groups, every account of testbed.Accounts plus Administrator, n bulk users,
// and the configuration naming context that DCs add their NTDS Settings to.
func (d *Directory) seed(loadUsers int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if err := d.seedContainers(now); err != nil {
		return err
	}
	users, err := d.addGroup("PBX-Users", now)
	if err != nil {
		return err
	}
	admins, err := d.addGroup("PBX-Admins", now)
	if err != nil {
		return err
	}
	d.link(users, admins, true, now)
	for _, a := range testbed.Accounts {
		if err := d.seedAccount(a, now); err != nil {
			return fmt.Errorf("account %s: %w", a.Login, err)
		}
	}
	admin := testbed.Administrator
	if _, err := d.addUser(User{
		Login: admin.Login, CN: admin.CN, Password: admin.Password, Parent: BuiltinUsersDN,
		UserAccountControl: UACNormalAccount | UACDontExpirePassword, Description: "Built-in account for administering the computer/domain",
	}, now); err != nil {
		return fmt.Errorf("administrator: %w", err)
	}
	for i := 0; i < loadUsers; i++ {
		login, password := testbed.LoadUser(i)
		u := User{
			Login: login, Password: password, Parent: testbed.LoadUsersDN,
			GivenName: "Load", Surname: fmt.Sprintf("User %04d", i), DisplayName: fmt.Sprintf("Load User %04d", i),
			Mail: login + "@" + testbed.Realm,
		}
		if i%2 == 0 {
			u.TelephoneNumber = fmt.Sprintf("+1 556 %04d", i)
		}
		if i%10 == 0 {
			u.Mobile = fmt.Sprintf("+1 557 %04d", i)
		}
		if _, err := d.addUser(u, now); err != nil {
			return fmt.Errorf("load user %s: %w", login, err)
		}
	}
	return nil
}

func (d *Directory) seedContainers(now time.Time) error {
	maxPwdAge := -int64(d.maxPwdAge / 100)
	containers := []struct {
		dn      string
		classes []string
		extra   []attribute
	}{
		{testbed.BaseDN, []string{"top", "domain", "domainDNS"}, []attribute{
			attr("dc", strings.Split(testbed.Realm, ".")[0]),
			attr("objectCategory", "CN=Domain-DNS,"+SchemaDN),
			attr("lockoutThreshold", itoa(int64(d.lockout.Threshold))),
			attr("lockoutDuration", itoa(-int64(d.lockout.Duration/100))),
			attr("lockOutObservationWindow", itoa(-int64(d.lockout.ObservationWindow/100))),
			attr("maxPwdAge", itoa(maxPwdAge)),
		}},
		{BuiltinUsersDN, []string{"top", "container"}, []attribute{attr("objectCategory", "CN=Container,"+SchemaDN)}},
		{testbed.UsersDN, []string{"top", "organizationalUnit"}, []attribute{
			attr("objectCategory", "CN=Organizational-Unit,"+SchemaDN),
			attr("description", "Every synced user, as in AADDS"),
		}},
		{testbed.LoadUsersDN, []string{"top", "organizationalUnit"}, []attribute{
			attr("objectCategory", "CN=Organizational-Unit,"+SchemaDN),
			attr("description", "Bulk users for load tests"),
		}},
		{ConfigDN, []string{"top", "configuration"}, nil},
		{"CN=Sites," + ConfigDN, []string{"top", "sitesContainer"}, nil},
		{siteDN, []string{"top", "site"}, nil},
		{serversDN, []string{"top", "serversContainer"}, nil},
	}
	for _, c := range containers {
		if err := d.addContainer(c.dn, c.classes, c.extra, now); err != nil {
			return err
		}
	}
	return nil
}

// addContainer adds an object that is neither a user nor a group. Callers hold d.mu.
func (d *Directory) addContainer(dn string, classes []string, extra []attribute, now time.Time) error {
	usn, _ := d.nextUSN(now)
	rdn := dn[:len(dn)-len(parentDN(dn))]
	rdn = strings.TrimSuffix(rdn[strings.IndexByte(rdn, '=')+1:], ",")
	attrs := []attribute{
		attr("objectClass", classes...),
		attr("distinguishedName", dn),
		attr("instanceType", "4"),
		attr("whenCreated", generalizedTime(now)),
		attr("whenChanged", generalizedTime(now)),
		attr("uSNCreated", itoa(usn)),
		attr("uSNChanged", itoa(usn)),
		attr("name", rdn),
		attr("objectGUID", guid(dn, itoa(usn))),
	}
	e, err := newEntry(dn, append(attrs, extra...))
	if err != nil {
		return err
	}
	_, err = d.add(e, nil)
	return err
}

// seedAccount creates one account of the test bed with the state that gives a
// bind with its password the account's AD sub-code.
func (d *Directory) seedAccount(a testbed.Account, now time.Time) error {
	c := seedContact(a.Login)
	u := User{
		Login: a.Login, CN: a.CN, Password: a.Password,
		GivenName: c.given, Surname: c.sn, TelephoneNumber: c.phone, Mobile: c.mobile, Description: c.description,
	}
	if !c.noMail {
		u.Mail = a.Login + "@" + testbed.Realm
	}
	for _, g := range a.Groups {
		u.Groups = append(u.Groups, "CN="+g+","+testbed.UsersDN)
	}
	if a.Login == testbed.Service.Login {
		u.UserAccountControl = UACNormalAccount | UACDontExpirePassword
	}
	switch a.ADCode {
	case "533":
		u.UserAccountControl = UACNormalAccount | UACDisabled
	case "773":
		u.MustChangePassword = true
	case "701":
		u.AccountExpires = fromFileTime(expiredAt)
	case "532":
		u.PasswordLastSet = now.Add(-d.maxPwdAge - 5*24*time.Hour)
	}
	s, err := d.addUser(u, now)
	if err != nil {
		return err
	}
	if a.ADCode == "775" {
		// Like the test bed's re-locked hlocked: locked until someone unlocks it.
		s.acct.lockedForever = true
		s.acct.lockoutTime = fileTime(now)
		s.acct.badPwdCount = int64(max(d.lockout.Threshold, 3))
		s.acct.badPasswordTime = fileTime(now)
		d.saveLockout(s, now, true)
	}
	return nil
}
