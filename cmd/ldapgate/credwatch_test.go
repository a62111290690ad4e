package main

import (
	"slices"
	"testing"

	usersync "github.com/ldapgate/ldapgate/sync"
)

func user(guid, dn, pwdLastSet, uac string) usersync.Entry {
	return usersync.Entry{GUID: guid, DN: dn, Attrs: map[string][]string{
		"pwdLastSet": {pwdLastSet}, "userAccountControl": {uac}}}
}

func TestCredentialWatchForgetsAccountsWhoseCredentialsChanged(t *testing.T) {
	t.Parallel()
	var forgotten []string
	w := &credentialWatch{}
	w.setForget(func(dn string) { forgotten = append(forgotten, dn) })
	w.observe([]usersync.Entry{
		user("1", "CN=Same", "100", "512"),
		user("2", "CN=NewPassword", "100", "512"),
		user("3", "CN=Disabled", "100", "512"),
		user("4", "CN=Gone", "100", "512"),
		user("5", "CN=Old Name", "100", "512"),
	})
	if len(forgotten) != 0 {
		t.Fatalf("the first sync forgot %v; it has nothing to compare with", forgotten)
	}
	w.observe([]usersync.Entry{
		user("1", "CN=Same", "100", "512"),
		user("2", "CN=NewPassword", "200", "512"),
		user("3", "CN=Disabled", "100", "514"),
		user("5", "CN=New Name", "100", "512"),
	})
	slices.Sort(forgotten)
	want := []string{"CN=Disabled", "CN=Gone", "CN=New Name", "CN=NewPassword", "CN=Old Name"}
	if !slices.Equal(forgotten, want) {
		t.Errorf("forgot %v, want %v", forgotten, want)
	}
}
