#!/usr/bin/env bash
# bench/watch/run.sh: 10,000 concurrent watch streams through nginx while a
# writer updates random watched keys; reports change-to-delivery latency,
# server memory per stream and point-read throughput with and without the
# streams. See bench/watch/README.md. Run by hand, not in CI:
#
#   bench/watch/run.sh                     # defaults (about 3 minutes)
#   WATCHES=2000 WRITE_SECONDS=10 bench/watch/run.sh   # quick check
#
# Everything runs in a fresh temporary directory on 127.0.0.1: nginx (own
# configuration with the limits a deployment for this many streams needs),
# denokv-fcgi on a new database with a random token, Node clients. All of it
# is stopped on exit. It needs to raise RLIMIT_NOFILE (root, or a hard limit
# of at least NOFILE).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
OUT=$HERE/out

# ---- settings (environment) -------------------------------------------------
WATCHES=${WATCHES:-10000}            # concurrent watch streams
WATCH_KEYS=${WATCH_KEYS:-$WATCHES}   # distinct watched keys; stream i watches key i % WATCH_KEYS
STREAMS_PER_CONN=${STREAMS_PER_CONN:-2500}  # streams per HTTP/2 connection
OPEN_PENDING=${OPEN_PENDING:-256}    # streams opening at once (listen backlog is 1024)
RATE=${RATE:-1000}                   # writes per second
WRITE_SECONDS=${WRITE_SECONDS:-30}   # length of the measured write phase
WRITER_CONNS=${WRITER_CONNS:-32}     # writer's HTTP/1.1 connections (writes in flight)
READ_SECONDS=${READ_SECONDS:-10}     # each wrk run
READ_ROUNDS=${READ_ROUNDS:-3}        # alternating rounds of reads without / with the watches
READ_KEYS=${READ_KEYS:-10000}        # keyspace of the point reads ["bench", n]
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
WORKERS=${WORKERS:-}                 # denokv-fcgi --workers (default: the server's own)
SYNC=${SYNC:-full}                   # --sqlite-synchronous
NOFILE=${NOFILE:-65536}              # RLIMIT_NOFILE for nginx and the server
KEEP_TMP=${KEEP_TMP:-auto}           # 1: keep the temp dir; auto: only on failure
DENOKV_BIN=${DENOKV_BIN:-$REPO/src/denokv-fcgi}
NODE=${NODE:-node}
WRK=${WRK:-wrk}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
FASTCGI_PARAMS=${FASTCGI_PARAMS:-/etc/nginx/fastcgi_params}
CC=${CC:-cc}

for v in WATCHES WATCH_KEYS STREAMS_PER_CONN OPEN_PENDING RATE WRITE_SECONDS \
    WRITER_CONNS READ_SECONDS READ_ROUNDS READ_KEYS WRK_THREADS WRK_CONNS NOFILE; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done
[ "$WATCH_KEYS" -le "$WATCHES" ] || die "WATCH_KEYS must not exceed WATCHES"
need "$NODE" "apt-get install nodejs (18 or newer)"
need "$WRK" "apt-get install wrk"
need "$NGINX" "apt-get install nginx"
need curl "apt-get install curl"
need protoc-c "apt-get install protobuf-c-compiler"
need "$CC" "apt-get install gcc"
[ -x "$DENOKV_BIN" ] || die "$DENOKV_BIN not built (make -C $REPO)"
[ -r "$FASTCGI_PARAMS" ] || die "$FASTCGI_PARAMS missing (set FASTCGI_PARAMS)"

# File descriptors: every stream is one upstream socket in nginx and one in
# the server, plus the client side in nginx for HTTP/1.1 clients.
if ! ulimit -n "$NOFILE" 2>/dev/null; then
	# Not allowed past the hard limit (no CAP_SYS_RESOURCE, e.g. in a
	# container): take the hard limit if it still fits the streams.
	hard=$(ulimit -Hn)
	[ "$hard" = unlimited ] && hard=$NOFILE
	printf 'WARNING: cannot raise the open-files limit to %s; using the hard limit %s\n' "$NOFILE" "$hard" >&2
	NOFILE=$hard
	ulimit -n "$NOFILE"
