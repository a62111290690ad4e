// Package configs is ldapgate's configuration: the schema (one struct per part, each
// field documented with its default), loading from YAML with ${ENV} expansion and
// *_file secrets, and validation whose errors name the offending key.
package configs

import (
	"fmt"
	"io"
	"time"
)

// Config is the whole configuration of one ldapgate process.
//
// A minimal file for a real AADDS (see ldapgate.example.yaml for every key):
//
//	listen:
//	  address: 127.0.0.1:389
//	upstream:
//	  servers:
//	    - url: ldaps://ldaps.contoso.onmicrosoft.com:636
//	  ca_file: /etc/ldapgate/aadds-ca.pem
//	  bind_dn: svc-pbx@contoso.onmicrosoft.com
//	  bind_password_file: /etc/ldapgate/bind-password
//	  base_dn: DC=contoso,DC=onmicrosoft,DC=com
//	  netbios_domain: CONTOSO
//
// Load and Parse fill a Config from YAML and validate it. Printing a Config with
// fmt (any verb), encoding/json or yaml.Marshal never shows a secret: Secret
// values come out as "[redacted]".
type Config struct {
	// Listen is the LDAP listener the PBX talks to.
	Listen Listen `yaml:"listen"`
	// Upstream is the domain controllers and the service account.
	Upstream Upstream `yaml:"upstream"`
	// Cache holds the sizes and lifetimes of the gateway's caches.
	Cache Cache `yaml:"cache"`
	// Sync is the directory view: which users are in scope and how it is kept
	// in step with AD.
	Sync Sync `yaml:"sync"`
	// Import is the user import the view feeds: pascom's mapping, mode and sinks.
	Import Import `yaml:"import"`
	// HTTP is the small admin/export HTTP listener.
	HTTP HTTP `yaml:"http"`
	// Log is the process log.
	Log Log `yaml:"log"`
	// Audit is where the audit log (one line per authentication decision)
	// goes.
	Audit Audit `yaml:"audit"`
	// Search is how the listener answers searches: who may search, where,
	// which attributes come back and the bounds on paged searches.
	Search Search `yaml:"search"`
	// Lockout is the guard that keeps the gateway from locking AD accounts:
	// negative cache, per-user budget, per-client rate limit, failure timing.
	Lockout Lockout `yaml:"lockout"`
	// Offline is the opt-in offline credential cache used while no DC can be
	// reached.
	Offline Offline `yaml:"offline"`
	// Reload is how serve notices a changed configuration file.
	Reload Reload `yaml:"reload"`

	// warnings are what Load or Parse found worth a warning; see Warnings.
	warnings []string
}

// Listen configures the client-facing LDAP listener.
type Listen struct {
	// Address is the plain-LDAP listen address. Default "127.0.0.1:389".
	Address string `yaml:"address"`
	// LDAPSAddress is an optional LDAPS listen address (e.g. "127.0.0.1:636");
	// empty means no LDAPS listener. Needs TLS.
	LDAPSAddress string `yaml:"ldaps_address"`
	// StartTLS offers the StartTLS extended operation on the plain listener. Needs
	// TLS. Default false.
	StartTLS bool `yaml:"starttls"`
	// TLS is the listener's certificate, for LDAPS and StartTLS.
	TLS ListenTLS `yaml:"tls"`
	// MaxConnections caps the client connections open at once. Default 1024.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps the connections open at once from one client
	// address. Default 256.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// IdleTimeout closes a connection that has sent nothing and has no request in
	// flight for this long. Default 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxMessageBytes caps the size of one LDAP message from a client; a larger
	// one closes the connection. Default 131072 (128 KiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxInFlight caps the requests being served at once across all clients;
	// past it new requests are answered 51 busy. Default 512.
	MaxInFlight int `yaml:"max_in_flight"`
	// ShutdownTimeout is how long a graceful shutdown waits for in-flight
	// requests. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ProxyProtocol takes the client's address from a PROXY protocol header
	// sent by a load balancer in front of the listeners. Off by default.
	ProxyProtocol ProxyProtocol `yaml:"proxy_protocol"`
}

