#!/usr/bin/env bash
# bench/metrics/run.sh WITHOUT_BIN WITH_BIN [ROUNDS]: the cost of the
# metrics counters on reads. Runs bench/run.sh (no bank benchmark) with each
# binary in turn, ROUNDS times (default 2), and prints the point-read rate
# next to the FastCGI ceiling measured in the same run: compare the
# "read / trivial" ratios, not the raw rates, which drift with the load
# others put on the machine.
#
# WITHOUT_BIN is a build from before the counters (for example the commit
# before "Health and metrics endpoints" built into /tmp:
#   git archive <commit> | tar x -C /tmp/old && cd /tmp/old &&
#   ./autogen.sh && ./configure --disable-e2e && make).
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 2 ] || { sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }
for round in $(seq 1 "${3:-2}"); do
	for v in "without:$1" "with:$2"; do
		echo "=== round $round, ${v%%:*} counters"
		BANK=0 DURATION=${DURATION:-6} SQLITE_WRITERS=1 DENOKV_BIN=${v#*:} \
			"$SRC/bench/run.sh" 2>/dev/null | grep -E '^ *(trivial|read) |read / trivial'
	done
done
