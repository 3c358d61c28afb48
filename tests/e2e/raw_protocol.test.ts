// The KV Connect protocol byte by byte: hand-encoded protobuf over HTTP/1.1
// (Deno's fetch to nginx's plain listener). Every refusal must answer the
// right status with a one-line text/plain reason, leave the database exactly
// as it was (a known entry and the data_version counter), and leave the
// server answering the next request.

import { deserialize, serialize } from "node:v8";
import {
  assert,
  AtomicWriteStatus,
  dataVersion,
  DB,
  decSnapshotReadOutput,
  encAtomicWrite,
  encodeKey,
  encSnapshotRead,
  H1_KV_URL,
  H1_URL,
  hex,
  metadataExchange,
  type Metadata,
  MutationType,
  plainTest,
  rawFetch,
  RawClient,
  type RawResponse,
  SnapshotReadStatus,
  sqlite,
  TOKEN,
  u64le,
  ValueEncoding,
} from "./helpers.ts";

const RID = crypto.randomUUID().slice(0, 8);
const K = (...parts: string[]) => encodeKey(["raw", RID, ...parts]);
const bytes = (s: string) => new TextEncoder().encode(s);
const BYTES = ValueEncoding.BYTES;

const raw = await RawClient.open(H1_URL);

// A known entry whose value and versionstamp must survive every refusal.
const KNOWN = K("known");
const knownWrite = await raw.write({
  mutations: [{ key: KNOWN, type: MutationType.SET, value: { data: bytes("known value"), encoding: BYTES } }],
});

interface State {
  known: string;
  dataVersion: string;
}

async function state(): Promise<State> {
  const e = await raw.get(KNOWN);
  assert.ok(e, "the known entry is readable");
  return {
    known: `${hex(e.value)}/${e.encoding}/${hex(e.versionstamp)}`,
    dataVersion: await dataVersion(),
  };
}

function assertOneLineText(r: RawResponse, what: string) {
  assert.match(r.contentType, /^text\/plain\b/i, `${what}: content-type ${JSON.stringify(r.contentType)}`);
  const t = r.text.replace(/\r?\n$/, "");
  assert.ok(t.trim().length > 0, `${what}: empty body`);
  assert.ok(!/[\r\n]/.test(t), `${what}: body is not one line: ${JSON.stringify(r.text)}`);
}

// A refused request: status, one-line text, nothing changed, next request OK.
// canaries: keys the refused request would have written; they must stay absent.
function refused(
  name: string,
  status: number | number[],
  send: () => Promise<RawResponse>,
  canaries: Uint8Array[] = [],
) {
  const want = Array.isArray(status) ? status : [status];
  plainTest(`${name} -> ${want.join(" or ")}`, async () => {
    const before = await state();
    const r = await send();
    assert.ok(want.includes(r.status), `${name}: got ${r.status}, want ${want.join(" or ")}: ${r.text.slice(0, 200)}`);
    assertOneLineText(r, name);
    // The next valid request is answered, and nothing changed.
    const after = await state();
    assert.deepEqual(after, before, `${name}: the database changed`);
    for (const c of canaries) {
      assert.equal(await raw.get(c), null, `${name}: a mutation of the refused request was applied`);
    }
  });
}

const setBytes = (key: Uint8Array, v: Uint8Array) => ({
  key,
  type: MutationType.SET,
  value: { data: v, encoding: BYTES },
});

// ---------------------------------------------------------------------------
// Successful exchanges