// ProxyProtocol configures PROXY protocol (v1 and v2, as HAProxy's send-proxy
// and send-proxy-v2 write it) on both listeners, so that the audit log, the
// per-address connection limit and the lockout guard's per-client rate limit
// see the client behind a load balancer instead of the balancer.
//
// A connection from a trusted address must start with a header (before TLS on
// the LDAPS listener): without one, or with a malformed one, it is closed. The
// client address is the header's source; a header of a connection the balancer
// made itself (v2 LOCAL, v1 UNKNOWN: health checks) keeps the balancer's
// address. A connection from any other address keeps its own address: one
// that starts with a header is closed, the header never believed.
type ProxyProtocol struct {
	// Trusted are the load balancers' addresses, each a CIDR prefix
	// ("10.0.0.0/29") or one IP ("10.0.0.5"). Empty (the default): PROXY
	// protocol is off and no connection may send a header.
	Trusted []string `yaml:"trusted"`
	// HeaderTimeout bounds how long a trusted connection may take to send its
	// header. Default 5s, at most 1m.
	HeaderTimeout time.Duration `yaml:"header_timeout"`
}

// ListenTLS names the listener's certificate and key files (PEM).
type ListenTLS struct {
	// CertFile is the certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the private key.
	KeyFile string `yaml:"key_file"`
}

// Upstream configures the domain controllers, the TLS towards them and the
// service account the gateway searches with.
type Upstream struct {
	// Servers are the domain controllers in order of preference: the first
	// usable one gets the traffic, and traffic returns to it once it recovers.
	// At least one; each URL must be ldaps://.
	Servers []Server `yaml:"servers"`
	// CAFile is the PEM bundle that verifies the DCs' certificates. Required:
	// upstream TLS is always verified.
	CAFile string `yaml:"ca_file"`
	// BindDN is the service account, as a DN or UPN. Required.
	BindDN string `yaml:"bind_dn"`
	// BindPassword is the service account's password; may be "${ENV_VAR}".
	// Exactly one of BindPassword and BindPasswordFile. Never empty: AD treats a
	// bind with a name and an empty password as an anonymous bind.
	BindPassword Secret `yaml:"bind_password"`
	// BindPasswordFile is a file holding the service account's password (a
	// trailing newline is removed). Load and Parse read it into BindPassword, so
	// after loading BindPassword is always the password to use; keep the file
	// mode 0600 (a file that group or others can read gives a warning).
	BindPasswordFile string `yaml:"bind_password_file"`
	// BaseDN is the part of the directory the gateway serves: binds on DNs outside
	// it are refused. Required.
	BaseDN string `yaml:"base_dn"`
	// UserBaseDN is where logins are looked up; it must be BaseDN or under it.
	// Default BaseDN (filled in by Validate). On AADDS use
	// "OU=AADDC Users,<BaseDN>": a search from the domain root returns referrals.
	UserBaseDN string `yaml:"user_base_dn"`
	// UserFilter selects user entries. Default
	// "(&(objectCategory=person)(objectClass=user))".
	UserFilter string `yaml:"user_filter"`
	// NetBIOSDomain is the domain's short name accepted in DOMAIN\user logins
	// (case-insensitive). Empty means DOMAIN\user logins are refused.
	NetBIOSDomain string `yaml:"netbios_domain"`
	// DialTimeout bounds a TCP connect plus TLS handshake. Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// OpTimeout bounds each upstream operation (bind, search page). Default 5s.
	OpTimeout time.Duration `yaml:"op_timeout"`
	// Pool sizes and recycles the pooled LDAPS connections per DC.
	Pool Pool `yaml:"pool"`
	// Breaker configures the circuit breaker of each DC.
	Breaker Breaker `yaml:"breaker"`
	// CertCheckInterval is how often a DC that has had no TLS handshake for
	// that long (a standby DC, above all) gets one made only to read its
	// certificate's expiry for /metrics and /status: a connect and a
	// handshake, no bind, checked at each breaker.probe_interval. 0 turns
	// the check off. Default 1h.
	CertCheckInterval time.Duration `yaml:"cert_check_interval"`
}