fi
# Worst case, every stream sits in one nginx worker and in one server worker.
[ "$NOFILE" -ge $((WATCHES + 1024)) ] ||
	die "open-files limit $NOFILE is too low for $WATCHES streams (need $((WATCHES + 1024))); run as root or raise the hard limit"

# ---- helpers: kvbody (bench/kvbody.c) for the read bodies and seeding -------
log "building kvbody from bench/kvbody.c into $OUT"
mkdir -p "$OUT/gen"
protoc-c --proto_path="$REPO/proto" --c_out="$OUT/gen" "$REPO/proto/datapath.proto"
$CC -O2 -I"$OUT/gen" -o "$OUT/kvbody" "$REPO/bench/kvbody.c" "$OUT/gen/datapath.pb-c.c" -lprotobuf-c ||
	die "building kvbody failed (apt-get install libprotobuf-c-dev)"
KVBODY=$OUT/kvbody

# ---- temp dir and cleanup ---------------------------------------------------------
T=$(mktemp -d "${TMPDIR:-/tmp}/denokv-watchbench.XXXXXX")
SERVER_PID=
NGINX_PID=
BENCH_PID=

stop_pid() { # pid
	local _
	alive "$1" || return 0
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 1 100); do
		alive "$1" || return 0
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$BENCH_PID"
	stop_pid "$NGINX_PID"
	stop_pid "$SERVER_PID"
	if [ "$KEEP_TMP" = 1 ] || { [ $rc -ne 0 ] && [ "$KEEP_TMP" = auto ]; }; then
		printf 'kept %s\n' "$T" >&2
		[ $rc -ne 0 ] && for f in "$T/denokv.log" "$T/nginx-error.log"; do
			[ -s "$f" ] && { printf -- '--- last lines of %s\n' "$f" >&2; tail -n 15 "$f" >&2; }
		done
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ports below the ephemeral range, picked again if lost (scripts/ports.sh).
# shellcheck source=../../scripts/ports.sh
. "$HERE/../../scripts/ports.sh"

# ---- the server ---------------------------------------------------------------------
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
SOCK=$T/denokv.sock
ARGS=(--sqlite-path "$T/db.sqlite" serve --access-token "$TOKEN" --listen "unix:$SOCK"
    --sqlite-synchronous "$SYNC" --log-level warning)
[ -n "$WORKERS" ] && ARGS+=(--workers "$WORKERS")
# A throwaway instance on temporary files: root may stay root.
[ "$(id -u)" = 0 ] && ARGS+=(--allow-root)
log "temp dir $T; open-files limit $(ulimit -n)"
"$DENOKV_BIN" "${ARGS[@]}" </dev/null >"$T/denokv.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
	[ -S "$SOCK" ] && break
	alive "$SERVER_PID" || die "denokv-fcgi exited at start-up: $(cat "$T/denokv.log")"
	sleep 0.1
done
[ -S "$SOCK" ] || die "denokv-fcgi did not create $SOCK"