plainTest("metadata exchange: version 3, database id, endpoint <base>/v2, token, expiry", async () => {
  const r = await metadataExchange(H1_URL);
  assert.equal(r.status, 200, r.text);
  assert.match(r.contentType, /^application\/json\b/);
  const m = JSON.parse(r.text) as Metadata;
  assert.equal(m.version, 3);
  assert.equal(typeof m.databaseId, "string");
  assert.match(m.databaseId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
  assert.deepEqual(m.endpoints, [{ url: "/v2", consistency: "strong" }]);
  assert.ok(typeof m.token === "string" && m.token.length > 0);
  const exp = Date.parse(m.expiresAt);
  assert.ok(exp > Date.now() + 60 * 60 * 1000, `expiresAt ${m.expiresAt} is less than an hour away`);
  // The database id is stable.
  const again = JSON.parse((await metadataExchange(H1_URL)).text) as Metadata;
  assert.equal(again.databaseId, m.databaseId);
});

plainTest("metadata exchange negotiates the highest common version", async () => {
  for (const [versions, want] of [[[1, 2], 2], [[2, 3], 3], [[3], 3], [[2], 2], [[3, 2, 1], 3]] as const) {
    const r = await metadataExchange(H1_URL, { body: JSON.stringify({ supportedVersions: versions }) });
    assert.equal(r.status, 200, `${JSON.stringify(versions)}: ${r.status} ${r.text}`);
    assert.equal(JSON.parse(r.text).version, want, JSON.stringify(versions));
  }
});

plainTest("sub-path /kv/: metadata advertises /kv/v2 and reads and writes work there", async () => {
  const r = await metadataExchange(H1_KV_URL);
  assert.equal(r.status, 200, r.text);
  const m = JSON.parse(r.text) as Metadata;
  assert.deepEqual(m.endpoints, [{ url: "/kv/v2", consistency: "strong" }]);
  assert.equal(m.databaseId, raw.meta.databaseId, "same file, same database id");
  const sub = await RawClient.open(H1_KV_URL);
  assert.ok(sub.dataUrl.endsWith("/kv/v2"), sub.dataUrl);
  const w = await sub.write({ mutations: [setBytes(K("sub"), bytes("via /kv/"))] });
  assert.equal(w.status, AtomicWriteStatus.SUCCESS);
  const viaRoot = await raw.get(K("sub"));
  assert.ok(viaRoot);
  assert.equal(new TextDecoder().decode(viaRoot.value), "via /kv/");
  assert.equal(hex(viaRoot.versionstamp), hex(w.versionstamp));
  const viaSub = await sub.get(K("sub"));
  assert.equal(hex(viaSub!.versionstamp), hex(w.versionstamp));
  assert.equal(hex((await sub.get(KNOWN))!.versionstamp), hex(knownWrite.versionstamp));
});

plainTest("snapshot_read answers strongly consistent with SR_SUCCESS", async () => {
  const out = await raw.read([
    { start: KNOWN, end: new Uint8Array([...KNOWN, 0]), limit: 10 },
    { start: K("nothing-here"), end: K("nothing-here~"), limit: 10 },
  ]);
  assert.equal(out.status, SnapshotReadStatus.SUCCESS);
  assert.equal(out.stronglyConsistent, true);
  assert.equal(out.readDisabled, false);
  assert.equal(out.ranges.length, 2);
  assert.equal(out.ranges[0].values.length, 1);
  const e = out.ranges[0].values[0];
  assert.equal(hex(e.key), hex(KNOWN));
  assert.equal(new TextDecoder().decode(e.value), "known value");
  assert.equal(e.encoding, BYTES);
  assert.equal(e.versionstamp.length, 10);
  assert.equal(hex(e.versionstamp), hex(knownWrite.versionstamp));
  assert.equal(out.ranges[1].values.length, 0);
});

plainTest("x-denokv-version: 2 is accepted too", async () => {
  const r = await raw.post("snapshot_read", encSnapshotRead([{ start: KNOWN, end: new Uint8Array([...KNOWN, 0]), limit: 1 }]), {
    "x-denokv-version": "2",
  });
  assert.equal(r.status, 200, r.text);
  const out = decSnapshotReadOutput(r.body);
  assert.equal(out.ranges[0].values.length, 1);
  assert.equal(hex(out.ranges[0].values[0].versionstamp), hex(knownWrite.versionstamp));
});

plainTest("atomic_write: success, then a failed check reports its index and writes nothing", async () => {
  assert.equal(knownWrite.status, AtomicWriteStatus.SUCCESS);
  assert.equal(knownWrite.versionstamp.length, 10);
  const a = K("cas-a"), b = K("cas-b");
  const w1 = await raw.write({ mutations: [setBytes(a, bytes("1")), setBytes(b, bytes("1"))] });
  assert.equal(w1.status, AtomicWriteStatus.SUCCESS);
  assert.ok(hex(w1.versionstamp) > hex(knownWrite.versionstamp));
  const before = await dataVersion();
  const w2 = await raw.write({
    checks: [{ key: a, versionstamp: w1.versionstamp }, { key: b }, { key: K("cas-absent") }],
    mutations: [setBytes(a, bytes("2")), setBytes(K("cas-canary"), bytes("x"))],
  });
  assert.equal(w2.status, AtomicWriteStatus.CHECK_FAILURE);
  assert.deepEqual(w2.failedChecks, [1]);
  assert.equal(await dataVersion(), before, "a failed check changed data_version");
  assert.equal(new TextDecoder().decode((await raw.get(a))!.value), "1");
  assert.equal(await raw.get(K("cas-canary")), null);
});

plainTest("versionstamped key: 0x02 + 20 hex digits + 0x00 appended", async () => {
  const base = K("vs");
  const w = await raw.write({
    mutations: [{ key: base, type: MutationType.SET_SUFFIX_VERSIONSTAMPED_KEY, value: { data: bytes("v"), encoding: BYTES } }],
  });
  assert.equal(w.status, AtomicWriteStatus.SUCCESS);
  const want = new Uint8Array([...base, 0x02, ...bytes(hex(w.versionstamp)), 0x00]);
  const e = await raw.get(want);
  assert.ok(e, `no entry at ${hex(want)}`);
  assert.equal(hex(e.versionstamp), hex(w.versionstamp));
});

plainTest("LE64 sum, min and max on the wire", async () => {
  const k = K("u64");
  await raw.write({ mutations: [{ key: k, type: MutationType.SET, value: { data: u64le(10n), encoding: ValueEncoding.LE64 } }] });
  await raw.write({ mutations: [{ key: k, type: MutationType.SUM, value: { data: u64le(5n), encoding: ValueEncoding.LE64 } }] });
  let e = await raw.get(k);
  assert.equal(e!.encoding, ValueEncoding.LE64);
  assert.equal(hex(e!.value), hex(u64le(15n)));
  await raw.write({ mutations: [{ key: k, type: MutationType.MAX, value: { data: u64le(99n), encoding: ValueEncoding.LE64 } }] });
  await raw.write({ mutations: [{ key: k, type: MutationType.MIN, value: { data: u64le(42n), encoding: ValueEncoding.LE64 } }] });
  e = await raw.get(k);
  assert.equal(hex(e!.value), hex(u64le(42n)));
});

// V8 sums with bounds: the Deno client's mutate() cannot send min, max or
// clamp, other KV Connect clients can. V8 values come from node:v8, which
// is V8's own serializer.
const v8 = (x: unknown) => new Uint8Array(serialize(x));
const V8 = ValueEncoding.V8;
const v8sum = (key: Uint8Array, x: unknown, min?: unknown, max?: unknown, clamp = false) => ({
  key,
  type: MutationType.SUM,
  value: { data: v8(x), encoding: V8 },
  sumMin: min === undefined ? undefined : v8(min),
  sumMax: max === undefined ? undefined : v8(max),
  sumClamp: clamp,
});
async function v8get(key: Uint8Array): Promise<unknown> {
  const e = await raw.get(key);
  assert.ok(e, `no entry at ${hex(key)}`);
  assert.equal(e.encoding, V8);
  return deserialize(e.value);
}

plainTest("V8 sum with min > max: refused without clamp; with clamp min applies, then max (denokv's order)", async () => {
  const k = K("v8-minmax"), kb = K("v8-minmax-big");
  await raw.write({ mutations: [v8sum(k, 5), v8sum(kb, 1n)] });
  const r = await raw.post("atomic_write", encAtomicWrite({ mutations: [v8sum(k, 1, 10, 0)] }));
  assert.equal(r.status, 400, r.text);
  assert.match(r.text, /would exceed its range limit/);
  assert.equal(await v8get(k), 5);
  const w = await raw.write({ mutations: [v8sum(k, 1, 10, 0, true), v8sum(kb, 1n, 100n, 50n, true)] });
  assert.equal(w.status, AtomicWriteStatus.SUCCESS);
  assert.equal(await v8get(k), 0, "6 rises to min 10, then falls to max 0");
  assert.equal(await v8get(kb), 50n, "2n rises to 100n, then falls to 50n");
});

plainTest("V8 sum with NaN bounds: NaN never bounds, with or without clamp", async () => {
  const k = K("v8-nan");
  await raw.write({ mutations: [v8sum(k, 5)] });
  await raw.write({ mutations: [v8sum(k, 1, NaN, NaN)] });
  assert.equal(await v8get(k), 6);
  await raw.write({ mutations: [v8sum(k, 1, NaN, NaN, true)] });
  assert.equal(await v8get(k), 7);
  await raw.write({ mutations: [v8sum(k, NaN, undefined, 100)] });
  assert.ok(Number.isNaN(await v8get(k)), "NaN is not above 100: stored");
});

plainTest("V8 sum with bounds: in range, clamped, refused", async () => {
  const k = K("v8-bounds");
  await raw.write({ mutations: [v8sum(k, 10)] });
  const r = await raw.post("atomic_write", encAtomicWrite({ mutations: [setBytes(K("v8-bounds-side"), bytes("x")), v8sum(k, 5, undefined, 12)] }));
  assert.equal(r.status, 400, r.text);
  assert.equal(await raw.get(K("v8-bounds-side")), null, "all or nothing");
  await raw.write({ mutations: [v8sum(k, 5, undefined, 12, true)] });
  assert.equal(await v8get(k), 12);
  await raw.write({ mutations: [v8sum(k, -20, 0, undefined, true)] });
  assert.equal(await v8get(k), 0);
  await raw.write({ mutations: [v8sum(k, 3, 0, 100)] });
  assert.equal(await v8get(k), 3);
});

async function queueRowsWithPayload(payload: Uint8Array) {
  const out = await sqlite(DB, `select ts, id, backoff_schedule, keys_if_undelivered from queue where hex(data) = '${hex(payload).toUpperCase()}'`, ["-json"]);
  return (out ? JSON.parse(out) : []) as { ts: number; id: string; backoff_schedule: string; keys_if_undelivered: string }[];
}

plainTest("enqueue: deadline, backoff schedule and dead-letter keys stored as denokv stores them", async () => {
  const payload = bytes(`payload-${crypto.randomUUID()}`);
  const deadline = Date.now() + 120_000;
  const dead1 = K("dead", "1"), dead2 = K("dead", "2");
  const w = await raw.write({
    mutations: [setBytes(K("q-side"), bytes("x"))],
    enqueues: [{ payload, deadlineMs: deadline, keysIfUndelivered: [dead1, dead2], backoffSchedule: [1000, 5000, 3600000] }],
  });
  assert.equal(w.status, AtomicWriteStatus.SUCCESS);
  const rows = await queueRowsWithPayload(payload);
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(Number(rows[0].ts), deadline);
  // A version-8 UUID whose last byte is the schedule's length (docs/queues.md).
  assert.match(rows[0].id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{10}03$/);
  assert.deepEqual(JSON.parse(rows[0].backoff_schedule), [1000, 5000, 3600000]);
  assert.deepEqual(JSON.parse(rows[0].keys_if_undelivered), [Array.from(dead1), Array.from(dead2)]);
  assert.equal(hex((await raw.get(K("q-side")))!.versionstamp), hex(w.versionstamp));
});

plainTest("enqueue without a backoff schedule stores denokv's default [100,1000,5000,30000,60000]", async () => {
  const payload = bytes(`payload-${crypto.randomUUID()}`);
  const deadline = Date.now();
  const w = await raw.write({ enqueues: [{ payload, deadlineMs: deadline }] });
  assert.equal(w.status, AtomicWriteStatus.SUCCESS);
  const rows = await queueRowsWithPayload(payload);
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(Number(rows[0].ts), deadline);
  assert.deepEqual(JSON.parse(rows[0].backoff_schedule), [100, 1000, 5000, 30000, 60000]);
  assert.deepEqual(JSON.parse(rows[0].keys_if_undelivered), []);
});

plainTest("enqueue with a failed check stores nothing", async () => {
  const payload = bytes(`payload-${crypto.randomUUID()}`);
  const w = await raw.write({
    checks: [{ key: KNOWN }], // KNOWN exists: "must not exist" fails
    enqueues: [{ payload, deadlineMs: Date.now() }],
  });
  assert.equal(w.status, AtomicWriteStatus.CHECK_FAILURE);
  assert.deepEqual(await queueRowsWithPayload(payload), []);
});

// ---------------------------------------------------------------------------
// Refusals: authentication and headers

const READ_KNOWN = () => encSnapshotRead([{ start: KNOWN, end: new Uint8Array([...KNOWN, 0]), limit: 1 }]);
const WRITE_CANARY = (name: string) => encAtomicWrite({ mutations: [setBytes(K(name), bytes("must not be written"))] });

refused("snapshot_read with a wrong token", 401, () => raw.post("snapshot_read", READ_KNOWN(), { authorization: "Bearer not-the-token-at-all" }));
refused("atomic_write with a wrong token", 401, () => raw.post("atomic_write", WRITE_CANARY("c-tok"), { authorization: "Bearer not-the-token-at-all" }), [K("c-tok")]);
refused("snapshot_read without Authorization", 401, () => raw.post("snapshot_read", READ_KNOWN(), { authorization: null }));
refused("atomic_write without Authorization", 401, () => raw.post("atomic_write", WRITE_CANARY("c-noauth"), { authorization: null }), [K("c-noauth")]);
refused("Authorization without Bearer", 401, () => raw.post("snapshot_read", READ_KNOWN(), { authorization: raw.meta.token }));
refused("x-denokv-version: 7", 400, () => raw.post("snapshot_read", READ_KNOWN(), { "x-denokv-version": "7" }));
refused("x-denokv-version: banana", 400, () => raw.post("atomic_write", WRITE_CANARY("c-ver"), { "x-denokv-version": "banana" }), [K("c-ver")]);
refused("wrong x-denokv-database-id", 400, () => raw.post("snapshot_read", READ_KNOWN(), { "x-denokv-database-id": crypto.randomUUID() }));
refused("wrong x-denokv-database-id on a write", 400, () => raw.post("atomic_write", WRITE_CANARY("c-dbid"), { "x-denokv-database-id": crypto.randomUUID() }), [K("c-dbid")]);
refused("missing x-denokv-database-id", 400, () => raw.post("snapshot_read", READ_KNOWN(), { "x-denokv-database-id": null }));

// ---------------------------------------------------------------------------
// Refusals: bodies, paths, methods

refused("malformed protobuf in snapshot_read", 400, () => raw.post("snapshot_read", new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2])));
refused("malformed protobuf in atomic_write", 400, () => raw.post("atomic_write", new Uint8Array([0x12, 0x50, 0x0a, 0x03, 0x02, 0x61])));
refused("truncated atomic_write (valid prefix of a real write)", 400, () => {
  const full = WRITE_CANARY("c-trunc");
  return raw.post("atomic_write", full.slice(0, full.length - 3));
}, [K("c-trunc")]);
refused("body of 1.5 MiB (over the server's 1 MiB)", 413, () => {
  // A real write of one 1.5 MiB value: only the size check can refuse it as 413.
  return raw.post("atomic_write", encAtomicWrite({ mutations: [setBytes(K("c-big"), new Uint8Array(1536 * 1024).fill(7))] }));
}, [K("c-big")]);
refused("body of 3 MiB (over nginx's client_max_body_size 2m)", 413, () => raw.post("atomic_write", new Uint8Array(3 * 1024 * 1024)));
refused("unknown path /v2/nope", 404, () => raw.post("nope", READ_KNOWN()));
// Outside /v2/ a path may be a mount point (a metadata exchange), but a
// protobuf data-path call there is an unknown endpoint.
refused("protobuf read to /v3/snapshot_read", 404, () =>
  rawFetch(new URL("v3/snapshot_read", H1_URL).href, { method: "POST", headers: raw.headers(), body: READ_KNOWN() }));
