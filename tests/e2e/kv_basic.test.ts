// The Deno CLI's KV client against denokv-fcgi over HTTP/2 cleartext (nginx).
// Run by tests/e2e/run.sh: deno test --unstable-kv -A --reporter=tap.

import {
  assert,
  assertVersionstamp,
  collect,
  encAtomicWrite,
  encodeKey,
  H1_URL,
  H2C_KV_URL,
  kvTest,
  MutationType,
  RawClient,
  sleep,
  u64le,
  ValueEncoding,
} from "./helpers.ts";

const U64_MAX = 2n ** 64n - 1n;

async function assertRejects(p: Promise<unknown>, re: RegExp, what: string): Promise<Error> {
  try {
    await p;
  } catch (e) {
    const msg = String(e instanceof Error ? e.message : e);
    assert.match(msg, re, `${what}: unexpected error: ${msg}`);
    return e as Error;
  }
  throw new Error(`${what}: expected an error, but it succeeded`);
}

// ---------------------------------------------------------------------------
// get / set / delete / getMany

kvTest("set, get and delete one key", async (kv, p) => {
  const key = [...p, "k"];
  const missing = await kv.get(key);
  assert.equal(missing.value, null);
  assert.equal(missing.versionstamp, null);

  const r = await kv.set(key, { hello: "world" });
  assert.equal(r.ok, true);
  assertVersionstamp(r.versionstamp);
  const got = await kv.get(key);
  assert.deepEqual(got.key, key);
  assert.deepEqual(got.value, { hello: "world" });
  assert.equal(got.versionstamp, r.versionstamp);

  const r2 = await kv.set(key, "second");
  assert.ok(r2.versionstamp > r.versionstamp, "overwrite gets a newer versionstamp");
  assert.equal((await kv.get(key)).value, "second");

  await kv.delete(key);
  const gone = await kv.get(key);
  assert.equal(gone.value, null);
  assert.equal(gone.versionstamp, null);
  // Deleting a missing key is not an error.
  await kv.delete(key);
  assert.equal((await kv.get(key)).versionstamp, null);
});

kvTest("null and undefined are stored values, not absence", async (kv, p) => {
  const rn = await kv.set([...p, "null"], null);
  const ru = await kv.set([...p, "undef"], undefined);
  const n = await kv.get([...p, "null"]);
  const u = await kv.get([...p, "undef"]);
  assert.equal(n.value, null);
  assert.equal(n.versionstamp, rn.versionstamp);
  assert.equal(u.value, undefined);
  assert.equal(u.versionstamp, ru.versionstamp);
});

kvTest("getMany returns entries in request order, missing ones as null", async (kv, p) => {
  const a = await kv.set([...p, "a"], 1);
  const c = await kv.set([...p, "c"], 3);
  const res = await kv.getMany([[...p, "c"], [...p, "b"], [...p, "a"]]);
  assert.equal(res.length, 3);
  assert.deepEqual(res[0].key, [...p, "c"]);
  assert.equal(res[0].value, 3);
  assert.equal(res[0].versionstamp, c.versionstamp);
  assert.deepEqual(res[1].key, [...p, "b"]);
  assert.equal(res[1].value, null);
  assert.equal(res[1].versionstamp, null);
  assert.equal(res[2].value, 1);
  assert.equal(res[2].versionstamp, a.versionstamp);
});

kvTest("getMany with 10 keys (10 read ranges, the maximum)", async (kv, p) => {
  const keys = Array.from({ length: 10 }, (_, i) => [...p, i]);
  const op = kv.atomic();
  keys.forEach((k, i) => op.set(k, `v${i}`));
  const r = await op.commit();
  assert.ok(r.ok);
  const res = await kv.getMany(keys);
  assert.deepEqual(res.map((e) => e.value), keys.map((_, i) => `v${i}`));
  for (const e of res) assert.equal(e.versionstamp, r.versionstamp);
});

// ---------------------------------------------------------------------------
// list

async function seedAlphabet(kv: Deno.Kv, p: string[], letters = "abcde") {
  const op = kv.atomic();
  op.set(p, "exact prefix key");
  for (const l of letters) op.set([...p, l], l);
  // Neighbours outside the prefix.
  op.set([...p.slice(0, -1), p[p.length - 1] + "0"], "sibling");
  op.set([...p.slice(0, -1), p[p.length - 1] + "~", "a"], "sibling2");
  const r = await op.commit();
  assert.ok(r.ok);
}

const keysOf = (es: Deno.KvEntry<unknown>[]) => es.map((e) => e.key[e.key.length - 1]);

