#!/usr/bin/env bash
# bench/hosting/run.sh: one denokv-fcgi serving many databases ([database
# NAME] sections, docs/shared-hosting.md) through nginx: point reads and
# writes spread uniformly at random over 1, 10 and 1,000 of its databases,
# against the same load on one of them, in the same run with the spreads
# alternated; and the memory an open database costs (RSS and PSS of the
# master and workers from /proc/PID/smaps_rollup). See bench/README.md
# ("hosting"). Run by hand, not in CI:
#
#   bench/hosting/run.sh               # about 2 minutes
#   QUICK=1 bench/hosting/run.sh       # about 1 minute
#   DATABASES=200 SPREADS="1 10 200" bench/hosting/run.sh
#
# It refuses to run (with the server's own words) if the build does not
# accept [database NAME] sections. Everything runs in a fresh temporary
# directory on 127.0.0.1 (free ports) and is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$HERE/out

# ---- settings (environment) -------------------------------------------------
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	: "${DURATION:=2}" "${ROUNDS:=1}"
fi
DURATION=${DURATION:-5}             # seconds per wrk run
ROUNDS=${ROUNDS:-2}                 # rounds (median reported), spreads alternated
DATABASES=${DATABASES:-1000}        # [database NAME] sections in the config
SPREADS=${SPREADS:-$(printf '%s\n' 1 10 "$DATABASES" | awk -v n="$DATABASES" '$1 <= n && !seen[$1]++' | tr '\n' ' ')}
CLASSIC=${CLASSIC:-1}               # 1: also a one-database server from the command line
MAX_OPEN=${MAX_OPEN:-$DATABASES}    # max-open-databases; "default": leave it to the server
KEYS=${KEYS:-100}                   # keys ["bench", n] per database
VALUE_BYTES=${VALUE_BYTES:-16}
THREADS=${THREADS:-2}               # wrk -t
CONNS=${CONNS:-64}                  # wrk -c
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
WORKERS=${WORKERS:-2}
SYNC=${SYNC:-full}
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-32}
KEEP_TMP=${KEEP_TMP:-auto}
if [ -z "${DENOKV_BIN:-}" ]; then
	DENOKV_BIN=$REPO/build/src/denokv-fcgi
	[ -x "$DENOKV_BIN" ] || DENOKV_BIN=$REPO/src/denokv-fcgi
fi
NODE=${NODE:-node}
WRK=${WRK:-wrk}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
FASTCGI_PARAMS=${FASTCGI_PARAMS:-/etc/nginx/fastcgi_params}
CC=${CC:-cc}

export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf '\nBENCHMARK FAILED: %s\n' "$*" >&2; exit 1; }

for v in ROUNDS DATABASES KEYS VALUE_BYTES THREADS CONNS WORKERS NGINX_KEEPALIVE; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || die "DURATION must be whole seconds"
for s in $SPREADS; do
	[[ $s =~ ^[0-9]+$ && $s -gt 0 && $s -le $DATABASES ]] || die "SPREADS: '$s' must be 1..$DATABASES"
done
[ "$MAX_OPEN" = default ] || [[ $MAX_OPEN =~ ^[0-9]+$ ]] || die "MAX_OPEN must be a number or 'default'"
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }
need "$WRK" "apt-get install wrk"
need "$NGINX" "apt-get install nginx"
need "$NODE" "apt-get install nodejs (18 or newer)"
need curl "apt-get install curl"
need pgrep "apt-get install procps"
need protoc-c "apt-get install protobuf-c-compiler"
need "$CC" "apt-get install gcc"
[ -x "$DENOKV_BIN" ] || die "$DENOKV_BIN not built (scripts/build.sh build), or set DENOKV_BIN"
[ -r "$FASTCGI_PARAMS" ] || die "$FASTCGI_PARAMS missing (set FASTCGI_PARAMS)"

