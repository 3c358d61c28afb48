# ports.sh: TCP port choice for every script that starts a listener
# (scripts/stack.sh, tests/e2e, bench). Sourced, not run.
#
# nginx and caddy cannot be told to bind port 0 and report what they got,
# so a script picks a port itself. Two rules keep that from colliding:
#   - ports come from 10000-32767, below Linux's ephemeral range
#     (net.ipv4.ip_local_port_range, 32768-60999 by default), so the
#     kernel never hands one to an outgoing connection;
#   - a port that is free when picked can still be taken by another run
#     before our server binds it, so whoever starts the server retries on
#     a fresh port when the bind fails ("Address already in use", see
#     port_bind_failed) instead of failing the run.

PORT_MIN=${PORT_MIN:-10000}
PORT_SPAN=${PORT_SPAN:-22768}	# PORT_MIN .. 32767 (both overridable for tests)
PORT_TRIES=10	# start attempts before giving up

# port_listening PORT: true if something listens on PORT (any address).
port_listening() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# port_listening_by PORT PID: true if process PID itself listens on PORT
# (not some other program that took it). Needs ss (iproute2).
port_listening_by() {
	ss -Hltnp "sport = :$1" 2>/dev/null | grep -q "pid=$2,"
}

# pick_port [PORT...]: print a port nothing listens on, other than those
# given. Fails only if 200 random picks were all taken.
pick_port() {
	local p q taken
	for _ in $(seq 1 200); do
		p=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
		taken=0
		for q in "$@"; do [ "$q" = "$p" ] && taken=1; done
		[ $taken = 1 ] && continue
		port_listening "$p" && continue
		echo "$p"
		return 0
	done
	return 1
}

# port_bind_failed FILE...: true if a server's output says it lost a port
# to someone else (nginx, caddy and the kernel all word it this way).
port_bind_failed() {
	grep -qs 'Address already in use' "$@"
}
