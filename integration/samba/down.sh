#!/usr/bin/env bash
# down.sh [--wipe] [--dir DIR]
#
# Stops both test bed DCs (SIGTERM by pid file, a bounded wait, then SIGKILL) and
# returns once their LDAP ports refuse connections. With --wipe it also deletes the
# state directory: both DCs go together, because a dc2 re-joined to an old dc1
# stalls replication for over a minute. up.sh starts (or rebuilds) them again.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	echo "usage: $0 [--wipe] [--dir DIR]"
}

wipe=""
dir=$TESTBED_DIR
while (($#)); do
	case $1 in
	--wipe) wipe=1; shift ;;
	--dir) dir=${2:-}; shift 2 || die "--dir needs a directory" ;;
	--dir=*) dir=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
done
require_root
set_dir "$dir"
take_lock

for dc in "${DCS[@]}"; do
	dc_stop "$dc"
done

if [[ -n $wipe && -e $TESTBED_DIR ]]; then
	# Never remove a directory that up.sh did not make.
	[[ -f $TESTBED_DIR/.ldapgate-testbed ]] ||
		die "$TESTBED_DIR has no .ldapgate-testbed marker: not removing it"
	rm -rf "$TESTBED_DIR"
	log "wiped $TESTBED_DIR"
fi
log "both DCs are down"
