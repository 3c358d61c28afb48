#!/usr/bin/env bash
# bench/queue/run.sh: queue delivery benchmark, run by hand (not in CI).
# Starts a private stack (scripts/stack.sh: nginx + denokv-fcgi on a new
# database, free ports) in a temporary directory and runs bench.mjs with
# the Deno CLI against it and against Deno's own local queue on a file.
# See bench/queue/README.md.
#
#   bench/queue/run.sh
#   MESSAGES=2000 WORKERS=4 bench/queue/run.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$HERE/out
DENO=${DENO:-$REPO/node_modules/.bin/deno}
export DENOKV_FCGI_BIN=${DENOKV_FCGI_BIN:-$REPO/src/denokv-fcgi}
[ -x "$DENOKV_FCGI_BIN" ] || { echo "build the server first ($DENOKV_FCGI_BIN)" >&2; exit 1; }
[ -x "$DENO" ] || { echo "no Deno CLI at $DENO (npm install)" >&2; exit 1; }

port() { # a free port below the ephemeral range
	local p
	for _ in $(seq 1 100); do
		p=$((10000 + RANDOM % 20000))
		[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return; }
	done
	return 1
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/denokv-queue-bench.XXXXXX")
trap '"$REPO/scripts/stack.sh" stop "$TMP" >/dev/null 2>&1 || true; [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$TMP"' EXIT
H2C_PORT=$(port) H1_PORT=$(port) SERVER_ARGS="--workers ${WORKERS:-2} --sqlite-synchronous ${SYNC:-full}" \
	"$REPO/scripts/stack.sh" start "$TMP" >/dev/null
# shellcheck disable=SC1091
. "$TMP/env"
mkdir -p "$OUT"
URL=$H1_URL TOKEN=$TOKEN SERVER_PID=$SERVER_PID LOCAL_DB=$TMP/local.sqlite OUT_DIR=$OUT \
	DENO_DIR=$TMP/deno-dir NO_COLOR=1 "$DENO" run --unstable-kv -A --no-lock "$HERE/bench.mjs" | tee "$OUT/last-run.txt"
