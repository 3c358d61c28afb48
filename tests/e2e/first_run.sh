#!/usr/bin/env bash
# first_run.sh: what a newcomer meets before any KV call: scripts/run.sh
# and scripts/stack.sh starting, printing and stopping, the port choice,
# and the server's messages on a terminal. TAP on stdout, diagnostics as
# `# ` lines; exit status non-zero if any test failed. Each case starts its
# own stack in $RUN_DIR/first_run/ (the main stack is not used).
#
# Cases:
#   - the banner's Deno command line (full path to the Deno CLI, token,
#     URL) and its curl line work as printed, with no deno on PATH;
#   - Ctrl-C (SIGINT to run.sh's process group, as a terminal sends it):
#     run.sh exits 0 and prints nothing more; nginx and the server are gone;
#   - started in the background (SIGINT ignored, as `&` in a script does):
#     SIGINT changes nothing, SIGTERM stops everything, exit 0;
#   - `scripts/stack.sh stop DIR` from elsewhere (the stop command the
#     banner prints) also ends run.sh, exit 0, silently;
#   - the server dying on its own: run.sh says so, stops nginx, exits 1;
#   - a port that looks free but is bound by someone else when nginx
#     starts: stack.sh picks another one and comes up;
#   - the shipped nginx configuration (the main stack) answers an HTTP/2
#     client on the HTTP/1.1 port with a one-line text 400 naming the
#     HTTP/2 port, and serves a mount without its trailing slash instead of
#     an HTML 301;
#   - log lines carry sd-daemon "<N>" prefixes into a pipe or journald
#     (JOURNAL_STREAM) but not onto a terminal.
#
# Environment (run.sh sets them): RUN_DIR, DENOKV_FCGI_BIN, DENOKV_SRCDIR,
# DENO, DENO_DIR.
set -u

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
DENOKV_SRCDIR=${DENOKV_SRCDIR:-$(cd "$SCRIPT_DIR/../.." && pwd)}
DENOKV_FCGI_BIN=${DENOKV_FCGI_BIN:-$DENOKV_SRCDIR/src/denokv-fcgi}
export DENOKV_FCGI_BIN
MAIN_ENV=${RUN_DIR:+$RUN_DIR/env}
W=${RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/denokv-first.XXXXXX")}/first_run
mkdir -p "$W"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset RUN_DIR H2C_PORT H1_PORT TOKEN DB

# tap, check, alive, wait_until
# shellcheck source=tests/e2e/proclib.sh
. "$SCRIPT_DIR/proclib.sh"
N=0
FAILED=0
# leftovers DIR: processes whose command line or cwd mentions DIR.
leftovers() {
	local p
	for p in $(pgrep -f -- "$1" 2>/dev/null); do
		[ "$p" != $$ ] && alive "$p" && printf '%s ' "$p"
	done
}
nothing_left() { # nothing_left DIR PID...: every PID gone, no process in DIR
	local p
	for p in "${@:2}"; do alive "$p" && return 1; done
	[ -z "$(leftovers "$1")" ]
}
field() { # field ENVFILE NAME
	sed -n "s/^$2='\(.*\)'$/\1/p" "$1"
}

# start_run DIR: scripts/run.sh in the background on automatic ports;
# sets RUN_PID once it prints "Serving", and NG / SV (nginx, server pids).
start_run() {
	RUN_DIR=$1 H2C_PORT=auto H1_PORT=auto "$DENOKV_SRCDIR/scripts/run.sh" \
		>"$1.out" 2>"$1.err" </dev/null &
	RUN_PID=$!
	if ! wait_until 60 grep -q '^Serving' "$1.err"; then
		return 1
	fi
	NG=$(field "$1/env" NGINX_PID)
	SV=$(field "$1/env" SERVER_PID)
}
# after_serving FILE: what run.sh printed on stderr after "Serving.".
after_serving() {
	sed '0,/^Serving/d' "$1"
}
stop_run() { # clean up whatever a failed case left
	kill -TERM "$RUN_PID" 2>/dev/null
	"$DENOKV_SRCDIR/scripts/stack.sh" stop "$1" >/dev/null 2>&1
	wait "$RUN_PID" 2>/dev/null
}

# --- nginx's answers to a newcomer's mistakes (the main stack) ----------------
if [ -n "$MAIN_ENV" ] && [ -f "$MAIN_ENV" ]; then
	h1=$(field "$MAIN_ENV" H1_PORT)
	h2c=$(field "$MAIN_ENV" H2C_PORT)
	tok=$(field "$MAIN_ENV" TOKEN)
	# What the Deno CLI sends first: the HTTP/2 connection preface.
	resp=$(printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' | timeout 10 socat - "TCP:127.0.0.1:$h1" | tr -d '\r')
	check "nginx: HTTP/2 on the HTTP/1.1 port gets a one-line text 400 naming the HTTP/2 port" \
		"$(grep -q '^HTTP/1.1 400' <<<"$resp" && grep -qi '^content-type: text/plain' <<<"$resp" &&
			grep -qx "this port speaks HTTP/1.1; HTTP/2 clients such as the Deno CLI use http://127.0.0.1:$h2c/" <<<"$resp"
			echo $?)" "$resp"
	resp=$(printf 'NOT A REQUEST\r\n\r\n' | timeout 10 socat - "TCP:127.0.0.1:$h1" | tr -d '\r')
	check "nginx: another unparsable request gets a one-line text 400" \
		"$(grep -q '^HTTP/1.1 400' <<<"$resp" && grep -qx 'bad request' <<<"$resp"; echo $?)" "$resp"
	body=$(curl -sS -m 10 -w '\n%{http_code}' -X POST -H "Authorization: Bearer $tok" \
		-H 'Content-Type: application/json' --data '{"supportedVersions":[1,2,3]}' \
		"http://127.0.0.1:$h1/kv" 2>&1)
	check "nginx: the /kv/ mount opened as /kv (no trailing slash) answers 200 for /kv/v2, not a 301" \
		"$([ "$(tail -n1 <<<"$body")" = 200 ] && grep -q '"url":"/kv/v2"' <<<"$body"; echo $?)" "$body"
else
	tap not_ok "nginx: the main stack's settings (${MAIN_ENV:-RUN_DIR/env}) are there"
fi

# --- the banner, with no deno on PATH ------------------------------------------
D=$W/banner
if start_run "$D"; then
	deno_line=$(grep -m1 'deno run --unstable-kv' "$D.out" | sed 's/^ *//')
	curl_line=$(grep -m1 '^ *curl ' "$D.out" | sed 's/^ *//')
	case $deno_line in
	*"DENO_KV_ACCESS_TOKEN=$(field "$D/env" TOKEN) $DENOKV_SRCDIR/node_modules/.bin/deno run"*) rc=0 ;;
	*) rc=1 ;;
	esac
	check "banner: the Deno command names the installed CLI by its path, with the token" "$rc" \
		"line: $deno_line" "$(cat "$D.out")"
	out=$(cd / && env PATH=/usr/bin:/bin DENO_DIR="${DENO_DIR:-$W/deno-dir}" NO_COLOR=1 \
		timeout 60 bash -c "$deno_line" 2>&1)
	check "banner: its Deno command runs as printed from any directory (deno not on PATH)" \
		"$(printf '%s' "$out" | grep -q '"Ada"'; echo $?)" "$out"
	out=$(cd / && timeout 20 bash -c "$curl_line" 2>&1)
	check "banner: its curl command gets the metadata exchange" \
		"$(printf '%s' "$out" | grep -q '"databaseId"'; echo $?)" "$out"
	check "banner: says the server listens on 127.0.0.1 only and how to stop it" \
		"$(grep -q '127.0.0.1 only' "$D.out" && grep -q "^Stop with: .*stack.sh stop $D" "$D.out"; echo $?)" \
		"$(cat "$D.out")"
	stop_run "$D"