refused("protobuf read to /nope", 404, () =>
  rawFetch(new URL("nope", H1_URL).href, { method: "POST", headers: raw.headers(), body: READ_KNOWN() }));
refused("text body to /nope is a metadata exchange: not JSON", 400, () =>
  rawFetch(new URL("nope", H1_URL).href, { method: "POST", headers: raw.headers({ "content-type": "text/plain" }), body: "hello" }));
// The watch endpoint exists (404 would mean it does not) and refuses garbage
// with a 400 (never a 5xx, which the Deno client retries forever).
refused("malformed protobuf to watch", 400, () => raw.post("watch", new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])));
refused("GET on snapshot_read", 405, () => raw.post("snapshot_read", null, {}, "GET"));
refused("PUT on atomic_write", 405, () => raw.post("atomic_write", WRITE_CANARY("c-put"), {}, "PUT"), [K("c-put")]);
refused("GET on the metadata endpoint", 405, () => fetchRaw(H1_URL, "GET"));

async function fetchRaw(url: string, method: string): Promise<RawResponse> {
  const r = await fetch(url, { method, headers: { authorization: `Bearer ${TOKEN}` } });
  const body = new Uint8Array(await r.arrayBuffer());
  return { status: r.status, contentType: r.headers.get("content-type") ?? "", body, text: new TextDecoder().decode(body) };
}

