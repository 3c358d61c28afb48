#!/usr/bin/env bash
# tripwire.sh: proves that run.sh's crash and sanitizer tripwire
# (tests/e2e/tripwire_lib.sh) fails a run whose suite passes while a worker
# crashes or leaks. TAP on stdout.
#
# It runs run.sh itself, with SUITES=tripwire_fault and DENOKV_TEST_FAULTS=1
# in the server's environment, on a stack of its own under
# $RUN_DIR/tripwire/, and reads that run's TAP:
#
#   - built with --enable-test-faults: the run fails although every test
#     point of tripwire_fault passed; the tripwire names the crashed worker
#     (the master's log line), nginx's upstream error and the replaced
#     worker; with --enable-sanitizers too, it reports the leak
#     (LeakSanitizer, 4242 bytes) after the stack stopped;
#   - any other build (a release build): the fault paths are ordinary
#     requests, the run passes and the tripwire reports nothing, so it has
#     no false alarms on a clean run.
set -u

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
BIN=${DENOKV_FCGI_BIN:?}
W=$RUN_DIR/tripwire
mkdir -p "$W"

n=0
failed=0
tap() { # tap ok|not_ok DESCRIPTION [DIAGNOSTIC...]
	local st=$1 desc=$2 d
	shift 2
	n=$((n + 1))
	if [ "$st" = ok ]; then
		printf 'ok %d - %s\n' "$n" "$desc"
	else
		failed=$((failed + 1))
		printf 'not ok %d - %s\n' "$n" "$desc"
	fi
	for d in "$@"; do
		[ -n "$d" ] && printf '%s\n' "$d" | sed 's/^/# /'
	done
	return 0
}
check() { # check DESCRIPTION CONDITION-STATUS [DIAGNOSTIC...]
	local desc=$1 rc=$2
	shift 2
	if [ "$rc" -eq 0 ]; then tap ok "$desc"; else tap not_ok "$desc" "$@"; fi
}

# What the binary was built with: the fault paths and the leak check are
# compiled in only by --enable-test-faults and --enable-sanitizers.
faults=0 sanitizers=0
grep -qa '/__test_fault/crash' "$BIN" && faults=1
grep -qa '__lsan_do_leak_check' "$BIN" && sanitizers=1
printf '# %s: test faults %s, sanitizers %s\n' "$BIN" \
	"$([ $faults = 1 ] && echo yes || echo no)" "$([ $sanitizers = 1 ] && echo yes || echo no)"

TAPF=$W/run.tap
TMPDIR=$W SUITES=tripwire_fault DENOKV_TEST_FAULTS=1 KEEP=1 \
	bash "$E2E_DIR/run.sh" >"$TAPF" 2>"$W/run.stderr" </dev/null
rc=$?
nested_dir=$(sed -n 's/^# run directory: //p' "$TAPF" | head -n 1)
summary="exit status $rc; its TAP: $TAPF"

# block PATTERN: the diagnostics under the first test point matching PATTERN.
block() {
	awk -v pat="$1" '
		found && /^# / { print; next }
		found { exit }
		$0 ~ pat { found = 1; print }
	' "$TAPF"
}

npoints=$(grep -Ec '^(not )?ok [0-9]+ - tripwire_fault: tripwire:' "$TAPF")
check "the run checked tripwire_fault with the tripwire (2 points)" \
	"$([ "$npoints" = 2 ] && echo 0 || echo 1)" "$npoints tripwire points; $summary"

if [ $faults = 0 ]; then
	check "a build without --enable-test-faults ignores DENOKV_TEST_FAULTS=1: the run passes, nothing reported" \
		"$([ $rc = 0 ] && ! grep -q '^not ok' "$TAPF" && echo 0 || echo 1)" \
		"$summary" "$(grep -A12 '^not ok' "$TAPF" | head -n 40)"
else
	check "the run fails, although every test point of its suite passed" \
		"$([ $rc != 0 ] && ! grep -Eq '^not ok [0-9]+ - tripwire_fault: [^t]' "$TAPF" &&
			grep -Eq '^ok [0-9]+ - tripwire_fault: the crash request' "$TAPF" && echo 0 || echo 1)" \
		"$summary" "$(grep -E '^(not )?ok' "$TAPF" | head -n 30)"
	logs=$(block '^not ok [0-9]+ - tripwire_fault: tripwire: no crashed child')
	check "the tripwire names the crashed worker (the master's log line)" \
		"$(printf '%s\n' "$logs" | grep -Eq '^# crash server\.log: .*worker [0-9]+ (killed by signal|exited with status)' && echo 0 || echo 1)" \
		"what it reported:" "${logs:-(nothing)}" "$summary"
	check "the tripwire names nginx's upstream error for the crashed request" \
		"$(printf '%s\n' "$logs" | grep -Eq '^# upstream error\.log: .*upstream prematurely closed' && echo 0 || echo 1)" \
		"what it reported:" "${logs:-(nothing)}"
	workers=$(block '^not ok [0-9]+ - tripwire_fault: tripwire: every server kept its workers')
	check "the tripwire names the replaced worker" \
		"$(printf '%s\n' "$workers" | grep -Eq '^# workers server [0-9]+: children were' && echo 0 || echo 1)" \
		"what it reported:" "${workers:-(nothing)}"
	if [ $sanitizers = 1 ]; then
		leak=$(block '^not ok [0-9]+ - teardown: tripwire: no crashed child')
		check "the tripwire reports the leak when the workers leave (LeakSanitizer, 4242 bytes)" \
			"$(printf '%s\n' "$leak" | grep -q 'LeakSanitizer' &&
				printf '%s\n' "$leak" | grep -q '4242 byte' && echo 0 || echo 1)" \
			"what it reported:" "${leak:-(nothing)}" "$summary"
	else
		echo "# no leak check: LeakSanitizer runs only in --enable-sanitizers builds"
	fi
fi

echo "1..$n"
if [ $failed = 0 ]; then
	[ -n "$nested_dir" ] && rm -rf "$nested_dir"
	rm -f "$TAPF" "$W/run.stderr"
fi
[ $failed = 0 ]
