#!/usr/bin/env bash
# dc.sh start|stop|restart|status dc1|dc2 [--dir DIR]
#
# Starts or stops one DC of a test bed that up.sh built, for failover tests:
# "stop" returns once the DC's LDAP ports refuse connections, "start" once its LDAPS
# answers with the project CA's certificate. "status" exits 0 when the DC runs and
# answers LDAPS, 3 when it does not.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	echo "usage: $0 start|stop|restart|status dc1|dc2 [--dir DIR]"
}

args=()
dir=$TESTBED_DIR
while (($#)); do
	case $1 in
	--dir) dir=${2:-}; shift 2 || die "--dir needs a directory" ;;
	--dir=*) dir=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) args+=("$1"); shift ;;
	esac
done
((${#args[@]} == 2)) || { usage >&2; exit 2; }
action=${args[0]}
dc=${args[1]}
check_dc_name "$dc"
require_root
set_dir "$dir"

if [[ $action == status ]]; then
	if dc_running "$dc" && ldap_probe "$(dc_url "$dc")"; then
		log "$dc is running and answers on $(dc_url "$dc")"
		exit 0
	fi
	log "$dc is not answering on $(dc_url "$dc")"
	exit 3
fi

[[ -f $TESTBED_DIR/.paired ]] || die "no test bed in $TESTBED_DIR: run integration/samba/up.sh first"
take_lock
case $action in
start)
	dc_start "$dc"
	log "$dc answers LDAPS on $(dc_url "$dc")"
	;;
stop)
	dc_stop "$dc"
	log "$dc is stopped: $(dc_url "$dc") refuses connections"
	;;
restart)
	dc_stop "$dc"
	dc_start "$dc"
	log "$dc answers LDAPS on $(dc_url "$dc")"
	;;
*)
	usage >&2
	exit 2
	;;
esac
