#!/usr/bin/env bash
# bench/perf/run.sh: the Deno CLI's own KV client against Deno's local KV
# (a file, and memory), against denokv-fcgi through nginx over h2c (at its
# defaults, and with its previous request model), and against the trivial
# FastCGI responder through the same nginx, all in one run with the targets
# alternated. Prints rates, p50/p99 and ratios to Deno's local file. See
# bench/README.md ("perf"). Run by hand, not in CI:
#
#   bench/perf/run.sh                 # about 8 minutes
#   QUICK=1 bench/perf/run.sh         # about 2-3 minutes, one round
#   SECTIONS="bank ops" bench/perf/run.sh
#
# Sections: ops (get, set, sum, list at 1, 16, 64 concurrent), bank (128
# readers, 32 writers; CPU per process of server, nginx and client), scaling
# (workers 1, 2, 4), idle (cost of idle watches and parked queue polls).
# Everything runs in a fresh temporary directory on 127.0.0.1 (free ports,
# own nginx configuration) and is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
OUT=$HERE/out

# ---- settings (environment) -------------------------------------------------
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	: "${DURATION:=0.8}" "${WARMUP:=0.2}" "${ROUNDS:=1}" "${BANK_DURATION:=3}"
fi
DURATION=${DURATION:-2}             # seconds per measured cell
WARMUP=${WARMUP:-0.3}               # seconds of unmeasured load before each cell
ROUNDS=${ROUNDS:-2}                 # rounds; each reports the median
BANK_DURATION=${BANK_DURATION:-5}
BANK_READERS=${BANK_READERS:-128}
BANK_WRITERS=${BANK_WRITERS:-32}
BANK_ACCOUNTS=${BANK_ACCOUNTS:-1000}
SECTIONS=${SECTIONS:-"ops bank scaling idle"}
TARGETS=${TARGETS:-"deno_file deno_mem server prev trivial"}
OPS=${OPS:-"get set sum list"}
CONCS=${CONCS:-"1 16 64"}
KEYS=${KEYS:-1000}                  # ["perf", "k", n]
LIST=${LIST:-100}                   # entries per list
WORKERS=${WORKERS:-2}               # server workers (and trivial processes)
SYNC=${SYNC:-full}                  # --sqlite-synchronous
SCALE_WORKERS=${SCALE_WORKERS:-"1 2 4"}
SCALE_OPS=${SCALE_OPS:-"get set"}   # at 64 concurrent
IDLE_WATCHES=${IDLE_WATCHES:-500}
IDLE_POLLS=${IDLE_POLLS:-100}
IDLE_OPS=${IDLE_OPS:-"get set"}     # at 64 concurrent
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-32}  # idle kept connections per nginx worker (multiplexed model)
KEEP_TMP=${KEEP_TMP:-auto}
if [ -z "${DENOKV_BIN:-}" ]; then
	DENOKV_BIN=$REPO/build/src/denokv-fcgi
	[ -x "$DENOKV_BIN" ] || DENOKV_BIN=$REPO/src/denokv-fcgi
fi
PREV_BIN=${PREV_BIN:-}              # another build to run as "prev"
DENO=${DENO:-$REPO/node_modules/.bin/deno}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
FASTCGI_PARAMS=${FASTCGI_PARAMS:-/etc/nginx/fastcgi_params}
CC=${CC:-cc}

export DENO_NO_UPDATE_CHECK=1 NO_COLOR=1

for v in ROUNDS BANK_READERS BANK_WRITERS BANK_ACCOUNTS KEYS LIST WORKERS \
    IDLE_WATCHES IDLE_POLLS NGINX_KEEPALIVE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer"
done
for v in DURATION WARMUP BANK_DURATION; do
	[[ ${!v} =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$v must be a number of seconds"
done
case $SYNC in full | normal | off) ;; *) die "SYNC must be full, normal or off" ;; esac
need "$NGINX" "apt-get install nginx"
need curl "apt-get install curl"
need pgrep "apt-get install procps"
need "$CC" "apt-get install gcc"
[ -x "$DENO" ] || die "no Deno CLI at $DENO: run 'npm install' at the repository root, or set DENO"
[ -x "$DENOKV_BIN" ] || die "$DENOKV_BIN not built (scripts/build.sh build), or set DENOKV_BIN"
[ -z "$PREV_BIN" ] || [ -x "$PREV_BIN" ] || die "PREV_BIN=$PREV_BIN is not executable"
[ -r "$FASTCGI_PARAMS" ] || die "$FASTCGI_PARAMS missing (set FASTCGI_PARAMS)"

