package adsim_test

import (
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// changedSince returns the DNs (and uSNChanged) of objects in the users OU changed after usn.
func changedSince(t *testing.T, c *ldap.Conn, usn int64) map[string]int64 {
	t.Helper()
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(uSNChanged>="+strconv.FormatInt(usn+1, 10)+")", []string{"uSNChanged"}, nil), 500)
	if err != nil {
		t.Fatalf("incremental search: %v", err)
	}
	out := make(map[string]int64, len(res.Entries))
	for _, e := range res.Entries {
		out[e.DN], _ = strconv.ParseInt(e.GetAttributeValue("uSNChanged"), 10, 64)
	}
	return out
}

func TestMutationsMoveUSNs(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)
	bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)

	tests := []struct {
		name        string
		change      func(t *testing.T)
		wantChanged []string // DNs an incremental search must find
		notChanged  []string // DNs it must not find
	}{
		{
			name: "a new user shows up with a new USN and can bind",
			change: func(t *testing.T) {
				dn, err := d.AddUser(adsim.User{Login: "knew", CN: "Kim New", Password: "Passw0rd!knew", Mobile: "+1 555 0299", Groups: []string{testbed.PBXUsersDN}})
				if err != nil {
					t.Fatal(err)
				}
				if dn != "CN=Kim New,"+testbed.UsersDN {
					t.Errorf("new user's DN = %q", dn)
				}
				if code, _, err := bindResult(dial(t, dc), "knew@"+testbed.Realm, "Passw0rd!knew"); err != nil || code != 0 {
					t.Errorf("bind as the new user = %d, %v", code, err)
				}
			},
			wantChanged: []string{"CN=Kim New," + testbed.UsersDN, testbed.PBXUsersDN},
		},
		{
			name: "a modification moves only that user's USN",
			change: func(t *testing.T) {
				if err := d.ModifyUser("jdoe", map[string][]string{"mobile": {"+1 555 0999"}}); err != nil {
					t.Fatal(err)
				}
			},
			wantChanged: []string{testbed.JDoe.DN()},
			notChanged:  []string{testbed.ASmith.DN()},
		},
		{
			name: "a membership change moves the group's USN, not the member's",
			change: func(t *testing.T) {
				if err := d.AddGroupMember(testbed.PBXAdminsDN, testbed.BJones.DN()); err != nil {
					t.Fatal(err)
				}
			},
			wantChanged: []string{testbed.PBXAdminsDN},
			notChanged:  []string{testbed.BJones.DN()},
		},
		{
			name: "a rename moves the user to a new DN with a new USN",
			change: func(t *testing.T) {
				dn, err := d.RenameUser("asmith", "Alice Smith-Jones")
				if err != nil || dn != "CN=Alice Smith-Jones,"+testbed.UsersDN {
					t.Fatalf("RenameUser = %q, %v", dn, err)
				}
			},
			wantChanged: []string{"CN=Alice Smith-Jones," + testbed.UsersDN},
			notChanged:  []string{testbed.ASmith.DN(), testbed.PBXAdminsDN},
		},
		{
			name: "a deleted user no longer shows up; the groups it left do",
			change: func(t *testing.T) {
				if err := d.DeleteUser("sobrien"); err != nil {
					t.Fatal(err)
				}
			},
			wantChanged: []string{testbed.PBXUsersDN},
			notChanged:  []string{testbed.SOBrien.DN()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := d.HighestCommittedUSN()
			tt.change(t)
			after := d.HighestCommittedUSN()
			if after <= before {
				t.Fatalf("highestCommittedUSN %d → %d, want it to grow", before, after)
			}
			changed := changedSince(t, c, before)
			for _, dn := range tt.wantChanged {
				if usn, ok := changed[dn]; !ok || usn <= before || usn > after {
					t.Errorf("%s: uSNChanged %d (found %v), want in (%d, %d]", dn, usn, ok, before, after)
				}
			}
			for _, dn := range tt.notChanged {
				if _, ok := changed[dn]; ok {
					t.Errorf("%s shows up as changed, want not", dn)
				}
			}
		})
	}

	t.Run("memberOf follows the changes", func(t *testing.T) {
		entry, _ := d.Entry(testbed.BJones.DN())
		if got := entry["memberOf"]; len(got) != 1 || got[0] != testbed.PBXAdminsDN {
			t.Errorf("bjones memberOf = %q, want PBX-Admins", got)
		}
		group, _ := d.Entry(testbed.PBXAdminsDN)
		if !slices.Contains(group["member"], "CN=Alice Smith-Jones,"+testbed.UsersDN) || slices.Contains(group["member"], testbed.ASmith.DN()) {
			t.Errorf("PBX-Admins members = %q, want the renamed asmith", group["member"])
		}
	})
	t.Run("a rename keeps the objectGUID and the password", func(t *testing.T) {
		res, err := c.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeSingleLevel, 0, 0, 0, false,
			"(sAMAccountName=asmith)", []string{"objectGUID"}, nil))
		if err != nil || len(res.Entries) != 1 || res.Entries[0].DN != "CN=Alice Smith-Jones,"+testbed.UsersDN {
			t.Fatalf("find asmith: %v", err)
		}
		if len(res.Entries[0].GetRawAttributeValue("objectGUID")) != 16 {
			t.Errorf("objectGUID %x, want 16 bytes", res.Entries[0].GetRawAttributeValue("objectGUID"))
		}
		if code, _, err := bindResult(dial(t, dc), "CN=Alice Smith-Jones,"+testbed.UsersDN, testbed.ASmith.Password); err != nil || code != 0 {
			t.Errorf("bind by the new DN = %d, %v", code, err)
		}
		if _, sub, _ := bindResult(dial(t, dc), testbed.ASmith.DN(), testbed.ASmith.Password); sub != "525" {
			t.Errorf("bind by the old DN = %q, want 525", sub)
		}
	})
	t.Run("a deleted user cannot bind", func(t *testing.T) {
		if _, sub, _ := bindResult(dial(t, dc), testbed.SOBrien.UPN(), testbed.SOBrien.Password); sub != "525" {
			t.Errorf("bind = %q, want 525", sub)
		}
	})
}

