//go:build integration

// Integration tests of the directory view and the sync loop against the Samba
// test bed: issue 5's "Done when" items for the view. Each test creates its own
// users (unique names, in an OU of its own under the users OU) as
// Administrator over LDAPS and deletes them when it ends; the seeded accounts
// are only read, and PBX-Users gets a member only for the test that adds one.
package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/faultproxy"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// syncPBXFilter is the PBX's import scope: the (nested) members of PBX-Users.
const syncPBXFilter = "(&(objectCategory=person)(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + "))"

// syncUserFilter is every user account.
const syncUserFilter = "(&(objectCategory=person)(objectClass=user))"

// syncRig is a view, its Syncer and the importer it feeds, configured from
// configs/testbed.yaml with changes, as serve builds them.
type syncRig struct {
	cfg      *configs.Config
	cluster  *upstream.Cluster
	view     *usersync.View
	syncer   *usersync.Syncer
	importer *usersync.Importer
	plans    []*usersync.Plan // the plan of every import the syncer ran
}

func newSyncRig(t *testing.T, changes map[string]any) *syncRig {
	t.Helper()
	all := map[string]any{
		"sync.data_dir":              t.TempDir(),
		"sync.page_size":             200, // several pages for the 1,200 bulk users
		"upstream.breaker.failures":  100, // the view is under test, not the breaker
		"upstream.pool.service_size": 1,   // every read of a run on one connection
	}
	for k, v := range changes {
		all[k] = v
	}
	cfg, err := configs.Parse(gatewayConfig(t, all), "sync.yaml")
	if err != nil {
		t.Fatalf("configuration: %v", err)
	}
	log := newFileLogger(t, logPath(t, "sync"))
	r := &syncRig{cfg: cfg}
	if r.cluster, err = upstream.New(cfg.Upstream, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cluster.Close() })
	if r.view, err = usersync.OpenView(cfg.Sync.DataDir, usersync.ViewOptions{StaleAfter: cfg.Sync.StaleAfter}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.view.Close() })
	if r.importer, err = usersync.NewImporter(*cfg, log); err != nil {
		t.Fatal(err)
	}
	imp := func(ctx context.Context, entries []usersync.Entry, confirm bool) (bool, error) {
		p, err := r.importer.Plan(entries)
		if err != nil {
			return false, err
		}
		r.plans = append(r.plans, p)
		_, err = r.importer.Apply(ctx, p, usersync.ApplyOptions{ConfirmDeletions: confirm})
		return p.HeldDeletions && !confirm, err
	}
	if r.syncer, err = usersync.NewSyncer(cfg.Sync, r.cluster, r.view, log.Named(t.Name()), usersync.WithImport(imp)); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *syncRig) run(t *testing.T, o usersync.Options) usersync.Result {
	t.Helper()
	res, err := r.syncer.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("sync (%+v): %v", o, err)
	}
	return res
}

