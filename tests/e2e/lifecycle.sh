#!/usr/bin/env bash
# lifecycle.sh: the master's supervision and start-up rules, end to end,
# each on its own short-lived server instance (the real binary, started as
# root with --allow-root, on a unix socket in $RUN_DIR/lifecycle/), driven
# over FastCGI directly by tests/e2e/fcgi_client.ts. TAP on stdout.
#
# Cases:
#   - the socket file: mode, owner and group as configured whatever the
#     umask; a stale socket is replaced; a live one (even one whose
#     listener no longer accepts), a regular file and a symlink are
#     refused (exit 2) and left alone; a socket swapped for a
#     symlink between bind() and the ownership change (strace delays bind)
#     does not make root change the symlink's target;
#   - configuration precedence: command line > environment > file;
#   - sqlite-synchronous: the level in force on each worker's connection
#     (read back with PRAGMA synchronous, logged at debug level) follows
#     the command line and a reload;
#   - SIGHUP with an invalid file keeps the running configuration and the
#     same workers, which go on serving;
#   - a reload that lowers the worker count: the extra slots stay empty and
#     SIGTERM still stops the master within shutdown-timeout + 1 s;
#   - a retiring worker that outlives shutdown-timeout (SIGSTOPped) is
#     killed;
#   - SIGHUP and SIGTERM at once: the master stops in time and no child of
#     the generation that was starting dies of the signal;
#   - fork failing during a reload (strace injects EAGAIN): the running
#     workers are kept and serve; the next reload works;
#   - reloads faster than retirees finish (256 workers, old processes
#     stopped): the oldest retirees make room in the signal segment's
#     process slots, and every new worker starts;
#   - shutdown-timeout expiring: a request held open longer than the
#     timeout does not keep the master from exiting;
#   - crash loop: quick deaths are restarted with a growing delay;
#   - a worker that cannot start exits 2 and is not restarted; when no
#     worker can start, the master gives up with exit status 1.
#
# Environment (run.sh sets them): RUN_DIR, DENOKV_FCGI_BIN, DENOKV_SRCDIR,
# DENO, DENO_DIR; KEEP=1 keeps the files.
# It kills or replaces server processes on purpose, so the crash
# tripwire (tripwire_lib.sh) counts only crash signals and sanitizer reports.
# tripwire-allow: process-model

# SC2016: conditions given to `wait_until ... eval '...'` expand at each poll.
# shellcheck disable=SC2016,SC2317
set -u

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
DENOKV_SRCDIR=${DENOKV_SRCDIR:-$(cd "$E2E_DIR/../.." && pwd)}
BIN=${DENOKV_FCGI_BIN:-$DENOKV_SRCDIR/src/denokv-fcgi}
DENO=${DENO:-$DENOKV_SRCDIR/node_modules/.bin/deno}
# shellcheck source=tests/e2e/proclib.sh
. "$E2E_DIR/proclib.sh"
N=0
FAILED=0
OWN_RUN_DIR=0
if [ -z "${RUN_DIR:-}" ]; then
	RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/denokv-lifecycle.XXXXXX") || exit 1
	OWN_RUN_DIR=1
fi
P=$RUN_DIR/lifecycle
DENO_DIR=${DENO_DIR:-$RUN_DIR/deno-dir}
export DENO_DIR NO_COLOR=1
unset DENO_KV_ACCESS_TOKEN DENO_KV_SQLITE_PATH
TOKEN=lifecycle-token-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
SRV=

