// Two denokv-fcgi processes on one SQLite file (the second started with
// `scripts/stack.sh start-server RUN_DIR i2`, mounted at /i2/ on the same
// nginx). Writes through both must get unique, strictly increasing
// versionstamps, and optimistic concurrency must hold across processes.

import {
  assert,
  assertVersionstamp,
  AtomicWriteStatus,
  dataVersion,
  encAtomicWrite,
  encodeKey,
  hex,
  MutationType,
  RawClient,
  run,
  RUN_DIR,
  STACK,
  ValueEncoding,
  collect,
  DB,
  ENV,
  H1_URL,
  H2C_URL,
  metadataExchange,
  plainTest,
  rawFetch,
  startServer,
  stopServer,
  TOKEN,
  uniquePrefix,
  withTimeout,
} from "./helpers.ts";

const NAME = "i2";
let inst2: Promise<Record<string, string>> | undefined;
function second(): Promise<Record<string, string>> {
  inst2 ??= startServer(NAME);
  return inst2;
}

async function openBoth(): Promise<[Deno.Kv, Deno.Kv]> {
  const env = await second();
  const a = await withTimeout(Deno.openKv(H2C_URL), 30_000, "open main");
  const b = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open i2");
  return [a, b];
}

function twoTest(name: string, fn: (a: Deno.Kv, b: Deno.Kv, p: string[]) => Promise<void>, timeout = 120_000) {
  plainTest(name, async () => {
    const [a, b] = await openBoth();
    try {
      await fn(a, b, uniquePrefix(name));
    } finally {
      a.close();
      b.close();
    }
  }, timeout);
}

plainTest("a second instance starts on the same file and serves it", async () => {
  const env = await second();
  assert.equal(env.DB, DB, "same database file");
  assert.notEqual(env.SOCKET, ENV.SOCKET);
  // Requests to /i2/ really reach the second instance (nginx marks them) ...
  const r = await rawFetch(env.H1_URL, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
  });
  assert.equal(r.status, 200, r.text);
  const m2 = JSON.parse(r.text);
  assert.deepEqual(m2.endpoints, [{ url: `/${NAME}/v2`, consistency: "strong" }]);
  // ... and it is the same database.
  const m1 = JSON.parse((await metadataExchange(H1_URL)).text);
  assert.equal(m2.databaseId, m1.databaseId);
});

twoTest("a write through one instance is read through the other", async (a, b, p) => {
  const ra = await a.set([...p, "from-a"], "A");
  const rb = await b.set([...p, "from-b"], "B");
  assert.deepEqual(await b.get([...p, "from-a"]), { key: [...p, "from-a"], value: "A", versionstamp: ra.versionstamp });
  assert.deepEqual(await a.get([...p, "from-b"]), { key: [...p, "from-b"], value: "B", versionstamp: rb.versionstamp });
  assert.ok(rb.versionstamp > ra.versionstamp);
});

twoTest("2 x 50 sequential commits in parallel: unique, strictly increasing versionstamps", async (a, b, p) => {
  async function writer(kv: Deno.Kv, tag: string): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await kv.atomic().set([...p, tag, i], i).commit();
      assert.ok(r.ok);
      out.push((r as Deno.KvCommitResult).versionstamp);
    }
    return out;
  }
  const [va, vb] = await Promise.all([writer(a, "a"), writer(b, "b")]);
  for (const [tag, vs] of [["a", va], ["b", vb]] as const) {
    vs.forEach((v) => assertVersionstamp(v));
    for (let i = 1; i < vs.length; i++) {
      assert.ok(vs[i] > vs[i - 1], `instance ${tag}: commit ${i} got ${vs[i]}, not after ${vs[i - 1]}`);
    }
  }
  const all = [...va, ...vb];
  assert.equal(new Set(all).size, 100, "duplicate versionstamps across the two instances");
  // Every entry carries the versionstamp its commit returned.
  for (const [tag, vs] of [["a", va], ["b", vb]] as const) {
    const es = await collect(a.list<number>({ prefix: [...p, tag] }));
    assert.equal(es.length, 50);
    es.forEach((e, i) => {
      assert.equal(e.value, i);
      assert.equal(e.versionstamp, vs[i]);
    });
  }
});

// The two instances do not queue their writers together (SQLite's lock
// decides who goes next), so free-running writers need not interleave at
// all. Rounds make them: both commit at once, and the next round starts
// only when both are acknowledged.
twoTest("2 x 30 commits in rounds: each round's versionstamps exceed both of the round before", async (a, b, p) => {
  let prev: string[] = [];
  for (let i = 0; i < 30; i++) {
    const rs = await Promise.all([a.atomic().set([...p, "a", i], i).commit(), b.atomic().set([...p, "b", i], i).commit()]);
    const vs = rs.map((r) => {
      assert.ok(r.ok, `round ${i}: a commit failed`);
      return (r as Deno.KvCommitResult).versionstamp;
    });
    assert.notEqual(vs[0], vs[1], `round ${i}: both instances got versionstamp ${vs[0]}`);
    for (const v of vs) {
      for (const w of prev) {
        assert.ok(v > w, `round ${i}: ${v} is not after ${w}, committed (and acknowledged) in the round before`);
      }
    }
    prev = vs;
  }
});

