# proclib.sh: shell helpers shared by the process-model suites that run
# their own server instances (lifecycle.sh, crash.sh). Sourced, not run.
# The suite sets N=0 FAILED=0 before using tap/check and calls finish last.
# shellcheck shell=bash disable=SC2034,SC2317

# tap ok|not_ok DESCRIPTION [DIAGNOSTIC...]
tap() {
	local status=$1 desc=$2 d
	shift 2
	N=$((N + 1))
	if [ "$status" = ok ]; then
		printf 'ok %d - %s\n' "$N" "$desc"
	else
		FAILED=$((FAILED + 1))
		printf 'not ok %d - %s\n' "$N" "$desc"
	fi
	for d in "$@"; do
		[ -n "$d" ] && printf '%s\n' "$d" | sed 's/^/# /'
	done
	return 0
}

# check DESCRIPTION STATUS [DIAGNOSTIC...]: ok if STATUS is 0.
check() {
	local desc=$1 rc=$2
	shift 2
	if [ "$rc" -eq 0 ]; then tap ok "$desc"; else tap not_ok "$desc" "$@"; fi
}

diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

ms_now() { echo $(($(date +%s%N) / 1000000)); }

# alive PID: exists and is not a zombie.
alive() {
	local state
	[ -n "${1:-}" ] || return 1
	kill -0 "$1" 2>/dev/null || return 1
	# Any state but a zombie is alive, the lower-case ones included:
	# LeakSanitizer stops an exiting process with ptrace for its check
	# ("t"), which once read as dead here.
	state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)
	# Unreadable: it has just gone; kill -0 says whether its pid remains.
	[ -n "$state" ] || { kill -0 "$1" 2>/dev/null; return; }
	[ "$state" != Z ] && [ "$state" != X ]
}

# wait_until SECONDS COMMAND...: poll every 50 ms until COMMAND succeeds.
wait_until() {
	local deadline=$(($(ms_now) + $1 * 1000))
	shift
	while :; do
		"$@" && return 0
		[ "$(ms_now)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# free_port [TAKEN...]: a free TCP port below the ephemeral range.
free_port() {
	local p q taken
	for _ in $(seq 1 200); do
		p=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
		taken=0
		for q in "$@"; do [ "$q" = "$p" ] && taken=1; done
		[ $taken = 1 ] && continue
		[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || continue
		echo "$p"
		return 0
	done
	return 1
}

BG_PIDS=()
# bg LOGFILE CMD...: start CMD in the background, remembered for cleanup;
# its pid is in LAST_BG.
bg() {
	local logf=$1
	shift
	"$@" >"$logf" 2>&1 </dev/null &
	BG_PIDS+=("$!")
	LAST_BG=$!
}

# stop_pid PID: SIGTERM, up to 5 s, then SIGKILL.
stop_pid() {
	local pid=$1
	alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null
	wait_until 5 eval "! alive $pid" && return 0
	kill -KILL "$pid" 2>/dev/null
	wait_until 2 eval "! alive $pid"
}

# kill_tree PID: SIGKILL PID and its children (a server left running by a
# failed case); SIGCONT first, in case a test stopped one.
kill_tree() {
	local pid=$1 c
	[ -n "$pid" ] || return 0
	for c in $(pgrep -P "$pid" 2>/dev/null); do
		kill -CONT "$c" 2>/dev/null
		kill -KILL "$c" 2>/dev/null
	done
	kill -KILL "$pid" 2>/dev/null
}

finish() {
	echo "1..$N"
	[ "$FAILED" = 0 ]
	exit $?
}
