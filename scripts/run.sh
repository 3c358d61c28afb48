#!/usr/bin/env bash
# run.sh: sets up a fresh Debian machine, builds, and serves a database
# (run/data/kv.sqlite under this tree) through nginx on 127.0.0.1:4512
# (HTTP/2 cleartext, for the Deno CLI) and 127.0.0.1:4513 (HTTP/1.1, for
# curl and Node). Prints the token; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh "$PWD/build"
export DENOKV_FCGI_BIN=$PWD/build/src/denokv-fcgi
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
	exit 0
}
trap stop EXIT INT TERM
echo "Serving. Stop with Ctrl-C." >&2
# wait, not a foreground sleep: bash runs a trap only once the foreground
# command has finished, but interrupts wait at once.
while :; do
	sleep 3600 &
	sleeper=$!
	wait "$sleeper"
done