// ---------------------------------------------------------------------------
// Refusals: metadata exchange

refused("metadata with only version 1", 400, () => metadataExchange(H1_URL, { body: JSON.stringify({ supportedVersions: [1] }) }));
refused("metadata with no body", 400, () => metadataExchange(H1_URL, { body: null }));
refused("metadata with invalid JSON", 400, () => metadataExchange(H1_URL, { body: '{"supportedVersions": [1,2,' }));
refused("metadata without supportedVersions", 400, () => metadataExchange(H1_URL, { body: "{}" }));
refused("metadata with a wrong token", 401, () => metadataExchange(H1_URL, { token: "wrong-token-123456" }));
refused("metadata without Authorization", 401, () => metadataExchange(H1_URL, { token: null }));

// ---------------------------------------------------------------------------
// Refusals: V8 sums (each also carries the canary). The targets exist:
// KNOWN holds bytes, V8N a V8 number, U64 a KvU64.

const V8N = K("v8-target-n"), U64 = K("v8-target-u64");
await raw.write({
  mutations: [
    { key: V8N, type: MutationType.SET, value: { data: v8(5), encoding: V8 } },
    { key: U64, type: MutationType.SET, value: { data: u64le(7n), encoding: ValueEncoding.LE64 } },
  ],
});
const sumRefused = (name: string, m: ReturnType<typeof v8sum>, reason: RegExp) =>
  refused(name, 400, async () => {
    const r = await raw.post("atomic_write", encAtomicWrite({ mutations: [setBytes(K(`c-${name}`), bytes("x")), m] }));
    assert.match(r.text, reason, `${name}: ${r.text}`);
    return r;
  }, [K(`c-${name}`)]);
