#!/usr/bin/env bash
# tls.sh: the shipped TLS recipes, end to end. Real nginx running
# nginx/tls-example.conf and real caddy running conf/Caddyfile.tls (each
# with only its port, host name, certificate paths and socket replaced), in
# front of the real server, driven over https:// by the real Deno CLI
# (DENO_CERT) and by @deno/kv in Node (NODE_EXTRA_CA_CERTS), with a
# throwaway CA made by tls_ca.sh. TAP on stdout.
#
# Cases, through each proxy:
#   - Deno.openKv and @deno/kv openKv on two databases of one server
#     under /kv/ (one URL with the trailing slash, one without): each its
#     own database; set/get/delete, an atomic check passing and failing,
#     a watch seeing another connection's write (tls_clients.test.ts,
#     tls_clients.test.mjs);
#   - a body over the proxy's 2 MB limit: 413 with the server's own
#     one-line text/plain, from Deno's fetch (HTTP/2), Node's fetch and
#     @deno/kv (HTTP/1.1) and curl (HTTP/2 and HTTP/1.1, with a length and
#     streamed);
#   - the server unreachable: 502 with a one-line text; nginx: also a 504
#     when it does not answer in time.
# For nginx, nginx/denokv-fcgi.conf is checked both ways a user may include
# it: inside a location (the recipe) and once at the server level.
# When tests/e2e/hosting.test.ts exists (several databases from [database]
# sections, on $RUN_DIR/hosting.sock, through the stack of run.sh), it runs
# once more through each proxy: the recipe rendered a second time, with
# /hosting in place of /kv, HOSTING_BASE_URL=https://localhost:PORT/hosting/
# and DENO_CERT.
#
# Environment (run.sh sets them): RUN_DIR, DENOKV_FCGI_BIN, DENOKV_SRCDIR,
# DENO, DENO_DIR; NODE, NGINX, CADDY choose those programs; KEEP=1 keeps
# the files.
# shellcheck disable=SC2317 # cleanup runs from a trap
set -u

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
DENOKV_SRCDIR=${DENOKV_SRCDIR:-$(cd "$E2E_DIR/../.." && pwd)}
BIN=${DENOKV_FCGI_BIN:-$DENOKV_SRCDIR/src/denokv-fcgi}
DENO=${DENO:-$DENOKV_SRCDIR/node_modules/.bin/deno}
NODE=${NODE:-node}
CADDY=${CADDY:-caddy}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
# shellcheck source=tests/e2e/proclib.sh
. "$E2E_DIR/proclib.sh"
# shellcheck source=scripts/ports.sh
. "$DENOKV_SRCDIR/scripts/ports.sh"
N=0
FAILED=0
OWN_RUN_DIR=0
if [ -z "${RUN_DIR:-}" ]; then
	RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/denokv-tls.XXXXXX") || exit 1
	OWN_RUN_DIR=1
fi
P=$RUN_DIR/tls
DENO_DIR=${DENO_DIR:-$RUN_DIR/deno-dir}
export DENO_DIR NO_COLOR=1
unset DENO_KV_ACCESS_TOKEN DENO_KV_SQLITE_PATH DENO_CERT NODE_EXTRA_CA_CERTS
TOKEN=tls-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
SRV="" NGINX_PID="" CADDY_PID="" SILENT_PID=""
# What the server answers to a body over its 1 MiB cap (src/err.h); the
# proxies must answer theirs with exactly this.
TOO_LARGE='Request body too large.'
UNREACHABLE='The database server is not reachable, try again later.'
TOO_SLOW='The database server did not answer in time, try again later.'

