// Watch streams (POST <base>/v2/watch) end to end: the Deno CLI's
// kv.watch() through real nginx (the stack's h2c listener) and through real
// caddy (started here, h2c + HTTP/1.1 on one port, FastCGI transport to the
// stack's socket), plus raw HTTP/1.1 requests for what the Deno client hides
// (status codes, keep-alive frames, the frame layout).
// Run by tests/e2e/run.sh: deno test --unstable-kv -A --reporter=tap.
//
// Nothing here measures speed: every wait is a generous deadline, and every
// assertion is about what arrived (values, versionstamps, frame contents,
// the server's open file descriptors).

import {
  assert,
  assertVersionstamp,
  encAtomicWrite,
  ENV,
  encodeKey,
  H1_URL,
  H2C_URL,
  hex,
  MutationType,
  pbParse,
  RawClient,
  RUN_DIR,
  sleep,
  startServer,
  stopServer,
  uniquePrefix,
  ValueEncoding,
  withTimeout,
} from "./helpers.ts";
import { loopSockets } from "./watch_lib.ts";

// A change must reach every watcher within this (only a hung or broken
// server misses it; nothing is timed more tightly).
const DELIVERY_MS = 10_000;
// A vanished client is noticed at once through EPOLLRDHUP (nginx closes the
// upstream connection) or at the latest with the next keep-alive write,
// which the server sends every 5 s (caddy 2.6 keeps an idle upstream open).
const CLEANUP_MS = 12_000;
// The fd count of the workers may drift by this much for unrelated reasons.
const FD_TOLERANCE = 2;

const MASTER_PID = Number(ENV.SERVER_PID);
const SOCKET = ENV.SOCKET;

// ---------------------------------------------------------------------------
// caddy, started by this suite on a free port

// A port below the kernel's ephemeral range (scripts/ports.sh), so no
// outgoing connection can hold it; one another program binds first is
// caught by startCaddy, which then tries another.
function freePort(): number {
  for (;;) {
    const port = 10000 + Math.floor(Math.random() * 22768);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch {
      // taken: pick again
    }
  }
}

const CADDY_DIR = `${RUN_DIR}/watch-caddy`;
let CADDY_PORT = freePort();
let CADDY_URL = `http://127.0.0.1:${CADDY_PORT}/`;
let caddyChild: Deno.ChildProcess | undefined;
let caddyStarting: Promise<void> | undefined;

function caddyfile(): string {
  // conf/Caddyfile, on a free loopback port and the stack's socket; no
  // admin endpoint (it would clash with any other caddy) and no automatic
  // HTTPS (plain http:// site, nothing to obtain).
  return `# written by tests/e2e/watch.test.ts, from conf/Caddyfile
{
	admin off
	auto_https off
	# On SIGTERM, do not wait for watch streams to end.
	grace_period 1s
	servers {
		protocols h1 h2 h2c
	}
}

http://127.0.0.1:${CADDY_PORT} {
	request_body {
		max_size 2MB
	}
	reverse_proxy unix/${SOCKET} {
		transport fastcgi
		flush_interval -1
	}
}
`;
}

async function metadataStatus(base: string): Promise<number> {
  try {
    const r = await fetch(base, {
      method: "POST",
      headers: { authorization: `Bearer ${ENV.TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
      signal: AbortSignal.timeout(3000),
    });
    await r.body?.cancel();
    return r.status;
  } catch {
    return 0;
  }
}

async function startCaddy(): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      return await startCaddyOnce();
    } catch (e) {
      if (attempt === 10 || !/address already in use/i.test(String(e))) throw e;
      CADDY_PORT = freePort();
      CADDY_URL = `http://127.0.0.1:${CADDY_PORT}/`;
      PROXIES[1].url = PROXIES[1].h1 = CADDY_URL;
    }
  }
}

async function startCaddyOnce(): Promise<void> {
  const caddy = Deno.env.get("CADDY") ?? "caddy";
  Deno.mkdirSync(`${CADDY_DIR}/home`, { recursive: true });
  Deno.writeTextFileSync(`${CADDY_DIR}/Caddyfile`, caddyfile());
  const log = Deno.openSync(`${CADDY_DIR}/caddy.log`, { write: true, create: true, truncate: true });
  try {
    caddyChild = new Deno.Command(caddy, {
      args: ["run", "--config", `${CADDY_DIR}/Caddyfile`, "--adapter", "caddyfile"],
      env: {
        HOME: `${CADDY_DIR}/home`,
        XDG_DATA_HOME: `${CADDY_DIR}/data`,
        XDG_CONFIG_HOME: `${CADDY_DIR}/config`,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    log.close();
    throw new Error(`cannot run ${caddy} (install caddy, or set CADDY): ${e}`);
  }
  // Copy caddy's output into its log file.
  const pipe = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) log.writeSync(chunk);
  };
  const copied = Promise.all([pipe(caddyChild.stdout), pipe(caddyChild.stderr)]).catch(() => {}).finally(() =>
    log.close()
  );
  let exited = false;
  caddyChild.status.then(() => exited = true);
  const deadline = Date.now() + 20_000;
  let status = 0;
  while (Date.now() < deadline) {
    if (exited) {
      await Promise.race([copied, sleep(2000)]); // its last words into the log
      break;
    }
    status = await metadataStatus(CADDY_URL);
    if (status === 200) return;
    await sleep(100);
  }
  const tail = (() => {
    try {
      return Deno.readTextFileSync(`${CADDY_DIR}/caddy.log`).split("\n").slice(-15).join("\n");
    } catch {
      return "";
    }
  })();
  throw new Error(`caddy did not answer the metadata exchange with 200 (last status ${status}, ${exited ? "exited" : "running"}):\n${tail}`);
}

function ensureCaddy(): Promise<void> {
  caddyStarting ??= startCaddy();
  return caddyStarting;
}

function killCaddy() {
  try {
    caddyChild?.kill("SIGKILL");
  } catch {
    // already gone
  }
}
globalThis.addEventListener("unload", killCaddy);
// run.sh's deadline (timeout(1)) or Ctrl-C: no caddy left behind.
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, () => {
    killCaddy();
    Deno.exit(sig === "SIGTERM" ? 143 : 130);
  });
}

// ---------------------------------------------------------------------------
// The two proxies

interface Proxy {
  name: string;
  url: string; // Deno.openKv (h2c)
  h1: string; // HTTP/1.1 base for raw requests
  ready: () => Promise<void>;
}

const PROXIES: Proxy[] = [
  { name: "nginx", url: H2C_URL, h1: H1_URL, ready: () => Promise.resolve() },
  { name: "caddy", url: CADDY_URL, h1: CADDY_URL, ready: ensureCaddy },
];

async function openKv(url: string): Promise<Deno.Kv> {
  return await withTimeout(Deno.openKv(url), 30_000, `Deno.openKv(${url})`);
}

// A test with a deadline and a list of KV handles closed afterwards.
function wtest(
  name: string,
  px: Proxy | null,
  fn: (ctx: { open: () => Promise<Deno.Kv>; prefix: string[] }) => Promise<void>,
  timeout = 60_000,
) {
  Deno.test({
    name: px ? `${px.name}: ${name}` : name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const handles: Deno.Kv[] = [];
      try {
        await withTimeout(
          (async () => {
            if (px) await px.ready();
            await fn({
              open: async () => {
                const kv = await openKv(px ? px.url : H2C_URL);
                handles.push(kv);
                return kv;
              },
              prefix: uniquePrefix(`${px?.name ?? ""}${name}`),
            });
          })(),
          timeout,
          name,
        );
      } finally {
        for (const kv of handles) {
          try {
            kv.close();
          } catch {
            // already closed
          }
        }
      }
    },
  });
}