cleanup() {
	local i
	trap - EXIT INT TERM
	kill_tree "$SRV"
	for ((i = ${#BG_PIDS[@]} - 1; i >= 0; i--)); do
		kill -CONT "${BG_PIDS[$i]}" 2>/dev/null
		stop_pid "${BG_PIDS[$i]}"
	done
	wait 2>/dev/null
	if [ "$FAILED" != 0 ] || [ "${KEEP:-0}" = 1 ]; then
		echo "# files kept in $P"
	elif [ "$OWN_RUN_DIR" = 1 ]; then
		rm -rf "$RUN_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

missing=()
for tool in socat strace pgrep ss; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -x "$BIN" ] || missing+=("server binary $BIN")
"$DENO" --version >/dev/null 2>&1 || missing+=("Deno CLI at $DENO")
[ "$(id -u)" = 0 ] || missing+=("root (socket ownership is set as root)")
if [ ${#missing[@]} -gt 0 ]; then
	tap not_ok "setup: prerequisites available" "missing: ${missing[*]} (scripts/setup-deps.sh installs them)"
	finish
fi
rm -rf "$P"
mkdir -p "$P"
SOCK_GROUP=www-data
getent group "$SOCK_GROUP" >/dev/null || SOCK_GROUP=nogroup
tap ok "setup: prerequisites available (socat, strace, Deno, root)"

# --- helpers -----------------------------------------------------------------

# srv NAME ARG...: start the server with its log in $P/NAME.log; SRV=pid.
srv() {
	local name=$1
	shift
	bg "$P/$name.log" "$BIN" "$@"
	SRV=$LAST_BG
}

# started N LOG: N workers have opened the database (debug log).
started() { [ "$(grep -c 'database open, synchronous=' "$2" 2>/dev/null)" -ge "$1" ]; }

# housekeeper LOG: the pid of the last housekeeper started.
housekeeper() { sed -n 's/.*started housekeeper \([0-9]*\)$/\1/p' "$1" | tail -n 1; }

# workers MASTER LOG: the master's children other than the housekeeper.
workers() { pgrep -P "$1" | grep -vx "$(housekeeper "$2")"; }

# fcgi SOCKET TOKEN [hold]: a metadata exchange over FastCGI; prints the
# status ("none" if the connection closed unanswered).
fcgi() {
	timeout 20 "$DENO" run -A --no-check --no-lock --quiet "$E2E_DIR/fcgi_client.ts" \
		"$1" / "$2" ${3:+"$3"} 2>/dev/null | sed -n 's/^STATUS //p'
}

# exit_of PID: sets RC to its exit status once it has ended (empty while
# it runs). Not in a $(...) subshell: only this shell can wait for it.
exit_of() {
	RC=
	alive "$1" && return
	wait "$1" 2>/dev/null
	RC=$?
}

# mode_owner PATH: "mode user:group" without following a symlink.
mode_owner() { stat -c '%a %U:%G' "$1" 2>/dev/null; }

# --- the socket file -----------------------------------------------------------

S=$P/sock
mkdir -p "$S"
(umask 077 && exec "$BIN" --sqlite-path "$S/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$S/owned.sock" --socket-mode 0640 --socket-user nobody --socket-group "$SOCK_GROUP" \
	--workers 1 --log-level debug) >"$P/owned.log" 2>&1 </dev/null &
SRV=$!
BG_PIDS+=("$SRV")
wait_until 20 started 1 "$P/owned.log"
st=$(mode_owner "$S/owned.sock")
code=$(fcgi "$S/owned.sock" "$TOKEN")
check "socket: --socket-mode 0640 --socket-user nobody --socket-group $SOCK_GROUP under umask 077 gives 640 nobody:$SOCK_GROUP ($st), and it serves" \
	"$([ "$st" = "640 nobody:$SOCK_GROUP" ] && [ "$code" = 200 ]; echo $?)" "HTTP $code" "$(tail -n 5 "$P/owned.log")"
stop_pid "$SRV"
check "socket: the server removes its socket file when it stops" "$([ ! -e "$S/owned.sock" ]; echo $?)"

(umask 077 && exec "$BIN" --sqlite-path "$S/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$S/default.sock" --workers 1 --log-level debug) >"$P/default.log" 2>&1 </dev/null &
SRV=$!
BG_PIDS+=("$SRV")
wait_until 20 started 1 "$P/default.log"
st=$(mode_owner "$S/default.sock")
check "socket: the default mode is 0660 whatever the umask (077 here): $st" \
	"$([ "$st" = "660 root:root" ]; echo $?)" "$(tail -n 3 "$P/default.log")"
stop_pid "$SRV"

# A stale socket: its listener was killed, the file stayed.
socat -u "UNIX-LISTEN:$S/stale.sock" OPEN:/dev/null >/dev/null 2>&1 </dev/null &
sp=$!
wait_until 5 test -S "$S/stale.sock"
kill -KILL "$sp"
wait "$sp" 2>/dev/null
stale=$(socat -u OPEN:/dev/null "UNIX-CONNECT:$S/stale.sock" 2>&1 && echo connected)
srv stale --sqlite-path "$S/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$S/stale.sock" --workers 1 --log-level debug
wait_until 20 started 1 "$P/stale.log"
code=$(fcgi "$S/stale.sock" "$TOKEN")
check "socket: a stale socket file (connecting to it: refused) is replaced and the server serves on that path (HTTP $code)" \
	"$([ -S "$S/stale.sock" ] && [ "$stale" != connected ] && [ "$code" = 200 ]; echo $?)" \
	"before: $stale" "$(tail -n 5 "$P/stale.log")"
stop_pid "$SRV"

# A live socket: another server accepts on it.
bg "$P/live-socat.log" socat "UNIX-LISTEN:$S/live.sock,fork" SYSTEM:true
LIVE=$LAST_BG
wait_until 5 test -S "$S/live.sock"
timeout 20 "$BIN" --sqlite-path "$S/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$S/live.sock" --workers 1 >"$P/live.log" 2>&1 </dev/null
rc=$?
still=$(socat -u OPEN:/dev/null "UNIX-CONNECT:$S/live.sock" 2>&1 && echo connected)
check "socket: a socket another server listens on is not taken over (exit 2, 'is in use'), and still works" \
	"$([ $rc = 2 ] && grep -q "$S/live.sock is in use" "$P/live.log" && [ "$still" = connected ]; echo $?)" \
	"exit status $rc; $(cat "$P/live.log")" "connect afterwards: $still"
stop_pid "$LIVE"

# A hung server: it listens but no longer accepts, and its backlog is full
# (perl, since socat always accepts). Start-up must not wait for it.
bg "$P/hung-listener.out" perl -e '
	use Socket qw(AF_UNIX SOCK_STREAM SOCK_NONBLOCK pack_sockaddr_un);
	my $p = shift; my @c;
	socket(my $l, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
	bind($l, pack_sockaddr_un($p)) or die "bind: $!";
	listen($l, 0) or die "listen: $!";
	for (1 .. 8) {
		socket(my $c, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0) or die "$!";
		if (!connect($c, pack_sockaddr_un($p))) { $| = 1; print "FULL\n"; last }
		push @c, $c;
	}
	sleep 300;' "$S/hung.sock"
HUNG=$LAST_BG
wait_until 5 grep -q FULL "$P/hung-listener.out"
t0=$(ms_now)
timeout 20 "$BIN" --sqlite-path "$S/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$S/hung.sock" --workers 1 >"$P/hung.log" 2>&1 </dev/null
rc=$?
t1=$(ms_now)
check "socket: a listener that no longer accepts (backlog full) is in use: start-up refuses at once (exit 2 in $((t1 - t0)) ms, not a hang)" \
	"$(grep -q FULL "$P/hung-listener.out" && [ $rc = 2 ] && grep -q "$S/hung.sock is in use" "$P/hung.log" &&
		[ -S "$S/hung.sock" ]; echo $?)" \
	"exit status $rc (124: still waiting after 20 s)" "listener: $(cat "$P/hung-listener.out")" "$(cat "$P/hung.log")"
stop_pid "$HUNG"

# A regular file and a symlink at the socket path.
echo "precious" >"$S/victim"
chmod 0600 "$S/victim"
cp "$S/victim" "$S/file.sock"
ln -s "$S/victim" "$S/link.sock"
timeout 20 "$BIN" --sqlite-path "$S/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$S/file.sock" --workers 1 >"$P/file.log" 2>&1 </dev/null
rc1=$?
timeout 20 "$BIN" --sqlite-path "$S/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$S/link.sock" --workers 1 --socket-user nobody >"$P/link.log" 2>&1 </dev/null
rc2=$?
check "socket: a regular file or a symlink at the socket path is refused (exit 2, 'not a socket') and left as it was" \
	"$([ $rc1 = 2 ] && [ $rc2 = 2 ] && grep -q 'exists and is not a socket' "$P/file.log" &&
		grep -q 'exists and is not a socket' "$P/link.log" && [ "$(cat "$S/file.sock")" = precious ] &&
		[ -L "$S/link.sock" ] && [ "$(mode_owner "$S/victim")" = "600 root:root" ]; echo $?)" \
	"exit statuses $rc1 $rc2" "$(cat "$P/file.log" "$P/link.log")" "$(ls -l "$S")"

# The race: the socket is swapped for a symlink to a root-only file after
# bind() (strace holds the process for a second right after bind returns)
# and before the server sets the owner and mode.
# LeakSanitizer cannot run under ptrace: off for this one run (sanitizer
# builds).
cat >"$S/race-victim" <<<"root only"
chmod 0600 "$S/race-victim"
bg "$P/race.log" env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -qq -o /dev/null -e trace=bind -e inject=bind:delay_exit=1500000 \
	"$BIN" --sqlite-path "$S/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$S/race.sock" --socket-mode 0666 --socket-user nobody --socket-group "$SOCK_GROUP" \
	--workers 1 --log-level debug
RACE=$LAST_BG
swapped=no
if wait_until 10 test -S "$S/race.sock"; then
	ln -s "$S/race-victim" "$S/race.tmp" && mv -T "$S/race.tmp" "$S/race.sock" && swapped=yes
fi
wait_until 10 eval '! alive $RACE || grep -q "database open" "$P/race.log"'
st=$(mode_owner "$S/race-victim")
check "socket: swapped for a symlink between bind and chown, the symlink's target is not chmod/chowned (still $st)" \
	"$([ "$swapped" = yes ] && [ "$st" = "600 root:root" ]; echo $?)" \
	"swapped: $swapped; victim now: $st (was 600 root:root)" "$(tail -n 5 "$P/race.log")"
wait_until 10 eval '! alive $RACE'
exit_of "$RACE"
check "socket: the swapped socket makes start-up fail (exit 2) and says why" \
	"$([ "$RC" = 2 ] && grep -q 'was replaced by another file' "$P/race.log"; echo $?)" \
	"$(tail -n 5 "$P/race.log")"
kill_tree "$RACE"

# --- configuration precedence ----------------------------------------------------

C=$P/prec
mkdir -p "$C"
cat >"$C/file.conf" <<EOF
sqlite-path = $C/file.sqlite
access-token = file-token-$TOKEN
workers = 3
log-level = debug
EOF
# prec NAME NWORKERS [ENV...] -- [ARGS...]: start with the file, the given
# environment and arguments; sets SRV once NWORKERS are up.
prec() {
	local name=$1 n=$2 envs=()
	shift 2
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	bg "$P/$name.log" env "${envs[@]}" "$BIN" --config "$C/file.conf" serve --allow-root \
		--listen "unix:$C/$name.sock" "$@"
	SRV=$LAST_BG
	wait_until 20 started "$n" "$P/$name.log"
}
# tokens SOCK: which of the three tokens are accepted, e.g. "file:200 env:401 cli:401"
tokens() {
	local t out=
	for t in file env cli; do out+="$t:$(fcgi "$1" "$t-token-$TOKEN") "; done
	echo "${out% }"
}
prec file 3 --
got="$(tokens "$C/file.sock") workers:$(workers "$SRV" "$P/file.log" | wc -l)"
stop_pid "$SRV"
check "precedence: the file alone (its token, its database, workers = 3): $got" \
	"$([ "$got" = "file:200 env:401 cli:401 workers:3" ] && [ -f "$C/file.sqlite" ]; echo $?)" "$(tail -n 3 "$P/file.log")"
prec env 3 DENO_KV_ACCESS_TOKEN="env-token-$TOKEN" DENO_KV_SQLITE_PATH="$C/env.sqlite" --
got="$(tokens "$C/env.sock")"
stop_pid "$SRV"
check "precedence: the environment beats the file (token and database): $got" \
	"$([ "$got" = "file:401 env:200 cli:401" ] && [ -f "$C/env.sqlite" ]; echo $?)" "$(tail -n 3 "$P/env.log")"
prec cli 2 DENO_KV_ACCESS_TOKEN="env-token-$TOKEN" DENO_KV_SQLITE_PATH="$C/env2.sqlite" -- \
	--access-token "cli-token-$TOKEN" --sqlite-path "$C/cli.sqlite" --workers 2
got="$(tokens "$C/cli.sock") workers:$(workers "$SRV" "$P/cli.log" | wc -l)"
stop_pid "$SRV"
check "precedence: the command line beats both (token, database, workers 2 over the file's 3): $got" \
	"$([ "$got" = "file:401 env:401 cli:200 workers:2" ] && [ -f "$C/cli.sqlite" ] && [ ! -e "$C/env2.sqlite" ]; echo $?)" \
	"$(tail -n 3 "$P/cli.log")"

# --- sqlite-synchronous as read back from each worker's connection ----------------

Y=$P/sync
mkdir -p "$Y"
srv sync-cli --sqlite-path "$Y/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$Y/cli.sock" --workers 2 --sqlite-synchronous off --log-level debug
wait_until 20 started 2 "$P/sync-cli.log"
levels=$(sed -n 's/^<7>worker\[[0-9]*\]: database open, synchronous=//p' "$P/sync-cli.log" | sort | uniq -c | tr -s ' ')
stop_pid "$SRV"
check "sqlite-synchronous off on the command line: PRAGMA synchronous reads off in both workers ($levels)" \
	"$([ "$levels" = " 2 off" ]; echo $?)" "$(cat "$P/sync-cli.log")"

# --- one instance through reloads: invalid file, fewer workers, a stuck retiree --

R=$P/reload
mkdir -p "$R"
# rconf WORKERS SYNC [EXTRA]: the instance's file, replaced atomically.
rconf() {
	printf '%s\n' "sqlite-path = $R/kv.sqlite" "access-token = $TOKEN" "allow-root = true" \
		"listen = unix:$R/r.sock" "workers = $1" "sqlite-synchronous = $2" "log-level = debug" \
		"shutdown-timeout = 1" ${3:+"$3"} >"$R/conf.tmp"
	mv "$R/conf.tmp" "$R/denokv.conf"
}
rconf 3 full
RLOG=$P/reload.log
srv reload --config "$R/denokv.conf" serve
M=$SRV
wait_until 20 started 3 "$RLOG"
gen1=$(pgrep -P "$M" | sort | tr '\n' ' ')
check "reload: the instance starts with 3 workers at synchronous=full" \
	"$([ "$(workers "$M" "$RLOG" | wc -l)" = 3 ] && [ "$(grep -c 'synchronous=full' "$RLOG")" = 3 ]; echo $?)" \
	"children: $gen1" "$(cat "$RLOG")"

# An invalid file: the reload is refused, the same processes serve on.
rconf 3 full "workers = abc"
kill -HUP "$M"
wait_until 10 grep -q 'reload failed' "$RLOG"
sleep 0.5
now=$(pgrep -P "$M" | sort | tr '\n' ' ')
code=$(fcgi "$R/r.sock" "$TOKEN")
check "SIGHUP with an invalid file: 'reload failed, keeping the running configuration' naming the line, same processes ($now), still serving (HTTP $code)" \
	"$(grep -q "reload failed, keeping the running configuration: $R/denokv.conf:9: workers" "$RLOG" &&
		[ "$now" = "$gen1" ] && [ "$code" = 200 ] && alive "$M"; echo $?)" "$(tail -n 5 "$RLOG")"

# Fewer workers and another synchronous level; one old worker is stopped
# (SIGSTOP) so that it outlives shutdown-timeout (1 s) after the reload.
STUCK=$(workers "$M" "$RLOG" | head -n 1)
kill -STOP "$STUCK"
rconf 1 normal
nlines=$(wc -l <"$RLOG")
kill -HUP "$M"
# gen1_gone: every process of the first generation has exited.
gen1_gone() { local c; for c in $gen1; do alive "$c" && return 1; done; return 0; }
wait_until 15 gen1_gone
left=
for c in $gen1; do alive "$c" && left+="$c "; done
check "reload: a retiring worker that outlives shutdown-timeout (stopped, pid $STUCK) is killed, and the rest of the old generation exits" \
	"$([ -z "$left" ] && tail -n +$((nlines + 1)) "$RLOG" | grep -q "retired process $STUCK still running .* killing it"; echo $?)" \
	"still running 15 s after SIGHUP: ${left:-none}" "$(tail -n +$((nlines + 1)) "$RLOG" | head -n 20)"
kill -CONT "$STUCK" 2>/dev/null
newlevels=$(tail -n +$((nlines + 1)) "$RLOG" | sed -n 's/^<7>worker\[[0-9]*\]: database open, synchronous=//p' | tr '\n' ' ')
check "reload: sqlite-synchronous = normal takes effect in the new worker (PRAGMA reads: $newlevels)" \
	"$([ "$newlevels" = "normal " ]; echo $?)" "$(tail -n +$((nlines + 1)) "$RLOG" | grep -E 'synchronous|reload' | head)"
sleep 1.5
kids=$(pgrep -P "$M" | tr '\n' ' ')
code=$(fcgi "$R/r.sock" "$TOKEN")
check "reload to 1 worker: exactly one worker and the housekeeper run afterwards ($kids), nothing respawned in the dropped slots, and it serves" \
	"$([ "$(wc -w <<<"$kids")" = 2 ] && [ "$(workers "$M" "$RLOG" | wc -l)" = 1 ] && [ "$code" = 200 ] &&
		! tail -n +$((nlines + 1)) "$RLOG" | grep -q 'crash loop'; echo $?)" "HTTP $code" "$(tail -n 8 "$RLOG")"
t0=$(ms_now)
kill -TERM "$M"
wait_until 12 eval '! alive $M'
t1=$(ms_now)
exit_of "$M"
rc=$RC
check "reload to fewer workers, then SIGTERM: the master exits 0 within shutdown-timeout + 1 s (took $((t1 - t0)) ms; allowed 2000 ms + 4 s of slack)" \
	"$([ "$rc" = 0 ] && [ $((t1 - t0)) -le 6000 ]; echo $?)" "exit status ${rc:-still running after 12 s}" "$(tail -n 8 "$RLOG")"
kill_tree "$M"

# --- SIGHUP and SIGTERM at once ----------------------------------------------------

# The new generation is told to stop while it is still starting: it must
# leave as a stop, not die of the signal (logged as a crash). Five rounds,
# since the moment is a race.
H=$P/hupterm
mkdir -p "$H"
deaths=0
bad=
for r in 1 2 3 4 5; do
	srv "hupterm$r" --sqlite-path "$H/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
		--listen "unix:$H/h.sock" --workers 4 --shutdown-timeout 1 --log-level debug
	M=$SRV
	wait_until 20 started 4 "$P/hupterm$r.log"
	t0=$(ms_now)
	kill -HUP "$M"
	kill -TERM "$M"
	wait_until 12 eval '! alive $M'
	t1=$(ms_now)
	exit_of "$M"
	[ "$RC" = 0 ] && [ $((t1 - t0)) -le 6000 ] || bad+="round $r: exit status ${RC:-still running} after $((t1 - t0)) ms; "
	deaths=$((deaths + $(grep -c 'killed by signal' "$P/hupterm$r.log")))
	kill_tree "$M"
done
check "SIGHUP then SIGTERM at once, 5 times: the master exits 0 within shutdown-timeout + 1 s and no child dies of the signal ($deaths signal deaths logged)" \
	"$([ -z "$bad" ] && [ "$deaths" = 0 ]; echo $?)" "${bad:-every round stopped in time}" \
	"$(grep -h 'killed by signal' "$P"/hupterm*.log | head -n 5)"

# --- fork failing during a reload --------------------------------------------------

# strace makes every fork of the master fail (EAGAIN, as a task limit
# would) while it is attached.
K=$P/fork
mkdir -p "$K"
srv fork --sqlite-path "$K/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$K/k.sock" --workers 2 --log-level debug
M=$SRV
wait_until 20 started 2 "$P/fork.log"
before=$(workers "$M" "$P/fork.log" | sort | tr '\n' ' ')
bg "$P/fork-strace.log" strace -qq -o /dev/null -p "$M" -e trace=clone,clone3 \
	-e inject=clone:error=EAGAIN -e inject=clone3:error=EAGAIN
STRACE=$LAST_BG
wait_until 10 grep -q '^TracerPid:[[:space:]]*[1-9]' "/proc/$M/status"
kill -HUP "$M"
wait_until 10 grep -q 'fork: ' "$P/fork.log"
sleep 0.5
during=$(workers "$M" "$P/fork.log" | sort | tr '\n' ' ')
code=$(fcgi "$K/k.sock" "$TOKEN")
stop_pid "$STRACE"
check "fork failing during a reload: the running workers are kept (${during:-none}; were $before), serve (HTTP $code), and the log says the reload failed" \
	"$([ "$during" = "$before" ] && [ "$code" = 200 ] &&
		grep -q 'reload failed, keeping the running configuration and workers' "$P/fork.log"; echo $?)" \
	"$(grep -v '^<7>' "$P/fork.log" | tail -n 6)"
kill -HUP "$M"
wait_until 20 started 4 "$P/fork.log"
wait_until 10 eval '[ "$(workers "$M" "$P/fork.log" | wc -l)" = 2 ]'
after=$(workers "$M" "$P/fork.log" | sort | tr '\n' ' ')
code=$(fcgi "$K/k.sock" "$TOKEN")
check "fork working again, the next reload starts a new generation ($after) that serves (HTTP $code)" \
	"$([ "$(wc -w <<<"$after")" = 2 ] && [ "$after" != "$before" ] && [ "$code" = 200 ]; echo $?)" \
	"$(tail -n 6 "$P/fork.log")"
stop_pid "$M"

# --- reloads faster than retirees finish ---------------------------------------------

# Every child holds process slots of the signal segment (room for 1024
# children) until it is reaped. With 256 workers and every old process stuck (SIGSTOP), four
# reloads in a row put more processes beside each new generation than
# there are slots: the retirees nearest their deadline must make room,
# or the new workers cannot start and the master gives up.
F=$P/room
mkdir -p "$F"
srv room --sqlite-path "$F/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$F/f.sock" --workers 256 --shutdown-timeout 300 --log-level debug
M=$SRV
wait_until 60 started 256 "$P/room.log"
for i in 1 2 3 4; do
	for c in $(pgrep -P "$M"); do kill -STOP "$c"; done
	kill -HUP "$M"
	wait_until 60 eval 'started $((256 * (i + 1))) "$P/room.log" || grep -q "giving up" "$P/room.log"'
done
sleep 0.5
opened=$(grep -c 'database open, synchronous=' "$P/room.log")
kids=$(pgrep -P "$M" | wc -l)
code=$(fcgi "$F/f.sock" "$TOKEN")
check "four reloads with 256 workers while every old process is stuck: all 1280 workers started ($opened), none short of a process slot, $kids children (at most 1024), the oldest retirees killed to make room, and it serves (HTTP $code)" \
	"$([ "$opened" = 1280 ] && [ "$kids" -le 1024 ] && alive "$M" && [ "$code" = 200 ] &&
		! grep -qE 'no free process slot|not restarting it|giving up' "$P/room.log" &&
		grep -q 'leave no room for a new generation: killing' "$P/room.log"; echo $?)" \
	"$(grep -E 'no free process slot|not restarting|giving up|leave no room|too many' "$P/room.log" | sort | uniq -c | sort -rn | head -n 6)"