// syncLogins maps GUIDs to lowercase sAMAccountNames through views (the first
// that has the GUID), sorted.
func syncLogins(guids []string, views ...map[string]string) []string {
	out := []string{}
	for _, g := range guids {
		for _, v := range views {
			if l, ok := v[g]; ok {
				out = append(out, l)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// syncLoginsOf is the GUID → login map of a view now.
func syncLoginsOf(v *usersync.View) map[string]string {
	m := map[string]string{}
	for _, e := range v.All() {
		m[e.GUID] = strings.ToLower(e.First("sAMAccountName"))
	}
	return m
}

// syncTestOU creates OU=<name>,<users OU> with an OU=moved below it and
// deletes both with everything in them when the test ends (syncDeleteTree).
func syncTestOU(t *testing.T, admin *ldap.Conn) (ou, moved string) {
	t.Helper()
	ou = fmt.Sprintf("OU=synct-%08x,%s", rand.Uint32(), testbed.UsersDN)
	moved = "OU=moved," + ou
	for _, dn := range []string{ou, moved} {
		add := ldap.NewAddRequest(dn, nil)
		add.Attribute("objectClass", []string{"organizationalUnit"})
		if err := admin.Add(add); err != nil {
			t.Fatalf("add %s: %v", dn, err)
		}
	}
	t.Cleanup(func() { syncDeleteTree(t, ou) })
	return ou, moved
}

// syncDeleteTree deletes dn and everything below it, on a connection of its
// own (the test's may have died with its DC) to the first DC that answers,
// retrying for a while: a failover test running beside this one may have
// stopped dc1.
func syncDeleteTree(t *testing.T, dn string) {
	pool, err := certs.LoadCAPool(testbed.CAFile())
	if err != nil {
		t.Errorf("clean up %s: %v", dn, err)
		return
	}
	try := func(d dc) error {
		conn, err := ldap.DialURL(d.url, ldap.DialWithTLSConfig(certs.ClientConfig(pool, d.serverName)),
			ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		conn.SetTimeout(30 * time.Second)
		if err := conn.Bind(testbed.AdminDN, testbed.Administrator.Password); err != nil {
			return err
		}
		res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 30, false,
			"(objectClass=*)", []string{"dn"}, nil))
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil
		}
		if err != nil {
			return err
		}
		dns := make([]string, 0, len(res.Entries))
		for _, e := range res.Entries {
			dns = append(dns, e.DN)
		}
		// Children first: the deepest DNs have the most RDNs.
		slices.SortFunc(dns, func(a, b string) int { return strings.Count(b, ",") - strings.Count(a, ",") })
		for _, d := range dns {
			if err := conn.Del(ldap.NewDelRequest(d, nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				return err
			}
		}
		return nil
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		var errs []error
		for _, d := range dcs {
			err := try(d)
			if err == nil {
				return
			}
			errs = append(errs, fmt.Errorf("%s: %w", d.name, err))
		}
		if time.Now().After(deadline) {
			t.Errorf("clean up %s: %v; delete it by hand (ldapdelete -r)", dn, errors.Join(errs...))
			return
		}
		time.Sleep(2 * time.Second) // a bounded retry while a DC restarts
	}
}

// syncAddUser creates an enabled user login in parent with attrs and returns
// its DN.
func syncAddUser(t *testing.T, admin *ldap.Conn, parent, login string, attrs map[string]string) string {
	t.Helper()
	dn := "CN=" + ldap.EscapeDN(login) + "," + parent
	add := ldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"user"})
	add.Attribute("sAMAccountName", []string{login})
	add.Attribute("userPrincipalName", []string{login + "@" + testbed.Realm})
	add.Attribute("userAccountControl", []string{"512"})
	add.Attribute("unicodePwd", []string{unicodePwd("Passw0rd!" + login)})
	for k, v := range attrs {
		add.Attribute(k, []string{v})
	}
	if err := admin.Add(add); err != nil {
		t.Fatalf("add %s: %v", dn, err)
	}
	return dn
}

func syncModify(t *testing.T, admin *ldap.Conn, dn string, change func(m *ldap.ModifyRequest)) {
	t.Helper()
	m := ldap.NewModifyRequest(dn, nil)
	change(m)
	if err := admin.Modify(m); err != nil {
		t.Fatalf("modify %s: %v", dn, err)
	}
}

// syncLdapsearch runs ldapsearch as svc-pbx on dc1 over LDAPS with paging and
// returns the entries of its LDIF, base64 values decoded.
func syncLdapsearch(t *testing.T, base, filter string, attrs []string) []ldifEntry {
	t.Helper()
	args := append([]string{"-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=10", "-E", "pr=500/noprompt", "-x",
		"-H", testbed.DC1URL, "-D", testbed.Service.UPN(), "-w", testbed.Service.Password, "-b", base, filter}, attrs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ldapsearch", args...)
	// No LDAPNOINIT here: it would make ldapsearch ignore the LDAPTLS_* variables too.
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+testbed.CAFile(), "LDAPTLS_REQCERT=demand")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ldapsearch: %v\n%s", err, stderr.String())
	}
	entries, err := parseLDIF(stdout.String())
	if err != nil {
		t.Fatalf("ldapsearch's LDIF: %v", err)
	}
	return entries
}

