package adsim

import (
	"strconv"
	"strings"
	"time"

	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// attribute is one attribute of an entry with its values, in the case AD uses
// for its name.
type attribute struct {
	name   string
	values []string
}

// entry is one immutable version of a directory object. A change builds a new
// entry (copy on write) and stores it in the object's slot, so a search can hold
// entries without locks while the directory changes.
type entry struct {
	dn     string // as AD returns it, RFC 4514 escaped
	ndn    string // ldapfilter.NormalizeDN(dn)
	parent string // NormalizeDN of the parent, "" for a naming context root
	attrs  []attribute
	// categories are the values (objectCategory=…) matches: the category's DN
	// and its class's short name ("person" for CN=Person,CN=Schema,…), as in AD.
	categories []string
}

// slot is the stable identity of one directory object across its versions,
// renames and deletion. Its fields are guarded by Directory.mu.
type slot struct {
	e       *entry
	acct    *account // nil unless the object is a user account
	deleted bool
}

// newEntry builds an entry; dn must be valid.
func newEntry(dn string, attrs []attribute) (*entry, error) {
	ndn, err := ldapfilter.NormalizeDN(dn)
	if err != nil {
		return nil, err
	}
	e := &entry{dn: dn, ndn: ndn, parent: parentDN(ndn), attrs: attrs}
	for _, c := range e.values("objectCategory") {
		e.categories = append(e.categories, c)
		if rdn, _, ok := strings.Cut(c, ","); ok {
			_, class, _ := strings.Cut(rdn, "=")
			e.categories = append(e.categories, strings.ReplaceAll(class, "-", ""))
		}
	}
	return e, nil
}

// values returns the values of attribute name (case-insensitive), or nil.
func (e *entry) values(name string) []string {
	for i := range e.attrs {
		if strings.EqualFold(e.attrs[i].name, name) {
			return e.attrs[i].values
		}
	}
	return nil
}

// first returns the first value of name, or "".
func (e *entry) first(name string) string {
	if v := e.values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// int64Value parses the first value of name as an integer, 0 when absent.
func (e *entry) int64Value(name string) int64 {
	n, _ := strconv.ParseInt(e.first(name), 10, 64)
	return n
}

// with returns a copy of e with the given attributes replaced, added or, when
// given no values, removed. Values are shared: they are never changed in place.
func (e *entry) with(changes ...attribute) *entry {
	// objectCategory never changes, so the categories carry over.
	out := &entry{dn: e.dn, ndn: e.ndn, parent: e.parent, categories: e.categories, attrs: make([]attribute, 0, len(e.attrs)+len(changes))}
	out.attrs = append(out.attrs, e.attrs...)
	for _, c := range changes {
		i := out.index(c.name)
		switch {
		case i < 0 && len(c.values) > 0:
			out.attrs = append(out.attrs, c)
		case i >= 0 && len(c.values) > 0:
			out.attrs[i] = attribute{name: out.attrs[i].name, values: c.values}
		case i >= 0:
			out.attrs = append(out.attrs[:i], out.attrs[i+1:]...)
		}
	}
	return out
}

func (e *entry) index(name string) int {
	for i := range e.attrs {
		if strings.EqualFold(e.attrs[i].name, name) {
			return i
		}
	}
	return -1
}

// isUnder reports whether the entry is base itself or below it (normalised DNs).
func (e *entry) isUnder(base string) bool {
	if base == "" {
		return true
	}
	return e.ndn == base || strings.HasSuffix(e.ndn, ","+base)
}

// windowsEpochOffset is the number of 100 ns intervals between 1601-01-01 (the
// FILETIME epoch) and 1970-01-01.
const windowsEpochOffset = 116444736000000000

// neverExpires is accountExpires' "never" (AD also treats 0 as never).
const neverExpires = 9223372036854775807

// fileTime converts t to a Windows FILETIME (100 ns intervals since 1601).
func fileTime(t time.Time) int64 { return t.UnixNano()/100 + windowsEpochOffset }

// fromFileTime converts a Windows FILETIME to a time.
func fromFileTime(ft int64) time.Time { return time.Unix(0, (ft-windowsEpochOffset)*100).UTC() }

// generalizedTime formats t as AD's GeneralizedTime ("20060102150405.0Z").
func generalizedTime(t time.Time) string { return t.UTC().Format("20060102150405.0Z") }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func attr(name string, values ...string) attribute { return attribute{name: name, values: values} }
