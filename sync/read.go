package usersync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// How the view is read from AD.
//
// A full sync reads the rootDSE of the preferred DC (the first usable one, with
// the Cluster's failover): highestCommittedUSN H and dsServiceName, then that
// DC's NTDS Settings object for its invocationId, then every entry in scope with
// a paged search pinned to the same DC. The view becomes exactly what was read;
// the state records the DC, dsServiceName, invocationID and H.
//
// An incremental sync asks the DC of the stored state only. It reads the rootDSE
// and invocationId again; a different dsServiceName or invocationID (the DC was
// replaced or restored), an unusable DC, a preferred DC that is not the stored
// one, or a USN that went backwards make it a full sync instead. With N the
// stored USN and H the new one, it then searches, all pinned to that DC and
// bounded by (uSNChanged<=H) so that every query sees the same window:
//
//  1. changed: every object under the base with N < uSNChanged <= H (only
//     objectGUID and objectClass);
//  2. in scope: the same window with the scope filter (every attribute): these
//     entries are put into the view;
//  3. groups: memberOf is a back link, so adding a user to a group moves the
//     group's uSNChanged, not the user's. For each changed group G (at most
//     maxChangedGroups, else a full sync) it reads the in-scope users in G's
//     chain, (memberOf:1.2.840.113556.1.4.1941:=G), and puts them too. This only
//     runs when the filter or the attributes mention memberOf.
//  4. recheck: entries of the view that changed (1) but did not come back in
//     scope (2, 3), and entries whose stored memberOf names a changed group but
//     did not come back, are read again by objectGUID with the scope filter. An
//     entry that comes back is put; one that does not is removed — a successful
//     search for exactly that entry said it is no longer in scope (disabled
//     with enabled_only, removed from the group, moved away, deleted while a
//     member of a changed group).
//
// What an incremental sync cannot see, and the full reconcile
// (sync.full_interval) catches: objects deleted without a group change
// (deletions leave no uSNChanged without the show-deleted control), entries
// moved out of the base DN, and users who left the scope through a change to a
// group nested below the one they are a direct member of. Every read must
// succeed completely: an error anywhere keeps the previous view.

// maxChangedGroups is the most changed groups an incremental sync follows; more
// (a bulk change) is cheaper as a full sync.
const maxChangedGroups = 50

// orChunk is the most terms of one (|…) filter.
const orChunk = 50

// Matching rules and filters of AD.
const (
	ruleInChain       = "1.2.840.113556.1.4.1941"
	enabledOnlyFilter = "(!(userAccountControl:1.2.840.113556.1.4.803:=2))"
)

// errFallback asks for a full sync instead of an incremental one.
type errFallback struct{ reason string }

func (e errFallback) Error() string { return "full sync needed: " + e.reason }

// sourceError wraps a failure to read AD.
func sourceError(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrSource, what, err)
}

// dcInfo is what the rootDSE and NTDS Settings say about a DC.
type dcInfo struct {
	url, dsServiceName, invocationID string
	usn                              int64
}

// readFull reads every entry in scope from the preferred DC.
func (s *Syncer) readFull(ctx context.Context, r *Result) (map[string]*Entry, dcInfo, error) {
	root, url, err := s.cluster.RootDSE(ctx, "highestCommittedUSN", "dsServiceName")
	r.DC = url
	if err != nil {
		return nil, dcInfo{}, sourceError("read the rootDSE", err)
	}
	info, err := s.dcInfo(ctx, url, root)
	if err != nil {
		return nil, dcInfo{}, err
	}
	// Each page is converted as it arrives: go-ldap's entries hold every value
	// twice (as string and as bytes), so collecting them all first held three
	// copies of the directory at the peak.
	out := make(map[string]*Entry)
	req := s.subtreeRequest(s.filter, s.attrs, s.cfg.MaxEntries+1)
	var pageErr error // what made the page function stop the search
	err = s.cluster.SearchPagesAt(ctx, url, req, uint32(s.cfg.PageSize), func(page []*ldap.Entry) error {
		r.Read += len(page)
		if r.Read > s.cfg.MaxEntries {
			pageErr = fmt.Errorf("%w: more than %d", ErrTooManyEntries, s.cfg.MaxEntries)
		} else {
			pageErr = s.convert(page, out)
		}
		return pageErr
	})
	switch {
	case pageErr != nil:
		return nil, info, pageErr
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		return nil, info, fmt.Errorf("%w: more than %d", ErrTooManyEntries, s.cfg.MaxEntries)
	case err != nil:
		return nil, info, sourceError("search "+s.cfg.BaseDN, err)
	}
	return out, info, nil
}