# Every open database holds its file, WAL and shared-memory descriptors in
# each worker.
want_fds=$((DATABASES * 4 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
	hard=$(ulimit -Hn)
	if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_fds" ]; then
		warn "open-files hard limit $hard is below the $want_fds that $DATABASES open databases may need"
		want_fds=$hard
	fi
	ulimit -n "$want_fds"
fi

HELP=$("$DENOKV_BIN" --help 2>&1 || true)
HAS_MODEL=0
grep -q -- '--request-model' <<<"$HELP" && HAS_MODEL=1
ROOT_ARGS=()
[ "$(id -u)" = 0 ] && ROOT_ARGS=(--allow-root)

# ---- temp dir, processes, cleanup -------------------------------------------
T=$(mktemp -d "${TMPDIR:-/tmp}/denokv-hosting.XXXXXX")
PIDS=()
declare -A PID
LOGS=()

alive() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ -n $st && $st != Z* ]]
}
descendants() {
	local c
	for c in $(pgrep -P "$1" 2>/dev/null); do
		echo "$c"
		descendants "$c"
	done
}
stop_pids() {
	local p _ left=() all=()
	for p in "$@"; do
		# shellcheck disable=SC2207
		all+=("$p" $(descendants "$p"))
	done
	[ ${#all[@]} -gt 0 ] || return 0
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in $(seq 1 100); do
		left=()
		for p in "${all[@]}"; do alive "$p" && left+=("$p"); done
		[ ${#left[@]} = 0 ] && return 0
		sleep 0.1
	done
	for p in "${left[@]}"; do
		warn "pid $p still running 10 s after SIGTERM; sending SIGKILL"
		kill -KILL "$p" 2>/dev/null || true
	done
}
cleanup() {
	local rc=$? f
	set +e
	trap - EXIT INT TERM
	[ ${#PIDS[@]} -gt 0 ] && stop_pids "${PIDS[@]}"
	if [ $rc -ne 0 ] && [ $rc -ne 130 ] && [ $rc -ne 143 ]; then
		for f in "${LOGS[@]}"; do
			[ -s "$f" ] || continue
			printf '\n--- last lines of %s ---\n' "$f" >&2
			tail -n 15 "$f" >&2
		done
	fi
	if [ "$KEEP_TMP" = 1 ] || { [ $rc -ne 0 ] && [ "$KEEP_TMP" = auto ]; }; then
		printf 'kept %s\n' "$T" >&2
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start() {
	local name=$1 logf=$2 pid
	shift 2
	LOGS+=("$logf")
	"$@" >"$logf" 2>&1 </dev/null &
	pid=$!
	disown "$pid"
	PIDS+=("$pid")
	PID[$name]=$pid
}
wait_socket() {
	local _
	for _ in $(seq 1 100); do
		[ -S "$1" ] && return 0
		alive "$2" || die "$3 exited during start-up"
		sleep 0.1
	done
	die "$3 did not create $1 within 10 s"
}
# shellcheck source=scripts/ports.sh
. "$REPO/scripts/ports.sh"

# ---- the configuration: one section per database ------------------------------------
log "temp dir $T; server $DENOKV_BIN"
BASE_TOKEN=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$T/dbs"
{
	echo "# generated by bench/hosting/run.sh"
	[ "$MAX_OPEN" = default ] || echo "max-open-databases = $MAX_OPEN"
	for i in $(seq 0 $((DATABASES - 1))); do
		n=$(printf 'db%04d' "$i")
		printf '\n[database %s]\npath = %s\nmount = /h/%s\ntoken = read-write %s%s\n' \
		    "$n" "$T/dbs/$n.sqlite" "$n" "$BASE_TOKEN" "$n"
		printf '/h/%s %s%s\n' "$n" "$BASE_TOKEN" "$n" >>"$T/dbs.list"
	done
} >"$T/hosting.conf"

SERVE_ARGS=(serve --listen "unix:$T/h.sock" --workers "$WORKERS" --sqlite-synchronous "$SYNC" "${ROOT_ARGS[@]}")
if ! "$DENOKV_BIN" --config "$T/hosting.conf" "${SERVE_ARGS[@]}" --check-config >"$T/check.txt" 2>&1; then
	[ "$KEEP_TMP" = auto ] && KEEP_TMP=0 # nothing ran: nothing to look at
	die "this build does not support [database NAME] sections in its configuration (docs/shared-hosting.md); '$(basename "$DENOKV_BIN") --config FILE serve --check-config' said: $(head -n 3 "$T/check.txt" | tr '\n' ' ')"
fi

# ---- build kvbody, bodies ---------------------------------------------------------------
mkdir -p "$OUT/gen"
protoc-c --proto_path="$REPO/proto" --c_out="$OUT/gen" "$REPO/proto/datapath.proto"
$CC -O2 -I"$OUT/gen" -o "$OUT/kvbody" "$REPO/bench/kvbody.c" "$OUT/gen/datapath.pb-c.c" -lprotobuf-c ||
	die "building kvbody failed (apt-get install libprotobuf-c-dev)"
KVBODY=$OUT/kvbody
mkdir -p "$T/seed"
"$KVBODY" seed bench "$KEYS" "$KEYS" "$VALUE_BYTES" v "$T/seed" >"$T/seed.list"
[ "$(wc -l <"$T/seed.list")" = 1 ] || die "kvbody made more than one seed body"
SEED_BODY=$(cat "$T/seed.list")
"$KVBODY" read bench 0 "$KEYS" >"$T/read-bodies.hex"
"$KVBODY" write bench 0 "$KEYS" "$VALUE_BYTES" w >"$T/write-bodies.hex"

# ---- servers and nginx ---------------------------------------------------------------------
start hosting "$T/hosting.log" "$DENOKV_BIN" --config "$T/hosting.conf" "${SERVE_ARGS[@]}"
wait_socket "$T/h.sock" "${PID[hosting]}" "denokv-fcgi (databases)"
MOUNTS=(h)
if [ "$CLASSIC" = 1 ]; then
	CLASSIC_TOKEN=${BASE_TOKEN}classic
	DENO_KV_ACCESS_TOKEN=$CLASSIC_TOKEN start classic "$T/classic.log" "$DENOKV_BIN" \
	    --sqlite-path "$T/classic.sqlite" serve --listen "unix:$T/c.sock" --workers "$WORKERS" \
	    --sqlite-synchronous "$SYNC" "${ROOT_ARGS[@]}"
	wait_socket "$T/c.sock" "${PID[classic]}" "denokv-fcgi (one database)"
	MOUNTS+=(c)
fi

grep -v '^[[:space:]]*fastcgi_keep_conn' "$REPO/nginx/denokv-fcgi.conf" >"$T/denokv-fcgi.conf"
cp "$FASTCGI_PARAMS" "$T/fastcgi_params"
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user $(id -un) $(id -gn);"
mkdir -p "$T/nginx-tmp"
write_nginx_conf() {
	local m
	{
		cat <<EOF
# generated by bench/hosting/run.sh
$USER_LINE
daemon off;
worker_processes auto;
pid $T/nginx.pid;
error_log $T/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path $T/nginx-tmp/body;
    fastcgi_temp_path $T/nginx-tmp/fastcgi;
    proxy_temp_path $T/nginx-tmp/proxy;
    uwsgi_temp_path $T/nginx-tmp/uwsgi;
    scgi_temp_path $T/nginx-tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
EOF
		if [ $HAS_MODEL = 1 ]; then
			for m in "${MOUNTS[@]}"; do
				printf '    upstream up_%s { server unix:%s; keepalive %s; keepalive_requests 100000; }\n' "$m" "$T/$m.sock" "$NGINX_KEEPALIVE"
			done
		fi
		printf '    server {\n        listen 127.0.0.1:%s;\n        server_name localhost;\n' "$H1_PORT"
		for m in "${MOUNTS[@]}"; do
			if [ $HAS_MODEL = 1 ]; then
				printf '        location /%s/ { include denokv-fcgi.conf; fastcgi_keep_conn on; fastcgi_pass up_%s; }\n' "$m" "$m"
			else
				printf '        location /%s/ { include denokv-fcgi.conf; fastcgi_pass unix:%s; }\n' "$m" "$T/$m.sock"
			fi
		done
		printf '    }\n}\n'
	} >"$T/nginx.conf"
}
LOGS+=("$T/nginx-error.log")
for attempt in $(seq 1 "$PORT_TRIES"); do
	H1_PORT=$(pick_port) || die "no free TCP port on 127.0.0.1"
	write_nginx_conf
	"$NGINX" -t -q -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf" 2>"$T/nginx-t.log" ||
		{ cat "$T/nginx-t.log" >&2; die "nginx rejected the generated config ($T/nginx.conf)"; }
	: >"$T/nginx-error.log"
	start nginx "$T/nginx-stderr.log" "$NGINX" -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf"
	ok=0
	for _ in $(seq 1 100); do
		alive "${PID[nginx]}" || break
		port_listening_by "$H1_PORT" "${PID[nginx]}" && { ok=1; break; }
		sleep 0.1
	done
	[ $ok = 1 ] && break
	port_bind_failed "$T/nginx-error.log" "$T/nginx-stderr.log" && [ "$attempt" != "$PORT_TRIES" ] ||
		die "nginx did not start; see $T/nginx-error.log"
	stop_pids "${PID[nginx]}"
done
BASE=http://127.0.0.1:$H1_PORT
log "nginx on $BASE"

# ---- memory ----------------------------------------------------------------------------
# mem LABEL: one line per process of the multi-database server: role, pid,
# Rss and Pss (KiB, smaps_rollup), open database files (descriptors on
# *.sqlite).
mem() {
	local label=$1 p role rss pss dbs
	for p in "${PID[hosting]}" $(pgrep -P "${PID[hosting]}" | sort -n); do
		role=child
		[ "$p" = "${PID[hosting]}" ] && role=master
		rss=$(awk '/^Rss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		pss=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		dbs=$(find "/proc/$p/fd" -maxdepth 1 -lname '*.sqlite' 2>/dev/null | wc -l)
		printf '%s %s %s %s %s\n' "$label" "$role:$p" "$rss" "$pss" "$dbs"
	done >>"$T/mem.txt"
}

prepare() { # list-file out-file
	"$NODE" "$HERE/prepare.mjs" "$BASE" "$1" "$SEED_BODY" 16 >"$2" 2>"$2.err" ||
		{ cat "$2.err" >&2; die "preparing the databases failed"; }
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
declare -A R

run_wrk() { # key dbs-file spread op round
	local key=$1 dbs=$2 spread=$3 op=$4 round=$5 out line k
	out=$T/wrk-$key-$op-$round.txt
	log "wrk $op over $key (round $round): -t$THREADS -c$CONNS -d${DURATION}s"
	BENCH_NAME=$key BENCH_BODIES=$T/$op-bodies.hex HOSTING_DBS=$dbs HOSTING_SPREAD=$spread \
	    HOSTING_OP=$op "$WRK" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout "$WRK_TIMEOUT" \
	    -s "$HERE/spread.lua" "$BASE/" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk $op over $key exited with an error"; }
	line=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "wrk $op over $key printed no RESULT line"; }
	for k in non2xx bad connect_err read_err write_err timeouts; do
		[ "$(field "$k" "$line")" = 0 ] ||
			die "wrk $op over $key: $k=$(field "$k" "$line") (every response must be a valid 200) $(grep '^BAD_SAMPLE' "$out" || true)"
	done
	R[$key|$op|$round]="$(field rps "$line") $(field p50_us "$line") $(field p99_us "$line")"
}

mem started
log "preparing database 1 of $DATABASES$([ "$CLASSIC" = 1 ] && echo ' and the one-database server')"
head -n 1 "$T/dbs.list" >"$T/first.list"
prepare "$T/first.list" "$T/first.dbs"
if [ "$CLASSIC" = 1 ]; then
	echo "/c $CLASSIC_TOKEN" >"$T/classic.list"
	prepare "$T/classic.list" "$T/classic.dbs"
fi
# Warm: both workers have the first database open.
run_wrk warm "$T/first.dbs" 1 read 0
mem one_open
log "preparing all $DATABASES databases (metadata exchange and $KEYS keys each)"
prepare "$T/dbs.list" "$T/all.dbs"
run_wrk warm "$T/all.dbs" "$DATABASES" read 0
mem all_open

# ---- the runs -----------------------------------------------------------------------------
KEYLIST=()
[ "$CLASSIC" = 1 ] && KEYLIST+=(classic)
for s in $SPREADS; do KEYLIST+=("db$s"); done
rotate() {
	local n=$1
	shift
	local a=("$@") i
	for i in $(seq 0 $((${#a[@]} - 1))); do printf '%s ' "${a[$(((i + n) % ${#a[@]}))]}"; done
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
	for key in $(rotate "$r" "${KEYLIST[@]}"); do
		for op in read write; do
			if [ "$key" = classic ]; then
				run_wrk classic "$T/classic.dbs" 1 "$op" "$r"
			else
				run_wrk "$key" "$T/all.dbs" "${key#db}" "$op" "$r"
			fi
		done
	done
done
mem after_runs
alive "${PID[hosting]}" || die "the multi-database server is gone after the runs; see $T/hosting.log"

# ---- report ---------------------------------------------------------------------------------
med() {
	local key=$1 col=$2 r v vals=()
	for r in $(seq 1 "$ROUNDS"); do
		v=${R[$key|$r]:-}
		[ -n "$v" ] && vals+=("$(cut -d' ' -f"$col" <<<"$v")")
	done
	[ ${#vals[@]} -gt 0 ] || return 0
	printf '%s\n' "${vals[@]}" | sort -g | awk '{ a[NR] = $1 } END {
		if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else printf "-" }'; }
rate() { [ -n "$1" ] && awk -v a="$1" 'BEGIN { printf "%.0f", a }' || printf -- "-"; }
lat() { [ -n "$1" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f/%.1f", a / 1000, b / 1000 }' || printf -- "-"; }
first=db${SPREADS%% *}
memsum() { # label column(3 rss, 4 pss, 5 dbs) [role]
	awk -v l="$1" -v c="$2" -v role="${3:-}" '$1 == l && (role == "" || index($2, role ":") == 1) { s += $c } END { print s + 0 }' "$T/mem.txt"
}
{
	echo "denokv-fcgi hosting benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "host: $(uname -sr), $(nproc) CPUs; $("$NGINX" -v 2>&1 | sed 's/.*: //'); $("$WRK" -v 2>&1 | head -n1 | cut -d' ' -f1,2)"
	echo "server: $DENOKV_BIN ($(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')), $WORKERS workers, synchronous=$SYNC, $DATABASES [database] sections, max-open-databases=$MAX_OPEN"
	echo "nginx: $([ $HAS_MODEL = 1 ] && echo "keeps up to $NGINX_KEEPALIVE FastCGI connections per worker" || echo "a connection per request (this build has no --request-model)")"
	echo "load average at start of the runs: $LOAD_START"
	echo "wrk -t$THREADS -c$CONNS, ${DURATION}s per run, $ROUNDS round(s) (median), spreads alternated; $KEYS keys per database, $VALUE_BYTES-byte values"
	echo
	echo "== point reads and writes spread uniformly over N databases of one server; ratio to $first"
	printf '%-10s %10s %12s %6s %10s %12s %6s\n' spread "reads/s" "p50/p99 ms" ratio "writes/s" "p50/p99 ms" ratio
	for key in "${KEYLIST[@]}"; do
		printf '%-10s' "$key"
		for op in read write; do
			printf ' %10s %12s %6s' "$(rate "$(med "$key|$op" 1)")" \
			    "$(lat "$(med "$key|$op" 2)" "$(med "$key|$op" 3)")" \
			    "$(ratio "$(med "$key|$op" 1)" "$(med "$first|$op" 1)")"
		done
		echo
	done
	[ "$CLASSIC" = 1 ] && echo "(classic: a second server with one database from the command line, no [database] sections)"
	last=db${SPREADS##* }
	for op in read write; do
		awk -v w="$op" -v v="$(ratio "$(med "$last|$op" 1)" "$(med "$first|$op" 1)")" -v k="$last" -v f="$first" \
		    'BEGIN { if (v != "-") printf "  %s %ss / %s: %.2f (goal >= 0.8: %s)\n", k, w, f, v, (v >= 0.8 ? "met" : "not met") }'
	done
	echo
	echo "== memory of the multi-database server (KiB, /proc/PID/smaps_rollup; open dbs = descriptors on *.sqlite)"
	printf '%-10s %-16s %10s %10s %9s\n' when process Rss Pss "open dbs"
	awk '{ printf "%-10s %-16s %10s %10s %9s\n", $1, $2, $3, $4, $5 }' "$T/mem.txt"
	for l in started one_open all_open after_runs; do
		printf '%-10s %-16s %10s %10s %9s\n' "$l" total "$(memsum "$l" 3)" "$(memsum "$l" 4)" "$(memsum "$l" 5)"
	done
	dbs1=$(memsum one_open 5)
	dbs2=$(memsum all_open 5)
	if [ "$dbs2" -gt "$dbs1" ]; then
		awk -v r1="$(memsum one_open 3)" -v r2="$(memsum all_open 3)" -v p1="$(memsum one_open 4)" \
		    -v p2="$(memsum all_open 4)" -v d1="$dbs1" -v d2="$dbs2" \
		    'BEGIN { n = d2 - d1; printf "per open database (one_open -> all_open, %d more database handles over all processes): Rss %.1f KiB, Pss %.1f KiB\n", n, (r2 - r1) / n, (p2 - p1) / n }'
		if [ "$dbs2" -lt $((WORKERS * DATABASES)) ]; then
			echo "(fewer handles open than workers x databases: the workers closed some again (max-open-databases), so the growth includes databases opened and closed since, and the figure above is not the cost of one open handle)"
		fi
	fi
	echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$T/report.txt"
mkdir -p "$OUT"
cp "$T/report.txt" "$OUT/last-run.txt"
cat "$T/report.txt"
log "report saved to $OUT/last-run.txt"
