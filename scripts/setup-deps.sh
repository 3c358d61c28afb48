#!/usr/bin/env bash
# setup-deps.sh: installs what denokv-fcgi needs on a Debian 12 machine:
# the build tools and libraries, nginx and caddy, clang with libFuzzer's
# runtime (libclang-rt-dev: the fuzz targets), strace (a start-up race in
# tests/e2e/lifecycle.sh), and (with npm) the Deno CLI, the @deno/kv Node
# client that the tests drive the server with, and Litestream (the
# continuous backup suite); plus what the tests check with (mandoc) and the
# Debian packaging tools.
# Safe to run again: it only installs what is missing.
#
# Debian starts nginx and caddy as system services on port 80 (and caddy's
# admin API on 2019) as soon as they are installed. This project runs its
# own instances on its own ports and needs neither: when this script is
# what installs them, their services are not started and are disabled
# (a note says how to turn them back on). Installed before, they are left
# alone.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
	build-essential autoconf automake pkg-config
	libfcgi-dev libsqlite3-dev libprotobuf-c-dev protobuf-c-compiler
	libjansson-dev libsystemd-dev libinih-dev
	nginx caddy systemd sqlite3 curl ca-certificates procps iproute2
	socat openssl man-db groff-base wrk strace mandoc util-linux git
	clang libclang-rt-dev
	debhelper dpkg-dev lintian
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
	services=()
	for p in nginx caddy; do
		case " ${missing[*]} " in *" $p "*) services+=("$p") ;; esac
	done
	# policy-rc.d (invoke-rc.d and deb-systemd-invoke obey it) keeps the
	# new services from starting; an existing one is the machine's own.
	policy=
	if [ ${#services[@]} -gt 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\n# scripts/setup-deps.sh: no service starts during its install\nexit 101\n' |
			$SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
	fi
	rc=0
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	[ -n "$policy" ] && $SUDO rm -f "$policy"
	[ "$rc" = 0 ] || exit "$rc"
	if [ ${#services[@]} -gt 0 ]; then
		if command -v systemctl >/dev/null 2>&1; then
			# disable works without systemd running; stop only with it.
			$SUDO systemctl disable "${services[@]}" >/dev/null 2>&1 || true
			[ -d /run/systemd/system ] && $SUDO systemctl stop "${services[@]}" >/dev/null 2>&1
		fi
		for p in "${services[@]}"; do
			command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$p" ] &&
				$SUDO update-rc.d "$p" disable >/dev/null 2>&1
		done
		echo "note: installed ${services[*]}, whose system services (port 80) this project does not use;" >&2
		echo "      they are not started and are disabled. To use them: systemctl enable --now ${services[*]}" >&2
	fi
fi

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