// ldifEntry is one entry of ldapsearch's output, values decoded to raw bytes.
type ldifEntry struct {
	dn    string
	attrs map[string][][]byte // lowercase attribute name
}

// parseLDIF reads unwrapped LDIF (ldapsearch -LLL -o ldif-wrap=no).
func parseLDIF(s string) ([]ldifEntry, error) {
	var out []ldifEntry
	var cur *ldifEntry
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case line == "":
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %q has no colon", line)
		}
		raw := []byte(strings.TrimPrefix(value, " "))
		if strings.HasPrefix(value, ":") {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value[1:]))
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", line, err)
			}
			raw = b
		}
		if strings.EqualFold(name, "dn") {
			cur = &ldifEntry{dn: string(raw), attrs: map[string][][]byte{}}
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("attribute line %q before a dn", line)
		}
		cur.attrs[strings.ToLower(name)] = append(cur.attrs[strings.ToLower(name)], raw)
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, nil
}

// syncGUID renders a 16-byte objectGUID as AD tools print it (the view's key).
func syncGUID(b []byte) string {
	if len(b) != 16 {
		return ""
	}
	o := []byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]}
	h := hex.EncodeToString(o)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// TestSyncFullMatchesLdapsearch: a full sync of the seeded domain (with the
// CI's 1,200 bulk users) yields exactly the users ldapsearch returns for the
// same base and filter, compared entry by entry and attribute by attribute.
func TestSyncFullMatchesLdapsearch(t *testing.T) {
	r := newSyncRig(t, map[string]any{"sync.filter": syncUserFilter})
	// Other tests add and delete users of their own in the same OU, some for
	// a second or two: compare in a window where two ldapsearch runs around
	// the sync agree with each other and with the view's set of users. A real
	// difference stays in every attempt and fails below, entry by entry.
	var res usersync.Result
	var want []ldifEntry
	for attempt := 1; attempt <= 5; attempt++ {
		before := syncLdapsearch(t, testbed.UsersDN, syncUserFilter, r.cfg.Sync.Attributes)
		res = r.run(t, usersync.Options{Full: true})
		want = syncLdapsearch(t, testbed.UsersDN, syncUserFilter, r.cfg.Sync.Attributes)
		if slices.EqualFunc(before, want, sameLDIFEntry) && sameGUIDs(r.view, want) {
			break
		}
		t.Logf("the users OU changed around sync %d: again", attempt)
	}
	if res.Kind != usersync.KindFull || res.DC != testbed.DC1URL {
		t.Errorf("a %s sync from %s, want a full one from dc1 %s", res.Kind, res.DC, testbed.DC1URL)
	}

	bulk := 0
	for _, e := range r.view.All() {
		if strings.HasSuffix(strings.ToLower(e.DN), strings.ToLower(testbed.LoadUsersDN)) {
			bulk++
		}
	}
	if bulk < 1200 {
		t.Errorf("the view holds %d bulk users; CI seeds 1,200 (sudo integration/samba/up.sh --users 1200)", bulk)
	}
	if len(want) != r.view.Len() || res.Read != len(want) {
		t.Errorf("ldapsearch returns %d users, the sync read %d and the view holds %d", len(want), res.Read, r.view.Len())
	}
	compared := 0
	for _, le := range want {
		guid := syncGUID(firstRaw(le.attrs["objectguid"]))
		e, ok := r.view.ByGUID(guid)
		if !ok {
			t.Errorf("%s (objectGUID %s) is not in the view", le.dn, guid)
			continue
		}
		if e.DN != le.dn {
			t.Errorf("%s has DN %q in the view", le.dn, e.DN)
		}
		for _, name := range r.cfg.Sync.Attributes {
			var wantVals []string
			for _, v := range le.attrs[strings.ToLower(name)] {
				if strings.EqualFold(name, "objectGUID") {
					wantVals = append(wantVals, syncGUID(v))
				} else {
					wantVals = append(wantVals, string(v))
				}
			}
			slices.Sort(wantVals)
			if got := e.Get(name); !slices.Equal(got, wantVals) {
				t.Errorf("%s: %s is %q in the view, ldapsearch says %q", le.dn, name, got, wantVals)
			}
			compared++
		}
	}
	t.Logf("%d users (%d bulk), %d attribute comparisons; the sync took %s", len(want), bulk, compared, res.Dur)
}