// readIncremental reads what changed on st.DC since st.HighestCommittedUSN. It
// returns the entries to put, the GUIDs to remove and the DC's new state, or an
// errFallback when a full sync is needed instead.
func (s *Syncer) readIncremental(ctx context.Context, st State, r *Result) (put map[string]*Entry, remove []string, info dcInfo, err error) {
	r.DC = st.DC
	root, err := s.cluster.RootDSEAt(ctx, st.DC, "highestCommittedUSN", "dsServiceName")
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, info, sourceError("read the rootDSE", err)
		}
		return nil, nil, info, errFallback{"DC not usable: " + err.Error()}
	}
	if info, err = s.dcInfo(ctx, st.DC, root); err != nil {
		if ctx.Err() != nil {
			return nil, nil, info, err
		}
		return nil, nil, info, errFallback{"DC not usable: " + err.Error()}
	}
	switch {
	case !strings.EqualFold(info.dsServiceName, st.DSServiceName):
		return nil, nil, info, errFallback{"dsServiceName changed"}
	case info.invocationID != st.InvocationID:
		return nil, nil, info, errFallback{"invocationID changed"}
	case info.usn < st.HighestCommittedUSN:
		return nil, nil, info, errFallback{"highestCommittedUSN went backwards"}
	case info.usn == st.HighestCommittedUSN:
		return map[string]*Entry{}, nil, info, nil // nothing committed since
	}
	window := fmt.Sprintf("(uSNChanged>=%d)(uSNChanged<=%d)", st.HighestCommittedUSN+1, info.usn)

	changed, err := s.search(ctx, st.DC, "(&"+window+")", []string{"objectGUID", "objectClass"})
	if err != nil {
		return nil, nil, info, sourceError("search changed objects", err)
	}
	inScope, err := s.search(ctx, st.DC, "(&"+s.filter+window+")", s.attrs)
	if err != nil {
		return nil, nil, info, sourceError("search changed entries", err)
	}
	r.Read += len(inScope)
	put = make(map[string]*Entry, len(inScope))
	if err := s.convert(inScope, put); err != nil {
		return nil, nil, info, err
	}

	var groups []string
	changedGUIDs := map[string]bool{}
	for _, e := range changed {
		g := formatGUID(e.GetEqualFoldRawAttributeValue("objectGUID"))
		if g == "" {
			continue
		}
		changedGUIDs[g] = true
		if slices.ContainsFunc(e.GetEqualFoldAttributeValues("objectClass"), func(c string) bool { return strings.EqualFold(c, "group") }) {
			groups = append(groups, e.DN)
		}
	}
	if !s.watchGroups {
		groups = nil
	}
	if len(groups) > maxChangedGroups {
		return nil, nil, info, errFallback{fmt.Sprintf("%d groups changed", len(groups))}
	}
	for chunk := range slices.Chunk(groups, orChunk) {
		terms := make([]string, len(chunk))
		for i, g := range chunk {
			terms[i] = "(memberOf:" + ruleInChain + ":=" + ldap.EscapeFilter(g) + ")"
		}
		members, err := s.search(ctx, st.DC, "(&"+s.filter+"(|"+strings.Join(terms, "")+"))", s.attrs)
		if err != nil {
			return nil, nil, info, sourceError("search members of changed groups", err)
		}
		r.Read += len(members)
		m := make(map[string]*Entry, len(members))
		if err := s.convert(members, m); err != nil {
			return nil, nil, info, err
		}
		maps.Copy(put, m)
	}

	snap := s.view.snapshot()
	var recheck []string
	for _, e := range snap.sorted {
		if put[e.GUID] != nil {
			continue
		}
		if changedGUIDs[e.GUID] || memberOfAny(e, groups) {
			recheck = append(recheck, e.GUID)
		}
	}
	for chunk := range slices.Chunk(recheck, orChunk) {
		terms := make([]string, 0, len(chunk))
		for _, g := range chunk {
			f, err := guidFilter(g)
			if err != nil {
				return nil, nil, info, fmt.Errorf("recheck %s: %w", g, err)
			}
			terms = append(terms, f)
		}
		back, err := s.search(ctx, st.DC, "(&"+s.filter+"(|"+strings.Join(terms, "")+"))", s.attrs)
		if err != nil {
			return nil, nil, info, sourceError("search entries that may have left the scope", err)
		}
		r.Read += len(back)
		m := make(map[string]*Entry, len(back))
		if err := s.convert(back, m); err != nil {
			return nil, nil, info, err
		}
		for _, g := range chunk {
			if e := m[g]; e != nil {
				put[g] = e
			} else {
				remove = append(remove, g)
			}
		}
	}
	return put, remove, info, nil
}

