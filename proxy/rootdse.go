package proxy

import (
	"strings"

	"github.com/jimlambrt/gldap"
)

// OIDs the rootDSE advertises.
const (
	oidPagedResults = "1.2.840.113556.1.4.319"
	oidWhoAmI       = "1.3.6.1.4.1.4203.1.11.3"
	oidStartTLS     = "1.3.6.1.4.1.1466.20037"
)

// vendorName is the rootDSE's vendorName (RFC 3045).
const vendorName = "ldapgate"

// isRootDSE reports whether a search reads the rootDSE: a base-scope search of
// the empty DN (RFC 4512 section 5.1).
func isRootDSE(m *gldap.SearchMessage) bool {
	return m.BaseDN == "" && m.Scope == gldap.BaseObject
}

type attribute struct {
	name   string
	values []string
}

// rootDSE is the gateway's own root DSE; clients (and pascom's "test") read it
// before binding, so it is answered anonymously and never forwarded to AD.
func (s *Server) rootDSE() []attribute {
	ext := []string{oidWhoAmI}
	if s.cfg.StartTLS && s.tls != nil {
		ext = append(ext, oidStartTLS)
	}
	return []attribute{
		{"objectClass", []string{"top"}},
		{"namingContexts", []string{s.baseDN}},
		{"defaultNamingContext", []string{s.baseDN}},
		{"supportedLDAPVersion", []string{"3"}},
		{"supportedControl", []string{oidPagedResults}},
		{"supportedExtension", ext},
		{"vendorName", []string{vendorName}},
		{"vendorVersion", []string{s.version}},
	}
}

// writeRootDSE writes the rootDSE entry and returns the final response. With no attributes requested, "*" or
// "+", it returns them all (as AD does: they are operational but this is what
// clients expect); "1.1" returns none; otherwise the ones named. The filter is
// not evaluated: every client reads the rootDSE with (objectClass=*).
func (s *Server) writeRootDSE(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.SearchMessage) *gldap.SearchResponseDone {
	all := len(m.Attributes) == 0
	want := make(map[string]bool, len(m.Attributes))
	for _, a := range m.Attributes {
		if a == "*" || a == "+" {
			all = true
		}
		want[strings.ToLower(a)] = true
	}
	entry := r.NewSearchResponseEntry("")
	for _, a := range s.rootDSE() {
		if all || want[strings.ToLower(a.name)] {
			values := a.values
			if m.TypesOnly {
				values = nil
			}
			entry.AddAttribute(a.name, values)
		}
	}
	_ = w.Write(entry)
	done := r.NewSearchDoneResponse(gldap.WithResponseCode(codeSuccess))
	for _, c := range m.Controls {
		if _, ok := c.(*gldap.ControlPaging); ok {
			// A paging client expects the control back; an empty cookie ends
			// the paging. gldap: NewControlPaging(n) puts n in the size
			// estimate, so pass 0.
			p, _ := gldap.NewControlPaging(0)
			done.SetControls(p)
		}
	}
	return done
}