# ---- nginx ------------------------------------------------------------------------------
nginx_prepare
cp "$FASTCGI_PARAMS" "$T/fastcgi_params"
cp "$REPO/nginx/denokv-fcgi.conf" "$T/denokv-fcgi.conf"
MAX_STREAMS=$((STREAMS_PER_CONN + 64))
write_nginx_conf() {
cat >"$T/nginx.conf" <<EOF
# generated by bench/watch/run.sh
$USER_LINE
daemon off;
worker_processes auto;
# Each watch stream holds one upstream connection (a FastCGI socket) in the
# nginx worker that serves its client connection, plus the client side.
worker_rlimit_nofile $NOFILE;
pid $T/nginx.pid;
error_log $T/nginx-error.log warn;
events {
    # client connections + upstream connections, per nginx worker
    worker_connections $((NOFILE - 256));
}
http {
    access_log off;
    default_type application/octet-stream;
$(nginx_temp_paths)
    # Streams on one HTTP/2 connection at once (the Deno client puts all of
    # a process's watches and requests on one connection).
    http2_max_concurrent_streams $MAX_STREAMS;
    # Since nginx 1.19.7 every HTTP/2 stream counts against
    # keepalive_requests (default 1000): past it nginx sends GOAWAY and the
    # client must reconnect. Raise it for long-lived clients.
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$H1_PORT;           # HTTP/1.1: wrk, the writer
        listen 127.0.0.1:$H2_PORT http2;     # h2c: the watch clients
        server_name localhost;
        location / {
            include denokv-fcgi.conf;        # the repository's nginx/denokv-fcgi.conf
            fastcgi_pass unix:$SOCK;
        }
    }
}
EOF
}

CURL=(curl -sS --max-time 30 --noproxy '*')
meta=
for attempt in $(seq 1 "$PORT_TRIES"); do
	H1_PORT=$(pick_port) && H2_PORT=$(pick_port "$H1_PORT") || die "no free TCP port on 127.0.0.1"
	write_nginx_conf
	"$NGINX" -t -q -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf" 2>"$T/nginx-t.log" ||
		{ cat "$T/nginx-t.log" >&2; die "nginx rejected the generated configuration"; }
	: >"$T/nginx-error.log"
	"$NGINX" -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf" </dev/null >"$T/nginx-stderr.log" 2>&1 &
	NGINX_PID=$!
	BASE=http://127.0.0.1:$H1_PORT
	for _ in $(seq 1 100); do
		meta=$("${CURL[@]}" --fail -X POST -H "Authorization: Bearer $TOKEN" \
		    -H 'Content-Type: application/json' --data '{"supportedVersions":[1,2,3]}' "$BASE/" 2>/dev/null) && break 2
		alive "$NGINX_PID" || break
		sleep 0.1
	done
	# Another program took a port between the pick and the bind: again.
	if alive "$NGINX_PID" || ! port_bind_failed "$T/nginx-error.log" "$T/nginx-stderr.log"; then
		break
	fi
done
for _ in $(seq 1 100); do
	[ -n "$meta" ] && break
	meta=$("${CURL[@]}" --fail -X POST -H "Authorization: Bearer $TOKEN" \
	    -H 'Content-Type: application/json' --data '{"supportedVersions":[1,2,3]}' "$BASE/" 2>/dev/null) && break
	alive "$NGINX_PID" || die "nginx exited: $(cat "$T/nginx-error.log" "$T/nginx-stderr.log")"
	alive "$SERVER_PID" || die "denokv-fcgi exited: $(cat "$T/denokv.log")"
	sleep 0.1
done
[ -n "$meta" ] || die "no 200 from the metadata exchange at $BASE/"
DB_ID=$(sed -n 's/.*"databaseId":"\([^"]*\)".*/\1/p' <<<"$meta")
DATA_TOKEN=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$meta")
ENDPOINT=$(sed -n 's/.*"endpoints":\[{"url":"\([^"]*\)","consistency":"strong".*/\1/p' <<<"$meta")
if [ -z "$DB_ID" ] || [ -z "$DATA_TOKEN" ] || [ "$ENDPOINT" != /v2 ]; then
	die "unexpected metadata (want a strong /v2 endpoint): $meta"
fi
HDRS=(-H "Authorization: Bearer $DATA_TOKEN" -H "x-denokv-version: 3"
    -H "x-denokv-database-id: $DB_ID" -H 'Content-Type: application/x-protobuf')