// Server is one domain controller.
type Server struct {
	// URL is the DC's LDAPS URL, e.g. "ldaps://dc1.contoso.com:636". The port
	// defaults to 636; Validate rewrites the URL as "ldaps://host:port".
	URL string `yaml:"url"`
	// ServerName is the name expected in the DC's certificate. Default the URL's
	// host (filled in by Validate); set it when the URL uses an IP address and
	// the certificate names the DC by DNS name.
	ServerName string `yaml:"server_name"`
}

// Pool sizes and recycles the upstream connections of one DC.
type Pool struct {
	// ServiceSize is the most service-account connections (searches) per DC.
	// Default 4.
	ServiceSize int `yaml:"service_size"`
	// BindSize is the most user-bind connections per DC. Default 8.
	BindSize int `yaml:"bind_size"`
	// MaxLifetime recycles a connection this long after it was opened. Default 10m.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// IdleTimeout closes a pooled connection unused this long; it must stay under
	// AD's MaxConnIdleTime of 900 s. Default 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WaitTimeout is how long a request waits for a free connection before it is
	// answered 51 busy. Default 2s.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
}

// Breaker configures a DC's circuit breaker. Only transport failures, timeouts and
// the results busy (51) and unavailable (52) count as failures.
type Breaker struct {
	// Failures is the number of consecutive failures that opens the breaker.
	// Default 3.
	Failures int `yaml:"failures"`
	// ProbeInterval is how long an open breaker waits before probing the DC with a
	// fresh LDAPS connection, service bind and rootDSE read. Default 10s.
	ProbeInterval time.Duration `yaml:"probe_interval"`
}

// Cache sizes the gateway's caches.
type Cache struct {
	// DN maps normalised logins to the canonical DN AD returned.
	DN CacheSize `yaml:"dn"`
}

// CacheSize is a bounded cache with entries that expire.
type CacheSize struct {
	// Size is the most entries. Default 10000.
	Size int `yaml:"size"`
	// TTL is how long an entry is used. Default 15m.
	TTL time.Duration `yaml:"ttl"`
}

