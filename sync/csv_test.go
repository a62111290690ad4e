package usersync

import (
	"bytes"
	"encoding/csv"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCSVOfTheSeededDomain(t *testing.T) {
	cfg := impConfig(t)
	im := impNew(t, cfg, newImpClock())
	upnOnly := impWith(impEntry("g-upn", "mary.major", "displayName", "Mary Major"), "sAMAccountName")
	users := append(impSeededList(t), impWith(upnOnly, "userPrincipalName", "Mary.Major@aadds.example.test"))
	impApply(t, im, users, ApplyOptions{})
	got, err := os.ReadFile(cfg.Import.CSVFile)
	if err != nil {
		t.Fatal(err)
	}
	impGolden(t, "users.csv", got)

	t.Run("the header row is pascom's column names", func(t *testing.T) {
		want := `"displayname","username","phone","givenname","surname","email","mobile","homephone","organisation","fax","phonemac"` + "\r\n"
		if !bytes.HasPrefix(got, []byte(want)) {
			t.Errorf("header %q, want %q", strings.SplitN(string(got), "\n", 2)[0], want)
		}
	})
	t.Run("the file is UTF-8 without a byte order mark, every line ending in CRLF", func(t *testing.T) {
		if !utf8.Valid(got) || bytes.HasPrefix(got, []byte("\xef\xbb\xbf")) {
			t.Error("not UTF-8, or starts with a BOM")
		}
		if n, crlf := bytes.Count(got, []byte("\n")), bytes.Count(got, []byte("\r\n")); n != crlf || !bytes.HasSuffix(got, []byte("\r\n")) {
			t.Errorf("%d line feeds, %d of them after a CR", n, crlf)
		}
	})
	records, err := csv.NewReader(bytes.NewReader(got)).ReadAll()
	if err != nil {
		t.Fatalf("a CSV reader cannot read the file: %v", err)
	}
	rows := map[string][]string{}
	for _, r := range records[1:] {
		rows[r[1]] = r
	}
	t.Run("jdoe has his extension and mobile number as AD holds them", func(t *testing.T) {
		r := rows["jdoe"]
		if r == nil || r[0] != "John Doe" || r[2] != "+1 555 0101" || r[6] != "+1 555 0201" {
			t.Errorf("jdoe's row %q", r)
		}
	})
	t.Run("sobrien's display name keeps its comma, apostrophe and accent in one quoted field", func(t *testing.T) {
		if r := rows["sobrien"]; r == nil || r[0] != "Seán O'Brien, Jr." {
			t.Errorf("sobrien's row %q", r)
		}
		if !bytes.Contains(got, []byte(`"Seán O'Brien, Jr.","sobrien"`)) {
			t.Error("sobrien's display name is not one quoted field")
		}
	})
	t.Run("a user with only a UPN is there without its domain", func(t *testing.T) {
		if rows["mary.major"] == nil {
			t.Errorf("no row for mary.major in %q", records)
		}
	})
	t.Run("the service account and disabled accounts are not in it", func(t *testing.T) {
		for _, login := range []string{"svc-pbx", "cwhite"} {
			if rows[login] != nil {
				t.Errorf("%s is in the CSV", login)
			}
		}
	})
}

func TestCSVQuoting(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  string
	}{
		{"a quote is doubled", `Dwayne "The Rock" J.`, `"Dwayne ""The Rock"" J."`},
		{"a comma stays inside the quotes", "Doe, John", `"Doe, John"`},
		{"a line break becomes a space so a user is one line", "two\r\nlines", `"two  lines"`},
		{"invalid UTF-8 becomes the replacement character", "bad\xffbyte", "\"bad\uFFFDbyte\""},
		{"an empty value is an empty quoted field", "", `""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(renderCSV([]ImportUser{{Username: "u", DisplayName: tc.value}}))
			_, row, _ := strings.Cut(got, "\r\n")
			if field, _, _ := strings.Cut(row, `,"u",`); field != tc.want {
				t.Errorf("field %s, want %s (row %q)", field, tc.want, row)
			}
		})
	}
}