// sameGUIDs reports whether the view holds exactly the entries of want.
func sameGUIDs(v *usersync.View, want []ldifEntry) bool {
	if v.Len() != len(want) {
		return false
	}
	for _, le := range want {
		if _, ok := v.ByGUID(syncGUID(firstRaw(le.attrs["objectguid"]))); !ok {
			return false
		}
	}
	return true
}

// sameLDIFEntry compares two ldapsearch entries value by value.
func sameLDIFEntry(a, b ldifEntry) bool {
	if a.dn != b.dn || len(a.attrs) != len(b.attrs) {
		return false
	}
	for k, va := range a.attrs {
		if !slices.EqualFunc(va, b.attrs[k], bytes.Equal) {
			return false
		}
	}
	return true
}

func firstRaw(v [][]byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return v[0]
}

// TestSyncIncrementalReflectsEachChangeInAD: a change to a user in AD (phone
// number, disable, rename and move, a new member of PBX-Users, a deletion) is
// in the view after the next incremental sync, and the import plan shows
// exactly that change.
func TestSyncIncrementalReflectsEachChangeInAD(t *testing.T) {
	admin := adminConn(t, dcs[0])
	ou, moved := syncTestOU(t, admin)
	tag := ou[len("OU=synct-"):strings.Index(ou, ",")]
	login := func(s string) string { return "st" + tag + s }
	member := func(dn string) {
		syncModify(t, admin, testbed.PBXUsersDN, func(m *ldap.ModifyRequest) { m.Add("member", []string{dn}) })
	}
	// Every user of this test carries its tag in description, and the scope
	// is the PBX filter narrowed to the tag: other tests' users (and their
	// PBX-Users memberships) stay out of this view and its plans.
	user := func(s string, attrs map[string]string) string {
		attrs["description"] = "synctest " + tag
		return syncAddUser(t, admin, ou, login(s), attrs)
	}
	dnA := user("a", map[string]string{"telephoneNumber": "+1 555 0700", "displayName": "Sync A"})
	dnB := user("b", map[string]string{"displayName": "Sync B"})
	dnC := user("c", map[string]string{"displayName": "Sync C"})
	dnD := user("d", map[string]string{"displayName": "Sync D"})
	dnE := user("e", map[string]string{"displayName": "Sync E"})
	for _, dn := range []string{dnA, dnB, dnC, dnE} {
		member(dn)
	}

	filter := "(&" + syncPBXFilter + "(description=synctest " + tag + "))"
	r := newSyncRig(t, map[string]any{"sync.filter": filter, "sync.max_delete_percent": 50})
	first := r.run(t, usersync.Options{})
	if first.Kind != usersync.KindFull || len(r.plans) != 1 {
		t.Fatalf("first sync: %s with %d imports", first.Kind, len(r.plans))
	}
	if r.view.Len() != 4 {
		t.Errorf("the first sync read %d users, want the 4 of PBX-Users", r.view.Len())
	}
	for _, l := range []string{login("a"), login("b"), login("c"), login("e")} {
		if _, ok := r.view.ByLogin(l); !ok {
			t.Fatalf("%s is not in the view after the first sync", l)
		}
	}
	if _, ok := r.view.ByLogin(login("d")); ok {
		t.Fatalf("%s, not in PBX-Users, is in the view", login("d"))
	}

	type planWant struct {
		action string
		login  string
		fields []string // changed fields of an update or disable
	}
	steps := []struct {
		name                    string
		change                  func()
		added, changed, removed []string
		plan                    planWant
	}{
		{
			name: "a new phone number updates the user's phone",
			change: func() {
				syncModify(t, admin, dnA, func(m *ldap.ModifyRequest) { m.Replace("telephoneNumber", []string{"+1 555 0701"}) })
			},
			changed: []string{login("a")}, plan: planWant{"update", login("a"), []string{"phone"}},
		},
		{
			name: "a disabled account is a disable",
			change: func() {
				syncModify(t, admin, dnB, func(m *ldap.ModifyRequest) { m.Replace("userAccountControl", []string{"514"}) })
			},
			changed: []string{login("b")}, plan: planWant{"disable", login("b"), []string{"disabled"}},
		},
		{
			name: "a renamed and moved user is an update of its display name",
			change: func() {
				syncModify(t, admin, dnC, func(m *ldap.ModifyRequest) { m.Replace("displayName", []string{"Sync C Renamed"}) })
				if err := admin.ModifyDN(ldap.NewModifyDNRequest(dnC, "CN="+login("c")+"-renamed", true, moved)); err != nil {
					t.Fatalf("rename and move %s: %v", dnC, err)
				}
			},
			changed: []string{login("c")}, plan: planWant{"update", login("c"), []string{"displayname"}},
		},
		{
			name:   "a user added to PBX-Users is a create",
			change: func() { member(dnD) },
			added:  []string{login("d")}, plan: planWant{"create", login("d"), nil},
		},
		{
			name: "a deleted user is a removal",
			change: func() {
				if err := admin.Del(ldap.NewDelRequest(dnE, nil)); err != nil {
					t.Fatalf("delete %s: %v", dnE, err)
				}
			},
			removed: []string{login("e")}, plan: planWant{"remove", login("e"), nil},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := syncLoginsOf(r.view)
			st.change()
			res := r.run(t, usersync.Options{})
			if res.Kind != usersync.KindIncremental && len(st.removed) == 0 {
				t.Errorf("a %s sync (%s), want an incremental one", res.Kind, res.Reason)
			}
			if len(st.removed) > 0 && len(res.Removed) == 0 {
				// A deletion that no group change reveals waits for the full
				// reconcile: run it now.
				t.Logf("the incremental sync did not see the deletion; running the full reconcile")
				res = r.run(t, usersync.Options{Full: true})
			}
			after := syncLoginsOf(r.view)
			for _, c := range []struct {
				what      string
				got, want []string
			}{
				{"added", syncLogins(res.Added, after), st.added},
				{"changed", syncLogins(res.Changed, after), st.changed},
				{"removed", syncLogins(res.Removed, before), st.removed},
			} {
				if c.want == nil {
					c.want = []string{}
				}
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s %q, want %q", c.what, c.got, c.want)
				}
			}
			p := r.plans[len(r.plans)-1]
			var items []usersync.PlanItem
			for _, l := range [][]usersync.PlanItem{p.Creates, p.Updates, p.Disables, p.Removes} {
				items = append(items, l...)
			}
			if len(items) != 1 || string(items[0].Action) != st.plan.action || items[0].User.Username != st.plan.login {
				t.Fatalf("the plan: %s; want exactly one %s of %s", p.Summary(), st.plan.action, st.plan.login)
			}
			var fields []string
			for _, c := range items[0].Changes {
				fields = append(fields, c.Field)
			}
			if !slices.Equal(fields, st.plan.fields) {
				t.Errorf("the plan's %s of %s changes %q, want %q", st.plan.action, st.plan.login, fields, st.plan.fields)
			}
		})
	}
	if e, ok := r.view.ByLogin(login("c")); !ok || !strings.EqualFold(e.DN, "CN="+login("c")+"-renamed,"+moved) {
		t.Errorf("the moved user's DN in the view: %q", e.DN)
	}
	// A full sync now finds nothing the incremental ones missed.
	if res := r.run(t, usersync.Options{Full: true}); len(res.Added)+len(res.Changed)+len(res.Removed) != 0 {
		t.Errorf("a full sync after the incremental ones found %d added, %d changed, %d removed", len(res.Added), len(res.Changed), len(res.Removed))
	}
}