// ---------------------------------------------------------------------------
// Watching with the Deno client

type Frame = { at: number; entries: Deno.KvEntryMaybe<unknown>[] };

// Reads a kv.watch() stream in the background and records every frame the
// client hands out.
class Watcher {
  frames: Frame[] = [];
  error: unknown = undefined;
  done = false;
  #reader: ReadableStreamDefaultReader<Deno.KvEntryMaybe<unknown>[]>;
  #wake = new Set<() => void>();

  constructor(kv: Deno.Kv, keys: Deno.KvKey[], raw = false) {
    this.#reader = kv.watch(keys, { raw }).getReader();
    this.#pump();
  }

  async #pump() {
    try {
      for (;;) {
        const r = await this.#reader.read();
        if (r.done) break;
        this.frames.push({ at: Date.now(), entries: r.value });
        this.#notify();
      }
    } catch (e) {
      this.error = e;
    } finally {
      this.done = true;
      this.#notify();
    }
  }

  #notify() {
    for (const w of this.#wake) w();
  }

  // The first frame at index >= from for which pred holds.
  async waitFor(
    pred: (e: Deno.KvEntryMaybe<unknown>[]) => boolean,
    what: string,
    opts: { from?: number; ms?: number } = {},
  ): Promise<{ frame: Frame; index: number }> {
    const deadline = Date.now() + (opts.ms ?? DELIVERY_MS);
    let i = opts.from ?? 0;
    for (;;) {
      for (; i < this.frames.length; i++) {
        if (pred(this.frames[i].entries)) return { frame: this.frames[i], index: i };
      }
      if (this.done) {
        throw new Error(`${what}: the watch stream ended (${String(this.error ?? "closed")}); frames: ${this.describe()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: not seen within ${opts.ms ?? DELIVERY_MS} ms; frames: ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done() {
          clearTimeout(t);
          wake.delete(done);
          resolve();
        }
        const wake = this.#wake;
        wake.add(done);
      });
    }
  }

  first(what = "initial frame"): Promise<{ frame: Frame; index: number }> {
    return this.waitFor(() => true, what);
  }

  describe(): string {
    const s = this.frames.map((f) => JSON.stringify(f.entries.map((e) => [show(e.value), e.versionstamp])));
    return s.length > 6 ? [...s.slice(0, 3), "...", ...s.slice(-3)].join(" ") : s.join(" ") || "(none)";
  }

  async cancel() {
    await this.#reader.cancel().catch(() => {});
  }
}

function show(v: unknown): unknown {
  if (v instanceof Deno.KvU64) return `KvU64(${v.value})`;
  if (typeof v === "bigint") return `${v}n`;
  if (v instanceof Uint8Array) return `bytes(${hex(v)})`;
  if (v === undefined) return "undefined";
  return v;
}

// Values in a comparable form (KvU64 keeps its number in a private field).
function norm(v: unknown): unknown {
  if (v instanceof Deno.KvU64) return { kvu64: v.value };
  return v;
}

function assertSameEntry(got: Deno.KvEntryMaybe<unknown>, want: Deno.KvEntryMaybe<unknown>, what: string) {
  assert.deepEqual(got.key, want.key, `${what}: key`);
  assert.deepEqual(norm(got.value), norm(want.value), `${what}: value`);
  assert.equal(got.versionstamp, want.versionstamp, `${what}: versionstamp`);
}

// ---------------------------------------------------------------------------
// Raw watch requests over HTTP/1.1

const dec = new TextDecoder();

function encWatch(keys: Uint8Array[]): Uint8Array {
  const out: number[] = [];
  const varint = (n: number) => {
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    out.push(n);
  };
  for (const k of keys) {
    // WatchKey { bytes key = 1; } inside Watch { repeated WatchKey keys = 1; }
    const inner = [0x0a, ...lenBytes(k.length), ...k];
    out.push(0x0a);
    varint(inner.length);
    out.push(...inner);
  }
  return new Uint8Array(out);
}

function lenBytes(n: number): number[] {
  const b: number[] = [];
  while (n >= 0x80) {
    b.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  b.push(n);
  return b;
}

interface WireKey {
  changed: boolean;
  entry: { key: Uint8Array; value: Uint8Array; encoding: number; versionstamp: Uint8Array } | null;
}

function decWatchOutput(b: Uint8Array): { status: number; keys: WireKey[] } {
  const m = pbParse(b);
  const num = (mm: Map<number, { v: bigint | Uint8Array }[]>, f: number) => {
    const xs = mm.get(f);
    return xs ? Number(xs[xs.length - 1].v as bigint) : 0;
  };
  const bytes = (mm: Map<number, { v: bigint | Uint8Array }[]>, f: number) => {
    const xs = mm.get(f);
    return xs ? (xs[xs.length - 1].v as Uint8Array) : new Uint8Array();
  };
  const keys = (m.get(2) ?? []).map((k): WireKey => {
    const km = pbParse(k.v as Uint8Array);
    const e = km.get(2);
    let entry: WireKey["entry"] = null;
    if (e) {
      const em = pbParse(e[e.length - 1].v as Uint8Array);
      entry = { key: bytes(em, 1), value: bytes(em, 2), encoding: num(em, 3), versionstamp: bytes(em, 4) };
    }
    return { changed: num(km, 1) !== 0, entry };
  });
  return { status: num(m, 1), keys };
}

// A raw watch stream: frames as they come (null = zero-length keep-alive).
class RawWatch {
  frames: ({ at: number; out: ReturnType<typeof decWatchOutput> } | { at: number; out: null })[] = [];
  status = 0;
  contentType = "";
  text = "";
  ended = false;
  #ctl = new AbortController();
  #buf = new Uint8Array(0);
  #wake = new Set<() => void>();

  static async open(base: string, keys: Uint8Array[], body?: Uint8Array): Promise<RawWatch> {
    const c = await RawClient.open(base);
    const w = new RawWatch();
    const r = await withTimeout(
      fetch(`${c.dataUrl}/watch`, { method: "POST", headers: c.headers(), body: (body ?? encWatch(keys)) as BodyInit, signal: w.#ctl.signal }),
      30_000,
      `POST ${c.dataUrl}/watch`,
    );
    w.status = r.status;
    w.contentType = r.headers.get("content-type") ?? "";
    if (r.status !== 200) {
      w.text = await r.text();
      w.ended = true;
      return w;
    }
    w.#pump(r.body!);
    return w;
  }

  async #pump(body: ReadableStream<Uint8Array>) {
    try {
      for await (const chunk of body) {
        const b = new Uint8Array(this.#buf.length + chunk.length);
        b.set(this.#buf);
        b.set(chunk, this.#buf.length);
        let i = 0;
        while (b.length - i >= 4) {
          const len = (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
          if (b.length - i - 4 < len) break;
          const payload = b.slice(i + 4, i + 4 + len);
          this.frames.push({ at: Date.now(), out: len === 0 ? null : decWatchOutput(payload) });
          i += 4 + len;
        }
        this.#buf = b.slice(i);
        for (const w of this.#wake) w();
      }
    } catch {
      // aborted
    } finally {
      this.ended = true;
      for (const w of this.#wake) w();
    }
  }

  async waitFrame(from: number, ms: number, what: string): Promise<number> {
    const deadline = Date.now() + ms;
    while (this.frames.length <= from) {
      if (this.ended) throw new Error(`${what}: the stream ended after ${this.frames.length} frames`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: nothing within ${ms} ms (${this.frames.length} frames so far)`);
      await new Promise<void>((resolve) => {
        const wake = this.#wake;
        const t = setTimeout(done, left);
        function done() {
          clearTimeout(t);
          wake.delete(done);
          resolve();
        }
        wake.add(done);
      });
    }
    return from;
  }

  close() {
    this.#ctl.abort();
  }
}

