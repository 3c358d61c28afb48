# bench/lib.sh: what the benchmark scripts share, sourced after they set T
# (their temporary directory) and KEEP_TMP. Messages (log, warn, die,
# need); the services a script starts in the background and their stop on
# exit (start, wait_socket, alive, stop_pids, bench_traps); and the parts
# of a throw-away nginx configuration that do not depend on the benchmark
# (nginx_prepare, nginx_temp_paths).
#
# bench_traps installs a cleanup on exit that stops every service started
# with start (SIGTERM, then SIGKILL after STOP_GRACE_S seconds, default 10),
# calls cleanup_first first if the script defines it, shows the last
# TAIL_LINES (default 15) lines of each service's log when the run failed,
# and removes $T unless KEEP_TMP is 1, or auto and the run failed (not
# interrupted).

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf '\nBENCHMARK FAILED: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

PIDS=()               # services started with start
declare -A PID        # name -> pid
declare -A PNAME      # pid -> "name (pid N)", for messages
LOGS=()               # their log files

alive() { # pid: running and not a zombie
	local st
	[ -n "$1" ] || return 1
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ -n $st && $st != Z* ]]
}

descendants() { # pid: all its descendants, children first
	local c
	for c in $(pgrep -P "$1" 2>/dev/null); do
		echo "$c"
		descendants "$c"
	done
}

# SIGTERM to each pid (a service stops its own workers), then after
# STOP_GRACE_S seconds SIGKILL to whatever is left of them and of the
# processes they forked.
stop_pids() { # pid...
	local p _ left=() all=() grace=${STOP_GRACE_S:-10}
	for p in "$@"; do
		# shellcheck disable=SC2207
		all+=("$p" $(descendants "$p"))
	done
	[ ${#all[@]} -gt 0 ] || return 0
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in $(seq 1 $((grace * 10))); do
		left=()
		for p in "${all[@]}"; do alive "$p" && left+=("$p"); done
		[ ${#left[@]} = 0 ] && return 0
		sleep 0.1
	done
	for p in "${left[@]}"; do
		warn "${PNAME[$p]:-pid $p} still running $grace s after SIGTERM; sending SIGKILL"
		kill -KILL "$p" 2>/dev/null || true
	done
}

bench_cleanup() {
	local rc=$? f
	set +e
	trap - EXIT INT TERM
	declare -F cleanup_first >/dev/null && cleanup_first
	[ ${#PIDS[@]} -gt 0 ] && stop_pids "${PIDS[@]}"
	PIDS=()
	if [ $rc -ne 0 ] && [ $rc -ne 130 ] && [ $rc -ne 143 ]; then
		for f in "${LOGS[@]}"; do
			[ -s "$f" ] || continue
			printf '\n--- last lines of %s ---\n' "$f" >&2
			tail -n "${TAIL_LINES:-15}" "$f" >&2
		done
	fi
	if [ "$KEEP_TMP" = 1 ] || { [ $rc -ne 0 ] && [ $rc -ne 130 ] &&
	    [ $rc -ne 143 ] && [ "$KEEP_TMP" = auto ]; }; then
		printf 'kept %s\n' "$T" >&2
	else
		rm -rf "$T"
	fi
	exit $rc
}

bench_traps() {
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# start NAME LOGFILE CMD...: runs CMD in the background, stopped on exit
# (disowned, so the shell does not report its end).
start() {
	local name=$1 logf=$2 pid
	shift 2
	LOGS+=("$logf")
	"$@" >"$logf" 2>&1 </dev/null &
	pid=$!
	disown "$pid"
	PIDS+=("$pid")
	PNAME[$pid]="$name (pid $pid)"
	PID[$name]=$pid
}

wait_socket() { # path pid what
	local _
	for _ in $(seq 1 100); do
		[ -S "$1" ] && return 0
		alive "$2" || die "$3 exited during start-up"
		sleep 0.1
	done
	die "$3 did not create $1 within 10 s"
}

# USER_LINE for nginx.conf (as root, nginx's workers run as the invoking
# user, who also owns the sockets) and nginx's temporary directories in $T.
nginx_prepare() {
	USER_LINE=""
	[ "$(id -u)" = 0 ] && USER_LINE="user $(id -un) $(id -gn);"
	mkdir -p "$T/nginx-tmp"
}

# The http block's temporary paths, all inside $T/nginx-tmp.
nginx_temp_paths() {
	cat <<EOT
    client_body_temp_path $T/nginx-tmp/body;
    fastcgi_temp_path $T/nginx-tmp/fastcgi;
    proxy_temp_path $T/nginx-tmp/proxy;
    uwsgi_temp_path $T/nginx-tmp/uwsgi;
    scgi_temp_path $T/nginx-tmp/scgi;
EOT
}