// TestSyncConnectionCutMidPagingKeepsViewAndImport: killing the DC
// connection in the middle of a paged full sync (a fault proxy in front of
// dc1) leaves the previous view and the previous applied import byte for byte
// unchanged; the next run completes.
func TestSyncConnectionCutMidPagingKeepsViewAndImport(t *testing.T) {
	p := startFaultProxy(t, "127.0.0.1:636")
	r := newSyncRig(t, map[string]any{
		"sync.filter":      syncUserFilter,
		"upstream.servers": []any{map[string]any{"url": "ldaps://" + p.Addr(), "server_name": testbed.DC1Name}},
	})
	r.run(t, usersync.Options{})
	admin := adminConn(t, dcs[0])
	ou, _ := syncTestOU(t, admin)
	newcomer := "stcut" + ou[len("OU=synct-"):strings.Index(ou, ",")]
	syncAddUser(t, admin, ou, newcomer, map[string]string{"displayName": "Sync Cut", "telephoneNumber": "+1 555 0777"})

	files := []string{usersync.ViewPath(r.cfg.Sync.DataDir), filepath.Join(r.cfg.Sync.DataDir, "applied.json"),
		r.cfg.Import.CSVFile, r.cfg.Import.JSONFile}
	before := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("after the first sync: %v", err)
		}
		before[f] = b
	}
	imports := len(r.plans)

	setFault(t, p, syncCutMidPaging(t, r, p))
	res, err := r.syncer.Run(context.Background(), usersync.Options{Full: true})
	if !errors.Is(err, usersync.ErrSource) || res.Outcome != usersync.OutcomeSourceError {
		t.Fatalf("the cut sync: %s, %v; want a source error", res.Outcome, err)
	}
	if !strings.Contains(err.Error(), "search "+testbed.UsersDN) {
		t.Errorf("the cut was not in the paged search: %v", err)
	}
	t.Logf("the cut sync: %v", err)
	for _, f := range files {
		if b, _ := os.ReadFile(f); !bytes.Equal(b, before[f]) {
			t.Errorf("%s changed", f)
		}
	}
	if len(r.plans) != imports {
		t.Errorf("the import ran after a failed sync")
	}
	if _, ok := r.view.ByLogin(newcomer); ok {
		t.Errorf("the newcomer reached the view through the cut sync")
	}

	setFault(t, p, faultproxy.None())
	res = r.run(t, usersync.Options{})
	if _, ok := r.view.ByLogin(newcomer); res.Outcome != usersync.OutcomeApplied || !ok {
		t.Errorf("the next run: %s, %d added, newcomer in the view %v; want applied with the newcomer", res.Outcome, len(res.Added), ok)
	}
	// Other tests may add users of their own meanwhile: look for the newcomer.
	pl := r.plans[len(r.plans)-1]
	if !slices.ContainsFunc(pl.Creates, func(it usersync.PlanItem) bool { return it.User.Username == newcomer }) {
		t.Errorf("the next import: %s; want the newcomer created", pl.Summary())
	}
}

