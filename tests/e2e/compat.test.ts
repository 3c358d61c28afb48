// File compatibility with the Deno CLI's own SQLite KV backend, both ways:
// a file the Deno CLI wrote is served as it is (same values, same
// versionstamps), and a file written through denokv-fcgi opens in the Deno
// CLI with the same keys, values and versionstamps. Each direction serves its
// file from an extra instance (scripts/stack.sh start-server with DB=...).

import {
  assert,
  collect,
  plainTest,
  RUN_DIR,
  run,
  sqlite,
  startServer,
  STACK,
  withTimeout,
} from "./helpers.ts";

const DIR = `${RUN_DIR}/compat`;
Deno.mkdirSync(DIR, { recursive: true });

type Row = { key: Deno.KvKey; value: unknown; versionstamp: string };

// Stops an instance: it must stop cleanly on SIGTERM before the Deno CLI
// opens its file. Only called once the test body passed (a throw from a
// finally block would hide the body's own error).
async function stopInstance(name: string) {
  const r = await run([STACK, "stop-server", RUN_DIR, name]);
  assert.equal(r.code, 0, `instance ${name} did not stop cleanly on SIGTERM: ${r.stderr.trim()}`);
}

// The key ["compat", "gone"] as the KV key codec encodes it, in SQL hex.
const GONE_KEY_HEX = "02636f6d7061740002676f6e6500";

function normalize(rows: Row[]) {
  // KvU64 compares by value; everything else structurally.
  return rows.map((r) => ({
    key: r.key,
    value: r.value instanceof Deno.KvU64 ? { KvU64: r.value.value } : r.value,
    versionstamp: r.versionstamp,
  }));
}

function sampleValues(): [string, unknown][] {
  return [
    ["string", "hello ✓"],
    ["number", -12.5],
    ["bigint", -(2n ** 90n)],
    ["u64", new Deno.KvU64(2n ** 64n - 2n)],
    ["date", new Date("2001-02-03T04:05:06.007Z")],
    ["bytes", new Uint8Array([0, 1, 2, 255])],
    ["object", { nested: { list: [1, "two", null], map: new Map([["k", new Set([1])]]) } }],
    ["null", null],
  ];
}

plainTest("a file written by the Deno CLI's local KV is served with the same values and versionstamps", async () => {
  const path = `${DIR}/from-deno.sqlite`;
  const local = await Deno.openKv(path);
  const written: Row[] = [];
  try {
    for (const [name, v] of sampleValues()) {
      await local.set(["compat", name], v);
    }
    const op = local.atomic();
    for (let i = 0; i < 5; i++) op.set(["compat", "batch", i], i);
    op.sum(["compat", "counter"], 41n);
    assert.ok((await op.commit()).ok);
    await local.atomic().sum(["compat", "counter"], 1n).commit();
    await local.set(["compat", "log", local.commitVersionstamp()], "versionstamped");
    await local.set(["compat", "later"], "lives an hour", { expireIn: 3600_000 });
    // Expired below, in the file itself: Deno's own sweep could otherwise
    // delete the row before the server ever sees it.
    await local.set(["compat", "gone"], "expires in the file", { expireIn: 7200_000 });
    await local.set(["compat", "deleted"], "x");
    await local.delete(["compat", "deleted"]);
    const listed = (await collect(local.list({ prefix: ["compat"] }))) as Row[];
    written.push(...listed.filter((r) => r.key[1] !== "gone"));
  } finally {
    local.close();
  }
  assert.equal(written.length, 16, `the local KV listed ${written.length} entries`);
  // Expire ["compat", "gone"] a minute ago, with the Deno CLI closed: the
  // file now holds exactly one expired row, which the server must never
  // serve (its reads hide it until its housekeeper deletes it).
  await sqlite(path, `update kv set expiration_ms = ${Date.now() - 60_000} where k = x'${GONE_KEY_HEX}'`);
  const expiredRows = await sqlite(path, "select count(*) from kv where expiration_ms >= 0 and expiration_ms < (strftime('%s','now') * 1000)");
  assert.equal(expiredRows, "1", "the file should hold the one expired row");

  const env = await startServer("compat1", { DB: path });
  let passed = false;
  try {
    const remote = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open compat1");
    try {
      const served = (await collect(remote.list({ prefix: ["compat"] }))) as Row[];
      assert.deepEqual(normalize(served), normalize(written));
      // Point reads agree too.
      for (const w of written) {
        const e = await remote.get(w.key);
        assert.equal(e.versionstamp, w.versionstamp, `versionstamp of ${Deno.inspect(w.key)}`);
      }
      assert.equal((await remote.get<Deno.KvU64>(["compat", "counter"])).value!.value, 42n);
      assert.equal((await remote.get(["compat", "gone"])).versionstamp, null, "an expired entry is visible");
      // New writes continue the file's versionstamp sequence.
      const last = written.map((r) => r.versionstamp).sort().at(-1)!;
      const r = await remote.set(["compat", "after"], 1);
      assert.ok(r.versionstamp > last, `${r.versionstamp} is not after the file's ${last}`);
      // Sums work on the Deno-written KvU64.
      await remote.atomic().sum(["compat", "u64"], 1n).commit();
      assert.equal((await remote.get<Deno.KvU64>(["compat", "u64"])).value!.value, 2n ** 64n - 1n);
    } finally {
      remote.close();
    }
    passed = true;
  } finally {
    if (passed) await stopInstance("compat1");
    else await run([STACK, "stop-server", RUN_DIR, "compat1"]);
  }
  assert.equal(await sqlite(path, "pragma integrity_check"), "ok");
}, 120_000);

