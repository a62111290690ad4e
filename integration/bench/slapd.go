package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// installSlapd installs Debian's slapd and ldap-utils when missing, without
// letting the package start its service, and leaves the Debian slapd service
// stopped and disabled: the bench runs its own slapd from a private config.
const installSlapd = `set -euo pipefail
missing=()
for p in slapd ldap-utils; do
	dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "bench: installing ${missing[*]}"
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
		apt-get update -q
	fi
	made=""
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# ldapgate bench: no service starts during the install\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		made=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [[ -d /run/systemd/system ]]; then
	systemctl disable --now slapd >/dev/null 2>&1 || true
else
	if pid=$(cat /run/slapd/slapd.pid 2>/dev/null) && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == slapd ]]; then
		echo "bench: stopping the machine's own slapd service (pid $pid)"
		service slapd stop
	fi
	update-rc.d slapd disable >/dev/null 2>&1 || true
fi
`

// slapdConf is a bind proxy in front of dc1: back-ldap forwards each simple
// bind (a DN: slapd does not map sAMAccountNames without rwm) over LDAPS,
// verified with the test bed's CA (AD-FACTS.md, "The peer to measure against").
const slapdConf = `# Written by integration/bench for scenario S4.
include /etc/ldap/schema/core.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_ldap
loglevel 0

database ldap
suffix "%[2]s"
uri "%[3]s/"
tls ldaps tls_cacert=%[4]s tls_reqcert=demand
chase-referrals no
network-timeout 3
`

// slapd is the peer proxy's process and address.
type slapd struct {
	*proc
	addr string
}

// startSlapd installs slapd if needed and runs it on a free loopback port.
func (h *harness) startSlapd(ctx context.Context) (*slapd, error) {
	if !h.slapdReady {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("installing and running slapd needs root: run the bench as root")
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ictx, "bash", "-c", installSlapd)
		cmd.Stdout, cmd.Stderr = h.logw, h.logw
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("installing slapd and ldap-utils: %w", err)
		}
		h.slapdReady = true
	}
	dir, err := h.dir("slapd")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, slapdConf, dir, testbed.BaseDN, testbed.DC1URL, testbed.CAFile()), 0o644); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// -d 0: stay in the foreground (the bench stops it) and log nothing.
	p, err := h.start("slapd", []string{"/usr/sbin/slapd", "-d", "0", "-f", conf, "-h", "ldap://" + addr + "/"}, nil)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, p, addr); err != nil {
		return nil, err
	}
	return &slapd{proc: p, addr: addr}, nil
}

// waitListening waits until addr accepts a TCP connection.
func waitListening(ctx context.Context, p *proc, addr string) error {
	deadline := time.Now().Add(startWithin)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		switch {
		case !p.alive():
			return fmt.Errorf("%s exited (%v) before it listened on %s; its output:\n%s", p.name, p.waitErr, addr, p.tail())
		case time.Now().After(deadline):
			return fmt.Errorf("%s did not listen on %s within %s; its output:\n%s", p.name, addr, startWithin, p.tail())
		case ctx.Err() != nil:
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runS4: binds with DNs and a new connection per bind (a PBX configured with
// DNs), through the gateway vs through slapd's back-ldap, both in front of
// dc1.
func runS4(ctx context.Context, h *harness) ([]row, error) {
	if err := h.testbed(ctx, loginsUsed); err != nil {
		return nil, err
	}
	peer, err := h.startSlapd(ctx)
	if err != nil {
		return nil, err
	}
	gw, err := h.startGateway(ctx, "s4-gateway", nil, false)
	if err != nil {
		return nil, err
	}
	logins := bulkLogins(loginsUsed, dnLogin)
	g, b, err := h.compare(ctx,
		side{"gateway", bindLoad("ldap://"+gw.addr, logins, pbxClients, true)},
		side{"slapd", bindLoad("ldap://"+peer.addr, logins, pbxClients, true)})
	if err != nil {
		return nil, err
	}
	rss, err := gw.peakRSS()
	if err != nil {
		return nil, err
	}
	peerRSS, err := peer.peakRSS()
	if err != nil {
		return nil, err
	}
	return []row{bindRow("S4", fmt.Sprintf("bind by DN, new connection each, %d clients", pbxClients), g, b, 3.0, rss, fmtMB(peerRSS))}, nil
}
