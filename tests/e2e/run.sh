#!/usr/bin/env bash
# End-to-end tests of denokv-fcgi behind nginx: the single entry point that
# `make check` runs (through automake's tap-driver.sh).
#
# It starts a private stack (scripts/stack.sh) in a temporary directory on
# free ports, runs every suite against it, stops it and merges the suites'
# results into one TAP stream on stdout: one `ok N - suite: name` per test
# case and a final plan line. Diagnostics are `# ` lines. Exit status is
# non-zero if anything failed.
#
# Environment (make check sets the first two):
#   DENOKV_FCGI_BIN  server binary (default: $DENOKV_SRCDIR/src/denokv-fcgi)
#   DENOKV_SRCDIR    repository root (default: two levels above this script)
#   DENO             Deno CLI (default: $DENOKV_SRCDIR/node_modules/.bin/deno,
#                    installed by `npm install`)
#   NODE             Node.js for the @deno/kv suite (default: node)
#   DENO_DIR         Deno's cache (default: inside the run directory)
#   KEEP=1           keep the run directory even when everything passed
#   SUITES="a b"     run only these suites (names as in the list below)
#   SUITE_TIMEOUT    seconds before a suite is killed (default 300)
set -u

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
DENOKV_SRCDIR=${DENOKV_SRCDIR:-$(cd "$E2E_DIR/../.." && pwd)}
DENOKV_SRCDIR=$(cd "$DENOKV_SRCDIR" && pwd)
DENOKV_FCGI_BIN=${DENOKV_FCGI_BIN:-$DENOKV_SRCDIR/src/denokv-fcgi}
DENO=${DENO:-$DENOKV_SRCDIR/node_modules/.bin/deno}
NODE=${NODE:-node}
STACK=$DENOKV_SRCDIR/scripts/stack.sh
SUITE_TIMEOUT=${SUITE_TIMEOUT:-300}
export DENOKV_FCGI_BIN DENOKV_SRCDIR DENO NODE

# Every suite, in order. raw_protocol goes first: it asserts that refused
# requests leave the database's data_version alone, which is easiest while
# nothing else (expiring keys from other suites) is going on. housekeeper
# runs after watch: its 72 MiB WAL test slows the disk for a while, and
# watch's timing-sensitive tests have failed after it on the ASan build.
# tripwire (the proof that the crash tripwire fires) runs a small stack of
# its own.
ALL_SUITES="raw_protocol kv_basic two_instances compat node_client watch housekeeper watch_storm watch_limits busy storage_faults request_body slow_clients accept_backoff keepalive request_paths hosting tls group_commit queue queue_node backup ops litestream process lifecycle crash first_run tripwire"
SUITES=${SUITES:-$ALL_SUITES}

N=0      # test points emitted
SUITE_PID=
FAILED=0 # of which not ok

tap() { # tap ok|not_ok DESCRIPTION [DIAGNOSTIC...]
	local status=$1 desc=$2
	shift 2
	N=$((N + 1))
	if [ "$status" = ok ]; then
		printf 'ok %d - %s\n' "$N" "$desc"
	else
		FAILED=$((FAILED + 1))
		printf 'not ok %d - %s\n' "$N" "$desc"
	fi
	local d
	for d in "$@"; do
		printf '%s\n' "$d" | sed 's/^/# /'
	done
}

diag() {
	printf '%s\n' "$*" | sed 's/^/# /'
}