# ---- what this build offers ------------------------------------------------------
HELP=$("$DENOKV_BIN" --help 2>&1 || true)
HAS_MODEL=0
if grep -q -- '--request-model' <<<"$HELP" && grep -q 'one-per-connection' <<<"$HELP"; then
	HAS_MODEL=1
fi
ROOT_ARGS=()
[ "$(id -u)" = 0 ] && ROOT_ARGS=(--allow-root)

# The targets: deno_file, deno_mem (Deno.openKv in the client), server (the
# build at its defaults), prev (the previous request model), trivial.
declare -A NOTE
PREV_ARGS=()
if [ -n "$PREV_BIN" ]; then
	NOTE[prev]="prev: $PREV_BIN (PREV_BIN)"
elif [ $HAS_MODEL = 1 ]; then
	PREV_ARGS=(--request-model one-per-connection)
	NOTE[prev]="prev: this build with --request-model one-per-connection, nginx without keepalive"
else
	NOTE[prev]="prev: not supported by this build (denokv-fcgi --help lists no --request-model one-per-connection); its only model, one connection per request, is the 'server' column (set PREV_BIN to compare with another build)"
fi
if [ $HAS_MODEL = 1 ]; then
	NOTE[server]="server: this build at its defaults, nginx keeping up to $NGINX_KEEPALIVE FastCGI connections per worker (fastcgi_keep_conn on)"
else
	NOTE[server]="server: this build at its defaults (one connection per request), nginx without keepalive"
fi

want_target() { [[ " $TARGETS " == *" $1 "* ]]; }
want_section() { [[ " $SECTIONS " == *" $1 "* ]]; }
if want_target prev && [ -z "$PREV_BIN" ] && [ $HAS_MODEL = 0 ]; then
	TARGETS=$(tr ' ' '\n' <<<"$TARGETS" | grep -vx prev | tr '\n' ' ')
fi

# ---- temp dir, processes, cleanup -------------------------------------------
T=$(mktemp -d "${TMPDIR:-/tmp}/denokv-perf.XXXXXX")
cleanup_first() { [ -n "${IDLE_PID:-}" ] && stop_pids "$IDLE_PID"; }
bench_traps

# shellcheck source=scripts/ports.sh
. "$REPO/scripts/ports.sh"

# ---- build the trivial responder ------------------------------------------------
mkdir -p "$OUT"
$CC -O2 -Wall -Wextra -o "$OUT/fcgi_trivial" "$REPO/bench/fcgi_trivial.c" -lfcgi ||
	die "building fcgi_trivial failed (apt-get install libfcgi-dev)"

# ---- servers ------------------------------------------------------------------------
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export DENO_KV_ACCESS_TOKEN=$TOKEN # read by the servers and the Deno clients
declare -A MOUNT_KEEPALIVE          # mount -> 1 if nginx keeps its connections

start_server() { # mount workers bin [extra args...]
	local m=$1 w=$2 bin=$3
	shift 3
	start "$m" "$T/$m.log" "$bin" --sqlite-path "$T/$m.sqlite" serve \
	    --listen "unix:$T/$m.sock" --workers "$w" --sqlite-synchronous "$SYNC" \
	    "${ROOT_ARGS[@]}" "$@"
	wait_socket "$T/$m.sock" "${PID[$m]}" "denokv-fcgi ($m)"
}

MOUNTS=()
log "temp dir $T; server $DENOKV_BIN"
start_server s "$WORKERS" "$DENOKV_BIN"
MOUNTS+=(s)
MOUNT_KEEPALIVE[s]=$HAS_MODEL
if want_target prev; then
	if [ -n "$PREV_BIN" ]; then
		start_server p "$WORKERS" "$PREV_BIN"
	else
		start_server p "$WORKERS" "$DENOKV_BIN" "${PREV_ARGS[@]}"
	fi
	MOUNTS+=(p)
	MOUNT_KEEPALIVE[p]=0
