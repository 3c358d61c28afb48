#!/usr/bin/env bash
# test.sh: sets up a fresh Debian machine, then runs every test: the C unit
# tests and the end-to-end suites (real nginx, caddy, the real binary and
# the real Deno CLI) on a normal build and on an AddressSanitizer +
# UndefinedBehaviorSanitizer build (which also compiles in the test-only
# faults that prove the end-to-end tests notice a crash or a leak), then
# `make distcheck` and the Debian package test (tests/deb/run.sh).
#
# Prints every failure in full and, per build, one line of counts per
# suite; the TAP logs stay in each build directory (tests/*/*.log) and the
# rest of the run's logs in LOG_DIR (default: test-logs/ in this tree).
# Ends with the line "N passed, N failed, N skipped"; exits non-zero if
# anything failed or if a suite that should have run did not (each unit
# test program, systemd_units, and every end-to-end suite tests/e2e/run.sh
# lists must report at least one passed test point).
#
# Environment:
#   LOG_DIR   where this run's logs go (default: test-logs/ in this tree)
#   TMPDIR    where this run makes its own temporary directory (default /tmp)
#   DEB=0     leave out the Debian package test (it needs root and apt)
set -uo pipefail
cd "$(dirname "$0")/.."
src=$PWD
scripts/setup-deps.sh || exit 1

LOG_DIR=${LOG_DIR:-$src/test-logs}
mkdir -p "$LOG_DIR"
passed=0 failed=0 skipped=0

# Every temporary directory of this run (the suites', distcheck's, the
# package build's) inside one of its own: nothing of another run, or a
# cleaner of /tmp/denokv-*, can meet it. Traversable (not listable) by the
# service users the suites drop to; removed at the end unless a test failed.
RUN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dkv-test.XXXXXX") || exit 1
chmod 0711 "$RUN_TMP"
export TMPDIR=$RUN_TMP

# expected_suites DIR: the suites a `make check` in DIR must report: every
# program in TESTS, and every end-to-end suite whether or not the build was
# configured with them.
expected_suites() {
	local t
	for t in $(printf 'print-tests:\n\t@echo $(TESTS)\n' |
		make -s --no-print-directory -C "$1" -f Makefile -f - print-tests); do
		t=${t##*/}
		[ "$t" = run.sh ] || echo "${t%.sh}"
	done
	echo e2e/setup e2e/teardown
	for t in $(sed -n 's/^ALL_SUITES="\(.*\)"$/\1/p' "$src/tests/e2e/run.sh"); do
		echo "e2e/$t"
	done
}

# tally NAME DIR: summarize the TAP logs of DIR's last `make check`, add
# them up, and fail each expected suite that reported no passed test point.
tally() {
	local name=$1 dir=$2 counts=$LOG_DIR/$1.counts s p f k logs
	logs=$(find "$dir/tests" -name '*.log' ! -name test-suite.log 2>/dev/null | sort)
	: >"$counts"
	# shellcheck disable=SC2086
	[ -n "$logs" ] && awk -v counts="$counts" -f "$src/scripts/tap-summary.awk" $logs >&2
	while read -r s p f k; do
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + k))
	done <"$counts"
	for s in $(expected_suites "$dir"); do
		if ! awk -v s="$s" '$1 == s && $2 > 0 { found = 1 } END { exit !found }' "$counts"; then
			echo "not ok - $name: suite $s did not run (no passed test point)" >&2
			failed=$((failed + 1))
		fi
	done
}

# run_build NAME DIR [configure options]: build, `make check`, tally.
run_build() {
	local name=$1 dir=$2 log=$LOG_DIR/$1.check.log
	shift 2
	echo "== $name" >&2
	if ! scripts/build.sh "$dir" "$@" >&2; then
		echo "not ok - $name: build failed" >&2
		failed=$((failed + 1))
		return
	fi
	# Logs of an earlier run (a suite since disabled) must not count.
	find "$dir/tests" \( -name '*.log' -o -name '*.trs' \) -delete 2>/dev/null
	make -C "$dir" check >"$log" 2>&1
	tally "$name" "$dir"
}

# The e2e switch is given each time: a build directory reused from a
# --disable-e2e configure runs them again instead of quietly not.
run_build build "$src/build" --enable-e2e
run_build build-asan "$src/build-asan" --enable-sanitizers --enable-test-faults \
	--enable-e2e

echo "== make distcheck" >&2
if (cd "$src/build" && make -s distcheck >"$LOG_DIR/distcheck.log" 2>&1); then
	passed=$((passed + 1))
	echo "  distcheck                1 passed, 0 failed, 0 skipped" >&2
else
	failed=$((failed + 1))
	echo "not ok - make distcheck (see $LOG_DIR/distcheck.log)" >&2
	tail -30 "$LOG_DIR/distcheck.log" >&2
fi

if [ "${DEB:-1}" != 0 ]; then
	echo "== Debian package" >&2
	tests/deb/run.sh >"$LOG_DIR/deb.log" 2>&1
	awk -v counts="$LOG_DIR/deb.counts" -f "$src/scripts/tap-summary.awk" "$LOG_DIR/deb.log" >&2
	while read -r s p f k; do
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + k))
	done <"$LOG_DIR/deb.counts"
	if ! awk '$2 > 0 { found = 1 } END { exit !found }' "$LOG_DIR/deb.counts"; then
		echo "not ok - the Debian package test did not run (see $LOG_DIR/deb.log)" >&2
		failed=$((failed + 1))
	fi
fi

echo "logs: $LOG_DIR and the build directories' tests/*/*.log" >&2
if [ "$failed" -eq 0 ]; then
	rm -rf "$RUN_TMP"
else
	echo "temporary files kept: $RUN_TMP" >&2
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