kvTest("list by prefix excludes the prefix key itself and neighbours", async (kv, p) => {
  const base = [...p, "al"];
  await seedAlphabet(kv, base);
  const es = await collect(kv.list({ prefix: base }));
  assert.deepEqual(keysOf(es), ["a", "b", "c", "d", "e"]);
  assert.deepEqual(es.map((e) => e.value), ["a", "b", "c", "d", "e"]);
  for (const e of es) assertVersionstamp(e.versionstamp);
});

kvTest("list by start and end (end exclusive)", async (kv, p) => {
  const base = [...p, "al"];
  await seedAlphabet(kv, base);
  const es = await collect(kv.list({ start: [...base, "b"], end: [...base, "d"] }));
  assert.deepEqual(keysOf(es), ["b", "c"]);
  // A start that is not an existing key.
  const es2 = await collect(kv.list({ start: [...base, "bb"], end: [...base, "e"] }));
  assert.deepEqual(keysOf(es2), ["c", "d"]);
});

kvTest("list by prefix and start", async (kv, p) => {
  const base = [...p, "al"];
  await seedAlphabet(kv, base);
  const es = await collect(kv.list({ prefix: base, start: [...base, "c"] }));
  assert.deepEqual(keysOf(es), ["c", "d", "e"]);
});

kvTest("list by prefix and end", async (kv, p) => {
  const base = [...p, "al"];
  await seedAlphabet(kv, base);
  const es = await collect(kv.list({ prefix: base, end: [...base, "c"] }));
  assert.deepEqual(keysOf(es), ["a", "b"]);
});

kvTest("list reverse, limit, and reverse with limit", async (kv, p) => {
  const base = [...p, "al"];
  await seedAlphabet(kv, base);
  assert.deepEqual(keysOf(await collect(kv.list({ prefix: base }, { reverse: true }))), ["e", "d", "c", "b", "a"]);
  assert.deepEqual(keysOf(await collect(kv.list({ prefix: base }, { limit: 2 }))), ["a", "b"]);
  assert.deepEqual(keysOf(await collect(kv.list({ prefix: base }, { limit: 2, reverse: true }))), ["e", "d"]);
  assert.deepEqual(
    keysOf(await collect(kv.list({ start: [...base, "b"], end: [...base, "e"] }, { reverse: true, limit: 2 }))),
    ["d", "c"],
  );
});

kvTest("list cursor paging resumes where the last page ended", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 25; i++) op.set([...p, i], i * 10);
  assert.ok((await op.commit()).ok);

  const seen: number[] = [];
  let cursor: string | undefined = undefined;
  let pages = 0;
  for (;;) {
    const it: Deno.KvListIterator<number> = kv.list<number>({ prefix: p }, { limit: 10, cursor });
    const page = await collect(it);
    pages++;
    for (const e of page) {
      seen.push(e.key[e.key.length - 1] as number);
      assert.equal(e.value, (e.key[e.key.length - 1] as number) * 10);
    }
    if (page.length < 10) break;
    cursor = it.cursor;
    assert.ok(cursor.length > 0, "cursor after a full page");
    assert.ok(pages < 10, "paging does not terminate");
  }
  assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => i));

  // Reverse paging.
  const it1 = kv.list<number>({ prefix: p }, { limit: 10, reverse: true });
  const first = await collect(it1);
  assert.deepEqual(first.map((e) => e.key[e.key.length - 1]), [24, 23, 22, 21, 20, 19, 18, 17, 16, 15]);
  const it2 = kv.list<number>({ prefix: p }, { limit: 10, reverse: true, cursor: it1.cursor });
  const second = await collect(it2);
  assert.deepEqual(second.map((e) => e.key[e.key.length - 1]), [14, 13, 12, 11, 10, 9, 8, 7, 6, 5]);
});

kvTest("list with small batchSize reads everything in order", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 25; i++) op.set([...p, i], i);
  assert.ok((await op.commit()).ok);
  const all = await collect(kv.list<number>({ prefix: p }, { batchSize: 3 }));
  assert.deepEqual(all.map((e) => e.value), Array.from({ length: 25 }, (_, i) => i));
  const rev = await collect(kv.list<number>({ prefix: p }, { batchSize: 4, reverse: true }));
  assert.deepEqual(rev.map((e) => e.value), Array.from({ length: 25 }, (_, i) => 24 - i));
  const lim = await collect(kv.list<number>({ prefix: p }, { batchSize: 2, limit: 7 }));
  assert.deepEqual(lim.map((e) => e.value), [0, 1, 2, 3, 4, 5, 6]);
});

