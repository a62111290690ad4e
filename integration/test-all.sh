#!/usr/bin/env bash
# Runs ldapgate's whole test suite on a Debian machine as root: static checks, the
# unit tests with -race, then the real Active Directory test bed (two Samba AD DCs on
# loopback, installed and started by integration/samba/up.sh) and the integration
# tests against it. Whatever this script started is stopped on exit, pass or fail.
# Environment: LDAPGATE_TEST_USERS (bulk users to seed, default 1200 so paging past
# AD's 1,000 is exercised), LDAPGATE_TESTBED_DIR (test bed state, default
# /var/tmp/ldapgate-testbed), FUZZTIME (how long each fuzz target runs, default 20s).
set -euo pipefail
cd "$(dirname "$0")/.."

users=${LDAPGATE_TEST_USERS:-1200}
started_testbed=0

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

cleanup() {
	rc=$?
	if [ "$started_testbed" = 1 ]; then
		step "stopping the test bed this run started"
		bash integration/samba/down.sh || echo "test-all: stopping the test bed failed" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "static checks"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "test-all: gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go vet -tags integration ./...

step "test bed: installing and starting two Samba AD DCs ($users bulk users)"
if ! (exec 3<>/dev/tcp/127.0.0.1/636) 2>/dev/null; then
	started_testbed=1
fi
bash integration/samba/up.sh --users "$users"

# Tools the tests run as an admin would: systemd-analyze verifies
# configs/ldapgate.service (cmd/ldapgate's packaging test); ldapwhoami,
# ldapsearch and curl run the commands ldapgate demo prints (and other
# end-to-end tests). Each package is installed only when its tool is missing.
need_tool() { # TOOL PACKAGE
	if ! command -v "$1" >/dev/null; then
		step "installing $2 for $1"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" ||
			{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2"; }
	fi
}
need_tool systemd-analyze systemd
need_tool ldapwhoami ldap-utils
need_tool ldapsearch ldap-utils
need_tool curl curl

# Headless Chromium drives the admin status page (integration/statuspage_test.go).
if [ ! -x /usr/bin/chromium ]; then
	step "installing chromium for the status page test"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
fi

# HAProxy in front of the gateway (integration/proxyprotocol_test.go). The test runs
# it as its own process with a generated configuration: the package's own service is
# stopped and disabled.
if ! command -v haproxy >/dev/null; then
	step "installing haproxy for the PROXY protocol test"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy >/dev/null; }
	service haproxy stop >/dev/null 2>&1 || true
	systemctl disable haproxy >/dev/null 2>&1 || true
	update-rc.d haproxy disable >/dev/null 2>&1 || true
fi

step "unit tests (-race)"
go test -race -count=1 ./...

step "integration tests against the Samba test bed (-race)"
# Every package with integration-tagged tests (proxy/upstream has some too), one
# package at a time: the failover tests stop dc1, which other packages' tests use.
mapfile -t integration_pkgs < <(grep -rl --include='*_test.go' '^//go:build integration' . | xargs -n1 dirname | sort -u)
go test -p 1 -race -count=1 -tags integration -timeout 20m "${integration_pkgs[@]}"

step "fuzz targets (a count of executions each, integration/fuzz-all.sh)"
bash integration/fuzz-all.sh

step "all tests passed"
