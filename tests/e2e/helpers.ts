// Shared helpers for the Deno end-to-end suites (run by tests/e2e/run.sh).
//
// The stack (nginx + denokv-fcgi) is started by run.sh through
// scripts/stack.sh; its settings are in $RUN_DIR/env. Every test uses keys
// under its own unique prefix so the suites can share one database.
//
// Nothing here is imported from the network: assertions come from node:assert
// and the KV Connect protobuf messages are encoded by hand (proto/datapath.proto).

import assert from "node:assert/strict";
export { assert };

// ---------------------------------------------------------------------------
// Environment

export function parseEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of Deno.readTextFileSync(path).split("\n")) {
    const m = line.match(/^([A-Za-z_][A-Za-z0-9_]*)='([^']*)'$/);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

const runDir = Deno.env.get("RUN_DIR");
if (!runDir) throw new Error("RUN_DIR is not set: run the suites through tests/e2e/run.sh");
export const RUN_DIR = runDir;
export const ENV = parseEnvFile(`${RUN_DIR}/env`);
export const TOKEN = ENV.TOKEN;
export const H2C_URL = ENV.H2C_URL; // Deno CLI (HTTP/2 cleartext)
export const H1_URL = ENV.H1_URL; // fetch / curl (HTTP/1.1)
export const H2C_KV_URL = ENV.H2C_KV_URL;
export const H1_KV_URL = ENV.H1_KV_URL;
export const DB = ENV.DB;
export const SRCDIR = Deno.env.get("DENOKV_SRCDIR") ??
  new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const STACK = `${SRCDIR}/scripts/stack.sh`;

// The Deno client reads the token from the environment.
Deno.env.set("DENO_KV_ACCESS_TOKEN", TOKEN);

// A prefix no other test (or run) uses.
// Short, so that 1000 keys under it stay within the client's 80 KiB of keys
// per commit.
const RUN_ID = crypto.randomUUID().slice(0, 8);
let prefixCounter = 0;
export function uniquePrefix(name: string): string[] {
  const slug = name.replace(/[^A-Za-z0-9]+/g, "_").slice(0, 16);
  return ["e2e", RUN_ID, `${slug}.${++prefixCounter}`];
}

// ---------------------------------------------------------------------------
// Timeouts: the Deno client retries a 5xx or a dead connection forever, so a
// server bug could hang a test. Every test has a deadline instead.

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no answer within ${ms} ms (a 5xx or a dead server makes the Deno client retry forever)`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface KvTestOpts {
  url?: string;
  timeout?: number;
}

// A Deno test with its own KV handle (closed afterwards, even on failure) and
// its own key prefix.
export function kvTest(
  name: string,
  fn: (kv: Deno.Kv, prefix: string[]) => Promise<void>,
  opts: KvTestOpts = {},
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const url = opts.url ?? H2C_URL;
      const kv = await withTimeout(Deno.openKv(url), 30_000, `Deno.openKv(${url})`);
      try {
        await withTimeout(fn(kv, uniquePrefix(name)), opts.timeout ?? 60_000, name);
      } finally {
        kv.close();
      }
    },
  });
}

// A test without a KV handle, with a deadline.
export function plainTest(name: string, fn: () => Promise<void>, timeout = 60_000): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () => withTimeout(fn(), timeout, name),
  });
}

export async function collect<T>(it: Deno.KvListIterator<T>): Promise<Deno.KvEntry<T>[]> {
  const out: Deno.KvEntry<T>[] = [];
  for await (const e of it) out.push(e);
  return out;
}

// A versionstamp: 20 lowercase hex digits (10 bytes).
export function assertVersionstamp(v: unknown, what = "versionstamp"): asserts v is string {
  assert.equal(typeof v, "string", `${what} is not a string: ${String(v)}`);
  assert.match(v as string, /^[0-9a-f]{20}$/, `${what} is not 20 lowercase hex digits`);
}

// ---------------------------------------------------------------------------
// Processes

export async function run(
  cmd: string[],
  opts: { env?: Record<string, string>; stdin?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const c = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: opts.env,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = c.spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const r = await child.output();
  return {
    code: r.code,
    stdout: new TextDecoder().decode(r.stdout),
    stderr: new TextDecoder().decode(r.stderr),
  };
}

// sqlite3 CLI on a database file; returns trimmed stdout, throws on error.
export async function sqlite(db: string, sql: string, mode: string[] = []): Promise<string> {
  const r = await run(["sqlite3", ...mode, db, sql]);
  if (r.code !== 0) throw new Error(`sqlite3 ${db} '${sql}' failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