fi
declare -A SCALE_MOUNT
if want_section scaling; then
	for w in $SCALE_WORKERS; do
		[[ $w =~ ^[0-9]+$ && $w -gt 0 ]] || die "SCALE_WORKERS: '$w' is not a positive integer"
		if [ "$w" = "$WORKERS" ]; then
			SCALE_MOUNT[$w]=s
		else
			start_server "w$w" "$w" "$DENOKV_BIN"
			MOUNTS+=("w$w")
			MOUNT_KEEPALIVE[w$w]=$HAS_MODEL
			SCALE_MOUNT[$w]=w$w
		fi
	done
fi
start trivial "$T/trivial.log" "$OUT/fcgi_trivial" -k -s "$T/t.sock" -n "$WORKERS"
wait_socket "$T/t.sock" "${PID[trivial]}" fcgi_trivial
MOUNT_KEEPALIVE[t]=0

# ---- nginx --------------------------------------------------------------------------
# The repository's snippet as deployed, without its fastcgi_keep_conn line:
# each location below says whether nginx keeps connections.
grep -v '^[[:space:]]*fastcgi_keep_conn' "$REPO/nginx/denokv-fcgi.conf" >"$T/denokv-fcgi.conf"
cp "$FASTCGI_PARAMS" "$T/fastcgi_params"
nginx_prepare

write_nginx_conf() {
	local m
	{
		nginx_conf_head bench/perf/run.sh
		cat <<EOF
    # The Deno client puts everything on one connection: ~160 calls in
    # flight, plus the idle watches.
    http2_max_concurrent_streams $((IDLE_WATCHES + 512));
EOF
		for m in "${MOUNTS[@]}" t; do
			if [ "${MOUNT_KEEPALIVE[$m]}" = 1 ]; then
				printf '    upstream up_%s { server unix:%s; keepalive %s; keepalive_requests 100000; }\n' \
				    "$m" "$T/$m.sock" "$NGINX_KEEPALIVE"
			fi
		done
		cat <<EOF
    server {
        listen 127.0.0.1:$H1_PORT;
        listen 127.0.0.1:$H2_PORT http2;
        server_name localhost;
EOF
		for m in "${MOUNTS[@]}" t; do
			if [ "${MOUNT_KEEPALIVE[$m]}" = 1 ]; then
				printf '        location /%s/ { include denokv-fcgi.conf; fastcgi_keep_conn on; fastcgi_pass up_%s; }\n' "$m" "$m"
			else
				printf '        location /%s/ { include denokv-fcgi.conf; fastcgi_pass unix:%s; }\n' "$m" "$T/$m.sock"
			fi
		done
		echo "    }"
		echo "}"
	} >"$T/nginx.conf"
}

LOGS+=("$T/nginx-error.log")
for attempt in $(seq 1 "$PORT_TRIES"); do
	H1_PORT=$(pick_port) && H2_PORT=$(pick_port "$H1_PORT") || die "no free TCP port on 127.0.0.1"
	write_nginx_conf
	"$NGINX" -t -q -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf" 2>"$T/nginx-t.log" ||
		{ cat "$T/nginx-t.log" >&2; die "nginx rejected the generated config ($T/nginx.conf)"; }
	: >"$T/nginx-error.log"
	start nginx "$T/nginx-stderr.log" "$NGINX" -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf"
	ok=0
	for _ in $(seq 1 100); do
		alive "${PID[nginx]}" || break
		if port_listening_by "$H1_PORT" "${PID[nginx]}" && port_listening_by "$H2_PORT" "${PID[nginx]}"; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[ $ok = 1 ] && break
	port_bind_failed "$T/nginx-error.log" "$T/nginx-stderr.log" && [ "$attempt" != "$PORT_TRIES" ] ||
		die "nginx did not start; see $T/nginx-error.log"
	stop_pids "${PID[nginx]}"
done
log "nginx on 127.0.0.1:$H1_PORT (HTTP/1.1) and :$H2_PORT (h2c)"

# Every mount answers the metadata exchange before anything is measured.
for m in "${MOUNTS[@]}" t; do
	code=000
	for _ in $(seq 1 100); do
		code=$(curl -sS -m 5 -o "$T/meta-$m.json" -w '%{http_code}' -X POST \
		    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
		    --data '{"supportedVersions":[1,2,3]}' "http://127.0.0.1:$H1_PORT/$m/" 2>/dev/null) || true
		[ "$code" = 200 ] && break
		sleep 0.1
	done
	[ "$code" = 200 ] || die "metadata exchange at /$m/ answered $code: $(head -c 300 "$T/meta-$m.json")"
done

url_of() { # target or mount -> what Deno.openKv takes
	case $1 in
	deno_file) echo "$T/deno-file.sqlite" ;;
	deno_mem) echo ":memory:" ;;
	server) echo "http://127.0.0.1:$H2_PORT/s/" ;;
	prev) echo "http://127.0.0.1:$H2_PORT/p/" ;;
	trivial) echo "http://127.0.0.1:$H2_PORT/t/" ;;
	*) echo "http://127.0.0.1:$H2_PORT/$1/" ;;
	esac
}
verify_of() { [ "$1" = trivial ] && echo 0 || echo 1; }

