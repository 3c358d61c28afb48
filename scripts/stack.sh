#!/usr/bin/env bash
# stack.sh: run denokv-fcgi behind nginx from one directory, without root
# paths or system services. Used by the end-to-end tests and for trying the
# server out by hand.
#
#   scripts/stack.sh start RUN_DIR
#       Render nginx/nginx.conf.in into RUN_DIR, start denokv-fcgi on
#       RUN_DIR/data/kv.sqlite (or $DB) and nginx, wait until the metadata
#       exchange answers 200 over HTTP/1.1, print the URLs and the token, and
#       write RUN_DIR/env (shell-sourceable).
#   scripts/stack.sh start-server RUN_DIR NAME
#       Start another denokv-fcgi (the main database, or $DB) on
#       RUN_DIR/NAME.sock, mounted at /NAME on the same nginx listeners;
#       writes RUN_DIR/NAME.env. Two instances on one file is a supported
#       setup (they share the database through SQLite).
#   scripts/stack.sh stop-server RUN_DIR NAME
#       Stop that instance and remove its location.
#   scripts/stack.sh stop RUN_DIR
#       Stop nginx and every denokv-fcgi started in RUN_DIR.
#   scripts/stack.sh status RUN_DIR
#       Print which processes are alive; exit 1 if any is not.
#
# Environment:
#   DENOKV_FCGI_BIN  the server binary (default: src/denokv-fcgi of this tree;
#                    this script builds nothing)
#   NGINX            nginx binary (default: nginx from PATH, or /usr/sbin/nginx)
#   H2C_PORT         HTTP/2 cleartext port for the Deno CLI (default 4512)
#   H1_PORT          HTTP/1.1 port for curl and Node (default 4513)
#                    Either may be "auto": a free port below the ephemeral
#                    range (scripts/ports.sh). A default that is taken is
#                    replaced the same way (with a note); a port set
#                    explicitly that is taken is an error. An automatic
#                    port lost to another program between the pick and
#                    nginx's bind() is picked again.
#   DB               database file (default RUN_DIR/data/kv.sqlite; for
#                    start-server: the main instance's database)
#   TOKEN            access token, at least 12 characters (default: generated
#                    by start; start-server reuses the main one)
#   READ_ONLY=1      start the instance with --read-only
#   SERVER_ARGS      more denokv-fcgi options (e.g. "--workers 4")
#   LOCATION_INCLUDE start-server: the FastCGI snippet the instance's
#                    location includes, relative to RUN_DIR (default
#                    denokv-fcgi.conf, the copy of nginx/denokv-fcgi.conf)
#   CONFIG           start-server: serve the databases of this configuration
#                    file (--config; its [database NAME] sections) instead
#                    of DB; TOKEN is then one of its tokens, for the check
#                    that the instance answers
#   UPSTREAM_KEEPALIVE=1  start-server: nginx reaches the instance through
#                    an upstream with a keepalive pool, as it does the main
#                    one (default: fastcgi_pass to its socket, no pool)
#   READY_PATH       start-server: the path whose metadata exchange tells
#                    that the instance is up (default /NAME/)
#   WAIT_SECS        how long to wait for readiness (default 20)
#
# Exit status: 0 on success; non-zero with a message on stderr otherwise.
# `stop` exits 1 when some process had already died or needed SIGKILL.
set -eu
set -o pipefail

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BIN=${DENOKV_FCGI_BIN:-$SRCDIR/src/denokv-fcgi}
WAIT_SECS=${WAIT_SECS:-20}

die() {
	printf 'stack.sh: %s\n' "$*" >&2
	exit 1
}

note() {
	printf 'stack.sh: %s\n' "$*" >&2
}

usage() {
	sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0" >&2
	exit 2
}

find_nginx() {
	if [ -n "${NGINX:-}" ]; then
		printf '%s\n' "$NGINX"
	elif command -v nginx >/dev/null 2>&1; then
		command -v nginx
	elif [ -x /usr/sbin/nginx ]; then
		printf '%s\n' /usr/sbin/nginx
	else
		die "nginx not found (install nginx or set NGINX)"
	fi
}

# alive PID: true if the process exists and is not a zombie.
alive() {
	local state
	[ -n "$1" ] || return 1
	kill -0 "$1" 2>/dev/null || return 1
	state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
	[ "$state" != Z ]
}