kvTest("1000 mutations in one commit, listed back in batches of 500", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 1000; i++) op.set([...p, i], i);
  const r = await op.commit();
  assert.ok(r.ok);
  const all = await collect(kv.list<number>({ prefix: p }, { batchSize: 500 }));
  assert.equal(all.length, 1000);
  all.forEach((e, i) => {
    assert.equal(e.value, i);
    assert.equal(e.versionstamp, r.versionstamp);
  });
  const lim = await collect(kv.list<number>({ prefix: p }, { limit: 1000, batchSize: 1000 }));
  assert.equal(lim.length, 1000);
});

// ---------------------------------------------------------------------------
// Key parts

kvTest("every key part type round-trips as a key", async (kv, p) => {
  const parts: Deno.KvKeyPart[] = [
    new Uint8Array([0, 1, 255, 0]),
    new Uint8Array([]),
    "",
    "plain",
    "nul\u0000inside",
    "ünïcödé ✓ 𝄞",
    0,
    -0,
    -1,
    -1.5,
    3.25,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    Infinity,
    -Infinity,
    NaN,
    0n,
    -7n,
    2n ** 64n,
    -(2n ** 80n),
    true,
    false,
  ];
  const op = kv.atomic();
  parts.forEach((part, i) => op.set([...p, part], i));
  assert.ok((await op.commit()).ok);
  for (let i = 0; i < parts.length; i++) {
    const e = await kv.get([...p, parts[i]]);
    assert.equal(e.value, i, `lookup of key part ${Deno.inspect(parts[i])}`);
    const back = e.key[e.key.length - 1];
    if (typeof parts[i] === "number") assert.ok(Object.is(back, parts[i]), `key part ${Deno.inspect(parts[i])} came back as ${Deno.inspect(back)}`);
    else assert.deepEqual(back, parts[i]);
  }
  // -0 and 0 are distinct keys (indexOf cannot tell them apart).
  assert.equal((await kv.get([...p, 0])).value, parts.findIndex((x) => Object.is(x, 0)));
  assert.equal((await kv.get([...p, -0])).value, parts.findIndex((x) => Object.is(x, -0)));
  assert.notEqual(parts.findIndex((x) => Object.is(x, 0)), parts.findIndex((x) => Object.is(x, -0)));
  // Multi-part keys.
  await kv.set([...p, "x", 1n, true, new Uint8Array([7])], "multi");
  assert.equal((await kv.get([...p, "x", 1n, true, new Uint8Array([7])])).value, "multi");
});

kvTest("key order: Uint8Array < string < bigint < number < false < true", async (kv, p) => {
  const ordered: Deno.KvKeyPart[] = [
    new Uint8Array([]),
    new Uint8Array([0]),
    new Uint8Array([1]),
    new Uint8Array([1, 0]),
    new Uint8Array([2]),
    "",
    "a",
    "b",
    "é",
    -(2n ** 70n),
    -2n,
    0n,
    2n,
    2n ** 70n,
    -Infinity,
    -1.5,
    -1,
    -0,
    0,
    1,
    1.5,
    Infinity,
    NaN,
    false,
    true,
  ];
  // Insert in a scrambled order.
  const op = kv.atomic();
  const scrambled = ordered.map((k, i) => ({ k, i })).sort((x, y) => ((x.i * 7) % 11) - ((y.i * 7) % 11));
  for (const { k, i } of scrambled) op.set([...p, k], i);
  assert.ok((await op.commit()).ok);
  const es = await collect(kv.list<number>({ prefix: p }));
  assert.deepEqual(es.map((e) => e.value), ordered.map((_, i) => i), "list order");
  const rev = await collect(kv.list<number>({ prefix: p }, { reverse: true }));
  assert.deepEqual(rev.map((e) => e.value), ordered.map((_, i) => ordered.length - 1 - i), "reverse list order");
  // A typed range: only the bigints.
  const big = await collect(kv.list<number>({ start: [...p, -(2n ** 80n)], end: [...p, -Infinity] }));
  assert.deepEqual(big.map((e) => e.value), [9, 10, 11, 12, 13]);
});

// ---------------------------------------------------------------------------
// Values

