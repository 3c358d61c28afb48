#!/usr/bin/env bash
# crash.sh: crash consistency under a real fault. The whole service (the
# master and every child, in one kill(2) of its process group) is killed
# with SIGKILL in the middle of a write load, twice, and restarted on the
# same database file each time. TAP on stdout.
#
#   nginx (nginx/nginx.conf.in on two free ports) -> $RUN_DIR/crash/c.sock
#   denokv-fcgi (own process group, 3 workers) on the same socket after
#   every restart; the Deno CLI runs tests/e2e/crash_bank.ts through nginx
#   (h2c): 8 concurrent bank transfers, each an atomic write guarded by
#   checks, logging every transfer it saw acknowledged.
#
# The client is left running across the kills (it retries while the
# service is down, as a user's program would). Afterwards:
#   - through the restarted server and, once it is stopped, on the file
#     itself with Deno's own SQLite backend: the balances add up, each
#     balance matches the transfer records (no transfer half applied), and
#     every acknowledged transfer is there with the versionstamp the
#     client was given;
#   - sqlite3's integrity_check passes.
#
# Environment (run.sh sets them): RUN_DIR, DENOKV_FCGI_BIN, DENOKV_SRCDIR,
# DENO, DENO_DIR; KEEP=1 keeps the files.
# It kills or replaces server processes on purpose, so the crash
# tripwire (tripwire_lib.sh) counts only crash signals and sanitizer reports.
# tripwire-allow: process-model

# shellcheck disable=SC2016,SC2317
set -u

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
DENOKV_SRCDIR=${DENOKV_SRCDIR:-$(cd "$E2E_DIR/../.." && pwd)}
BIN=${DENOKV_FCGI_BIN:-$DENOKV_SRCDIR/src/denokv-fcgi}
DENO=${DENO:-$DENOKV_SRCDIR/node_modules/.bin/deno}
# shellcheck source=tests/e2e/proclib.sh
. "$E2E_DIR/proclib.sh"
N=0
FAILED=0
OWN_RUN_DIR=0
if [ -z "${RUN_DIR:-}" ]; then
	RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/denokv-crash.XXXXXX") || exit 1
	OWN_RUN_DIR=1
fi
P=$RUN_DIR/crash
DENO_DIR=${DENO_DIR:-$RUN_DIR/deno-dir}
export DENO_DIR NO_COLOR=1
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy DENO_KV_SQLITE_PATH
TOKEN=crash-token-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
export DENO_KV_ACCESS_TOKEN=$TOKEN
ACCOUNTS=40
MASTER=
NGINX_PID=
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)

