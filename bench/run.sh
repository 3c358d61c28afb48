#!/usr/bin/env bash
# bench/run.sh: runs every denokv-fcgi benchmark and its references in one go
# and prints figures and ratios measured in this same run. See
# bench/README.md. Run by hand, not in CI:
#
#   bench/run.sh                      # defaults: 10 s runs, wrk -t2 -c64
#   DURATION=3 bench/run.sh           # quick check
#   REFS_ONLY=1 bench/run.sh          # only the references (no server)
#
# Everything runs in a fresh temporary directory: nginx (own config, two
# 127.0.0.1 listeners on free ports: HTTP/1.1 for wrk, h2c for Deno), the
# trivial FastCGI responder, denokv-fcgi on a new database with a random
# token. All of it is stopped on exit. Only 127.0.0.1 is ever contacted.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
OUT=$BENCH_DIR/out

# ---- settings (environment) -------------------------------------------------
DURATION=${DURATION:-10}            # seconds per wrk run and per SQLite loop
THREADS=${THREADS:-2}               # wrk -t
CONNS=${CONNS:-64}                  # wrk -c (ref200, trivial, read, write)
WRITE_CONNS2=${WRITE_CONNS2:-32}    # wrk -c of the second atomic write run
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}     # wrk --timeout; a timeout fails the run
WORKERS=${WORKERS:-$(n=$(nproc); [ "$n" -lt 2 ] && n=2; echo "$n")}  # as the server's default
KEYS=${KEYS:-10000}                 # keyspace ["bench", 0..KEYS-1]
VALUE_BYTES=${VALUE_BYTES:-16}      # value size of seeded and written keys
SYNC=${SYNC:-full}                  # --sqlite-synchronous / loop -s
SQLITE_WRITERS=${SQLITE_WRITERS:-"1 4"}  # -c values for the SQLite loop
SQLITE_MODE=${SQLITE_MODE:-proc}    # loop writers: proc or thread
BANK=${BANK:-1}                     # 0: skip the Deno bank benchmark
BANK_DURATION=${BANK_DURATION:-$DURATION}
BANK_ACCOUNTS=${BANK_ACCOUNTS:-1000}
BANK_READERS=${BANK_READERS:-128}
BANK_WRITERS=${BANK_WRITERS:-32}
REFS_ONLY=${REFS_ONLY:-0}           # 1: no denokv-fcgi, references only
KEEPALIVE=${KEEPALIVE:-1}           # 1: nginx keeps its connections to denokv-fcgi
                                    # open (upstream keepalive, fastcgi_keep_conn on),
                                    # as the shipped configuration does; 0: one per request
KEEP_TMP=${KEEP_TMP:-auto}          # 1: keep the temp dir; auto: only on failure
DENOKV_BIN=${DENOKV_BIN:-$REPO/src/denokv-fcgi}
DENOKV_ARGS=${DENOKV_ARGS:-}        # extra serve options, e.g. --log-level warning
DENO=${DENO:-$REPO/node_modules/.bin/deno}
WRK=${WRK:-wrk}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
FASTCGI_PARAMS=${FASTCGI_PARAMS:-/etc/nginx/fastcgi_params}
CC=${CC:-cc}
BENCH_CFLAGS=${BENCH_CFLAGS:--O2 -Wall -Wextra}

# Nothing here may go through a proxy.
case $SYNC in full|normal) ;; *) die "SYNC must be full or normal" ;; esac
for v in DURATION THREADS CONNS WRITE_CONNS2 WORKERS KEYS VALUE_BYTES \
    BANK_DURATION BANK_ACCOUNTS BANK_READERS BANK_WRITERS; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done

need "$WRK" "apt-get install wrk"
need "$NGINX" "apt-get install nginx"
need curl "apt-get install curl"
need pgrep "apt-get install procps"
need jq "apt-get install jq"
need protoc-c "apt-get install protobuf-c-compiler"
need "$CC" "apt-get install gcc"
[ -r "$FASTCGI_PARAMS" ] || die "$FASTCGI_PARAMS missing (set FASTCGI_PARAMS)"