# merge_tap SUITE TAPFILE STATUSFILE: renumber a suite's TAP into ours.
# Top-level `ok`/`not ok` lines become test points prefixed with the suite
# name; everything else (subtests, YAML blocks, comments) becomes `# ` lines.
# Writes "count failures plan bailed" to STATUSFILE.
merge_tap() {
	awk -v suite="$1" -v start="$N" -v statusfile="$3" '
	function clean(s) {
		gsub(/\033\[[0-9;]*[A-Za-z]/, "", s)
		gsub(/\r/, "", s)
		return s
	}
	function comment(s,   n, parts, i) {
		s = clean(s)
		# Deno puts a failure in one JSON line; unfold its \n escapes.
		n = split(s, parts, /\\n/)
		for (i = 1; i <= n; i++) print "# " parts[i]
	}
	# A YAML block after a test point: kept (as comments) only after a
	# failure; Node writes one with just duration_ms after every test.
	function flush_yaml(   i) {
		if (yaml_keep) for (i = 1; i <= nyaml; i++) comment(yaml[i])
		nyaml = 0
		in_yaml = 0
	}
	BEGIN { count = 0; fails = 0; plan = -1; bailed = 0; in_yaml = 0; nyaml = 0; last_failed = 0 }
	{
		line = clean($0)
		if (in_yaml) {
			yaml[++nyaml] = line
			if (line ~ /^[ \t]+\.\.\.[ \t]*$/) flush_yaml()
			next
		}
		if (line ~ /^[ \t]+---[ \t]*$/) {
			in_yaml = 1
			yaml_keep = last_failed
			yaml[++nyaml] = line
			next
		}
		if (line ~ /^[ \t]*# Subtest: /) next
		if (match(line, /^(not )?ok( [0-9]+)?( -)?( |$)/)) {
			notok = (substr(line, 1, 4) == "not ")
			rest = substr(line, RLENGTH + 1)
			directive = ""
			if (match(rest, / # (SKIP|skip|TODO|todo)([ \t]|$).*/)) {
				directive = substr(rest, RSTART)
				rest = substr(rest, 1, RSTART - 1)
			}
			if (rest == "") rest = "(unnamed)"
			gsub(/#/, "\\#", rest)   # a bare # would start a directive
			count++
			last_failed = notok
			if (notok && directive !~ /TODO|todo/) fails++
			printf "%s %d - %s: %s%s\n", (notok ? "not ok" : "ok"), start + count, suite, rest, directive
			next
		}
		if (match(line, /^1\.\.[0-9]+/)) {
			plan = substr(line, 4, RLENGTH - 3) + 0
			next
		}
		if (line ~ /^Bail out!/) {
			bailed = 1
			print "# " suite ": " line
			next
		}
		if (line ~ /^TAP version/ || line ~ /^[ \t]*$/) next
		# Nested test points (subtests, steps) count as details.
		if (line ~ /^[ \t]+(not )?ok /) last_failed = last_failed || (line ~ /not ok/)
		comment(line)
	}
	END {
		if (in_yaml) { yaml_keep = 1; flush_yaml() }
		print count, fails, plan, bailed > statusfile
	}
	' "$2"
}

# run_suite NAME CMD...: run one suite with a deadline and merge its TAP.
run_suite() {
	local name=$1
	shift
	local out=$RUN_DIR/suites/$name.tap err=$RUN_DIR/suites/$name.stderr
	local st=$RUN_DIR/suites/$name.status rc count fails plan bailed
	diag "suite $name: $*"
	# In the background so that a signal to this script is handled at once
	# (bash runs traps only between foreground commands).
	(cd "$E2E_DIR" && exec timeout -k 10 "$SUITE_TIMEOUT" "$@") >"$out" 2>"$err" </dev/null &
	SUITE_PID=$!
	wait "$SUITE_PID"
	rc=$?
	SUITE_PID=
	# Defaults for a run directory that vanished under the suite (on a
	# shared machine, a cleaner of /tmp): a failure to report, not a crash.
	count=0 fails=0 plan=-1 bailed=0
	if [ ! -d "$RUN_DIR/suites" ]; then
		tap not_ok "$name: run directory $RUN_DIR still there after the suite" \
			"something outside this run removed it; the suite's output is lost"
		mkdir -p "$RUN_DIR/suites"
	fi
	merge_tap "$name" "$out" "$st" 2>/dev/null
	read -r count fails plan bailed <"$st" 2>/dev/null
	LAST_COUNT=$count
	N=$((N + count))
	FAILED=$((FAILED + fails))
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		tap not_ok "$name: suite finished within ${SUITE_TIMEOUT}s" \
			"killed after ${SUITE_TIMEOUT}s; test cases after the last one above never reported" \
			"stderr tail:" "$(tail -n 20 "$err")"
	elif [ "$count" = 0 ]; then
		tap not_ok "$name: suite ran and reported test cases" \
			"exit status $rc, no TAP test points" "stderr tail:" "$(tail -n 30 "$err")"
	elif [ "$plan" != "$count" ]; then
		tap not_ok "$name: suite reported all its planned test cases" \
			"plan ${plan/-1/missing}, $count test points, exit status $rc (crashed?)" \
			"stderr tail:" "$(tail -n 30 "$err")"
	elif [ "$bailed" = 1 ]; then
		tap not_ok "$name: suite did not bail out"
	elif [ "$rc" != 0 ] && [ "$fails" = 0 ]; then
		tap not_ok "$name: suite exited with status 0" \
			"exit status $rc although every test case passed" "stderr tail:" "$(tail -n 30 "$err")"
	elif [ "$fails" != 0 ]; then
		diag "suite $name: $fails of $count failed; stderr tail:"
		diag "$(tail -n 15 "$err")"
	fi
}

# need_deno NAME: a suite that needs the Deno CLI; missing Deno is a failure.
have_deno() {
	[ -x "$DENO" ] && "$DENO" --version >/dev/null 2>&1
}

deno_test() { # deno_test NAME FILE
	if ! have_deno; then
		tap not_ok "$1: Deno CLI available" "no working Deno CLI at $DENO (run npm install in $DENOKV_SRCDIR, or set DENO)"
		return
	fi
	run_suite "$1" env NO_COLOR=1 RUN_DIR="$RUN_DIR" DENO_DIR="$DENO_DIR" "$DENO" test --unstable-kv -A \
		--no-check --no-lock --reporter=tap "$2"
	if [ "$LAST_COUNT" = 0 ]; then
		# deno test's TAP reporter does not show why a module failed to
		# load; running it as a script (Deno.test is a no-op there) does.
		diag "$1: loading the module as a script to show the error:"
		diag "$(cd "$E2E_DIR" && NO_COLOR=1 RUN_DIR="$RUN_DIR" DENO_DIR="$DENO_DIR" timeout 60 "$DENO" run \
			--unstable-kv -A --no-check --no-lock "$2" 2>&1 </dev/null | tail -n 20)"
	fi
}

node_test() { # node_test NAME FILE
	if ! command -v "$NODE" >/dev/null 2>&1; then
		tap not_ok "$1: Node.js available" "no $NODE in PATH (set NODE)"
		return
	fi
	if [ ! -f "$DENOKV_SRCDIR/node_modules/@deno/kv/package.json" ]; then
		tap not_ok "$1: @deno/kv installed" "no $DENOKV_SRCDIR/node_modules/@deno/kv (run npm install in $DENOKV_SRCDIR)"
		return
	fi
	# The file itself, not `node --test FILE`: older Node versions nest a
	# file's tests under one test point per file.
	run_suite "$1" env NO_COLOR=1 RUN_DIR="$RUN_DIR" "$NODE" --test-reporter=tap "$2"
}

# --- crash and sanitizer tripwire (tests/e2e/tripwire_lib.sh) -------------
# After every suite, and once more after the stack has stopped (sanitizer
# builds report leaks when the children leave): fail if the logs show a
# crashed child, a sanitizer report or an nginx upstream error, or if the
# servers' workers changed, unless the suite says it does that on purpose.
# shellcheck source=tests/e2e/tripwire_lib.sh
. "$E2E_DIR/tripwire_lib.sh"
TRIPWIRE_STATE=

# The first check reads the logs from their start, the stack's start-up too.
tripwire_begin() {
	TRIPWIRE_STATE=$RUN_DIR/suites/tripwire-state
	tripwire_mark "$RUN_DIR" "$TRIPWIRE_STATE"
	: >"$TRIPWIRE_STATE.logs"
}

# tripwire_check NAME: two TAP points for what happened since the last check.
tripwire_check() {
	local name=$1 allow=0 f found crash workers
	[ -n "$TRIPWIRE_STATE" ] || return 0
	for f in "$E2E_DIR/$name".test.ts "$E2E_DIR/$name".test.mjs "$E2E_DIR/$name".sh; do
		tripwire_allows_process_model "$f" && allow=1
	done
	found=$(tripwire_scan "$RUN_DIR" "$TRIPWIRE_STATE" "$allow")
	crash=$(printf '%s\n' "$found" | grep -v '^workers ' | grep -v '^$' | head -n 30)
	workers=$(printf '%s\n' "$found" | grep '^workers ' | head -n 10)
	if [ -z "$crash" ]; then
		tap ok "$name: tripwire: no crashed child, sanitizer report or nginx upstream error in the logs"
	else
		tap not_ok "$name: tripwire: no crashed child, sanitizer report or nginx upstream error in the logs" \
			"the logs under $RUN_DIR show (kind, file, line):" "$crash"
	fi
	if [ "$name" != teardown ]; then
		if [ -z "$workers" ]; then
			tap ok "$name: tripwire: every server kept its workers"
		else
			tap not_ok "$name: tripwire: every server kept its workers" \
				"a worker was replaced, so one died (respawned by the master):" "$workers"
		fi
	fi
	tripwire_mark "$RUN_DIR" "$TRIPWIRE_STATE"
}
# --- end of the tripwire ----------------------------------------------------

# shellcheck disable=SC2317 # invoked by trap
cleanup_on_signal() {
	trap - INT TERM
	# timeout(1) passes the signal on to the suite.
	[ -n "${SUITE_PID:-}" ] && kill -TERM "$SUITE_PID" 2>/dev/null && wait "$SUITE_PID"
	diag "interrupted; stopping the stack in $RUN_DIR (kept)"
	"$STACK" stop "$RUN_DIR" >/dev/null 2>&1
	exit 130
}

# ---------------------------------------------------------------------------

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/denokv-e2e.XXXXXX") || {
	echo "Bail out! cannot create a temporary directory"
	exit 1
}
mkdir -p "$RUN_DIR/suites"
export RUN_DIR
# Deno's cache inside the run (nothing is downloaded; it keeps $HOME clean).
DENO_DIR=${DENO_DIR:-$RUN_DIR/deno-dir}
trap cleanup_on_signal INT TERM
diag "run directory: $RUN_DIR"
diag "server: $DENOKV_FCGI_BIN; deno: $DENO; node: $NODE"

# Prerequisites: each one missing is a failure, never a skip.
if [ -x "$DENOKV_FCGI_BIN" ]; then
	tap ok "setup: server binary exists"
else
	tap not_ok "setup: server binary exists" "$DENOKV_FCGI_BIN is missing: build it with make"
fi
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	tap ok "setup: nginx available"
else
	tap not_ok "setup: nginx available" "install nginx (apt-get install nginx-light or nginx)"
fi
for tool in curl sqlite3; do
	if command -v "$tool" >/dev/null 2>&1; then
		tap ok "setup: $tool available"
	else
		tap not_ok "setup: $tool available" "install $tool (apt-get install $tool)"
	fi
done
if have_deno; then
	tap ok "setup: Deno CLI $("$DENO" --version | head -n 1 | cut -d' ' -f2) available"
else
	tap not_ok "setup: Deno CLI available" "no working Deno CLI at $DENO (run npm install in $DENOKV_SRCDIR, or set DENO)"
fi

# Ports: stack.sh picks them below the ephemeral range and picks again if
# another program takes one before nginx binds it (scripts/ports.sh).
STACK_UP=0
if H2C_PORT=auto H1_PORT=auto "$STACK" start "$RUN_DIR" \
	>"$RUN_DIR/stack-start.out" 2>&1; then
	STACK_UP=1
	H2C_PORT=$(sed -n "s/^H2C_PORT='\(.*\)'$/\1/p" "$RUN_DIR/env")
	H1_PORT=$(sed -n "s/^H1_PORT='\(.*\)'$/\1/p" "$RUN_DIR/env")
	tap ok "setup: stack starts (nginx h2c :$H2C_PORT, h1 :$H1_PORT, denokv-fcgi)"
	tripwire_begin
else
	tap not_ok "setup: stack starts (nginx + denokv-fcgi, metadata exchange 200)" \
		"$(cat "$RUN_DIR/stack-start.out")"
fi

for suite in $SUITES; do
	if [ $STACK_UP = 0 ]; then
		tap not_ok "$suite: not run (the stack did not start)"
		continue
	fi
	# A suite is tests/e2e/NAME.test.ts (deno test), NAME.test.mjs (node)
	# or NAME.sh (a script printing TAP, with the stack's env exported).
	if [ -f "$E2E_DIR/$suite.test.ts" ]; then
		deno_test "$suite" "$E2E_DIR/$suite.test.ts"
	elif [ -f "$E2E_DIR/$suite.test.mjs" ]; then
		node_test "$suite" "$E2E_DIR/$suite.test.mjs"
	elif [ -f "$E2E_DIR/$suite.sh" ]; then
		run_suite "$suite" env NO_COLOR=1 RUN_DIR="$RUN_DIR" \
			DENO="$DENO" DENO_DIR="$DENO_DIR" DENOKV_FCGI_BIN="$DENOKV_FCGI_BIN" \
			DENOKV_SRCDIR="$DENOKV_SRCDIR" bash "$E2E_DIR/$suite.sh"
	else
		tap not_ok "$suite: known suite" "no suite file for $suite in $E2E_DIR"
	fi
	tripwire_check "$suite"
done

if [ $STACK_UP = 1 ]; then
	# The main server must have survived everything above...
	# shellcheck disable=SC1091
	. "$RUN_DIR/env"
	if "$STACK" status "$RUN_DIR" >"$RUN_DIR/status.out" 2>&1; then
		tap ok "teardown: every process still running after the suites"
	else
		tap not_ok "teardown: every process still running after the suites" \
			"$(cat "$RUN_DIR/status.out")" "server.log tail:" "$(tail -n 20 "$RUN_DIR/server.log")"
	fi
	# ... and stop on SIGTERM.
	if "$STACK" stop "$RUN_DIR" >"$RUN_DIR/stop.out" 2>&1; then
		tap ok "teardown: nginx and denokv-fcgi stop on SIGTERM"
	else
		tap not_ok "teardown: nginx and denokv-fcgi stop on SIGTERM" "$(cat "$RUN_DIR/stop.out")"
	fi
	tripwire_check teardown
fi

echo "1..$N"

if [ "$FAILED" != 0 ]; then
	diag "$FAILED of $N test cases failed; run directory kept: $RUN_DIR"
	for f in server.log error.log; do
		if [ -f "$RUN_DIR/$f" ]; then
			diag "--- tail of $RUN_DIR/$f"
			diag "$(tail -n 25 "$RUN_DIR/$f")"
		fi
	done
	exit 1
fi
if [ "${KEEP:-0}" = 1 ]; then
	diag "run directory kept: $RUN_DIR"
else
	rm -rf "$RUN_DIR"
fi
exit 0
