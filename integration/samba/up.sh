#!/usr/bin/env bash
# up.sh [--users N] [--dir DIR]
#
# Brings up the project's Active Directory test bed on loopback: two Samba AD DCs of
# the domain AADDS.EXAMPLE.TEST (dc1 on 127.0.0.1, dc2 on 127.0.0.2), LDAPS on 636
# with a certificate from the project's own CA, seeded with the accounts of
# shared/AD-FACTS.md (and N bulk users on request). Idempotent: each step does only
# what is missing, so a second run on a running, seeded test bed takes a few seconds.
# See README.md beside this file.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: $0 [--users N] [--dir DIR]

  --users N   also seed bulk users user0000.. in "$LOAD_OU"
              (password Passw0rd!0000..); only the missing ones are added
  --dir DIR   state directory (default \$LDAPGATE_TESTBED_DIR or /var/tmp/ldapgate-testbed)
EOF
}

USERS=0
dir=$TESTBED_DIR
while (($#)); do
	case $1 in
	--users) USERS=${2:-}; shift 2 || die "--users needs a number" ;;
	--users=*) USERS=${1#*=}; shift ;;
	--dir) dir=${2:-}; shift 2 || die "--dir needs a directory" ;;
	--dir=*) dir=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
done
[[ $USERS =~ ^[0-9]+$ ]] || die "--users must be a number, got '$USERS'"
require_root
set_dir "$dir"
take_lock

# ---------------------------------------------------------------------------------
# Phase timing: each phase's wall time is printed at the end and kept in timings.log.

RUN_T0=$EPOCHREALTIME
PHASE=""
PHASE_T0=0
TIMINGS=()
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
end_phase() {
	[[ -n $PHASE ]] && TIMINGS+=("$PHASE $(since "$PHASE_T0")s")
	PHASE=""
}
phase() {
	end_phase
	PHASE=$1
	PHASE_T0=$EPOCHREALTIME
}

# CHANGED is set when this run changed the directory on dc1, so dc2 gets a forced
# replication before the final checks.
CHANGED=""

# ---------------------------------------------------------------------------------
# Packages

# openssl: up.sh checks the certificates with it, and the tests verify 'ldapgate certs init'.
PACKAGES=(samba-ad-dc samba-ad-provision ldap-utils ldb-tools faketime procps openssl)

