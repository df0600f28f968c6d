#!/usr/bin/env bash
# Runs one step of `make test`: says which step it is and how long it took
# the last time it passed on this machine (kept in .cache/test-steps), runs
# `make TARGET`, then says how long it took. Several steps print nothing
# for minutes (go vet, the race build); numbered, they do not pass for a
# hang.
#
# Usage: scripts/step.sh N TOTAL TARGET DESCRIPTION
set -euo pipefail
cd "$(dirname "$0")/.."
n=$1 total=$2 target=$3 description=$4
make=${MAKE:-make}
times=.cache/test-steps

duration() {
	local s=$1
	if ((s < 60)); then
		echo "${s} s"
	else
		echo "$((s / 60)) min $((s % 60)) s"
	fi
}

last=""
if [[ -f $times ]]; then
	last=$(awk -v t="$target" '$1 == t { print $2 }' "$times" | tail -n 1)
fi
note=""
[[ -n $last ]] && note=" (last run here: $(duration "$last"))"
echo
echo "[$n/$total] $description$note..."
start=$SECONDS
if ! "$make" --no-print-directory "$target"; then
	echo "[$n/$total] $target: failed after $(duration "$((SECONDS - start))"); the later steps did not run" >&2
	exit 1
fi
took=$((SECONDS - start))
echo "[$n/$total] $target: done in $(duration "$took")"

mkdir -p .cache
{
	[[ -f $times ]] && awk -v t="$target" '$1 != t' "$times"
	echo "$target $took"
} >"$times.new"
mv "$times.new" "$times"
