#!/usr/bin/env bash
# Builds oauth2-proxy, the forward-auth benchmark's peer, from the Go module
# proxy with its own go.mod (go install pkg@version), into a cache folder
# outside the repository, so cloakroom's go.mod never sees its dependencies.
# Prints the binary's path. A second run reuses the binary.
set -euo pipefail

version="${OAUTH2_PROXY_VERSION:-v7.15.6}"
dir="${CLOAKROOM_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloakroom-bench}/oauth2-proxy-$version"
bin="$dir/oauth2-proxy"
if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$dir"
echo "building oauth2-proxy $version into $dir (about 2 minutes the first time)" >&2
# Outside the repository, so go install does not read cloakroom's go.mod.
cd "$dir"
GOBIN="$dir" GOFLAGS=-mod=mod "${GO:-go}" install "github.com/oauth2-proxy/oauth2-proxy/v7@$version" >&2
echo "$bin"