const INVALID_V8 = /not valid V8 numbers or bigints/;
sumRefused("V8 sum with a string operand", v8sum(V8N, "five"), INVALID_V8);
sumRefused("V8 sum with a truncated double", { ...v8sum(V8N, 1), value: { data: new Uint8Array([0xff, 0x0f, 0x4e, 0]), encoding: V8 } }, INVALID_V8);
sumRefused("V8 sum with an empty operand", { ...v8sum(V8N, 1), value: { data: new Uint8Array(0), encoding: V8 } }, INVALID_V8);
sumRefused("V8 sum with a string as min", v8sum(V8N, 1, "zero"), INVALID_V8);
sumRefused("V8 sum with a truncated max", { ...v8sum(V8N, 1), sumMax: new Uint8Array([0xff, 0x0f, 0x5a]) }, INVALID_V8);
sumRefused("V8 sum with a bigint max on a number", v8sum(V8N, 1, undefined, 10n), /different types than the operand/);
sumRefused("V8 sum of a bigint onto a number", v8sum(V8N, 1n), /Cannot sum values of different types/);
sumRefused("V8 sum of -1n onto a KvU64", v8sum(U64, -1n), /Cannot sum values of different types/);
sumRefused("V8 sum of 2^64n onto a KvU64", v8sum(U64, 2n ** 64n), /Cannot sum values of different types/);
sumRefused("V8 sum of 1n with max 10n onto a KvU64", v8sum(U64, 1n, undefined, 10n), /Cannot use min\/max parameters with KvU64/);