// syncCutMidPaging measures, on the rig's pooled connection through p, what a
// full sync reads before its paged search and the paged search itself, and
// returns the fault that cuts the connection halfway through the paging.
func syncCutMidPaging(t *testing.T, r *syncRig, p *faultproxy.Proxy) faultproxy.Fault {
	t.Helper()
	ctx := context.Background()
	url := r.cfg.Upstream.Servers[0].URL
	start := p.BytesToClient()
	root, err := r.cluster.RootDSEAt(ctx, url, "highestCommittedUSN", "dsServiceName")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.cluster.SearchAt(ctx, url, ldap.NewSearchRequest(root.GetAttributeValue("dsServiceName"), ldap.ScopeBaseObject,
		ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"invocationId"}, nil)); err != nil {
		t.Fatal(err)
	}
	prefix := p.BytesToClient() - start
	start = p.BytesToClient()
	res, err := r.cluster.SearchPagedAt(ctx, url, ldap.NewSearchRequest(r.cfg.Sync.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		r.cfg.Sync.MaxEntries+1, 0, false, r.cfg.Sync.Filter, r.cfg.Sync.Attributes, nil), uint32(r.cfg.Sync.PageSize))
	if err != nil {
		t.Fatal(err)
	}
	paged := p.BytesToClient() - start
	if pages := len(res.Entries) / r.cfg.Sync.PageSize; pages < 4 {
		t.Fatalf("%d entries are %d pages: too few to cut in the middle", len(res.Entries), pages)
	}
	t.Logf("before the paged search %d bytes, the paged search %d bytes (%d entries): cutting at %d", prefix, paged, len(res.Entries), prefix+paged/2)
	return faultproxy.CutAfter(prefix + paged/2)
}

