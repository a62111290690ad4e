package upstream

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
)

func TestRootDSEReadsTheUSNOfEachDC(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	ctx := context.Background()

	e, url, err := c.RootDSE(ctx, "highestCommittedUSN", "dsServiceName")
	if err != nil {
		t.Fatalf("RootDSE: %v", err)
	}
	if url != d.dcs[0].URL() {
		t.Errorf("RootDSE answered by %s, want the first DC %s", url, d.dcs[0].URL())
	}
	if got := e.GetAttributeValue("dsServiceName"); got != d.dcs[0].DSServiceName() {
		t.Errorf("dsServiceName = %q, want %q", got, d.dcs[0].DSServiceName())
	}
	usn1, _ := strconv.ParseInt(e.GetAttributeValue("highestCommittedUSN"), 10, 64)

	e2, err := c.RootDSEAt(ctx, d.dcs[1].URL(), "highestCommittedUSN", "dsServiceName")
	if err != nil {
		t.Fatalf("RootDSEAt dc2: %v", err)
	}
	if got := e2.GetAttributeValue("dsServiceName"); got != d.dcs[1].DSServiceName() {
		t.Errorf("dc2 dsServiceName = %q, want %q", got, d.dcs[1].DSServiceName())
	}
	usn2, _ := strconv.ParseInt(e2.GetAttributeValue("highestCommittedUSN"), 10, 64)
	if usn2-usn1 != 100000 {
		t.Errorf("dc2's USN %d is not dc1's %d plus its offset 100000: the read was not pinned", usn2, usn1)
	}
}

func TestSearchAtNeverFailsOver(t *testing.T) {
	t.Parallel()
	d := newDomain(t, 2, adsim.Config{})
	c, _ := newCluster(t, d.config())
	ctx := context.Background()
	req := ldap.NewSearchRequest(d.dcs[1].DSServiceName(), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"invocationId"}, nil)

	res, err := c.SearchAt(ctx, d.dcs[1].URL(), req)
	if err != nil {
		t.Fatalf("SearchAt dc2: %v", err)
	}
	if len(res.Entries) != 1 || string(res.Entries[0].GetRawAttributeValue("invocationId")) != string(d.dcs[1].InvocationID()) {
		t.Errorf("SearchAt dc2 did not return dc2's invocationId")
	}
	if err := c.SetDrained(d.dcs[1].URL(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SearchAt(ctx, d.dcs[1].URL(), req); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("SearchAt a drained DC: got %v, want ErrNoHealthyUpstream (and no failover)", err)
	}
	if _, err := c.SearchAt(ctx, "ldaps://nowhere.invalid:636", req); !errors.Is(err, ErrUnknownServer) {
		t.Errorf("SearchAt an unknown URL: got %v, want ErrUnknownServer", err)
	}
}