# ---- seeding ---------------------------------------------------------------------------
seed() { # prefix count
	local f code
	mkdir -p "$T/seed-$1"
	"$KVBODY" seed "$1" "$2" 500 16 v "$T/seed-$1" >"$T/seed-$1.list"
	while read -r f; do
		code=$("${CURL[@]}" -o "$T/seed-resp.pb" -w '%{http_code}' -X POST "${HDRS[@]}" \
		    --data-binary @"$f" "$BASE/v2/atomic_write") || die "seeding request failed"
		[ "$code" = 200 ] || die "seeding got HTTP $code: $(head -c 300 "$T/seed-resp.pb")"
		"$KVBODY" decode-write <"$T/seed-resp.pb" | grep -q '^status=1 ' ||
			die "seed batch not committed: $("$KVBODY" decode-write <"$T/seed-resp.pb" 2>&1)"
	done <"$T/seed-$1.list"
}
log "seeding $READ_KEYS read keys [\"bench\", n] and $WATCH_KEYS watched keys [\"watch\", n]"
seed bench "$READ_KEYS"
seed watch "$WATCH_KEYS"
"$KVBODY" read bench 0 "$READ_KEYS" >"$T/read-bodies.hex"

# The Node clients encode keys themselves: they must match kvbody's (and so
# the Deno client's) encoding, or the watches would watch nothing.
for n in 0 1 42 $((WATCH_KEYS - 1)); do
	want=$("$KVBODY" key watch "$n")
	got=$("$NODE" --input-type=module -e "import { encodeKey } from '$HERE/kv.mjs'; console.log(encodeKey(['watch', $n]).toString('hex'))")
	[ "$want" = "$got" ] || die "key encoding differs for [\"watch\", $n]: kvbody $want, kv.mjs $got"
done

# ---- the phases (bench.mjs) ---------------------------------------------------------
HEADER="host: $(uname -sr), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); $("$NGINX" -v 2>&1 | sed 's/.*: //'); node $("$NODE" --version); $("$WRK" -v 2>&1 | head -n1 | cut -d' ' -f1,2)
server: $DENOKV_BIN, $(($(pgrep -c -P "$SERVER_PID") - 1)) workers + housekeeper, synchronous=$SYNC; $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'no commit')
limits: RLIMIT_NOFILE $(ulimit -n) (nginx worker_rlimit_nofile $NOFILE, worker_connections $((NOFILE - 256))); http2_max_concurrent_streams $MAX_STREAMS; keepalive_requests 1000000"
mkdir -p "$OUT"
H1_BASE=$BASE/ H2_BASE=http://127.0.0.1:$H2_PORT/ TOKEN=$TOKEN DATA_TOKEN=$DATA_TOKEN DB_ID=$DB_ID \
SERVER_PID=$SERVER_PID NGINX_PID=$NGINX_PID WATCHES=$WATCHES WATCH_KEYS=$WATCH_KEYS \
STREAMS_PER_CONN=$STREAMS_PER_CONN OPEN_PENDING=$OPEN_PENDING RATE=$RATE WRITE_SECONDS=$WRITE_SECONDS \
WRITER_CONNS=$WRITER_CONNS READ_SECONDS=$READ_SECONDS READ_ROUNDS=$READ_ROUNDS WRK=$WRK WRK_THREADS=$WRK_THREADS WRK_CONNS=$WRK_CONNS \
WRK_SCRIPT=$REPO/bench/wrk/read.lua READ_BODIES=$T/read-bodies.hex READ_URL=$BASE/v2/snapshot_read \
OUT_DIR=$T REPORT_HEADER=$HEADER \
	"$NODE" "$HERE/bench.mjs" >"$T/report.out" &
BENCH_PID=$!
wait "$BENCH_PID" || { BENCH_PID=; die "bench.mjs failed (details above; raw data in $T)"; }
BENCH_PID=
alive "$SERVER_PID" || die "denokv-fcgi is gone after the benchmark"
cp "$T/report.txt" "$OUT/last-run.txt"
cat "$T/report.txt"
log "report saved to $OUT/last-run.txt"