else
	tap not_ok "banner: run.sh starts" "$(cat "$D.err")"
	stop_run "$D"
fi

# --- Ctrl-C --------------------------------------------------------------------
# With job control on, a background job gets its own process group and
# default signal dispositions, as a foreground command in a terminal does;
# kill -INT -PGID is what the terminal sends on Ctrl-C.
D=$W/ctrlc
set -m
if start_run "$D"; then
	set +m
	kill -INT -- "-$RUN_PID"
	wait "$RUN_PID"
	rc=$?
	check "Ctrl-C: run.sh exits 0" "$([ "$rc" = 0 ]; echo $?)" "exit status $rc" "$(cat "$D.err")"
	check "Ctrl-C: nothing printed after \"Serving\"" \
		"$([ -z "$(after_serving "$D.err")" ]; echo $?)" "$(after_serving "$D.err")"
	check "Ctrl-C: nginx and the server are gone, nothing runs in the directory" \
		"$(wait_until 10 nothing_left "$D" "$NG" "$SV"; echo $?)" \
		"left: nginx $NG $(alive "$NG" && echo alive), server $SV $(alive "$SV" && echo alive), $(leftovers "$D")"
else
	set +m
	tap not_ok "Ctrl-C: run.sh starts" "$(cat "$D.err")"
	stop_run "$D"