kvTest("values of many V8 types round-trip", async (kv, p) => {
  const re = /a+b?c*/gi;
  const values: [string, unknown][] = [
    ["object", { a: 1, b: "two", c: [3, { d: null }], e: true }],
    ["nested array", [1, [2, [3, [4, "five"]]], [], [[]]]],
    ["date", new Date("2024-02-29T12:34:56.789Z")],
    ["map", new Map<unknown, unknown>([["k", 1], [2, { v: [1] }]])],
    ["set", new Set([1, "two", 3n])],
    ["bigint", -(2n ** 100n) + 12345n],
    ["bytes", new Uint8Array([0, 1, 2, 253, 254, 255])],
    ["regexp", re],
    ["null", null],
    ["undefined", undefined],
    ["unicode string", "héllo wörld ✓ 🦕 𝄞 \u0000 end"],
    ["empty string", ""],
    ["number", 3.141592653589793],
    ["negative zero", -0],
    ["NaN", NaN],
    ["infinity", -Infinity],
    ["true", true],
    ["int32", 2147483647],
    ["typed array", new Float64Array([1.5, -2.25])],
    ["array buffer", new Uint16Array([1, 2, 3]).buffer],
  ];
  for (const [name, v] of values) {
    const r = await kv.set([...p, name], v);
    const e = await kv.get([...p, name]);
    assert.equal(e.versionstamp, r.versionstamp, name);
    if (typeof v === "number") assert.ok(Object.is(e.value, v), `${name}: got ${Deno.inspect(e.value)}`);
    else if (v instanceof RegExp) {
      assert.ok(e.value instanceof RegExp, name);
      assert.equal((e.value as RegExp).source, v.source);
      assert.equal((e.value as RegExp).flags, v.flags);
    } else assert.deepEqual(e.value, v, name);
  }
});

kvTest("KvU64 values round-trip (0, 1, 2^64-1)", async (kv, p) => {
  for (const n of [0n, 1n, 1234567890123456789n, U64_MAX]) {
    await kv.set([...p, String(n)], new Deno.KvU64(n));
    const e = await kv.get<Deno.KvU64>([...p, String(n)]);
    assert.ok(e.value instanceof Deno.KvU64, `KvU64 ${n} came back as ${Deno.inspect(e.value)}`);
    assert.equal(e.value.value, n);
  }
});