// Search configures the searches the listener answers: pascom's "LDAP
// authentication" tab binds as a proxy user and searches (sAMAccountName=...)
// under a base; its user import runs paged searches. Searches are forwarded to
// AD on the service account's connections; the listener never writes.
//
//	search:
//	  proxy_user: svc-pbx@contoso.onmicrosoft.com
//	  proxy_password_file: /etc/ldapgate/proxy-password   # optional local secret
//	  attributes: [dn, sAMAccountName, displayName, mail, telephoneNumber]
//	  paging:
//	    idle_timeout: 60s
type Search struct {
	// BaseDN is the subtree clients may search: a search whose base is neither
	// BaseDN nor under it is answered 32 noSuchObject. Empty (the default)
	// means upstream.base_dn; otherwise it must lie inside upstream.base_dn.
	BaseDN string `yaml:"base_dn"`
	// ProxyUser is the PBX's proxy user (pascom's "proxy user"), as a DN, a UPN
	// or DOMAIN\name: a successful bind as this account grants search rights
	// on that connection. It is compared on the canonical identity (the DN AD
	// returns for it), so every spelling of the account is the same user; it is
	// looked up like a login (a UPN or name under upstream.user_base_dn, a DN
	// anywhere under upstream.base_dn). With ProxyPassword it need not exist in
	// AD, and its spellings are compared as typed (JDoe, AADDS\jdoe and
	// jdoe@<domain> are one). Empty (the default) means upstream.bind_dn.
	ProxyUser string `yaml:"proxy_user"`
	// ProxyPassword, when set, is a local secret for ProxyUser: the proxy
	// user's bind is checked against it here, in constant time, and never sent
	// to AD, so the PBX needs no AD account of its own. Empty (the default):
	// the proxy user's bind goes to AD like every other bind. May be
	// "${ENV_VAR}"; at most one of ProxyPassword and ProxyPasswordFile.
	ProxyPassword Secret `yaml:"proxy_password"`
	// ProxyPasswordFile is a file holding ProxyPassword (a trailing newline is
	// removed); Load and Parse read it into ProxyPassword. Keep it mode 0600.
	ProxyPasswordFile string `yaml:"proxy_password_file"`
	// AllowUserSearch lets every successfully bound user search, not only the
	// proxy user. Default false.
	AllowUserSearch bool `yaml:"allow_user_search"`
	// AllowAnonymousSearch lets anonymous connections search (the rootDSE is
	// always readable). Default false: such searches get 50
	// insufficientAccessRights.
	AllowAnonymousSearch bool `yaml:"allow_anonymous_search"`
	// Attributes is the allow-list of attributes a search may return; others
	// are never returned, even when asked for by name. "*" in a request means
	// this list, "1.1" none; "dn" stands for the entry's DN, which every entry
	// carries. Default: what a PBX needs, pascom's import included (dn,
	// sAMAccountName, userPrincipalName, displayName, givenName, sn, mail,
	// telephoneNumber, mobile, ipPhone, homePhone, facsimileTelephoneNumber,
	// company, memberOf, objectClass, objectGUID, userAccountControl).
	Attributes []string `yaml:"attributes"`
	// Paging bounds the paged searches (RFC 2696) the listener keeps open.
	Paging SearchPaging `yaml:"paging"`
}

// SearchPaging bounds the paged searches the listener keeps open. AD's paging
// cookies belong to the connection that issued them, so each open paged search
// holds one upstream service connection of its own until it ends.
type SearchPaging struct {
	// IdleTimeout ends a paged search whose client has not asked for the next
	// page for this long, and frees its upstream connection; it must stay under
	// AD's MaxConnIdleTime of 900 s. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxPerConnection is how many paged searches one client connection may
	// have open; a new one past it abandons the one used least recently. At
	// most 10 (AD's MaxResultSetsPerConn). Default 1: a new paged search on a
	// connection abandons the previous one.
	MaxPerConnection int `yaml:"max_per_connection"`
	// MaxOpen is how many paged searches may be open across all clients; past
	// it a new one is answered 51 busy. Default 16.
	MaxOpen int `yaml:"max_open"`
}