install_packages() {
	local p missing=() made_policy=""
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	phase install
	log "installing ${missing[*]}"
	# A fresh image has no package lists; old ones may name versions no longer served.
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null ||
		[[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*Release' -mmin +1440 -print -quit) ]]; then
		apt-get update -q || die "apt-get update failed"
	fi
	# Debian starts a package's services on install unless policy-rc.d says no; the
	# machine's own smbd/nmbd/samba would then hold the ports the test bed needs.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# ldapgate test bed: no service starts during the install\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		made_policy=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"
	if [[ -n $made_policy ]]; then
		rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi
}

# stop_system_samba: the machine's own Samba (from the packages) must not run: it would
# bind the LDAP ports on every address, and nothing of the test bed uses it.
stop_system_samba() {
	local unit daemon pid
	for unit in samba-ad-dc:samba smbd:smbd nmbd:nmbd winbind:winbindd; do
		daemon=${unit#*:}
		unit=${unit%%:*}
		if [[ -d /run/systemd/system ]]; then
			if systemctl is-active --quiet "$unit" 2>/dev/null; then
				log "stopping the machine's own $unit service"
				timeout 60 systemctl stop "$unit" || die "could not stop the machine's $unit service"
			fi
		elif pid=$(cat "/run/samba/$daemon.pid" 2>/dev/null) && [[ -n $pid ]] &&
			[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$daemon" ]]; then
			log "stopping the machine's own $unit service (pid $pid)"
			timeout 60 service "$unit" stop || die "could not stop the machine's $unit service"
		fi
	done
}

# ---------------------------------------------------------------------------------
# TLS: the project's own CLI makes the CA and the DCs' certificate. It keeps files
# that are still good, so the CA at $DIR/tls/ca.pem stays stable across runs.

file_digest() { sha256sum "$1" 2>/dev/null || echo missing; }

# certs_still_good: the CA and the server certificate exist, chain to each other,
# stay valid for another 30 days and name every DC host this script needs.
certs_still_good() {
	local f h
	for f in ca.pem ca.key server.pem server.key; do
		[[ -s $TLS_DIR/$f ]] || return 1
	done
	openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1 || return 1
	openssl x509 -checkend $((30 * 86400)) -noout -in "$TLS_DIR/server.pem" >/dev/null 2>&1 || return 1
	for h in dc1.$DNS_DOMAIN dc2.$DNS_DOMAIN localhost; do
		openssl x509 -noout -checkhost "$h" -in "$TLS_DIR/server.pem" 2>/dev/null | grep -q 'does match' || return 1
	done
	for h in 127.0.0.1 127.0.0.2; do
		openssl x509 -noout -checkip "$h" -in "$TLS_DIR/server.pem" 2>/dev/null | grep -q 'does match' || return 1
	done
}

make_certs() {
	phase tls
	command -v go >/dev/null || die "go is not in PATH: it runs 'ldapgate certs init'"
	local before after out
	if certs_still_good; then
		# Nothing to make: skip compiling the CLI, so a second run stays quick.
		return 0
	fi
	before=$(file_digest "$TLS_DIR/server.pem")
	out=$(cd "$REPO_ROOT" && go run ./cmd/ldapgate certs init --dir "$TLS_DIR" \
		--host dc1.$DNS_DOMAIN --host dc2.$DNS_DOMAIN --host "*.$DNS_DOMAIN" \
		--host localhost --host 127.0.0.1 --host 127.0.0.2 2>&1) || {
		# A work tree whose Go code does not build (someone's change in progress)
		# must not keep an already made test bed from starting.
		[[ -s $TLS_DIR/ca.pem && -s $TLS_DIR/ca.key && -s $TLS_DIR/server.pem && -s $TLS_DIR/server.key ]] ||
			die "ldapgate certs init failed: $out"
		warn "ldapgate certs init failed, keeping the certificates in $TLS_DIR: $(head -n 3 <<<"$out")"
	}
	after=$(file_digest "$TLS_DIR/server.pem")
	if [[ $before != "$after" ]]; then
		log "$(printf '%s\n' "$out" | grep -m1 server.pem)"
		# Samba reads its certificate only at start.
		local dc
		for dc in "${DCS[@]}"; do
			if dc_running "$dc"; then
				log "the server certificate changed: restarting $dc"
				dc_stop "$dc"
			fi
		done
	fi
	# Samba refuses a private key that others may read.
	chmod 0600 "$TLS_DIR/server.key" "$TLS_DIR/ca.key"
}

# ---------------------------------------------------------------------------------
# The private namespace's files and the DCs' configuration.

# write_if_changed FILE: replaces FILE's content with stdin, in place. A running DC
# sees /etc/hosts through a bind mount of this very inode, so never rename over it.
# WROTE tells the caller whether the file changed.
WROTE=""
write_if_changed() {
	local new
	new=$(cat)
	WROTE=""
	if [[ ! -f $1 ]] || [[ $(<"$1") != "$new" ]]; then
		printf '%s\n' "$new" >"$1"
		WROTE=1
	fi
}

write_ns_files() {
	mkdir -p "$NS_ETC"
	# DC names resolve to loopback. Samba's replication may address a DC by its DSA
	# GUID's _msdcs name (a DNS CNAME in real AD): those are mapped too, once known.
	local g1="" g2=""
	if [[ -f $NS_ETC/dsa-guids ]]; then
		g1=$(awk '$1 == "dc1" { print $2 "._msdcs.'$DNS_DOMAIN'" }' "$NS_ETC/dsa-guids")
		g2=$(awk '$1 == "dc2" { print $2 "._msdcs.'$DNS_DOMAIN'" }' "$NS_ETC/dsa-guids")
	fi
	write_if_changed "$NS_ETC/hosts" <<EOF
# ldapgate test bed: bind-mounted over /etc/hosts inside the DCs' mount namespace
127.0.0.1 localhost
127.0.0.1 dc1.$DNS_DOMAIN dc1 $DNS_DOMAIN $g1
127.0.0.2 dc2.$DNS_DOMAIN dc2 $g2
::1 localhost ip6-localhost ip6-loopback
EOF
	# Nothing answers DNS on 127.0.0.1: a lookup that escapes /etc/hosts fails at once
	# instead of waiting on the machine's resolver.
	write_if_changed "$NS_ETC/resolv.conf" <<EOF
nameserver 127.0.0.1
options timeout:1 attempts:1
EOF
	# Heimdal and MIT both look realms up case-sensitively; Samba uses both spellings.
	write_if_changed "$NS_ETC/krb5.conf" <<EOF
[libdefaults]
	default_realm = $REALM
	dns_lookup_realm = false
	dns_lookup_kdc = false
[realms]
	$REALM = {
		kdc = dc1.$DNS_DOMAIN
		kdc = dc2.$DNS_DOMAIN
		admin_server = dc1.$DNS_DOMAIN
	}
	${REALM,,} = {
		kdc = dc1.$DNS_DOMAIN
		kdc = dc2.$DNS_DOMAIN
		admin_server = dc1.$DNS_DOMAIN
	}
[domain_realm]
	.$DNS_DOMAIN = $REALM
	$DNS_DOMAIN = $REALM
EOF
}

# write_smb_conf DC: every path inside the DC's directory, nothing under /etc/samba or
# /var/lib/samba; only the services an LDAP test bed needs; bound to one loopback IP.
write_smb_conf() {
	local dc=$1 d
	d=$(dc_dir "$dc")
	mkdir -p "$d/etc" "$d/private" "$d/state/sysvol/$DNS_DOMAIN/scripts" "$d/cache" "$d/lock" \
		"$d/run" "$d/log" "$d/bind-dns"
	write_if_changed "$(dc_conf "$dc")" <<EOF
# Written by integration/samba/up.sh for the ldapgate test bed: do not edit.
[global]
	netbios name = ${dc^^}
	realm = $REALM
	workgroup = $NETBIOS_DOMAIN
	server role = active directory domain controller
	interfaces = ${DC_IP[$dc]}/8
	bind interfaces only = yes
	disable netbios = yes
	server services = ldap, cldap, kdc, rpc, drepl, kcc, winbindd
	dns update command = /bin/true
	private dir = $d/private
	binddns dir = $d/bind-dns
	state directory = $d/state
	cache directory = $d/cache
	lock directory = $d/lock
	pid directory = $d/run
	ncalrpc dir = $d/run/ncalrpc
	winbindd socket directory = $d/run/winbindd
	ntp signd socket directory = $d/run/ntp_signd
	log file = $d/log/samba.log
	max log size = 10000
	log level = 1
	# Tell replication partners about a change after 1 s instead of 5 s, so the
	# tests' "visible on the other DC" waits stay short.
	dreplsrv:notify_interval = 1
	tls enabled = yes
	tls keyfile = $TLS_DIR/server.key
	tls certfile = $TLS_DIR/server.pem
	tls cafile = $CA_PEM

[sysvol]
	path = $d/state/sysvol
	read only = no

[netlogon]
	path = $d/state/sysvol/$DNS_DOMAIN/scripts
	read only = no
EOF
}

# ---------------------------------------------------------------------------------
# Provisioning dc1 and joining dc2: done together, or not at all.

samba_tool() {
	ns samba-tool "$@" -s "$(dc_conf dc1)" -U "$NETBIOS_DOMAIN\\Administrator" --password="$ADMIN_PASS"
}

# run_logged LOGFILE WHAT CMD...: runs CMD with its (chatty) output in LOGFILE, and
# shows the end of that file when it fails.
run_logged() {
	local logfile=$1 what=$2
	shift 2
	if ! "$@" >"$logfile" 2>&1; then
		printf 'testbed: ERROR: %s failed; last lines of %s:\n' "$what" "$logfile" >&2
		tail -n 30 "$logfile" >&2
		exit 1
	fi
}

record_dsa_guids() {
	# The NTDS Settings objects' GUIDs, for their _msdcs names in the namespace's hosts.
	ldbsearch -H "$(dc_sam dc1)" -b "CN=Sites,CN=Configuration,$BASE_DN" '(objectClass=nTDSDSA)' objectGUID |
		awk '/^dn: / { split($0, rdn, ","); sub(/^CN=/, "", rdn[2]); name = tolower(rdn[2]) }
			/^objectGUID: / { print name, $2 }' >"$NS_ETC/dsa-guids"
	[[ $(wc -l <"$NS_ETC/dsa-guids") == 2 ]] || die "expected two DSAs in dc1's configuration, got: $(cat "$NS_ETC/dsa-guids")"
	write_ns_files
}

# replicate_pair TO FROM: forces one replication of the domain into TO from FROM,
# with --add-ref, which makes FROM add TO to its repsTo (the partners it notifies of
# changes). TO needs an inbound connection from FROM for that: dc2 has one from its
# join, dc1 gets its one from its KCC, which runs about 15 s after dc1 starts and
# then every 5 minutes. So when TO has none yet, run TO's KCC and try again; a KCC
# asked while its own run is still going answers NT_STATUS_DS_BUSY. All bounded.
replicate_pair() {
	local to=$1 from=$2 logfile deadline
	logfile=$(dc_dir "$to")/log/replicate.log
	deadline=$((SECONDS + 120))
	: >"$logfile"
	until {
		echo "== $(date -u +%T) drs replicate $to <- $from"
		samba_tool drs replicate "$to" "$from" "$BASE_DN" --add-ref
	} >>"$logfile" 2>&1; do
		if ((SECONDS >= deadline)); then
			printf 'testbed: ERROR: samba-tool drs replicate %s <- %s kept failing for 120s; last lines of %s:\n' \
				"$to" "$from" "$logfile" >&2
			tail -n 30 "$logfile" >&2
			exit 1
		fi
		{
			echo "== $(date -u +%T) drs kcc $to"
			samba_tool drs kcc "$to"
		} >>"$logfile" 2>&1 || sleep 1
	done
}

provision_pair() {
	[[ -f $TESTBED_DIR/.paired ]] && return 0
	if [[ -e $(dc_dir dc1) || -e $(dc_dir dc2) ]]; then
		# Re-joining dc2 alone stalls replication for over a minute: rebuild both.
		log "found a half-built test bed (no .paired marker): wiping both DCs and starting over"
		dc_stop dc2
		dc_stop dc1
		rm -rf "$(dc_dir dc1)" "$(dc_dir dc2)" "$NS_ETC/dsa-guids"
		write_ns_files
	fi

	phase provision
	log "provisioning $REALM on dc1 (${DC_IP[dc1]})"
	write_smb_conf dc1
	run_logged "$(dc_dir dc1)/log/provision.log" "samba-tool domain provision" \
		ns samba-tool domain provision -s "$(dc_conf dc1)" --realm="$REALM" --domain="$NETBIOS_DOMAIN" \
		--server-role=dc --dns-backend=NONE --host-name=dc1 --host-ip="${DC_IP[dc1]}" \
		--adminpass="$ADMIN_PASS"
	# The dnsupdate service (not run here) would add the DC's SPNs, among them the
	# DRS one (E3514235-.../<DSA GUID>/<domain>) without which dc2 cannot replicate
	# from dc1 ("Server ... unknown" at the KDC).
	run_logged "$(dc_dir dc1)/log/spnupdate.log" "samba_spnupdate on dc1" \
		ns samba_spnupdate -s "$(dc_conf dc1)"
	dc_start dc1

	phase join
	log "joining dc2 (${DC_IP[dc2]}) as a second DC"
	write_smb_conf dc2
	run_logged "$(dc_dir dc2)/log/join.log" "samba-tool domain join" \
		ns samba-tool domain join "$DNS_DOMAIN" DC -s "$(dc_conf dc2)" --server="dc1.$DNS_DOMAIN" \
		--dns-backend=NONE -U "$NETBIOS_DOMAIN\\Administrator" --password="$ADMIN_PASS"
	run_logged "$(dc_dir dc2)/log/spnupdate.log" "samba_spnupdate on dc2" \
		ns samba_spnupdate -s "$(dc_conf dc2)"
	record_dsa_guids
	dc_start dc2
	# One forced replication each way, so each DC notifies the other of changes
	# from now on (within seconds) instead of waiting for periodic pulls.
	replicate_pair dc2 dc1
	replicate_pair dc1 dc2
	touch "$TESTBED_DIR/.paired"
}

# start_both: starts whichever DC is stopped, and restarts a running one whose
# configuration this run changed (Samba reads it only at start).
start_both() {
	local dc
	for dc in "${DCS[@]}"; do
		write_smb_conf "$dc"
		if dc_running "$dc" && [[ -n $WROTE ]]; then
			log "$dc's smb.conf changed: restarting it"
			dc_stop "$dc"
		fi
	done
	if ! dc_running dc1 || ! dc_running dc2; then
		phase start
	fi
	dc_start dc1
	dc_start dc2
}

# ---------------------------------------------------------------------------------
# Seeding (through dc1's sam.ldb, see seed.py) and checking every account's bind.

SEED=(/usr/bin/python3 "$SAMBA_SCRIPTS/seed.py")

seed_accounts() {
	phase seed
	local conf out errs
	conf=$(dc_conf dc1)
	errs=$(mktemp)
	out=$("${SEED[@]}" "$conf" accounts 2>"$errs") || { cat "$errs" >&2; rm -f "$errs"; die "seeding the accounts failed"; }
	if [[ -s $errs ]]; then
		CHANGED=1
		sed 's/^/testbed: /' "$errs"
	fi
	if [[ $out == *need-pwexpired* ]]; then
		# Its password must be older than its PSO's 2-day maximum: set it "5 days ago".
		faketime -f '-5d' "${SEED[@]}" "$conf" pwexpired 2>"$errs" || { cat "$errs" >&2; rm -f "$errs"; die "seeding gpwexpired under faketime failed"; }
		sed 's/^/testbed: /' "$errs"
		CHANGED=1
	fi
	rm -f "$errs"
}

seed_bulk() {
	((USERS > 0)) || return 0
	local chunks n f added=0
	chunks=$(dc_dir dc1)/bulk
	rm -rf "$chunks"
	n=$("${SEED[@]}" "$(dc_conf dc1)" bulk "$USERS" "$chunks") || die "listing the bulk users failed"
	((n > 0)) || return 0
	phase "bulk($n)"
	log "adding $n bulk users with ldbadd (Samba hashes each password: about 30 s per 1,000)"
	# ldbadd writes dc1's sam.ldb under ldb's cross-process transaction lock, as
	# samba-tool does by default; chunks keep each lock short and show progress.
	for f in "$chunks"/*.ldif; do
		SMB_CONF_PATH=$(dc_conf dc1) ldbadd -H "$(dc_sam dc1)" "$f" >/dev/null 2>"$chunks/ldbadd.err" ||
			die "ldbadd $f failed: $(tail -n 5 "$chunks/ldbadd.err")"
		added=$((added + $(grep -c '^dn: ' "$f")))
		log "  $added/$n bulk users added"
	done
	rm -rf "$chunks"
	CHANGED=1
}

# bind_result URL DN PASSWORD: prints "ok", the AD data code of a failed bind
# (52e, 533, ...), or "error: <message>" when the bind did not get an answer.
bind_result() {
	local out
	if out=$(ldapsearch -x -H "$1" -D "$2" -w "$3" -o nettimeout=3 -l 5 -b '' -s base -LLL dn 2>&1); then
		echo ok
	elif [[ $out =~ data\ ([0-9a-f]+) ]]; then
		echo "${BASH_REMATCH[1]}"
	else
		echo "error: ${out//$'\n'/ }"
	fi
}

HLOCKED_DN="CN=Hal Locked,$USERS_OU"
HLOCKED_PW='Passw0rd!hlocked'

relock_hlocked() {
	local got i
	got=$(bind_result "$(dc_url dc1)" "$HLOCKED_DN" "$HLOCKED_PW")
	[[ $got == 775 ]] && return 0
	phase relock
	log "locking hlocked out (three bad binds on dc1; it was: $got)"
	for i in 1 2 3; do
		bind_result "$(dc_url dc1)" "$HLOCKED_DN" "wrong-password-$i" >/dev/null
	done
	got=$(bind_result "$(dc_url dc1)" "$HLOCKED_DN" "$HLOCKED_PW")
	[[ $got == 775 ]] || die "hlocked is not locked out after three bad binds on dc1 (bind gives $got)"
	CHANGED=1
}

replicate_changes() {
	[[ -n $CHANGED ]] || return 0
	phase replicate
	log "replicating this run's changes from dc1 to dc2"
	run_logged "$(dc_dir dc2)/log/replicate-changes.log" "samba-tool drs replicate dc2 <- dc1" \
		samba_tool drs replicate dc2 dc1 "$BASE_DN"
}

# heartbeat FROM TO SECONDS: writes a heartbeat (the description of the bulk users'
# OU: no user changes) on FROM and waits up to SECONDS until TO has it.
heartbeat() {
	local from=$1 to=$2 limit=$3 stamp deadline t0
	stamp="replication heartbeat $(date -u +%FT%T.%NZ) from $from"
	printf 'dn: %s\nchangetype: modify\nreplace: description\ndescription: %s\n' "$LOAD_OU" "$stamp" |
		ldapmodify -x -H "$(dc_url "$from")" -D "$ADMIN_DN" -w "$ADMIN_PASS" -o nettimeout=3 >/dev/null ||
		die "could not write the replication heartbeat on $from"
	t0=$EPOCHREALTIME
	deadline=$((SECONDS + limit))
	until ldapsearch -x -H "$(dc_url "$to")" -D "$ADMIN_DN" -w "$ADMIN_PASS" -o nettimeout=3 -LLL \
		-b "$LOAD_OU" -s base description 2>/dev/null | grep -qxF "description: $stamp"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
	log "replication $from -> $to: $(since "$t0")s"
}

# check_replication: a change on each DC must reach the other within seconds, by the
# source DC's change notification. On a freshly built pair the notification from dc2
# to dc1 sometimes is not registered (dc2 lacks dc1 in its repsTo for the domain,
# though the forced replication with --add-ref succeeded); one more forced
# replication with --add-ref registers it, and a second heartbeat proves it.
check_replication() {
	phase repl-check
	local from to
	for from in "${DCS[@]}"; do
		to=dc1
		[[ $from == dc1 ]] && to=dc2
		heartbeat "$from" "$to" 5 && continue
		log "a change on $from did not reach $to within 5s: registering $to for $from's notifications again"
		run_logged "$(dc_dir "$to")/log/replicate-heal.log" "samba-tool drs replicate $to <- $from" \
			samba_tool drs replicate "$to" "$from" "$BASE_DN" --add-ref
		heartbeat "$from" "$to" 15 ||
			die "a change on $from did not reach $to within 15s: replication is broken (rebuild both: down.sh --wipe, then up.sh)"
	done
}

# The accounts table of AD-FACTS.md: DN, password, the result of a simple bind.
EXPECTED=(
	"CN=John Doe,$USERS_OU|Passw0rd!jdoe|ok"
	"CN=Alice Smith,$USERS_OU|Passw0rd!asmith|ok"
	"CN=Bob Jones,$USERS_OU|Passw0rd!bjones|ok"
	"CN=Seán O'Brien\\, Jr.,$USERS_OU|Pässw0rd!€ü|ok"
	"CN=Carol White,$USERS_OU|Passw0rd!cwhite|533"
	"CN=Dan Must,$USERS_OU|Passw0rd!dmust|773"
	"CN=Eve Expired,$USERS_OU|Passw0rd!eexpired|701"
	"CN=Gus PwExpired,$USERS_OU|Passw0rd!gpwexpired|532"
	"$HLOCKED_DN|$HLOCKED_PW|775"
	"CN=PBX Service,$USERS_OU|Svc!Passw0rd-pbx|ok"
	"$ADMIN_DN|$ADMIN_PASS|ok"
)

verify_binds() {
	phase verify
	local checks=("${EXPECTED[@]}") dc line dn pw want got deadline bad i
	if ((USERS > 0)); then
		for i in 0 $((USERS - 1)); do
			checks+=("$(printf 'CN=user%04d,%s|Passw0rd!%04d|ok' "$i" "$LOAD_OU" "$i")")
		done
	fi
	for dc in "${DCS[@]}"; do
		# dc2 may still be applying the last replication: retry, within a bound.
		deadline=$((SECONDS + 30))
		while :; do
			bad=()
			for line in "${checks[@]}"; do
				IFS='|' read -r dn pw want <<<"$line"
				got=$(bind_result "$(dc_url "$dc")" "$dn" "$pw")
				[[ $got == "$want" ]] || bad+=("  $dn: expected $want, got $got")
			done
			((${#bad[@]} == 0)) && break
			if ((SECONDS >= deadline)); then
				printf 'testbed: ERROR: binds on %s (%s) differ from the accounts table:\n' "$dc" "$(dc_url "$dc")" >&2
				printf '%s\n' "${bad[@]}" >&2
				exit 1
			fi
			sleep 1
		done
	done
}

# ---------------------------------------------------------------------------------

mkdir -p "$TESTBED_DIR"
touch "$TESTBED_DIR/.ldapgate-testbed"
log "state directory $TESTBED_DIR"
install_packages
phase preflight
stop_system_samba
make_certs
write_ns_files
provision_pair
start_both
seed_accounts
seed_bulk
relock_hlocked
replicate_changes
verify_binds
check_replication
end_phase

total=$(since "$RUN_T0")
printf '%s users=%s total=%ss phases: %s\n' "$(date -u +%FT%TZ)" "$USERS" "$total" "${TIMINGS[*]/%/;}" >>"$TESTBED_DIR/timings.log"
log "timings: $(printf '%s; ' "${TIMINGS[@]}")total ${total}s"
log "CA bundle: $CA_PEM"
log "LDAPS ready on dc1 $(dc_url dc1) and dc2 $(dc_url dc2)"