kvTest("values at the 64 KiB limit round-trip", async (kv, p) => {
  const bytes = new Uint8Array(65000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 0xff;
  await kv.set([...p, "b65000"], bytes);
  assert.deepEqual((await kv.get([...p, "b65000"])).value, bytes);

  const exact = new Uint8Array(65536).fill(0xab);
  exact[0] = 1;
  exact[65535] = 2;
  await kv.set([...p, "b65536"], exact);
  assert.deepEqual((await kv.get([...p, "b65536"])).value, exact);

  // 65530 one-byte characters serialize to exactly 65536 bytes of V8 data.
  const s = "x".repeat(65529) + "y";
  await kv.set([...p, "s"], s);
  assert.equal((await kv.get([...p, "s"])).value, s);
});

kvTest("the largest key (2048 encoded bytes) works", async (kv, p) => {
  void p;
  // 0x01 + 2046 bytes + 0x00 = 2048 bytes.
  const part = new Uint8Array(2046);
  for (let i = 0; i < part.length; i++) part[i] = 1 + (i % 200);
  const r = await kv.set([part], "big key");
  const e = await kv.get([part]);
  assert.equal(e.value, "big key");
  assert.equal(e.versionstamp, r.versionstamp);
  const es = await collect(kv.list({ prefix: [part] }));
  assert.equal(es.length, 0, "nothing lies under the largest key");
  const [m] = await kv.getMany([[part]]);
  assert.equal(m.value, "big key");
  await kv.delete([part]);
  assert.equal((await kv.get([part])).versionstamp, null);
});

kvTest("a commit of about 780 KB (just under the 800 KiB limit) round-trips", async (kv, p) => {
  const op = kv.atomic();
  const vals: Uint8Array[] = [];
  for (let i = 0; i < 12; i++) {
    const v = new Uint8Array(65000).fill(i + 1);
    v[0] = 0xee;
    vals.push(v);
    op.set([...p, i], v);
  }
  const r = await op.commit();
  assert.ok(r.ok);
  const got = await collect(kv.list<Uint8Array>({ prefix: p }));
  assert.equal(got.length, 12);
  got.forEach((e, i) => {
    assert.deepEqual(e.value, vals[i]);
    assert.equal(e.versionstamp, r.versionstamp);
  });
});

kvTest("the client refuses an oversize key or value before sending", async (kv, p) => {
  await assertRejects(kv.set([...p, new Uint8Array(2047)], 1), /too large/i, "2049-byte key");
  await assertRejects(kv.set([...p, "v"], new Uint8Array(65537)), /too large/i, "65537-byte value");
  assert.equal((await kv.get([...p, "v"])).versionstamp, null);
});

// ---------------------------------------------------------------------------
// Atomic operations

kvTest("atomic check with null versionstamp: must not exist", async (kv, p) => {
  const k = [...p, "k"];
  const r1 = await kv.atomic().check({ key: k, versionstamp: null }).set(k, "first").commit();
  assert.equal(r1.ok, true);
  assertVersionstamp((r1 as Deno.KvCommitResult).versionstamp);
  const r2 = await kv.atomic().check({ key: k, versionstamp: null }).set(k, "second").set([...p, "other"], 1).commit();
  assert.equal(r2.ok, false);
  const e = await kv.get(k);
  assert.equal(e.value, "first");
  assert.equal(e.versionstamp, (r1 as Deno.KvCommitResult).versionstamp);
  assert.equal((await kv.get([...p, "other"])).versionstamp, null, "a failed check writes nothing");
});

kvTest("atomic check with current versionstamp passes, stale one fails and writes nothing", async (kv, p) => {
  const k = [...p, "k"];
  const v1 = (await kv.set(k, 1)).versionstamp;
  const v2 = (await kv.set(k, 2)).versionstamp;
  const stale = await kv.atomic().check({ key: k, versionstamp: v1 }).set(k, "stale").delete([...p, "x"]).set([...p, "y"], 1).commit();
  assert.equal(stale.ok, false);
  assert.deepEqual(await kv.get(k), { key: k, value: 2, versionstamp: v2 });
  assert.equal((await kv.get([...p, "y"])).versionstamp, null);

  const fresh = await kv.atomic().check({ key: k, versionstamp: v2 }).set(k, 3).set([...p, "y"], 1).commit();
  assert.equal(fresh.ok, true);
  const v3 = (fresh as Deno.KvCommitResult).versionstamp;
  assert.ok(v3 > v2);
  assert.deepEqual(await kv.get(k), { key: k, value: 3, versionstamp: v3 });
  assert.deepEqual(await kv.get([...p, "y"]), { key: [...p, "y"], value: 1, versionstamp: v3 });

  // A check on a deleted key with its old versionstamp fails.
  await kv.delete(k);
  const gone = await kv.atomic().check({ key: k, versionstamp: v3 }).set(k, 4).commit();
  assert.equal(gone.ok, false);
  assert.equal((await kv.get(k)).versionstamp, null);
});

kvTest("atomic with several checks: one failing check fails all", async (kv, p) => {
  const a = (await kv.set([...p, "a"], 1)).versionstamp;
  const b = (await kv.set([...p, "b"], 1)).versionstamp;
  await kv.set([...p, "b"], 2);
  const r = await kv.atomic()
    .check({ key: [...p, "a"], versionstamp: a })
    .check({ key: [...p, "b"], versionstamp: b })
    .check({ key: [...p, "c"], versionstamp: null })
    .set([...p, "c"], "written?")
    .commit();
  assert.equal(r.ok, false);
  assert.equal((await kv.get([...p, "c"])).versionstamp, null);
});

kvTest("atomic with 100 checks (the client's maximum) commits", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 99; i++) op.check({ key: [...p, "absent", i], versionstamp: null });
  const pre = await kv.set([...p, "present"], 1);
  op.check({ key: [...p, "present"], versionstamp: pre.versionstamp });
  op.set([...p, "result"], "ok");
  const r = await op.commit();
  assert.equal(r.ok, true);
  assert.equal((await kv.get([...p, "result"])).value, "ok");

  // The same 100 checks with the last one stale: nothing written.
  await kv.set([...p, "present"], 2);
  const op2 = kv.atomic();
  for (let i = 0; i < 99; i++) op2.check({ key: [...p, "absent", i], versionstamp: null });
  op2.check({ key: [...p, "present"], versionstamp: pre.versionstamp });
  op2.set([...p, "result"], "must not be written");
  assert.equal((await op2.commit()).ok, false);
  assert.equal((await kv.get([...p, "result"])).value, "ok");
});

kvTest("atomic set, delete and sum apply together with one versionstamp", async (kv, p) => {
  await kv.set([...p, "del"], "to delete");
  await kv.set([...p, "n"], new Deno.KvU64(10n));
  const r = await kv.atomic()
    .set([...p, "new"], { x: 1 })
    .delete([...p, "del"])
    .sum([...p, "n"], 5n)
    .commit();
  assert.ok(r.ok);
  const [n, d, nw] = await kv.getMany<[Deno.KvU64, unknown, unknown]>([[...p, "n"], [...p, "del"], [...p, "new"]]);
  assert.equal(n.value!.value, 15n);
  assert.equal(n.versionstamp, r.versionstamp);
  assert.equal(d.versionstamp, null);
  assert.deepEqual(nw.value, { x: 1 });
  assert.equal(nw.versionstamp, r.versionstamp);
});

kvTest("later mutations of the same key in one commit win", async (kv, p) => {
  const k = [...p, "k"];
  const r = await kv.atomic().set(k, 1).delete(k).set(k, 3).commit();
  assert.ok(r.ok);
  assert.equal((await kv.get(k)).value, 3);
  await kv.atomic().set(k, 1).delete(k).commit();
  assert.equal((await kv.get(k)).versionstamp, null);
  await kv.atomic().set(k, new Deno.KvU64(1n)).sum(k, 2n).sum(k, 3n).commit();
  assert.equal((await kv.get<Deno.KvU64>(k)).value!.value, 6n);
});