# rotate N words...: the words rotated left by N (alternates who goes first).
rotate() {
	local n=$1
	shift
	local a=("$@") i
	for i in $(seq 0 $((${#a[@]} - 1))); do
		printf '%s ' "${a[$(((i + n) % ${#a[@]}))]}"
	done
}


DENO_RUN=("$DENO" run --quiet --no-prompt --unstable-kv)
OPS_PERMS=(--allow-net=127.0.0.1 --allow-env=DENO_KV_ACCESS_TOKEN "--allow-read=$T" "--allow-write=$T")
declare -A R  # R[key|round] = "ops_per_s p50_us p99_us"

# run_ops KEY_PREFIX TARGET ROUND OPS CONCS: one ops.ts process; stores
# R[KEY_PREFIX|op|conc|round].
run_ops() {
	local key=$1 target=$2 round=$3 ops=$4 concs=$5 out line
	out=$T/ops-${key}-$round-${ops//,/_}.txt
	log "ops $key: $ops at $concs (round $round)"
	timeout 600 "${DENO_RUN[@]}" "${OPS_PERMS[@]}" "$HERE/ops.ts" --url "$(url_of "$target")" \
	    --ops "$ops" --conc "$concs" --duration "$DURATION" --warmup "$WARMUP" \
	    --keys "$KEYS" --list "$LIST" --verify "$(verify_of "$target")" >"$out" 2>&1 ||
		{ tail -n 20 "$out" >&2; die "ops.ts against $key failed (output: $out)"; }
	while read -r line; do
		R[$key|$(field op "$line")|$(field conc "$line")|$round]="$(field ops_per_s "$line") $(field p50_us "$line") $(field p99_us "$line")"
	done < <(grep '^RESULT ' "$out")
}

# ---- report helpers --------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else printf "-" }'; }

REPORT=$T/report.txt
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
{
	echo "denokv-fcgi perf benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "host: $(uname -sr), $(nproc) CPUs; $("$NGINX" -v 2>&1 | sed 's/.*: //'); $("$DENO" --version | head -n1)"
	echo "server: $DENOKV_BIN ($(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')), $WORKERS workers, synchronous=$SYNC"
	echo "load at start: $(uptime | sed 's/.*load average/load average/')"
	echo "cells: ${DURATION}s measured after ${WARMUP}s warm-up, $ROUNDS round(s) (median), targets alternated; $KEYS keys, list of $LIST"
	for t in server prev; do echo "${NOTE[$t]}"; done
	echo "trivial: bench/fcgi_trivial.c -k (no storage), $WORKERS processes, nginx without keepalive"
} >"$REPORT"

# ---- ops --------------------------------------------------------------------------
read -r -a TLIST <<<"$TARGETS"
if want_section ops; then
	concs=$(tr ' ' ',' <<<"$CONCS" | sed 's/,$//')
	for r in $(seq 1 "$ROUNDS"); do
		i=0
		for op in $OPS; do
			for t in $(rotate $((r + i)) "${TLIST[@]}"); do
				run_ops "$t" "$t" "$r" "$op" "$concs"
			done
			i=$((i + 1))
		done
	done
	{
		echo
		echo "== per-operation rates: Deno KV API calls/s (median of rounds)"
		printf '%-5s %5s' op conc
		for t in "${TLIST[@]}"; do printf ' %12s' "$t"; done
		echo
		for op in $OPS; do for c in $CONCS; do
			printf '%-5s %5s' "$op" "$c"
			for t in "${TLIST[@]}"; do printf ' %12s' "$(rate "$(med "$t|$op|$c" 1)")"; done
			echo
		done; done
		echo
		echo "== ratio to deno_file (calls/s)"
		printf '%-5s %5s' op conc
		for t in "${TLIST[@]}"; do printf ' %12s' "$t"; done
		echo
		for op in $OPS; do for c in $CONCS; do
			printf '%-5s %5s' "$op" "$c"
			for t in "${TLIST[@]}"; do
				printf ' %12s' "$(ratio "$(med "$t|$op|$c" 1)" "$(med "deno_file|$op|$c" 1)")"
			done
			echo
		done; done
		echo
		echo "== latency p50/p99, ms"
		printf '%-5s %5s' op conc
		for t in "${TLIST[@]}"; do printf ' %12s' "$t"; done
		echo
		for op in $OPS; do for c in $CONCS; do
			printf '%-5s %5s' "$op" "$c"
			for t in "${TLIST[@]}"; do
				printf ' %12s' "$(lat "$(med "$t|$op|$c" 2)" "$(med "$t|$op|$c" 3)")"
			done
			echo
		done; done
	} >>"$REPORT"
fi

# ---- bank ---------------------------------------------------------------------------
# cpu_groups TARGET: bank.ts --cpu argument, one group per process:
# role:pid, roles server (master, then its children), nginx, trivial.
cpu_groups() {
	local t=$1 m='' p groups=()
	case $t in
	server) m=s ;;
	prev) m=p ;;
	trivial) m=trivial ;;
	*) return 0 ;;
	esac
	local role=server
	[ "$t" = trivial ] && role=trivial
	groups+=("$role-master:${PID[$m]}=${PID[$m]}")
	for p in $(pgrep -P "${PID[$m]}" | sort -n); do groups+=("$role-child:$p=$p"); done
	groups+=("nginx-master:${PID[nginx]}=${PID[nginx]}")
	for p in $(pgrep -P "${PID[nginx]}" | sort -n); do groups+=("nginx-worker:$p=$p"); done
	echo "${groups[*]}"
}

declare -A CPU
if want_section bank; then
	for r in $(seq 1 "$ROUNDS"); do
		for t in $(rotate "$r" "${TLIST[@]}"); do
			out=$T/bank-$t-$r.txt
			log "bank $t: $BANK_READERS readers, $BANK_WRITERS writers, ${BANK_DURATION}s (round $r)"
			timeout $((${BANK_DURATION%.*} + 180)) "${DENO_RUN[@]}" -A "$REPO/bench/bank.ts" \
			    --url "$(url_of "$t")" --accounts "$BANK_ACCOUNTS" --readers "$BANK_READERS" \
			    --writers "$BANK_WRITERS" --duration "$BANK_DURATION" --verify "$(verify_of "$t")" \
			    --cpu "$(cpu_groups "$t")" >"$out" 2>&1 ||
				{ tail -n 20 "$out" | cut -c1-300 >&2; die "bank against $t failed (output: $out)"; }
			line=$(grep '^RESULT name=bank' "$out")
			case $(field consistency "$line") in ok | skipped) ;; *) die "bank against $t: consistency check failed" ;; esac
			R[bank_reads|$t|$r]="$(field reads_per_s "$line") $(field read_p50_us "$line") $(field read_p99_us "$line")"
			R[bank_transfers|$t|$r]="$(field transfers_per_s "$line") $(field write_p50_us "$line") $(field write_p99_us "$line")"
			R[bank_conflicts|$t|$r]="$(field conflicts "$line") 0 0"
			# CPU of the last round only (one sample per process).
			CPU[$t]=$(grep '^RESULT_CPU ' "$out" || true)
		done
	done
	{
		echo
		echo "== bank: $BANK_READERS readers (kv.get), $BANK_WRITERS writers (getMany + checked atomic), $BANK_ACCOUNTS accounts, ${BANK_DURATION}s"
		printf '%-10s %10s %7s %14s %11s %7s %14s %10s\n' target "reads/s" ratio "read p50/p99" "transfers/s" ratio "xfer p50/p99" conflicts
		for t in "${TLIST[@]}"; do
			printf '%-10s %10s %7s %14s %11s %7s %14s %10s\n' "$t" \
			    "$(rate "$(med "bank_reads|$t" 1)")" \
			    "$(ratio "$(med "bank_reads|$t" 1)" "$(med "bank_reads|deno_file" 1)")" \
			    "$(lat "$(med "bank_reads|$t" 2)" "$(med "bank_reads|$t" 3)")" \
			    "$(rate "$(med "bank_transfers|$t" 1)")" \
			    "$(ratio "$(med "bank_transfers|$t" 1)" "$(med "bank_transfers|deno_file" 1)")" \
			    "$(lat "$(med "bank_transfers|$t" 2)" "$(med "bank_transfers|$t" 3)")" \
			    "$(rate "$(med "bank_conflicts|$t" 1)")"
		done
		echo "(ratio: to deno_file; transfers count committed ones only; trivial stores nothing, so its reads and transfers are the transport ceiling)"
		echo
		echo "== CPU during the bank run (last round), cores: user + sys = total"
		for t in "${TLIST[@]}"; do
			[ -n "${CPU[$t]:-}" ] || continue
			printf '%s:\n' "$t"
			while read -r line; do
				printf '    %-26s %5s + %5s = %5s\n' "$(field name "$line")" "$(field user "$line")" \
				    "$(field sys "$line")" "$(field total "$line")"
			done <<<"${CPU[$t]}"
			awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			       split(v["name"], nm, /[-:]/); g = nm[1]
			       if (g != "client") { u[g] += v["user"]; s[g] += v["sys"] } }
			     END { for (g in u) printf "    %-26s %5.2f + %5.2f = %5.2f\n", "all " g, u[g], s[g], u[g] + s[g] }' \
			    <<<"${CPU[$t]}" | sort
		done
	} >>"$REPORT"
