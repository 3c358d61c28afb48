#!/usr/bin/env bash
# process.sh: the process model of denokv-fcgi, end to end, as root: socket
# activation, sd_notify, privilege drop, worker supervision, reload, stop and
# configuration errors. TAP on stdout (`ok N - ...`, then the plan),
# diagnostics as `# ` lines; exit status non-zero if any test failed.
#
# It runs its own instance, separate from run.sh's main stack, in
# $RUN_DIR/process/:
#
#   systemd-socket-activate -l x.sock --fdname=fcgi -E NOTIFY_SOCKET=notify.sock \
#       denokv-fcgi serve --config denokv.conf        (user = nobody)
#   nginx (nginx/nginx.conf.in rendered on two free ports) -> x.sock
#   socat -u -v UNIX-RECV:notify.sock                 (sd_notify listener)
#
# and drives it with small Deno scripts written into that directory: a KV
# client write load over h2c (the Deno CLI) that logs every acknowledged
# write, and a raw HTTP/1.1 load (fetch + hand-encoded protobuf) that counts
# every status code. Acknowledged writes are checked in the database file
# with sqlite3 (run as the service user), independently of the server.
# Reloads and the stop also run under "pressure": wrk with 48 connections
# of atomic writes, so that a connection is always waiting on the
# socket (a light load lets workers fall idle between requests, which would
# hide a worker that notices SIGTERM only when idle).
#
# Cases:
#   - refusals at start-up: root without a user (exit 2, clear message); a
#     database directory the target user cannot write (exit 2, named);
#   - configuration errors: unknown key and bad values name file:line and
#     the key; --check-config exits 0 / 2;
#   - socket activation: nothing runs before the first connection; the
#     first connection starts the server, which serves on the socket handed
#     over as fd 3 ("systemd socket (fd 3)") and creates no socket of its own;
#   - sd_notify: READY=1 and STATUS= at start, RELOADING=1 then READY=1 on
#     SIGHUP, STOPPING=1 on SIGTERM;
#   - privileges: master and every child run as nobody:nogroup (all four
#     Uid/Gid fields), with nobody's supplementary groups and no
#     capabilities (CapEff, CapPrm, CapInh, CapAmb all 0);
#   - kill -9 of a worker during a write load: replaced within 10 s, the
#     client sees no failure, every acknowledged write is in the database;
#   - SIGHUP (worker count and log level changed) under a raw HTTP/1.1
#     load and pressure: the old generation is gone within 5 s and not one
#     request fails;
#   - SIGHUP with a new access token, under pressure: the old generation is
#     gone within 5 s; new metadata exchanges and data-path requests accept
#     the new token and refuse the old one with 401;
#   - SIGTERM during a write load and pressure: the master exits 0 within
#     5 s (in-flight requests take milliseconds; the shutdown timeout is
#     10 s) without killing anyone, every acknowledged write is in the
#     database, systemd's socket file is left in place.
#
# Environment (run.sh sets them; defaults allow running it alone as root):
#   RUN_DIR          directory to work in (default: a new temporary one)
#   DENOKV_FCGI_BIN  server binary (default: $DENOKV_SRCDIR/src/denokv-fcgi)
#   DENOKV_SRCDIR    repository root (default: two levels above this script)
#   DENO, DENO_DIR   Deno CLI (default: $DENOKV_SRCDIR/node_modules/.bin/deno)
#   TARGET_USER      user to drop to (default nobody); TARGET_GROUP (default:
#                    the user's primary group)
#
# It kills and replaces workers on purpose (run.sh's crash tripwire,
# tests/e2e/tripwire_lib.sh, lets that pass):
# tripwire-allow: process-model

# SC2016: the conditions given to `wait_until ... eval '...'` are meant to be
# expanded at each poll. SC2317: functions run from traps and wait_until.
# shellcheck disable=SC2016,SC2317
set -u

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
DENOKV_SRCDIR=${DENOKV_SRCDIR:-$(cd "$SCRIPT_DIR/../.." && pwd)}
DENOKV_SRCDIR=$(cd "$DENOKV_SRCDIR" && pwd)
DENOKV_FCGI_BIN=${DENOKV_FCGI_BIN:-$DENOKV_SRCDIR/src/denokv-fcgi}
DENO=${DENO:-$DENOKV_SRCDIR/node_modules/.bin/deno}
TARGET_USER=${TARGET_USER:-nobody}
OWN_RUN_DIR=0
if [ -z "${RUN_DIR:-}" ]; then
	RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/denokv-process.XXXXXX") || {
		echo "Bail out! cannot make a temporary directory"
		exit 1
	}
	OWN_RUN_DIR=1
fi
RUN_DIR=$(cd "$RUN_DIR" && pwd)
DENO_DIR=${DENO_DIR:-$RUN_DIR/deno-dir}
export DENO_DIR NO_COLOR=1
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
# The server must get its token from the config file only.
unset DENO_KV_ACCESS_TOKEN DENO_KV_SQLITE_PATH

P=$RUN_DIR/process
TOKEN1=process-token-one-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
TOKEN2=process-token-two-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')

# tap, check, diag, ms_now, alive, wait_until, free_port, bg, stop_pid, finish
# shellcheck source=tests/e2e/proclib.sh
. "$SCRIPT_DIR/proclib.sh"
# Ports below the ephemeral range, picked again if lost (scripts/ports.sh).
# shellcheck source=../../scripts/ports.sh
. "$DENOKV_SRCDIR/scripts/ports.sh"
N=0
FAILED=0

# --- bookkeeping and cleanup ---------------------------------------------------

MASTER=         # systemd-socket-activate, later the denokv-fcgi master
NGINX_PID=
RUN_DIR_MODE=

