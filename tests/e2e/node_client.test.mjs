// Node's @deno/kv client (remote mode, HTTP/1.1 through nginx's plain
// listener) against denokv-fcgi, including enqueues, which this client sends
// inside atomic_write (the Deno CLI refuses them for remote databases).
// Run by tests/e2e/run.sh: node --test --test-reporter=tap.
//
// Queue rows are checked in the SQLite file with the sqlite3 CLI against
// what the client actually put on the wire (a wrapping fetcher decodes each
// atomic_write): @deno/kv 0.14 sends its own backoff schedule
// [100,200,400,800] whatever backoffSchedule says, so the test compares with
// the bytes sent rather than with the options passed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import v8 from "node:v8";
import { KvU64, openKv } from "@deno/kv";

const RUN_DIR = process.env.RUN_DIR;
if (!RUN_DIR) throw new Error("RUN_DIR is not set: run through tests/e2e/run.sh");
const ENV = Object.fromEntries(
  readFileSync(`${RUN_DIR}/env`, "utf8").split("\n")
    .map((l) => l.match(/^([A-Za-z_][A-Za-z0-9_]*)='([^']*)'$/))
    .filter(Boolean)
    .map((m) => [m[1], m[2]]),
);
const RID = randomUUID().slice(0, 8);

// --- protobuf, just enough to read an AtomicWrite's enqueues ---------------
function pbParse(b) {
  const out = new Map();
  let i = 0;
  const varint = () => {
    let n = 0n, shift = 0n;
    for (;;) {
      const x = b[i++];
      n |= BigInt(x & 0x7f) << shift;
      if (!(x & 0x80)) return n;
      shift += 7n;
    }
  };
  while (i < b.length) {
    const tag = Number(varint());
    const f = tag >> 3, w = tag & 7;
    let v;
    if (w === 0) v = varint();
    else if (w === 2) {
      const len = Number(varint());
      v = b.subarray(i, i + len);
      i += len;
    } else throw new Error(`unexpected wire type ${w}`);
    if (!out.has(f)) out.set(f, []);
    out.get(f).push({ w, v });
  }
  return out;
}
function packedUints(fields) {
  const out = [];
  for (const { w, v } of fields ?? []) {
    if (w === 0) {
      out.push(Number(v));
      continue;
    }
    let i = 0; // packed: a run of varints
    while (i < v.length) {
      let n = 0, mul = 1, x;
      do {
        x = v[i++];
        n += (x & 0x7f) * mul;
        mul *= 128;
      } while (x & 0x80);
      out.push(n);
    }
  }
  return out;
}
function decodeEnqueues(body) {
  const m = pbParse(body);
  return (m.get(3) ?? []).map(({ v }) => {
    const e = pbParse(v);
    return {
      payload: e.get(1)?.[0].v ?? new Uint8Array(),
      deadlineMs: Number(e.get(2)?.[0].v ?? 0n),
      keysIfUndelivered: (e.get(3) ?? []).map((x) => Array.from(x.v)),
      backoffSchedule: packedUints(e.get(4)),
    };
  });
}

// --- a KV handle whose atomic_write bodies are recorded ---------------------
async function open() {
  const sent = [];
  const fetcher = async (url, init) => {
    if (String(url).endsWith("/atomic_write") && init?.body) {
      const b = init.body;
      sent.push(b instanceof Uint8Array ? Uint8Array.from(b) : new Uint8Array(b));
    }
    return await fetch(url, init);
  };
  const kv = await openKv(ENV.H1_URL, { accessToken: ENV.TOKEN, fetcher });
  return { kv, sent };
}

function sqliteJson(sql) {
  const out = execFileSync("sqlite3", ["-json", ENV.DB, sql], { encoding: "utf8" }).trim();
  return out ? JSON.parse(out) : [];
}

// Queue rows whose payload is an object with this marker.
function queueRows(marker) {
  return sqliteJson("select ts, id, hex(data) as data, backoff_schedule, keys_if_undelivered from queue")
    .filter((r) => {
      try {
        return v8.deserialize(Buffer.from(r.data, "hex"))?.marker === marker;
      } catch {
        return false;
      }
    });
}