if [ "$REFS_ONLY" != 1 ] && [ ! -x "$DENOKV_BIN" ]; then
	die "$DENOKV_BIN not built (make -C $REPO), or set DENOKV_BIN; REFS_ONLY=1 runs just the references"
fi
if [ "$REFS_ONLY" != 1 ] && [ "$BANK" = 1 ] && [ ! -x "$DENO" ]; then
	die "Deno CLI not found at $DENO: run 'npm install deno' at the repository root, set DENO, or BANK=0 to skip the bank benchmark"
fi

# ---- build the helpers into bench/out -------------------------------------
log "building helpers into $OUT"
mkdir -p "$OUT/gen"
protoc-c --proto_path="$REPO/proto" --c_out="$OUT/gen" "$REPO/proto/datapath.proto"
# shellcheck disable=SC2086
{
	$CC $BENCH_CFLAGS -o "$OUT/fcgi_trivial" "$BENCH_DIR/fcgi_trivial.c" -lfcgi
	$CC $BENCH_CFLAGS -o "$OUT/sqlite_commit_loop" \
	    "$BENCH_DIR/sqlite_commit_loop.c" -lsqlite3 -lpthread -lm
	$CC $BENCH_CFLAGS -I"$OUT/gen" -o "$OUT/kvbody" "$BENCH_DIR/kvbody.c" \
	    "$OUT/gen/datapath.pb-c.c" -lprotobuf-c
} || die "building the helpers failed (need libfcgi-dev libsqlite3-dev libprotobuf-c-dev)"
KVBODY=$OUT/kvbody

# ---- temp dir, process bookkeeping, cleanup --------------------------------
T=$(mktemp -d "${TMPDIR:-/tmp}/denokv-bench.XXXXXX")
# shellcheck disable=SC2034 # both read by bench/lib.sh
STOP_GRACE_S=5
TAIL_LINES=20
bench_traps

# Ports below the ephemeral range, picked again if lost (scripts/ports.sh).
# shellcheck source=../scripts/ports.sh
. "$BENCH_DIR/../scripts/ports.sh"

wait_port() { # port pid what: 1 if the process exited first
	local _
	for _ in $(seq 1 100); do
		alive "$2" || return 1
		port_listening_by "$1" "$2" && return 0
		sleep 0.1
	done
	die "$3 is not listening on 127.0.0.1:$1"
}

check_server() { # what was running
	[ "$REFS_ONLY" = 1 ] && return 0
	alive "${PID[denokv]}" ||
		die "denokv-fcgi (pid ${PID[denokv]}) is gone after $1; see $T/denokv.log"
}

# ---- start the services ----------------------------------------------------
SERVER_PROCS=$WORKERS
WORKERS_ARGS=()
read -r -a EXTRA_ARGS <<<"$DENOKV_ARGS"
if [ "$REFS_ONLY" != 1 ]; then
	help=$("$DENOKV_BIN" --help 2>&1; "$DENOKV_BIN" serve --help 2>&1) || true
	if grep -q -- '--workers' <<<"$help"; then
		WORKERS_ARGS=(--workers "$WORKERS")
	else
		if [ "$WORKERS" != 1 ]; then
			warn "denokv-fcgi has no --workers option: it runs as one process, and so will the trivial responder"
		fi
		SERVER_PROCS=1
	fi
	# Started as root, the server wants a user to drop to; this throwaway
	# instance may simply stay root (as do the nginx workers, see below).
	if [ "$(id -u)" = 0 ] && grep -q -- '--allow-root' <<<"$help"; then
		WORKERS_ARGS+=(--allow-root)
	fi
fi

