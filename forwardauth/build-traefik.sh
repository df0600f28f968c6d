#!/usr/bin/env bash
# Builds Traefik, for the Traefik forward-auth test (make test-traefik), from
# the Go module proxy into a cache folder outside the repository, so
# cloakroom's go.mod never sees its dependencies. Traefik's go.mod has
# replace directives, which go install pkg@version refuses: the module's
# source is downloaded and built as its own main module. v3.6.12 is the
# release tested (its dependencies all resolve on the module proxy). Prints
# the binary's path (about 245 MB); a second run reuses it.
set -euo pipefail

version="${TRAEFIK_VERSION:-v3.6.12}"
go="${GO:-go}"
dir="${CLOAKROOM_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloakroom-bench}/traefik-$version"
bin="$dir/traefik"
if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$dir"
echo "building Traefik $version into $dir (several minutes the first time)" >&2
# Outside the repository, so the go command does not read cloakroom's go.mod.
cd "$dir"
src="$(GOFLAGS=-mod=mod "$go" mod download -json "github.com/traefik/traefik/v3@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$src" ]]; then
	echo "could not download github.com/traefik/traefik/v3@$version" >&2
	exit 1
fi
rm -rf "$dir/src"
cp -r "$src" "$dir/src"
chmod -R u+w "$dir/src"
(cd "$dir/src" && GOFLAGS=-mod=mod "$go" build -trimpath -o "$bin.tmp" ./cmd/traefik) >&2
mv "$bin.tmp" "$bin"
rm -rf "$dir/src"
echo "$bin"
