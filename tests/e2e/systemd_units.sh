#!/usr/bin/env bash
# systemd_units.sh: checks what ships around the binary: the systemd units,
# the example configuration and the manual page. TAP on stdout (`ok N - ...`,
# then the plan), diagnostics as `# ` lines; exit status non-zero if any test
# failed. Nothing is started and nothing in the source tree is written.
#
#   - the units, rendered like `make` does (@sbindir@, @sysconfdir@) but
#     pointing at the built binary, pass `systemd-analyze verify` with no
#     output at all, and `systemd-analyze security --offline=true` rates the
#     service below MAX_EXPOSURE;
#   - conf/denokv-fcgi.conf passes `--check-config` once sqlite-path and
#     access-token are filled in (and not before), every option of --help
#     is in it, every commented-out value in it is valid, its example
#     [database] section is valid, and a copy with an unknown key fails
#     naming the key and its line;
#   - man/denokv-fcgi.8 renders without warnings (man --warnings, and
#     mandoc -T lint if installed), documents every option of --help and
#     states the limits of src/kv_limits.h.
#
# Tests whose tool is missing (systemd-analyze, man, mandoc) are skipped.
# The configuration is checked as an unprivileged user (as the systemd unit
# runs it): started as root, the script uses setpriv to become nobody.
#
# Environment (make check sets the first two):
#   DENOKV_FCGI_BIN  server binary (default: $DENOKV_SRCDIR/src/denokv-fcgi)
#   DENOKV_SRCDIR    repository root (default: two levels above this script)
#   MAX_EXPOSURE     highest acceptable exposure score (default 2.0)
#   KEEP=1           keep the temporary directory
set -u

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
DENOKV_SRCDIR=${DENOKV_SRCDIR:-$(cd "$SCRIPT_DIR/../.." && pwd)}
DENOKV_SRCDIR=$(cd "$DENOKV_SRCDIR" && pwd)
DENOKV_FCGI_BIN=${DENOKV_FCGI_BIN:-$DENOKV_SRCDIR/src/denokv-fcgi}
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}

UNIT_DIR=$DENOKV_SRCDIR/systemd
EXAMPLE_CONF=$DENOKV_SRCDIR/conf/denokv-fcgi.conf
MAN_PAGE=$DENOKV_SRCDIR/man/denokv-fcgi.8
LIMITS_H=$DENOKV_SRCDIR/src/kv_limits.h
TOKEN=systemd-units-test-token-0123456789

N=0
FAILED=0

# tap ok|not_ok|skip DESCRIPTION [DIAGNOSTIC...]
tap() {
	local status=$1 desc=$2 d
	shift 2
	N=$((N + 1))
	case $status in
	ok) printf 'ok %d - %s\n' "$N" "$desc" ;;
	skip) printf 'ok %d - %s # SKIP %s\n' "$N" "$desc" "${1:-}"; shift ;;
	*)
		FAILED=$((FAILED + 1))
		printf 'not ok %d - %s\n' "$N" "$desc"
		;;
	esac
	for d in "$@"; do
		[ -n "$d" ] && printf '%s\n' "$d" | sed 's/^/# /'
	done
	return 0
}

# check DESCRIPTION CONDITION_STATUS [DIAGNOSTIC...]: ok if status is 0.
check() {
	local desc=$1 rc=$2
	shift 2
	if [ "$rc" -eq 0 ]; then tap ok "$desc"; else tap not_ok "$desc" "$@"; fi
}