kill_tree "$M"
wait "$M" 2>/dev/null

# --- shutdown-timeout expiring -----------------------------------------------------

T=$P/timeout
mkdir -p "$T"
srv timeout --sqlite-path "$T/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$T/t.sock" --workers 1 --shutdown-timeout 1 --log-level debug
M=$SRV
wait_until 20 started 1 "$P/timeout.log"
W=$(workers "$M" "$P/timeout.log")
bg "$P/hold.out" timeout 60 "$DENO" run -A --no-check --no-lock --quiet "$E2E_DIR/fcgi_client.ts" \
	"$T/t.sock" / "$TOKEN" hold
HOLD=$LAST_BG
wait_until 20 grep -q HOLDING "$P/hold.out"
sleep 0.5
t0=$(ms_now)
kill -TERM "$M"
wait_until 12 eval '! alive $M'
t1=$(ms_now)
exit_of "$M"
rc=$RC
check "shutdown-timeout 1 s with a request held open: the master exits 0 within timeout + 1 s (took $((t1 - t0)) ms; allowed 2000 ms + 4 s of slack), killing the worker" \
	"$([ "$rc" = 0 ] && [ $((t1 - t0)) -le 6000 ] && grep -q 'shutdown timeout: killing 1 remaining' "$P/timeout.log" &&
		! alive "$W"; echo $?)" "exit status ${rc:-still running}" "$(tail -n 6 "$P/timeout.log")" "$(cat "$P/hold.out")"