// ---------------------------------------------------------------------------
// sum / min / max

kvTest("KvU64 sum, including on a missing key", async (kv, p) => {
  await kv.atomic().sum([...p, "new"], 42n).commit();
  const e = await kv.get<Deno.KvU64>([...p, "new"]);
  assert.ok(e.value instanceof Deno.KvU64);
  assert.equal(e.value.value, 42n);
  await kv.atomic().sum([...p, "new"], 8n).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "new"])).value!.value, 50n);
  // mutate() form.
  await kv.atomic().mutate({ type: "sum", key: [...p, "new"], value: new Deno.KvU64(1n) }).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "new"])).value!.value, 51n);
});

kvTest("KvU64 sum wraps at 2^64", async (kv, p) => {
  const k = [...p, "wrap"];
  await kv.set(k, new Deno.KvU64(U64_MAX));
  await kv.atomic().sum(k, 2n).commit();
  assert.equal((await kv.get<Deno.KvU64>(k)).value!.value, 1n);
  await kv.set(k, new Deno.KvU64(U64_MAX));
  await kv.atomic().sum(k, U64_MAX).commit();
  assert.equal((await kv.get<Deno.KvU64>(k)).value!.value, U64_MAX - 1n);
});

kvTest("KvU64 min and max", async (kv, p) => {
  await kv.set([...p, "a"], new Deno.KvU64(5n));
  await kv.atomic().max([...p, "a"], 9n).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "a"])).value!.value, 9n);
  await kv.atomic().max([...p, "a"], 3n).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "a"])).value!.value, 9n);
  await kv.atomic().min([...p, "a"], 12n).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "a"])).value!.value, 9n);
  await kv.atomic().min([...p, "a"], 2n).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "a"])).value!.value, 2n);
  await kv.atomic().max([...p, "a"], U64_MAX).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "a"])).value!.value, U64_MAX);
  // On missing keys: the operand.
  await kv.atomic().min([...p, "m1"], 7n).max([...p, "m2"], 8n).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "m1"])).value!.value, 7n);
  assert.equal((await kv.get<Deno.KvU64>([...p, "m2"])).value!.value, 8n);
});

// Deno 2.9's mutate({type: "sum"}) also accepts a plain bigint or number: it
// sends M_SUM with a V8-encoded operand, which the server adds as a V8 scalar.
kvTest("sum of V8 bigints via mutate()", async (kv, p) => {
  const k = [...p, "big"];
  await kv.set(k, 10n);
  await kv.atomic().mutate({ type: "sum", key: k, value: 5n as unknown as Deno.KvU64 }).commit();
  assert.equal((await kv.get(k)).value, 15n);
  await kv.atomic().mutate({ type: "sum", key: k, value: -20n as unknown as Deno.KvU64 }).commit();
  assert.equal((await kv.get(k)).value, -5n);
  await kv.set(k, 2n ** 70n);
  await kv.atomic().mutate({ type: "sum", key: k, value: (2n ** 70n + 1n) as unknown as Deno.KvU64 }).commit();
  assert.equal((await kv.get(k)).value, 2n ** 71n + 1n);
  await kv.atomic().mutate({ type: "sum", key: [...p, "absent"], value: 7n as unknown as Deno.KvU64 }).commit();
  assert.equal((await kv.get([...p, "absent"])).value, 7n);
});

kvTest("sum of V8 numbers via mutate()", async (kv, p) => {
  const k = [...p, "num"];
  await kv.set(k, 10);
  await kv.atomic().mutate({ type: "sum", key: k, value: 5.5 as unknown as Deno.KvU64 }).commit();
  assert.equal((await kv.get(k)).value, 15.5);
  await kv.atomic().mutate({ type: "sum", key: k, value: -0.25 as unknown as Deno.KvU64 }).commit();
  assert.equal((await kv.get(k)).value, 15.25);
  await kv.atomic().mutate({ type: "sum", key: [...p, "absent"], value: 3 as unknown as Deno.KvU64 }).commit();
  assert.equal((await kv.get([...p, "absent"])).value, 3);
});

kvTest("sum of a number onto a bigint is refused and changes nothing", async (kv, p) => {
  const k = [...p, "big"];
  const r = await kv.set(k, 10n);
  await assertRejects(
    kv.atomic().set([...p, "side"], 1).mutate({ type: "sum", key: k, value: 1 as unknown as Deno.KvU64 }).commit(),
    /status=400/,
    "number onto bigint",
  );
  assert.deepEqual(await kv.get(k), { key: k, value: 10n, versionstamp: r.versionstamp });
  assert.equal((await kv.get([...p, "side"])).versionstamp, null, "the set in the refused commit was applied");
});

