package main

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
)

// liveKeys are the keys (a key, or a section ending in ".") a reload applies
// while serving; restartKeys are the exceptions inside them. Every other key
// needs a restart. listen.tls.* is live only when the listener had a
// certificate at start (see reloadPlan).
var (
	liveKeys = []string{
		// The Cluster (Reconfigure).
		"upstream.servers", "upstream.ca_file", "upstream.bind_dn", "upstream.bind_password",
		"upstream.bind_password_file", "upstream.dial_timeout", "upstream.op_timeout",
		"upstream.pool.", "upstream.breaker.", "upstream.cert_check_interval",
		// The DN caches of the bind path and the proxy user.
		"cache.dn.",
		// The sync loop and the import (syncService.reconfigure).
		"sync.", "import.",
		"log.level",
	}
	restartKeys = []string{
		// The view is opened once, and the listener's stale-view answers
		// are set up once.
		"sync.enabled", "sync.data_dir", "sync.outage_max_age", "sync.write_batch",
	}
)

// contentKeys are the keys naming files whose contents a reload compares, so
// that a renewed CA bundle or listener certificate under the same name counts
// as a change. The password files need none: their contents are in the
// compared configuration.
var contentKeys = []string{"upstream.ca_file", "listen.tls.cert_file", "listen.tls.key_file"}

// reloadPlan is what a reload found: the keys that changed since the last
// reload and how each is applied.
type reloadPlan struct {
	// live are the changed keys applied now.
	live []string
	// restart are the keys that differ from the configuration the process
	// started with and need a restart (also when an earlier reload saw them).
	restart []string
	// overridden are changed keys that a command-line flag overrides.
	overridden []string
}

// empty reports whether the reload changes nothing at all.
func (p reloadPlan) empty() bool {
	return len(p.live) == 0 && len(p.restart) == 0 && len(p.overridden) == 0
}

// planReload compares next with the running configuration cur and the one
// the process started with, started. changedFiles are the contentKeys whose
// files' contents changed. levelFlag is true when --log-level overrides
// log.level.
func planReload(started, cur, next *configs.Config, changedFiles []string, levelFlag bool) reloadPlan {
	var p reloadPlan
	tlsLive := started.Listen.TLS.CertFile != "" && next.Listen.TLS.CertFile != ""
	isLive := func(key string) bool {
		if strings.HasPrefix(key, "listen.tls.") {
			return tlsLive
		}
		return matchesKey(key, liveKeys) && !matchesKey(key, restartKeys)
	}
	for _, key := range configs.Changed(started, next) {
		if !isLive(key) {
			p.restart = append(p.restart, key)
		}
	}
	for _, key := range configs.Changed(syncConfig(started, cur), syncConfig(started, next)) {
		switch {
		case !isLive(key):
		case key == "log.level" && levelFlag:
			p.overridden = append(p.overridden, key)
		default:
			p.live = append(p.live, key)
		}
	}
	for _, key := range changedFiles {
		if isLive(key) && !slices.Contains(p.live, key) {
			p.live = append(p.live, key)
		}
	}
	return p
}

// matchesKey reports whether key is one of keys or inside one of their
// sections.
func matchesKey(key string, keys []string) bool {
	for _, k := range keys {
		if key == k || (strings.HasSuffix(k, ".") && strings.HasPrefix(key, k)) {
			return true
		}
	}
	return false
}

// fileDigests returns the SHA-256 of each file cfg names under contentKeys;
// a file that cannot be read has none (and loading the configuration reports
// it).
func fileDigests(cfg *configs.Config) map[string][sha256.Size]byte {
	out := make(map[string][sha256.Size]byte, len(contentKeys))
	for key, path := range map[string]string{
		"upstream.ca_file":     cfg.Upstream.CAFile,
		"listen.tls.cert_file": cfg.Listen.TLS.CertFile,
		"listen.tls.key_file":  cfg.Listen.TLS.KeyFile,
	} {
		if path == "" {
			continue
		}
		if data, err := os.ReadFile(path); err == nil {
			out[key] = sha256.Sum256(data)
		}
	}
	return out
}

// changedDigests lists the contentKeys whose digest differs between a and b.
func changedDigests(a, b map[string][sha256.Size]byte) []string {
	var out []string
	for _, key := range contentKeys {
		if a[key] != b[key] {
			out = append(out, key)
		}
	}
	return out
}

// reloadTargets are the running parts a reload changes.
type reloadTargets struct {
	// upstream is the Cluster (upstream.*).
	upstream interface{ Reconfigure(configs.Upstream) error }
	// auth is the bind path (cache.dn, upstream.op_timeout).
	auth interface{ Reconfigure(configs.Config) }
	// listener is the Server (its certificate files, the proxy user's cache).
	listener interface{ Reconfigure(configs.Config) error }
	// sync is the sync loop and the import (sync.*, import.*).
	sync interface{ reconfigure(*configs.Config) error }
	// level is the process log's level (log.level).
	level zap.AtomicLevel
}

// reloader loads the configuration file again and applies what changed to
// the running gateway: one reload at a time, from serve's loop.
type reloader struct {
	// load reads the configuration (configs.Load of the file serve was
	// started with).
	load      func() (*configs.Config, error)
	levelFlag bool // --log-level was given: it wins over log.level
	targets   reloadTargets
	log       *zap.Logger

	started *configs.Config // what restart-only keys still come from
	cur     *configs.Config // the configuration applied last
	digests map[string][sha256.Size]byte
}