twoTest("2 x 50 concurrent commits on both instances: 100 distinct versionstamps", async (a, b, p) => {
  const rs = await Promise.all([
    ...Array.from({ length: 50 }, (_, i) => a.set([...p, "a", i], i)),
    ...Array.from({ length: 50 }, (_, i) => b.set([...p, "b", i], i)),
  ]);
  const vss = rs.map((r) => r.versionstamp);
  assert.equal(new Set(vss).size, 100);
  const es = await collect(a.list({ prefix: p }));
  assert.equal(es.length, 100);
  assert.deepEqual(new Set(es.map((e) => e.versionstamp)), new Set(vss));
});

twoTest("check-and-set race: 8 workers x 15 increments through both instances", async (a, b, p) => {
  const key = [...p, "counter"];
  await a.set(key, 0);
  let conflicts = 0;
  async function worker(kv: Deno.Kv, n: number) {
    for (let i = 0; i < n; i++) {
      for (let attempt = 0;; attempt++) {
        assert.ok(attempt < 1000, "no progress after 1000 attempts");
        const cur = await kv.get<number>(key);
        const r = await kv.atomic().check(cur).set(key, cur.value! + 1).commit();
        if (r.ok) break;
        conflicts++;
      }
    }
  }
  await Promise.all([
    worker(a, 15), worker(a, 15), worker(a, 15), worker(a, 15),
    worker(b, 15), worker(b, 15), worker(b, 15), worker(b, 15),
  ]);
  assert.equal((await a.get(key)).value, 120);
  assert.equal((await b.get(key)).value, 120);
  // Eight racing clients must have collided: without check failures the
  // test would not have exercised the check at all.
  assert.ok(conflicts > 0, "no check failed: the increments never raced");
});

twoTest("KvU64 sums through both instances concurrently lose nothing", async (a, b, p) => {
  const key = [...p, "sum"];
  await Promise.all([
    ...Array.from({ length: 50 }, () => a.atomic().sum(key, 1n).commit()),
    ...Array.from({ length: 50 }, () => b.atomic().sum(key, 2n).commit()),
  ]);
  const e = await b.get<Deno.KvU64>(key);
  assert.equal(e.value!.value, 150n);
});

plainTest("a --read-only instance on the same file serves reads and refuses writes, changing nothing", async () => {
  const env = await startServer("ro", { READ_ONLY: "1" });
  let passed = false;
  try {
    const p = uniquePrefix("read-only");
    const rw = await RawClient.open(H1_URL);
    const ro = await RawClient.open(env.H1_URL);
    const key = encodeKey([...p, "k"]);
    const w = await rw.write({ mutations: [{ key, type: MutationType.SET, value: { data: new Uint8Array([1, 2, 3]), encoding: ValueEncoding.BYTES } }] });
    assert.equal(w.status, AtomicWriteStatus.SUCCESS);
    const e = await ro.get(key);
    assert.ok(e, "the read-only instance does not see the entry");
    assert.equal(hex(e.versionstamp), hex(w.versionstamp));

    const dv = await dataVersion();
    const canary = encodeKey([...p, "canary"]);
    const r = await ro.post("atomic_write", encAtomicWrite({
      mutations: [{ key: canary, type: MutationType.SET, value: { data: new Uint8Array([9]), encoding: ValueEncoding.BYTES } }],
    }));
    // A 400 with its reason (a 5xx would make the Deno client retry forever).
    assert.equal(r.status, 400, `write to the read-only instance: ${r.status} ${r.text}`);
    assert.match(r.contentType, /^text\/plain\b/i);
    assert.equal(r.text, "This database is read only.\n");
    assert.equal(await dataVersion(), dv, "data_version changed");
    assert.equal(await rw.get(canary), null, "the write went through");

    // The Deno client gets an error (not a hang, not success).
    const kv = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open ro");
    try {
      let outcome = "succeeded";
      try {
        const res = await withTimeout(kv.set([...p, "via-deno"], 1), 20_000, "set through the read-only instance");
        if (!res.ok) outcome = "not ok";
      } catch (err) {
        outcome = String(err);
      }
      // The user sees the server's status and reason.
      assert.match(outcome, /status=400.*This database is read only\./s, `Deno write through a read-only instance: ${outcome}`);
      assert.equal((await kv.get([...p, "k"])).versionstamp, hex(w.versionstamp));
    } finally {
      kv.close();
    }
    assert.equal(await rw.get(encodeKey([...p, "via-deno"])), null);
    passed = true;
  } finally {
    const r = await run([STACK, "stop-server", RUN_DIR, "ro"]);
    // Checked only after a passing body: a throw here would hide its error.
    if (passed) assert.equal(r.code, 0, `the read-only instance did not stop cleanly on SIGTERM: ${r.stderr.trim()}`);
  }
});

// Last: the second instance shuts down on SIGTERM.
plainTest("the second instance stops cleanly (SIGTERM)", async () => {
  await second();
  await stopServer(NAME);
});