// Key bytes of a key of strings: 0x02 + UTF-8 + 0x00 per part.
function packStringKey(parts) {
  return parts.flatMap((s) => [0x02, ...Buffer.from(s, "utf8"), 0x00]);
}

const VS = /^[0-9a-f]{20}$/;

function kvTest(name, fn) {
  test(name, { timeout: 60_000 }, async () => {
    const { kv, sent } = await open();
    try {
      await fn(kv, ["node", RID, name.replace(/[^A-Za-z0-9]+/g, "_").slice(0, 20)], sent);
    } finally {
      kv.close();
    }
  });
}

// ---------------------------------------------------------------------------

kvTest("set, get, delete", async (kv, p) => {
  const r = await kv.set([...p, "k"], { hello: "node" });
  assert.equal(r.ok, true);
  assert.match(r.versionstamp, VS);
  const e = await kv.get([...p, "k"]);
  assert.deepEqual(e.value, { hello: "node" });
  assert.equal(e.versionstamp, r.versionstamp);
  await kv.delete([...p, "k"]);
  const g = await kv.get([...p, "k"]);
  assert.equal(g.value, null);
  assert.equal(g.versionstamp, null);
});

kvTest("values: bigint, Date, bytes, KvU64, nested", async (kv, p) => {
  const vals = {
    big: -(2n ** 70n),
    date: new Date("2020-01-02T03:04:05.006Z"),
    bytes: new Uint8Array([0, 1, 255]),
    nested: { a: [1, { b: "c" }], d: null },
  };
  for (const [k, v] of Object.entries(vals)) await kv.set([...p, k], v);
  for (const [k, v] of Object.entries(vals)) assert.deepEqual((await kv.get([...p, k])).value, v, k);
  await kv.set([...p, "u64"], new KvU64(2n ** 64n - 1n));
  const u = await kv.get([...p, "u64"]);
  assert.equal(u.value.value, 2n ** 64n - 1n);
});

kvTest("getMany and list (prefix, reverse, limit)", async (kv, p) => {
  for (const l of ["a", "b", "c", "d"]) await kv.set([...p, l], l.toUpperCase());
  const many = await kv.getMany([[...p, "d"], [...p, "x"], [...p, "a"]]);
  assert.deepEqual(many.map((e) => e.value), ["D", null, "A"]);
  const all = [];
  for await (const e of kv.list({ prefix: p })) all.push(e.value);
  assert.deepEqual(all, ["A", "B", "C", "D"]);
  const rev = [];
  for await (const e of kv.list({ prefix: p }, { reverse: true, limit: 2 })) rev.push(e.value);
  assert.deepEqual(rev, ["D", "C"]);
  const range = [];
  for await (const e of kv.list({ start: [...p, "b"], end: [...p, "d"] })) range.push(e.value);
  assert.deepEqual(range, ["B", "C"]);
});

kvTest("atomic: checks pass and fail, sum", async (kv, p) => {
  const k = [...p, "k"];
  const r1 = await kv.atomic().check({ key: k, versionstamp: null }).set(k, 1).commit();
  assert.equal(r1.ok, true);
  const r2 = await kv.atomic().check({ key: k, versionstamp: null }).set(k, 2).commit();
  assert.equal(r2.ok, false);
  assert.equal((await kv.get(k)).value, 1);
  const r3 = await kv.atomic().check({ key: k, versionstamp: r1.versionstamp }).set(k, 3).sum([...p, "n"], 5n).commit();
  assert.equal(r3.ok, true);
  assert.ok(r3.versionstamp > r1.versionstamp);
  assert.equal((await kv.get(k)).value, 3);
  assert.equal((await kv.get([...p, "n"])).value.value, 5n);
});

