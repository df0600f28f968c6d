#!/usr/bin/env bash
# Builds the cloakroom command (default bin/cloakroom), saying first how
# long it may take and then how far it has got. A first build compiles
# about 385 packages, the pure-Go SQLite among them, and `go build` alone
# prints nothing meanwhile: on a busy machine that looked like a hang.
#
# Usage: scripts/build.sh [OUTPUT]
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=${1:-bin/cloakroom}
pkg=./cmd/cloakroom

# Measured on a 2-core VM with `GOCACHE=$(mktemp -d) go build ./cmd/cloakroom`
# (see the README): cold, 85 s with little else running (130 s of CPU),
# 227 s while other builds pushed the load average to 13; warm, 0.24 s
# when the binary is up to date and 2.6 s to link it again.
cold_estimate="1.5 to 4 minutes on 2 cores, more on a busy machine"

# The packages the build cache does not hold: `go list` tells without
# compiling. The command's own package is left out, as go list calls it
# stale whenever it is not installed in GOBIN; it is linked in any case.
total=$($GO list -deps -f '{{if and .Stale (ne .Name "main")}}x{{end}}' "$pkg" | grep -c x || true)
if ((total > 100)); then
	echo "Building $out: first build, $total packages to compile: $cold_estimate; later builds take seconds..."
elif ((total > 0)); then
	echo "Building $out: $total changed package(s) to compile, then link (seconds, up to a minute)..."
else
	echo "Building $out: nothing to compile, at most a link (seconds)..."
fi

mkdir -p "$(dirname "$out")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# -v names each package as it is compiled; anything else is an error.
# -buildvcs=auto: the commit goes into `cloakroom version` wherever git
# knows it, even under a GOFLAGS that turns it off.
$GO build -buildvcs=auto -v -o "$out" "$pkg" >"$log" 2>&1 &
build=$!

start=$SECONDS
last_report=$SECONDS
report() {
	local done current
	done=$(grep -cE '^[A-Za-z0-9._~/-]+$' "$log" || true)
	current=$(grep -E '^[A-Za-z0-9._~/-]+$' "$log" | tail -n 1 || true)
	((done > total)) && total=$done
	if [[ -t 1 ]]; then
		printf '\r\033[K  %3d s  %d/%d packages  %s' "$((SECONDS - start))" "$done" "$total" "$current"
	else
		printf '  %3d s  %d/%d packages  %s\n' "$((SECONDS - start))" "$done" "$total" "$current"
	fi
}
while kill -0 "$build" 2>/dev/null; do
	sleep 1
	if ((total > 0)) && { [[ -t 1 ]] || ((SECONDS - last_report >= 15)); }; then
		report
		last_report=$SECONDS
	fi
done
status=0
wait "$build" || status=$?
if ((total > 0)) && [[ -t 1 ]]; then
	printf '\r\033[K'
fi
if ((status != 0)); then
	grep -vE '^[A-Za-z0-9._~/-]+$' "$log" >&2 || true
	echo "Building $out failed after $((SECONDS - start)) s (exit $status)" >&2
	exit "$status"
fi
if ((total > 0)); then
	echo "  built in $((SECONDS - start)) s"
fi
