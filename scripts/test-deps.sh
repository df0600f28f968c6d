#!/usr/bin/env bash
# Installs and starts what the tests need: Chromium for the browser tests,
# nginx and Caddy for the forward-auth tests (which start their own on free
# loopback ports), and Redis and PostgreSQL when they are not already running. Safe to run
# again; does nothing that is already done. Needs root for installs; without
# it, the tests start throwaway servers themselves or skip.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
as_root() { [ "$(id -u)" = 0 ]; }

apt_updated=""
apt_install() {
	as_root || { echo "test-deps: not root, cannot install $*" >&2; return 0; }
	if [ -z "$apt_updated" ]; then
		apt-get update -qq >/dev/null
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! have chromium; then
	echo "test-deps: installing chromium"
	apt_install chromium
fi

# Debian's nginx has the auth_request module built in. The tests run both
# in the foreground themselves; the packages' own services are not needed.
if ! have nginx && [ ! -x /usr/sbin/nginx ]; then
	echo "test-deps: installing nginx (forward-auth tests)"
	apt_install nginx
fi
# The ingress-nginx test loads set_misc (and the ndk it needs), as
# ingress-nginx does.
if [ ! -e /usr/lib/nginx/modules/ngx_http_set_misc_module.so ]; then
	echo "test-deps: installing nginx's set_misc module (ingress-nginx test)"
	apt_install libnginx-mod-http-set-misc
fi
if ! have caddy; then
	echo "test-deps: installing caddy (forward-auth tests)"
	apt_install caddy
fi

if ! have redis-server || ! have redis-cli; then
	echo "test-deps: installing redis-server and redis-cli (the Redis Cluster tests need both)"
	apt_install redis-server redis-tools
fi
if have redis-cli && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
	echo "test-deps: starting redis on 127.0.0.1:6379"
	mkdir -p /tmp/cloakroom-redis
	redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
		--dir /tmp/cloakroom-redis --logfile /tmp/cloakroom-redis/redis.log || true
fi

if ! have pg_ctlcluster && ! have initdb && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	echo "test-deps: installing postgresql"
	apt_install postgresql
fi
if have pg_isready && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
	if have pg_ctlcluster && [ -d /etc/postgresql ]; then
		echo "test-deps: starting postgresql"
		for v in $(ls /etc/postgresql); do
			pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
		done
	fi
fi
# The tests fall back to throwaway servers for whatever is still missing.
exit 0