kill_tree "$M"
stop_pid "$HOLD"

# --- crash loop --------------------------------------------------------------------

L=$P/loop
mkdir -p "$L"
srv loop --sqlite-path "$L/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$L/l.sock" --workers 1 --log-level debug
M=$SRV
wait_until 20 started 1 "$P/loop.log"
# Kill each new worker as soon as it appears, six times: every death but
# perhaps the first (the first worker may have been up for a second
# already) is a quick one, well under the 1 s that counts as a crash loop.
# The restart delays are then 0, (0,) 100, 200, 400, 800 ms.
gaps=
for _ in $(seq 1 6); do
	w=$(workers "$M" "$P/loop.log" | head -n 1)
	[ -n "$w" ] || { wait_until 15 eval '[ -n "$(workers "$M" "$P/loop.log")" ]'; w=$(workers "$M" "$P/loop.log" | head -n 1); }
	t0=$(ms_now)
	kill -KILL "$w"
	wait_until 15 eval '[ -n "$(workers "$M" "$P/loop.log" | grep -vx "$w")" ]'
	gaps+="$(($(ms_now) - t0)) "
done
delays=$(sed -n 's/.*crash loop: \([0-9]*\) quick exits in a row, restarting in \([0-9]*\) ms/\1:\2/p' "$P/loop.log" | tr '\n' ' ')
last=$(awk '{print $NF}' <<<"$gaps")
check "crash loop: quick deaths are restarted with a doubling delay (logged n:ms: $delays; kill-to-replacement ms: $gaps)" \
	"$(grep -q 'crash loop: 3 quick exits in a row, restarting in 200 ms' "$P/loop.log" &&
		grep -q 'crash loop: 4 quick exits in a row, restarting in 400 ms' "$P/loop.log" && [ "$last" -ge 400 ]; echo $?)" \
	"(the counter resets when a worker lived 1 s; a very slow machine can cause that)" "$(tail -n 6 "$P/loop.log")"
