#!/usr/bin/env bash
# setup-deps.sh: installs what denokv-fcgi needs on a Debian 12 machine:
# the build tools and libraries, nginx and caddy, clang with libFuzzer's
# runtime (libclang-rt-dev: the fuzz targets), strace (a start-up race in
# tests/e2e/lifecycle.sh), and (with npm) the Deno CLI, the @deno/kv Node
# client that the tests drive the server with, and Litestream (the
# continuous backup suite).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
	build-essential autoconf automake pkg-config
	libfcgi-dev libsqlite3-dev libprotobuf-c-dev protobuf-c-compiler
	libjansson-dev libsystemd-dev libinih-dev
	nginx caddy systemd sqlite3 curl ca-certificates procps iproute2
	socat man-db groff-base wrk strace
	clang libclang-rt-dev
)
# Node.js and npm: Debian's packages unless the machine already has both
# (some images ship a nodejs that bundles npm and conflicts with Debian's).
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	SUDO=
	[ "$(id -u)" = 0 ] || SUDO=sudo
	echo "installing: ${missing[*]}" >&2
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts nginx and caddy as system services on install; the project
# runs its own instances on its own ports, so the system ones are not needed.

# promtool (checks the metrics output in the tests) comes with Debian's
# prometheus package, which also installs and starts a Prometheus server on
# port 9090. Only promtool is needed: it is unpacked into tools/bin/, and
# nothing is installed or started.
if ! command -v promtool >/dev/null 2>&1 && [ ! -x tools/bin/promtool ]; then
	echo "unpacking promtool from Debian's prometheus package" >&2
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null &&
		dpkg-deb -x prometheus_*.deb root) ||
		! { mkdir -p tools/bin && cp "$tmp/root/usr/bin/promtool" tools/bin/; }; then
		echo "warning: could not unpack promtool; the metrics suite will fail" >&2
	fi
	rm -rf "$tmp"
fi

if [ ! -x node_modules/.bin/deno ] || [ ! -d node_modules/@deno/kv ] ||
	[ ! -d node_modules/@flydotio/litestream ]; then
	echo "installing the Deno CLI, @deno/kv and Litestream with npm" >&2
	npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
node_modules/.bin/deno --version | head -1 >&2
