// Package usersync keeps the directory view — a persisted snapshot of the users
// and groups in scope, read from AD through proxy/upstream — and turns it into the
// user import a PBX consumes (pascom's mapping, a plan of creates, updates,
// disables and removals, and the sinks that deliver it). The package is named
// usersync because the folder name sync would shadow the standard library.
package usersync

import "strings"

// Entry is one directory object of the view, as AD returned it.
type Entry struct {
	// GUID is the objectGUID in its canonical text form
	// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx); it is the view's key, stable across
	// renames and moves.
	GUID string `json:"guid"`
	// DN is the entry's distinguished name as AD spells it.
	DN string `json:"dn"`
	// Attrs maps attribute names, as configured in sync.attributes, to values.
	Attrs map[string][]string `json:"attrs"`
}

// Get returns the values of the attribute name, compared case-insensitively as
// LDAP attribute descriptions are.
func (e *Entry) Get(name string) []string {
	if v, ok := e.Attrs[name]; ok {
		return v
	}
	for k, v := range e.Attrs {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// First returns the first value of the attribute name, or "".
func (e *Entry) First(name string) string {
	if v := e.Get(name); len(v) > 0 {
		return v[0]
	}
	return ""
}
