// Queue delivery from Node: clients/queue.mjs in Node 18+ (HTTP/1.1
// through nginx), consuming messages enqueued by @deno/kv's kv.enqueue()
// and by the module itself. @deno/kv must still connect although the
// metadata carries the extension's extra field. Uses the main instance's
// database; every message is tagged and others are finished quietly.
// Run by tests/e2e/run.sh: node --test-reporter=tap.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { openKv } from "@deno/kv";
import { openQueue } from "../../clients/queue.mjs";

const RUN_DIR = process.env.RUN_DIR;
if (!RUN_DIR) throw new Error("RUN_DIR is not set: run through tests/e2e/run.sh");
const ENV = Object.fromEntries(
  readFileSync(`${RUN_DIR}/env`, "utf8").split("\n")
    .map((l) => l.match(/^([A-Za-z_][A-Za-z0-9_]*)='([^']*)'$/))
    .filter(Boolean)
    .map((m) => [m[1], m[2]]),
);

function withTimeout(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Listens until `until()`, handing this test's messages (tag t) to fn. */
async function listen(q, t, fn, until, ms = 20_000) {
  const done = q.listenQueue(async (v, info) => {
    if (v?.t !== t) return;
    try {
      await fn(v, info);
    } finally {
      if (until()) q.close();
    }
  }, { waitMs: 2000, concurrency: 2 });
  try {
    await withTimeout(done, ms, `listenQueue for ${t}`);
  } finally {
    q.close(); // a failed test must not go on taking later tests' messages
  }
}

test("@deno/kv connects and enqueues; the module consumes in Node", async () => {
  const t = `denokv-${randomUUID().slice(0, 8)}`;
  const kv = await openKv(ENV.H1_URL, { accessToken: ENV.TOKEN });
  try {
    await kv.set(["queue-node", t], "x");
    assert.equal((await kv.get(["queue-node", t])).value, "x");
    await kv.enqueue({ t, n: 1, when: new Date(5), big: 7n });
    await kv.enqueue({ t, n: 2 }, { delay: 300 });
  } finally {
    kv.close();
  }
  const q = await openQueue(ENV.H1_URL, { accessToken: ENV.TOKEN });
  const got = [];
  await listen(q, t, (v) => {
    got.push(v);
  }, () => got.length === 2);
  got.sort((a, b) => a.n - b.n);
  assert.deepEqual(got, [{ t, n: 1, when: new Date(5), big: 7n }, { t, n: 2 }]);
});

test("the module enqueues and consumes in Node, with values intact", async () => {
  const t = `module-${randomUUID().slice(0, 8)}`;
  const q = await openQueue(ENV.H1_URL, { accessToken: ENV.TOKEN });
  const value = { t, m: new Map([[1, new Uint8Array([9, 0, 9])]]), d: new Date(0), b: 2n ** 64n };
  const out = await q.enqueue(value);
  assert.equal(out.ok, true);
  assert.match(out.versionstamp, /^[0-9a-f]{20}$/);
  let got;
  let attempts = 0;
  await listen(q, t, (v, info) => {
    attempts++;
    if (attempts === 1) throw new Error("first attempt fails on purpose");
    assert.equal(info.attempt, 2);
    got = v;
  }, () => got !== undefined);
  assert.deepEqual(got, value);
});

test("openQueue refuses a wrong token with the server's reason", async () => {
  await assert.rejects(
    openQueue(ENV.H1_URL, { accessToken: "not-the-token-123" }),
    (e) => e.status === 401 && /token/i.test(e.message),
  );
});

test("an empty backoffSchedule is refused: KV Connect would store the default", async () => {
  // Deno's local queue takes [] as "never retry"; on the wire an empty list
  // cannot be told from none, and the server would retry five times.
  const q = await openQueue(ENV.H1_URL, { accessToken: ENV.TOKEN });
  await assert.rejects(
    q.enqueue({ t: randomUUID() }, { backoffSchedule: [] }),
    (e) => e instanceof RangeError && /backoffSchedule/.test(e.message),
  );
});