// Every V8 sum refusal the Deno client can send (its mutate() drops
// min/max/clamp; raw_protocol sends those): a 400 with the server's reason,
// the whole commit refused, nothing changed.
kvTest("V8 sum refusals reach the user as 400s with their reason and change nothing", async (kv, p) => {
  const n = [...p, "n"], u = [...p, "u"], side = [...p, "side"];
  const rn = await kv.set(n, 5);
  const ru = await kv.set(u, new Deno.KvU64(7n));
  const cases: [Deno.KvKey, unknown, RegExp, string][] = [
    [n, "five", /status=400.*not valid V8 numbers or bigints/s, "a string operand (SUM_INVALID_V8)"],
    [n, { five: 5 }, /status=400.*not valid V8 numbers or bigints/s, "an object operand (SUM_INVALID_V8)"],
    [u, -1n, /status=400.*Cannot sum values of different types/s, "KvU64 + a negative bigint"],
    [u, 2n ** 64n, /status=400.*Cannot sum values of different types/s, "KvU64 + 2^64n"],
    [u, 1, /status=400.*Cannot sum values of different types/s, "KvU64 + a number"],
  ];
  for (const [key, value, re, what] of cases) {
    await assertRejects(
      kv.atomic().set(side, 1).mutate({ type: "sum", key, value: value as Deno.KvU64 }).commit(),
      re,
      what,
    );
  }
  assert.deepEqual(await kv.get(n), { key: n, value: 5, versionstamp: rn.versionstamp });
  assert.deepEqual(await kv.get(u), { key: u, value: new Deno.KvU64(7n), versionstamp: ru.versionstamp });
  assert.equal((await kv.get(side)).versionstamp, null, "a set in a refused commit was applied");
  // The boundary cases that are accepted: KvU64 + (2^64-1)n wraps, as KvU64 sums do.
  await kv.atomic().mutate({ type: "sum", key: u, value: (2n ** 64n - 1n) as unknown as Deno.KvU64 }).commit();
  assert.equal((await kv.get<Deno.KvU64>(u)).value!.value, 6n);
});

kvTest("a V8 sum whose result would pass 64 KiB is refused with a 400, the value kept", async (kv, p) => {
  const k = [...p, "huge"];
  // 8191 64-bit digits: 65534 bytes as V8, just under the value limit.
  const big = 2n ** (64n * 8191n) - 1n;
  await kv.atomic().mutate({ type: "sum", key: k, value: big as unknown as Deno.KvU64 }).commit();
  const before = await kv.get<bigint>(k);
  assert.equal(before.value, big, "the 65534-byte bigint was stored");
  // Twice that needs 8192 digits: 65542 bytes, over the limit. A 5xx here
  // would make the client retry for ever.
  await assertRejects(
    kv.atomic().set([...p, "side"], 1).mutate({ type: "sum", key: k, value: big as unknown as Deno.KvU64 }).commit(),
    /status=400.*would exceed its range limit/s,
    "a sum past 64 KiB",
  );
  const after = await kv.get<bigint>(k);
  assert.equal(after.versionstamp, before.versionstamp);
  assert.equal(after.value, big);
  assert.equal((await kv.get([...p, "side"])).versionstamp, null);
});

kvTest("server refusal reaches the user: KvU64 sum onto a string", async (kv, p) => {
  const k = [...p, "s"];
  const r = await kv.set(k, "hello");
  // What the server answers to exactly what the client sends (M_SUM, LE64 1).
  const raw = await RawClient.open(H1_URL);
  const ans = await raw.post("atomic_write", encAtomicWrite({
    mutations: [{ key: encodeKey(k as string[]), type: MutationType.SUM, value: { data: u64le(1n), encoding: ValueEncoding.LE64 } }],
  }));
  assert.equal(ans.status, 400, `raw sum onto a string: ${ans.status} ${ans.text}`);
  const serverText = ans.text.trim();
  assert.ok(serverText.length > 0, "the server's 400 has a reason");

  const err = await assertRejects(kv.atomic().set([...p, "side"], 1).sum(k, 1n).commit(), /status=400/, "sum onto a string");
  assert.ok(err.message.includes(serverText), `the client's error ${JSON.stringify(err.message)} does not carry the server's text ${JSON.stringify(serverText)}`);
  assert.deepEqual(await kv.get(k), { key: k, value: "hello", versionstamp: r.versionstamp });
  assert.equal((await kv.get([...p, "side"])).versionstamp, null, "all or nothing");
});