sleep 1.5
code=$(fcgi "$L/l.sock" "$TOKEN")
check "crash loop: a worker that then stays up serves again (HTTP $code)" "$([ "$code" = 200 ]; echo $?)"
stop_pid "$M"

# --- a worker that cannot start: exit 2, not restarted; all of them: give up --

G=$P/giveup
mkdir -p "$G"
srv giveup --sqlite-path "$G/kv.sqlite" serve --access-token "$TOKEN" --allow-root \
	--listen "unix:$G/g.sock" --workers 2 --log-level debug
M=$SRV
wait_until 20 started 2 "$P/giveup.log"
# The running workers keep the old file open; a new one finds this.
mv "$G/kv.sqlite" "$G/kv.sqlite.real"
echo "this is not a database, and long enough to have a header to read....." >"$G/kv.sqlite"
first=$(workers "$M" "$P/giveup.log" | head -n 1)
kill -KILL "$first"
wait_until 10 grep -q 'not restarting it' "$P/giveup.log"
sleep 1
second=$(workers "$M" "$P/giveup.log" | head -n 1)
check "no restart: a worker that cannot open the database exits with status 2 and is not restarted; the other one serves on" \
	"$(grep -q 'worker [0-9]* exited with status 2' "$P/giveup.log" && grep -q 'not restarting it' "$P/giveup.log" &&
		[ "$(workers "$M" "$P/giveup.log" | wc -l)" = 1 ] && [ "$(fcgi "$G/g.sock" "$TOKEN")" = 200 ]; echo $?)" \
	"workers now: $(workers "$M" "$P/giveup.log" | tr '\n' ' ')" "$(tail -n 8 "$P/giveup.log")"
kill -KILL "$second"
wait_until 15 eval '! alive $M'
exit_of "$M"
rc=$RC
check "no restart: when no worker can start, the master gives up with exit status 1 and says so" \
	"$([ "$rc" = 1 ] && grep -q 'no worker could start; giving up' "$P/giveup.log"; echo $?)" \
	"exit status ${rc:-still running after 15 s}" "$(tail -n 6 "$P/giveup.log")"
kill_tree "$M"
SRV=

finish