TRIVIAL_SOCK=$T/trivial.sock
DENOKV_SOCK=$T/denokv.sock
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
nginx_prepare
write_nginx_conf() {
{
nginx_conf_head bench/run.sh
cat <<EOF
    client_max_body_size 2m;
    client_body_buffer_size 1m;     # seeding batches stay in memory
    http2_max_concurrent_streams 256;
    server {
        listen 127.0.0.1:$HTTP_PORT;        # HTTP/1.1, for wrk and curl
        listen 127.0.0.1:$H2_PORT http2;    # h2c prior knowledge, for Deno
        server_name localhost;
        location = /ref200 { return 200 "ok"; }
        location /trivial/ {
            include $FASTCGI_PARAMS;
            fastcgi_buffering off;
            fastcgi_pass unix:$TRIVIAL_SOCK;
        }
        location / {
            include $FASTCGI_PARAMS;
            fastcgi_buffering off;
$(if [ "$KEEPALIVE" = 1 ]; then
	printf '            fastcgi_keep_conn on;\n            fastcgi_pass denokv_up;\n'
else
	printf '            fastcgi_pass unix:%s;\n' "$DENOKV_SOCK"
fi)
        }
    }
    upstream denokv_up {
        server unix:$DENOKV_SOCK;
        keepalive 32;
        keepalive_requests 100000;
    }
}
EOF
} >"$T/nginx.conf"

}

log "temp dir $T"
start trivial "$T/trivial.log" "$OUT/fcgi_trivial" -s "$TRIVIAL_SOCK" -n "$SERVER_PROCS"
wait_socket "$TRIVIAL_SOCK" "${PID[trivial]}" "fcgi_trivial"

if [ "$REFS_ONLY" != 1 ]; then
	start denokv "$T/denokv.log" "$DENOKV_BIN" --sqlite-path "$T/db.sqlite" \
	    serve --access-token "$TOKEN" --listen "unix:$DENOKV_SOCK" \
	    --sqlite-synchronous "$SYNC" "${WORKERS_ARGS[@]}" "${EXTRA_ARGS[@]}"
	wait_socket "$DENOKV_SOCK" "${PID[denokv]}" "denokv-fcgi"
fi

LOGS+=("$T/nginx-error.log")
for attempt in $(seq 1 "$PORT_TRIES"); do
	HTTP_PORT=$(pick_port) && H2_PORT=$(pick_port "$HTTP_PORT") ||
		die "no free TCP port on 127.0.0.1"
	write_nginx_conf
	"$NGINX" -t -q -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf" 2>"$T/nginx-t.log" ||
		{ cat "$T/nginx-t.log" >&2; die "nginx rejected the generated config"; }
	: >"$T/nginx-error.log"
	start nginx "$T/nginx-stderr.log" "$NGINX" -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf"
	wait_port "$HTTP_PORT" "${PID[nginx]}" nginx && wait_port "$H2_PORT" "${PID[nginx]}" nginx && break
	# Another program took a port between the pick and the bind: again.
	port_bind_failed "$T/nginx-error.log" "$T/nginx-stderr.log" && [ "$attempt" != "$PORT_TRIES" ] ||
		die "nginx exited during start-up; see $T/nginx-error.log"
done
log "nginx on 127.0.0.1:$HTTP_PORT (HTTP/1.1) and :$H2_PORT (h2c)"

BASE=http://127.0.0.1:$HTTP_PORT
CURL=(curl -sS --max-time 30 --noproxy '*')

# ---- sanity checks: references answer ----------------------------------------
[ "$("${CURL[@]}" "$BASE/ref200")" = ok ] || die "nginx /ref200 did not answer ok"
"$KVBODY" read -b bench 0 1 >"$T/one-read.pb"
"${CURL[@]}" --fail -X POST --data-binary @"$T/one-read.pb" \
    -H 'Content-Type: application/x-protobuf' -o "$T/trivial-resp.pb" \
    "$BASE/trivial/snapshot_read" || die "trivial responder did not answer 200"
"$KVBODY" decode-write <"$T/trivial-resp.pb" | grep -q '^status=1 ' ||
	die "trivial responder body is not an AW_SUCCESS AtomicWriteOutput"

# Request bodies for wrk: reads and writes over the whole keyspace.
"$KVBODY" read bench 0 "$KEYS" >"$T/read-bodies.hex"
"$KVBODY" write bench 0 "$KEYS" "$VALUE_BYTES" w >"$T/write-bodies.hex"