function rawKey(parts: string[]): Uint8Array {
  return encodeKey(parts);
}

const te = new TextEncoder();

// ---------------------------------------------------------------------------
// The server's processes and their file descriptors

function procStat(pid: number): { ppid: number } | null {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const st = procStat(Number(e.name));
    if (st && st.ppid === ppid) out.push(Number(e.name));
  }
  return out.sort((a, b) => a - b);
}

function fdLinks(pid: number): string[] {
  const out: string[] = [];
  let dir: Iterable<Deno.DirEntry>;
  try {
    dir = Deno.readDirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const e of dir) {
    try {
      out.push(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

// The listening socket: the one socket the master holds.
function listenSocket(): string {
  const socks = fdLinks(MASTER_PID).filter((l) => l.startsWith("socket:"));
  assert.equal(socks.length, 1, `master ${MASTER_PID} should hold exactly the listening socket, has ${socks.join(",")}`);
  return socks[0];
}

// Workers: the master's children that hold the listening socket (the
// housekeeper does not).
function workers(): number[] {
  const l = listenSocket();
  return childrenOf(MASTER_PID).filter((p) => fdLinks(p).includes(l));
}

// Accepted connections (watch streams, in-flight requests on the
// one-per-connection model) per worker, leaving out those in `except`
// ("socket:[inode]" as in /proc/PID/fd) and those of the request loop.
function streamsPerWorker(except: ReadonlySet<string> = new Set()): Map<number, number> {
  const l = listenSocket();
  const out = new Map<number, number>();
  for (const p of workers()) {
    const loop = loopSockets(p, l);
    out.set(p, fdLinks(p).filter((x) => x.startsWith("socket:") && x !== l && !except.has(x) && !loop.has(x)).length);
  }
  return out;
}

// Every accepted connection the workers hold now.
function heldSockets(): Set<string> {
  const l = listenSocket();
  const out = new Set<string>();
  for (const p of workers()) {
    for (const x of fdLinks(p)) if (x.startsWith("socket:") && x !== l) out.add(x);
  }
  return out;
}

// The accepted sockets the workers hold, each with its state, queues and
// peer (the process holding the other end, from `ss -xp`): names what a
// held connection is when quiesce gives up.
function describeHeld(except: ReadonlySet<string> = new Set()): string {
  let table: string[] = [];
  try {
    const out = new Deno.Command("ss", { args: ["-xapn"], stdout: "piped", stderr: "null" }).outputSync();
    table = dec.decode(out.stdout).split("\n");
  } catch (e) {
    return `(ss failed: ${e})`;
  }
  // u_str STATE RECV-Q SEND-Q LOCAL-PATH LOCAL-INODE PEER-PATH PEER-INODE [users:(...)]
  const byInode = new Map<string, string[]>();
  for (const line of table) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[0] === "u_str") byInode.set(f[5], f);
  }
  const l = listenSocket();
  const parts: string[] = [];
  for (const p of workers()) {
    for (const link of fdLinks(p)) {
      if (!link.startsWith("socket:") || link === l || except.has(link)) continue;
      const ino = link.slice("socket:[".length, -1);
      const f = byInode.get(ino);
      if (!f) {
        parts.push(`worker ${p} ${link}: not in ss`);
        continue;
      }
      const peer = byInode.get(f[7]);
      const who = peer ? (peer.slice(8).join(" ") || "no process") : "peer gone";
      const peerPid = /pid=(\d+)/.exec(who)?.[1];
      parts.push(`worker ${p} fd ${fdOf(p, link)} ${link} (${heldBy(p, link)}): ${f[1]} recv-q ${f[2]} send-q ${f[3]},` +
        ` peer inode ${f[7]} (${peer ? `${peer[1]} recv-q ${peer[2]} send-q ${peer[3]}, ` : ""}${who})` +
        (peerPid ? `; that process's TCP connections: ${tcpOf(Number(peerPid))}` : ""));
    }
  }
  return parts.join("; ") || "none";
}

// The established TCP connections of a process (a proxy: its clients),
// each with the process at the other end.
function tcpOf(pid: number): string {
  let lines: string[] = [];
  try {
    const out = new Deno.Command("ss", { args: ["-tanp", "state", "established"], stdout: "piped", stderr: "null" }).outputSync();
    lines = dec.decode(out.stdout).split("\n").slice(1).filter((l) => l.trim() !== "");
  } catch (e) {
    return `(ss failed: ${e})`;
  }
  // RECV-Q SEND-Q LOCAL PEER [users:(...)]
  const norm = (a: string) => a.replace(/^\[::ffff:([\d.]+)\]/, "$1");
  const rows = lines.map((l) => l.trim().split(/\s+/)).map((f) => [f[0], f[1], norm(f[2] ?? ""), norm(f[3] ?? ""), f[4]]);
  const mine = rows.filter((f) => (f[4] ?? "").includes(`pid=${pid},`));
  return mine.map((f) => {
    const other = rows.find((g) => g[2] === f[3] && g[3] === f[2]);
    return `${f[2]}<->${f[3]} q ${f[0]}/${f[1]} (${other?.[4] ?? "other end not local"})`;
  }).join(", ") || "none";
}

function fdOf(pid: number, link: string): string {
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) === link) return e.name;
      } catch { /* closed meanwhile */ }
    }
  } catch { /* gone */ }
  return "?";
}

// Who in the worker holds a socket: the watch hub (the fd is in one of the
// worker's epoll sets) and/or a thread blocked in a system call on it (the
// request path reading or writing it).
function heldBy(pid: number, link: string): string {
  const fd = fdOf(pid, link);
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) !== "anon_inode:[eventpoll]") continue;
        const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${e.name}`);
        if (new RegExp(`^tfd:\\s+${fd}\\s`, "m").test(info)) out.push(`in epoll set fd ${e.name}`);
      } catch { /* closed meanwhile */ }
    }
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const sc = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/syscall`).trim().split(" ");
        if (sc.length > 1 && sc[0] !== "running" && Number(sc[1]) === Number(fd)) out.push(`thread ${t.name} in syscall ${sc[0]} on it`);
      } catch { /* gone */ }
    }
  } catch { /* gone */ }
  return out.join(", ") || "in no epoll set, no thread blocked on it";
}

