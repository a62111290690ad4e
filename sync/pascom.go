package usersync

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// ImportUser is one user of the import, mapped from a directory entry the way
// pascom's "AD User Sync" connector maps it (see AD-FACTS.md). The JSON names of
// the pascom fields are pascom's own field names, the CSV's column names.
type ImportUser struct {
	// GUID is the entry's objectGUID: the import's key, so a rename is an update.
	GUID string `json:"guid"`
	// Username is sAMAccountName in lower case; for an entry with only a
	// userPrincipalName, its local part (the domain suffix removed).
	Username string `json:"username"`
	// DisplayName is displayName, else "givenName sn", else Username: pascom
	// requires one.
	DisplayName string `json:"displayname"`
	// GivenName is givenName.
	GivenName string `json:"givenname"`
	// Surname is sn.
	Surname string `json:"surname"`
	// Email is mail.
	Email string `json:"email"`
	// Phone is telephoneNumber as AD holds it (e.g. "+1 555 0101"): pascom's
	// extension, which it chooses itself when this is empty.
	Phone string `json:"phone"`
	// Mobile is mobile.
	Mobile string `json:"mobile"`
	// HomePhone is homePhone.
	HomePhone string `json:"homephone"`
	// Organisation is company.
	Organisation string `json:"organisation"`
	// Fax is facsimileTelephoneNumber.
	Fax string `json:"fax"`
	// PhoneMAC is ipPhone when it holds a MAC address, written as six
	// upper-case hex pairs separated by colons; empty otherwise (ipPhone often
	// holds a phone number, which is no MAC).
	PhoneMAC string `json:"phonemac"`
	// Groups are the CNs of the groups in memberOf (direct membership), sorted.
	Groups []string `json:"groups"`
	// Disabled says userAccountControl has ACCOUNTDISABLE (0x2) set.
	Disabled bool `json:"disabled"`
	// Softphone says the user gets a softphone (import.create_softphone).
	Softphone bool `json:"softphone"`
	// MobileDevice says the user gets a mobile device (import.create_mobile,
	// and only where a mobile number exists).
	MobileDevice bool `json:"mobile_device"`
}

// userField is one compared field of an ImportUser, as the plan reports it.
type userField struct {
	name  string
	value string
}

// fields lists the fields a plan compares, by their JSON names, in a fixed order.
func (u *ImportUser) fields() []userField {
	return []userField{
		{"username", u.Username},
		{"displayname", u.DisplayName},
		{"givenname", u.GivenName},
		{"surname", u.Surname},
		{"email", u.Email},
		{"phone", u.Phone},
		{"mobile", u.Mobile},
		{"homephone", u.HomePhone},
		{"organisation", u.Organisation},
		{"fax", u.Fax},
		{"phonemac", u.PhoneMAC},
		{"groups", strings.Join(u.Groups, "; ")},
		{"disabled", strconv.FormatBool(u.Disabled)},
		{"softphone", strconv.FormatBool(u.Softphone)},
		{"mobile_device", strconv.FormatBool(u.MobileDevice)},
	}
}

// uacAccountDisable is userAccountControl's ACCOUNTDISABLE bit.
const uacAccountDisable = 0x2

// pascomMapping holds the per-profile switches of the mapping.
type pascomMapping struct {
	softphone bool // import.create_softphone
	mobile    bool // import.create_mobile
}

