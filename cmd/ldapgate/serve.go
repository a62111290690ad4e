package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

func serveCommand() *command {
	return &command{
		name:    "serve",
		summary: "run the gateway: the LDAP listener in front of the domain controllers",
		usage:   "--config FILE [--log-format json|console] [--log-level LEVEL]",
		help: `serve runs the gateway until SIGINT or SIGTERM. The PBX binds on the listener
with plain LDAP (or LDAPS/StartTLS when configured); ldapgate maps the login
(sAMAccountName, UPN, DOMAIN\user or DN) to the user's DN with a search made as
the service account, and forwards the bind over verified LDAPS to the first
healthy domain controller.

With sync.enabled (the default) it also keeps the directory view in
<sync.data_dir> and runs the user import every sync.interval, like
'ldapgate sync' does once. The PBX's searches (its import, its
search-then-bind lookups) are answered from the view when that gives exactly
what AD would (fresh within sync.stale_after; while every DC is down, up to
sync.outage_max_age old), and logins are looked up in a fresh view before AD.

SIGHUP (systemctl reload ldapgate) reloads the configuration file, and so
does a change of it or of a file it names (reload.watch, after
reload.debounce of quiet), without closing a client connection. Applied
live: upstream.servers (in-flight requests on a removed DC finish there),
ca_file, the service account (bind_dn, the password or its file),
dial_timeout, op_timeout, pool.*, breaker.* and cert_check_interval;
cache.dn.*; sync.* and import.* (after the sync in progress; not
sync.enabled, data_dir or outage_max_age); log.level (unless --log-level is
given); the listener's certificate and key, renamed ones too. Everything else
(listen.*, http.*, search.*, lockout.*, offline.*, audit.*, log.format,
reload.*, upstream.base_dn, user_base_dn, user_filter, netbios_domain) needs
a restart, and the log names each such key. A file that does not load,
or whose CA bundle or certificate does not, is refused and logged ("config
reload refused"); the running configuration stays. SIGHUP also reopens the
audit.output file.

A shutdown stops accepting, lets in-flight binds finish within
listen.shutdown_timeout, stops the sync loop and closes the upstream
connections.`,
		setup: func(fs *flag.FlagSet) runFunc {
			path := fs.String("config", "", "read the configuration from `FILE`")
			var lf logFlags
			lf.register(fs)
			return func(e *env, _ []string) error {
				if *path == "" {
					return usageError{errors.New("--config is required")}
				}
				cfg, err := configs.Load(*path)
				if err != nil {
					return err
				}
				log, level, err := newLeveledLogger(e.stderr, firstSet(lf.format, cfg.Log.Format), firstSet(lf.level, cfg.Log.Level))
				if err != nil {
					return usageError{err}
				}
				defer func() { _ = log.Sync() }()
				for _, w := range cfg.Warnings() {
					log.Warn(w) // each warning already starts with "config: "
				}
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return serve(ctx, cfg, log, reloadSource{path: *path, level: level, levelFlag: lf.level != ""}, nil)
			}
		},
	}
}

// reloadSource is where serve's reload reads the configuration from.
type reloadSource struct {
	// path is the configuration file cfg was loaded from.
	path string
	// level is the process log's level, which log.level changes.
	level zap.AtomicLevel
	// levelFlag: --log-level was given and wins over log.level.
	levelFlag bool
}

// serve builds the gateway from cfg and runs it until ctx ends, reloading
// the configuration from src on SIGHUP and, with reload.watch, when its files
// change. ready, when not nil, is called once the plain-LDAP listener is
// open, with its address and the HTTP listener's ("" when off), ports
// resolved.
func serve(ctx context.Context, cfg *configs.Config, log *zap.Logger, src reloadSource, ready func(ldapAddr, httpAddr string)) error {
	// Registered first: a SIGHUP during the start is a reload once serving,
	// not the end of the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cluster, err := upstream.New(cfg.Upstream, log)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	defer func() { _ = cluster.Close() }()

	// The directory view and the user import ("automate"), beside the
	// listener: see startSync in sync.go. Stopped after the listener.
	watch := &credentialWatch{}
	// The operations surface (metrics, /status, /readyz): see admin.go.
	ops := newOperations(cfg, cluster.Stats, log)
	syncSvc := startSync(ctx, cfg, cluster, watch, ops.syncFinished, log)
	defer syncSvc.stop()
	ops.setSync(syncSvc)

	// Searches and login lookups answered from the view when it is exact:
	// see view.go. Without a view both go to AD.
	authViewOpts, searchViewOpts := viewOptions(cfg, syncSvc.view, cluster, log)

	// The audit lines' own sink (audit.output): see audit.go.
	audit, err := openAudit(cfg.Audit, log)
	if err != nil {
		return err
	}
	defer audit.close()
	auth, err := proxy.NewAuth(*cfg, cluster, log, append(authViewOpts, audit.authOption(), proxy.WithObserver(ops.observeBind))...)
	if err != nil {
		return err
	}
	// Close writes the offline credential file one last time.
	defer func() { _ = auth.Close() }()
	watch.setForget(auth.ForgetUser)
	ops.setGuard(auth.GuardStats)
	web, err := startHTTP(cfg, ops, cluster, log)
	if err != nil {
		return fmt.Errorf("http.address: %w", err)
	}
	// Stopped on every return, a listener that failed to start included.
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Listen.ShutdownTimeout)
		defer cancel()
		web.stop(sctx)
	}()
	info, _ := debug.ReadBuildInfo()
	srvOpts := []proxy.ServerOption{proxy.WithVendorVersion(buildVersion(version, info)),
		proxy.WithSearch(*cfg, cluster, append(searchViewOpts, audit.searchOption(ops.observeBind))...)}
	if ready != nil {
		srvOpts = append(srvOpts, proxy.WithListening(func(a net.Addr, ldaps bool) {
			if !ldaps {
				ready(a.String(), web.address())
			}
		}))
	}
	srv, err := proxy.NewServer(cfg.Listen, cfg.Upstream.BaseDN, auth, log, srvOpts...)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("serving",
		zap.String("listen", cfg.Listen.Address),
		zap.String("listen_ldaps", cfg.Listen.LDAPSAddress),
		zap.Int("upstreams", len(cfg.Upstream.Servers)))

	// Reloads (see reload.go): SIGHUP, and with reload.watch a change of
	// the configuration's files (configwatch.go).
	rl := newReloader(func() (*configs.Config, error) { return configs.Load(src.path) }, cfg, src.levelFlag, reloadTargets{
		upstream: cluster, auth: auth, listener: srv, sync: syncSvc, level: src.level,
	}, log)
	var files *configWatch
	var changed <-chan struct{}
	if cfg.Reload.Watch {
		if files, err = startConfigWatch(watchedFiles(src.path, cfg), cfg.Reload.Debounce, log); err != nil {
			log.Warn("config watch not started: reload with SIGHUP (systemctl reload ldapgate)", zap.Error(err))
		} else {
			defer files.close()
			changed = files.due
		}
	}
	reload := func(trigger string) {
		rl.reload(trigger)
		if files != nil {
			if err := files.watch(watchedFiles(src.path, rl.cur)); err != nil {
				log.Warn("config watch: the files the new configuration names are not all watched; reload with SIGHUP after changing them", zap.Error(err))
			}
		}
	}
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("listener: %w", err)
		case <-hup:
			reload("SIGHUP")
		case <-changed:
			reload("file change")
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Listen.ShutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
				return fmt.Errorf("shutdown: %w", err)
			}
			return nil
		}
	}
}

// firstSet returns the first non-empty string.
func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