// Sync configures the directory view and the sync loop that keeps it.
type Sync struct {
	// Enabled runs the sync loop inside serve. Default true.
	Enabled bool `yaml:"enabled"`
	// DataDir holds the view's store (view.db) and the import's output files.
	// Default "/var/lib/ldapgate".
	DataDir string `yaml:"data_dir"`
	// BaseDN is where users are read from. Default upstream.user_base_dn.
	BaseDN string `yaml:"base_dn"`
	// Filter selects the users in scope, e.g. members of PBX-Users, nested
	// groups included: (&(objectCategory=person)(objectClass=user)
	// (memberOf:1.2.840.113556.1.4.1941:=CN=PBX-Users,OU=AADDC Users,DC=...)).
	// Default upstream.user_filter.
	Filter string `yaml:"filter"`
	// EnabledOnly keeps disabled accounts out of the view entirely (otherwise
	// they are in it and the import marks them disabled). Default false.
	EnabledOnly bool `yaml:"enabled_only"`
	// Attributes are read for every user. Default: what the pascom import maps
	// (sAMAccountName, userPrincipalName, displayName, givenName, sn, mail,
	// telephoneNumber, mobile, homePhone, facsimileTelephoneNumber, company,
	// ipPhone, memberOf, userAccountControl, objectGUID, pwdLastSet,
	// lockoutTime, accountExpires, uSNChanged, whenChanged).
	Attributes []string `yaml:"attributes"`
	// PageSize is the paged-results page size; AD serves at most 1000.
	// Default 1000.
	PageSize int `yaml:"page_size"`
	// Interval is the time between incremental syncs ("automate"). Default 5m.
	Interval time.Duration `yaml:"interval"`
	// Jitter is the most random delay added to each interval, so a fleet of
	// gateways does not sync in step. Default 30s.
	Jitter time.Duration `yaml:"jitter"`
	// RetryInterval is the wait after a failed run (AD unreadable, an empty
	// answer held, the view not stored) before the next: it doubles with each
	// failure in a row up to sync.interval, so a gateway started while AD is
	// briefly unreachable does not wait a whole interval for its first view.
	// Default 30s.
	RetryInterval time.Duration `yaml:"retry_interval"`
	// FullInterval is the time between full reconciles, which catch deletions
	// an incremental sync cannot see. Default 1h.
	FullInterval time.Duration `yaml:"full_interval"`
	// Timeout bounds one sync run. Default 5m.
	Timeout time.Duration `yaml:"timeout"`
	// MaxEntries caps the users one sync may read; more is an error and the
	// previous view is kept. Default 200000.
	MaxEntries int `yaml:"max_entries"`
	// WriteBatch is the most entries one transaction of the view's store
	// writes. A sync that changes more (a first sync, a full sync after a
	// mass change) is written in batches beside the view and switched in at
	// once, so its memory stays bounded; a smaller one is one transaction.
	// Read when the view is opened (a restart applies a change). Default 5000.
	WriteBatch int `yaml:"write_batch"`
	// MaxDeletePercent holds an import that would remove more than this
	// percentage of the view until confirmed. Default 10.
	MaxDeletePercent float64 `yaml:"max_delete_percent"`
	// ExcludeFilter keeps matching users out of every import (the service
	// account is always kept out). Default "".
	ExcludeFilter string `yaml:"exclude_filter"`
	// StaleAfter is how old the view may be and still answer the PBX's searches
	// and the resolver's lookups; older, they go to AD. Default 15m.
	StaleAfter time.Duration `yaml:"stale_after"`
	// OutageMaxAge is how old the view may be and still answer the PBX's
	// searches while no DC is usable (every breaker open): the last good view
	// keeps pascom's import and search-then-bind lookups working through an
	// outage, and those answers are logged as stale. Logins are never
	// resolved from a stale view. 0 disables it. Default 24h.
	OutageMaxAge time.Duration `yaml:"outage_max_age"`
}

// Import configures the user import built from the view (pascom's "AD User
// Sync" mapping) and where it is delivered.
type Import struct {
	// Mode is "create_update" or "create_update_remove" (pascom's "create and
	// update, remove missing"). Default "create_update_remove".
	Mode string `yaml:"mode"`
	// CreateSoftphone gives every imported user a softphone. Default true.
	CreateSoftphone bool `yaml:"create_softphone"`
	// CreateMobile gives every imported user with a mobile number a mobile
	// device. Default false.
	CreateMobile bool `yaml:"create_mobile"`
	// CSVFile is where pascom's CSV is written (atomically). Default
	// "<sync.data_dir>/users.csv".
	CSVFile string `yaml:"csv_file"`
	// JSONFile is where the plan and the applied state are written as JSON.
	// Default "<sync.data_dir>/import.json".
	JSONFile string `yaml:"json_file"`
	// Webhook, when its URL is set, receives each applied plan as a JSON batch.
	Webhook Webhook `yaml:"webhook"`
}

// Webhook is an HTTP endpoint that receives applied import plans.
type Webhook struct {
	// URL is the endpoint (http or https); empty disables the webhook.
	URL string `yaml:"url"`
	// BearerToken is sent as "Authorization: Bearer ..."; may be "${ENV}".
	BearerToken Secret `yaml:"bearer_token"`
	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts is how often a batch is tried before it is given up until the
	// next sync. Default 5.
	MaxAttempts int `yaml:"max_attempts"`
}