fi

# ---- scaling with workers ----------------------------------------------------------
if want_section scaling; then
	read -r -a WLIST <<<"$SCALE_WORKERS"
	sops=$(tr ' ' ',' <<<"$SCALE_OPS" | sed 's/,$//')
	for r in $(seq 1 "$ROUNDS"); do
		for w in $(rotate "$r" "${WLIST[@]}"); do
			run_ops "workers$w" "${SCALE_MOUNT[$w]}" "$r" "$sops" 64
		done
	done
	first=${WLIST[0]}
	{
		echo
		echo "== scaling with workers (this build at its defaults otherwise), 64 concurrent, calls/s; p50/p99 ms; ratio to $first worker(s)"
		printf '%-8s' workers
		for op in $SCALE_OPS; do printf ' %10s %12s %6s' "$op/s" "p50/p99" ratio; done
		echo
		for w in "${WLIST[@]}"; do
			printf '%-8s' "$w"
			for op in $SCALE_OPS; do
				printf ' %10s %12s %6s' "$(rate "$(med "workers$w|$op|64" 1)")" \
				    "$(lat "$(med "workers$w|$op|64" 2)" "$(med "workers$w|$op|64" 3)")" \
				    "$(ratio "$(med "workers$w|$op|64" 1)" "$(med "workers$first|$op|64" 1)")"
			done
			echo
		done
	} >>"$REPORT"
