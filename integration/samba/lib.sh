# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this
# Shared by up.sh, down.sh and dc.sh: the test bed's facts, its state layout, and how
# to run, start, probe and stop one Samba domain controller. Sourced, never run.

SAMBA_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SAMBA_SCRIPTS/../.." && pwd)

# Debian's own tools first: Samba's Python bindings live under /usr/bin/python3, and a
# python3 from pyenv or a virtualenv earlier in PATH cannot import them.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# The domain (the same facts as integration/testbed/testbed.go).
REALM=AADDS.EXAMPLE.TEST
DNS_DOMAIN=aadds.example.test
NETBIOS_DOMAIN=AADDS
BASE_DN=DC=aadds,DC=example,DC=test
USERS_OU="OU=AADDC Users,$BASE_DN"
LOAD_OU="OU=Load Users,$USERS_OU"
ADMIN_DN="CN=Administrator,CN=Users,$BASE_DN"
ADMIN_PASS='Adm1nPassw0rd!'

# Both DCs listen on the fixed LDAP ports, so each needs its own loopback address.
declare -A DC_IP=([dc1]=127.0.0.1 [dc2]=127.0.0.2)
DCS=(dc1 dc2)

# Bounds for every wait (seconds).
START_TIMEOUT=${LDAPGATE_TESTBED_START_TIMEOUT:-60}
STOP_TIMEOUT=${LDAPGATE_TESTBED_STOP_TIMEOUT:-20}

TESTBED_DIR=${LDAPGATE_TESTBED_DIR:-/var/tmp/ldapgate-testbed}

log() { printf 'testbed: %s\n' "$*"; }
warn() { printf 'testbed: WARNING: %s\n' "$*" >&2; }
die() {
	printf 'testbed: ERROR: %s\n' "$*" >&2
	exit 1
}

require_root() {
	[[ $(id -u) == 0 ]] || die "run as root: the DCs listen on the privileged LDAP ports and need a private mount namespace"
}

