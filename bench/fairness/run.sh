#!/usr/bin/env bash
# bench/fairness/run.sh: fair write admission, measured. See README.md.
#
#   bench/fairness/run.sh                 # 10 s per run, about 2 minutes
#   DURATION=3 bench/fairness/run.sh      # quick look
#   SERVER=0 bench/fairness/run.sh        # only the SQLite loops
#
# 1. SQLite loops (no server): unfair_loop (SQLite's busy handler alone) and
#    fair_loop (the server's own ticket lock from src/libdenokv.a first), for
#    4 processes x 1 writer and 4 processes x 8 writers (32 concurrent):
#    lock wait p50/p99/p99.9/max, commits/s, per-writer spread.
# 2. The server (SERVER=1): denokv-fcgi --workers 4 behind nginx, wrk with
#    32 connections of single-key atomic writes (bench/wrk/write.lua, every
#    answer checked): client-side latency p50/p99/p99.9/max and writes/s.
#    Against the same server built without the ticket lock (NOFAIR=1): a
#    copy of src/shm.c whose storage hooks leave out write_begin/write_end,
#    linked with the rest of src/libdenokv.a, in bench/fairness/out/ (a
#    benchmark-only binary; src/ is not touched).
#
# Figures go to stdout and bench/fairness/out/last-run.txt; progress to
# stderr. Everything runs in a temporary directory on 127.0.0.1 and is
# stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
OUT=$HERE/out

DURATION=${DURATION:-10}            # seconds per run
PROCS=${PROCS:-4}                   # loop processes = server workers
THREADS=${THREADS:-"1 8"}           # writers per loop process
SYNC=${SYNC:-full}
CONNS=${CONNS:-32}                  # wrk connections against the server
WRK_THREADS=${WRK_THREADS:-2}
KEYS=${KEYS:-10000}
VALUE_BYTES=${VALUE_BYTES:-16}
SERVER=${SERVER:-1}
NOFAIR=${NOFAIR:-1}
TARGET_MAX_WAIT_MS=${TARGET_MAX_WAIT_MS:-50}
TARGET_THROUGHPUT=${TARGET_THROUGHPUT:-0.85}
DENOKV_BIN=${DENOKV_BIN:-$REPO/src/denokv-fcgi}
LIBDENOKV=${LIBDENOKV:-$REPO/src/libdenokv.a}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
FASTCGI_PARAMS=${FASTCGI_PARAMS:-/etc/nginx/fastcgi_params}
CC=${CC:-cc}
# The server's link libraries (configure.ac); used for the NOFAIR variant.
SERVER_LIBS=${SERVER_LIBS:-"-lfcgi -lsqlite3 -lprotobuf-c -ljansson -lsystemd -linih -lm"}

for v in DURATION PROCS CONNS WRK_THREADS KEYS VALUE_BYTES; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done
need "$CC" "apt-get install gcc"
if [ ! -f "$LIBDENOKV" ] || [ ! -f "$REPO/src/shm.h" ]; then
	die "$LIBDENOKV not built: make -C $REPO (fair_loop links the server's src/shm.c from it)"
fi

# ---- build ---------------------------------------------------------------------
mkdir -p "$OUT"
log "building the loops into $OUT"
$CC -O2 -Wall -Wextra -o "$OUT/unfair_loop" "$HERE/unfair_loop.c" -lsqlite3 -lpthread -lm ||
	die "building unfair_loop failed (apt-get install libsqlite3-dev)"
$CC -O2 -Wall -Wextra -iquote "$REPO/src" -o "$OUT/fair_loop" "$HERE/fair_loop.c" \
	"$LIBDENOKV" -lsqlite3 -lpthread -lm || die "building fair_loop failed"