// user maps e to an ImportUser. It returns a reason instead when the entry
// cannot be imported.
func (m pascomMapping) user(e *Entry) (ImportUser, string) {
	if strings.TrimSpace(e.GUID) == "" {
		return ImportUser{}, "no objectGUID"
	}
	username := pascomUsername(e)
	if username == "" {
		return ImportUser{}, "no sAMAccountName or userPrincipalName"
	}
	u := ImportUser{
		GUID:         e.GUID,
		Username:     username,
		GivenName:    trimmedFirst(e, "givenName"),
		Surname:      trimmedFirst(e, "sn"),
		Email:        trimmedFirst(e, "mail"),
		Phone:        trimmedFirst(e, "telephoneNumber"),
		Mobile:       trimmedFirst(e, "mobile"),
		HomePhone:    trimmedFirst(e, "homePhone"),
		Organisation: trimmedFirst(e, "company"),
		Fax:          trimmedFirst(e, "facsimileTelephoneNumber"),
		PhoneMAC:     normalizeMAC(trimmedFirst(e, "ipPhone")),
		Groups:       groupNames(e.Get("memberOf")),
		Disabled:     accountDisabled(trimmedFirst(e, "userAccountControl")),
		Softphone:    m.softphone,
	}
	u.MobileDevice = m.mobile && u.Mobile != ""
	u.DisplayName = trimmedFirst(e, "displayName")
	if u.DisplayName == "" {
		u.DisplayName = strings.TrimSpace(u.GivenName + " " + u.Surname)
	}
	if u.DisplayName == "" {
		u.DisplayName = username
	}
	return u, ""
}

// trimmedFirst returns the first value of name with surrounding white space removed.
func trimmedFirst(e *Entry, name string) string { return strings.TrimSpace(e.First(name)) }

// pascomUsername is pascom's username: sAMAccountName in lower case, or, for an
// entry without one, the userPrincipalName with its domain suffix removed.
func pascomUsername(e *Entry) string {
	if sam := trimmedFirst(e, "sAMAccountName"); sam != "" {
		return strings.ToLower(sam)
	}
	upn := trimmedFirst(e, "userPrincipalName")
	if i := strings.LastIndexByte(upn, '@'); i >= 0 {
		upn = upn[:i]
	}
	return strings.ToLower(strings.TrimSpace(upn))
}

// accountDisabled reports whether a userAccountControl value has
// ACCOUNTDISABLE set. A missing or unreadable value counts as enabled: the
// bind path still refuses a disabled account, whatever the import says.
func accountDisabled(uac string) bool {
	n, err := strconv.ParseInt(uac, 10, 64)
	return err == nil && n&uacAccountDisable != 0
}

// groupNames returns the CNs of the group DNs in memberOf, sorted
// case-insensitively and without duplicates; values that are not DNs with a
// CN first are left out.
func groupNames(memberOf []string) []string {
	names := make([]string, 0, len(memberOf))
	for _, v := range memberOf {
		dn, err := ldap.ParseDN(v)
		if err != nil || len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) == 0 {
			continue
		}
		if a := dn.RDNs[0].Attributes[0]; strings.EqualFold(a.Type, "CN") && a.Value != "" {
			names = append(names, a.Value)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a), strings.ToLower(b)), cmp.Compare(a, b))
	})
	return slices.CompactFunc(names, strings.EqualFold)
}

// normalizeMAC returns s as a MAC address ("00:04:13:2A:3B:4C") when it looks
// like one — twelve hex digits, bare or grouped by ':', '-' or '.' as vendors
// and admins write them — and "" otherwise. ipPhone is documented as an IP
// phone's number, so anything else is not passed to pascom as a MAC.
func normalizeMAC(s string) string {
	s = strings.TrimSpace(s)
	var sep rune
	for _, r := range s {
		if r == ':' || r == '-' || r == '.' {
			sep = r
			break
		}
	}
	digits := s
	if sep != 0 {
		groups := strings.Split(s, string(sep))
		switch {
		case len(groups) == 6 && allLen(groups, 2): // 00:04:13:2a:3b:4c, 00-04-13-2A-3B-4C
		case len(groups) == 3 && allLen(groups, 4): // 0004.132a.3b4c
		default:
			return ""
		}
		digits = strings.Join(groups, "")
	}
	if len(digits) != 12 {
		return ""
	}
	var b strings.Builder
	for i, r := range strings.ToUpper(digits) {
		if !('0' <= r && r <= '9' || 'A' <= r && r <= 'F') {
			return ""
		}
		if i > 0 && i%2 == 0 {
			b.WriteByte(':')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// allLen reports whether every string in ss has n bytes.
func allLen(ss []string, n int) bool {
	for _, s := range ss {
		if len(s) != n {
			return false
		}
	}
	return true
}