cleanup() {
	trap - EXIT INT TERM
	[ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID"
	[ -n "$CADDY_PID" ] && stop_pid "$CADDY_PID"
	[ -n "$SILENT_PID" ] && stop_pid "$SILENT_PID"
	[ -n "$SRV" ] && stop_pid "$SRV"
	wait 2>/dev/null
	if [ "$FAILED" != 0 ] || [ "${KEEP:-0}" = 1 ]; then
		echo "# files kept in $P"
	elif [ "$OWN_RUN_DIR" = 1 ]; then
		rm -rf "$RUN_DIR"
	else
		rm -rf "$P"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$P"

# tests/e2e/hosting.test.ts (several databases from [database] sections,
# started by itself on $RUN_DIR/hosting.sock through the stack of run.sh)
# runs once more through each TLS proxy, when it exists and the stack does.
HOSTING=0
HOSTING_SOCK=$RUN_DIR/hosting.sock
if [ -f "$E2E_DIR/hosting.test.ts" ]; then
	HOSTING=1
fi

# --- the server ---------------------------------------------------------------

# Two databases from [database] sections, at the mounts the recipes'
# /kv location serves: https://HOST/kv/alice and https://HOST/kv/bob.
SOCK=$P/kv.sock
start_server() {
	local asroot=
	[ "$(id -u)" = 0 ] && asroot=--allow-root
	(umask 077 && cat >"$P/kv.ini") <<EOF
workers = 2
listen = unix:$SOCK

[database alice]
path = $P/alice.sqlite
mount = /kv/alice
token = read-write $TOKEN

[database bob]
path = $P/bob.sqlite
mount = /kv/bob
token = read-write $TOKEN
EOF
	setsid "$BIN" --config "$P/kv.ini" serve $asroot </dev/null >>"$P/server.log" 2>&1 &
	SRV=$!
	wait_until 20 test -S "$SOCK"
}

# --- TLS material -------------------------------------------------------------

CA=$P/ca
"$E2E_DIR/tls_ca.sh" "$CA" >"$P/tls_ca.out" 2>&1
check "setup: tls_ca.sh makes a CA and a CA:FALSE certificate for localhost it signed" $? \
	"$(cat "$P/tls_ca.out")"
openssl x509 -in "$CA/cert.pem" -noout -text 2>/dev/null | grep -q 'CA:FALSE'
check "setup: the server certificate is not a CA (Deno refuses that: CaUsedAsEndEntity)" $?

start_server
check "setup: denokv-fcgi serves alice and bob on $SOCK" $? "$(tail -n 20 "$P/server.log")"

# --- nginx --------------------------------------------------------------------
#
# nginx.conf is the stand-in for Debian's /etc/nginx/nginx.conf (mime
# types, an octet-stream default, temp paths in the run directory) and
# includes the recipe as a site. Two more servers, for the test only,
# include the snippet at the server level and inside locations, in front of
# a socket nobody listens on and one whose listener never answers. They log
# to refusals.txt: the upstream errors they cause on purpose must not trip
# the run's tripwire, which reads *.log.

NG=$P/nginx
mkdir -p "$NG/tmp"

# render_recipe PORT SOCKET PREFIX: nginx/tls-example.conf for this run, on
# stdout, serving PREFIX (the recipe's /kv) from SOCKET.
render_recipe() {
	local port=$1 sock=$2 prefix=$3 src=$DENOKV_SRCDIR/nginx/tls-example.conf
	sed -e "s|^\( *\)listen 443 ssl http2;|\1listen 127.0.0.1:$port ssl http2;|" \
		-e '/^ *listen \[::\]:443 ssl http2;/d' \
		-e "s|server_name kv.example.com;|server_name localhost;|" \
		-e "s|/etc/ssl/denokv/|$CA/|g" \
		-e "s|include /etc/nginx/snippets/denokv-fcgi.conf;|include $NG/denokv-fcgi.conf;|" \
		-e "s|^\( *\)location /kv {|\1location $prefix {|" \
		-e "s|denokv_tls\b|denokv_tls${prefix//\//_}|" \
		-e "s|unix:/run/denokv-fcgi.sock;|unix:$sock;|" "$src"
}

render_nginx() {
	local user=
	[ "$(id -u)" = 0 ] && user="user $(id -un);"
	cp "$DENOKV_SRCDIR/nginx/denokv-fcgi.conf" "$NG/"
	cp /etc/nginx/fastcgi_params /etc/nginx/mime.types "$NG/"
	render_recipe "$NG_PORT" "$SOCK" /kv >"$NG/site.conf"
	if [ "$HOSTING" = 1 ]; then
		render_recipe "$NG_HOST_PORT" "$HOSTING_SOCK" /hosting >>"$NG/site.conf"
	fi
	cat >"$NG/nginx.conf" <<EOF
# written by tests/e2e/tls.sh
$user
worker_processes 2;
pid $NG/nginx.pid;
error_log $P/nginx-error.log info;
events { worker_connections 256; }
http {
    include mime.types;
    default_type application/octet-stream;
    access_log $P/nginx-access.log combined;
    client_body_temp_path $NG/tmp/body;
    fastcgi_temp_path $NG/tmp/fastcgi;
    proxy_temp_path $NG/tmp/proxy;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;

    # The recipe, as a site.
    include site.conf;

    # The snippet included once at the server level.
    server {
        listen 127.0.0.1:$NG_SRV_PORT ssl http2;
        server_name localhost;
        ssl_certificate $CA/cert.pem;
        ssl_certificate_key $CA/key.pem;
        error_log $P/refusals.txt info;
        include denokv-fcgi.conf;
        location /kv { fastcgi_pass unix:$SOCK; }
        location /down { fastcgi_pass unix:$P/nobody.sock; }
        location /slow { fastcgi_pass unix:$P/silent.sock; fastcgi_read_timeout 1s; }
    }

    # The snippet inside a location whose server is down.
    server {
        listen 127.0.0.1:$NG_LOC_PORT ssl http2;
        server_name localhost;
        ssl_certificate $CA/cert.pem;
        ssl_certificate_key $CA/key.pem;
        error_log $P/refusals.txt info;
        location /down {
            include denokv-fcgi.conf;
            fastcgi_pass unix:$P/nobody.sock;
        }
    }
}
EOF
}

start_nginx() {

	for _ in $(seq 1 "$PORT_TRIES"); do
		NG_PORT=$(pick_port) NG_SRV_PORT=$(pick_port "$NG_PORT")
		NG_LOC_PORT=$(pick_port "$NG_PORT" "$NG_SRV_PORT")
		NG_HOST_PORT=$(pick_port "$NG_PORT" "$NG_SRV_PORT" "$NG_LOC_PORT")
		render_nginx
		rm -f "$NG/nginx.pid"
		if "$NGINX" -p "$NG/" -c "$NG/nginx.conf" -e "$P/nginx-error.log" \
			</dev/null >"$NG/start.out" 2>&1; then
			wait_until 5 test -s "$NG/nginx.pid"
			NGINX_PID=$(cat "$NG/nginx.pid" 2>/dev/null)
			return 0
		fi
		port_bind_failed "$NG/start.out" || return 1
	done
	return 1
}

# unreplaced FILE...: the lines of a rendered recipe (comments aside) that
# still name the deployment the recipe was written for; a recipe edited so
# that the replacements above miss a line must fail here, not bind :443.
unreplaced() {
	grep -Hn -v '^[[:space:]]*#' "$@" |
		grep -E '443|kv\.example\.com|/etc/ssl/|/run/denokv-fcgi\.sock|/etc/nginx/snippets' || true
}

# A listener that takes connections and never answers: nginx's 504.
socat "UNIX-LISTEN:$P/silent.sock,fork" SYSTEM:'sleep 30' </dev/null >"$P/silent.out" 2>&1 &
SILENT_PID=$!

NG_PORT=0 NG_SRV_PORT=0 NG_LOC_PORT=0 NG_HOST_PORT=0 render_nginx
left=$(unreplaced "$NG/site.conf")
check "setup: nginx/tls-example.conf renders with every deployment-specific line replaced" \
	"$([ -z "$left" ]; echo $?)" "$left"
start_nginx
check "setup: nginx starts with nginx/tls-example.conf (TLS, HTTP/2) and the snippet at both levels" $? \
	"$(cat "$NG/start.out" 2>/dev/null)" "$(tail -n 5 "$P/nginx-error.log" 2>/dev/null)"

# --- caddy --------------------------------------------------------------------
#
# conf/Caddyfile.tls twice: in front of the server, and of a socket nobody
# listens on. The global block is the test's own: no admin endpoint, no
# automatic HTTPS (the certificate is given; nothing to obtain, no port 80).

CD=$P/caddy
mkdir -p "$CD"

# render_caddy_site ADDRESS SOCKET PREFIX: conf/Caddyfile.tls for this run.
render_caddy_site() {
	sed -e "s|^kv.example.com {|$1 {|" \
		-e "s|/etc/ssl/denokv/|$CA/|g" \
		-e "s,\(handle\|path\) /kv\*,\1 $3*," \
		-e "s|unix//run/denokv-fcgi.sock|unix/$2|" "$DENOKV_SRCDIR/conf/Caddyfile.tls"
}

start_caddy() {

	for _ in $(seq 1 "$PORT_TRIES"); do
		CD_PORT=$(pick_port "$NG_PORT" "$NG_SRV_PORT" "$NG_LOC_PORT" "$NG_HOST_PORT")
		CD_DOWN_PORT=$(pick_port "$NG_PORT" "$NG_SRV_PORT" "$NG_LOC_PORT" "$NG_HOST_PORT" "$CD_PORT")
		CD_HOST_PORT=$(pick_port "$NG_PORT" "$NG_SRV_PORT" "$NG_LOC_PORT" "$NG_HOST_PORT" "$CD_PORT" "$CD_DOWN_PORT")
		{
			printf '# written by tests/e2e/tls.sh from conf/Caddyfile.tls\n'
			printf '{\n\tadmin off\n\tauto_https off\n\tgrace_period 1s\n}\n\n'
			render_caddy_site "https://localhost:$CD_PORT" "$SOCK" /kv
			render_caddy_site "https://localhost:$CD_DOWN_PORT" "$P/nobody.sock" /kv
			# Any host name: the hosting suite routes by Host too (a
			# real site lists its names: "kv.example.com, a.example {").
			if [ "$HOSTING" = 1 ]; then
				render_caddy_site "https://:$CD_HOST_PORT" "$HOSTING_SOCK" /hosting
			fi
		} >"$CD/Caddyfile"
		: >"$CD/caddy.out"
		HOME=$CD XDG_DATA_HOME=$CD/data XDG_CONFIG_HOME=$CD/config \
			"$CADDY" run --config "$CD/Caddyfile" --adapter caddyfile </dev/null >"$CD/caddy.out" 2>&1 &
		CADDY_PID=$!
		if wait_until 20 caddy_up; then
			return 0
		fi
		stop_pid "$CADDY_PID"
		CADDY_PID=
		port_bind_failed "$CD/caddy.out" || return 1
	done
	return 1
}

caddy_up() {
	alive "$CADDY_PID" || return 1
	[ "$(metadata_status "https://localhost:$CD_PORT/kv/alice")" = 200 ]
}

# --- helpers ------------------------------------------------------------------

# metadata_status URL: the HTTP status of the metadata exchange at URL.
metadata_status() {
	curl -sS -m 5 --cacert "$CA/ca.pem" -o /dev/null -w '%{http_code}' -X POST \
		-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
		--data '{"supportedVersions":[1,2,3]}' "$1" 2>/dev/null || true
}

# answer CURL_ARGS...: "STATUS|CONTENT-TYPE|BODY" of one POST (the body's
# newlines as \n) through curl with the test CA.
answer() {
	local out
	out=$(curl -sS -m 30 --cacert "$CA/ca.pem" -o "$P/answer.body" \
		-w '%{http_code}|%{content_type}' -X POST -H "Authorization: Bearer $TOKEN" \
		-H 'Content-Type: application/x-protobuf' -H 'Expect:' "$@" \
		<"${ANSWER_STDIN:-/dev/null}" 2>"$P/answer.err")
	printf '%s|%s' "$out" "$(sed -z 's/\n/\\n/g' "$P/answer.body" 2>/dev/null)"
}

# expect_answer DESCRIPTION WANT CURL_ARGS...
expect_answer() {
	local desc=$1 want=$2 got
	shift 2
	got=$(answer "$@")
	if [ "$got" = "$want" ]; then
		tap ok "$desc"
	else
		tap not_ok "$desc" "want: $want" "got:  $got" "$(cat "$P/answer.err" 2>/dev/null)"
	fi
}

head -c 3000000 /dev/zero >"$P/3mb"

# refusals NAME ORIGIN: the proxy's 413 over HTTP/2 and HTTP/1.1, with a
# Content-Length and streamed, is the server's text.
refusals() {
	local name=$1 origin=$2 v mode
	for v in --http2 --http1.1; do
		expect_answer "$name: 3 MB with a Content-Length over ${v#--}: 413 and the server's one-line text" \
			"413|text/plain; charset=utf-8|$TOO_LARGE\\n" \
			"$v" --data-binary "@$P/3mb" "$origin/kv/alice/v2/atomic_write"
		mode=streamed
		[ "$v" = --http1.1 ] && mode=chunked
		ANSWER_STDIN=$P/3mb expect_answer \
			"$name: 3 MB $mode over ${v#--}: 413 and the server's one-line text" \
			"413|text/plain; charset=utf-8|$TOO_LARGE\\n" \
			"$v" -T - "$origin/kv/alice/v2/atomic_write"
	done
}

# clients NAME ORIGIN: the Deno CLI and @deno/kv through one proxy; their
# TAP test points become ours, prefixed with "clients".
clients() {
	local name=$1 origin=$2
	local urls="$origin/kv/alice $origin/kv/bob/"
	subsuite "$name: Deno CLI" env TLS_PROXY="$name" TLS_KV_URLS="$urls" TLS_ORIGIN="$origin" \
		DENO_KV_ACCESS_TOKEN="$TOKEN" DENO_CERT="$CA/ca.pem" \
		"$DENO" test --unstable-kv -A --no-check --no-lock --reporter=tap "$E2E_DIR/tls_clients.test.ts"
	subsuite "$name: @deno/kv in Node" env TLS_PROXY="$name" TLS_KV_URLS="$urls" TLS_ORIGIN="$origin" \
		DENO_KV_ACCESS_TOKEN="$TOKEN" NODE_EXTRA_CA_CERTS="$CA/ca.pem" \
		"$NODE" --test-reporter=tap "$E2E_DIR/tls_clients.test.mjs"
}

# hosting NAME BASE: tests/e2e/hosting.test.ts through one proxy, its Deno
# CLI and raw requests at BASE (https://localhost:PORT/hosting/), with a
# fresh directory of databases each time. Deno trusts the test CA through
# DENO_CERT, the suite's curl through CURL_CA_BUNDLE.
hosting() {
	local name=$1 base=$2
	if [ ! -f "$RUN_DIR/env" ]; then
		tap not_ok "$name: hosting suite: needs the stack of tests/e2e/run.sh" \
			"no $RUN_DIR/env: run this suite through run.sh (SUITES=tls)"
		return
	fi
	rm -rf "$RUN_DIR/hosting"
	SUBSUITE_TIMEOUT=300 subsuite "$name: hosting" env RUN_DIR="$RUN_DIR" \
		HOSTING_BASE_URL="$base" DENO_CERT="$CA/ca.pem" CURL_CA_BUNDLE="$CA/ca.pem" \
		"$DENO" test --unstable-kv -A --no-check --no-lock --reporter=tap "$E2E_DIR/hosting.test.ts"
}

# subsuite LABEL CMD...: run a TAP-printing test program; each top-level
# test point becomes one of ours. A program that reports nothing, fewer
# points than its plan, or fails without a failing point is a failure too.
# shellcheck disable=SC2094 # $out is only read inside the loop
subsuite() {
	local label=$1 out rc line count=0 plan=-1 fails=0
	shift
	out=$P/sub-$N.tap
	(cd "$E2E_DIR" && timeout -k 5 "${SUBSUITE_TIMEOUT:-180}" "$@") >"$out" 2>"$out.err" </dev/null
	rc=$?
	while IFS= read -r line; do
		line=${line%$'\r'}
		case $line in
		"ok "* | "not ok "*)
			count=$((count + 1))
			local desc=${line#* - }
			desc=${desc//#/\\#}
			if [ "${line%% *}" = ok ]; then
				tap ok "$label: $desc"
			else
				fails=$((fails + 1))
				tap not_ok "$label: $desc" "$(grep -v '^ok ' "$out" | tail -n 40)" "$(tail -n 20 "$out.err")"
			fi
			;;
		1..*) plan=${line#1..} ;;
		esac
	done <"$out"
	if [ "$count" = 0 ] || [ "$plan" != "$count" ] || { [ "$rc" != 0 ] && [ "$fails" = 0 ]; }; then
		tap not_ok "$label: ran all its test cases" "exit status $rc, $count test points, plan $plan" \
			"$(tail -n 30 "$out")" "$(tail -n 30 "$out.err")"
	fi
}

# --- through nginx --------------------------------------------------------------

if [ -n "$NGINX_PID" ]; then
	NG_URL=https://localhost:$NG_PORT
	code=$(metadata_status "$NG_URL/kv/alice")
	check "nginx: the metadata exchange over https://localhost:$NG_PORT/kv/alice answers 200" \
		"$([ "$code" = 200 ]; echo $?)" "status $code" "$(tail -n 5 "$P/nginx-error.log")"
	proto=$(curl -sS -m 5 --cacert "$CA/ca.pem" -o /dev/null -w '%{http_version}' -X POST \
		-H "Authorization: Bearer $TOKEN" --data '{"supportedVersions":[3]}' "$NG_URL/kv/alice" 2>&1)
	check "nginx: it offers HTTP/2 over TLS (curl negotiated $proto)" "$([ "$proto" = 2 ]; echo $?)"

	clients nginx "$NG_URL"
	refusals "nginx, snippet in a location" "$NG_URL"
	refusals "nginx, snippet at the server level" "https://localhost:$NG_SRV_PORT"
	for v in --http2 --http1.1; do
		expect_answer "nginx, snippet in a location: the server down, over ${v#--}: 502 and a one-line text" \
			"502|text/plain; charset=utf-8|$UNREACHABLE\\n" \
			"$v" --data-binary x "https://localhost:$NG_LOC_PORT/down/kv/alice"
		expect_answer "nginx, snippet at the server level: the server down, over ${v#--}: 502 and a one-line text" \
			"502|text/plain; charset=utf-8|$UNREACHABLE\\n" \
			"$v" --data-binary x "https://localhost:$NG_SRV_PORT/down/kv/alice"
	done
	expect_answer "nginx, snippet at the server level: no answer within fastcgi_read_timeout: 504 and a one-line text" \
		"504|text/plain; charset=utf-8|$TOO_SLOW\\n" \
		--data-binary x "https://localhost:$NG_SRV_PORT/slow/kv/alice"
	if [ "$HOSTING" = 1 ]; then
		hosting nginx "https://localhost:$NG_HOST_PORT/hosting/"
	fi
	code=$(curl -sS -m 5 --cacert "$CA/ca.pem" -o /dev/null -w '%{http_code}' -X POST \
		--data-binary x "$NG_URL/kv/alice.denokv-fcgi-413" 2>&1)
	check "nginx: the error pages are internal: asked for directly, one is a 404" \
		"$([ "$code" = 404 ]; echo $?)" "status $code"
else
	tap not_ok "nginx: not run (nginx did not start)"
fi

# --- through caddy --------------------------------------------------------------

CD_PORT=0 CD_DOWN_PORT=0 CD_HOST_PORT=0 render_caddy_site https://localhost:0 "$SOCK" /kv >"$CD/rendered"
left=$(unreplaced "$CD/rendered")
check "setup: conf/Caddyfile.tls renders with every deployment-specific line replaced" \
	"$([ -z "$left" ]; echo $?)" "$left"
start_caddy
check "setup: caddy starts with conf/Caddyfile.tls (TLS with the test certificate)" $? \
	"$(tail -n 15 "$CD/caddy.out" 2>/dev/null)"
if [ -n "$CADDY_PID" ]; then
	CD_URL=https://localhost:$CD_PORT
	clients caddy "$CD_URL"
	refusals caddy "$CD_URL"
	for v in --http2 --http1.1; do
		expect_answer "caddy: the server down, over ${v#--}: 502 and a one-line text" \
			"502|text/plain; charset=utf-8|$UNREACHABLE\\n" \
			"$v" --data-binary x "https://localhost:$CD_DOWN_PORT/kv/alice"
	done
	if [ "$HOSTING" = 1 ]; then
		hosting caddy "https://localhost:$CD_HOST_PORT/hosting/"
	fi
else
	tap not_ok "caddy: not run (caddy did not start)"
fi

# --- the end --------------------------------------------------------------------

alive "$SRV"
check "teardown: the server is still running" $? "$(tail -n 20 "$P/server.log")"
stop_pid "$SRV"
rc=$?
SRV=
check "teardown: the server stops on SIGTERM" $rc
finish