if [ "$SERVER" = 1 ]; then
	need wrk "apt-get install wrk"
	need "$NGINX" "apt-get install nginx"
	need curl "apt-get install curl"
	need jq "apt-get install jq"
	need protoc-c "apt-get install protobuf-c-compiler"
	[ -x "$DENOKV_BIN" ] || die "$DENOKV_BIN not built (make -C $REPO)"
	# Request bodies: bench/kvbody.c, built here (not in bench/out).
	mkdir -p "$OUT/gen"
	protoc-c --proto_path="$REPO/proto" --c_out="$OUT/gen" "$REPO/proto/datapath.proto"
	$CC -O2 -I"$OUT/gen" -o "$OUT/kvbody" "$REPO/bench/kvbody.c" \
		"$OUT/gen/datapath.pb-c.c" -lprotobuf-c || die "building kvbody failed (apt-get install libprotobuf-c-dev)"
	if [ "$NOFAIR" = 1 ]; then
		log "building the benchmark-only server without the ticket lock"
		mkdir -p "$OUT/nofair"
		cp "$REPO/src/shm.c" "$OUT/nofair/shm.c"
		n=$(grep -cE '^\s*h->write_(begin|end) = hook_write_(begin|end);' "$OUT/nofair/shm.c" || true)
		if [ "$n" != 2 ]; then
			warn "src/shm.c no longer sets h->write_begin/h->write_end as expected; skipping the no-ticket-lock server"
			NOFAIR=0
		else
			sed -i -E 's/^(\s*)h->write_(begin|end) = hook_write_(begin|end);/\1\/* benchmark variant: no ticket lock *\//' "$OUT/nofair/shm.c"
			# hook_write_begin/end are now unused statics: no -Werror here.
			read -r -a libs <<<"$SERVER_LIBS"
			if ! { $CC -std=gnu11 -O2 -g -D_GNU_SOURCE -pthread -iquote "$REPO/src" \
				-iquote "$REPO/proto" -c -o "$OUT/nofair/shm.o" "$OUT/nofair/shm.c" &&
				$CC -std=gnu11 -O2 -g -D_GNU_SOURCE -pthread -iquote "$REPO/src" \
					-c -o "$OUT/nofair/main.o" "$REPO/src/main.c" &&
				$CC -pthread -o "$OUT/denokv-fcgi-nofair" "$OUT/nofair/main.o" \
					"$OUT/nofair/shm.o" "$LIBDENOKV" "${libs[@]}"; }; then
				warn "building the no-ticket-lock server failed; skipping it"
				NOFAIR=0
			fi
		fi
	fi
fi

# ---- temp dir and cleanup ------------------------------------------------------------
T=$(mktemp -d "${TMPDIR:-/tmp}/denokv-fairness.XXXXXX")
PIDS=()
stop_pid() {
	local p=$1 _
	alive "$p" || return 0
	kill -TERM "$p" 2>/dev/null || true
	for _ in $(seq 1 100); do alive "$p" || return 0; sleep 0.1; done
	warn "pid $p ignored SIGTERM for 10 s; SIGKILL"
	kill -KILL "$p" 2>/dev/null || true
}
cleanup() {
	local rc=$? p
	set +e
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	if [ $rc -ne 0 ] && [ "${KEEP_TMP:-auto}" != 0 ]; then
		printf 'kept %s\n' "$T" >&2
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -A R   # results: R[name.field]

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- 1. the SQLite loops ---------------------------------------------------------------
for t in $THREADS; do
	for m in unfair fair; do
		name=${m}_${PROCS}x$t
		log "$m loop: $PROCS processes x $t writers, ${DURATION}s, synchronous=$SYNC"
		out=$T/$name.txt
		"$OUT/${m}_loop" -f "$T/$name.sqlite" -d "$DURATION" -p "$PROCS" -t "$t" \
			-s "$SYNC" -k "$KEYS" -v "$VALUE_BYTES" >"$out" 2>&1 ||
			{ cat "$out" >&2; die "${m}_loop failed"; }
		sed 's/^/    /' "$out" >&2
		line=$(grep '^RESULT ' "$out")
		for f in commits_per_s wait_p50_us wait_p99_us wait_p999_us wait_max_us \
			min_writer max_writer starved busy writers; do
			R[$name.$f]=$(field "$f" "$line")
		done
		rm -f "$T/$name.sqlite"*
	done
done

# ---- 2. the server ------------------------------------------------------------------------
run_server() { # NAME BINARY
	local name=$1 bin=$2 sock=$T/$1.sock db=$T/$1.sqlite token meta dbid out line lat pid
	local args=(--sqlite-path "$db" serve --listen "unix:$sock" --workers "$PROCS"
		--sqlite-synchronous "$SYNC" --log-level warning)
	[ "$(id -u)" = 0 ] && args+=(--allow-root)
	token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	DENO_KV_ACCESS_TOKEN=$token "$bin" "${args[@]}" >"$T/$name.log" 2>&1 </dev/null &
	pid=$!
	PIDS+=("$pid")
	for _ in $(seq 1 100); do [ -S "$sock" ] && break; alive "$pid" || break; sleep 0.1; done
	[ -S "$sock" ] || { cat "$T/$name.log" >&2; die "$name: the server did not start"; }
	ln -sf "$sock" "$T/current.sock"
	meta=$(curl -sS --fail-with-body -m 10 -X POST -H "Authorization: Bearer $token" \
		-H 'Content-Type: application/json' --data '{"supportedVersions":[1,2,3]}' \
		"http://127.0.0.1:$PORT/") || die "$name: metadata exchange failed: $meta"
	dbid=$(jq -r .databaseId <<<"$meta")
	log "$name: wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s atomic writes, $PROCS workers"
	out=$T/wrk-$name.txt
	WRITE_LUA=$REPO/bench/wrk/write.lua BENCH_NAME=$name BENCH_BODIES=$T/write.hex \
		DENOKV_TOKEN=$token DENOKV_DATABASE_ID=$dbid DENOKV_VERSION=3 \
		wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 30s \
		-s "$T/latency.lua" "http://127.0.0.1:$PORT/v2/atomic_write" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "$name: wrk failed"; }
	sed 's/^/    /' "$out" >&2
	alive "$pid" || die "$name: the server died during the run; see $T/$name.log"
	line=$(grep '^RESULT ' "$out") || die "$name: no RESULT line"
	for f in non2xx bad connect_err read_err write_err timeouts; do
		[ "$(field "$f" "$line")" = 0 ] || die "$name: $f=$(field "$f" "$line") (every answer must be a valid 200)"
	done
	lat=$(grep '^LATENCY ' "$out") || die "$name: no LATENCY line"
	R[$name.rps]=$(field rps "$line")
	for f in p50_us p99_us p999_us max_us; do R[$name.$f]=$(field "$f" "$lat"); done
	stop_pid "$pid"
}