fi

# --- in the background: SIGINT ignored, SIGTERM stops ---------------------------
D=$W/background
if start_run "$D"; then
	sigint=$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$RUN_PID/status")
	kill -INT "$RUN_PID"
	sleep 1
	check "background: SIGINT is ignored there, as the shell set it up (still serving)" \
		"$(alive "$RUN_PID" && alive "$NG" && alive "$SV"; echo $?)" "SigIgn $sigint"
	kill -TERM "$RUN_PID"
	wait "$RUN_PID"
	rc=$?
	check "background: SIGTERM ends run.sh with 0, silently" \
		"$([ "$rc" = 0 ] && [ -z "$(after_serving "$D.err")" ]; echo $?)" \
		"exit status $rc" "$(after_serving "$D.err")"
	check "background: SIGTERM leaves nothing running" \
		"$(wait_until 10 nothing_left "$D" "$NG" "$SV"; echo $?)" \
		"left: nginx $NG $(alive "$NG" && echo alive), server $SV $(alive "$SV" && echo alive), $(leftovers "$D")"
else
	tap not_ok "background: run.sh starts" "$(cat "$D.err")"
	stop_run "$D"
fi

# --- the stop command the banner prints ------------------------------------------
D=$W/external
if start_run "$D"; then
	stop_line=$(sed -n 's/^Stop with: //p' "$D.out")
	out=$(bash -c "$stop_line" 2>&1)
	rc=$?
	check "stack.sh stop (as the banner prints it): exits 0 silently" \
		"$([ "$rc" = 0 ] && [ -z "$out" ]; echo $?)" "command: $stop_line" "exit status $rc" "$out"
	if wait_until 10 eval '! alive "$RUN_PID"'; then
		wait "$RUN_PID"
		rc=$?
		check "stack.sh stop: run.sh ends with 0, silently" \
			"$([ "$rc" = 0 ] && [ -z "$(after_serving "$D.err")" ]; echo $?)" \
			"exit status $rc" "$(after_serving "$D.err")"
	else
		tap not_ok "stack.sh stop: run.sh ends within 10 s"
	fi
	check "stack.sh stop: nothing left running" \
		"$(wait_until 10 nothing_left "$D" "$NG" "$SV"; echo $?)" "$(leftovers "$D")"
	stop_run "$D"
else
	tap not_ok "external stop: run.sh starts" "$(cat "$D.err")"
	stop_run "$D"
fi