readpid() {
	if [ -f "$1" ]; then cat "$1" 2>/dev/null || true; fi
}

# stop_pid NAME PID: SIGTERM, wait up to 10 s, then SIGKILL. Returns 1 if the
# process was already gone or had to be killed.
stop_pid() {
	local what=$1 pid=$2
	if ! alive "$pid"; then
		note "$what (pid ${pid:-?}) was not running"
		return 1
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		alive "$pid" || return 0
		sleep 0.1
	done
	note "$what (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		alive "$pid" || break
		sleep 0.1
	done
	return 1
}

# shellcheck source=ports.sh
. "$SRCDIR/scripts/ports.sh"

# choose_ports: settle H2C_PORT and H1_PORT (see the header); sets
# PICK_H2C / PICK_H1 to 1 for a port this script chose, which may be
# chosen again if nginx loses it.
choose_ports() {
	PICK_H2C=0 PICK_H1=0
	if [ "${H2C_PORT:-}" = auto ]; then
		PICK_H2C=1
	elif [ -z "${H2C_PORT:-}" ]; then
		H2C_PORT=4512
		if port_listening "$H2C_PORT"; then
			note "port 4512 is in use; using another one for HTTP/2 (set H2C_PORT to choose)"
			PICK_H2C=1
		fi
	elif port_listening "$H2C_PORT"; then
		die "port $H2C_PORT is already in use (set H2C_PORT, or H2C_PORT=auto)"
	fi
	if [ "${H1_PORT:-}" = auto ]; then
		PICK_H1=1
	elif [ -z "${H1_PORT:-}" ]; then
		H1_PORT=4513
		if port_listening "$H1_PORT"; then
			note "port 4513 is in use; using another one for HTTP/1.1 (set H1_PORT to choose)"
			PICK_H1=1
		fi
	elif port_listening "$H1_PORT"; then
		die "port $H1_PORT is already in use (set H1_PORT, or H1_PORT=auto)"
	fi
	repick_ports
}

# repick_ports: new values for the ports this script chooses.
repick_ports() {
	if [ "$PICK_H2C" = 1 ]; then
		H2C_PORT=$(pick_port "${H1_PORT:-}") || die "no free TCP port found"
	fi
	if [ "$PICK_H1" = 1 ]; then
		H1_PORT=$(pick_port "$H2C_PORT") || die "no free TCP port found"
	fi
}

# start_nginx: render the configuration and start nginx, retrying on fresh
# ports when a chosen port was taken in the meantime. Sets npid (not in a
# subshell: a retry changes H2C_PORT / H1_PORT).
start_nginx() {
	local out=$RUN_DIR/nginx-start.out attempt
	for attempt in $(seq 1 "$PORT_TRIES"); do
		render
		"$NGINX_BIN" -t -q -p "$RUN_DIR/" -c "$RUN_DIR/nginx.conf" -e "$RUN_DIR/error.log" ||
			return 1
		rm -f "$RUN_DIR/nginx.pid"
		if nginx_cmd </dev/null >"$out" 2>&1; then
			rm -f "$out"
			for _ in $(seq 1 50); do
				[ -s "$RUN_DIR/nginx.pid" ] && break
				sleep 0.1
			done
			npid=$(readpid "$RUN_DIR/nginx.pid")
			return 0
		fi
		if [ $((PICK_H2C + PICK_H1)) = 0 ] || ! port_bind_failed "$out" ||
			[ "$attempt" = "$PORT_TRIES" ]; then
			cat "$out" >&2
			return 1
		fi
		note "port $H2C_PORT or $H1_PORT was taken meanwhile; trying others"
		repick_ports
	done
	return 1
}

check_name() {
	case $1 in
	server | nginx | kv | data | tmp | locations | upstreams | env | '') die "instance name '$1' is reserved" ;;
	esac
	printf '%s\n' "$1" | grep -Eq '^[a-z0-9][a-z0-9_-]{0,31}$' ||
		die "instance name '$1': use [a-z0-9][a-z0-9_-]*"
}

# metadata URL TOKEN OUTFILE [HEADERFILE]: POST the metadata exchange, print
# the HTTP status (000 if nothing answered).
metadata() {
	curl -sS -m 5 -o "$3" ${4:+-D "$4"} -w '%{http_code}' -X POST \
		-H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
		--data '{"supportedVersions":[1,2,3]}' "$1" 2>/dev/null || true
}