// Open fds of every child of the master (workers and housekeeper), but
// the request loops' kept-alive connections, whose number follows nginx's
// keepalive pool rather than the streams.
function serverFds(): number {
  let n = 0;
  const l = listenSocket();
  for (const p of childrenOf(MASTER_PID)) n += fdLinks(p).length - loopSockets(p, l).size;
  return n;
}

// Waits until the workers hold no accepted connection but those in
// `except` (streams of earlier tests whose clients left may still be
// open: caddy 2.6 keeps the FastCGI connection of a raw HTTP/1.1 stream
// whose client aborted open for 20 s, or for minutes once the stream has
// carried keep-alive frames, reading them all the while), then returns
// the fd count of all the master's children: the baseline of the fd
// tests. On timeout, names each connection still held: its peer process,
// state and who in the worker holds it.
async function quiesce(except: ReadonlySet<string> = new Set()): Promise<number> {
  const deadline = Date.now() + 30_000;
  let since = 0;
  for (;;) {
    const held = [...streamsPerWorker(except).values()].reduce((a, b) => a + b, 0);
    if (held === 0) {
      since ||= Date.now();
      if (Date.now() - since >= 500) return serverFds();
    } else since = 0;
    if (Date.now() > deadline) {
      const desc = [...streamsPerWorker(except)].map(([p, n]) => `worker ${p}: ${n}`).join(", ");
      throw new Error(`the workers still hold connections 30 s after every client of earlier tests left (${desc}): ${describeHeld(except)}`);
    }
    await sleep(100);
  }
}

async function waitFds(pred: (n: number) => boolean, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  let n = serverFds();
  while (!pred(n) && Date.now() < deadline) {
    await sleep(100);
    n = serverFds();
  }
  return n;
}

// ---------------------------------------------------------------------------
// Tests

wtest("setup: caddy serves the stack's socket over h2c and HTTP/1.1", null, async () => {
  await ensureCaddy();
  assert.equal(await metadataStatus(CADDY_URL), 200, "metadata exchange through caddy over HTTP/1.1");
  const kv = await openKv(CADDY_URL); // HTTP/2 cleartext
  try {
    const k = [...uniquePrefix("caddy-setup"), "k"];
    const r = await kv.set(k, "through caddy");
    assert.equal(r.ok, true);
    assert.equal((await kv.get(k)).value, "through caddy");
  } finally {
    kv.close();
  }
});

wtest("setup: the server runs at least two workers", null, () => {
  const ws = workers();
  assert.ok(ws.length >= 2, `workers of master ${MASTER_PID}: ${ws.join(", ") || "none"} (need >= 2 for the cross-worker tests)`);
  return Promise.resolve();
});