if [ "$SERVER" = 1 ]; then
	# Ports below the ephemeral range, picked again if lost (scripts/ports.sh).
	# shellcheck source=../../scripts/ports.sh
	. "$HERE/../../scripts/ports.sh"
	nginx_prepare
	write_nginx_conf() {
	cat >"$T/nginx.conf" <<EOF
$USER_LINE
daemon off;
worker_processes auto;
pid $T/nginx.pid;
error_log $T/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths)
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$PORT;
        location / {
            include $FASTCGI_PARAMS;
            fastcgi_buffering off;
            fastcgi_pass unix:$T/current.sock;
        }
    }
}
EOF
	}
	for attempt in $(seq 1 "$PORT_TRIES"); do
		PORT=$(pick_port) || die "no free port"
		write_nginx_conf
		"$NGINX" -t -q -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf" || die "nginx refused the config"
		"$NGINX" -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf" >"$T/nginx.out" 2>&1 </dev/null &
		npid=$!
		PIDS+=("$npid")
		for _ in $(seq 1 50); do
			kill -0 "$npid" 2>/dev/null || break
			port_listening_by "$PORT" "$npid" && break 2
			sleep 0.1
		done
		# Another program took the port between the pick and the bind: again.
		kill -0 "$npid" 2>/dev/null && break
		port_bind_failed "$T/nginx.out" "$T/nginx-error.log" && [ "$attempt" != "$PORT_TRIES" ] ||
			die "nginx exited at start-up; see $T/nginx-error.log"
	done
	"$OUT/kvbody" write bench 0 "$KEYS" "$VALUE_BYTES" w >"$T/write.hex"
	# bench/wrk/write.lua, plus a line with the maximum and more percentiles.
	cat >"$T/latency.lua" <<'EOF'