func TestModifyDrivesBinds(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	c := dial(t, startDC(t, d, adsim.DCConfig{}))
	tests := []struct {
		name     string
		change   func() error
		password string
		wantSub  string
	}{
		{"disabling an account gives 533", func() error {
			return d.ModifyUser("jdoe", map[string][]string{"userAccountControl": {"514"}})
		}, testbed.JDoe.Password, "533"},
		{"enabling it again lets it bind", func() error {
			return d.ModifyUser("jdoe", map[string][]string{"userAccountControl": {"512"}})
		}, testbed.JDoe.Password, ""},
		{"pwdLastSet 0 gives 773", func() error {
			return d.ModifyUser("jdoe", map[string][]string{"pwdLastSet": {"0"}})
		}, testbed.JDoe.Password, "773"},
		{"a new password works and sets pwdLastSet", func() error {
			return d.SetPassword("jdoe", "N3w!password")
		}, "N3w!password", ""},
		{"the old password no longer works", func() error { return nil }, testbed.JDoe.Password, "52e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.change(); err != nil {
				t.Fatal(err)
			}
			if _, sub, err := bindResult(c, testbed.JDoe.UPN(), tt.password); err != nil || sub != tt.wantSub {
				t.Errorf("bind = %q, %v; want %q", sub, err, tt.wantSub)
			}
		})
	}
	t.Run("identity attributes cannot be modified", func(t *testing.T) {
		if err := d.ModifyUser("jdoe", map[string][]string{"objectGUID": {"x"}}); err == nil {
			t.Error("ModifyUser changed objectGUID")
		}
	})
	t.Run("an unknown login is ErrNoSuchAccount", func(t *testing.T) {
		if err := d.ModifyUser("nobody", nil); !errors.Is(err, adsim.ErrNoSuchAccount) {
			t.Errorf("error = %v, want ErrNoSuchAccount", err)
		}
	})
	t.Run("a taken login is ErrExists", func(t *testing.T) {
		if _, err := d.AddUser(adsim.User{Login: "JDOE"}); !errors.Is(err, adsim.ErrExists) {
			t.Errorf("error = %v, want ErrExists", err)
		}
	})
}

func TestGroupsAndLocks(t *testing.T) {
	d := newDirectory(t, adsim.Config{})
	dc := startDC(t, d, adsim.DCConfig{})
	c := dial(t, dc)
	bindAs(t, c, testbed.Service.UPN(), testbed.Service.Password)

	t.Run("a new group nested in PBX-Users passes IN_CHAIN on to its members", func(t *testing.T) {
		dn, err := d.AddGroup("PBX-Night")
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddGroupMember(testbed.PBXUsersDN, dn); err != nil {
			t.Fatal(err)
		}
		if err := d.AddGroupMember(dn, testbed.BJones.DN()); err != nil {
			t.Fatal(err)
		}
		res, err := c.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeSingleLevel, 0, 0, 0, false,
			"(&(sAMAccountName=bjones)(memberOf:1.2.840.113556.1.4.1941:="+ldap.EscapeFilter(testbed.PBXUsersDN)+"))", []string{"1.1"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("bjones in PBX-Users by IN_CHAIN: %v, %d entries; want 1", err, len(res.Entries))
		}
	})
	t.Run("removing a member moves the group's USN and drops the back link", func(t *testing.T) {
		before := d.HighestCommittedUSN()
		if err := d.RemoveGroupMember(testbed.PBXUsersDN, testbed.JDoe.DN()); err != nil {
			t.Fatal(err)
		}
		changed := changedSince(t, c, before)
		if _, ok := changed[testbed.PBXUsersDN]; !ok {
			t.Errorf("PBX-Users not changed after losing a member")
		}
		if entry, _ := d.Entry(testbed.JDoe.DN()); len(entry["memberOf"]) != 0 {
			t.Errorf("jdoe memberOf = %q, want none", entry["memberOf"])
		}
	})
	t.Run("a group that does not exist is ErrNoSuchObject", func(t *testing.T) {
		if err := d.AddGroupMember("CN=Nope,"+testbed.UsersDN, testbed.JDoe.DN()); !errors.Is(err, adsim.ErrNoSuchObject) {
			t.Errorf("error = %v, want ErrNoSuchObject", err)
		}
	})
	t.Run("Lock locks an account out until Unlock", func(t *testing.T) {
		if err := d.Lock("asmith"); err != nil {
			t.Fatal(err)
		}
		if _, sub, _ := bindResult(dial(t, dc), testbed.ASmith.UPN(), testbed.ASmith.Password); sub != "775" {
			t.Errorf("bind while locked = %q, want 775", sub)
		}
		if err := d.Unlock("asmith"); err != nil {
			t.Fatal(err)
		}
		if code, _, err := bindResult(dial(t, dc), testbed.ASmith.UPN(), testbed.ASmith.Password); err != nil || code != 0 {
			t.Errorf("bind after Unlock = %d, %v; want success", code, err)
		}
	})
}