for (const px of PROXIES) {
  wtest("initial snapshot: present and absent keys match kv.get", px, async ({ open, prefix }) => {
    const kv = await open();
    const keys: Deno.KvKey[] = [
      [...prefix, "string"],
      [...prefix, "object"],
      [...prefix, "bytes"],
      [...prefix, "bigint"],
      [...prefix, "u64"],
      [...prefix, "null"],
      [...prefix, "absent1"],
      [...prefix, "absent2"],
      [...prefix, "undefined"],
      [...prefix, "absent3"],
    ];
    await kv.set(keys[0], "hello");
    await kv.set(keys[1], { a: [1, 2, { b: "c" }], d: new Date(0) });
    await kv.set(keys[2], new Uint8Array([0, 1, 2, 255]));
    await kv.set(keys[3], 12345678901234567890n);
    await kv.set(keys[4], new Deno.KvU64(42n));
    await kv.set(keys[5], null); // a stored null is present
    await kv.set(keys[8], undefined);
    const want = await kv.getMany(keys);

    const w = new Watcher(kv, keys);
    const { frame } = await w.first();
    assert.equal(frame.entries.length, keys.length, "one entry per watched key");
    for (let i = 0; i < keys.length; i++) {
      assertSameEntry(frame.entries[i], want[i], `watched key ${i} (${String(keys[i].at(-1))})`);
    }
    for (const i of [0, 1, 2, 3, 4, 5, 8]) assertVersionstamp(frame.entries[i].versionstamp, `key ${i}`);
    for (const i of [6, 7, 9]) {
      assert.equal(frame.entries[i].value, null);
      assert.equal(frame.entries[i].versionstamp, null);
    }
    assert.deepEqual(frame.entries[1].value, { a: [1, 2, { b: "c" }], d: new Date(0) });
    assert.deepEqual(frame.entries[2].value, new Uint8Array([0, 1, 2, 255]));
    assert.equal(frame.entries[3].value, 12345678901234567890n);
    assert.ok(frame.entries[4].value instanceof Deno.KvU64);
    assert.equal((frame.entries[4].value as Deno.KvU64).value, 42n);
    assert.equal(frame.entries[5].value, null);
    assert.notEqual(frame.entries[5].versionstamp, null, "a stored null has a versionstamp");
    await w.cancel();
  });

  wtest("a change written through other connections arrives", px, async ({ open, prefix }) => {
    const kv = await open();
    const other = await open();
    const a = [...prefix, "a"], b = [...prefix, "b"];
    const a0 = await kv.set(a, "a0");
    const w = new Watcher(kv, [a, b]);
    const first = await w.first();
    assert.equal(first.frame.entries[0].versionstamp, a0.versionstamp);
    assert.equal(first.frame.entries[1].versionstamp, null);

    // A second Deno.openKv handle.
    const r1 = await other.set(b, { n: 1 });
    const got1 = await w.waitFor((e) => e[1].versionstamp === r1.versionstamp, "b set by a second handle", { from: first.index + 1 });
    assert.deepEqual(got1.frame.entries[1].value, { n: 1 });
    assert.equal(got1.frame.entries[0].value, "a0", "the unchanged key keeps its value");
    assert.equal(got1.frame.entries[0].versionstamp, a0.versionstamp);

    // A raw HTTP/1.1 request: certainly another connection (and protocol).
    const raw = await RawClient.open(px.h1);
    const out = await raw.write({
      mutations: [{ key: encodeKey(a), type: MutationType.SET, value: { data: te.encode("raw"), encoding: ValueEncoding.BYTES } }],
    });
    assert.equal(out.status, 1, "raw atomic_write committed");
    const vs = hex(out.versionstamp);
    const got2 = await w.waitFor((e) => e[0].versionstamp === vs, "a set over HTTP/1.1", { from: got1.index + 1 });
    assert.deepEqual(got2.frame.entries[0].value, te.encode("raw"));
    assert.equal(got2.frame.entries[1].versionstamp, r1.versionstamp);
    assert.deepEqual((await kv.get(a)).versionstamp, vs);
    await w.cancel();
  });

  wtest("changes committed by another worker process arrive", px, async ({ open, prefix }) => {
    const ws = workers();
    assert.ok(ws.length >= 2, `need >= 2 workers, have ${ws.length}`);
    const key = [...prefix, "x"];
    await quiesce();
    const base = streamsPerWorker();
    // Many handles, many streams: nginx and caddy open one FastCGI
    // connection per stream, and the workers race to accept them. Open
    // streams until every worker holds at least one (a commit is done by
    // one worker, so the streams held by the others cross processes).
    const kvs: Deno.Kv[] = [];
    for (let i = 0; i < 4; i++) kvs.push(await open());
    const watchers: Watcher[] = [];
    let held = new Map<number, number>();
    for (let round = 0; round < 10; round++) {
      const batch = Array.from({ length: 20 }, (_, i) => new Watcher(kvs[i % kvs.length], [key]));
      await Promise.all(batch.map((w) => w.first()));
      watchers.push(...batch);
      const now = streamsPerWorker();
      held = new Map([...now].map(([p, n]) => [p, n - (base.get(p) ?? 0)]));
      if ([...held.values()].every((n) => n >= 1)) break;
    }
    const desc = [...held].map(([p, n]) => `worker ${p}: ${n}`).join(", ");
    assert.ok(held.size >= 2 && [...held.values()].every((n) => n >= 1), `streams per worker: ${desc}`);
    let total = 0;
    for (const n of held.values()) total += n;
    assert.ok(total >= watchers.length, `workers hold ${total} new sockets for ${watchers.length} streams (${desc})`);

    // Several writes, each over its own short HTTP/1.1 connection, so the
    // commits are spread over the workers too; each one must reach every
    // stream in every worker.
    for (let i = 1; i <= 3; i++) {
      const raw = await RawClient.open(px.h1);
      const out = await raw.write({
        mutations: [{ key: encodeKey(key), type: MutationType.SET, value: { data: te.encode(`v${i}`), encoding: ValueEncoding.BYTES } }],
      });
      assert.equal(out.status, 1);
      const vs = hex(out.versionstamp);
      await Promise.all(watchers.map((w, j) => w.waitFor((e) => e[0].versionstamp === vs, `write ${i} at stream ${j}`)));
      for (const w of watchers) {
        const last = w.frames[w.frames.length - 1].entries[0];
        assert.deepEqual(last.value, te.encode(`v${i}`));
      }
    }
    await Promise.all(watchers.map((w) => w.cancel()));
  }, 90_000);

  wtest("a delete arrives as value null and versionstamp null", px, async ({ open, prefix }) => {
    const kv = await open();
    const other = await open();
    const k = [...prefix, "gone"], keep = [...prefix, "keep"];
    const r = await kv.set(k, "here");
    const rk = await kv.set(keep, "stays");
    const w = new Watcher(kv, [k, keep]);
    const first = await w.first();
    assert.equal(first.frame.entries[0].versionstamp, r.versionstamp);
    await other.delete(k);
    const { frame } = await w.waitFor((e) => e[0].versionstamp === null, "the delete", { from: first.index + 1 });
    assert.deepEqual(frame.entries[0].key, k);
    assert.equal(frame.entries[0].value, null);
    assert.equal(frame.entries[0].versionstamp, null);
    assert.equal(frame.entries[1].value, "stays");
    assert.equal(frame.entries[1].versionstamp, rk.versionstamp);
    await w.cancel();
  });

  wtest("an expiring key is reported gone after it expires, with no further write", px, async ({ open, prefix }) => {
    const kv = await open();
    const k = [...prefix, "ttl"], keep = [...prefix, "keep"];
    const rk = await kv.set(keep, "forever");
    const w = new Watcher(kv, [k, keep]);
    const first = await w.first();
    assert.equal(first.frame.entries[0].versionstamp, null);
    const setAt = Date.now();
    const r = await kv.set(k, "short-lived", { expireIn: 1000 });
    const seen = await w.waitFor((e) => e[0].versionstamp === r.versionstamp, "the set", { from: first.index + 1 });
    assert.equal(seen.frame.entries[0].value, "short-lived");
    // No more writes from here on: only expiry can change the key.
    const gone = await w.waitFor((e) => e[0].versionstamp === null, "expiry", { from: seen.index + 1 });
    assert.equal(gone.frame.entries[0].value, null);
    assert.deepEqual(gone.frame.entries[0].key, k);
    assert.ok(gone.frame.at >= setAt + 1000 - 50, `reported gone ${gone.frame.at - setAt} ms after the set, before it expired`);
    assert.equal(gone.frame.entries[1].value, "forever", "the other key is untouched");
    assert.equal(gone.frame.entries[1].versionstamp, rk.versionstamp);
    assert.equal((await kv.get(k)).versionstamp, null);
    await w.cancel();
  });

  wtest("an atomic write of two watched keys arrives as one frame", px, async ({ open, prefix }) => {
    const kv = await open();
    const other = await open();
    const a = [...prefix, "a"], b = [...prefix, "b"];
    // raw: every frame the server sends is handed out, also unchanged ones.
    const w = new Watcher(kv, [a, b], true);
    const first = await w.first();
    assert.equal(first.frame.entries[0].versionstamp, null);
    assert.equal(first.frame.entries[1].versionstamp, null);
    let last = "";
    for (let i = 1; i <= 5; i++) {
      const r = await other.atomic().set(a, `a${i}`).set(b, `b${i}`).commit();
      assert.equal(r.ok, true);
      last = (r as Deno.KvCommitResult).versionstamp;
    }
    await w.waitFor((e) => e[0].versionstamp === last && e[1].versionstamp === last, "both keys of the last commit");
    for (const [i, f] of w.frames.entries()) {
      const [ea, eb] = f.entries;
      assert.equal(ea.versionstamp, eb.versionstamp, `frame ${i} mixes two commits: ${w.describe()}`);
      if (ea.versionstamp !== null) {
        assert.equal(String(ea.value).slice(1), String(eb.value).slice(1), `frame ${i}: values of one commit`);
      }
    }
    await w.cancel();
  });

  wtest("frames larger than a FastCGI record (10 keys of 64 KiB) arrive intact", px, async ({ open, prefix }) => {
    const kv = await open();
    const other = await open();
    const keys = Array.from({ length: 10 }, (_, i) => [...prefix, i]);
    const big = (seed: number) => {
      const b = new Uint8Array(65536);
      for (let i = 0; i < b.length; i++) b[i] = (i * 31 + seed * 7) & 0xff;
      return b;
    };
    for (let i = 0; i < 10; i++) await kv.set(keys[i], big(i));
    const w = new Watcher(kv, keys);
    const first = await w.first();
    for (let i = 0; i < 10; i++) assert.deepEqual(first.frame.entries[i].value, big(i), `key ${i} in the initial frame`);
    const r = await other.atomic().set(keys[3], big(100)).set(keys[9], big(101)).commit();
    assert.equal(r.ok, true);
    const vs = (r as Deno.KvCommitResult).versionstamp;
    const { frame } = await w.waitFor((e) => e[3].versionstamp === vs, "the change", { from: first.index + 1 });
    assert.deepEqual(frame.entries[3].value, big(100));
    assert.deepEqual(frame.entries[9].value, big(101));
    assert.equal(frame.entries[9].versionstamp, vs);
    for (const i of [0, 1, 2, 4, 5, 6, 7, 8]) assert.deepEqual(frame.entries[i].value, big(i), `unchanged key ${i}`);
    await w.cancel();
  });

  wtest("the same key twice in one watch is reported twice", px, async ({ open, prefix }) => {
    const kv = await open();
    const k = [...prefix, "dup"];
    const r0 = await kv.set(k, 0);
    const w = new Watcher(kv, [k, [...prefix, "other"], k]);
    const first = await w.first();
    assert.equal(first.frame.entries.length, 3);
    assert.equal(first.frame.entries[0].versionstamp, r0.versionstamp);
    assert.equal(first.frame.entries[2].versionstamp, r0.versionstamp);
    const r1 = await kv.set(k, 1);
    const { frame } = await w.waitFor((e) => e[0].versionstamp === r1.versionstamp, "the change", { from: first.index + 1 });
    assert.equal(frame.entries[2].versionstamp, r1.versionstamp);
    assert.equal(frame.entries[0].value, 1);
    assert.equal(frame.entries[2].value, 1);
    await w.cancel();
  });

  wtest("100 concurrent watch streams all see one change", px, async ({ open, prefix }) => {
    const k = [...prefix, "shared"];
    const kvs: Deno.Kv[] = [];
    for (let i = 0; i < 4; i++) kvs.push(await open());
    const watchers = Array.from({ length: 100 }, (_, i) => new Watcher(kvs[i % 4], [k, [...prefix, "own", i]]));
    const firsts = await Promise.all(watchers.map((w, i) => w.first(`initial frame of stream ${i}`)));
    for (const f of firsts) assert.equal(f.frame.entries[0].versionstamp, null);
    const writer = await open();
    const r = await writer.set(k, "one change");
    await Promise.all(watchers.map((w, i) => w.waitFor((e) => e[0].versionstamp === r.versionstamp, `stream ${i}`)));
    for (const w of watchers) {
      const f = w.frames[w.frames.length - 1];
      assert.equal(f.entries[0].value, "one change");
      assert.equal(f.entries[1].versionstamp, null);
    }
    await Promise.all(watchers.map((w) => w.cancel()));
  }, 90_000);

  wtest("50 watches cancelled by the client leave no fds open in the server", px, async ({ open, prefix }) => {
    const N = 50;
    const baseline = await quiesce();
    const kvs = [await open(), await open()];
    const watchers = Array.from({ length: N }, (_, i) => new Watcher(kvs[i % 2], [[...prefix, "k", i]]));
    await Promise.all(watchers.map((w) => w.first()));
    const during = await waitFds((n) => n >= baseline + N, 5_000);
    assert.ok(during >= baseline + N, `with ${N} watches open the workers hold ${during} fds, baseline ${baseline}`);
    await Promise.all(watchers.map((w) => w.cancel()));
    for (const kv of kvs) kv.close();
    const after = await waitFds((n) => n <= baseline + FD_TOLERANCE, CLEANUP_MS);
    assert.ok(
      after <= baseline + FD_TOLERANCE,
      `${CLEANUP_MS} ms after the client cancelled and closed: ${after} fds, baseline ${baseline} (${after - baseline} streams leaked?)`,
    );
  }, 90_000);

  wtest("50 watches of a killed client process leave no fds open in the server", px, async ({ prefix }) => {
    const N = 50;
    const baseline = await quiesce();
    const script = `${RUN_DIR}/watch-client.ts`;
    Deno.writeTextFileSync(
      script,
      `const [url, n, prefix] = [Deno.args[0], Number(Deno.args[1]), JSON.parse(Deno.args[2])];
const kvs = [await Deno.openKv(url), await Deno.openKv(url)];
let ready = 0;
for (let i = 0; i < n; i++) {
  const r = kvs[i % 2].watch([[...prefix, "k", i]]).getReader();
  r.read().then(() => { if (++ready === n) console.log("READY"); });
}
await new Promise(() => {});
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--unstable-kv", "-A", "--no-check", "--no-lock", script, px.url, String(N), JSON.stringify(prefix)],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let killed = false;
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      await withTimeout(
        (async () => {
          while (!out.includes("READY")) {
            const r = await reader.read();
            if (r.done) throw new Error(`client exited before its watches were open: ${out}`);
            out += r.value;
          }
        })(),
        30_000,
        "client process opening its watches",
      );
      const during = await waitFds((n) => n >= baseline + N, 5_000);
      assert.ok(during >= baseline + N, `with ${N} watches open the workers hold ${during} fds, baseline ${baseline}`);
      child.kill("SIGKILL");
      killed = true;
      await child.status;
      reader.cancel().catch(() => {});
      const after = await waitFds((n) => n <= baseline + FD_TOLERANCE, CLEANUP_MS);
      assert.ok(
        after <= baseline + FD_TOLERANCE,
        `${CLEANUP_MS} ms after the client was killed: ${after} fds, baseline ${baseline} (${after - baseline} streams leaked?)`,
      );
    } finally {
      if (!killed) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
      }
    }
  }, 90_000);

  wtest("too many keys and too long keys are refused", px, async ({ open, prefix }) => {
    const kv = await open();
    // 11 keys: the Deno client refuses them itself, before sending anything.
    const eleven = Array.from({ length: 11 }, (_, i) => [...prefix, i]);
    assert.throws(() => kv.watch(eleven), /Too many keys/);
    // A key the client lets through but the server refuses (2049 bytes;
    // a watched key may be at most 2048, like a written one): the client
    // reports the server's 400 and its text.
    const pre = encodeKey(prefix).length;
    const filler = "x".repeat(2049 - pre - 2); // string part: 0x02 ... 0x00
    const long = [...prefix, filler];
    assert.equal(encodeKey(long).length, 2049);
    const w = new Watcher(kv, [long]);
    await withTimeout(
      (async () => {
        while (!w.done) await sleep(20);
      })(),
      DELIVERY_MS,
      "the watch of a 2049-byte key ending",
    );
    assert.equal(w.frames.length, 0);
    assert.match(String(w.error), /status=400/);
    assert.match(String(w.error), /A key exceeds the key size limit\./);
    // 2048 bytes is fine.
    const ok = new Watcher(kv, [[...prefix, filler.slice(1)]]);
    const f = await ok.first();
    assert.equal(f.frame.entries[0].versionstamp, null);
    await ok.cancel();
  });

  wtest("raw: 11 keys give 400 text/plain, a malformed body 400, 10 keys 200", px, async ({ prefix }) => {
    const keys = Array.from({ length: 11 }, (_, i) => rawKey([...prefix, `k${i}`]));
    const eleven = await RawWatch.open(px.h1, keys);
    assert.equal(eleven.status, 400, `11 keys: ${eleven.status} ${eleven.text}`);
    assert.match(eleven.contentType, /^text\/plain/);
    assert.equal(eleven.text.trim(), "Too many keys watched in a single watch request.");

    for (const [what, body] of [
      ["truncated varint", new Uint8Array([0x0a, 0xff])],
      ["length past the end", new Uint8Array([0x0a, 0x10, 0x0a, 0x01])],
      ["garbage", te.encode("this is not protobuf \xff\xff")],
    ] as const) {
      const bad = await RawWatch.open(px.h1, [], body);
      assert.equal(bad.status, 400, `${what}: ${bad.status} ${bad.text}`);
      assert.match(bad.contentType, /^text\/plain/);
      assert.match(bad.text, /Request protobuf is invalid/, what);
    }

    const long = await RawWatch.open(px.h1, [new Uint8Array(2049).fill(0x01)]);
    assert.equal(long.status, 400, `2049-byte key: ${long.status} ${long.text}`);
    assert.equal(long.text.trim(), "A key exceeds the key size limit.");

    const ten = await RawWatch.open(px.h1, keys.slice(0, 10));
    try {
      assert.equal(ten.status, 200, `10 keys: ${ten.status} ${ten.text}`);
      assert.equal(ten.contentType, "application/octet-stream");
      await ten.waitFrame(0, DELIVERY_MS, "first frame for 10 keys");
      const f = ten.frames[0].out;
      assert.ok(f !== null, "the first frame is not a keep-alive");
      assert.equal(f!.keys.length, 10);
    } finally {
      ten.close();
    }
  });

  wtest("raw HTTP/1.1: initial frame, then zero-length keep-alive frames", px, async ({ open, prefix }) => {
    const kv = await open();
    const present = [...prefix, "p"], absent = [...prefix, "q"];
    const r = await kv.set(present, new Uint8Array([9, 8, 7]));
    const w = await RawWatch.open(px.h1, [rawKey(present as string[]), rawKey(absent as string[])]);
    try {
      assert.equal(w.status, 200, `watch: ${w.status} ${w.text}`);
      await w.waitFrame(0, DELIVERY_MS, "initial frame");
      const first = w.frames[0].out;
      assert.ok(first !== null, "the first frame is the snapshot, not a keep-alive");
      assert.equal(first!.status, 1, "SR_SUCCESS");
      assert.equal(first!.keys.length, 2);
      // Every key is marked changed (the Deno client reports an unchanged
      // key in a first frame as an error, and later ones as deleted).
      assert.equal(first!.keys[0].changed, true);
      assert.equal(first!.keys[1].changed, true);
      const e = first!.keys[0].entry!;
      assert.ok(e, "present key has an entry");
      assert.deepEqual(e.key, rawKey(present as string[]));
      assert.deepEqual(e.value, new Uint8Array([9, 8, 7]));
      assert.equal(e.encoding, ValueEncoding.BYTES);
      assert.equal(hex(e.versionstamp), r.versionstamp);
      assert.equal(first!.keys[1].entry, null, "absent key has no entry");

      // The server pings every 5 s, whatever the phase: one within 7 s,
      // then the next one about 5 s later: pings keep coming, spaced out
      // (not one and then silence, not a burst).
      await w.waitFrame(1, 7_000, "keep-alive frame");
      assert.equal(w.frames[1].out, null, `second frame should be a zero-length keep-alive, got ${JSON.stringify(w.frames[1].out)}`);
      await w.waitFrame(2, 7_000, "the next keep-alive frame");
      assert.equal(w.frames[2].out, null, `third frame should be a zero-length keep-alive, got ${JSON.stringify(w.frames[2].out)}`);
      const gap = w.frames[2].at - w.frames[1].at;
      assert.ok(gap >= 2_500, `two keep-alives ${gap} ms apart; the server should ping every 5 s`);

      // The stream still works after the keep-alives.
      const r2 = await kv.set(absent, "now here");
      let i = 3;
      for (;;) {
        await w.waitFrame(i, DELIVERY_MS, "frame after the keep-alive");
        const f = w.frames[i].out;
        if (f !== null) {
          assert.equal(hex(f.keys[1].entry!.versionstamp), r2.versionstamp);
          assert.equal(f.keys[0].changed && f.keys[1].changed, true);
          assert.equal(hex(f.keys[0].entry!.versionstamp), r.versionstamp);
          break;
        }
        i++;
      }
    } finally {
      w.close();
    }
  }, 30_000);
}

// ---------------------------------------------------------------------------
// FastCGI straight to the server's socket: no proxy in between, so a client
// hang-up reaches the worker at once and the timing below is tight.

function fcgiRecord(type: number, content: Uint8Array): Uint8Array {
  const pad = (8 - (content.length % 8)) % 8;
  const out = new Uint8Array(8 + content.length + pad);
  out.set([1, type, 0, 1, content.length >> 8, content.length & 255, pad, 0]);
  out.set(content, 8);
  return out;
}

function fcgiRequest(path: string, body: Uint8Array, databaseId: string): Uint8Array {
  const pairs: number[] = [];
  const len = (n: number) => n < 128 ? [n] : [((n >> 24) & 127) | 128, (n >> 16) & 255, (n >> 8) & 255, n & 255];
  const nv = (k: string, v: string) => {
    const kb = te.encode(k), vb = te.encode(v);
    pairs.push(...len(kb.length), ...len(vb.length), ...kb, ...vb);
  };
  nv("REQUEST_METHOD", "POST");
  nv("REQUEST_URI", path);
  nv("SCRIPT_NAME", path);
  nv("CONTENT_LENGTH", String(body.length));
  nv("CONTENT_TYPE", "application/x-protobuf");
  nv("HTTP_AUTHORIZATION", `Bearer ${ENV.TOKEN}`);
  nv("HTTP_X_DENOKV_VERSION", "3");
  nv("HTTP_X_DENOKV_DATABASE_ID", databaseId);
  const parts = [
    fcgiRecord(1, new Uint8Array([0, 1, 0, 0, 0, 0, 0, 0])), // BEGIN_REQUEST, responder
    fcgiRecord(4, new Uint8Array(pairs)),
    fcgiRecord(4, new Uint8Array()),
    ...(body.length ? [fcgiRecord(5, body)] : []),
    fcgiRecord(5, new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// Sends a request; reads STDOUT until `enough(stdout)` or the response ends.
async function fcgiExchange(
  request: Uint8Array,
  enough: (stdout: Uint8Array) => boolean,
): Promise<{ conn: Deno.UnixConn; stdout: Uint8Array; ended: boolean }> {
  const conn = await Deno.connect({ transport: "unix", path: SOCKET });
  await conn.write(request);
  let buf = new Uint8Array(0), stdout = new Uint8Array(0), ended = false;
  const chunk = new Uint8Array(16384);
  while (!ended && !enough(stdout)) {
    const n = await conn.read(chunk);
    if (n === null) break;
    const b = new Uint8Array(buf.length + n);
    b.set(buf);
    b.set(chunk.subarray(0, n), buf.length);
    let i = 0;
    while (b.length - i >= 8) {
      const clen = (b[i + 4] << 8) | b[i + 5], total = 8 + clen + b[i + 6];
      if (b.length - i < total) break;
      if (b[i + 1] === 6) {
        const s = new Uint8Array(stdout.length + clen);
        s.set(stdout);
        s.set(b.subarray(i + 8, i + 8 + clen), stdout.length);
        stdout = s;
      } else if (b[i + 1] === 3) ended = true;
      i += total;
    }
    buf = b.slice(i);
  }
  return { conn, stdout, ended };
}

// The response headers and one complete watch frame after them.
function hasFirstFrame(stdout: Uint8Array): boolean {
  let h = -1;
  for (let i = 0; i + 3 < stdout.length; i++) {
    if (stdout[i] === 13 && stdout[i + 1] === 10 && stdout[i + 2] === 13 && stdout[i + 3] === 10) {
      h = i + 4;
      break;
    }
  }
  if (h < 0) return false;
  const rest = stdout.subarray(h);
  return rest.length >= 4 && rest.length >= 4 + (rest[0] | (rest[1] << 8) | (rest[2] << 16));
}

// A worker's hub sends a change to every stream of the key; a stream whose
// client has hung up fails that write and is dropped, while its hang-up is
// still waiting in the same epoll batch. Processing that event must not
// touch the dropped stream (it did once: double free, worker killed by
// SIGABRT). Many streams, two quick commits, then every client hangs up.
wtest("clients hanging up while a change is sent to them crash no worker", null, async ({ prefix }) => {
  const raw = await RawClient.open(H1_URL);
  const dbid = raw.meta.databaseId;
  const key = rawKey([...prefix, "k"]);
  const watchReq = fcgiRequest("/v2/watch", encWatch([key]), dbid);
  const setReq = (v: string) =>
    fcgiRequest("/v2/atomic_write", encAtomicWrite({
      mutations: [{ key, type: MutationType.SET, value: { data: te.encode(v), encoding: ValueEncoding.BYTES } }],
    }), dbid);
  const before = workers();
  assert.ok(before.length >= 1);
  // Connections of earlier tests may still be open (caddy keeps the stream
  // of the raw watch the test before aborted for minutes, see quiesce):
  // what must go is every connection this test makes, and any the workers
  // take on from now on is one (socket inodes are not reused while the
  // old socket lives).
  const earlier = heldSockets();
  const N = 1000, ROUNDS = 5;
  for (let round = 1; round <= ROUNDS; round++) {
    const conns: Deno.UnixConn[] = [];
    try {
      for (let i = 0; i < N; i += 100) {
        const batch = await Promise.all(Array.from({ length: Math.min(100, N - i) }, () => fcgiExchange(watchReq, hasFirstFrame)));
        for (const r of batch) {
          conns.push(r.conn);
          assert.ok(hasFirstFrame(r.stdout), `round ${round}: a watch stream ended without its initial frame: ${dec.decode(r.stdout).slice(0, 200)}`);
        }
      }
      for (const v of [`a${round}`, `b${round}`]) {
        const w = await fcgiExchange(setReq(v), () => false);
        w.conn.close();
        assert.match(dec.decode(w.stdout), /^Status: 200/, `write ${v}: ${dec.decode(w.stdout).slice(0, 200)}`);
      }
    } finally {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    }
    await sleep(200);
    assert.deepEqual(workers(), before, `round ${round}: a worker died (server.log: ${serverLogTail()})`);
  }
  // The hubs dropped every stream and still serve.
  await quiesce(earlier);
  const check = await RawWatch.open(H1_URL, [key]);
  try {
    assert.equal(check.status, 200);
    await check.waitFrame(0, DELIVERY_MS, "a new watch after the hang-ups");
    assert.equal(dec.decode(check.frames[0].out!.keys[0].entry!.value), `b${ROUNDS}`);
  } finally {
    check.close();
  }
  assert.deepEqual(workers(), before, `a worker died (server.log: ${serverLogTail()})`);
}, 120_000);

function serverLogTail(): string {
  try {
    return Deno.readTextFileSync(`${RUN_DIR}/server.log`).split("\n").slice(-8).join(" | ");
  } catch {
    return "(no server.log)";
  }
}

// Another denokv-fcgi on the same file has its own signal segment: its
// commits reach this server's watchers through the database alone.
wtest("a change committed by another server instance on the same database arrives", null, async ({ open, prefix }) => {
  const env = await startServer("watch2");
  try {
    const main = await open();
    const other = await openKv(env.H2C_URL);
    try {
      const k = [...prefix, "k"];
      const wMain = new Watcher(main, [k]);
      const wOther = new Watcher(other, [k]);
      await Promise.all([wMain.first(), wOther.first()]);
      const r1 = await other.set(k, "from the second instance");
      await wMain.waitFor((e) => e[0].versionstamp === r1.versionstamp, "write through the second instance, watched through the first");
      const r2 = await main.set(k, "from the first instance");
      await wOther.waitFor((e) => e[0].versionstamp === r2.versionstamp, "write through the first instance, watched through the second");
      assert.equal(wMain.frames.at(-1)!.entries[0].value, "from the first instance");
      await Promise.all([wMain.cancel(), wOther.cancel()]);
    } finally {
      other.close();
    }
  } finally {
    await stopServer("watch2");
  }
});

// One write request touching both keys of a raw stream: one frame.
wtest("raw HTTP/1.1: one atomic write of two keys is one frame on the wire", null, async ({ prefix }) => {
  const a = rawKey([...prefix, "a"]), b = rawKey([...prefix, "b"]);
  const w = await RawWatch.open(H1_URL, [a, b]);
  try {
    assert.equal(w.status, 200);
    await w.waitFrame(0, DELIVERY_MS, "initial frame");
    const raw = await RawClient.open(H1_URL);
    const out = await raw.write({
      mutations: [
        { key: a, type: MutationType.SET, value: { data: te.encode("A"), encoding: ValueEncoding.BYTES } },
        { key: b, type: MutationType.SET, value: { data: te.encode("B"), encoding: ValueEncoding.BYTES } },
      ],
    });
    assert.equal(out.status, 1);
    const vs = hex(out.versionstamp);
    let i = 1;
    for (;;) {
      await w.waitFrame(i, DELIVERY_MS, "frame of the commit");
      const f = w.frames[i].out;
      if (f !== null) {
        assert.equal(f.keys.length, 2);
        assert.ok(f.keys[0].entry && f.keys[1].entry, `both keys present in the first frame after the commit: ${JSON.stringify(f)}`);
        assert.equal(hex(f.keys[0].entry!.versionstamp), vs);
        assert.equal(hex(f.keys[1].entry!.versionstamp), vs);
        assert.equal(dec.decode(f.keys[0].entry!.value), "A");
        assert.equal(dec.decode(f.keys[1].entry!.value), "B");
        break;
      }
      i++;
    }
  } finally {
    w.close();
  }
});

wtest("teardown: caddy stops", null, async () => {
  assert.ok(caddyChild, "caddy never ran: the tests above did not go through it");
  caddyChild.kill("SIGTERM");
  const st = await withTimeout(caddyChild.status, 15_000, "caddy stopping on SIGTERM");
  caddyChild = undefined;
  // caddy shuts down gracefully on SIGTERM and exits 0 ("shutdown complete").
  assert.ok(st.success && st.code === 0, `caddy exit: ${JSON.stringify(st)}`);
});
