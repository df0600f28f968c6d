#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time each
# (FUZZTIME, default 3s). `go test -fuzz` takes one target per run.
set -euo pipefail
fuzztime="${FUZZTIME:-3s}"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
	for t in $targets; do
		echo "fuzz: $pkg $t ($fuzztime)"
		go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/cloakroom-fuzz.log 2>&1 || {
			cat /tmp/cloakroom-fuzz.log
			exit 1
		}
	done
done