// HTTP configures the admin/export HTTP listener: /export/users.csv now, the
// status pages and metrics later.
type HTTP struct {
	// Address is the listen address; empty disables it. Default "127.0.0.1:8389".
	Address string `yaml:"address"`
	// BearerToken, when set, is required as "Authorization: Bearer ...".
	BearerToken Secret `yaml:"bearer_token"`
	// BasicUser and BasicPassword, when set, are required as HTTP basic auth
	// (pascom's CSV connector can send those).
	BasicUser string `yaml:"basic_user"`
	// BasicPassword is the basic-auth password; may be "${ENV}".
	BasicPassword Secret `yaml:"basic_password"`
	// Status bounds what /status and the status page keep and show.
	Status HTTPStatus `yaml:"status"`
}

// HTTPStatus bounds the history the admin listener keeps for /status and the
// status page; all of it is in memory and starts empty at each start.
type HTTPStatus struct {
	// SyncRuns is how many of the last sync runs are kept. Default 20.
	SyncRuns int `yaml:"sync_runs"`
	// AuthFailures is how many of the last failed binds are counted by
	// reason. Default 200.
	AuthFailures int `yaml:"auth_failures"`
	// RecentFailures is how many of those are listed one by one (time,
	// client, login, reason, AD code, DC; never a password). Default 10.
	RecentFailures int `yaml:"recent_failures"`
	// PlanRows is how many rows of the pending import plan are listed (its
	// counts are always complete). Default 100.
	PlanRows int `yaml:"plan_rows"`
}

// Audit configures the audit log: one JSON line per authentication decision
// (client, conn_id, login, user, result, reason, ad_code, dc, dur, cache_hit,
// offline, ts), never a password.
type Audit struct {
	// Output is where the lines go: "" (the default) keeps them in the process
	// log under the logger "audit", in its format; "stdout" or "stderr", or an
	// absolute file path (opened for appending, created mode 0600, reopened on
	// SIGHUP for log rotation) give them a sink of their own, always JSON.
	Output string `yaml:"output"`
}

// Reload configures how ldapgate serve picks up a changed configuration. A
// reload (SIGHUP, or a change the watch sees) loads the file again and
// applies what can change while serving (the upstreams, cache.dn, sync and
// import, log.level, the listener's certificate files); a key that needs a
// restart is logged, and a configuration that does not load is refused
// while the running one stays.
type Reload struct {
	// Watch reloads when the configuration file changes, or a file it names
	// (upstream.ca_file, the password files, the listener's certificate and
	// key): the directories holding them are watched, so a rename over the
	// file (editors, config management) is seen too. Default true.
	Watch bool `yaml:"watch"`
	// Debounce is how long the watched files must stay quiet before the
	// reload, so that a burst of writes is one reload. Default 1s; at most 1m.
	Debounce time.Duration `yaml:"debounce"`
}

// Log configures the process log.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or console. Default json.
	Format string `yaml:"format"`
}