// ---------------------------------------------------------------------------
// Refusals: limits (each request also carries a valid mutation, the canary)

refused("oversize key in atomic_write (2049 bytes)", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-k"), bytes("x")), setBytes(new Uint8Array(2049).fill(0x41), bytes("x"))],
  })), [K("c-k")]);
refused("oversize value in atomic_write (65537 bytes)", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-v"), bytes("x")), setBytes(K("c-v2"), new Uint8Array(65537))],
  })), [K("c-v"), K("c-v2")]);
// Check keys follow the read-key limit (2049 bytes), as in the reference
// server: a check may name a key built from a read range's bound.
refused("oversize check key (2050 bytes)", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    checks: [{ key: new Uint8Array(2050).fill(0x41) }],
    mutations: [setBytes(K("c-ck"), bytes("x"))],
  })), [K("c-ck")]);
refused("1001 mutations", 400, () => {
  const mutations = [];
  for (let i = 0; i < 1001; i++) mutations.push(setBytes(K("c-m", String(i)), bytes("x")));
  return raw.post("atomic_write", encAtomicWrite({ mutations }));
}, [K("c-m", "0"), K("c-m", "1000")]);
refused("101 checks", 400, () => {
  const checks = [];
  for (let i = 0; i < 101; i++) checks.push({ key: K("c-absent", String(i)) });
  return raw.post("atomic_write", encAtomicWrite({ checks, mutations: [setBytes(K("c-ch"), bytes("x"))] }));
}, [K("c-ch")]);
refused("mutations over 819200 bytes in total", 400, () => {
  const mutations = [];
  for (let i = 0; i < 13; i++) mutations.push(setBytes(K("c-tot", String(i)), new Uint8Array(65000).fill(i)));
  return raw.post("atomic_write", encAtomicWrite({ mutations }));
}, [K("c-tot", "0")]);
refused("11 read ranges", 400, () => {
  const ranges = [];
  for (let i = 0; i < 11; i++) ranges.push({ start: K("r", String(i)), end: K("r", String(i) + "~"), limit: 1 });
  return raw.post("snapshot_read", encSnapshotRead(ranges));
});
refused("a read asking for 1001 entries", 400, () => raw.post("snapshot_read", encSnapshotRead([{ start: K(""), end: K("~"), limit: 1001 }])));
refused("read ranges asking for 1001 entries together", 400, () =>
  raw.post("snapshot_read", encSnapshotRead([
    { start: K("a"), end: K("b"), limit: 500 },
    { start: K("b"), end: K("c"), limit: 501 },
  ])));
