#!/usr/bin/env bash
# run.sh: sets up a fresh Debian machine, builds, and serves a database
# (run/data/kv.sqlite under this tree) through nginx on 127.0.0.1:4512
# (HTTP/2 cleartext, for the Deno CLI) and 127.0.0.1:4513 (HTTP/1.1, for
# curl and Node); another free port if one of those is taken. Prints the
# token and a command line to try it; runs until stopped.
#
# Stopping: Ctrl-C, SIGTERM (also when started in the background, where
# the shell ignores SIGINT for it) or `scripts/stack.sh stop run` from
# another terminal; each stops nginx and the server and exits 0 without a
# word. If nginx or the server dies on its own, it says so, stops the rest
# and exits 1.
#
# Environment: RUN_DIR (default run/), H2C_PORT, H1_PORT, TOKEN (see
# scripts/stack.sh); DENOKV_FCGI_BIN: serve this binary, skipping the
# setup and the build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DENOKV_FCGI_BIN:-}" ]; then
	scripts/setup-deps.sh
	scripts/build.sh "$PWD/build"
	export DENOKV_FCGI_BIN=$PWD/build/src/denokv-fcgi
fi
RUN_DIR=${RUN_DIR:-$PWD/run}
export TOKEN=${TOKEN:-$( [ -f "$RUN_DIR/token" ] && cat "$RUN_DIR/token" || true)}
scripts/stack.sh start "$RUN_DIR"
. "$RUN_DIR/env"
printf '%s\n' "$TOKEN" > "$RUN_DIR/token"
chmod 600 "$RUN_DIR/token"

stop() {
	trap - EXIT INT TERM
	[ -n "${sleeper:-}" ] && kill "$sleeper" 2>/dev/null
	scripts/stack.sh stop "$RUN_DIR"
	exit "${1:-0}"
}
trap stop INT TERM
trap 'stop 1' EXIT

# alive PID: exists and is not a zombie (an init that does not reap, as in
# some containers, leaves the stack's processes as zombies).
alive() {
	kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat" 2>/dev/null
}
echo "Serving. Stop with Ctrl-C." >&2
# A short wait in the background, not a foreground sleep: bash runs a trap
# only once the foreground command has finished, but interrupts wait at
# once. Between waits, see whether the stack is still there.
while :; do
	sleep 1 &
	sleeper=$!
	wait "$sleeper" || true
	sleeper=
	# `stack.sh stop` removes the pid files: stopped from outside.
	if [ ! -f "$RUN_DIR/nginx.pid" ]; then
		trap - EXIT INT TERM
		exit 0
	fi
	if ! alive "$NGINX_PID" || ! alive "$SERVER_PID"; then
		alive "$NGINX_PID" || echo "run.sh: nginx (pid $NGINX_PID) exited; see $RUN_DIR/error.log" >&2
		alive "$SERVER_PID" || echo "run.sh: denokv-fcgi (pid $SERVER_PID) exited; see $RUN_DIR/server.log" >&2
		stop 1 2>/dev/null
	fi
done
