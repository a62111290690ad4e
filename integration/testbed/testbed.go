// Package testbed holds the facts of the project's Active Directory test bed: the
// domain, the domain controllers' addresses, the CA bundle's path and the seeded
// accounts with the result AD gives each of them. It is a contract shared by the
// Samba scripts, the AD simulator, the tests, the benchmarks and tools outside the
// test suite: change it only by adding.
package testbed

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-ldap/ldap/v3"
)

// Domain facts of the test bed (see ../shared/AD-FACTS.md).
const (
	// Realm is the AD DNS domain, also the UPN suffix of every seeded user.
	Realm = "aadds.example.test"
	// NetBIOS is the domain's pre-Windows 2000 name, used in DOMAIN\user logins.
	NetBIOS = "AADDS"
	// BaseDN is the domain's naming context.
	BaseDN = "DC=aadds,DC=example,DC=test"
	// UsersDN is the flat OU that AADDS keeps every synced user in.
	UsersDN = "OU=AADDC Users," + BaseDN
	// LoadUsersDN holds the bulk users (user0000, …) seeded on request.
	LoadUsersDN = "OU=Load Users," + UsersDN
	// PBXUsersDN is the group whose (nested) members the PBX imports.
	PBXUsersDN = "CN=PBX-Users," + UsersDN
	// PBXAdminsDN is a group nested in PBX-Users.
	PBXAdminsDN = "CN=PBX-Admins," + UsersDN
	// DC1URL and DC2URL are the two domain controllers' LDAPS endpoints.
	DC1URL = "ldaps://127.0.0.1:636"
	DC2URL = "ldaps://127.0.0.2:636"
	// DC1Name and DC2Name are the names in the DCs' certificates.
	DC1Name = "dc1.aadds.example.test"
	DC2Name = "dc2.aadds.example.test"
	// DefaultDir is where the Samba scripts keep the test bed's state.
	DefaultDir = "/var/tmp/ldapgate-testbed"
	// GatewayAddr is the listener address of configs/testbed.yaml.
	GatewayAddr = "127.0.0.1:3389"
)

// Dir is the test bed's state directory: $LDAPGATE_TESTBED_DIR or DefaultDir.
func Dir() string {
	if d := os.Getenv("LDAPGATE_TESTBED_DIR"); d != "" {
		return d
	}
	return DefaultDir
}

// CAFile is the project CA's bundle that signed both DCs' certificates.
func CAFile() string { return filepath.Join(Dir(), "tls", "ca.pem") }

// Account is one seeded account and the result of a simple bind with its password.
type Account struct {
	// Login is the sAMAccountName.
	Login string
	// CN is the common name (RDN value, unescaped).
	CN string
	// Password is the account's password.
	Password string
	// ADCode is the AD "data" sub-code of the 49 a simple bind with Password gets,
	// or "" when the bind succeeds.
	ADCode string
	// Groups are the PBX groups the account is a direct member of.
	Groups []string
}

// DN is the account's distinguished name in the users OU, with the CN escaped.
func (a Account) DN() string { return "CN=" + ldap.EscapeDN(a.CN) + "," + UsersDN }

// UPN is the account's userPrincipalName.
func (a Account) UPN() string { return a.Login + "@" + Realm }

// Seeded accounts, exactly as in the accounts table of AD-FACTS.md.
var (
	JDoe       = Account{Login: "jdoe", CN: "John Doe", Password: "Passw0rd!jdoe", Groups: []string{"PBX-Users"}}
	ASmith     = Account{Login: "asmith", CN: "Alice Smith", Password: "Passw0rd!asmith", Groups: []string{"PBX-Admins"}}
	BJones     = Account{Login: "bjones", CN: "Bob Jones", Password: "Passw0rd!bjones"}
	SOBrien    = Account{Login: "sobrien", CN: "Seán O'Brien, Jr.", Password: "Pässw0rd!€ü", Groups: []string{"PBX-Users"}}
	CWhite     = Account{Login: "cwhite", CN: "Carol White", Password: "Passw0rd!cwhite", ADCode: "533"}
	DMust      = Account{Login: "dmust", CN: "Dan Must", Password: "Passw0rd!dmust", ADCode: "773"}
	EExpired   = Account{Login: "eexpired", CN: "Eve Expired", Password: "Passw0rd!eexpired", ADCode: "701"}
	GPwExpired = Account{Login: "gpwexpired", CN: "Gus PwExpired", Password: "Passw0rd!gpwexpired", ADCode: "532"}
	HLocked    = Account{Login: "hlocked", CN: "Hal Locked", Password: "Passw0rd!hlocked", ADCode: "775"}
	Service    = Account{Login: "svc-pbx", CN: "PBX Service", Password: "Svc!Passw0rd-pbx"}
)

// Accounts lists every seeded user account (not Administrator, not bulk users).
var Accounts = []Account{JDoe, ASmith, BJones, SOBrien, CWhite, DMust, EExpired, GPwExpired, HLocked, Service}

// Administrator is the domain admin, for test setup only.
var Administrator = Account{Login: "Administrator", CN: "Administrator", Password: "Adm1nPassw0rd!"}

// AdminDN is the Administrator's DN (in CN=Users, not the AADDS users OU).
const AdminDN = "CN=Administrator,CN=Users," + BaseDN

// LoadUser returns the i-th bulk user's login and password (user0000 / Passw0rd!0000).
func LoadUser(i int) (login, password string) {
	return fmt.Sprintf("user%04d", i), fmt.Sprintf("Passw0rd!%04d", i)
}