cleanup() {
	local i
	trap - EXIT INT TERM
	[ -n "$MASTER" ] && kill -KILL -- "-$MASTER" 2>/dev/null
	for ((i = ${#BG_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${BG_PIDS[$i]}"; done
	[ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID"
	wait 2>/dev/null
	if [ "$FAILED" != 0 ] || [ "${KEEP:-0}" = 1 ]; then
		echo "# files kept in $P"
	elif [ "$OWN_RUN_DIR" = 1 ]; then
		rm -rf "$RUN_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

missing=()
for tool in setsid sqlite3 pgrep ss; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
[ -x "$NGINX_BIN" ] || missing+=(nginx)
[ -x "$BIN" ] || missing+=("server binary $BIN")
"$DENO" --version >/dev/null 2>&1 || missing+=("Deno CLI at $DENO")
[ "$(id -u)" = 0 ] || missing+=("root (nginx's worker user)")
if [ ${#missing[@]} -gt 0 ]; then
	tap not_ok "setup: prerequisites available" "missing: ${missing[*]}"
	finish
fi
rm -rf "$P"
mkdir -p "$P/nginx/tmp" "$P/nginx/locations"
DB=$P/kv.sqlite
LOG=$P/server.log
ACKS=$P/acks.txt

# nginx from the project's template.
if ! { H2C_PORT=$(free_port) && H1_PORT=$(free_port "$H2C_PORT"); }; then
	tap not_ok "setup: free TCP ports"
	finish
fi
NG=$P/nginx
for d in "$("$NGINX_BIN" -V 2>&1 | sed -n 's/.*--conf-path=\([^ ]*\)\/[^/ ]*.*/\1/p')" /etc/nginx; do
	if [ -n "$d" ] && [ -f "$d/fastcgi_params" ]; then cp "$d/fastcgi_params" "$NG/"; break; fi
done
cp "$DENOKV_SRCDIR/nginx/denokv-fcgi.conf" "$NG/"
sed -e "s|@PREFIX@|$NG|g" -e "s|@SOCKET@|$P/c.sock|g" -e "s|@H2C_PORT@|$H2C_PORT|g" \
	-e "s|@H1_PORT@|$H1_PORT|g" -e "s|@USER@|root|g" \
	"$DENOKV_SRCDIR/nginx/nginx.conf.in" >"$NG/nginx.conf"
if "$NGINX_BIN" -p "$NG/" -c "$NG/nginx.conf" -e "$NG/error.log" </dev/null >"$NG/start.out" 2>&1 &&
	wait_until 5 test -s "$NG/nginx.pid"; then
	NGINX_PID=$(cat "$NG/nginx.pid")
else
	tap not_ok "setup: nginx starts" "$(cat "$NG/start.out")"
	finish
fi
URL=http://127.0.0.1:$H2C_PORT/

# start_server: the service in its own process group (MASTER = its id),
# serving once the workers have opened the database.
start_server() {
	echo "--- start" >>"$LOG"
	setsid "$BIN" --sqlite-path "$DB" serve --access-token "$TOKEN" --allow-root --listen "unix:$P/c.sock" \
		--workers 3 --log-level debug >>"$LOG" 2>&1 </dev/null &
	MASTER=$!
	wait_until 15 eval '[ "$(sed -n "/^--- start/h; //!H; \${x;p}" "$LOG" | grep -c "database open")" -ge 3 ]'
}

# The workload with the Deno CLI: "${BANK[@]}" MODE ARGS...
BANK=("$DENO" run --unstable-kv -A --no-check --no-lock --quiet "$E2E_DIR/crash_bank.ts")

start_server
out=$(timeout 60 "${BANK[@]}" init "$URL" "$ACCOUNTS" 2>&1)
check "setup: the service starts and the Deno client opens $ACCOUNTS accounts through nginx" \
	"$(grep -q 'RESULT init=true' <<<"$out"; echo $?)" "$out" "$(tail -n 5 "$LOG")"

rm -f "$ACKS" "$P/stop"
bg "$P/bank-run.out" timeout 150 "${BANK[@]}" run "$URL" "$ACCOUNTS" "$ACKS" "$P/stop" 8
LOAD=$LAST_BG
wait_until 30 grep -q STARTED "$P/bank-run.out"

acks() { wc -l <"$ACKS" 2>/dev/null || echo 0; }

# Two rounds: let transfers be acknowledged, then kill everything at once.
for round in 1 2; do
	base=$(acks)
	wait_until 30 eval '[ "$(acks)" -ge $((base + 150)) ]'
	group=$(pgrep -g "$MASTER" | tr '\n' ' ')
	at=$(acks)
	kill -KILL -- "-$MASTER"
	wait_until 10 eval '[ -z "$(pgrep -g "$MASTER")" ]'
	left=$(pgrep -g "$MASTER" | tr '\n' ' ')
	wait "$MASTER" 2>/dev/null
	check "round $round: SIGKILL to the whole service at once (master and children: $group) during the load, $at transfers acknowledged so far" \
		"$([ "$(wc -w <<<"$group")" -ge 5 ] && [ -z "$left" ] && [ "$at" -ge $((base + 150)) ]; echo $?)" \
		"still alive: ${left:-none}" "$(tail -n 3 "$P/bank-run.out")"
	sleep 0.5
	start_server
	base=$(acks)
	wait_until 60 eval '[ "$(acks)" -ge $((base + 50)) ]'
	check "round $round: restarted on the same file, the client's transfers go on ($(($(acks) - base)) more acknowledged)" \
		"$([ "$(acks)" -ge $((base + 50)) ]; echo $?)" "$(tail -n 10 "$LOG")" "$(tail -n 3 "$P/bank-run.out")"
done

diag "requests cut off by the kills (nginx: upstream prematurely closed): $(grep -c 'upstream prematurely closed' "$NG/error.log"); refused while down: $(grep -c 'connect() to .* failed' "$NG/error.log")"
touch "$P/stop"
wait_until 60 eval '! alive $LOAD'
wait "$LOAD" 2>/dev/null
check "the client ends cleanly: $(grep RESULT "$P/bank-run.out")" \
	"$(grep -q 'RESULT acked=' "$P/bank-run.out"; echo $?)" "$(tail -n 5 "$P/bank-run.out")"

# result FIELD TEXT: FIELD=value from a RESULT line.
result() { sed -n "s/^RESULT.* $1=\([^ ]*\).*/\1/p; s/^RESULT $1=\([^ ]*\).*/\1/p" <<<"$2" | head -n 1; }
# verified WHAT OUTPUT: the checks on one verify run.
verified() {
	local what=$1 o=$2
	check "$what: balances add up ($(result sum "$o") of $(result expected "$o")), each matches the transfer records ($(result unbalanced "$o") do not)" \
		"$([ -n "$(result sum "$o")" ] && [ "$(result sum "$o")" = "$(result expected "$o")" ] &&
			[ "$(result unbalanced "$o")" = 0 ]; echo $?)" "$o"
	check "$what: every acknowledged transfer is there with its versionstamp ($(result acked "$o") acknowledged, $(result transfers "$o") stored, $(result missing "$o") missing, $(result wrong_stamp "$o") with another versionstamp)" \
		"$([ -n "$(result acked "$o")" ] && [ "$(result acked "$o")" -ge 400 ] && [ "$(result missing "$o")" = 0 ] &&
			[ "$(result wrong_stamp "$o")" = 0 ]; echo $?)" "$o"
}
verified "through the restarted server" "$(timeout 120 "${BANK[@]}" verify "$URL" "$ACCOUNTS" "$ACKS" 2>&1)"

kill -TERM "$MASTER"
wait_until 15 eval '! alive $MASTER'
wait "$MASTER" 2>/dev/null
MASTER=
verified "on the file, read by Deno's own SQLite backend" "$(timeout 120 "${BANK[@]}" verify "$DB" "$ACCOUNTS" "$ACKS" 2>&1)"
integrity=$(sqlite3 -init /dev/null "$DB" 'pragma integrity_check;' 2>&1)
check "the database passes integrity_check" "$([ "$integrity" = ok ]; echo $?)" "$integrity"

finish
