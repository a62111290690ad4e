#!/usr/bin/env bash
# Runs every fuzz target of the module (every `func FuzzXxx` in a _test.go file),
# one after the other, and prints each target's exec count. A finding fails the
# run and leaves its input under the package's testdata/fuzz/, where `go test`
# replays it from then on.
#
# Each target runs for a number of executions, not for a time: with a duration,
# Go 1.26's fuzzing coordinator can fail a target with a bare "context deadline
# exceeded" when the time runs out while a worker is mid-input (golang/go#75804,
# fixed in Go 1.27). CI failed on it once (FuzzLogSafe). The counts below are
# about 20 s each on CI's two cores; a target not listed gets the default.
# FUZZTIME overrides the budget of every target (a count such as 1000000x, or a
# duration such as 60s, with the caveat above). FUZZTIMEOUT bounds each target's
# wall time (default 5m): a target that cannot finish its count by then fails
# with the test binary's own timeout report.
# Usage: integration/fuzz-all.sh [regexp of target names]
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A budget=(
	[FuzzParse]=40000x
	[FuzzClientMessages]=100000x
	[FuzzLogSafe]=150000x
	[FuzzOfflineFile]=150000x
	[FuzzParseADCode]=150000x
	[FuzzParseLogin]=120000x
	[FuzzReencodeFilter]=150000x
	[FuzzFilterAnalysis]=200000x
	[FuzzFilterEvaluator]=300000x
)
default_budget=100000x
timeout=${FUZZTIMEOUT:-5m}
only=${1:-.}

mapfile -t targets < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . |
	sed -E 's|^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)$|\1 \2|' | sort -u | grep -E " .*${only}" || true)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz-all: no fuzz target matches $only" >&2
	exit 1
fi
for t in "${targets[@]}"; do
	pkg=${t% *}
	name=${t#* }
	fuzztime=${FUZZTIME:-${budget[$name]:-$default_budget}}
	printf '\n-- %s %s (%s)\n' "$pkg" "$name" "$fuzztime"
	out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -timeout "$timeout" "./$pkg" 2>&1) || {
		echo "$out" | tail -40
		echo "fuzz-all: $name in ./$pkg failed" >&2
		exit 1
	}
	echo "$out" | grep -E '^fuzz: elapsed' | tail -1
done
