#!/usr/bin/env bash
# tests/deb/run.sh: the Debian package, end to end, as root on a Debian
# machine. TAP on stdout, diagnostics as `# ` lines; exit status non-zero
# if any test failed. Run by scripts/test.sh.
#
#   - build: the tree (tracked and new files, as a clean clone has them)
#     copied into a directory of its own, `dpkg-buildpackage -us -uc -b`
#     makes denokv-fcgi_<version>_<arch>.deb; lintian reports no error and
#     no warning;
#   - install with `apt-get install ./denokv-fcgi_...deb`: the system user
#     (no login shell), every file where it belongs, the configuration a
#     conffile with a generated token, 0640 root:denokv-fcgi, the database
#     directory 0700 denokv-fcgi, the socket enabled and the service not;
#   - the installed binary accepts the installed configuration
#     (--check-config, as the service user) and, started the way the unit
#     starts it (socket activation, as denokv-fcgi, the same command line),
#     answers a metadata exchange through nginx using the installed
#     snippet;
#   - `apt-get purge`: nothing of the package is left, except what Debian
#     keeps on purpose: the system user, and the database the server wrote
#     (data is never deleted by a package removal).
#
# There is no systemd as PID 1 here (containers, CI): the maintainer
# scripts must then enable the socket without starting anything, which is
# part of what is tested. Installing touches the machine, so the install to
# purge part holds a lock: two copies of the suite take turns there.
#
# Environment: DENOKV_SRCDIR (default: two levels above this script),
# KEEP=1 keeps the work directory.
set -u

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
DENOKV_SRCDIR=${DENOKV_SRCDIR:-$(cd "$SCRIPT_DIR/../.." && pwd)}
PKG=denokv-fcgi
CONF=/etc/denokv-fcgi/denokv-fcgi.conf
LOCK=/run/lock/denokv-fcgi-deb-test.lock
export DEBIAN_FRONTEND=noninteractive
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

# tap and check (its own finish below keeps or removes the work directory)
# shellcheck source=tests/e2e/proclib.sh
. "$SCRIPT_DIR/../e2e/proclib.sh"
N=0
FAILED=0
finish() {
	echo "1..$N"
	if [ "$FAILED" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
		rm -rf "$W"
	else
		echo "# work directory kept: $W"
	fi
	[ "$FAILED" = 0 ]
	exit
}
# stat_is PATH MODE OWNER:GROUP: one stat line, compared.
stat_is() {
	[ "$(stat -c '%a %U:%G' "$1" 2>&1)" = "$2 $3" ]
}

W=$(mktemp -d "${TMPDIR:-/tmp}/denokv-deb.XXXXXX") || {
	echo "Bail out! cannot make a temporary directory"
	exit 1
}

# --- prerequisites: each missing one is a failure, never a skip ---------------
missing=()
[ "$(id -u)" = 0 ] || missing+=("root")
for tool in dpkg-buildpackage dh lintian apt-get systemd-socket-activate setpriv nginx curl flock; do
	command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
	tap not_ok "setup: prerequisites" "missing: ${missing[*]} (scripts/setup-deps.sh installs them)"
	finish
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
tap ok "setup: prerequisites (root, dpkg-buildpackage, debhelper, lintian, apt-get, nginx, ...)"

# --- build -----------------------------------------------------------------------
VERSION=$(dpkg-parsechangelog -l "$DENOKV_SRCDIR/debian/changelog" -S Version)
ARCH=$(dpkg --print-architecture)
DEB=$W/${PKG}_${VERSION}_$ARCH.deb
TREE=$W/$PKG-$VERSION
mkdir -p "$TREE"
# What a clean clone holds: tracked files plus new ones not ignored (build
# outputs, node_modules and the like are ignored, so never copied).
if git -C "$DENOKV_SRCDIR" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$DENOKV_SRCDIR" && git ls-files -z -co --exclude-standard |
		grep -zv '^node_modules$' | tar --null -cf - -T -) | tar -xf - -C "$TREE"
else
	tap not_ok "build: source is a git checkout" "$DENOKV_SRCDIR"
	finish
fi
(cd "$TREE" && dpkg-buildpackage -us -uc -b) >"$W/build.log" 2>&1
rc=$?
check "build: dpkg-buildpackage -us -uc -b makes $(basename "$DEB")" \
	"$([ "$rc" = 0 ] && [ -f "$DEB" ]; echo $?)" "exit status $rc" "$(tail -n 40 "$W/build.log")"