have() { command -v "$1" >/dev/null 2>&1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/denokv-units.XXXXXX") || {
	echo "Bail out! cannot make a temporary directory"
	exit 1
}
cleanup() {
	if [ "${KEEP:-0}" = 1 ]; then
		echo "# kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT

if [ ! -x "$DENOKV_FCGI_BIN" ]; then
	echo "Bail out! server binary $DENOKV_FCGI_BIN not found (build it first)"
	exit 1
fi
for f in "$UNIT_DIR/denokv-fcgi.socket" "$UNIT_DIR/denokv-fcgi.service.in" \
    "$EXAMPLE_CONF" "$MAN_PAGE"; do
	if [ ! -f "$f" ]; then
		echo "Bail out! $f is missing"
		exit 1
	fi
done

# Option names from --help, without the ones that only exist on the command
# line (config, check-config) or only print something (help, version).
HELP=$("$DENOKV_FCGI_BIN" --help 2>&1)
ALL_OPTS=$(printf '%s\n' "$HELP" | sed -n 's/^  --\([a-z][a-z-]*\).*/\1/p')
FILE_OPTS=$(printf '%s\n' "$ALL_OPTS" | grep -v -x -e config -e check-config \
    -e help -e version)
if [ -z "$FILE_OPTS" ]; then
	echo "Bail out! no options found in $DENOKV_FCGI_BIN --help"
	exit 1
fi

# --- the units -----------------------------------------------------------------

# Rendered as `make` does, but @sbindir@ is a directory holding a copy of
# the built binary (systemd-analyze checks that ExecStart= exists; a copy,
# so that the unprivileged user below can run it wherever the build is).
mkdir -p "$TMP/sbin" "$TMP/etc" "$TMP/units" "$TMP/man/man8"
cp "$DENOKV_FCGI_BIN" "$TMP/sbin/denokv-fcgi"
BIN=$TMP/sbin/denokv-fcgi
sed -e "s|@sbindir@|$TMP/sbin|g" -e "s|@sysconfdir@|$TMP/etc|g" \
    "$UNIT_DIR/denokv-fcgi.service.in" >"$TMP/units/denokv-fcgi.service"
cp "$UNIT_DIR/denokv-fcgi.socket" "$TMP/units/denokv-fcgi.socket"
left=$(grep -n '@[A-Za-z_]*@' "$TMP/units/denokv-fcgi.service" \
    "$TMP/units/denokv-fcgi.socket")
check "units: every @placeholder@ is substituted" "$([ -z "$left" ]; echo $?)" \
    "$left"

# Documentation=man:denokv-fcgi(8) is checked with man(1): give it the page.
cp "$MAN_PAGE" "$TMP/man/man8/denokv-fcgi.8"

if have systemd-analyze; then
	out=$(cd "$TMP/units" && MANPATH=$TMP/man SYSTEMD_LOG_COLOR=0 \
	    systemd-analyze verify ./denokv-fcgi.socket ./denokv-fcgi.service 2>&1)
	rc=$?
	check "units: systemd-analyze verify exits 0" "$rc" "$out"
	check "units: systemd-analyze verify prints nothing" \
	    "$([ -z "$out" ]; echo $?)" "$out"

	out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=true \
	    --no-pager "$TMP/units/denokv-fcgi.service" 2>&1)
	rc=$?
	score=$(printf '%s\n' "$out" |
	    sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' |
	    head -n 1)
	if [ -z "$score" ]; then
		tap not_ok "units: systemd-analyze security reports an exposure level" \
		    "exit status $rc" "$out"
	elif awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s + 0 < m + 0) }'; then
		tap ok "units: exposure level $score is below $MAX_EXPOSURE"
	else
		tap not_ok "units: exposure level $score is below $MAX_EXPOSURE" \
		    "$(printf '%s\n' "$out" | grep -e '✗' -e 'Overall')"
	fi
else
	tap skip "units: systemd-analyze verify" "systemd-analyze not installed"
	tap skip "units: systemd-analyze security" "systemd-analyze not installed"
fi

# What the units promise (denokv-fcgi(8) and the nginx examples rely on it).
u() { # u FILE KEY VALUE: the unit has exactly KEY=VALUE
	grep -q -x -F "$2=$3" "$TMP/units/$1"
}
bad=
for kv in ListenStream=/run/denokv-fcgi.sock SocketGroup=www-data \
    SocketMode=0660 FileDescriptorName=fcgi; do
	u denokv-fcgi.socket "${kv%%=*}" "${kv#*=}" || bad="$bad $kv"
done
for kv in Type=notify "ExecReload=/bin/kill -HUP \$MAINPID" WatchdogSec=30s \
    StateDirectory=denokv-fcgi UMask=0077 RestartPreventExitStatus=2 \
    KillMode=mixed CapabilityBoundingSet= NoNewPrivileges=yes \
    "ExecStart=$TMP/sbin/denokv-fcgi serve --config $TMP/etc/denokv-fcgi.conf"; do
	u denokv-fcgi.service "${kv%%=*}" "${kv#*=}" || bad="$bad [$kv]"