export async function dataVersion(db = DB): Promise<string> {
  return await sqlite(db, "select version from data_version where k = 0");
}

// scripts/stack.sh start-server RUN_DIR NAME, returning NAME's env.
export async function startServer(name: string, env: Record<string, string> = {}): Promise<Record<string, string>> {
  const r = await run([STACK, "start-server", RUN_DIR, name], { env });
  if (r.code !== 0) {
    throw new Error(`stack.sh start-server ${name} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return parseEnvFile(`${RUN_DIR}/${name}.env`);
}

export async function stopServer(name: string): Promise<void> {
  const r = await run([STACK, "stop-server", RUN_DIR, name]);
  if (r.code !== 0) {
    throw new Error(`stack.sh stop-server ${name} failed (${r.code}) — did the server die or ignore SIGTERM?\n${r.stdout}\n${r.stderr}`);
  }
}

// ---------------------------------------------------------------------------
// Key encoding (the KV key codec: FoundationDB tuple layer style), for the
// parts raw tests need.

const te = new TextEncoder();

function escapeZeros(b: Uint8Array, out: number[]) {
  for (const x of b) {
    out.push(x);
    if (x === 0) out.push(0xff);
  }
}

export function encodeKey(key: (string | Uint8Array | boolean | number)[]): Uint8Array {
  const out: number[] = [];
  for (const part of key) {
    if (part instanceof Uint8Array) {
      out.push(0x01);
      escapeZeros(part, out);
      out.push(0x00);
    } else if (typeof part === "string") {
      out.push(0x02);
      escapeZeros(te.encode(part), out);
      out.push(0x00);
    } else if (typeof part === "boolean") {
      out.push(part ? 0x27 : 0x26);
    } else if (typeof part === "number") {
      const dv = new DataView(new ArrayBuffer(8));
      dv.setFloat64(0, part);
      const b = new Uint8Array(dv.buffer);
      if (b[0] & 0x80) for (let i = 0; i < 8; i++) b[i] ^= 0xff;
      else b[0] ^= 0x80;
      out.push(0x21, ...b);
    } else {
      throw new Error(`encodeKey: unsupported part ${String(part)}`);
    }
  }
  return new Uint8Array(out);
}

// ---------------------------------------------------------------------------
// Protobuf, by hand (proto/datapath.proto).

export const MutationType = { SET: 1, DELETE: 2, SUM: 3, MAX: 4, MIN: 5, SET_SUFFIX_VERSIONSTAMPED_KEY: 9 } as const;
export const ValueEncoding = { V8: 1, LE64: 2, BYTES: 3 } as const;
export const AtomicWriteStatus = { UNSPECIFIED: 0, SUCCESS: 1, CHECK_FAILURE: 2, WRITE_DISABLED: 5 } as const;
export const SnapshotReadStatus = { UNSPECIFIED: 0, SUCCESS: 1, READ_DISABLED: 2 } as const;

class PbWriter {
  buf: number[] = [];
  varint(v: number | bigint) {
    let n = BigInt.asUintN(64, BigInt(v));
    while (n >= 0x80n) {
      this.buf.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    this.buf.push(Number(n));
  }
  tag(field: number, wire: number) {
    this.varint((field << 3) | wire);
  }
  bytes(field: number, b: Uint8Array | undefined) {
    if (b === undefined) return;
    this.tag(field, 2);
    this.varint(b.length);
    for (let i = 0; i < b.length; i++) this.buf.push(b[i]);
  }
  uint(field: number, v: number | bigint | boolean | undefined) {
    if (v === undefined || v === false || v === 0 || v === 0n) return;
    this.tag(field, 0);
    this.varint(typeof v === "boolean" ? 1 : v);
  }
  packed(field: number, vs: number[] | undefined) {
    if (!vs || vs.length === 0) return;
    const w = new PbWriter();
    for (const v of vs) w.varint(v);
    this.bytes(field, w.finish());
  }
  finish(): Uint8Array {
    return new Uint8Array(this.buf);
  }
}

export interface RangeIn {
  start: Uint8Array;
  end: Uint8Array;
  limit: number;
  reverse?: boolean;
}

export function encSnapshotRead(ranges: RangeIn[]): Uint8Array {
  const w = new PbWriter();
  for (const r of ranges) {
    const rw = new PbWriter();
    rw.bytes(1, r.start);
    rw.bytes(2, r.end);
    rw.uint(3, r.limit);
    rw.uint(4, r.reverse ?? false);
    w.bytes(1, rw.finish());
  }
  return w.finish();
}

export interface CheckIn {
  key: Uint8Array;
  versionstamp?: Uint8Array; // empty/absent: must not exist
}

export interface MutationIn {
  key: Uint8Array;
  type: number;
  value?: { data: Uint8Array; encoding: number };
  expireAtMs?: number;
  sumMin?: Uint8Array;
  sumMax?: Uint8Array;
  sumClamp?: boolean;
}

export interface EnqueueIn {
  payload: Uint8Array;
  deadlineMs: number;
  keysIfUndelivered?: Uint8Array[];
  backoffSchedule?: number[];
}

export function encAtomicWrite(aw: { checks?: CheckIn[]; mutations?: MutationIn[]; enqueues?: EnqueueIn[] }): Uint8Array {
  const w = new PbWriter();
  for (const c of aw.checks ?? []) {
    const cw = new PbWriter();
    cw.bytes(1, c.key);
    if (c.versionstamp && c.versionstamp.length) cw.bytes(2, c.versionstamp);
    w.bytes(1, cw.finish());
  }
  for (const m of aw.mutations ?? []) {
    const mw = new PbWriter();
    mw.bytes(1, m.key);
    if (m.value) {
      const vw = new PbWriter();
      vw.bytes(1, m.value.data);
      vw.uint(2, m.value.encoding);
      mw.bytes(2, vw.finish());
    }
    mw.uint(3, m.type);
    mw.uint(4, m.expireAtMs);
    mw.bytes(5, m.sumMin);
    mw.bytes(6, m.sumMax);
    mw.uint(7, m.sumClamp);
    w.bytes(2, mw.finish());
  }
  for (const e of aw.enqueues ?? []) {
    const ew = new PbWriter();
    ew.bytes(1, e.payload);
    ew.uint(2, e.deadlineMs);
    for (const k of e.keysIfUndelivered ?? []) ew.bytes(3, k);
    ew.packed(4, e.backoffSchedule);
    w.bytes(3, ew.finish());
  }
  return w.finish();
}

type PbField = { wire: number; v: bigint | Uint8Array };

export function pbParse(b: Uint8Array): Map<number, PbField[]> {
  const out = new Map<number, PbField[]>();
  let i = 0;
  const varint = (): bigint => {
    let shift = 0n, n = 0n;
    for (;;) {
      if (i >= b.length) throw new Error("protobuf: truncated varint");
      const x = b[i++];
      n |= BigInt(x & 0x7f) << shift;
      if (!(x & 0x80)) return n;
      shift += 7n;
      if (shift > 63n) throw new Error("protobuf: varint too long");
    }
  };
  while (i < b.length) {
    const tag = Number(varint());
    const field = tag >> 3, wire = tag & 7;
    let v: bigint | Uint8Array;
    if (wire === 0) v = varint();
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > b.length) throw new Error("protobuf: truncated bytes");
      v = b.slice(i, i + len);
      i += len;
    } else if (wire === 1) {
      v = b.slice(i, i + 8);
      i += 8;
    } else if (wire === 5) {
      v = b.slice(i, i + 4);
      i += 4;
    } else throw new Error(`protobuf: wire type ${wire}`);
    if (!out.has(field)) out.set(field, []);
    out.get(field)!.push({ wire, v });
  }
  return out;
}

function pbBytes(m: Map<number, PbField[]>, f: number): Uint8Array {
  const xs = m.get(f);
  return xs ? (xs[xs.length - 1].v as Uint8Array) : new Uint8Array();
}
function pbNum(m: Map<number, PbField[]>, f: number): number {
  const xs = m.get(f);
  return xs ? Number(xs[xs.length - 1].v as bigint) : 0;
}
function pbUints(m: Map<number, PbField[]>, f: number): number[] {
  const out: number[] = [];
  for (const x of m.get(f) ?? []) {
    if (x.wire === 0) {
      out.push(Number(x.v));
      continue;
    }
    // packed
    const b = x.v as Uint8Array;
    let i = 0;
    while (i < b.length) {
      let shift = 0, n = 0;
      for (;;) {
        const y = b[i++];
        n += (y & 0x7f) * 2 ** shift;
        if (!(y & 0x80)) break;
        shift += 7;
      }
      out.push(n);
    }
  }
  return out;
}

export interface EntryOut {
  key: Uint8Array;
  value: Uint8Array;
  encoding: number;
  versionstamp: Uint8Array;
}

export function decSnapshotReadOutput(b: Uint8Array) {
  const m = pbParse(b);
  const ranges = (m.get(1) ?? []).map((r) => {
    const rm = pbParse(r.v as Uint8Array);
    return {
      values: (rm.get(1) ?? []).map((e): EntryOut => {
        const em = pbParse(e.v as Uint8Array);
        return { key: pbBytes(em, 1), value: pbBytes(em, 2), encoding: pbNum(em, 3), versionstamp: pbBytes(em, 4) };
      }),
    };
  });
  return { ranges, readDisabled: pbNum(m, 2) !== 0, stronglyConsistent: pbNum(m, 4) !== 0, status: pbNum(m, 8) };
}

export function decAtomicWriteOutput(b: Uint8Array) {
  const m = pbParse(b);
  return { status: pbNum(m, 1), versionstamp: pbBytes(m, 2), failedChecks: pbUints(m, 4) };
}

export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function u64le(n: bigint): Uint8Array {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, n, true);
  return new Uint8Array(dv.buffer);
}

// ---------------------------------------------------------------------------
// A raw KV Connect client over HTTP/1.1 (Deno's fetch), for tests that must
// see exactly what the server answers.

export interface RawResponse {
  status: number;
  contentType: string;
  body: Uint8Array;
  text: string;
}

export async function rawFetch(url: string, init: RequestInit): Promise<RawResponse> {
  const r = await withTimeout(fetch(url, init), 30_000, `fetch ${url}`);
  const body = new Uint8Array(await r.arrayBuffer());
  return {
    status: r.status,
    contentType: r.headers.get("content-type") ?? "",
    body,
    text: new TextDecoder().decode(body),
  };
}

export interface Metadata {
  version: number;
  databaseId: string;
  endpoints: { url: string; consistency: string }[];
  token: string;
  expiresAt: string;
}

export async function metadataExchange(
  base: string,
  opts: { token?: string | null; body?: string | null; contentType?: string } = {},
): Promise<RawResponse> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers["authorization"] = `Bearer ${token}`;
  headers["content-type"] = opts.contentType ?? "application/json";
  const body = opts.body === undefined ? JSON.stringify({ supportedVersions: [1, 2, 3] }) : opts.body;
  return await rawFetch(base, { method: "POST", headers, body: body ?? undefined });
}

export class RawClient {
  constructor(
    readonly base: string,
    readonly meta: Metadata,
    readonly dataUrl: string,
  ) {}

  static async open(base = H1_URL): Promise<RawClient> {
    const r = await metadataExchange(base);
    if (r.status !== 200) throw new Error(`metadata exchange at ${base}: ${r.status} ${r.text}`);
    const meta = JSON.parse(r.text) as Metadata;
    const strong = meta.endpoints.find((e) => e.consistency === "strong");
    if (!strong) throw new Error(`metadata has no strong endpoint: ${r.text}`);
    return new RawClient(base, meta, new URL(strong.url, base).href.replace(/\/$/, ""));
  }

  headers(over: Record<string, string | null> = {}): Headers {
    const h: Record<string, string | null> = {
      "authorization": `Bearer ${this.meta.token}`,
      "content-type": "application/x-protobuf",
      "x-denokv-version": "3",
      "x-denokv-database-id": this.meta.databaseId,
      ...over,
    };
    const out = new Headers();
    for (const [k, v] of Object.entries(h)) if (v !== null) out.set(k, v);
    return out;
  }

  async post(path: string, body: Uint8Array | string | null, over: Record<string, string | null> = {}, method = "POST"): Promise<RawResponse> {
    return await rawFetch(`${this.dataUrl}/${path}`, {
      method,
      headers: this.headers(over),
      body: body === null ? undefined : (body as BodyInit),
    });
  }

  async read(ranges: RangeIn[]) {
    const r = await this.post("snapshot_read", encSnapshotRead(ranges));
    if (r.status !== 200) throw new Error(`snapshot_read: ${r.status} ${r.text}`);
    return decSnapshotReadOutput(r.body);
  }

  async get(key: Uint8Array): Promise<EntryOut | null> {
    const end = new Uint8Array([...key, 0x00]);
    const out = await this.read([{ start: key, end, limit: 1 }]);
    return out.ranges[0]?.values[0] ?? null;
  }

  async write(aw: Parameters<typeof encAtomicWrite>[0]) {
    const r = await this.post("atomic_write", encAtomicWrite(aw));
    if (r.status !== 200) throw new Error(`atomic_write: ${r.status} ${r.text}`);
    return decAtomicWriteOutput(r.body);
  }
}