# wait_ready URL TOKEN PID LOG [INSTANCE]: wait until the metadata exchange
# at URL answers 200 (from INSTANCE's location if given).
wait_ready() {
	local url=$1 token=$2 pid=$3 log=$4 inst=${5:-} code=
	local body=$RUN_DIR/.probe.body hdr=$RUN_DIR/.probe.hdr
	for _ in $(seq 1 $((WAIT_SECS * 10))); do
		if ! alive "$pid"; then
			note "denokv-fcgi (pid $pid) exited during startup; last lines of $log:"
			tail -n 20 "$log" >&2 || true
			return 1
		fi
		code=$(metadata "$url" "$token" "$body" "$hdr")
		if [ "$code" = 200 ] &&
			{ [ -z "$inst" ] || grep -qi "^x-denokv-instance: $inst" "$hdr"; }; then
			rm -f "$body" "$hdr"
			return 0
		fi
		sleep 0.1
	done
	note "no 200 from the metadata exchange at $url after ${WAIT_SECS}s (last status $code):"
	cat "$body" >&2 2>/dev/null || true
	tail -n 20 "$log" >&2 || true
	tail -n 5 "$RUN_DIR/error.log" >&2 2>/dev/null || true
	return 1
}

# start_fcgi SOCKET DB TOKEN LOG PIDFILE: launch one denokv-fcgi.
start_fcgi() {
	local sock=$1 db=$2 token=$3 log=$4 pidfile=$5 ro='' asroot=
	[ -x "$BIN" ] || die "server binary $BIN not found or not executable (build it: make -C $SRCDIR)"
	[ "${READ_ONLY:-0}" = 1 ] && ro=--read-only
	# As root (the tests), keep the workers root: nginx's workers run as the
	# same user and the run directory is private to it.
	[ "$(id -u)" = 0 ] && asroot=--allow-root
	mkdir -p "$(dirname "$db")"
	rm -f "$sock"
	# The token goes through the environment, not argv (visible in ps).
	# In a session of its own (setsid execs in place: a child of a script
	# does not lead a process group), so that Ctrl-C in the terminal reaches
	# only the script that started it, which then stops it in order, rather
	# than the server directly.
	# shellcheck disable=SC2086
	if [ -n "${CONFIG:-}" ]; then
		# The file names the databases: a path or token from the
		# environment would be refused next to its sections.
		env -u DENO_KV_ACCESS_TOKEN -u DENO_KV_SQLITE_PATH \
			setsid "$BIN" --config "$CONFIG" serve \
			--listen "unix:$sock" $ro $asroot ${SERVER_ARGS:-} \
			</dev/null >>"$log" 2>&1 &
	else
		DENO_KV_ACCESS_TOKEN=$token setsid "$BIN" --sqlite-path "$db" serve \
			--listen "unix:$sock" $ro $asroot ${SERVER_ARGS:-} \
			</dev/null >>"$log" 2>&1 &
	fi
	printf '%s\n' "$!" >"$pidfile"
}

nginx_cmd() {
	"$NGINX_BIN" -p "$RUN_DIR/" -c "$RUN_DIR/nginx.conf" -e "$RUN_DIR/error.log" "$@"
}

# reload_nginx MASTER: `nginx -s reload`, then wait until every worker that
# ran before it has stopped accepting, and until those shutting down are
# gone. nginx starts the new workers, sleeps 100 ms and only then tells the
# old ones to quit; until then both accept, and an old one routes by the old
# configuration (a request for a just-mounted /NAME/ reaches the main
# instance, whose metadata carries another database id). A worker of an
# older configuration looks just like a new one until it is told, so the
# workers are told apart by their pids from before the reload.
reload_nginx() {
	local master=$1 old
	old=$(pgrep -P "$master" 2>/dev/null || true)
	nginx_cmd -s reload || return 1
	wait_told_to_quit "$master" "$old"
	wait_reload "$master"
}

# wait_told_to_quit MASTER PIDS: wait until none of PIDS is still a worker
# of MASTER that is not shutting down.
wait_told_to_quit() {
	local master=$1 old=$2 p now busy
	for _ in $(seq 1 200); do
		busy=0
		now=" $(pgrep -P "$master" 2>/dev/null | tr '\n' ' ') "
		for p in $old; do
			case $now in *" $p "*) ;; *) continue ;; esac
			if ! tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'shutting down'; then
				busy=1
			fi
		done
		[ $busy = 0 ] && return 0
		sleep 0.05
	done
	note "old nginx workers not told to quit after 10 s"
}