done
check "units: socket path, modes, notify, reload, state directory as documented" \
    "$([ -z "$bad" ]; echo $?)" "missing:$bad"

# --- the example configuration ---------------------------------------------------

# as_service CMD...: run CMD as an unprivileged user, as the unit would.
if [ "$(id -u)" = 0 ]; then
	if have setpriv; then
		AS_SERVICE="setpriv --reuid=65534 --regid=65534 --clear-groups --"
		chmod 0755 "$TMP" "$TMP/etc" "$TMP/sbin"
	else
		AS_SERVICE=
	fi
else
	AS_SERVICE=env
fi

# check_config FILE: runs --check-config on it; output in $out, status in $rc.
check_config() {
	chmod 0644 "$1"
	# shellcheck disable=SC2086
	out=$(env -u DENO_KV_SQLITE_PATH -u DENO_KV_ACCESS_TOKEN $AS_SERVICE \
	    "$BIN" --config "$1" --check-config 2>&1)
	rc=$?
}

# fill IN OUT: the example with a database path and a token filled in.
fill() {
	sed -e "s|^sqlite-path[ 	]*=.*|sqlite-path = $TMP/var/kv.sqlite3|" \
	    -e "s|^access-token[ 	]*=.*|access-token = $TOKEN|" "$1" >"$2"
}

CONF=$TMP/etc/denokv-fcgi.conf
fill "$EXAMPLE_CONF" "$CONF"
n_set=$(grep -c -E '^(sqlite-path|access-token)[[:space:]]*=' "$CONF")
check "config: the example sets sqlite-path and access-token once each" \
    "$([ "$n_set" = 2 ]; echo $?)" "found $n_set such lines"

if [ -z "$AS_SERVICE" ]; then
	tap skip "config: --check-config" "running as root without setpriv"
else
	check_config "$CONF"
	check "config: the filled-in example passes --check-config" \
	    "$([ "$rc" = 0 ] && printf '%s' "$out" | grep -q 'configuration OK'; echo $?)" \
	    "exit status $rc" "$out"

	cp "$EXAMPLE_CONF" "$TMP/etc/unfilled.conf"
	check_config "$TMP/etc/unfilled.conf"
	check "config: the example as shipped (no token) is refused with status 2" \
	    "$([ "$rc" = 2 ] && printf '%s' "$out" | grep -q 'access token'; echo $?)" \
	    "exit status $rc" "$out"

	# Every commented-out setting, switched on, is still a valid file
	# (user and group need an existing user and root; they are left out).
	sed -E -e 's/^#([a-z][a-z-]*[[:space:]]*=)/\1/' \
	    -e '/^(user|group)[[:space:]]*=/d' "$CONF" >"$TMP/etc/all.conf"
	check_config "$TMP/etc/all.conf"
	check "config: every commented-out value is valid" \
	    "$([ "$rc" = 0 ]; echo $?)" "exit status $rc" "$out"

	# The example [database] section, taken out of its comment, with
	# the one-database settings removed (a file has one or the other).
	{
		grep -v -E '^(sqlite-path|access-token)[[:space:]]*=' "$CONF"
		sed -n '/^# \[database /,$p' "$EXAMPLE_CONF" |
		    sed -e 's/^# //' -e "s|/var/lib/denokv-fcgi|$TMP/var|"
	} >"$TMP/etc/sections.conf"
	check_config "$TMP/etc/sections.conf"
	check "config: the example [database] section passes --check-config" \
	    "$([ "$rc" = 0 ] && grep -q '^\[database ' "$TMP/etc/sections.conf"; echo $?)" \
	    "exit status $rc" "$out"

	cp "$CONF" "$TMP/etc/unknown.conf"
	echo "no-such-key = 1" >>"$TMP/etc/unknown.conf"
	line=$(wc -l <"$TMP/etc/unknown.conf" | tr -d ' ')
	check_config "$TMP/etc/unknown.conf"
	want="$TMP/etc/unknown.conf:$line: unknown key \"no-such-key\""
	check "config: an unknown key fails with status 2, naming key and line" \
	    "$([ "$rc" = 2 ] && printf '%s' "$out" | grep -q -F "$want"; echo $?)" \
	    "exit status $rc, want \"$want\"" "$out"