cleanup() {
	local p c kids=()
	trap - EXIT INT TERM
	# The server's children follow the master (PDEATHSIG), but be sure.
	if [ -n "$MASTER" ]; then
		# shellcheck disable=SC2207
		kids=($(pgrep -P "$MASTER" 2>/dev/null))
	fi
	for ((i = ${#BG_PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${BG_PIDS[$i]}"
	done
	for c in "${kids[@]}"; do stop_pid "$c"; done
	if [ -n "$NGINX_PID" ]; then stop_pid "$NGINX_PID"; fi
	wait 2>/dev/null
	[ -n "$RUN_DIR_MODE" ] && chmod "$RUN_DIR_MODE" "$RUN_DIR"
	if [ "$OWN_RUN_DIR" = 1 ] && [ "$FAILED" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
		rm -rf "$RUN_DIR"
	elif [ "$FAILED" != 0 ] || [ "${KEEP:-0}" = 1 ]; then
		echo "# files kept in $P"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites -------------------------------------------------------------

missing=()
for tool in systemd-socket-activate socat sqlite3 curl wrk pgrep ss setpriv nginx; do
	command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
[ -x "$DENOKV_FCGI_BIN" ] || missing+=("server binary $DENOKV_FCGI_BIN")
"$DENO" --version >/dev/null 2>&1 || missing+=("Deno CLI at $DENO")
[ "$(id -u)" = 0 ] || missing+=("root (this suite starts the server as root and checks the drop)")
if ! TARGET_UID=$(id -u "$TARGET_USER" 2>/dev/null); then
	missing+=("user $TARGET_USER")
fi
if [ ${#missing[@]} -gt 0 ]; then
	tap not_ok "setup: prerequisites available" "missing: ${missing[*]}" \
		"(scripts/setup-deps.sh installs systemd, sqlite3, curl, procps, iproute2, nginx; socat: apt-get install socat)"
	finish
fi
TARGET_GROUP=${TARGET_GROUP:-$(id -gn "$TARGET_USER")}
TARGET_GID=$(getent group "$TARGET_GROUP" | cut -d: -f3)
TARGET_GROUPS=$(id -G "$TARGET_USER" | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
tap ok "setup: prerequisites available (socket activation, socat, sqlite3, procps, Deno; dropping to $TARGET_USER:$TARGET_GROUP, uid $TARGET_UID gid $TARGET_GID)"

as_target() { setpriv --reuid="$TARGET_UID" --regid="$TARGET_GID" --init-groups -- "$@"; }

# The run directory is private to root (mktemp): let the service user
# traverse it (not list it) while this suite runs.
RUN_DIR_MODE=$(stat -c %a "$RUN_DIR")
chmod o+x "$RUN_DIR"
rm -rf "$P"
mkdir -p "$P" "$P/data" "$P/refuse" "$P/rootonly" "$P/nginx/locations" "$P/nginx/tmp" "$P/conf"
chmod 0711 "$P"
chown "$TARGET_UID:$TARGET_GID" "$P/data"
chmod 0700 "$P/data"
chmod 0755 "$P/rootonly"
if ! as_target test -w "$P/data"; then
	tap not_ok "setup: $TARGET_USER can reach $P/data" \
		"some directory above $P is not searchable by $TARGET_USER: $(namei -m "$P/data" 2>&1 | tail -n +2 | tr '\n' ';')"
	finish
fi
DB=$P/data/kv.sqlite

# --- the Deno scripts ------------------------------------------------------------

# kvload.ts URL TAG CONCURRENCY ACKFILE STOPFILE [verify]
# Writes through the Deno KV client until STOPFILE exists: one sequential
# writer (one set at a time), CONCURRENCY concurrent writers, and one
# writer committing five keys per atomic operation. After each
# acknowledged commit it appends "KEYHEX VALHEX NAME" per key to ACKFILE
# (unbuffered, so the file survives the process being killed). With
# "verify" it reads every acknowledged key back at the end.
cat >"$P/kvload.ts" <<'EOF'
const [url, tag, concStr, ackPath, stopPath, mode] = Deno.args;
const enc = new TextEncoder();
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("").toUpperCase();
// Tuple encoding of a string part: 0x02, UTF-8 with 0x00 escaped, 0x00.
function keyBytes(parts: string[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    out.push(0x02);
    for (const b of enc.encode(p)) {
      out.push(b);
      if (b === 0) out.push(0xff);
    }
    out.push(0x00);
  }
  return new Uint8Array(out);
}
function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: number | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, rej) => t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms)),
  ]).finally(() => clearTimeout(t));
}
const kv = await Deno.openKv(url);
const ack = Deno.openSync(ackPath, { append: true, create: true });
let stopping = false, acked = 0, errors = 0;
const errs: string[] = [];
const names: string[] = [];
const poll = setInterval(() => {
  try {
    Deno.statSync(stopPath);
    stopping = true;
  } catch { /* not yet */ }
}, 20);
function logAck(batch: string[]) {
  let s = "";
  for (const n of batch) {
    s += `${hex(keyBytes(["proc", tag, n]))} ${hex(enc.encode("v-" + n))} ${n}\n`;
    names.push(n);
  }
  ack.writeSync(enc.encode(s));
  acked += batch.length;
}
async function writer(id: string, batch: number) {
  for (let seq = 0; !stopping; seq++) {
    const batchNames: string[] = [];
    for (let j = 0; j < batch; j++) batchNames.push(`${id}-${seq}-${j}`);
    try {
      let r: Deno.KvCommitResult | Deno.KvCommitError;
      if (batch === 1) {
        r = await deadline(kv.set(["proc", tag, batchNames[0]], enc.encode("v-" + batchNames[0])), 20000, `set ${id}`);
      } else {
        const op = kv.atomic();
        for (const n of batchNames) op.set(["proc", tag, n], enc.encode("v-" + n));
        r = await deadline(op.commit(), 20000, `atomic ${id}`);
      }
      if (!r.ok) throw new Error(`commit ${id}-${seq} not ok`);
      logAck(batchNames);
    } catch (e) {
      errors++;
      if (errs.length < 5) errs.push(String(e));
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
// A first write proves the client can talk to the server at all.
await deadline(kv.set(["proc", tag, "hello"], enc.encode("v-hello")), 20000, "first set");
logAck(["hello"]);
console.log("STARTED");
const conc = Number(concStr);
const ws = [writer("s", 1), writer("b", 5)];
for (let i = 0; i < conc; i++) ws.push(writer(`c${i}`, 1));
await Promise.all(ws);
clearInterval(poll);
let missing = 0, mismatched = 0;
const examples: string[] = [];
if (mode === "verify") {
  for (let i = 0; i < names.length; i += 10) {
    const chunk = names.slice(i, i + 10);
    const got = await deadline(kv.getMany<Uint8Array[]>(chunk.map((n) => ["proc", tag, n])), 20000, "read back");
    got.forEach((e, j) => {
      if (e.value === null) {
        missing++;
        if (examples.length < 5) examples.push(`missing ${chunk[j]}`);
      } else if (new TextDecoder().decode(e.value as Uint8Array) !== "v-" + chunk[j]) {
        mismatched++;
        if (examples.length < 5) examples.push(`wrong value for ${chunk[j]}`);
      }
    });
  }
}
console.log(`RESULT acked=${acked} errors=${errors} missing=${missing} mismatched=${mismatched}`);
for (const e of errs) console.log(`ERROR ${e}`);
for (const e of examples) console.log(`EXAMPLE ${e}`);
kv.close();
Deno.exit(0);
EOF

# raw.ts BASE_URL TOKEN CONCURRENCY STOPFILE MARKFILE
# HTTP/1.1 load without the KV client (fetch does not retry): a metadata
# exchange, then CONCURRENCY loops of atomic_write + snapshot_read of the
# key just written, until STOPFILE exists. Counts every status code, every
# network error and every 200 whose body is wrong, and the requests
# started after MARKFILE appeared.
cat >"$P/raw.ts" <<'EOF'
const [base, token, concStr, stopPath, markPath] = Deno.args;
const enc = new TextEncoder();
function varint(n: number, out: number[]) {
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n >>>= 7; }
  out.push(n);
}
function field(no: number, bytes: Uint8Array | number[], out: number[]) {
  varint((no << 3) | 2, out); varint(bytes.length, out); out.push(...bytes);
}
function fieldInt(no: number, v: number, out: number[]) { varint(no << 3, out); varint(v, out); }
function keyBytes(parts: string[]): number[] {
  const out: number[] = [];
  for (const p of parts) { out.push(0x02, ...enc.encode(p), 0x00); }
  return out;
}
function writeBody(key: number[], val: Uint8Array): Uint8Array {
  const kvv: number[] = []; field(1, val, kvv); fieldInt(2, 3, kvv);       // KvValue{data, VE_BYTES}
  const m: number[] = []; field(1, key, m); field(2, kvv, m); fieldInt(3, 1, m); // Mutation M_SET
  const aw: number[] = []; field(2, m, aw);
  return new Uint8Array(aw);
}
function readBody(key: number[]): Uint8Array {
  const r: number[] = []; field(1, key, r); field(2, [...key, 0], r); fieldInt(3, 1, r);
  const sr: number[] = []; field(1, r, sr);
  return new Uint8Array(sr);
}
// Top-level fields of a protobuf message: [field, wiretype, value].
function fields(b: Uint8Array): [number, number, number | Uint8Array][] {
  const out: [number, number, number | Uint8Array][] = [];
  let i = 0;
  const rv = () => { let v = 0, s = 0, x; do { x = b[i++]; v += (x & 0x7f) * 2 ** s; s += 7; } while (x & 0x80); return v; };
  while (i < b.length) {
    const tag = rv(), no = Math.floor(tag / 8), wt = tag & 7;
    if (wt === 0) out.push([no, wt, rv()]);
    else if (wt === 2) { const len = rv(); out.push([no, wt, b.subarray(i, i + len)]); i += len; }
    else throw new Error(`wire type ${wt}`);
  }
  return out;
}
const meta = await fetch(base, {
  method: "POST",
  headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
  body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
});
if (meta.status !== 200) { console.log(`RESULT metadata_status=${meta.status}`); Deno.exit(1); }
const m = await meta.json();
const dataUrl = new URL(m.endpoints[0].url, base).href.replace(/\/$/, "");
const headers = {
  authorization: `Bearer ${m.token}`, "x-denokv-database-id": m.databaseId,
  "x-denokv-version": String(m.version), "content-type": "application/x-protobuf",
};
const codes: Record<string, number> = {};
let total = 0, afterMark = 0, netErr = 0, bad = 0, maxMs = 0, stopping = false, marked = false;
const examples: string[] = [];
const exists = (p: string) => { try { Deno.statSync(p); return true; } catch { return false; } };
const poll = setInterval(() => { stopping = exists(stopPath); marked = exists(markPath); }, 20);
async function post(path: string, body: Uint8Array): Promise<Uint8Array | null> {
  const t0 = performance.now();
  const isAfter = marked;
  try {
    const r = await fetch(`${dataUrl}/${path}`, { method: "POST", headers, body, signal: AbortSignal.timeout(15000) });
    const b = new Uint8Array(await r.arrayBuffer());
    codes[r.status] = (codes[r.status] ?? 0) + 1;
    total++;
    if (isAfter) afterMark++;
    maxMs = Math.max(maxMs, performance.now() - t0);
    if (r.status !== 200) {
      if (examples.length < 5) examples.push(`${path}: HTTP ${r.status} ${new TextDecoder().decode(b).slice(0, 120)}`);
      return null;
    }
    return b;
  } catch (e) {
    netErr++;
    if (examples.length < 5) examples.push(`${path}: ${e}`);
    return null;
  }
}
async function loop(id: number) {
  for (let n = 0; !stopping; n++) {
    const key = keyBytes(["proc", "raw", `c${id}-${n}`]);
    const val = enc.encode(`raw-${id}-${n}`);
    const w = await post("atomic_write", writeBody(key, val));
    if (w !== null) {
      const st = fields(w).find(([no]) => no === 1);
      if (!st || st[2] !== 1) { bad++; if (examples.length < 5) examples.push(`atomic_write status ${st?.[2]}`); continue; }
    } else continue;
    const r = await post("snapshot_read", readBody(key));
    if (r !== null) {
      // SnapshotReadOutput.ranges[0].values[0].value must be what we wrote.
      const rng = fields(r).find(([no]) => no === 1)?.[2] as Uint8Array | undefined;
      const ent = rng ? fields(rng).find(([no]) => no === 1)?.[2] as Uint8Array | undefined : undefined;
      const v = ent ? fields(ent).find(([no]) => no === 2)?.[2] as Uint8Array | undefined : undefined;
      if (!v || new TextDecoder().decode(v) !== `raw-${id}-${n}`) {
        bad++;
        if (examples.length < 5) examples.push(`snapshot_read of c${id}-${n} did not return the value`);
      }
    }
  }
}
console.log("STARTED");
const ls = [];
for (let i = 0; i < Number(concStr); i++) ls.push(loop(i));
await Promise.all(ls);
clearInterval(poll);
const non200 = total - (codes["200"] ?? 0);
console.log(`RESULT total=${total} after_mark=${afterMark} non200=${non200} neterr=${netErr} bad=${bad} max_ms=${maxMs.toFixed(1)} codes=${JSON.stringify(codes)}`);
for (const e of examples) console.log(`EXAMPLE ${e}`);
Deno.exit(0);
EOF

# result_field FILE NAME: NAME=value from the RESULT line.
result_field() { sed -n "s/^RESULT.* $2=\([^ ]*\).*/\1/p; s/^RESULT $2=\([^ ]*\).*/\1/p" "$1" | head -n 1; }

# --- refusals at start-up (no server running yet) ---------------------------------

# Root without a user.
out=$P/refuse/root.out
"$DENOKV_FCGI_BIN" --sqlite-path "$P/refuse/kv.sqlite" serve --access-token "$TOKEN1" \
	--listen "unix:$P/refuse/root.sock" >"$out" 2>&1 </dev/null
rc=$?
check "start-up as root without user is refused with exit 2 and says why" \
	"$([ $rc = 2 ] && grep -q 'refusing to serve as root' "$out" && grep -q -- '--user' "$out"; echo $?)" \
	"exit status $rc; output:" "$(cat "$out")"
check "the refused start created neither a database nor a socket" \
	"$([ ! -e "$P/refuse/kv.sqlite" ] && [ ! -e "$P/refuse/root.sock" ]; echo $?)" \
	"$(ls -l "$P/refuse")"

# A database directory the target user cannot write.
out=$P/refuse/dir.out
"$DENOKV_FCGI_BIN" --sqlite-path "$P/rootonly/kv.sqlite" serve --access-token "$TOKEN1" \
	--user "$TARGET_USER" --listen "unix:$P/refuse/dir.sock" >"$out" 2>&1 </dev/null
rc=$?
check "a database directory not writable by $TARGET_USER is refused (exit 2, directory named)" \
	"$([ $rc = 2 ] && grep -q "database directory $P/rootonly is not writable by uid $TARGET_UID" "$out"; echo $?)" \
	"exit status $rc; output:" "$(cat "$out")"
if [ -e "$P/refuse/dir.sock" ]; then
	diag "note: the refused start left its socket file $P/refuse/dir.sock behind"
fi

# --- configuration errors ------------------------------------------------------------

good=$P/conf/good.conf
cat >"$good" <<EOF
# a good file
sqlite-path = $P/conf/kv.sqlite
access-token = $TOKEN1
user = $TARGET_USER
workers = 3
log-level = debug
EOF
out=$P/conf/good.out
"$DENOKV_FCGI_BIN" --config "$good" --check-config >"$out" 2>&1 </dev/null
rc=$?
check "--check-config exits 0 for a good file" "$([ $rc = 0 ]; echo $?)" "exit status $rc:" "$(cat "$out")"

# conf_case NAME LINE_NUMBER LINE EXPECTED_TEXT: a file whose line LINE_NUMBER
# is LINE must be refused naming file:line and EXPECTED_TEXT, both when
# serving and with --check-config.
conf_case() {
	local name=$1 lineno=$2 line=$3 expect=$4 f out rc rc2 want
	f=$P/conf/$name.conf
	{
		echo "# line 1: a comment"
		echo "sqlite-path = $P/conf/kv.sqlite"
		echo "access-token = $TOKEN1"
		echo "user = $TARGET_USER"
		[ "$lineno" = 6 ] && echo "log-level = info"
		echo "$line"
		echo "shutdown-timeout = 5"
	} >"$f"
	[ "$(sed -n "${lineno}p" "$f")" = "$line" ] || echo "# BUG in the test: line $lineno of $f"
	out=$P/conf/$name.out
	timeout 10 "$DENOKV_FCGI_BIN" --config "$f" serve --listen "unix:$P/conf/$name.sock" >"$out" 2>&1 </dev/null
	rc=$?
	timeout 10 "$DENOKV_FCGI_BIN" --config "$f" --check-config >"$out.check" 2>&1 </dev/null
	rc2=$?
	want="$f:$lineno: $expect"
	check "config $name (\"$line\" on line $lineno) is refused naming \"$want\"" \
		"$([ $rc = 2 ] && grep -qF -- "$want" "$out"; echo $?)" \
		"exit status $rc; output:" "$(cat "$out")"
	check "--check-config exits 2 for config $name and names the line" \
		"$([ $rc2 = 2 ] && grep -qF -- "$want" "$out.check"; echo $?)" \
		"exit status $rc2; output:" "$(cat "$out.check")"
}
conf_case unknown-key 5 "no-such-setting = 1" 'unknown key "no-such-setting"'
conf_case workers-zero 6 "workers = 0" 'workers: "0"'
conf_case workers-abc 5 "workers = abc" 'workers: "abc"'

# --- the socket-activated instance --------------------------------------------------

CONF=$P/denokv.conf
# write_conf TOKEN WORKERS LOGLEVEL: the instance's configuration, replaced
# atomically; root-owned, readable by the service's group (the master
# re-reads it as that user on SIGHUP).
write_conf() {
	cat >"$CONF.tmp" <<EOF
# denokv-fcgi configuration for tests/e2e/process.sh
sqlite-path = $DB
access-token = $1
user = $TARGET_USER
group = $TARGET_GROUP
workers = $2
log-level = $3
shutdown-timeout = 10
EOF
	chown "root:$TARGET_GID" "$CONF.tmp"
	chmod 0640 "$CONF.tmp"
	mv "$CONF.tmp" "$CONF"
}
write_conf "$TOKEN1" 2 info
WORKERS=2

# nginx on its own ports, from the project's template.
NG=$P/nginx
conf_dir=$("$NGINX_BIN" -V 2>&1 | sed -n 's/.*--conf-path=\([^ ]*\)\/[^/ ]*.*/\1/p')
for d in "$conf_dir" /etc/nginx; do
	if [ -n "$d" ] && [ -f "$d/fastcgi_params" ]; then
		cp "$d/fastcgi_params" "$NG/fastcgi_params"
		break
	fi
done
cp "$DENOKV_SRCDIR/nginx/denokv-fcgi.conf" "$NG/denokv-fcgi.conf"
NGINX_UP=0
for _ in $(seq 1 "$PORT_TRIES"); do
	if ! { H2C_PORT=$(pick_port) && H1_PORT=$(pick_port "$H2C_PORT"); }; then
		break
	fi
	sed -e "s|@PREFIX@|$NG|g" -e "s|@SOCKET@|$P/x.sock|g" -e "s|@H2C_PORT@|$H2C_PORT|g" \
		-e "s|@H1_PORT@|$H1_PORT|g" -e "s|@USER@|root|g" \
		"$DENOKV_SRCDIR/nginx/nginx.conf.in" >"$NG/nginx.conf"
	if "$NGINX_BIN" -p "$NG/" -c "$NG/nginx.conf" -e "$NG/error.log" </dev/null >"$NG/start.out" 2>&1 &&
		wait_until 5 test -s "$NG/nginx.pid"; then
		NGINX_PID=$(cat "$NG/nginx.pid")
		NGINX_UP=1
		break
	fi
	# Another program took a port between the pick and the bind: again.
	port_bind_failed "$NG/start.out" || break
done
if [ "$NGINX_UP" = 0 ]; then
	tap not_ok "setup: nginx starts on the rendered nginx/nginx.conf.in" "$(cat "$NG/start.out")" "$(tail -n 5 "$NG/error.log" 2>/dev/null)"
	finish
fi
H1=http://127.0.0.1:$H1_PORT
H2C=http://127.0.0.1:$H2C_PORT

# The sd_notify listener: -v prints a header before each datagram, so
# messages can be told apart (without it socat runs them together).
NOTIFY=$P/notify.sock
bg "$P/notify.raw" socat -u -v "UNIX-RECV:$NOTIFY" /dev/null
wait_until 5 test -S "$NOTIFY" || {
	tap not_ok "setup: socat notify listener" "$(cat "$P/notify.raw")"
	finish
}
# The master sends as the service user after dropping root.
chmod 0666 "$NOTIFY"

# notify_fields: every field received so far, one per line, in order.
notify_fields() {
	sed -E 's/> [0-9]{4}\/[0-9]{2}\/[0-9]{2} [0-9:.]+ +length=[0-9]+ from=[0-9]+ to=[0-9]+$/\n/g' "$P/notify.raw" |
		grep -v '^$'
}

LOG=$P/server.log
bg "$LOG" systemd-socket-activate -l "$P/x.sock" --fdname=fcgi \
	-E "NOTIFY_SOCKET=$NOTIFY" "$DENOKV_FCGI_BIN" serve --config "$CONF"
MASTER=$LAST_BG
wait_until 5 test -S "$P/x.sock" || {
	tap not_ok "setup: systemd-socket-activate listens on $P/x.sock" "$(cat "$LOG")"
	finish
}
sleep 0.3
comm=$(cat "/proc/$MASTER/comm" 2>/dev/null)
check "socket activation: nothing is started before the first connection" \
	"$([ "$comm" = systemd-socket- ] && [ ! -e "$DB" ] && [ -z "$(pgrep -P "$MASTER")" ]; echo $?)" \
	"pid $MASTER is \"$comm\"; database exists: $([ -e "$DB" ] && echo yes || echo no)"

# The first connection: a metadata exchange over HTTP/1.1.
metadata() { # TOKEN [BASE]: prints the HTTP status, body in $P/meta.body
	curl -sS -m 10 -o "$P/meta.body" -w '%{http_code}' -X POST \
		-H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
		--data '{"supportedVersions":[1,2,3]}' "${2:-$H1/}" 2>"$P/meta.err" || true
}
t0=$(ms_now)
code=$(metadata "$TOKEN1")
t1=$(ms_now)
check "socket activation: the first connection starts the server and is answered 200 ($((t1 - t0)) ms)" \
	"$([ "$code" = 200 ]; echo $?)" "HTTP $code: $(cat "$P/meta.body" "$P/meta.err" 2>/dev/null)" \
	"server log:" "$(tail -n 20 "$LOG")"

DBID=$(sed -n 's/.*"databaseId":"\([^"]*\)".*/\1/p' "$P/meta.body")
comm=$(cat "/proc/$MASTER/comm" 2>/dev/null)
wait_until 5 eval '[ "$(pgrep -P "$MASTER" | wc -l)" -ge 3 ]'
socks=$(find "$P" "$P/data" -maxdepth 1 -type s | sort -u | tr '\n' ' ')
ssout=$(ss -xlpn 2>/dev/null | grep -F "$P/x.sock")
fd3=$(readlink "/proc/$MASTER/fd/3" 2>/dev/null)
check "socket activation: the master (pid $MASTER, exec'd in place) serves the socket systemd passed as fd 3" \
	"$([ "$comm" = denokv-fcgi ] && grep -q 'on systemd socket (fd 3)' "$LOG" &&
		[[ $fd3 == socket:* ]] && grep -q "pid=$MASTER,fd=3" <<<"$ssout"; echo $?)" \
	"comm \"$comm\"; fd 3 -> $fd3; ss: $ssout" "log:" "$(grep -v '^$' "$LOG" | head -n 10)"
check "socket activation: no other socket file is created (only x.sock and the notify socket in $P and $P/data)" \
	"$([ "$socks" = "$NOTIFY $P/x.sock " ]; echo $?)" \
	"socket files under $P: $socks"

# sd_notify at start-up.
wait_until 3 eval 'notify_fields | grep -q "^STATUS="'
check "sd_notify: READY=1 and STATUS= arrive on the notify socket at start-up" \
	"$(notify_fields | grep -qx 'READY=1' && notify_fields | grep -q '^STATUS=serving'; echo $?)" \
	"received: $(notify_fields | tr '\n' '|')"

# --- privileges -----------------------------------------------------------------

# status_problems PID: what is wrong with the Uid/Gid (all four fields),
# Groups and capabilities of PID; nothing if all is well.
status_problems() {
	local pid=$1 st uid gid groups
	st=$(cat "/proc/$pid/status" 2>/dev/null) || { echo "pid $pid is gone"; return; }
	uid=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' <<<"$st")
	gid=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' <<<"$st")
	groups=$(awk '/^Groups:/ { $1 = ""; print }' <<<"$st" | tr ' ' '\n' | grep -v '^$' | sort -n | tr '\n' ' ' | sed 's/ $//')
	[ "$uid" = "$TARGET_UID $TARGET_UID $TARGET_UID $TARGET_UID" ] || echo "pid $pid Uid: $uid"
	[ "$gid" = "$TARGET_GID $TARGET_GID $TARGET_GID $TARGET_GID" ] || echo "pid $pid Gid: $gid"
	[ "$groups" = "$TARGET_GROUPS" ] || echo "pid $pid Groups: '$groups' (want '$TARGET_GROUPS')"
	for cap in CapEff CapPrm CapInh CapAmb; do
		v=$(awk -v c="$cap:" '$1 == c { print $2 }' <<<"$st")
		[ -z "$v" ] || [ "$v" = 0000000000000000 ] || echo "pid $pid $cap: $v"
	done
}
CHILDREN=$(pgrep -P "$MASTER" | tr '\n' ' ')
problems=$(status_problems "$MASTER")
check "privileges: the master runs as $TARGET_USER:$TARGET_GROUP (real/effective/saved/fs ids), its groups, no capabilities" \
	"$([ -z "$problems" ]; echo $?)" "$problems" "$(grep -E '^(Uid|Gid|Groups|Cap)' "/proc/$MASTER/status" 2>/dev/null)"
problems=
for c in $CHILDREN; do problems+=$(status_problems "$c"); done
nchildren=$(wc -w <<<"$CHILDREN")
check "privileges: all $nchildren children (2 workers + housekeeper) run as $TARGET_USER:$TARGET_GROUP with its groups and no capabilities" \
	"$([ -z "$problems" ] && [ "$nchildren" = 3 ]; echo $?)" "children: $CHILDREN" "$problems"
check "the log says which user the server runs as" \
	"$(grep -q "running as user $TARGET_USER (uid $TARGET_UID, gid $TARGET_GID)" "$LOG"; echo $?)" \
	"$(head -n 10 "$LOG")"
owner=$(stat -c '%u:%g' "$DB" 2>/dev/null)
check "the database file was created by the service user ($owner)" \
	"$([ "$owner" = "$TARGET_UID:$TARGET_GID" ]; echo $?)" "$(ls -ln "$P/data")"

# worker_pids: children of the master holding the listening socket (the
# housekeeper closes it).
worker_pids() {
	local c l
	for c in $(pgrep -P "$MASTER" 2>/dev/null); do
		l=$(readlink "/proc/$c/fd/3" 2>/dev/null)
		[ -n "$l" ] && [ "$l" = "$fd3" ] && echo "$c"
	done
}

# --- kill -9 of a worker under a write load ---------------------------------------

ACK_KILL=$P/acks-kill.txt
rm -f "$P/stop-kill" "$ACK_KILL"
DENO_KV_ACCESS_TOKEN=$TOKEN1 bg "$P/kvload-kill.out" \
	timeout 90 "$DENO" run --unstable-kv -A --no-check --no-lock --quiet \
	"$P/kvload.ts" "$H2C/" kill 8 "$ACK_KILL" "$P/stop-kill" verify
LOAD=$LAST_BG
wait_until 30 grep -q STARTED "$P/kvload-kill.out"
wait_until 10 eval '[ "$(wc -l <"$ACK_KILL" 2>/dev/null || echo 0)" -ge 100 ]'
check "kill -9: the Deno client's write load runs through nginx (h2c) before the kill" \
	"$(grep -q STARTED "$P/kvload-kill.out"; echo $?)" "$(cat "$P/kvload-kill.out")"

# kill_and_time VICTIM: kill -9 VICTIM, wait (polling every 50 ms) for a new
# worker; sets REPLACED_MS (empty if none within 10 s) and NEW_WORKER.
kill_and_time() {
	local victim=$1 before after t0 w
	before=$(worker_pids | tr '\n' ' ')
	t0=$(ms_now)
	kill -KILL "$victim"
	REPLACED_MS=
	NEW_WORKER=
	while [ $(($(ms_now) - t0)) -lt 10000 ]; do
		after=$(worker_pids)
		for w in $after; do
			if ! grep -qw "$w" <<<"$before"; then
				NEW_WORKER=$w
				REPLACED_MS=$(($(ms_now) - t0))
				return
			fi
		done
		sleep 0.05
	done
}
W1=$(worker_pids | head -n 1)
kill_and_time "$W1"
r1=$REPLACED_MS n1=$NEW_WORKER
sleep 1.2
W2=$(worker_pids | grep -vx "$n1" | head -n 1)
kill_and_time "$W2"
r2=$REPLACED_MS n2=$NEW_WORKER
sleep 1
# The master replaces a first crash at once (milliseconds); the bound is
# generous because an ASan build on a loaded 2-core machine took 1.1 s.
check "kill -9: each killed worker is replaced within 10 s (worker $W1 -> $n1 in ${r1:-?} ms, $W2 -> $n2 in ${r2:-?} ms)" \
	"$([ -n "$r1" ] && [ "$r1" -le 10000 ] && [ -n "$r2" ] && [ "$r2" -le 10000 ]; echo $?)" \
	"workers now: $(worker_pids | tr '\n' ' ')" "$(grep -E 'killed|crash|restart' "$LOG" | tail -n 5)"
check "kill -9: the master logged the killed workers" \
	"$(grep -q "worker $W1 killed by signal 9" "$LOG" && grep -q "worker $W2 killed by signal 9" "$LOG"; echo $?)" \
	"$(tail -n 10 "$LOG")"
problems=
for c in $n1 $n2; do problems+=$(status_problems "$c"); done
check "kill -9: the replacements run as $TARGET_USER too" "$([ -z "$problems" ]; echo $?)" "$problems"

touch "$P/stop-kill"
wait_until 60 eval '! alive $LOAD'
wait "$LOAD" 2>/dev/null
out=$P/kvload-kill.out
acked=$(result_field "$out" acked)
errors=$(result_field "$out" errors)
check "kill -9: the client saw no failed write (${acked:-?} writes acknowledged, ${errors:-?} errors)" \
	"$([ -n "$acked" ] && [ "$acked" -ge 100 ] && [ "$errors" = 0 ]; echo $?)" "$(tail -n 12 "$out")"
check "kill -9: every acknowledged write reads back through the server" \
	"$([ "$(result_field "$out" missing)" = 0 ] && [ "$(result_field "$out" mismatched)" = 0 ]; echo $?)" \
	"$(tail -n 12 "$out")"

# db_check ACKFILE TAG: every "KEYHEX VALHEX NAME" line of ACKFILE is a row
# of the kv table (read with sqlite3 as the service user). Sets DB_MISSING.
db_check() {
	local acks=$1 tag=$2 prefix
	prefix=$(printf '\002proc\000\002%s\000' "$tag" | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
	as_target sqlite3 -init /dev/null -readonly "$DB" \
		"select hex(k) || ' ' || hex(v) from kv where substr(k, 1, $((${#prefix} / 2))) = X'$prefix';" \
		>"$acks.db" 2>"$acks.dberr"
	cut -d' ' -f1,2 "$acks" | sort -u >"$acks.want"
	sort -u "$acks.db" >"$acks.have"
	DB_MISSING=$(comm -23 "$acks.want" "$acks.have" | wc -l)
	DB_WANT=$(wc -l <"$acks.want")
	DB_ERR=$(cat "$acks.dberr")
}
db_check "$ACK_KILL" kill
check "kill -9: every acknowledged write is in the database file (sqlite3: $DB_WANT keys, $DB_MISSING missing)" \
	"$([ -z "$DB_ERR" ] && [ "$DB_WANT" -ge 100 ] && [ "$DB_MISSING" = 0 ]; echo $?)" \
	"$DB_ERR" "$(comm -23 "$ACK_KILL.want" "$ACK_KILL.have" | head -n 5)"

# --- pressure: a load that keeps the listen queue from ever running empty ------------

# wrk posting atomic writes (one M_SET of ["p", "w"], hand-encoded) over
# HTTP/1.1 with the token in $WRK_TOKEN, 48 connections. Writes are the
# server's bottleneck (each waits for the write lock and an fsync), so far
# more requests are in flight than workers and a connection is always
# waiting on the socket. That is the case where a worker must still notice
# SIGTERM (a light load lets workers fall idle between requests, which
# hides a worker that only sees the signal when idle).
cat >"$P/write.lua" <<'EOF'
wrk.method = "POST"
-- AtomicWrite { mutations: [{ key: ["p", "w"], value: { data: "x", encoding: VE_BYTES }, mutation_type: M_SET }] }
wrk.body = "\18\17\10\6\2p\0\2w\0\18\5\10\1x\16\3\24\1"
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN")
wrk.headers["x-denokv-database-id"] = os.getenv("WRK_DBID")
wrk.headers["x-denokv-version"] = "3"
EOF
declare -A PRESSURE
# pressure_start NAME TOKEN [CONNECTIONS]: wrk in the background.
pressure_start() {
	WRK_TOKEN=$2 WRK_DBID=$DBID bg "$P/wrk-$1.out" \
		wrk -t1 -c"${3:-48}" -d60s --timeout 10s -s "$P/write.lua" "$H1/v2/atomic_write"
	PRESSURE[$1]=$LAST_BG
	sleep 0.5
}
# pressure_stop NAME: stops wrk; sets WRK_REQS, WRK_NON2XX, WRK_SOCKERR.
pressure_stop() {
	local f=$P/wrk-$1.out pid=${PRESSURE[$1]}
	kill -INT "$pid" 2>/dev/null
	wait_until 10 eval "! alive $pid"
	wait "$pid" 2>/dev/null
	WRK_REQS=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$f")
	WRK_NON2XX=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$f")
	WRK_NON2XX=${WRK_NON2XX:-0}
	WRK_SOCKERR=$(sed -n 's/^ *Socket errors: *//p' "$f")
}

# reloaded: WORKERS workers + a housekeeper, none of them from OLD_CHILDREN.
reloaded() {
	local kids c
	kids=$(pgrep -P "$MASTER")
	[ "$(wc -l <<<"$kids")" = $((WORKERS + 1)) ] || return 1
	for c in $kids; do grep -qw "$c" <<<"$OLD_CHILDREN" && return 1; done
	[ "$(worker_pids | wc -l)" = "$WORKERS" ]
}
# retiring_left: the processes of OLD_CHILDREN still alive.
retiring_left() {
	local c
	for c in $OLD_CHILDREN; do alive "$c" && printf '%s ' "$c"; done
}

# --- SIGHUP: reload under load, token unchanged ---------------------------------------

# A raw HTTP/1.1 KV load (writes + reads, every answer checked) and the
# wrk pressure run across the reload; the token stays the same, the worker
# count and log level change. Not one request may fail.
rm -f "$P/stop-raw" "$P/mark-raw"
bg "$P/raw.out" timeout 90 "$DENO" run -A --no-check --no-lock --quiet \
	"$P/raw.ts" "$H1/" "$TOKEN1" 8 "$P/stop-raw" "$P/mark-raw"
RAW=$LAST_BG
wait_until 30 grep -q STARTED "$P/raw.out"
pressure_start reload "$TOKEN1"
sleep 0.5
OLD_CHILDREN=$(pgrep -P "$MASTER" | tr '\n' ' ')
nf=$(notify_fields | wc -l)
write_conf "$TOKEN1" 3 debug
WORKERS=3
t0=$(ms_now)
kill -HUP "$MASTER"
wait_until 5 reloaded
rc=$?
t1=$(ms_now)
left=$(retiring_left)
touch "$P/mark-raw"
sleep 1.5
touch "$P/stop-raw"
pressure_stop reload
wait_until 30 eval '! alive $RAW'
wait "$RAW" 2>/dev/null
check "SIGHUP under load: the old generation ($OLD_CHILDREN) has exited and 3 new workers + housekeeper serve, within 5 s ($((t1 - t0)) ms)" \
	"$rc" "old ones still running 5 s after SIGHUP: ${left:-none}" \
	"(old workers that keep accepting while a connection is always waiting never see their SIGTERM)" \
	"$(grep -E 'reload|retired' "$LOG" | tail -n 6)"
# Wait for the old generation to be gone (after the load) for what follows.
wait_until 15 reloaded
check "SIGHUP: RELOADING=1, then READY=1 on the notify socket" \
	"$(notify_fields | tail -n +$((nf + 1)) | grep -E '^(RELOADING|READY)=1$' | head -n 2 | tr '\n' ' ' |
		grep -qx 'RELOADING=1 READY=1 '; echo $?)" \
	"received after SIGHUP: $(notify_fields | tail -n +$((nf + 1)) | tr '\n' '|')"
check "SIGHUP: the new settings are in force (log level debug, 3 workers in STATUS=)" \
	"$(grep -q 'reloaded: 3 workers' "$LOG" && notify_fields | tail -n +$((nf + 1)) | grep -q '^STATUS=serving with 3 of 3 workers'; echo $?)" \
	"$(grep -E 'reload' "$LOG" | tail -n 3)"
total=$(result_field "$P/raw.out" total)
after=$(result_field "$P/raw.out" after_mark)
non200=$(result_field "$P/raw.out" non200)
neterr=$(result_field "$P/raw.out" neterr)
bad=$(result_field "$P/raw.out" bad)
check "SIGHUP: not one KV request failed across the reload (${total:-?} HTTP/1.1 writes/reads, ${after:-?} after it; non-200 ${non200:-?}, network errors ${neterr:-?}, wrong bodies ${bad:-?})" \
	"$([ -n "$total" ] && [ "$non200" = 0 ] && [ "$neterr" = 0 ] && [ "$bad" = 0 ] &&
		[ "$total" -ge 50 ] && [ "$after" -ge 10 ]; echo $?)" "$(cat "$P/raw.out")"
check "SIGHUP: not one atomic write of the wrk pressure failed (${WRK_REQS:-?} requests, ${WRK_NON2XX} non-2xx, socket errors: ${WRK_SOCKERR:-none})" \
	"$([ -n "$WRK_REQS" ] && [ "$WRK_REQS" -gt 0 ] && [ "$WRK_NON2XX" = 0 ] && [ -z "$WRK_SOCKERR" ]; echo $?)" \
	"$(cat "$P/wrk-reload.out")"
problems=
for c in $(pgrep -P "$MASTER"); do problems+=$(status_problems "$c"); done
check "SIGHUP: the new generation runs as $TARGET_USER without capabilities" "$([ -z "$problems" ]; echo $?)" "$problems"

# --- SIGHUP with a new access token, under load ---------------------------------------

# Writes with each token: slow work for both generations, so neither
# drains the queue (a generation refusing every request with a quick 401
# would empty it and give the other one idle moments).
OLD_CHILDREN=$(pgrep -P "$MASTER" | tr '\n' ' ')
pressure_start token1 "$TOKEN1" 32
pressure_start token2 "$TOKEN2" 32
write_conf "$TOKEN2" 3 debug
t0=$(ms_now)
kill -HUP "$MASTER"
wait_until 5 reloaded
rc=$?
t1=$(ms_now)
# New metadata exchanges while the pressure goes on.
codes_old='' codes_new=''
for _ in $(seq 1 10); do
	codes_old+="$(metadata "$TOKEN1") "
	codes_new+="$(metadata "$TOKEN2") "
done
left=$(retiring_left)
pressure_stop token1
pressure_stop token2
check "token change under load: the old generation has exited within 5 s of SIGHUP ($((t1 - t0)) ms)" \
	"$rc" "old processes still running: ${left:-none}" "$(grep -E 'reload|retired' "$LOG" | tail -n 4)"
check "token change: afterwards new metadata exchanges with the old token get 401, with the new one 200" \
	"$([ "$codes_old" = "$(printf '401 %.0s' $(seq 1 10))" ] && [ "$codes_new" = "$(printf '200 %.0s' $(seq 1 10))" ]; echo $?)" \
	"old token: $codes_old" "new token: $codes_new" \
	"(200s for the old token come from old-generation workers still serving: ${left:-none})"
wait_until 15 reloaded
c_new=$(metadata "$TOKEN2")
dbid=$(sed -n 's/.*"databaseId":"\([^"]*\)".*/\1/p' "$P/meta.body")
# SnapshotRead of one key ["a"] (hand-encoded).
printf '\012\015\012\003\002a\000\022\004\002a\000\000\030\001' >"$P/read-a.pb"
data_read() { # TOKEN: status of a snapshot_read
	curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $1" \
		-H "x-denokv-database-id: $dbid" -H 'x-denokv-version: 3' \
		-H 'Content-Type: application/x-protobuf' --data-binary @"$P/read-a.pb" \
		"$H1/v2/snapshot_read" 2>/dev/null || true
}
d_old=$(data_read "$TOKEN1")
d_new=$(data_read "$TOKEN2")
check "token change: data-path requests with the old token get 401, with the new one 200" \
	"$([ "$c_new" = 200 ] && [ "$d_old" = 401 ] && [ "$d_new" = 200 ]; echo $?)" \
	"metadata: HTTP $c_new; snapshot_read old: HTTP $d_old; new: HTTP $d_new; databaseId $dbid"

# --- SIGTERM under a write load -----------------------------------------------------

# The Deno client's writes (each acknowledged one logged) and the wrk
# pressure; then SIGTERM. Requests in flight take milliseconds, so the
# master must be gone long before the 10 s shutdown timeout, without
# having to kill anyone.
ACK_TERM=$P/acks-term.txt
rm -f "$ACK_TERM" "$P/stop-term"
DENO_KV_ACCESS_TOKEN=$TOKEN2 bg "$P/kvload-term.out" \
	timeout 90 "$DENO" run --unstable-kv -A --no-check --no-lock --quiet \
	"$P/kvload.ts" "$H2C/" term 8 "$ACK_TERM" "$P/stop-term"
LOAD=$LAST_BG
wait_until 30 grep -q STARTED "$P/kvload-term.out"
pressure_start term "$TOKEN2"
wait_until 10 eval '[ "$(wc -l <"$ACK_TERM" 2>/dev/null || echo 0)" -ge 100 ]'
nf=$(notify_fields | wc -l)
KIDS=$(pgrep -P "$MASTER" | tr '\n' ' ')
before_term=$(wc -l <"$ACK_TERM")
t0=$(ms_now)
kill -TERM "$MASTER"
wait_until 20 eval '! alive $MASTER'
t1=$(ms_now)
rc=timeout
if ! alive "$MASTER"; then
	wait "$MASTER"
	rc=$?
fi
pressure_stop term
# The client retries forever against a stopped server: end it (timeout(1)
# passes SIGTERM on to Deno).
kill -TERM "$LOAD" 2>/dev/null
wait_until 10 eval '! alive $LOAD'
wait "$LOAD" 2>/dev/null
left=
for c in $KIDS; do alive "$c" && left+="$c "; done
check "SIGTERM under load: the master exits with status 0 (after $((t1 - t0)) ms), its children too" \
	"$([ "$rc" = 0 ] && [ -z "$left" ]; echo $?)" "exit status $rc; children still alive: ${left:-none}" \
	"$(tail -n 8 "$LOG")"
check "SIGTERM under load: in-flight requests finish and the workers exit within 5 s, well inside shutdown-timeout (10 s), nobody killed" \
	"$([ "$rc" = 0 ] && [ $((t1 - t0)) -le 5000 ] && ! grep -q 'shutdown timeout' "$LOG"; echo $?)" \
	"stop took $((t1 - t0)) ms; $(grep 'shutdown timeout' "$LOG")" \
	"(a worker that only looks for SIGTERM when no connection is waiting keeps accepting new requests)"
check "SIGTERM: STOPPING=1 on the notify socket" \
	"$(notify_fields | tail -n +$((nf + 1)) | grep -qx 'STOPPING=1'; echo $?)" \
	"received after SIGTERM: $(notify_fields | tail -n +$((nf + 1)) | tr '\n' '|')"
check "SIGTERM: the socket systemd passed is left in place (not the server's to remove)" \
	"$([ -S "$P/x.sock" ]; echo $?)"
db_check "$ACK_TERM" term
check "SIGTERM: every write acknowledged to the client is in the database ($DB_WANT keys, $((DB_WANT - before_term)) acknowledged after the signal, $DB_MISSING missing)" \
	"$([ -z "$DB_ERR" ] && [ "$DB_WANT" -ge 100 ] && [ "$DB_MISSING" = 0 ]; echo $?)" \
	"$DB_ERR" "$(comm -23 "$ACK_TERM.want" "$ACK_TERM.have" | head -n 5)" "$(tail -n 5 "$P/kvload-term.out")"
integrity=$(as_target sqlite3 -init /dev/null -readonly "$DB" 'pragma integrity_check;' 2>&1)
check "SIGTERM: the database passes integrity_check afterwards" "$([ "$integrity" = ok ]; echo $?)" "$integrity"

# --- logging ---------------------------------------------------------------------

bad_lines=$(grep '^<' "$LOG" | grep -Ev '^<[0-7]>(master|worker|housekeeper)\[[0-9]+\]: ' | head -n 5)
check "logs: every server line has a <N> priority and a master/worker/housekeeper[pid] tag" \
	"$([ -z "$bad_lines" ] && grep -q "^<[0-7]>master\[$MASTER\]: " "$LOG" &&
		grep -q '^<[0-7]>worker\[[0-9]*\]: ' "$LOG"; echo $?)" "$bad_lines" \
	"$(grep -Ev '^<[0-7]>(master|worker|housekeeper)\[' "$LOG" | head -n 5)"

MASTER=
finish