# wait_reload MASTER: wait until no old worker is still shutting down.
wait_reload() {
	local master=$1 p busy
	for _ in $(seq 1 100); do
		busy=0
		for p in $(pgrep -P "$master" 2>/dev/null || true); do
			if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'shutting down'; then
				busy=1
			fi
		done
		[ $busy = 0 ] && return 0
		sleep 0.1
	done
	note "old nginx workers still shutting down after 10 s"
}

render() {
	local user conf_dir src
	mkdir -p "$RUN_DIR/tmp" "$RUN_DIR/locations" "$RUN_DIR/upstreams" "$RUN_DIR/data"
	user=$(id -un)
	sed -e "s|@PREFIX@|$RUN_DIR|g" -e "s|@SOCKET@|$RUN_DIR/denokv.sock|g" \
		-e "s|@H2C_PORT@|$H2C_PORT|g" -e "s|@H1_PORT@|$H1_PORT|g" \
		-e "s|@USER@|$user|g" "$SRCDIR/nginx/nginx.conf.in" >"$RUN_DIR/nginx.conf.tmp"
	# Only a root master switches users; elsewhere the directive just warns.
	if [ "$(id -u)" != 0 ]; then
		sed -i '/^user /d' "$RUN_DIR/nginx.conf.tmp"
	fi
	mv "$RUN_DIR/nginx.conf.tmp" "$RUN_DIR/nginx.conf"
	cp "$SRCDIR/nginx/denokv-fcgi.conf" "$RUN_DIR/denokv-fcgi.conf"
	# fastcgi_params from nginx's own configuration directory.
	conf_dir=$("$NGINX_BIN" -V 2>&1 | sed -n 's/.*--conf-path=\([^ ]*\)\/[^/ ]*.*/\1/p')
	src=
	for d in "$conf_dir" /etc/nginx /usr/local/nginx/conf /usr/local/etc/nginx; do
		if [ -n "$d" ] && [ -f "$d/fastcgi_params" ]; then
			src=$d/fastcgi_params
			break
		fi
	done
	[ -n "$src" ] || die "fastcgi_params not found (looked in ${conf_dir:-?} and /etc/nginx)"
	cp "$src" "$RUN_DIR/fastcgi_params"
}

write_env() {
	# write_env FILE KEY VALUE ...: single-quoted shell assignments.
	local file=$1
	shift
	# It holds the token: owner only.
	(umask 077 && : >"$file.tmp")
	while [ $# -ge 2 ]; do
		case $2 in
		*"'"*) die "value for $1 contains a quote" ;;
		esac
		printf "%s='%s'\n" "$1" "$2" >>"$file.tmp"
		shift 2
	done
	mv "$file.tmp" "$file"
}