// Secret is a string that never prints: fmt (every verb, %#v included), logs,
// JSON and YAML output show "[redacted]" (or "" when unset). Use string(s) where
// the value itself is needed.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Format redacts the secret for every fmt verb: without it %#v, %d and the
// other verbs that bypass String would print the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// MarshalYAML redacts the secret when a config is printed.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText redacts the secret in encoding/json and other text encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		Listen: Listen{
			Address:             "127.0.0.1:389",
			MaxConnections:      1024,
			MaxConnectionsPerIP: 256,
			IdleTimeout:         5 * time.Minute,
			MaxMessageBytes:     128 << 10,
			MaxInFlight:         512,
			ShutdownTimeout:     10 * time.Second,
			ProxyProtocol:       ProxyProtocol{HeaderTimeout: 5 * time.Second},
		},
		Upstream: Upstream{
			UserFilter:  "(&(objectCategory=person)(objectClass=user))",
			DialTimeout: 5 * time.Second,
			OpTimeout:   5 * time.Second,
			Pool: Pool{
				ServiceSize: 4,
				BindSize:    8,
				MaxLifetime: 10 * time.Minute,
				IdleTimeout: 5 * time.Minute,
				WaitTimeout: 2 * time.Second,
			},
			Breaker:           Breaker{Failures: 3, ProbeInterval: 10 * time.Second},
			CertCheckInterval: time.Hour,
		},
		Cache: Cache{DN: CacheSize{Size: 10000, TTL: 15 * time.Minute}},
		Search: Search{
			Attributes: []string{"dn", "sAMAccountName", "userPrincipalName", "displayName", "givenName", "sn",
				"mail", "telephoneNumber", "mobile", "ipPhone", "homePhone", "facsimileTelephoneNumber", "company",
				"memberOf", "objectClass", "objectGUID", "userAccountControl"},
			Paging: SearchPaging{IdleTimeout: time.Minute, MaxPerConnection: 1, MaxOpen: 16},
		},
		Sync: Sync{
			Enabled: true,
			DataDir: "/var/lib/ldapgate",
			Attributes: []string{"sAMAccountName", "userPrincipalName", "displayName", "givenName", "sn",
				"mail", "telephoneNumber", "mobile", "homePhone", "facsimileTelephoneNumber", "company",
				"ipPhone", "memberOf", "userAccountControl", "objectGUID", "pwdLastSet", "lockoutTime",
				"accountExpires", "uSNChanged", "whenChanged"},
			PageSize:         1000,
			Interval:         5 * time.Minute,
			Jitter:           30 * time.Second,
			RetryInterval:    30 * time.Second,
			WriteBatch:       5000,
			FullInterval:     time.Hour,
			Timeout:          5 * time.Minute,
			MaxEntries:       200000,
			MaxDeletePercent: 10,
			StaleAfter:       15 * time.Minute,
			OutageMaxAge:     24 * time.Hour,
		},
		Import: Import{
			Mode:            "create_update_remove",
			CreateSoftphone: true,
			Webhook:         Webhook{Timeout: 10 * time.Second, MaxAttempts: 5},
		},
		HTTP: HTTP{
			Address: "127.0.0.1:8389",
			Status:  HTTPStatus{SyncRuns: 20, AuthFailures: 200, RecentFailures: 10, PlanRows: 100},
		},
		Log:    Log{Level: "info", Format: "json"},
		Reload: Reload{Watch: true, Debounce: time.Second},
		Lockout: Lockout{
			NegativeTTL:       5 * time.Minute,
			UserBudget:        3,
			UserWindow:        2 * time.Minute,
			MaxUsers:          10000,
			ClientRate:        10,
			ClientBurst:       20,
			MaxClients:        10000,
			MinFailureLatency: 50 * time.Millisecond,
		},
		Offline: Offline{
			MaxAge:              24 * time.Hour,
			MaxEntries:          10000,
			MaxFailures:         3,
			MaxConcurrentHashes: 2,
			Argon2:              Argon2{Time: 2, MemoryKiB: 19456, Threads: 1},
		},
	}
}