# ---- metadata exchange, seeding, end-to-end checks --------------------------
DB_ID=""
DATA_TOKEN=""
KV_VERSION=3
DATA_URL=""
if [ "$REFS_ONLY" != 1 ]; then
	log "metadata exchange"
	meta=$("${CURL[@]}" --fail-with-body -X POST \
	    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
	    --data '{"supportedVersions":[1,2,3]}' "$BASE/") ||
		die "metadata exchange failed: $meta"
	KV_VERSION=$(jq -r '.version' <<<"$meta")
	DB_ID=$(jq -r '.databaseId // .uuid // empty' <<<"$meta")
	DATA_TOKEN=$(jq -r '.token // empty' <<<"$meta")
	endpoint=$(jq -r '[.endpoints[] | select(.consistency == "strong")][0].url // empty' <<<"$meta")
	[ "$KV_VERSION" = 3 ] || warn "server chose KV Connect version $KV_VERSION (expected 3)"
	[[ $KV_VERSION =~ ^[23]$ ]] || die "unusable protocol version in: $meta"
	[ -n "$DB_ID" ] || die "no databaseId in: $meta"
	[ -n "$endpoint" ] || die "no strong endpoint in: $meta"
	[ -n "$DATA_TOKEN" ] || DATA_TOKEN=$TOKEN
	case $endpoint in
	http://127.0.0.1:"$HTTP_PORT"/*) DATA_URL=$endpoint ;;
	http://* | https://*) die "endpoint $endpoint is not this nginx; cannot benchmark it" ;;
	/*) DATA_URL=$BASE$endpoint ;;
	*) DATA_URL=$BASE/${endpoint#./} ;;
	esac
	DATA_URL=${DATA_URL%/}
	log "databaseId $DB_ID, protocol $KV_VERSION, data path $DATA_URL"

	HDRS=(-H "Authorization: Bearer $DATA_TOKEN" -H "x-denokv-version: $KV_VERSION"
	    -H "x-denokv-database-id: $DB_ID" -H 'Content-Type: application/x-protobuf')

	log "seeding $KEYS keys [\"bench\", n]"
	mkdir -p "$T/seed"
	"$KVBODY" seed bench "$KEYS" 500 "$VALUE_BYTES" v "$T/seed" >"$T/seed.list"
	while read -r f; do
		code=$("${CURL[@]}" -o "$T/seed-resp.pb" -w '%{http_code}' -X POST \
		    "${HDRS[@]}" --data-binary @"$f" "$DATA_URL/atomic_write") ||
			die "seeding request failed"
		[ "$code" = 200 ] || die "seeding got HTTP $code: $(head -c 300 "$T/seed-resp.pb")"
		"$KVBODY" decode-write <"$T/seed-resp.pb" | grep -q '^status=1 ' ||
			die "seeding not committed: $("$KVBODY" decode-write <"$T/seed-resp.pb" 2>&1)"
	done <"$T/seed.list"

	# One read through curl: the seeded value must come back.
	n=$((KEYS / 2))
	"$KVBODY" read -b bench "$n" 1 >"$T/one-read.pb"
	code=$("${CURL[@]}" -o "$T/read-resp.pb" -w '%{http_code}' -X POST \
	    "${HDRS[@]}" --data-binary @"$T/one-read.pb" "$DATA_URL/snapshot_read")
	[ "$code" = 200 ] || die "point read got HTTP $code: $(head -c 300 "$T/read-resp.pb")"
	want=$(printf "%${VALUE_BYTES}s" "$n" | tr ' ' v)
	"$KVBODY" decode-read <"$T/read-resp.pb" >"$T/read-resp.txt"
	if ! grep -q 'entries=1$' "$T/read-resp.txt" ||
	    ! grep -q "^entry range=0 key=$("$KVBODY" key bench "$n") encoding=3 value=\"$want\" " "$T/read-resp.txt"; then
		die "point read of seeded key $n returned: $(cat "$T/read-resp.txt")"
	fi

	# The Deno client must find the same keys (key/value encodings agree).
	if [ -x "$DENO" ]; then
		DENO_KV_ACCESS_TOKEN=$TOKEN timeout 60 "$DENO" run --quiet --no-prompt \
		    --unstable-kv --allow-net=127.0.0.1 --allow-env=DENO_KV_ACCESS_TOKEN \
		    "$BENCH_DIR/keycheck.ts" "http://127.0.0.1:$H2_PORT" bench \
		    "$KEYS" "$VALUE_BYTES" v >"$T/keycheck.txt" 2>&1 ||
			{ tail -n 20 "$T/keycheck.txt" >&2; die "the Deno client does not see the seeded keys"; }
		cat "$T/keycheck.txt" >&2
	else
		warn "no Deno CLI at $DENO: skipped the key-encoding cross-check"
	fi
fi

# ---- wrk runs ---------------------------------------------------------------
declare -A RPS P50 P99 DESC
ORDER=()

record() { # name rps p50_us p99_us description
	ORDER+=("$1")
	RPS[$1]=$2
	P50[$1]=$3
	P99[$1]=$4
	DESC[$1]=$5
}


run_wrk() { # name script url conns bodies description
	local name=$1 script=$2 url=$3 conns=$4 bodies=$5 desc=$6 out line k
	out=$T/wrk-$name.txt
	log "wrk $name: -t$THREADS -c$conns -d${DURATION}s $url"
	BENCH_NAME=$name BENCH_BODIES=$bodies DENOKV_TOKEN=$DATA_TOKEN \
	    DENOKV_DATABASE_ID=$DB_ID DENOKV_VERSION=$KV_VERSION \
	    "$WRK" -t"$THREADS" -c"$conns" -d"${DURATION}s" --timeout "$WRK_TIMEOUT" \
	    -s "$BENCH_DIR/wrk/$script" "$url" >"$out" 2>&1 ||
		{ cat "$out" >&2; check_server "wrk $name"; die "wrk $name exited with an error"; }
	sed 's/^/    /' "$out" >&2
	check_server "wrk $name"
	line=$(grep '^RESULT ' "$out") || die "wrk $name printed no RESULT line"
	if grep -q 'Non-2xx or 3xx responses' "$out"; then
		die "wrk $name: got non-2xx responses ($(grep 'Non-2xx' "$out"))"
	fi
	for k in non2xx bad connect_err read_err write_err timeouts; do
		[ "$(field "$k" "$line")" = 0 ] ||
			die "wrk $name: $k=$(field "$k" "$line") (every response must be a valid 200) $(grep '^BAD_SAMPLE' "$out" || true)"
	done
	[ "$(field requests "$line")" -gt 0 ] || die "wrk $name completed no requests"
	record "$name" "$(field rps "$line")" "$(field p50_us "$line")" \
	    "$(field p99_us "$line")" "$desc"
}

run_wrk ref200 ref200.lua "$BASE/ref200" "$CONNS" "$T/read-bodies.hex" \
    "nginx return 200, no upstream"
run_wrk trivial trivial.lua "$BASE/trivial/snapshot_read" "$CONNS" \
    "$T/read-bodies.hex" "fcgi_trivial x$SERVER_PROCS, FastCGI ceiling"
if [ "$REFS_ONLY" != 1 ]; then
	run_wrk read read.lua "$DATA_URL/snapshot_read" "$CONNS" \
	    "$T/read-bodies.hex" "denokv point read, c$CONNS"
	run_wrk write write.lua "$DATA_URL/atomic_write" "$CONNS" \
	    "$T/write-bodies.hex" "denokv atomic write, c$CONNS"
	run_wrk "write_c$WRITE_CONNS2" write.lua "$DATA_URL/atomic_write" "$WRITE_CONNS2" \
	    "$T/write-bodies.hex" "denokv atomic write, c$WRITE_CONNS2"
fi

# ---- raw SQLite commit loop ---------------------------------------------------
for c in $SQLITE_WRITERS; do
	log "sqlite_commit_loop -c $c -m $SQLITE_MODE -s $SYNC -d $DURATION"
	out=$T/sqlite-c$c.txt
	"$OUT/sqlite_commit_loop" -f "$T/loop-c$c.sqlite" -d "$DURATION" -c "$c" \
	    -m "$SQLITE_MODE" -s "$SYNC" -k "$KEYS" -v "$VALUE_BYTES" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "sqlite_commit_loop -c $c failed"; }
	sed 's/^/    /' "$out" >&2
	line=$(grep '^RESULT ' "$out")
	record "sqlite_c$c" "$(field commits_per_s "$line")" \
	    "$(field p50_us "$line")" "$(field p99_us "$line")" \
	    "raw SQLite commits, $c $SQLITE_MODE writer(s)"
done

# ---- Deno bank benchmark over h2c ----------------------------------------------
if [ "$REFS_ONLY" != 1 ] && [ "$BANK" = 1 ]; then
	log "Deno bank: $BANK_READERS readers, $BANK_WRITERS writers, $BANK_ACCOUNTS accounts, ${BANK_DURATION}s, h2c :$H2_PORT"
	out=$T/bank.txt
	DENO_KV_ACCESS_TOKEN=$TOKEN timeout $((BANK_DURATION + 180)) "$DENO" run \
	    --quiet --no-prompt --unstable-kv --allow-net=127.0.0.1 \
	    --allow-env=DENO_KV_ACCESS_TOKEN \
	    "$BENCH_DIR/bank.ts" --url "http://127.0.0.1:$H2_PORT" \
	    --accounts "$BANK_ACCOUNTS" --readers "$BANK_READERS" \
	    --writers "$BANK_WRITERS" --duration "$BANK_DURATION" >"$out" 2>&1 ||
		{ tail -n 40 "$out" | cut -c1-300 >&2; check_server "the bank benchmark"; die "bank benchmark failed (full output: $out)"; }
	check_server "the bank benchmark"
	sed 's/^/    /' "$out" >&2
	line=$(grep '^RESULT ' "$out")
	[ "$(field consistency "$line")" = ok ] || die "bank consistency check failed"
	record bank_reads "$(field reads_per_s "$line")" "$(field read_p50_us "$line")" \
	    "$(field read_p99_us "$line")" "Deno kv.get, $BANK_READERS readers (h2)"
	record bank_transfers "$(field transfers_per_s "$line")" \
	    "$(field write_p50_us "$line")" "$(field write_p99_us "$line")" \
	    "Deno transfers (getMany+check/set), $BANK_WRITERS writers; $(field conflicts "$line") conflicts"
fi

# ---- report -------------------------------------------------------------------
ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }
ratio() { # a b
	[ -n "${RPS[$1]:-}" ] && [ -n "${RPS[$2]:-}" ] || return 0
	awk -v a="${RPS[$1]}" -v b="${RPS[$2]}" -v n1="$1" -v n2="$2" \
	    'BEGIN { if (b > 0) printf "  %-32s %6.3f\n", n1 " / " n2, a / b }'
}
report() {
	local n
	echo
	echo "denokv-fcgi benchmarks, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "host: $(uname -sr), $(nproc) CPUs; $("$NGINX" -v 2>&1 | sed 's/.*: //'); SQLite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?'); $("$WRK" -v 2>&1 | head -n1 | cut -d' ' -f1,2)"
	if [ "$REFS_ONLY" = 1 ]; then
		echo "server: none (REFS_ONLY=1)"
	else
		echo "server: $DENOKV_BIN, $SERVER_PROCS process(es), synchronous=$SYNC; $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'no commit')"
	fi
	echo "wrk -t$THREADS, ${DURATION}s per run, $KEYS keys, $VALUE_BYTES-byte values; SQLite loop $SQLITE_MODE mode"
	echo
	printf '%-16s %12s %10s %10s  %s\n' name "req/s" "p50 ms" "p99 ms" what
	for n in "${ORDER[@]}"; do
		printf '%-16s %12s %10s %10s  %s\n' "$n" "${RPS[$n]}" \
		    "$(ms "${P50[$n]}")" "$(ms "${P99[$n]}")" "${DESC[$n]}"
	done
	echo "(sqlite_c*: commits/s and per-commit latency; bank_*: operations/s)"
	echo
	echo "ratios (same run):"
	ratio trivial ref200
	ratio read trivial
	ratio write trivial
	for c in $SQLITE_WRITERS; do
		ratio write "sqlite_c$c"
		ratio "write_c$WRITE_CONNS2" "sqlite_c$c"
	done
	ratio bank_reads read
	ratio bank_transfers write
}
report | tee "$OUT/last-run.txt"
log "report saved to $OUT/last-run.txt"