[ -f "$DEB" ] || finish
lintian --fail-on error,warning "$W"/*.changes >"$W/lintian.log" 2>&1
rc=$?
check "build: lintian reports no error or warning" "$rc" "$(grep -v 'running with root privileges' "$W/lintian.log")"
dpkg-deb -c "$DEB" | awk '{ sub(/^\./, "", $6); print $6 }' | grep -v '/$' >"$W/files"

# --- install -----------------------------------------------------------------------
exec 9>"$LOCK"
flock -w 1800 9 || {
	tap not_ok "install: lock $LOCK within 30 minutes"
	finish
}
# A leftover of an interrupted run would hide what this install creates.
apt-get purge -y -qq "$PKG" >/dev/null 2>&1
getent passwd denokv-fcgi >/dev/null && userdel denokv-fcgi 2>/dev/null
getent group denokv-fcgi >/dev/null && groupdel denokv-fcgi 2>/dev/null
rm -rf /var/lib/denokv-fcgi /etc/denokv-fcgi

apt-get install -y -q --no-install-recommends "$DEB" >"$W/install.log" 2>&1
rc=$?
check "install: apt-get install ./$(basename "$DEB")" "$rc" "$(tail -n 30 "$W/install.log")"
# Without systemd as PID 1 (here, in CI) deb-systemd-helper only links
# the units and nothing is started; either way nothing may complain.
check "install: the maintainer scripts report no warning or error ($([ -d /run/systemd/system ] && echo "systemd running" || echo "no systemd running"))" \
	"$(! grep -Ei 'warning|error|fail' "$W/install.log" | grep -v 'unsandboxed as root' | grep -q .; echo $?)" \
	"$(grep -Ei 'warning|error|fail' "$W/install.log")"

pw=$(getent passwd denokv-fcgi)
check "install: system user denokv-fcgi exists, no login shell, home /var/lib/denokv-fcgi" \
	"$(IFS=: read -r _ _ uid _ _ home shell <<<"$pw" && [ "$uid" -lt 1000 ] &&
		[ "$home" = /var/lib/denokv-fcgi ] && case $shell in */nologin | */false) true ;; *) false ;; esac
	echo $?)" "passwd: $pw"
check "install: group denokv-fcgi exists" "$(getent group denokv-fcgi >/dev/null; echo $?)"

bad=
for f in /usr/sbin/denokv-fcgi /usr/share/man/man8/denokv-fcgi.8.gz \
	/lib/systemd/system/denokv-fcgi.socket /lib/systemd/system/denokv-fcgi.service \
	/usr/lib/sysusers.d/denokv-fcgi.conf "$CONF" /etc/nginx/snippets/denokv-fcgi.conf; do
	[ -f "$f" ] || bad="$bad $f"
done
check "install: binary, man page, units, sysusers entry, configuration, nginx snippet in place" \
	"$([ -z "$bad" ]; echo $?)" "missing:$bad"
check "install: man denokv-fcgi renders the installed page" \
	"$(man -l /usr/share/man/man8/denokv-fcgi.8.gz 2>/dev/null | grep -q 'denokv-fcgi'; echo $?)"
conffiles=$(dpkg-query -W -f '${Conffiles}\n' "$PKG" 2>&1)
check "install: the configuration and the nginx snippet are conffiles" \
	"$(grep -q " $CONF " <<<"$conffiles" && grep -q ' /etc/nginx/snippets/denokv-fcgi.conf ' <<<"$conffiles"; echo $?)" \
	"$conffiles"
check "install: $CONF is 0640 root:denokv-fcgi" "$(stat_is "$CONF" 640 root:denokv-fcgi; echo $?)" \
	"$(stat -c '%a %U:%G' "$CONF")"
token=$(sed -n 's/^access-token *= *//p' "$CONF")
check "install: $CONF has a generated token of 32 characters" \
	"$([ ${#token} -eq 32 ] && [ "$(grep -c '^access-token' "$CONF")" = 1 ]; echo $?)" \
	"token length ${#token}"
check "install: /var/lib/denokv-fcgi is 0700 denokv-fcgi:denokv-fcgi" \
	"$(stat_is /var/lib/denokv-fcgi 700 denokv-fcgi:denokv-fcgi; echo $?)" \
	"$(stat -c '%a %U:%G' /var/lib/denokv-fcgi 2>&1)"
check "install: denokv-fcgi.socket enabled (sockets.target.wants), the service not" \
	"$([ -L /etc/systemd/system/sockets.target.wants/denokv-fcgi.socket ] &&
		! find /etc/systemd/system -name denokv-fcgi.service | grep -q .; echo $?)" \
	"$(find /etc/systemd/system -name 'denokv-fcgi*' 2>&1)"
unit=/lib/systemd/system/denokv-fcgi.service
check "install: the service runs the installed binary on the installed configuration" \
	"$(grep -qx "ExecStart=/usr/sbin/denokv-fcgi serve --config $CONF" "$unit"; echo $?)" \
	"$(grep '^Exec' "$unit")"

# --- the installed binary serves -----------------------------------------------------
out=$(setpriv --reuid=denokv-fcgi --regid=denokv-fcgi --init-groups \
	/usr/sbin/denokv-fcgi --config "$CONF" --check-config 2>&1)
rc=$?
check "serve: denokv-fcgi --check-config accepts the installed configuration (as denokv-fcgi)" "$rc" "$out"

# The unit's command line, as its user, on a socket handed over the way
# denokv-fcgi.socket hands it over; nginx with the installed snippet.
NG=$W/nginx
mkdir -p "$NG/tmp"
cp /etc/nginx/fastcgi_params "$NG/"
SOCK=$W/fcgi.sock
systemd-socket-activate -l "$SOCK" --fdname=fcgi \
	setpriv --reuid=denokv-fcgi --regid=denokv-fcgi --init-groups \
	/usr/sbin/denokv-fcgi serve --config "$CONF" >"$W/server.log" 2>&1 </dev/null &