refused("oversize read key (2050 bytes)", 400, () =>
  raw.post("snapshot_read", encSnapshotRead([{ start: new Uint8Array(2050).fill(0x41), end: new Uint8Array(2050).fill(0x42), limit: 1 }])));
refused("sum with an 8-byte LE64 expected but 7 given", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-s7"), bytes("x")), { key: K("c-s7b"), type: MutationType.SUM, value: { data: new Uint8Array(7), encoding: ValueEncoding.LE64 } }],
  })), [K("c-s7"), K("c-s7b")]);
refused("KvU64 sum onto a bytes value", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-sb"), bytes("x")), { key: KNOWN, type: MutationType.SUM, value: { data: u64le(1n), encoding: ValueEncoding.LE64 } }],
  })), [K("c-sb")]);
refused("set without a value", 400, () =>
  raw.post("atomic_write", encAtomicWrite({ mutations: [setBytes(K("c-nv"), bytes("x")), { key: K("c-nv2"), type: MutationType.SET }] })),
  [K("c-nv"), K("c-nv2")]);
refused("unknown mutation type 42", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-mt"), bytes("x")), { key: K("c-mt2"), type: 42, value: { data: bytes("x"), encoding: BYTES } }],
  })), [K("c-mt"), K("c-mt2")]);