# set_dir DIR: fixes every path of the state layout (see README.md).
set_dir() {
	[[ $1 == /* ]] || die "--dir must be an absolute path, got '$1'"
	TESTBED_DIR=${1%/}
	TLS_DIR=$TESTBED_DIR/tls
	CA_PEM=$TLS_DIR/ca.pem
	NS_ETC=$TESTBED_DIR/etc
	export KRB5_CONFIG=$NS_ETC/krb5.conf
	export LDAPTLS_CACERT=$CA_PEM
	export LDAPTLS_REQCERT=demand
}

# take_lock: one up.sh, down.sh or dc.sh at a time per state directory. The lock
# file sits beside the directory, so down.sh --wipe can remove the directory.
take_lock() {
	local lock=$TESTBED_DIR.lock
	mkdir -p "$(dirname "$TESTBED_DIR")"
	exec 9>"$lock"
	flock -w "${LDAPGATE_TESTBED_LOCK_TIMEOUT:-900}" 9 ||
		die "another up.sh, down.sh or dc.sh still holds $lock"
}

dc_dir() { printf '%s/%s' "$TESTBED_DIR" "$1"; }
dc_conf() { printf '%s/%s/etc/smb.conf' "$TESTBED_DIR" "$1"; }
dc_sam() { printf '%s/%s/private/sam.ldb' "$TESTBED_DIR" "$1"; }
dc_log() { printf '%s/%s/log/samba.log' "$TESTBED_DIR" "$1"; }
dc_url() { printf 'ldaps://%s:636' "${DC_IP[$1]}"; }

check_dc_name() {
	[[ -n ${DC_IP[$1]:-} ]] || die "unknown DC '$1' (expected dc1 or dc2)"
}

# ns CMD...: runs CMD in a private mount namespace in which /etc/hosts maps the DCs'
# names to their loopback addresses and /etc/resolv.conf points at 127.0.0.1, where
# nothing answers DNS. Samba then never asks the machine's resolver (DNS backend is
# NONE), and the machine's own files stay untouched. Daemons started here keep the
# namespace for their lifetime.
ns() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	unshare --mount --propagation private -- /bin/sh -c '
		d=$1; shift
		mount --bind "$d/hosts" /etc/hosts || exit 1
		if [ -e /etc/resolv.conf ]; then mount --bind "$d/resolv.conf" /etc/resolv.conf || exit 1; fi
		exec "$@"' ns "$NS_ETC" "$@"
}

# dc_pid DC: prints the pid of the DC's samba master process, if it runs.
dc_pid() {
	local pidfile pid
	pidfile="$(dc_dir "$1")/run/samba.pid"
	[[ -r $pidfile ]] || return 1
	pid=$(tr -dc '0-9' <"$pidfile")
	[[ -n $pid ]] || return 1
	# A stale pid file may name a recycled pid: it must still be a samba process,
	# and not a zombie (a stopped DC's master lingers as one until init reaps it).
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == samba ]] || return 1
	local stat
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]] || return 1
	printf '%s' "$pid"
}

dc_running() { dc_pid "$1" >/dev/null; }

# ldap_probe URL: true when the URL answers a rootDSE read over verified TLS.
ldap_probe() {
	ldapsearch -x -H "$1" -o nettimeout=2 -l 3 -b '' -s base -LLL dn >/dev/null 2>&1
}

# port_open IP PORT: true when something accepts TCP connections there.
port_open() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# dc_fail DC MESSAGE: exits, naming what failed, with the end of the DC's log.
dc_fail() {
	local dc=$1
	shift
	printf 'testbed: ERROR: %s\n' "$*" >&2
	local f
	for f in "$(dc_log "$dc")" "$(dc_dir "$dc")/log/samba.stderr"; do
		if [[ -s $f ]]; then
			printf -- '--- last lines of %s ---\n' "$f" >&2
			tail -n 30 "$f" >&2
		fi
	done
	exit 1
}

# wait_ldaps DC: waits (bounded) until the DC answers LDAPS with the project CA's cert.
# samba -D returns before its daemon writes the pid file: until that file appears
# (within a grace period) the DC counts as starting, not as dead.
wait_ldaps() {
	local dc=$1 url deadline grace pidfile
	url=$(dc_url "$dc")
	pidfile="$(dc_dir "$dc")/run/samba.pid"
	deadline=$((SECONDS + START_TIMEOUT))
	grace=$((SECONDS + 10))
	until ldap_probe "$url"; do
		if [[ -s $pidfile ]] || ((SECONDS >= grace)); then
			dc_running "$dc" || dc_fail "$dc" "$dc's samba exited before LDAPS answered on $url"
		fi
		((SECONDS < deadline)) || dc_fail "$dc" "$dc did not answer LDAPS on $url within ${START_TIMEOUT}s"
		sleep 0.2
	done
}

# check_ports_free DC: fails when something other than this DC holds its LDAP ports
# (the machine's own samba, slapd, another test bed).
check_ports_free() {
	local dc=$1 ip=${DC_IP[$1]} port
	for port in 389 636 88; do
		if port_open "$ip" "$port"; then
			die "$ip:$port is already taken, so $dc cannot start: $(ss -Hltnp "( sport = :$port )" 2>/dev/null |
				grep -E "($ip|0\.0\.0\.0|\*|\[::\]):$port " | tr -s ' ' | head -3)"
		fi
	done
}

# dc_start DC: starts a provisioned DC (if it is not running) and waits for LDAPS.
dc_start() {
	local dc=$1 dir
	dir=$(dc_dir "$dc")
	[[ -f $(dc_conf "$dc") ]] || die "$dc is not provisioned in $TESTBED_DIR: run integration/samba/up.sh first"
	if dc_running "$dc"; then
		wait_ldaps "$dc"
		return 0
	fi
	check_ports_free "$dc"
	mkdir -p "$dir/log" "$dir/run"
	# A stale pid file would make wait_ldaps judge the new daemon by a dead one.
	rm -f "$dir/run/samba.pid"
	log "starting $dc on ${DC_IP[$dc]}"
	# samba -D forks and returns at once; readiness is wait_ldaps' job.
	# 9>&-: the daemon must not inherit (and so hold forever) the test bed's lock.
	ns samba -D -s "$(dc_conf "$dc")" >"$dir/log/samba.stderr" 2>&1 9>&- ||
		dc_fail "$dc" "samba -D failed for $dc"
	wait_ldaps "$dc"
}

# session_pids PID: the processes of the session that samba -D started (the master,
# its prefork workers and winbindd), so a SIGKILL reaches every one of them.
session_pids() {
	ps -e -o pid=,sid=,stat= | awk -v s="$1" '$2 == s && $3 !~ /^Z/ { print $1 }'
}

# dc_stop DC: SIGTERM, a bounded wait, then SIGKILL to what is left; returns once the
# DC's LDAP ports refuse connections.
dc_stop() {
	local dc=$1 pid pids deadline ip=${DC_IP[$1]}
	if ! pid=$(dc_pid "$dc"); then
		log "$dc is not running"
	else
		log "stopping $dc (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		# The master's children (one per service and prefork worker) exit a moment
		# after it: wait for the whole session, within the bound.
		deadline=$((SECONDS + STOP_TIMEOUT))
		while [[ -n $(session_pids "$pid") ]] && ((SECONDS < deadline)); do
			sleep 0.1
		done
		pids=$(session_pids "$pid")
		if [[ -n $pids ]]; then
			warn "$dc: pids ${pids//$'\n'/ } still there after ${STOP_TIMEOUT}s, sending SIGKILL"
			# shellcheck disable=SC2086 # one pid per word
			kill -KILL $pids 2>/dev/null || true
		fi
	fi
	deadline=$((SECONDS + STOP_TIMEOUT))
	while port_open "$ip" 636 || port_open "$ip" 389; do
		((SECONDS < deadline)) || die "$dc stopped but $ip:636/389 still accept connections after ${STOP_TIMEOUT}s"
		sleep 0.1
	done
}