ACTIVATOR=$!
# shellcheck source=../../scripts/ports.sh
. "$DENOKV_SRCDIR/scripts/ports.sh"
NGINX_UP=0
for _ in $(seq 1 "$PORT_TRIES"); do
	PORT=$(pick_port) || break
	cat >"$NG/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $NG/nginx.pid;
error_log $NG/error.log info;
events { worker_connections 64; }
http {
    access_log $NG/access.log;
    client_body_temp_path $NG/tmp/body;
    fastcgi_temp_path $NG/tmp/fastcgi;
    proxy_temp_path $NG/tmp/proxy;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    server {
        listen 127.0.0.1:$PORT;
        location /kv/ {
            include /etc/nginx/snippets/denokv-fcgi.conf;
            fastcgi_pass unix:$SOCK;
        }
    }
}
EOF
	if "$NGINX_BIN" -p "$NG/" -c "$NG/nginx.conf" -e "$NG/error.log" >"$NG/start.out" 2>&1 </dev/null; then
		NGINX_UP=1
		break
	fi
	port_bind_failed "$NG/start.out" || break
done
check "serve: nginx starts with the installed snippet" "$([ $NGINX_UP = 1 ]; echo $?)" \
	"$(cat "$NG/start.out" 2>/dev/null)"
code=000
for _ in $(seq 1 100); do
	code=$(curl -sS -m 10 -o "$W/meta.json" -w '%{http_code}' -X POST \
		-H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
		--data '{"supportedVersions":[1,2,3]}' "http://127.0.0.1:${PORT:-1}/kv/" 2>/dev/null)
	[ "$code" = 200 ] && break
	sleep 0.1
done
check "serve: metadata exchange through nginx answers 200 with a database id and /kv/v2" \
	"$([ "$code" = 200 ] && grep -q '"databaseId"' "$W/meta.json" && grep -q '"/kv/v2"' "$W/meta.json"; echo $?)" \
	"status $code" "$(cat "$W/meta.json" 2>/dev/null)" "$(tail -n 10 "$W/server.log")" "$(tail -n 5 "$NG/error.log" 2>/dev/null)"
owner=$(stat -c '%U' /var/lib/denokv-fcgi/kv.sqlite3 2>&1)
check "serve: the database was created by the service user in /var/lib/denokv-fcgi" \
	"$([ "$owner" = denokv-fcgi ]; echo $?)" "owner: $owner"
[ -f "$NG/nginx.pid" ] && kill -QUIT "$(cat "$NG/nginx.pid")" 2>/dev/null
kill -TERM "$ACTIVATOR" 2>/dev/null
for _ in $(seq 1 150); do kill -0 "$ACTIVATOR" 2>/dev/null || break; sleep 0.1; done
wait "$ACTIVATOR"
rc=$?
check "serve: SIGTERM stops the installed server, exit 0" "$rc" "$(tail -n 10 "$W/server.log")"

# --- purge ---------------------------------------------------------------------------------
apt-get purge -y -q "$PKG" >"$W/purge.log" 2>&1
rc=$?
check "purge: apt-get purge $PKG" "$rc" "$(tail -n 20 "$W/purge.log")"
left=
while read -r f; do
	[ -e "$f" ] && left="$left $f"
done <"$W/files"
for f in /etc/denokv-fcgi /etc/systemd/system/sockets.target.wants/denokv-fcgi.socket \
	/var/lib/systemd/deb-systemd-helper-enabled/denokv-fcgi.socket.dsh-also; do
	[ -e "$f" ] || [ -L "$f" ] && left="$left $f"
done
check "purge: none of the package's files, its configuration or its unit links is left" \
	"$([ -z "$left" ]; echo $?)" "left:$left"
check "purge: dpkg no longer knows the package" \
	"$(! dpkg-query -W -f '${db:Status-Status}' "$PKG" 2>/dev/null | grep -q installed; echo $?)" \
	"$(dpkg-query -W -f '${db:Status-Abbrev}' "$PKG" 2>&1)"
kept=$(ls /var/lib/denokv-fcgi 2>&1 | tr '\n' ' ')
check "purge: keeps what Debian keeps: the system user, and the database (nothing else)" \
	"$(getent passwd denokv-fcgi >/dev/null &&
		[ -z "$(find /var/lib/denokv-fcgi -mindepth 1 ! -name 'kv.sqlite3*' 2>/dev/null)" ] &&
		[ -f /var/lib/denokv-fcgi/kv.sqlite3 ]; echo $?)" "/var/lib/denokv-fcgi: $kept"
# Leave the machine as found.
rm -rf /var/lib/denokv-fcgi
userdel denokv-fcgi 2>/dev/null
getent group denokv-fcgi >/dev/null && groupdel denokv-fcgi 2>/dev/null
flock -u 9

finish