kvTest("enqueue with delay and keysIfUndelivered is stored as denokv stores it", async (kv, p, sent) => {
  const marker = `m-${randomUUID()}`;
  const value = { marker, job: "resize", sizes: [1, 2, 3] };
  const dead = [...p, "dead-letter"];
  const delay = 60_000;
  const before = Date.now();
  await kv.enqueue(value, { delay, keysIfUndelivered: [dead], backoffSchedule: [1000, 5000, 10000] });
  const after = Date.now();

  assert.equal(sent.length, 1, "one atomic_write sent");
  const [wire] = decodeEnqueues(sent[0]);
  assert.ok(wire, "the atomic_write carried an enqueue");

  const rows = queueRows(marker);
  assert.equal(rows.length, 1, `queue rows for the marker: ${JSON.stringify(rows)}`);
  const row = rows[0];
  // Deadline: exactly what was sent, which is the client's now + delay.
  assert.equal(Number(row.ts), wire.deadlineMs);
  assert.ok(Number(row.ts) >= before + delay && Number(row.ts) <= after + delay,
    `ts ${row.ts} not within [${before + delay}, ${after + delay}]`);
  // A version-8 UUID whose last byte is the schedule's length (docs/queues.md).
  assert.match(row.id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(parseInt(row.id.slice(34), 16), wire.backoffSchedule.length);
  // The schedule and dead-letter keys as JSON, as denokv writes them.
  assert.ok(wire.backoffSchedule.length > 0);
  assert.deepEqual(JSON.parse(row.backoff_schedule), wire.backoffSchedule);
  assert.deepEqual(JSON.parse(row.keys_if_undelivered), [packStringKey(dead)]);
  assert.deepEqual(JSON.parse(row.keys_if_undelivered), wire.keysIfUndelivered);
  // The payload is stored byte for byte and deserializes to the value.
  assert.equal(row.data.toLowerCase(), Buffer.from(wire.payload).toString("hex"));
  assert.deepEqual(v8.deserialize(Buffer.from(row.data, "hex")), value);
});

kvTest("enqueue without options: due now, no dead-letter keys", async (kv, _p, sent) => {
  const marker = `m-${randomUUID()}`;
  const before = Date.now();
  await kv.enqueue({ marker });
  const after = Date.now();
  const [wire] = decodeEnqueues(sent[0]);
  const rows = queueRows(marker);
  assert.equal(rows.length, 1);
  assert.ok(Number(rows[0].ts) >= before && Number(rows[0].ts) <= after, `ts ${rows[0].ts}`);
  assert.deepEqual(JSON.parse(rows[0].keys_if_undelivered), []);
  // Whatever schedule the client sent (an empty one means denokv's default).
  const want = wire.backoffSchedule.length ? wire.backoffSchedule : [100, 1000, 5000, 30000, 60000];
  assert.deepEqual(JSON.parse(rows[0].backoff_schedule), want);
});

kvTest("enqueue in an atomic: committed with the set, dropped with a failed check", async (kv, p) => {
  const m1 = `m-${randomUUID()}`, m2 = `m-${randomUUID()}`;
  const r = await kv.atomic().set([...p, "with-job"], 1).enqueue({ marker: m1 }, { delay: 5000 }).commit();
  assert.equal(r.ok, true);
  assert.equal(queueRows(m1).length, 1);
  assert.equal((await kv.get([...p, "with-job"])).versionstamp, r.versionstamp);

  const dv = sqliteJson("select version from data_version where k = 0")[0].version;
  const f = await kv.atomic().check({ key: [...p, "with-job"], versionstamp: null })
    .set([...p, "not-written"], 1).enqueue({ marker: m2 }).commit();
  assert.equal(f.ok, false);
  assert.equal(queueRows(m2).length, 0, "a failed check still enqueued");
  assert.equal((await kv.get([...p, "not-written"])).versionstamp, null);
  assert.equal(sqliteJson("select version from data_version where k = 0")[0].version, dv);
});

kvTest("the /kv/ sub-path serves the same database", async (kv, p) => {
  const sub = await openKv(ENV.H1_KV_URL, { accessToken: ENV.TOKEN });
  try {
    const r = await sub.set([...p, "via-kv"], "sub");
    const e = await kv.get([...p, "via-kv"]);
    assert.equal(e.value, "sub");
    assert.equal(e.versionstamp, r.versionstamp);
  } finally {
    sub.close();
  }
});
