package adsim

import (
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/sync/ldapfilter"
)

// OIDs the rootDSE lists.
const (
	// ControlPaging is the paged results control (RFC 2696).
	ControlPaging = "1.2.840.113556.1.4.319"
	// ControlShowDeleted is AD's show-deleted control (listed, not acted on).
	ControlShowDeleted = "1.2.840.113556.1.4.417"
)

// rootDSE builds the DC's rootDSE as it stands now.
func (dc *DC) rootDSE() *entry {
	d := dc.dir
	usn := d.HighestCommittedUSN() + dc.usnOffset
	upperRealm := strings.ToUpper(testbed.Realm)
	return &entry{attrs: []attribute{
		attr("configurationNamingContext", ConfigDN),
		attr("currentTime", generalizedTime(d.now())),
		attr("defaultNamingContext", testbed.BaseDN),
		attr("dnsHostName", dc.host),
		attr("domainControllerFunctionality", "7"),
		attr("domainFunctionality", "7"),
		attr("dsServiceName", dc.ntdsDN),
		attr("forestFunctionality", "7"),
		attr("highestCommittedUSN", itoa(usn)),
		attr("isGlobalCatalogReady", "TRUE"),
		attr("isSynchronized", "TRUE"),
		attr("ldapServiceName", testbed.Realm+":"+dc.name+"$@"+upperRealm),
		attr("namingContexts", testbed.BaseDN, ConfigDN, SchemaDN),
		attr("rootDomainNamingContext", testbed.BaseDN),
		attr("schemaNamingContext", SchemaDN),
		attr("serverName", dc.serverDN),
		attr("subschemaSubentry", "CN=Aggregate,"+SchemaDN),
		attr("supportedCapabilities", "1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1670", "1.2.840.113556.1.4.1791"),
		attr("supportedControl", ControlPaging, ControlShowDeleted, "1.2.840.113556.1.4.473", "1.2.840.113556.1.4.528", "1.2.840.113556.1.4.841"),
		attr("supportedLDAPPolicies", "MaxPageSize", "MaxConnIdleTime", "MaxResultSetSize", "MaxQueryDuration"),
		attr("supportedLDAPVersion", "3", "2"),
		attr("supportedSASLMechanisms", "GSSAPI", "GSS-SPNEGO", "EXTERNAL", "DIGEST-MD5"),
	}}
}

// searchRootDSE answers a base search of the empty DN, which anyone may make.
func (dc *DC) searchRootDSE(filter *ber.Packet, sel selection, typesOnly bool) searchOutcome {
	root := dc.rootDSE()
	// The rootDSE has no objectClass attribute, but (objectClass=*) must match it.
	attrs := func(name string) []string {
		if strings.EqualFold(name, "objectClass") {
			return []string{"top"}
		}
		return root.values(name)
	}
	var ev ldapfilter.FilterEvaluator
	ok, err := ev.Match(filter, attrs)
	if err != nil {
		return searchOutcome{code: resultProtocolError, diag: err.Error()}
	}
	out := searchOutcome{sel: sel, types: typesOnly}
	if ok {
		out.entries = []*entry{root}
	}
	return out
}