func newReloader(load func() (*configs.Config, error), cfg *configs.Config, levelFlag bool, t reloadTargets, log *zap.Logger) *reloader {
	return &reloader{load: load, levelFlag: levelFlag, targets: t, log: log,
		started: cfg, cur: cfg, digests: fileDigests(cfg)}
}

// reload loads the configuration and applies it, logging one line: Info
// "config reloaded" with the keys it applied, Error "config reload refused"
// when the configuration does not load or cannot be applied (the running
// one stays), or Debug when nothing changed. Each key that needs a restart
// gets a Warn line of its own. trigger says what asked for the reload.
func (r *reloader) reload(trigger string) {
	next, err := r.load()
	if err != nil {
		r.refuse(trigger, err)
		return
	}
	digests := fileDigests(next)
	plan := planReload(r.started, r.cur, next, changedDigests(r.digests, digests), r.levelFlag)
	if plan.empty() {
		r.log.Debug("config reload: nothing changed", zap.String("trigger", trigger))
		return
	}
	if err := r.apply(next, plan); err != nil {
		r.refuse(trigger, err)
		return
	}
	r.cur, r.digests = next, digests
	for _, key := range plan.restart {
		r.log.Warn(fmt.Sprintf("config: %s changed: restart ldapgate to apply it", key))
	}
	for _, key := range plan.overridden {
		r.log.Warn(fmt.Sprintf("config: %s changed: the --%s flag overrides it", key, strings.ReplaceAll(key, ".", "-")))
	}
	for _, w := range next.Warnings() {
		r.log.Warn(w) // each warning already starts with "config: "
	}
	r.log.Info("config reloaded", zap.String("trigger", trigger), zap.Strings("changed", plan.live),
		zap.Strings("needs_restart", plan.restart))
}

// refuse logs a refused reload.
func (r *reloader) refuse(trigger string, err error) {
	r.log.Error("config reload refused: keeping the running config", zap.String("trigger", trigger), zap.Error(err))
}

// apply hands next to the parts whose keys changed. What can fail is checked
// first and the Cluster and the sync loop are rolled back when a later step
// fails, so a refused reload changes nothing; the steps that remain cannot
// fail.
func (r *reloader) apply(next *configs.Config, plan reloadPlan) error {
	touches := func(prefixes ...string) bool {
		return slices.ContainsFunc(plan.live, func(k string) bool { return matchesKey(k, prefixes) })
	}
	listenerTLS := touches("listen.tls.")
	if listenerTLS {
		if _, err := tls.LoadX509KeyPair(next.Listen.TLS.CertFile, next.Listen.TLS.KeyFile); err != nil {
			return fmt.Errorf("listen.tls: load certificate %s with key %s: %w", next.Listen.TLS.CertFile, next.Listen.TLS.KeyFile, err)
		}
	}
	if touches("upstream.ca_file") {
		if _, err := certs.LoadCAPool(next.Upstream.CAFile); err != nil {
			return fmt.Errorf("upstream.ca_file: %w", err)
		}
	}
	upstreamChanged := touches("upstream.")
	if upstreamChanged {
		if err := r.targets.upstream.Reconfigure(next.Upstream); err != nil {
			return err
		}
	}
	if touches("sync.", "import.", "upstream.bind_dn") {
		if err := r.targets.sync.reconfigure(syncConfig(r.started, next)); err != nil {
			if upstreamChanged {
				r.rollBackUpstream()
			}
			return err
		}
	}
	if listenerTLS || touches("cache.dn.") {
		if err := r.targets.listener.Reconfigure(*next); err != nil {
			r.log.Error("config reload: the listener certificate did not load: the listener keeps the old one", zap.Error(err))
		}
	}
	if touches("cache.dn.", "upstream.op_timeout") {
		r.targets.auth.Reconfigure(*next)
	}
	if touches("log.level") {
		if lvl, err := zapcore.ParseLevel(next.Log.Level); err == nil {
			r.targets.level.SetLevel(lvl)
		}
	}
	return nil
}

// syncConfig is next as the sync loop takes it while serving: sync.enabled,
// sync.data_dir and sync.outage_max_age as the process started with them
// (they need a restart, and the loop refuses to change them), and so the
// import files that default into sync.data_dir.
func syncConfig(started, next *configs.Config) *configs.Config {
	c := *next
	if c.Sync.DataDir != started.Sync.DataDir {
		csvFile, jsonFile := configs.DefaultImportFiles(c.Sync.DataDir)
		if c.Import.CSVFile == csvFile {
			c.Import.CSVFile = started.Import.CSVFile
		}
		if c.Import.JSONFile == jsonFile {
			c.Import.JSONFile = started.Import.JSONFile
		}
	}
	c.Sync.Enabled, c.Sync.DataDir, c.Sync.OutageMaxAge = started.Sync.Enabled, started.Sync.DataDir, started.Sync.OutageMaxAge
	return &c
}

// rollBackUpstream gives the Cluster the running configuration back after a
// later step of the reload failed.
func (r *reloader) rollBackUpstream() {
	if err := r.targets.upstream.Reconfigure(r.cur.Upstream); err != nil {
		r.log.Error("config reload: the upstreams could not be set back to the running config: they follow the refused one",
			zap.Error(err))
	}
}