fi

missing=
for o in $FILE_OPTS; do
	grep -q -E "^#?$o[[:space:]]*=" "$EXAMPLE_CONF" || missing="$missing $o"
done
check "config: every option of --help has a line" "$([ -z "$missing" ]; echo $?)" \
    "missing:$missing"

unknown=
for k in $(sed -n -E 's/^#?([a-z][a-z-]*)[[:space:]]*=.*/\1/p' "$EXAMPLE_CONF"); do
	printf '%s\n' "$FILE_OPTS" | grep -q -x -F "$k" || unknown="$unknown $k"
done
check "config: every key in it is an option" "$([ -z "$unknown" ]; echo $?)" \
    "not options:$unknown"

# --- the manual page ---------------------------------------------------------------

if have man; then
	out=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$MAN_PAGE" 2>&1 >/dev/null)
	rc=$?
	check "man: man --warnings -l renders without warnings" \
	    "$([ "$rc" = 0 ] && [ -z "$out" ]; echo $?)" "exit status $rc" "$out"
	MAN_TEXT=$(MANWIDTH=200 LC_ALL=C.UTF-8 man -l "$MAN_PAGE" 2>/dev/null |
	    sed 's/.\x08//g')
else
	tap skip "man: man --warnings -l" "man not installed"
	MAN_TEXT=
fi

if have mandoc; then
	out=$(mandoc -T lint "$MAN_PAGE" 2>&1)
	rc=$?
	check "man: mandoc -T lint is clean" "$([ "$rc" = 0 ] && [ -z "$out" ]; echo $?)" \
	    "exit status $rc" "$out"
else
	tap skip "man: mandoc -T lint" "mandoc not installed"
fi

# Options: the tag line after each .TP, where "--name" is written "\-\-name".
MAN_TAGS=$(sed 's/\\-/-/g' "$MAN_PAGE" | awk 'prev == ".TP" { print } { prev = $0 }')
missing=
for o in $ALL_OPTS; do
	printf '%s\n' "$MAN_TAGS" | grep -q -E "^\.(B|BI|BR) --$o( |$)" ||
	    missing="$missing $o"
done
check "man: every option of --help has an entry" "$([ -z "$missing" ]; echo $?)" \
    "missing:$missing"

# Limits: each of these numbers from kv_limits.h appears in LIMITS.
if [ -n "$MAN_TEXT" ] && [ -f "$LIMITS_H" ]; then
	limits=$(printf '%s\n' "$MAN_TEXT" | sed -n '/^LIMITS/,/^EXAMPLES/p')
	bad=
	for name in KV_MAX_WRITE_KEY_BYTES KV_MAX_VALUE_BYTES KV_MAX_READ_RANGES \
	    KV_MAX_READ_ENTRIES KV_MAX_CHECKS KV_MAX_MUTATIONS \
	    KV_MAX_TOTAL_MUTATION_BYTES KV_MAX_QUEUE_UNDELIVERED_KEYS \
	    KV_MAX_QUEUE_BACKOFF_INTERVALS KV_MAX_WATCHED_KEYS \
	    KV_MAX_WATCHES_PER_WORKER KV_MIN_TOKEN_CHARS KV_BUSY_RETRIES; do
		v=$(sed -n -E "s/^#define[[:space:]]+$name[[:space:]]+([0-9]+)[[:space:]]*(\/\*.*)?$/\1/p" \
		    "$LIMITS_H")
		if [ -z "$v" ]; then
			bad="$bad $name(not a plain number in kv_limits.h)"
		elif ! printf '%s\n' "$limits" | grep -q -w "$v"; then
			bad="$bad $name=$v"
		fi
	done
	check "man: LIMITS agrees with src/kv_limits.h" "$([ -z "$bad" ]; echo $?)" \
	    "not in LIMITS:$bad"
else
	tap skip "man: LIMITS agrees with src/kv_limits.h" "man or kv_limits.h missing"
fi

echo "1..$N"
if [ "$FAILED" -gt 0 ]; then
	echo "# $FAILED of $N tests failed"
	exit 1
fi
exit 0