fi

# ---- idle watches and parked queue polls ------------------------------------------------
# idle_start WATCHES POLLS: starts idle.ts against the server, waits until
# it holds everything; sets IDLE_PID, or returns 4 if unsupported.
idle_start() {
	local out=$T/idle-$1-$2.txt _
	: >"$out"
	"${DENO_RUN[@]}" --allow-net=127.0.0.1 --allow-env=DENO_KV_ACCESS_TOKEN "$HERE/idle.ts" \
	    --url "$(url_of server)" --h1-url "http://127.0.0.1:$H1_PORT/s/" \
	    --watches "$1" --polls "$2" >"$out" 2>&1 &
	IDLE_PID=$!
	for _ in $(seq 1 1200); do
		grep -q '^READY' "$out" && return 0
		if grep -q '^UNSUPPORTED' "$out"; then
			wait "$IDLE_PID" 2>/dev/null || true
			IDLE_PID=
			return 4
		fi
		alive "$IDLE_PID" || { cat "$out" >&2; die "idle.ts exited (watches $1, polls $2)"; }
		sleep 0.1
	done
	die "idle.ts not ready after 120 s (watches $1, polls $2)"
}
idle_stop() {
	[ -n "${IDLE_PID:-}" ] || return 0
	kill -TERM "$IDLE_PID" 2>/dev/null || true
	wait "$IDLE_PID" 2>/dev/null || true
	IDLE_PID=
	sleep 1 # the server closes the streams
}

