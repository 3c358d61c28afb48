#!/usr/bin/env bash
# bench/backup/run.sh: the longest write stall while `denokv-fcgi backup`
# copies a database of a few hundred MB that is being written to.
#
# It builds a database of SIZE_MB (default 300) of 500-byte values in
# denokv's schema, serves it behind nginx (scripts/stack.sh), runs
# stall.ts (Deno CLI writers; the backup starts after 5 s) and prints the
# writers' latency before and during the backup. Everything lives in a
# temporary directory, removed on exit.
#
# Environment: DENOKV_FCGI_BIN (default build/src/denokv-fcgi, else
# src/denokv-fcgi), DENO (default node_modules/.bin/deno), SIZE_MB,
# WRITERS (default 8).
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${DENOKV_FCGI_BIN:-$SRC/build/src/denokv-fcgi}
[ -x "$BIN" ] || BIN=$SRC/src/denokv-fcgi
DENO=${DENO:-$SRC/node_modules/.bin/deno}
SIZE_MB=${SIZE_MB:-300}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/denokv-bench-backup.XXXXXX")
trap 'DENOKV_FCGI_BIN=$BIN "$SRC/scripts/stack.sh" stop "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
mkdir -p "$DIR/data"
DB=$DIR/data/kv.sqlite

# The schema comes from the server itself: it migrates an empty file,
# so start and stop it once.
echo "building a ${SIZE_MB} MB database..." >&2
export DENOKV_FCGI_BIN=$BIN DB
H2C_PORT=$((20000 + RANDOM % 10000)) H1_PORT=$((30000 + RANDOM % 2000)) \
	"$SRC/scripts/stack.sh" start "$DIR" >/dev/null
"$SRC/scripts/stack.sh" stop "$DIR" >/dev/null
sqlite3 "$DB" "pragma journal_mode = wal;
  with recursive n(i) as (select 1 union all select i + 1 from n where i < $((SIZE_MB * 1400)))
  insert into kv (k, v, v_encoding, version) select randomblob(16), randomblob(500), 3, 1 from n;
  update data_version set version = 1;" >/dev/null
ls -l "$DB" >&2
H2C_PORT=$((20000 + RANDOM % 10000)) H1_PORT=$((30000 + RANDOM % 2000)) \
	"$SRC/scripts/stack.sh" start "$DIR" >/dev/null
# shellcheck disable=SC1091
. "$DIR/env"
DENO_KV_ACCESS_TOKEN=$TOKEN DENO_DIR=$DIR/deno "$DENO" run --unstable-kv -A --no-lock \
	"$SRC/bench/backup/stall.ts" "$H2C_URL" "$BIN" "$DB" "$DIR/backup.sqlite" "${WRITERS:-8}"
echo "server: $(grep -c 'WAL truncated' "$DIR/server.log" || true) truncating checkpoints during the run" >&2
