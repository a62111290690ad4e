package configs

import (
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// maxPageSize is AD's MaxPageSize: a larger page is cut to it.
const maxPageSize = 1000

// fillSyncDerived sets the sync and import defaults that depend on other keys.
func (c *Config) fillSyncDerived() {
	s := &c.Sync
	if s.BaseDN == "" {
		s.BaseDN = c.Upstream.UserBaseDN
	}
	if s.Filter == "" {
		s.Filter = c.Upstream.UserFilter
	}
	csvFile, jsonFile := DefaultImportFiles(s.DataDir)
	if c.Import.CSVFile == "" && s.DataDir != "" {
		c.Import.CSVFile = csvFile
	}
	if c.Import.JSONFile == "" && s.DataDir != "" {
		c.Import.JSONFile = jsonFile
	}
}

// DefaultImportFiles returns where the import writes when import.csv_file and
// import.json_file are not set: users.csv and import.json in dataDir
// (sync.data_dir).
func DefaultImportFiles(dataDir string) (csvFile, jsonFile string) {
	return filepath.Join(dataDir, "users.csv"), filepath.Join(dataDir, "import.json")
}

// validate checks the directory view's settings against the upstream base.
func (s *Sync) validate(p *problems, upstreamBase string) {
	if s.DataDir == "" {
		p.addf("sync.data_dir", "required: a directory ldapgate may write, e.g. /var/lib/ldapgate")
	}
	if dn, err := ldap.ParseDN(s.BaseDN); err != nil {
		p.addf("sync.base_dn", "not a valid DN (%w): write the OU holding the users, e.g. OU=AADDC Users,DC=contoso,DC=onmicrosoft,DC=com", err)
	} else if base, err := ldap.ParseDN(upstreamBase); err == nil && len(base.RDNs) > 0 && !base.EqualFold(dn) && !base.AncestorOfFold(dn) {
		p.addf("sync.base_dn", "%q is not inside upstream.base_dn %q: use an OU under it", s.BaseDN, upstreamBase)
	}
	if _, err := ldap.CompileFilter(s.Filter); err != nil {
		p.addf("sync.filter", "not a valid LDAP filter (%w): e.g. (&(objectCategory=person)(objectClass=user))", err)
	}
	if s.ExcludeFilter != "" {
		if _, err := ldap.CompileFilter(s.ExcludeFilter); err != nil {
			p.addf("sync.exclude_filter", "not a valid LDAP filter (%w): e.g. (sAMAccountName=svc-*)", err)
		}
	}
	for _, need := range []string{"sAMAccountName", "objectGUID", "userAccountControl", "uSNChanged"} {
		if !slices.ContainsFunc(s.Attributes, func(a string) bool { return strings.EqualFold(a, need) }) {
			p.addf("sync.attributes", "must include %s: the view is keyed and kept in step by it", need)
		}
	}
	if s.PageSize < 1 || s.PageSize > maxPageSize {
		p.addf("sync.page_size", "must be between 1 and %d (AD's MaxPageSize), not %d", maxPageSize, s.PageSize)
	}
	checkPositive(p, "sync.interval", s.Interval, "5m")
	if s.Jitter < 0 || (s.Interval > 0 && s.Jitter >= s.Interval) {
		p.addf("sync.jitter", "must be at least 0 and less than sync.interval (%s), not %s: e.g. 30s", s.Interval, s.Jitter)
	}
	checkPositive(p, "sync.retry_interval", s.RetryInterval, "30s")
	if s.FullInterval < s.Interval {
		p.addf("sync.full_interval", "must be at least sync.interval (%s), not %s: e.g. 1h", s.Interval, s.FullInterval)
	}
	checkPositive(p, "sync.timeout", s.Timeout, "5m")
	if s.MaxEntries < 1 {
		p.addf("sync.max_entries", "must be at least 1, not %d (default 200000)", s.MaxEntries)
	}
	if s.WriteBatch < 100 || s.WriteBatch > 1_000_000 {
		p.addf("sync.write_batch", "must be between 100 and 1000000, not %d (default 5000)", s.WriteBatch)
	}
	if s.MaxDeletePercent < 0 || s.MaxDeletePercent > 100 {
		p.addf("sync.max_delete_percent", "must be between 0 and 100, not %g (default 10)", s.MaxDeletePercent)
	}
	checkPositive(p, "sync.stale_after", s.StaleAfter, "15m")
	if s.OutageMaxAge < 0 {
		p.addf("sync.outage_max_age", "must be 0 (never answer from a stale view) or positive, not %s (default 24h)", s.OutageMaxAge)
	}
}

// validate checks the import's mode and sinks.
func (im *Import) validate(p *problems) {
	if im.Mode != "create_update" && im.Mode != "create_update_remove" {
		p.addf("import.mode", "%q is not a mode: use create_update or create_update_remove", im.Mode)
	}
	w := im.Webhook
	if w.URL != "" {
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.addf("import.webhook.url", "not an http(s) URL: e.g. https://pbx.example.com/hooks/users")
		}
	}
	checkPositive(p, "import.webhook.timeout", w.Timeout, "10s")
	if w.MaxAttempts < 1 || w.MaxAttempts > 20 {
		p.addf("import.webhook.max_attempts", "must be between 1 and 20, not %d (default 5)", w.MaxAttempts)
	}
}

// validate checks the admin/export HTTP listener.
func (h *HTTP) validate(p *problems) {
	if h.Address != "" {
		checkHostPort(p, "http.address", h.Address, "127.0.0.1:8389")
	}
	if (h.BasicUser == "") != (h.BasicPassword == "") {
		p.addf("http.basic_user", "basic_user and basic_password go together: set both, or neither")
	}
	st := h.Status
	checkIntRange(p, "http.status.sync_runs", st.SyncRuns, 1, 1000, 20)
	checkIntRange(p, "http.status.auth_failures", st.AuthFailures, 1, 100000, 200)
	checkIntRange(p, "http.status.recent_failures", st.RecentFailures, 0, min(max(st.AuthFailures, 0), 1000), 10)
	checkIntRange(p, "http.status.plan_rows", st.PlanRows, 0, 100000, 100)
}

// checkIntRange records a problem when v is outside [lo, hi].
func checkIntRange(p *problems, key string, v, lo, hi, def int) {
	if v < lo || v > hi {
		p.addf(key, "must be between %d and %d, not %d: set it to %d (the default) or another value in that range", lo, hi, v, def)
	}
}
