#!/usr/bin/env bash
# test.sh: sets up a fresh Debian machine, then runs every test: the C unit
# tests and the end-to-end suites (real nginx, caddy, the real binary and
# the real Deno CLI) on a normal build and on an AddressSanitizer +
# UndefinedBehaviorSanitizer build (which also compiles in the test-only
# faults that prove the end-to-end tests notice a crash or a leak), then
# `make distcheck`. Ends with the line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
src=$PWD
scripts/setup-deps.sh || exit 1

passed=0 failed=0
# Adds up automake's per-test-point summary of one `make check`.
count() {
	local log=$1 p f e x
	p=$(sed -n 's/^# PASS: *//p' "$log" | tail -1)
	f=$(sed -n 's/^# FAIL: *//p' "$log" | tail -1)
	e=$(sed -n 's/^# ERROR: *//p' "$log" | tail -1)
	x=$(sed -n 's/^# XPASS: *//p' "$log" | tail -1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0} + ${e:-0} + ${x:-0}))
	# A run that never printed a summary failed as a whole.
	[ -n "$p" ] || failed=$((failed + 1))
}

run_suite() {
	local name=$1 dir=$2 log
	shift 2
	log=$(mktemp)
	echo "== $name" >&2
	if ! scripts/build.sh "$dir" "$@" >&2; then
		echo "build failed: $name" >&2
		failed=$((failed + 1))
		return
	fi
	make -C "$dir" check 2>&1 | tee "$log" | grep -E '^(PASS|FAIL|ERROR|XPASS|SKIP|# )' >&2
	count "$log"
	for f in $(find "$dir/tests" -name '*.log' 2>/dev/null); do
		grep -q '^not ok' "$f" && { echo "--- $f" >&2; grep -B2 -A8 '^not ok' "$f" | head -60 >&2; }
	done
	rm -f "$log"
}

run_suite "build" "$src/build"
run_suite "build with ASan + UBSan" "$src/build-asan" --enable-sanitizers --enable-test-faults

echo "== make distcheck" >&2
if (cd "$src/build" && make -s distcheck >/tmp/distcheck.log 2>&1); then
	passed=$((passed + 1))
	echo "PASS: make distcheck" >&2
else
	failed=$((failed + 1))
	echo "FAIL: make distcheck (see /tmp/distcheck.log)" >&2
	tail -30 /tmp/distcheck.log >&2
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