if want_section idle; then
	iops=$(tr ' ' ',' <<<"$IDLE_OPS" | sed 's/,$//')
	STATES=(none)
	[ "$IDLE_WATCHES" -gt 0 ] && STATES+=(watches)
	[ "$IDLE_POLLS" -gt 0 ] && STATES+=(polls)
	declare -A IDLE_NOTE
	for r in $(seq 1 "$ROUNDS"); do
		for st in $(rotate "$r" "${STATES[@]}"); do
			[ -n "${IDLE_NOTE[$st]:-}" ] && continue
			rc=0
			case $st in
			watches) idle_start "$IDLE_WATCHES" 0 || rc=$? ;;
			polls) idle_start 0 "$IDLE_POLLS" || rc=$? ;;
			esac
			if [ $rc = 4 ]; then
				IDLE_NOTE[$st]="not supported by this build: $(grep '^UNSUPPORTED' "$T"/idle-*.txt | head -n1 | sed 's/.*UNSUPPORTED //')"
				continue
			fi
			run_ops "idle_$st" server "$r" "$iops" 64
			idle_stop
		done
	done
	{
		echo
		echo "== cost of idle load on the server (at its defaults), 64 concurrent, calls/s; p50/p99 ms; ratio to none"
		printf '%-22s' "held open"
		for op in $IDLE_OPS; do printf ' %10s %12s %6s' "$op/s" "p50/p99" ratio; done
		echo
		for st in "${STATES[@]}"; do
			case $st in
			none) label="nothing" ;;
			watches) label="$IDLE_WATCHES idle watches" ;;
			polls) label="$IDLE_POLLS parked polls" ;;
			esac
			printf '%-22s' "$label"
			if [ -n "${IDLE_NOTE[$st]:-}" ]; then
				echo " ${IDLE_NOTE[$st]}"
				continue
			fi
			for op in $IDLE_OPS; do
				printf ' %10s %12s %6s' "$(rate "$(med "idle_$st|$op|64" 1)")" \
				    "$(lat "$(med "idle_$st|$op|64" 2)" "$(med "idle_$st|$op|64" 3)")" \
				    "$(ratio "$(med "idle_$st|$op|64" 1)" "$(med "idle_none|$op|64" 1)")"
			done
			echo
		done
	} >>"$REPORT"
fi

for m in "${MOUNTS[@]}"; do
	alive "${PID[$m]}" || die "denokv-fcgi ($m) is gone at the end of the run; see $T/$m.log"
done

# The servers' own counters over the whole run (`denokv-fcgi status`):
# requests, commits and, where the build groups commits, write batches.
{
	echo
	echo "== denokv-fcgi status at the end (counters over the whole run)"
	for m in s p; do
		[ -n "${PID[$m]:-}" ] || continue
		bin=$DENOKV_BIN
		[ "$m" = p ] && [ -n "$PREV_BIN" ] && bin=$PREV_BIN
		st=$("$bin" --listen "unix:$T/$m.sock" status 2>&1) || st="status failed: $st"
		printf '%-7s %s\n' "$([ "$m" = s ] && echo server || echo prev):" \
		    "$(grep -E '^(requests|commits|write batches):' <<<"$st" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
		grep -q '^write batches:' <<<"$st" || echo "        (no write batch figures: this build does not group commits or does not report them)"
	done
} >>"$REPORT"
# ---- goals (issue: bank >= 1.0x, set c64 >= 1.0x, get c64 >= 0.5x the local file) ----
goal() { # what value target
	local v=$2
	[ "$v" = - ] && return 0
	awk -v w="$1" -v v="$v" -v g="$3" 'BEGIN { printf "  %-34s %6.2f  (goal >= %s: %s)\n", w, v, g, (v >= g ? "met" : "not met") }'
}
{
	echo
	echo "== goals, server / deno_file"
	goal "bank reads" "$(ratio "$(med "bank_reads|server" 1)" "$(med "bank_reads|deno_file" 1)")" 1.0
	goal "bank transfers" "$(ratio "$(med "bank_transfers|server" 1)" "$(med "bank_transfers|deno_file" 1)")" 1.0
	goal "set, 64 concurrent" "$(ratio "$(med "server|set|64" 1)" "$(med "deno_file|set|64" 1)")" 1.0
	goal "get, 64 concurrent" "$(ratio "$(med "server|get|64" 1)" "$(med "deno_file|get|64" 1)")" 0.5
	echo
	echo "load at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
} >>"$REPORT"

cp "$REPORT" "$OUT/last-run.txt"
cat "$REPORT"
log "report saved to $OUT/last-run.txt"
