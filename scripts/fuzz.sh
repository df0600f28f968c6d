#!/usr/bin/env bash
# Runs every fuzz target in the module briefly (FUZZTIME, default 5000x:
# five thousand inputs each). `go test -fuzz` takes one target per run.
# A count rather than a duration: with a duration, Go 1.26's fuzzing
# coordinator can fail a target with a bare "context deadline exceeded"
# when the time runs out (golang/go#75804, fixed in Go 1.27).
set -euo pipefail
fuzztime="${FUZZTIME:-5000x}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
	for t in $targets; do
		echo "fuzz: $pkg $t ($fuzztime)"
		if ! go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
			# Should FUZZTIME be a duration, the coordinator race above
			# shows as "context deadline exceeded" with no failing input:
			# that is the engine, not the code, so run the target once
			# more. A real failure names its input.
			if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
				echo "fuzz: $t: engine deadline, running again"
				go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1 && continue
			fi
			cat "$log"
			exit 1
		fi
	done
done