cmd_start() {
	local token db spid npid
	mkdir -p "$RUN_DIR"
	RUN_DIR=$(cd "$RUN_DIR" && pwd)
	if alive "$(readpid "$RUN_DIR/nginx.pid")" || alive "$(readpid "$RUN_DIR/server.pid")"; then
		die "a stack is already running in $RUN_DIR (stop it first)"
	fi
	choose_ports
	token=${TOKEN:-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')}
	[ ${#token} -ge 12 ] || die "TOKEN must be at least 12 characters"
	db=${DB:-$RUN_DIR/data/kv.sqlite}
	case $db in /*) ;; *) db=$PWD/$db ;; esac

	render
	"$NGINX_BIN" -t -q -p "$RUN_DIR/" -c "$RUN_DIR/nginx.conf" -e "$RUN_DIR/error.log" ||
		die "nginx -t refused $RUN_DIR/nginx.conf"

	# Interrupted half-way (Ctrl-C while waiting): stop what was started.
	trap 'cmd_stop >/dev/null 2>&1; exit 130' INT TERM
	start_fcgi "$RUN_DIR/denokv.sock" "$db" "$token" "$RUN_DIR/server.log" "$RUN_DIR/server.pid"
	spid=$(readpid "$RUN_DIR/server.pid")

	start_nginx || {
		stop_pid denokv-fcgi "$spid" || true
		die "nginx failed to start; see $RUN_DIR/error.log"
	}
	[ -n "$npid" ] || die "nginx wrote no pid file"

	if ! wait_ready "http://127.0.0.1:$H1_PORT/" "$token" "$spid" "$RUN_DIR/server.log"; then
		stop_pid nginx "$npid" || true
		stop_pid denokv-fcgi "$spid" || true
		die "stack did not come up"
	fi

	write_env "$RUN_DIR/env" \
		RUN_DIR "$RUN_DIR" \
		TOKEN "$token" \
		DENO_KV_ACCESS_TOKEN "$token" \
		DB "$db" \
		SOCKET "$RUN_DIR/denokv.sock" \
		H2C_PORT "$H2C_PORT" \
		H1_PORT "$H1_PORT" \
		H2C_URL "http://127.0.0.1:$H2C_PORT/" \
		H1_URL "http://127.0.0.1:$H1_PORT/" \
		H2C_KV_URL "http://127.0.0.1:$H2C_PORT/kv/" \
		H1_KV_URL "http://127.0.0.1:$H1_PORT/kv/" \
		SERVER_PID "$spid" \
		NGINX_PID "$npid"

	banner "$db" "$token"
}

# banner DB TOKEN: what a newcomer needs, ready to paste: the URLs, the
# token, a Deno command that works from any directory (the Deno CLI the
# setup installs is not on PATH), a curl call, and how to stop.
banner() {
	local deno=deno
	command -v deno >/dev/null 2>&1 || deno=$SRCDIR/node_modules/.bin/deno
	cat <<EOF
denokv-fcgi is up on 127.0.0.1 only (database $1)
  Deno CLI (HTTP/2 cleartext): http://127.0.0.1:$H2C_PORT/   (also /kv/)
  HTTP/1.1 (curl, @deno/kv):   http://127.0.0.1:$H1_PORT/   (also /kv/)
DENO_KV_ACCESS_TOKEN=$2
Try it:
  DENO_KV_ACCESS_TOKEN=$2 $deno run --unstable-kv -A $SRCDIR/examples/app.ts http://127.0.0.1:$H2C_PORT/
  curl -sS -X POST -H 'Authorization: Bearer $2' -H 'Content-Type: application/json' --data '{"supportedVersions":[1,2,3]}' http://127.0.0.1:$H1_PORT/
Settings (ports, token): $RUN_DIR/env
Stop with: $SRCDIR/scripts/stack.sh stop $RUN_DIR
EOF
}

load_env() {
	[ -f "$RUN_DIR/env" ] || die "no stack in $RUN_DIR (run: $0 start $RUN_DIR)"
	# shellcheck disable=SC1091
	. "$RUN_DIR/env"
}

cmd_start_server() {
	local name=$1 token db spid npid main_db pass
	check_name "$name"
	# DB and TOKEN from the caller win over the main instance's.
	local want_db=${DB:-} want_token=${TOKEN:-}
	load_env
	main_db=$DB
	db=${want_db:-$main_db}
	case $db in /*) ;; *) db=$PWD/$db ;; esac
	token=${want_token:-$TOKEN}
	[ ${#token} -ge 12 ] || die "TOKEN must be at least 12 characters"
	npid=${NGINX_PID:-}
	alive "$npid" || die "nginx of $RUN_DIR is not running"
	if alive "$(readpid "$RUN_DIR/$name.pid")"; then
		die "instance $name is already running"
	fi
	: >>"$RUN_DIR/$name.log"
	start_fcgi "$RUN_DIR/$name.sock" "$db" "$token" "$RUN_DIR/$name.log" "$RUN_DIR/$name.pid"
	spid=$(readpid "$RUN_DIR/$name.pid")
	pass=unix:$RUN_DIR/$name.sock
	if [ "${UPSTREAM_KEEPALIVE:-}" = 1 ]; then
		pass=instance_$name
		cat >"$RUN_DIR/upstreams/$name.conf" <<EOF
upstream $pass {
    server unix:$RUN_DIR/$name.sock;
    keepalive 8;
}
EOF
	fi
	cat >"$RUN_DIR/locations/$name.conf" <<EOF
# instance $name (scripts/stack.sh start-server)
location /$name {
    include ${LOCATION_INCLUDE:-denokv-fcgi.conf};
    fastcgi_pass $pass;
    add_header X-Denokv-Instance $name always;
}
EOF
	if ! nginx_cmd -t -q || ! reload_nginx "$npid"; then
		rm -f "$RUN_DIR/locations/$name.conf" "$RUN_DIR/upstreams/$name.conf"
		stop_pid "denokv-fcgi $name" "$spid" || true
		die "nginx refused the configuration for $name"
	fi
	if ! wait_ready "http://127.0.0.1:$H1_PORT${READY_PATH:-/$name/}" "$token" "$spid" "$RUN_DIR/$name.log" "$name"; then
		rm -f "$RUN_DIR/locations/$name.conf" "$RUN_DIR/upstreams/$name.conf"
		reload_nginx "$npid" || true
		stop_pid "denokv-fcgi $name" "$spid" || true
		die "instance $name did not come up"
	fi
	wait_reload "$npid"
	write_env "$RUN_DIR/$name.env" \
		NAME "$name" \
		TOKEN "$token" \
		DB "$db" \
		SOCKET "$RUN_DIR/$name.sock" \
		PID "$spid" \
		H2C_URL "http://127.0.0.1:$H2C_PORT/$name/" \
		H1_URL "http://127.0.0.1:$H1_PORT/$name/" \
		LOG "$RUN_DIR/$name.log"
	cat <<EOF
instance $name is up (database $db)
  Deno CLI (HTTP/2 cleartext): http://127.0.0.1:$H2C_PORT/$name/
  HTTP/1.1 (curl, @deno/kv):   http://127.0.0.1:$H1_PORT/$name/
DENO_KV_ACCESS_TOKEN=$token
EOF
}

cmd_stop_server() {
	local name=$1 rc=0
	check_name "$name"
	load_env
	if [ -f "$RUN_DIR/locations/$name.conf" ]; then
		rm -f "$RUN_DIR/locations/$name.conf" "$RUN_DIR/upstreams/$name.conf"
		if alive "$NGINX_PID"; then
			reload_nginx "$NGINX_PID" || rc=1
		fi
	fi
	[ -f "$RUN_DIR/$name.pid" ] || die "no instance $name in $RUN_DIR"
	stop_pid "denokv-fcgi $name" "$(readpid "$RUN_DIR/$name.pid")" || rc=1
	rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.sock" "$RUN_DIR/$name.env"
	return $rc
}

cmd_stop() {
	local rc=0 f name
	[ -d "$RUN_DIR" ] || die "no such directory: $RUN_DIR"
	if [ -f "$RUN_DIR/nginx.pid" ]; then
		stop_pid nginx "$(readpid "$RUN_DIR/nginx.pid")" || rc=1
		rm -f "$RUN_DIR/nginx.pid"
	fi
	for f in "$RUN_DIR"/*.pid; do
		[ -f "$f" ] || continue
		name=$(basename "$f" .pid)
		stop_pid "denokv-fcgi $name" "$(readpid "$f")" || rc=1
		rm -f "$f"
		rm -f "$RUN_DIR/locations/$name.conf" "$RUN_DIR/upstreams/$name.conf"
	done
	rm -f "$RUN_DIR/denokv.sock" "$RUN_DIR"/*.sock
	return $rc
}

cmd_status() {
	local rc=0 f name pid
	for f in "$RUN_DIR"/*.pid; do
		[ -f "$f" ] || continue
		name=$(basename "$f" .pid)
		pid=$(readpid "$f")
		if alive "$pid"; then
			echo "$name: running (pid $pid)"
		else
			echo "$name: NOT running (pid ${pid:-?})"
			rc=1
		fi
	done
	return $rc
}

[ $# -ge 2 ] || usage
CMD=$1
RUN_DIR=$2
NGINX_BIN=$(find_nginx)
case $CMD in
start)
	[ $# -eq 2 ] || usage
	cmd_start
	;;
start-server)
	[ $# -eq 3 ] || usage
	RUN_DIR=$(cd "$RUN_DIR" && pwd)
	cmd_start_server "$3"
	;;
stop-server)
	[ $# -eq 3 ] || usage
	RUN_DIR=$(cd "$RUN_DIR" && pwd)
	cmd_stop_server "$3"
	;;
stop)
	[ $# -eq 2 ] || usage
	RUN_DIR=$(cd "$RUN_DIR" && pwd)
	cmd_stop
	;;
status)
	[ $# -eq 2 ] || usage
	RUN_DIR=$(cd "$RUN_DIR" && pwd)
	cmd_status
	;;
*)
	usage
	;;
esac
