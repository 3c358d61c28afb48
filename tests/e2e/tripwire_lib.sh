# shellcheck shell=bash
# tripwire_lib.sh: the crash and sanitizer tripwire of the end-to-end tests,
# sourced by run.sh (and by tripwire.sh, which proves that it fires).
#
# A Deno client retries a 502 for ever, so a worker that crashes (or that
# AddressSanitizer kills) in the middle of a suite is respawned by the
# master and the test still passes. The tripwire looks at what a suite left
# behind instead: every server and nginx log under the run directory, read
# from where the previous check stopped, and the workers of every server
# still running. It reports
#
#   crash      a child killed by a signal, or exiting with a non-zero status
#              (master: "worker 123 killed by signal 11", "... exited with
#              status 1"; nginx: "worker process 45 exited on signal 11")
#   sanitizer  any AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer
#              or "runtime error" line
#   upstream   nginx: "upstream prematurely closed" or "connect() ... failed"
#   workers    a server's children differ from the last check
#
# A suite that kills or replaces workers on purpose (the process model)
# says so with a line "tripwire-allow: process-model" in its file; for it
# only sanitizer reports and crash signals (SIGILL, SIGTRAP, SIGABRT,
# SIGBUS, SIGFPE, SIGSEGV, SIGSYS) count.
#
# Children of the master leave through _exit(); sanitizer builds run the
# leak check just before (src/leakcheck.h), so leaks show up in the logs
# when the servers stop: run.sh checks once more after stopping the stack.

# Signals that only a bug sends: never allowed, not even in a suite that
# kills workers on purpose.
TRIPWIRE_CRASH_SIGNALS=' 4 5 6 7 8 11 31 '

# tripwire_logs DIR: the server and proxy logs under DIR. Suite outputs,
# Deno's cache and the tripwire's own proof run (tripwire/) are not logs
# of this run's servers.
tripwire_logs() {
	find "$1" \( -path "$1/suites" -o -path "$1/deno-dir" -o -path "$1/tripwire" \) \
		-prune -o -type f -name '*.log' -print 2>/dev/null | sort
}

# tripwire_children DIR: one line per running server of DIR (every *.pid
# but nginx's): "NAME PID: CHILD CHILD ...", children sorted.
tripwire_children() {
	local f pid name
	for f in "$1"/*.pid; do
		[ -f "$f" ] || continue
		name=$(basename "$f" .pid)
		[ "$name" = nginx ] && continue
		pid=$(cat "$f" 2>/dev/null)
		if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
			continue
		fi
		printf '%s %s: %s\n' "$name" "$pid" "$(pgrep -P "$pid" 2>/dev/null | sort -n | tr '\n' ' ')"
	done
}

# tripwire_mark DIR STATE: remember how far each log has been read and
# which workers run, in STATE.logs and STATE.children.
tripwire_mark() {
	local dir=$1 state=$2 f
	: >"$state.logs"
	while IFS= read -r f; do
		printf '%s %s\n' "$(stat -c %s "$f" 2>/dev/null || echo 0)" "$f" >>"$state.logs"
	done < <(tripwire_logs "$dir")
	tripwire_children "$dir" >"$state.children"
}

# tripwire_new_lines FILE STATE: the lines FILE gained since tripwire_mark
# (all of it for a log that is new or was truncated).
tripwire_new_lines() {
	local file=$1 state=$2 off size
	off=$(awk -v f="$file" '{ p = $0; sub(/^[0-9]+ /, "", p); if (p == f) o = $1 } END { print o + 0 }' "$state.logs" 2>/dev/null)
	size=$(stat -c %s "$file" 2>/dev/null || echo 0)
	[ "${off:-0}" -gt "$size" ] && off=0
	tail -c +"$((${off:-0} + 1))" "$file" 2>/dev/null
}

# tripwire_scan DIR STATE ALLOW: what happened since tripwire_mark DIR
# STATE. Prints one finding a line, "KIND FILE: LINE" (KIND as above),
# and returns 1 if there is any. ALLOW=1: the process model's leniency.
tripwire_scan() {
	local dir=$1 state=$2 allow=$3 f rel found=0 line sig
	while IFS= read -r f; do
		rel=${f#"$dir"/}
		while IFS= read -r line; do
			case $line in
			*AddressSanitizer* | *LeakSanitizer* | *UndefinedBehaviorSanitizer* | *"runtime error"*)
				printf 'sanitizer %s: %s\n' "$rel" "$line"
				found=1
				;;
			*" killed by signal "*)
				sig=$(printf '%s\n' "$line" | sed -n 's/.* killed by signal \([0-9]*\).*/\1/p')
				if [ "$allow" != 1 ] || [[ $TRIPWIRE_CRASH_SIGNALS == *" $sig "* ]]; then
					printf 'crash %s: %s\n' "$rel" "$line"
					found=1
				fi
				;;
			*" exited on signal "*)
				# nginx's own workers: they never die on purpose.
				printf 'crash %s: %s\n' "$rel" "$line"
				found=1
				;;
			*" exited with status "*)
				if [ "$allow" != 1 ]; then
					printf 'crash %s: %s\n' "$rel" "$line"
					found=1
				fi
				;;
			*"upstream prematurely closed"* | *"connect() "*"failed"*)
				if [ "$allow" != 1 ]; then
					printf 'upstream %s: %s\n' "$rel" "$line"
					found=1
				fi
				;;
			esac
		done < <(tripwire_new_lines "$f" "$state")
	done < <(tripwire_logs "$dir")
	if [ "$allow" != 1 ] && [ -f "$state.children" ]; then
		# Servers running at both checks must have kept their children.
		while IFS= read -r line; do
			local who=${line%%:*}
			local before
			before=$(grep -F "$who:" "$state.children" 2>/dev/null | head -n 1)
			if [ -n "$before" ] && [ "$before" != "$line" ]; then
				printf 'workers %s: children were %s; now %s\n' "$who" \
					"${before#*: }" "${line#*: }"
				found=1
			fi
		done < <(tripwire_children "$dir")
	fi
	[ $found = 0 ]
}

# tripwire_allows_process_model FILE: the suite kills workers on purpose.
tripwire_allows_process_model() {
	[ -f "$1" ] && grep -q 'tripwire-allow: process-model' "$1"
}