// Lockout configures the lockout guard in front of AD's account lockout (AADDS
// locks an account after 5 bad passwords within 2 minutes, for 30 minutes). The
// gateway sends each bind attempt upstream at most once and never to a second
// DC after a 49; on top of that:
//
//	lockout:
//	  negative_ttl: 5m        # the same wrong password again: 49 here
//	  user_budget: 3          # distinct wrong passwords per user ...
//	  user_window: 2m         # ... until this long after the last one
//	  client_rate: 10         # failed binds per second per client address
//	  client_burst: 20
//	  min_failure_latency: 50ms
//
// Per-user state is keyed on the account's canonical DN as AD returned it, so
// every spelling of a login is one account; logins that name no account get no
// state.
type Lockout struct {
	// NegativeTTL is how long a wrong password AD refused (52e) is remembered
	// for its account, as a keyed hash: the same password again within it is
	// answered 49 without asking AD. 0 disables the negative cache. Default 5m.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// UserBudget is how many distinct wrong passwords of one account go to AD
	// before further attempts for it, whatever the password, are answered 49
	// here until UserWindow has passed since the last wrong one. Keep it below
	// the domain's lockout threshold (AADDS: 5). 0 disables it. Default 3.
	UserBudget int `yaml:"user_budget"`
	// UserWindow is how long after an account's last wrong password its count
	// starts over, as AD's "reset account lockout counter after" does; keep it
	// at least AD's (AADDS: 2 minutes). Default 2m.
	UserWindow time.Duration `yaml:"user_window"`
	// MaxUsers bounds the accounts with a negative cache or budget state
	// (least recently used dropped first). Default 10000.
	MaxUsers int `yaml:"max_users"`
	// ClientRate is the failed binds per second one client address may make
	// (token bucket); past it every bind from that address is answered 51 busy
	// until the bucket refills. Only refusals that tried something new count:
	// a password AD (or the offline cache) refused, a name AD does not know, a
	// wrong search.proxy_password.
	// Empty passwords, malformed names and the guard's own refusals (negative
	// cache, budget) do not. A gateway next to the PBX sees every bind from one
	// address: size it for the PBX's failures. 0 disables it. Default 10.
	ClientRate float64 `yaml:"client_rate"`
	// ClientBurst is the bucket size of ClientRate. Default 20.
	ClientBurst int `yaml:"client_burst"`
	// MaxClients bounds the client addresses tracked for ClientRate (least
	// recently used dropped first). Default 10000.
	MaxClients int `yaml:"max_clients"`
	// MinFailureLatency delays every 49 until at least this long after the bind
	// request arrived, so that an unknown user, a wrong password and a refusal
	// from a local cache take the same time. It should exceed AD's search plus
	// bind time (a few ms). 0 disables it. Default 50ms.
	MinFailureLatency time.Duration `yaml:"min_failure_latency"`
}

// Offline configures the offline credential cache. When enabled, a successful
// bind stores an argon2id hash of the password (random salt per entry); while
// no DC can be reached (breakers open, transport errors, timeouts) a bind is
// checked against it instead, never after an answer from AD. Off by default:
// it keeps password hashes on this host.
//
//	offline:
//	  enabled: true
//	  file: /var/lib/ldapgate/offline.json   # optional; written 0600
//	  max_age: 24h
type Offline struct {
	// Enabled turns the cache on. Default false.
	Enabled bool `yaml:"enabled"`
	// File, when set, keeps the cache across restarts: loaded at start,
	// written atomically with mode 0600 after changes. Empty (the default):
	// memory only.
	File string `yaml:"file"`
	// MaxAge is how long after the last successful bind at AD an entry may be
	// used. Default 24h.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxEntries bounds the accounts cached (the least recently verified is
	// dropped first). Default 10000.
	MaxEntries int `yaml:"max_entries"`
	// MaxFailures is how many wrong passwords one account may try against the
	// cache during one outage; after that its binds get 52 until a DC answers
	// again. Default 3.
	MaxFailures int `yaml:"max_failures"`
	// MaxConcurrentHashes bounds the argon2id computations running at once
	// (each takes Argon2.MemoryKiB of memory and one CPU for tens of ms); a bind
	// that would store a hash while all are busy skips it. Default 2.
	MaxConcurrentHashes int `yaml:"max_concurrent_hashes"`
	// Argon2 is the cost of the hash, OWASP's argon2id minimum by default.
	Argon2 Argon2 `yaml:"argon2"`
}

// Argon2 is the cost of an argon2id hash. Entries keep the parameters they were
// made with, so changing these does not invalidate a cache.
type Argon2 struct {
	// Time is the number of passes. Default 2.
	Time int `yaml:"time"`
	// MemoryKiB is the memory per hash in KiB. Default 19456 (19 MiB).
	MemoryKiB int `yaml:"memory_kib"`
	// Threads is the parallelism. Default 1.
	Threads int `yaml:"threads"`
}
