#!/usr/bin/env bash
# tripwire_fault.sh: a suite that passes while the server misbehaves. It is
# never in run.sh's list: tripwire.sh runs it through a run.sh of its own,
# against a server started with DENOKV_TEST_FAULTS=1, and checks that the
# tripwire fails that run all the same.
#
# Against a build configured with --enable-test-faults, the first request
# crashes the worker that serves it (nginx answers 502) and the second
# leaks memory in another one (LeakSanitizer reports it when the workers
# leave, in sanitizer builds). In any other build both are ordinary
# requests to an unknown mount: 400 or 405, nothing crashes.
#
# Every test point here passes whatever the server did: the only thing
# that may fail the run is the tripwire.
set -u
# shellcheck disable=SC1091
. "$RUN_DIR/env"

n=0
point() {
	n=$((n + 1))
	printf 'ok %d - %s\n' "$n" "$1"
}

post() { # post PATH: prints the HTTP status
	curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST \
		-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
		--data '{"supportedVersions":[1,2,3]}' "${H1_URL%/}$1" 2>/dev/null || true
}

code=$(post /__test_fault/crash)
point "the crash request was answered (HTTP $code)"
# Give the master time to reap and log the dead worker before the check.
for _ in $(seq 1 50); do
	grep -q 'killed by signal\|exited with status' "$RUN_DIR/server.log" && break
	sleep 0.1
done
code=$(post /__test_fault/leak)
point "the leak request was answered (HTTP $code)"
echo "1..$n"
