package usersync

import (
	"bytes"
	"strings"
	"unicode"
)

// pascom's CSV: the file its "Users from CSV" connector reads, fetched from
// GET /export/users.csv ("Fetch from url") or read from import.csv_file.
//
// Format decisions:
//   - the columns are pascom's field names, in this order: csvColumns;
//   - a header row first, then one row per imported user that is not disabled,
//     sorted by username;
//   - every field is enclosed in double quotes, a quote inside doubled
//     (RFC 4180), so commas, quotes and apostrophes ("Seán O'Brien, Jr.") are
//     data; pascom's "Field Enclosure" is then '"';
//   - UTF-8 without a byte order mark: a BOM would become part of the first
//     column's name ("\ufeffdisplayname") for readers that do not strip it;
//   - lines end in CRLF, as RFC 4180 says (pascom's "Line Separator":
//     Windows); the last line ends in CRLF too;
//   - control characters in a value (a line break in a directory attribute)
//     become spaces and invalid UTF-8 becomes U+FFFD, so one user is always
//     exactly one line.
//
// Disabled users are left out: pascom's connector has no column for a disabled
// user, and in its mode "create and update, remove missing" a user missing
// from the CSV is removed (with its devices), while one in it stays usable —
// and its SIP devices keep working, since only the LDAP login checks AD. A
// disabled account therefore leaves pascom; it comes back, as a new pascom
// user, when it is enabled again. Removals held by the deletion threshold stay
// in the CSV, so pascom does not remove them either.

// csvColumns are the CSV's column names: pascom's field names.
var csvColumns = [...]string{"displayname", "username", "phone", "givenname", "surname", "email", "mobile", "homephone", "organisation", "fax", "phonemac"}

// csvRecord returns u's row in csvColumns order.
func (u *ImportUser) csvRecord() []string {
	return []string{u.DisplayName, u.Username, u.Phone, u.GivenName, u.Surname, u.Email, u.Mobile, u.HomePhone, u.Organisation, u.Fax, u.PhoneMAC}
}

// renderCSV returns pascom's CSV of users (sorted by username), leaving out the
// disabled ones.
func renderCSV(users []ImportUser) []byte {
	var b bytes.Buffer
	b.Grow(64 * (len(users) + 1))
	writeCSVRow(&b, csvColumns[:])
	for i := range users {
		if !users[i].Disabled {
			writeCSVRow(&b, users[i].csvRecord())
		}
	}
	return b.Bytes()
}

// writeCSVRow writes one row with every field quoted, ending in CRLF.
func writeCSVRow(b *bytes.Buffer, fields []string) {
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(csvClean(f), `"`, `""`))
		b.WriteByte('"')
	}
	b.WriteString("\r\n")
}

// csvClean replaces control characters with spaces and invalid UTF-8 with
// U+FFFD.
func csvClean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