plainTest("a file written through denokv-fcgi opens in the Deno CLI's local KV with the same entries", async () => {
  const path = `${DIR}/from-server.sqlite`;
  const env = await startServer("compat2", { DB: path });
  let passed = false;
  let served: Row[] = [];
  let lastVs = "";
  try {
    const remote = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open compat2");
    try {
      for (const [name, v] of sampleValues()) {
        lastVs = (await remote.set(["compat", name], v)).versionstamp;
      }
      const op = remote.atomic();
      for (let i = 0; i < 5; i++) op.set(["compat", "batch", i], i);
      op.sum(["compat", "counter"], 41n);
      assert.ok((await op.commit()).ok);
      await remote.atomic().sum(["compat", "counter"], 1n).commit();
      await remote.set(["compat", "log", remote.commitVersionstamp()], "versionstamped");
      await remote.set(["compat", "later"], "lives an hour", { expireIn: 3600_000 });
      await remote.set(["compat", "deleted"], "x");
      await remote.delete(["compat", "deleted"]);
      lastVs = (await remote.set(["compat", "last"], true)).versionstamp;
      served = (await collect(remote.list({ prefix: ["compat"] }))) as Row[];
    } finally {
      remote.close();
    }
    passed = true;
  } finally {
    if (passed) await stopInstance("compat2");
    else await run([STACK, "stop-server", RUN_DIR, "compat2"]);
  }
  assert.equal(served.length, 17, `listed ${served.length} entries through the server`);
  assert.equal(await sqlite(path, "pragma integrity_check"), "ok");
  // The expiry is stored the way Deno stores it (milliseconds since the epoch).
  const exp = Number(await sqlite(path, "select max(expiration_ms) from kv"));
  assert.ok(Math.abs(exp - (Date.now() + 3600_000)) < 120_000, `expiration_ms ${exp} is not about an hour from now`);

  const local = await Deno.openKv(path);
  try {
    const seen = (await collect(local.list({ prefix: ["compat"] }))) as Row[];
    assert.deepEqual(normalize(seen), normalize(served));
    assert.equal((await local.get<Deno.KvU64>(["compat", "counter"])).value!.value, 42n);
    assert.equal((await local.get(["compat", "deleted"])).versionstamp, null);
    const log = seen.find((r) => r.key[1] === "log")!;
    assert.match(String(log.key[2]), /^[0-9a-f]{20}$/);
    assert.equal(log.key[2], log.versionstamp, "the versionstamped key ends with its versionstamp");
    // Local writes continue after the server's versionstamps.
    const r = await local.set(["compat", "local-after"], 1);
    assert.ok(r.versionstamp > lastVs, `${r.versionstamp} is not after the server's ${lastVs}`);
    // Local sums work on the server-written KvU64.
    await local.atomic().sum(["compat", "u64"], 1n).commit();
    assert.equal((await local.get<Deno.KvU64>(["compat", "u64"])).value!.value, 2n ** 64n - 1n);
  } finally {
    local.close();
  }
}, 120_000);
