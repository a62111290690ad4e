#!/usr/bin/env bash
# Runs every fuzz target of the module (every `func FuzzXxx` in a _test.go file)
# for FUZZTIME each (default 20s), one after the other, and prints each target's
# exec count. A finding fails the run and leaves its input under the package's
# testdata/fuzz/, where `go test` replays it from then on.
# Usage: integration/fuzz-all.sh [regexp of target names]
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-20s}
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
	printf '\n-- %s %s (%s)\n' "$pkg" "$name" "$fuzztime"
	out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./$pkg" 2>&1) || {
		echo "$out" | tail -40
		echo "fuzz-all: $name in ./$pkg failed" >&2
		exit 1
	}
	echo "$out" | grep -E '^fuzz: elapsed' | tail -1
done
