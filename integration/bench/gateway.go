package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// gateway is `ldapgate serve` running as a child process.
type gateway struct {
	*proc
	addr  string // the plain LDAP listener, host:port
	pprof string // its profiling listener (--profile), host:port
}

// gatewayConfig is configs/testbed.yaml (the gateway in front of the Samba
// test bed) as the bench runs it — the listener on a free port, the admin HTTP
// listener and the sync loop off, its own data directory, the test bed's CA —
// with changes (dotted keys such as "listen.max_connections") applied last.
func (h *harness) gatewayConfig(dataDir string, changes map[string]any) ([]byte, error) {
	return testbed.GatewayConfig(h.root, map[string]any{
		"listen.address":          "127.0.0.1:0",
		"listen.shutdown_timeout": "3s",
		"http.address":            "",
		"upstream.ca_file":        testbed.CAFile(),
		"sync.data_dir":           dataDir,
		// The bind scenarios measure binds: the sync loop's first full read
		// (a nested-group filter over 10,000 users) would load the DC while
		// they run, and only through the gateway. S3 turns it on.
		"sync.enabled": false,
	}, changes)
}

// freeAddr is a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// writeConfig writes a gateway configuration, with its data directory beside
// it in a new directory, and returns the file.
func (h *harness) writeConfig(name string, changes map[string]any) (string, error) {
	dir, err := h.dir(name)
	if err != nil {
		return "", err
	}
	data, err := h.gatewayConfig(filepath.Join(dir, "data"), changes)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "ldapgate.yaml")
	return path, os.WriteFile(path, data, 0o600)
}

// startGateway starts `ldapgate serve` with gatewayConfig(changes) and returns
// once it listens. With waitSync it also waits for the sync loop's first run
// to have filled the directory view.
func (h *harness) startGateway(ctx context.Context, name string, changes map[string]any, waitSync bool) (*gateway, error) {
	cfgPath, err := h.writeConfig(name, changes)
	if err != nil {
		return nil, err
	}
	bin, env, pprofAddr := h.bin, []string(nil), ""
	if h.o.profile {
		if pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		bin, env = h.binProf, []string{pprofEnv + "=" + pprofAddr}
	}
	p, err := h.start(name, []string{bin, "serve", "--config", cfgPath}, env)
	if err != nil {
		return nil, err
	}
	l, err := p.waitLog(ctx, "its plain LDAP listener", startWithin, func(l logLine) bool {
		return l.str("msg") == "listening" && l["tls"] == false
	})
	if err != nil {
		return nil, err
	}
	g := &gateway{proc: p, addr: l.str("listen"), pprof: pprofAddr}
	if waitSync {
		l, err := p.waitLog(ctx, "the first sync", h.o.scenarioTimeout, func(l logLine) bool { return l.str("msg") == "sync" })
		if err != nil {
			return nil, err
		}
		if r := l.str("result"); r != "applied" && r != "unchanged" {
			return nil, fmt.Errorf("%s: the first sync did not apply: %v", name, l)
		}
		h.logf("%s: the view holds %v users", name, l["entries"])
	}
	return g, nil
}