# --- the server dies on its own ---------------------------------------------------
D=$W/crash
if start_run "$D"; then
	kill -KILL "$SV"
	if wait_until 15 eval '! alive "$RUN_PID"'; then
		wait "$RUN_PID"
		rc=$?
		check "server killed: run.sh exits 1 naming it" \
			"$([ "$rc" = 1 ] && after_serving "$D.err" | grep -q "denokv-fcgi (pid $SV) exited"; echo $?)" \
			"exit status $rc" "$(after_serving "$D.err")"
	else
		tap not_ok "server killed: run.sh ends within 15 s"
	fi
	check "server killed: nginx stopped too" "$(wait_until 10 nothing_left "$D" "$NG"; echo $?)" \
		"$(leftovers "$D")"
	stop_run "$D"
else
	tap not_ok "crash: run.sh starts" "$(cat "$D.err")"
	stop_run "$D"
fi

# --- a port lost between the pick and nginx's bind() ------------------------------
# perl (in every Debian) binds the port without listening: invisible to
# the free-port check, but nginx's bind() fails with EADDRINUSE. Released
# once stack.sh has reported the retry, so a later attempt succeeds.
# shellcheck source=../../scripts/ports.sh
. "$DENOKV_SRCDIR/scripts/ports.sh"
D=$W/ports
mkdir -p "$D"
held=$(pick_port) && h2c=$(pick_port "$held")
perl -MSocket -e 'socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
	bind($s, pack_sockaddr_in($ARGV[0], inet_aton("127.0.0.1"))) or die "bind: $!";
	print "bound\n"; $| = 1; sleep 120' "$held" >"$D.holder" 2>&1 &
HOLDER=$!
wait_until 10 grep -q bound "$D.holder"
PORT_MIN=$held PORT_SPAN=1 H1_PORT=auto H2C_PORT=$h2c \
	"$DENOKV_SRCDIR/scripts/stack.sh" start "$D" >"$D.out" 2>"$D.err" &
START=$!
if wait_until 60 grep -q 'taken meanwhile' "$D.err"; then
	kill "$HOLDER"
	tap ok "ports: nginx's failed bind() on a chosen port is seen and retried"
else
	kill "$HOLDER"
	tap not_ok "ports: nginx's failed bind() on a chosen port is seen and retried" "$(cat "$D.err")"
fi
wait "$START"
rc=$?
check "ports: the stack comes up on the port once it is free" \
	"$([ "$rc" = 0 ] && [ "$(field "$D/env" H1_PORT)" = "$held" ]; echo $?)" \
	"exit status $rc" "$(cat "$D.err")"
"$DENOKV_SRCDIR/scripts/stack.sh" stop "$D" >/dev/null 2>&1

# --- log prefixes ------------------------------------------------------------------
short() { # the server refusing a short token: one error line
	"$DENOKV_FCGI_BIN" --sqlite-path "$W/short.sqlite" serve --access-token short "$@"
}
out=$(short 2>&1)
check "log: into a pipe, lines carry the sd-daemon prefix" \
	"$(printf '%s' "$out" | grep -q '^<3>master\[[0-9]*\]: access token too short'; echo $?)" "$out"
out=$(script -qec "$DENOKV_FCGI_BIN --sqlite-path $W/short.sqlite serve --access-token short" /dev/null 2>&1 | tr -d '\r')
check "log: on a terminal, no prefix" \
	"$(printf '%s' "$out" | grep -q '^master\[[0-9]*\]: access token too short'; echo $?)" "$out"
out=$(JOURNAL_STREAM=8:1234 script -qec "$DENOKV_FCGI_BIN --sqlite-path $W/short.sqlite serve --access-token short" /dev/null 2>&1 | tr -d '\r')
check "log: JOURNAL_STREAM set, the prefix even on a terminal" \
	"$(printf '%s' "$out" | grep -q '^<3>master'; echo $?)" "$out"

echo "1..$N"
[ "$FAILED" = 0 ]