refused("enqueue with 11 backoff steps", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-q1"), bytes("x"))],
    enqueues: [{ payload: bytes("p"), deadlineMs: Date.now(), backoffSchedule: Array(11).fill(100) }],
  })), [K("c-q1")]);
refused("enqueue with a backoff step over one hour", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-q2"), bytes("x"))],
    enqueues: [{ payload: bytes("p"), deadlineMs: Date.now(), backoffSchedule: [3600001] }],
  })), [K("c-q2")]);
refused("enqueue with 11 keys_if_undelivered", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-q3"), bytes("x"))],
    enqueues: [{ payload: bytes("p"), deadlineMs: Date.now(), keysIfUndelivered: Array.from({ length: 11 }, (_, i) => K("dl", String(i))) }],
  })), [K("c-q3")]);
refused("enqueue more than 30 days ahead", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-q4"), bytes("x"))],
    enqueues: [{ payload: bytes("p"), deadlineMs: Date.now() + 31 * 24 * 3600 * 1000 }],
  })), [K("c-q4")]);
refused("enqueue payload over 65536 bytes", 400, () =>
  raw.post("atomic_write", encAtomicWrite({
    mutations: [setBytes(K("c-q5"), bytes("x"))],
    enqueues: [{ payload: new Uint8Array(65537), deadlineMs: Date.now() }],
  })), [K("c-q5")]);

// Last: after all of the above, the server still writes.
plainTest("after every refusal, a valid write still commits", async () => {
  const before = await dataVersion();
  const w = await raw.write({ mutations: [setBytes(K("final"), bytes("ok"))] });
  assert.equal(w.status, AtomicWriteStatus.SUCCESS);
  assert.equal(BigInt(await dataVersion()), BigInt(before) + 1n);
  const e = await raw.get(K("final"));
  assert.equal(hex(e!.versionstamp), hex(w.versionstamp));
  // versionstamp = data_version (8 bytes big-endian) + 2 zero bytes, as
  // denokv and the Deno CLI's local KV make them.
  const dv = BigInt(await dataVersion());
  assert.equal(hex(w.versionstamp), dv.toString(16).padStart(16, "0") + "0000");
});