// ---------------------------------------------------------------------------
// Versionstamps

kvTest("versionstamps of successive commits strictly increase", async (kv, p) => {
  let prev = "";
  for (let i = 0; i < 20; i++) {
    const r = await kv.atomic().set([...p, i % 3], i).commit();
    assert.ok(r.ok);
    const vs = (r as Deno.KvCommitResult).versionstamp;
    assertVersionstamp(vs);
    assert.ok(vs > prev, `commit ${i}: ${vs} is not after ${prev}`);
    prev = vs;
  }
});

kvTest("50 concurrent commits on one connection get 50 distinct versionstamps", async (kv, p) => {
  const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => kv.set([...p, i], i)));
  const vss = rs.map((r) => r.versionstamp);
  assert.equal(new Set(vss).size, 50);
  for (let i = 0; i < 50; i++) {
    const e = await kv.get([...p, i]);
    assert.equal(e.value, i);
    assert.equal(e.versionstamp, vss[i]);
  }
});

kvTest("commitVersionstamp() appends the commit's versionstamp to the key", async (kv, p) => {
  const r1 = await kv.atomic().set([...p, "log", kv.commitVersionstamp()], "first").set([...p, "plain"], 1).commit();
  assert.ok(r1.ok);
  const r2 = await kv.set([...p, "log", kv.commitVersionstamp()], "second");
  const vs1 = (r1 as Deno.KvCommitResult).versionstamp, vs2 = r2.versionstamp;
  assert.ok(vs2 > vs1);
  const es = await collect(kv.list({ prefix: [...p, "log"] }));
  assert.deepEqual(es.map((e) => e.key), [[...p, "log", vs1], [...p, "log", vs2]]);
  assert.deepEqual(es.map((e) => e.value), ["first", "second"]);
  assert.deepEqual(es.map((e) => e.versionstamp), [vs1, vs2]);
  assert.equal((await kv.get([...p, "log", vs1])).value, "first");
});

// ---------------------------------------------------------------------------
// Expiry

kvTest("expireIn: present at once, gone after expiry (get, getMany, list, checks)", async (kv, p) => {
  const t0 = Date.now();
  await kv.set([...p, "tmp"], "short-lived", { expireIn: 1000 });
  await kv.atomic().set([...p, "tmp2"], new Deno.KvU64(5n), { expireIn: 1000 }).commit();
  await kv.set([...p, "keep"], "stays");
  const now = await kv.get([...p, "tmp"]);
  assert.ok(Date.now() - t0 < 900, "the machine is too slow for this test's timing");
  assert.equal(now.value, "short-lived", "an unexpired key is readable");
  assert.equal((await kv.get<Deno.KvU64>([...p, "tmp2"])).value!.value, 5n);
  assert.equal((await collect(kv.list({ prefix: p }))).length, 3);
  await sleep(Math.max(0, t0 + 2500 - Date.now()));
  assert.deepEqual(await kv.get([...p, "tmp"]), { key: [...p, "tmp"], value: null, versionstamp: null });
  const many = await kv.getMany([[...p, "tmp"], [...p, "keep"]]);
  assert.equal(many[0].versionstamp, null);
  assert.equal(many[1].value, "stays");
  assert.deepEqual((await collect(kv.list({ prefix: p }))).map((e) => e.key), [[...p, "keep"]]);
  // An expired key counts as absent for checks and for sum.
  const c = await kv.atomic().check({ key: [...p, "tmp"], versionstamp: null }).set([...p, "tmp"], "again").commit();
  assert.equal(c.ok, true);
  await kv.atomic().sum([...p, "tmp2"], 1n).commit();
  assert.equal((await kv.get<Deno.KvU64>([...p, "tmp2"])).value!.value, 1n);
});

// ---------------------------------------------------------------------------
// Mounting

kvTest("the same database under the /kv/ sub-path", async (kv, p) => {
  const sub = await withSub();
  try {
    const r = await sub.set([...p, "via-sub"], "sub");
    const e = await kv.get([...p, "via-sub"]);
    assert.equal(e.value, "sub");
    assert.equal(e.versionstamp, r.versionstamp);
    const r2 = await kv.set([...p, "via-root"], "root");
    assert.deepEqual(await sub.get([...p, "via-root"]), { key: [...p, "via-root"], value: "root", versionstamp: r2.versionstamp });
    assert.deepEqual((await collect(sub.list({ prefix: p }))).map((x) => x.value), ["root", "sub"]);
  } finally {
    sub.close();
  }
});

async function withSub(): Promise<Deno.Kv> {
  return await Deno.openKv(H2C_KV_URL);
}