// TestSyncFilterChangeRemoving90PercentIsHeld: with the real binary, a filter
// change that would remove 90% of the imported users is held (exit code 1,
// the import unchanged); --dry-run shows the held removals and writes
// nothing; --confirm-deletions applies them.
func TestSyncFilterChangeRemoving90PercentIsHeld(t *testing.T) {
	admin := adminConn(t, dcs[0])
	ou, _ := syncTestOU(t, admin)
	tag := ou[len("OU=synct-"):strings.Index(ou, ",")]
	for i := range 10 {
		attrs := map[string]string{"displayName": fmt.Sprintf("Sync Held %d", i)}
		if i == 0 {
			attrs["description"] = "keep"
		}
		syncAddUser(t, admin, ou, fmt.Sprintf("sth%s%d", tag, i), attrs)
	}
	dataDir := t.TempDir()
	config := func(filter string) string {
		path := filepath.Join(t.TempDir(), "ldapgate.yaml")
		data := gatewayConfig(t, map[string]any{"sync.data_dir": dataDir, "sync.base_dn": ou, "sync.filter": filter})
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	all, keep := config(syncUserFilter), config("(&"+syncUserFilter+"(description=keep))")
	bin := gatewayBinary(t)
	sync := func(args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"sync"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		switch {
		case errors.As(err, &exitErr):
			return exitErr.ExitCode(), stdout.String(), stderr.String()
		case err != nil:
			t.Fatalf("ldapgate sync: %v", err)
		}
		return 0, stdout.String(), stderr.String()
	}
	csvRows := func() int {
		b, err := os.ReadFile(filepath.Join(dataDir, "users.csv"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "\n") - 1
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		for _, f := range []string{usersync.ViewFile, "applied.json", "users.csv", "import.json"} {
			b, _ := os.ReadFile(filepath.Join(dataDir, f))
			m[f] = string(b)
		}
		return m
	}

	if code, stdout, stderr := sync("--config", all); code != 0 || csvRows() != 10 {
		t.Fatalf("the first import: exit code %d, %d CSV rows; stdout\n%s\nstderr\n%s", code, csvRows(), stdout, stderr)
	}
	held := snapshot()

	code, stdout, stderr := sync("--config", keep, "--dry-run")
	if code != 0 || strings.Count(stdout, "remove (held)") != 9 {
		t.Errorf("dry run of the narrower filter: exit code %d; want 9 held removals in the table:\n%s\n%s", code, stdout, stderr)
	}
	if !maps.Equal(snapshot(), held) {
		t.Errorf("the dry run wrote into the data directory")
	}
	t.Logf("ldapgate sync --dry-run:\n%s", stdout)

	code, stdout, stderr = sync("--config", keep)
	if code != 1 || !strings.Contains(stderr, "deletions held") || !strings.Contains(stdout, "9 removals held (9 removals are 90.0%") {
		t.Errorf("the narrower filter: exit code %d; want 1 with 9 removals held; stdout\n%s\nstderr\n%s", code, stdout, stderr)
	}
	if got := snapshot(); got["users.csv"] != held["users.csv"] || got["applied.json"] != held["applied.json"] {
		t.Errorf("held removals changed the import")
	}

	code, stdout, stderr = sync("--config", keep, "--confirm-deletions")
	if code != 0 || csvRows() != 1 || !strings.Contains(stdout, "9 removed") {
		t.Errorf("--confirm-deletions: exit code %d, %d CSV rows; want 0 and 1; stdout\n%s\nstderr\n%s", code, csvRows(), stdout, stderr)
	}
}
