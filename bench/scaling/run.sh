#!/usr/bin/env bash
# bench/scaling/run.sh: read and write throughput of denokv-fcgi with 1, 2
# and 4 workers through nginx, each next to nginx's own `return 200` and the
# trivial FastCGI responder measured in the same run. See README.md.
#
#   bench/scaling/run.sh                    # 5 s per wrk run, about 2 minutes
#   DURATION=10 bench/scaling/run.sh        # steadier figures
#   WORKER_COUNTS="1 2 4 8" bench/scaling/run.sh
#
# It runs bench/run.sh (unchanged) once per worker count with WORKERS=N and
# BANK=0, keeps each report in bench/scaling/out/workers-N.txt, and prints a
# table of the figures and ratios; the table also goes to
# bench/scaling/out/last-run.txt. bench/run.sh writes its own report to
# bench/out/last-run.txt; the copy that was there before is put back.
# Any other setting of bench/run.sh (CONNS, KEYS, SYNC, THREADS, DENOKV_BIN,
# DENOKV_ARGS ...) passes through the environment.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$HERE/out
WORKER_COUNTS=${WORKER_COUNTS:-"1 2 4"}
export DURATION=${DURATION:-5}
export BANK=${BANK:-0}
# bench/run.sh always runs the raw SQLite loop; one writer is enough here.
export SQLITE_WRITERS=${SQLITE_WRITERS:-1}

die() { printf '\nBENCHMARK FAILED: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

[ -x "$REPO/bench/run.sh" ] || die "$REPO/bench/run.sh not found"
for w in $WORKER_COUNTS; do
	[[ $w =~ ^[0-9]+$ && $w -gt 0 ]] || die "WORKER_COUNTS: '$w' is not a positive integer"
done
mkdir -p "$OUT"

# Keep bench/run.sh's last report.
PREV=$REPO/bench/out/last-run.txt
SAVED=
if [ -f "$PREV" ]; then
	SAVED=$(mktemp)
	cp "$PREV" "$SAVED"
fi
restore() {
	if [ -n "$SAVED" ]; then
		cp "$SAVED" "$PREV"
		rm -f "$SAVED"
	fi
}
trap restore EXIT

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for w in $WORKER_COUNTS; do
	log "bench/run.sh with WORKERS=$w (DURATION=$DURATION, BANK=$BANK)"
	WORKERS=$w "$REPO/bench/run.sh" >"$OUT/workers-$w.txt" 2>"$OUT/workers-$w.log" || {
		tail -n 30 "$OUT/workers-$w.log" >&2
		die "bench/run.sh failed with WORKERS=$w (log: $OUT/workers-$w.log)"
	}
	grep -q "server: .*, $w process(es)" "$OUT/workers-$w.txt" ||
		die "bench/run.sh did not run $w server processes: $(grep '^server:' "$OUT/workers-$w.txt")"
done

# col FILE NAME COLUMN: a column of the report's table (2 req/s, 3 p50, 4 p99).
col() { awk -v n="$2" -v c="$3" '$1 == n { print $c; exit }' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.3f", a / b; else printf "n/a" }'; }

report() {
	local w f first=${WORKER_COUNTS%% *} f1
	f1=$OUT/workers-$first.txt
	echo
	echo "denokv-fcgi scaling with workers, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	grep -E '^(host|server|wrk)[: ]' "$f1" | sed 's/, [0-9]* process(es)//'
	echo "per worker count: one bench/run.sh run (ref200 and trivial measured in that same run)"
	echo "load average at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews everything)"
	echo
	printf '%-8s %10s %10s %10s %10s %10s %9s %9s %9s\n' workers ref200 trivial read "write c64" \
		"write c32" "read p99" "write p99" "sqlite c1"
	for w in $WORKER_COUNTS; do
		f=$OUT/workers-$w.txt
		printf '%-8s %10s %10s %10s %10s %10s %9s %9s %9s\n' "$w" "$(col "$f" ref200 2)" \
			"$(col "$f" trivial 2)" "$(col "$f" read 2)" "$(col "$f" write 2)" \
			"$(col "$f" write_c32 2)" "$(col "$f" read 4)" "$(col "$f" write 4)" \
			"$(col "$f" sqlite_c1 2)"
	done
	echo "(req/s; p99 in ms; write c64/c32: wrk connections; sqlite c1: raw SQLite commits/s, one writer)"
	echo
	echo "ratios within each run:"
	printf '%-8s %14s %14s %14s %14s %16s\n' workers "trivial/ref200" "read/ref200" "read/trivial" "write/ref200" "write/sqlite_c1"
	for w in $WORKER_COUNTS; do
		f=$OUT/workers-$w.txt
		printf '%-8s %14s %14s %14s %14s %16s\n' "$w" \
			"$(ratio "$(col "$f" trivial 2)" "$(col "$f" ref200 2)")" \
			"$(ratio "$(col "$f" read 2)" "$(col "$f" ref200 2)")" \
			"$(ratio "$(col "$f" read 2)" "$(col "$f" trivial 2)")" \
			"$(ratio "$(col "$f" write 2)" "$(col "$f" ref200 2)")" \
			"$(ratio "$(col "$f" write 2)" "$(col "$f" sqlite_c1 2)")"
	done
	echo
	echo "scaling against $first worker(s) (same quantity, run N / run $first):"
	printf '%-8s %10s %10s %10s %10s %10s\n' workers ref200 trivial read "write c64" "write c32"
	for w in $WORKER_COUNTS; do
		f=$OUT/workers-$w.txt
		printf '%-8s %10s %10s %10s %10s %10s\n' "$w" \
			"$(ratio "$(col "$f" ref200 2)" "$(col "$f1" ref200 2)")" \
			"$(ratio "$(col "$f" trivial 2)" "$(col "$f1" trivial 2)")" \
			"$(ratio "$(col "$f" read 2)" "$(col "$f1" read 2)")" \
			"$(ratio "$(col "$f" write 2)" "$(col "$f1" write 2)")" \
			"$(ratio "$(col "$f" write_c32 2)" "$(col "$f1" write_c32 2)")"
	done
	echo "(ref200 should stay near 1.0: it shows how much the machine itself varied between runs)"
	echo "machine: $(nproc) CPUs shared by wrk, nginx and the server"
}
report | tee "$OUT/last-run.txt"
log "reports: $OUT/workers-*.txt; table: $OUT/last-run.txt"