dofile(os.getenv("WRITE_LUA"))
local checked_done = done
function done(summary, latency, requests)
  checked_done(summary, latency, requests)
  io.write(string.format("LATENCY p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
EOF
	run_server server_fair "$DENOKV_BIN"
	if [ "$NOFAIR" = 1 ]; then
		run_server server_nofair "$OUT/denokv-fcgi-nofair"
	fi
fi

# ---- report -----------------------------------------------------------------------------------
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
report() {
	local t u f n
	echo
	echo "denokv-fcgi fair write admission, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "host: $(uname -sr), $(nproc) CPUs; SQLite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?'); synchronous=$SYNC; ${DURATION}s per run"
	echo "server: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
	echo "load average at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews everything)"
	echo
	echo "1. SQLite loops: single-row commits, lock wait = wanting to write -> BEGIN IMMEDIATE returned"
	printf '%-14s %8s %9s %9s %10s %10s %13s %8s %6s\n' run writers commits/s "p50 ms" "p99 ms" "p99.9 ms" "max wait ms" "starved" busy
	for t in $THREADS; do
		for u in unfair fair; do
			n=${u}_${PROCS}x$t
			printf '%-14s %8s %9s %9s %10s %10s %13s %8s %6s\n' "$n" "${R[$n.writers]}" \
				"${R[$n.commits_per_s]}" "$(ms "${R[$n.wait_p50_us]}")" "$(ms "${R[$n.wait_p99_us]}")" \
				"$(ms "${R[$n.wait_p999_us]}")" "$(ms "${R[$n.wait_max_us]}")" \
				"${R[$n.starved]}/${R[$n.writers]}" "${R[$n.busy]}"
		done
	done
	echo "(starved: writers with < 1/4 of the mean commits; busy: BEGIN IMMEDIATE gave up after the 5 s busy timeout)"
	echo
	for t in $THREADS; do
		u=unfair_${PROCS}x$t f=fair_${PROCS}x$t
		printf '  %s: fair/unfair throughput %s; worst wait %s ms vs %s ms; per-writer commits %s..%s vs %s..%s\n' \
			"${PROCS}x$t" "$(ratio "${R[$f.commits_per_s]}" "${R[$u.commits_per_s]}")" \
			"$(ms "${R[$f.wait_max_us]}")" "$(ms "${R[$u.wait_max_us]}")" \
			"${R[$f.min_writer]}" "${R[$f.max_writer]}" "${R[$u.min_writer]}" "${R[$u.max_writer]}"
	done
	t=${THREADS##* }
	f=fair_${PROCS}x$t u=unfair_${PROCS}x$t
	echo
	echo "targets ($PROCS x $t = ${R[$f.writers]} concurrent writers):"
	awk -v w="${R[$f.wait_max_us]}" -v lim="$TARGET_MAX_WAIT_MS" 'BEGIN {
		printf "  worst wait under %d ms:            %.2f ms  %s\n", lim, w / 1000, (w / 1000 < lim) ? "MET" : "NOT MET" }'
	awk -v a="${R[$f.commits_per_s]}" -v b="${R[$u.commits_per_s]}" -v lim="$TARGET_THROUGHPUT" 'BEGIN {
		r = a / b; printf "  throughput >= %.0f%% of unfair:       %.1f%%     %s\n", lim * 100, r * 100, (r >= lim) ? "MET" : "NOT MET" }'
	if [ "$SERVER" = 1 ]; then
		echo
		echo "2. denokv-fcgi --workers $PROCS behind nginx: wrk -c$CONNS single-key atomic writes, client-side latency"
		printf '%-16s %10s %9s %9s %10s %10s\n' run writes/s "p50 ms" "p99 ms" "p99.9 ms" "max ms"
		for n in server_fair server_nofair; do
			[ -n "${R[$n.rps]:-}" ] || continue
			printf '%-16s %10s %9s %9s %10s %10s\n' "$n" "${R[$n.rps]}" "$(ms "${R[$n.p50_us]}")" \
				"$(ms "${R[$n.p99_us]}")" "$(ms "${R[$n.p999_us]}")" "$(ms "${R[$n.max_us]}")"
		done
		echo "(server_nofair: a benchmark-only build of the same server whose storage hooks skip the ticket lock)"
		if [ -n "${R[server_nofair.rps]:-}" ]; then
			echo "  fair/nofair throughput $(ratio "${R[server_fair.rps]}" "${R[server_nofair.rps]}");" \
				"max latency $(ms "${R[server_fair.max_us]}") ms vs $(ms "${R[server_nofair.max_us]}") ms"
		fi
	fi
}
report | tee "$OUT/last-run.txt"
log "report saved to $OUT/last-run.txt"