// memberOfAny reports whether e's stored memberOf names one of groups.
func memberOfAny(e *Entry, groups []string) bool {
	if len(groups) == 0 {
		return false
	}
	for _, m := range e.Get("memberOf") {
		nm := normalizeDN(m)
		for _, g := range groups {
			if normalizeDN(g) == nm {
				return true
			}
		}
	}
	return false
}

// dcInfo completes what root (a DC's rootDSE) says with the invocationId of
// the DC's NTDS Settings object, read from the same DC.
func (s *Syncer) dcInfo(ctx context.Context, url string, root *ldap.Entry) (dcInfo, error) {
	info := dcInfo{url: url, dsServiceName: root.GetEqualFoldAttributeValue("dsServiceName")}
	usn, err := strconv.ParseInt(root.GetEqualFoldAttributeValue("highestCommittedUSN"), 10, 64)
	if err != nil || info.dsServiceName == "" {
		return info, sourceError("rootDSE of "+url, errors.New("no highestCommittedUSN or dsServiceName"))
	}
	info.usn = usn
	req := ldap.NewSearchRequest(info.dsServiceName, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"invocationId"}, nil)
	res, err := s.cluster.SearchAt(ctx, url, req)
	if err != nil {
		return info, sourceError("read the invocationId of "+url, err)
	}
	if len(res.Entries) == 1 {
		info.invocationID = formatGUID(res.Entries[0].GetEqualFoldRawAttributeValue("invocationId"))
	}
	if info.invocationID == "" {
		return info, sourceError("read the invocationId of "+url, fmt.Errorf("%s has no readable invocationId", info.dsServiceName))
	}
	return info, nil
}

// search runs a paged subtree search of sync.base_dn on the DC url and
// returns every entry.
func (s *Syncer) search(ctx context.Context, url, filter string, attrs []string) ([]*ldap.Entry, error) {
	res, err := s.cluster.SearchPagedAt(ctx, url, s.subtreeRequest(filter, attrs, 0), uint32(s.cfg.PageSize))
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

// subtreeRequest is a search of sync.base_dn's subtree.
func (s *Syncer) subtreeRequest(filter string, attrs []string, sizeLimit int) *ldap.SearchRequest {
	return ldap.NewSearchRequest(s.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, sizeLimit, 0, false, filter, attrs, nil)
}

// convert adds search entries to out as view entries keyed by GUID.
func (s *Syncer) convert(entries []*ldap.Entry, out map[string]*Entry) error {
	for _, le := range entries {
		e, err := entryFromLDAP(le, s.attrs)
		if err != nil {
			return fmt.Errorf("malformed entry from AD: %w", err)
		}
		if out[e.GUID] != nil {
			return fmt.Errorf("malformed answer from AD: objectGUID %s twice (%s, %s)", e.GUID, out[e.GUID].DN, e.DN)
		}
		out[e.GUID] = &e
	}
	return nil
}
