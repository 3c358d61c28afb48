// Queue delivery (docs/queues.md) with the real Deno CLI through nginx:
// clients/queue.mjs enqueues and listens, the Deno CLI reads dead letters
// and exchanges messages with the server through the SQLite file in both
// directions, raw requests check every refusal. The suite runs its own
// instance (/q/, two workers) on its own file, so that its consumers see
// no other suite's messages and it can restart the server.
//
// Timing assertions are lower bounds (a retry never comes before its
// delay) or generous upper bounds (within seconds, for milliseconds).
// It kills or replaces server processes on purpose, so the crash
// tripwire (tripwire_lib.sh) counts only crash signals and sanitizer reports.
// tripwire-allow: process-model

import v8 from "node:v8";
import {
  assert,
  metadataExchange,
  plainTest,
  RawClient,
  run,
  RUN_DIR,
  sleep,
  sqlite,
  startServer,
  stopServer,
  withTimeout,
} from "./helpers.ts";
import { openQueue, Queue } from "../../clients/queue.mjs";

const NAME = "q";
const QDB = `${RUN_DIR}/queue.sqlite`;
const DENO = Deno.execPath();
let inst: Record<string, string> | undefined;

async function up(): Promise<Record<string, string>> {
  inst ??= await startServer(NAME, { DB: QDB, SERVER_ARGS: "--workers 2" });
  return inst;
}

async function restart(): Promise<void> {
  await stopServer(NAME);
  inst = undefined;
  await up();
}

async function queue(): Promise<Queue> {
  const i = await up();
  return await openQueue(i.H1_URL, { accessToken: i.TOKEN });
}

function tag(name: string): string {
  return `${name}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Listens until `until` says enough (or the deadline passes), calling fn
 * for the messages of this test (tagged t) and finishing others quietly.
 */
async function listen(
  q: Queue,
  t: string,
  fn: (v: Record<string, unknown>, info: { attempt: number }) => unknown,
  until: () => boolean,
  opts: Record<string, number> = {},
  ms = 20_000,
): Promise<void> {
  const done = q.listenQueue(async (v: Record<string, unknown>, info: { attempt: number }) => {
    if (v?.t !== t) return;
    try {
      return await fn(v, info);
    } finally {
      if (until()) q.close();
    }
  }, { waitMs: 2000, ...opts });
  try {
    await withTimeout(done, ms, `listenQueue for ${t}`);
  } finally {
    q.close(); // a failed test must not go on taking later tests' messages
  }
}

function ser(v: unknown): Uint8Array {
  const s = new v8.Serializer();
  s.writeHeader();
  s.writeValue(v);
  return new Uint8Array(s.releaseBuffer());
}

plainTest("metadata advertises the extension; the Deno CLI still connects", async () => {
  const i = await up();
  const ask = await metadataExchange(i.H1_URL, {
    token: i.TOKEN,
    body: JSON.stringify({ supportedVersions: [1, 2, 3], denokvFcgiQueues: 1 }),
  });
  assert.equal(ask.status, 200, ask.text);
  const meta = JSON.parse(ask.text);
  assert.deepEqual(meta.denokvFcgiQueues, { version: 1, url: `/${NAME}/v2/queue` });
  const plain = await metadataExchange(i.H1_URL, { token: i.TOKEN });
  assert.equal(JSON.parse(plain.text).denokvFcgiQueues, undefined,
    "clients that do not ask get exactly the standard fields (@deno/kv refuses others)");
  const kv = await Deno.openKv(i.H2C_URL);
  try {
    await kv.set(["q-meta"], 1);
    assert.equal((await kv.get(["q-meta"])).value, 1);
  } finally {
    kv.close();
  }
});

plainTest("a value enqueued from Deno arrives whole in listenQueue", async () => {
  const q = await queue();
  const t = tag("roundtrip");
  const value = {
    t,
    when: new Date(1700000000123),
    map: new Map<string, unknown>([["a", 1n], ["b", [1, "x"]]]),
    big: -(2n ** 70n),
    bytes: new Uint8Array([0, 1, 254, 255]),
    nested: { s: "héllo", n: 1.5, nil: null },
  };
  await q.enqueue(value);
  let got: Record<string, unknown> | undefined;
  await listen(q, t, (v) => {
    got = v;
  }, () => got !== undefined);
  assert.deepEqual(got, value);
});

plainTest("delay is honoured, and due messages come in due order", async () => {
  const q = await queue();
  const t = tag("order");
  const t0 = Date.now();
  await q.enqueue({ t, n: "late" }, { delay: 1500 });
  // Due in the order 0,1,2,3 although enqueued 3,2,1,0.
  for (const n of [3, 2, 1, 0]) await q.enqueue({ t, n }, { delay: 100 + 100 * n });
  await sleep(700);
  const seen: [unknown, number][] = [];
  await listen(q, t, (v) => {
    seen.push([v.n, Date.now() - t0]);
  }, () => seen.length === 5, { concurrency: 1 });
  assert.deepEqual(seen.map((s) => s[0]), [0, 1, 2, 3, "late"]);
  assert.ok(seen[4][1] >= 1500, `delayed message came after ${seen[4][1]} ms, before its 1500 ms delay`);
});

plainTest("a failing handler is retried on its schedule, then the dead letter is written", async () => {
  const q = await queue();
  const i = await up();
  const t = tag("deadletter");
  const key = ["q-dead", t];
  await q.enqueue({ t, payload: [1, 2, 3] }, { backoffSchedule: [200, 600], keysIfUndelivered: [key, ["q-dead2", t]] });
  const tries: { attempt: number; at: number }[] = [];
  await listen(q, t, (_v, info) => {
    tries.push({ attempt: info.attempt, at: Date.now() });
    throw new Error("handler fails on purpose");
  }, () => tries.length === 3);
  assert.deepEqual(tries.map((x) => x.attempt), [1, 2, 3]);
  assert.ok(tries[1].at - tries[0].at >= 200, `second try ${tries[1].at - tries[0].at} ms after the first`);
  assert.ok(tries[2].at - tries[1].at >= 600, `third try ${tries[2].at - tries[1].at} ms after the second`);
  const kv = await Deno.openKv(i.H2C_URL);
  try {
    let e = await kv.get(key);
    for (let n = 0; e.value === null && n < 100; n++) {
      await sleep(100);
      e = await kv.get(key);
    }
    assert.deepEqual(e.value, { t, payload: [1, 2, 3] });
    const e2 = await kv.get(["q-dead2", t]);
    assert.deepEqual(e2.value, e.value);
    assert.equal(e2.versionstamp, e.versionstamp, "both keys written by one commit");
  } finally {
    kv.close();
  }
  const left = await sqlite(QDB, `select (select count(*) from queue) + (select count(*) from queue_running)`);
  assert.equal(left, "0", "the message is gone after its dead letter");
});

plainTest("a consumer killed mid-message: the message comes again after its lease", async () => {
  const i = await up();
  const q = await queue();
  const t = tag("killed");
  await q.enqueue({ t });
  const script = `${RUN_DIR}/queue_victim.mjs`;
  await Deno.writeTextFile(script, `
    import { openQueue } from ${JSON.stringify(new URL("../../clients/queue.mjs", import.meta.url).href)};
    const q = await openQueue(${JSON.stringify(i.H1_URL)}, { accessToken: ${JSON.stringify(i.TOKEN)} });
    q.listenQueue(async (v) => {
      if (v.t !== ${JSON.stringify(t)}) return;
      console.log("got");
      await new Promise(() => {});
    }, { leaseMs: 1500 });
  `);
  const child = new Deno.Command(DENO, { args: ["run", "-A", "--no-lock", script], stdout: "piped", stderr: "inherit" }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  await withTimeout((async () => {
    while (!out.includes("got")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
  })(), 20_000, "the victim receiving its message");
  assert.ok(out.includes("got"));
  const killedAt = Date.now();
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  let again: { attempt: number; at: number } | undefined;
  await listen(q, t, (_v, info) => {
    again = { attempt: info.attempt, at: Date.now() };
  }, () => again !== undefined);
  assert.equal(again!.attempt, 2, "the expired lease counted as a failed attempt");
  assert.ok(again!.at - killedAt >= 500, "not before the lease ran out");
});

plainTest("a handler running past its lease keeps the message: the lease is renewed", async () => {
  const t = tag("renew");
  const qa = await queue(), qb = await queue();
  await qa.enqueue({ t });
  const deliveries: string[] = [];
  let finishedAt = 0;
  const stop = () => {
    qa.close();
    qb.close();
  };
  const handler = (who: string) => async (v: Record<string, unknown>) => {
    if (v?.t !== t) return;
    deliveries.push(who);
    await sleep(3500); // more than twice the 1.5 s lease
    finishedAt = Date.now();
  };
  const opts = { leaseMs: 1500, waitMs: 1000 };
  const all = Promise.all([qa.listenQueue(handler("a"), opts), qb.listenQueue(handler("b"), opts)]);
  while (finishedAt === 0) await sleep(50);
  await sleep(2500); // a lost lease would have come back by now
  stop();
  await withTimeout(all, 10_000, "both consumers closing");
  assert.equal(deliveries.length, 1, `delivered to ${deliveries.join(", ")}`);
  const left = await sqlite(QDB, "select (select count(*) from queue) + (select count(*) from queue_running)");
  assert.equal(left, "0", "finished once its handler returned");
});

plainTest("two consumers never hold one message at once (2000 messages)", async () => {
  const i = await up();
  const t = tag("exclusive");
  const raw = await RawClient.open(i.H1_URL);
  const N = 2000;
  for (let base = 0; base < N; base += 1000) {
    const enqueues = [];
    for (let n = base; n < base + 1000; n++) enqueues.push({ payload: ser({ t, n }), deadlineMs: Date.now() });
    const out = await raw.write({ enqueues });
    assert.equal(out.status, 1);
  }
  const held = new Set<number>();
  const deliveries = new Map<number, number>();
  let overlaps = 0, total = 0;
  const qa = await queue(), qb = await queue();
  const enough = () => total >= N;
  const handler = (q: Queue) => async (v: Record<string, unknown>) => {
    if (v?.t !== t) return;
    const n = v.n as number;
    if (held.has(n)) overlaps++;
    held.add(n);
    await sleep(Math.random() < 0.1 ? 2 : 0);
    held.delete(n);
    deliveries.set(n, (deliveries.get(n) ?? 0) + 1);
    total++;
    if (enough()) {
      qa.close();
      qb.close();
    }
    void q;
  };
  const opts = { concurrency: 8, waitMs: 2000 };
  await withTimeout(Promise.all([qa.listenQueue(handler(qa), opts), qb.listenQueue(handler(qb), opts)]), 120_000, "2000 messages");
  assert.equal(overlaps, 0, "no message was held by two handlers at once");
  assert.equal(deliveries.size, N, "every message was delivered");
  const dup = [...deliveries.values()].filter((c) => c !== 1).length;
  assert.equal(dup, 0, "with leases far longer than the handlers, each exactly once");
}, 150_000);

plainTest("messages enqueued before a restart are delivered after it", async () => {
  const q1 = await queue();
  const t = tag("restart");
  for (let n = 0; n < 5; n++) await q1.enqueue({ t, n });
  await restart();
  const q2 = await queue();
  const got = new Set<unknown>();
  await listen(q2, t, (v) => {
    got.add(v.n);
  }, () => got.size === 5);
  assert.equal(got.size, 5);
});

plainTest("kill -9 of the whole service and its consumer mid-stream: nothing lost", async () => {
  const i = await up();
  const t = tag("killall");
  const raw = await RawClient.open(i.H1_URL);
  const N = 200;
  const enqueues = [];
  for (let n = 0; n < N; n++) enqueues.push({ payload: ser({ t, n }), deadlineMs: Date.now() });
  assert.equal((await raw.write({ enqueues })).status, 1);
  // A consumer in its own process, killed with the service.
  const script = `${RUN_DIR}/queue_consumer.mjs`;
  await Deno.writeTextFile(script, `
    import { openQueue } from ${JSON.stringify(new URL("../../clients/queue.mjs", import.meta.url).href)};
    const q = await openQueue(${JSON.stringify(i.H1_URL)}, { accessToken: ${JSON.stringify(i.TOKEN)} });
    q.listenQueue(async (v) => {
      if (v.t !== ${JSON.stringify(t)}) return;
      await new Promise((r) => setTimeout(r, 5));
      console.log("done " + v.n);
    }, { concurrency: 4, leaseMs: 2000 });
  `);
  const child = new Deno.Command(DENO, { args: ["run", "-A", "--no-lock", script], stdout: "piped", stderr: "inherit" }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const done = new Set<number>();
  let buf = "";
  await withTimeout((async () => {
    while (done.size < N / 4) {
      const { value, done: eof } = await reader.read();
      if (eof) break;
      buf += value;
      for (const m of buf.matchAll(/done (\d+)/g)) done.add(Number(m[1]));
    }
  })(), 30_000, "the consumer handling a quarter of the messages");
  const procs = [i.PID, ...(await run(["pgrep", "-P", i.PID])).stdout.trim().split("\n").filter(Boolean)];
  child.kill("SIGKILL");
  for (const p of procs) await run(["kill", "-9", p]);
  await child.status;
  // What it reported after we stopped counting (it may have finished those).
  for (;;) {
    const { value, done: eof } = await reader.read();
    if (eof) break;
    buf += value;
  }
  for (const m of buf.matchAll(/done (\d+)/g)) done.add(Number(m[1]));
  inst = undefined;
  await up();
  const seen = new Set<number>();
  const q2 = await queue();
  const all = () => [...Array(N).keys()].every((n) => done.has(n) || seen.has(n));
  await listen(q2, t, (v) => {
    seen.add(v.n as number);
  }, all, { concurrency: 8, leaseMs: 2000 }, 40_000);
  assert.ok(all(), "every message was handled by one consumer or the other");
  // Handled but not finished when killed: they come back after their
  // lease (at least once). Drain until the tables are empty.
  const q3 = await queue();
  const drained = q3.listenQueue(() => {}, { concurrency: 8, waitMs: 1000 });
  let left = "";
  try {
    for (let n = 0; n < 200; n++) {
      left = await sqlite(QDB, "select (select count(*) from queue) + (select count(*) from queue_running)");
      if (left === "0") break;
      await sleep(100);
    }
  } finally {
    q3.close();
    await drained;
  }
  assert.equal(left, "0", "and finished: nothing left in the queue tables");
}, 90_000);

plainTest("a long poll survives kill -9 of the worker holding it", async () => {
  const i = await up();
  const q = await queue();
  const t = tag("killworker");
  let got = 0;
  const done = listen(q, t, () => {
    got++;
  }, () => got === 1);
  await sleep(500); // the poll is parked in some worker's hub
  const workers = (await run(["pgrep", "-P", i.PID])).stdout.trim().split("\n").filter(Boolean);
  assert.ok(workers.length >= 2, `workers of ${i.PID}: ${workers}`);
  for (const w of workers) await run(["kill", "-9", w]); // the housekeeper too
  await sleep(300);
  await q.enqueue({ t });
  await done;
  assert.equal(got, 1);
});

plainTest("idle long polls hold no worker; enqueues answer them all", async () => {
  const i = await up(); // two workers
  const raw = await RawClient.open(i.H1_URL);
  const headers = raw.headers({ "content-type": "application/json" });
  const ac = new AbortController();
  const polls: Promise<{ messages: { id: string; payload: string }[] } | null>[] = [];
  const P = 40; // more than a hub answers in one round, in one hub at least
  for (let n = 0; n < P; n++) {
    polls.push(fetch(`${raw.dataUrl}/queue/lease`, {
      method: "POST",
      headers,
      body: JSON.stringify({ waitMs: 30000, max: 1 }),
      signal: ac.signal,
    }).then((r) => r.json()).catch(() => null));
  }
  await sleep(500);
  const kv = await Deno.openKv(i.H2C_URL);
  try {
    const t0 = Date.now();
    await withTimeout(kv.get(["q-free"]), 5000, `a read while ${P} polls are parked on 2 workers`);
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    kv.close();
  }
  const t = tag("parked");
  const enqueues = [];
  for (let n = 0; n < P; n++) enqueues.push({ payload: ser({ t, n }), deadlineMs: Date.now() });
  assert.equal((await raw.write({ enqueues })).status, 1);
  const answers = await withTimeout(Promise.all(polls), 20_000, "every parked poll answered");
  ac.abort();
  const got = answers.flatMap((a) => a?.messages ?? []);
  assert.equal(got.length, P, `${got.length} of ${P} polls got a message`);
  const fin = await raw.post("queue/finish", JSON.stringify({ results: got.map((m) => ({ id: m.id, success: true })) }),
    { "content-type": "application/json" });
  assert.equal(fin.status, 200, fin.text);
  assert.ok(JSON.parse(fin.text).results.every((r: { status: number }) => r.status === 200), fin.text);
});

plainTest("an enqueue through another server on the same file reaches a parked poll", async () => {
  await up();
  const other = await startServer("q2", { DB: QDB });
  try {
    const q = await queue();
    const t = tag("foreign");
    let got: unknown;
    const done = listen(q, t, (v) => {
      got = v.via;
    }, () => got !== undefined, { waitMs: 30000 });
    await sleep(300);
    const q2 = await openQueue(other.H1_URL, { accessToken: other.TOKEN });
    await q2.enqueue({ t, via: "q2" });
    await done;
    assert.equal(got, "q2");
  } finally {
    await stopServer("q2");
  }
});

plainTest("a retry through another server on the same file reaches a parked poll", async () => {
  await up();
  const other = await startServer("q3", { DB: QDB });
  try {
    const q = await queue();
    const t = tag("foreign-retry");
    await q.enqueue({ t });
    // The other server leases the message and fails it: its retry is due
    // 100 ms later, a change to the queue tables alone (no new version).
    const raw = await RawClient.open(other.H1_URL);
    const post = (path: string, body: unknown) =>
      raw.post(`queue/${path}`, JSON.stringify(body), { "content-type": "application/json" });
    let id: string | undefined;
    for (let n = 0; n < 50 && !id; n++) {
      const r = await post("lease", { max: 10, waitMs: 0, leaseMs: 60000 });
      assert.equal(r.status, 200, r.text);
      for (const m of JSON.parse(r.text).messages) {
        const d = new v8.Deserializer(Uint8Array.from(atob(m.payload), (c) => c.charCodeAt(0)));
        d.readHeader();
        if ((d.readValue() as Record<string, unknown>)?.t === t) id = m.id;
        else await post("finish", { id: m.id, success: true });
      }
      if (!id) await sleep(100);
    }
    assert.ok(id, "the other server leased the test's message");
    let attempt = 0;
    const done = listen(q, t, (_v, info) => {
      attempt = info.attempt;
    }, () => attempt > 0, { waitMs: 30000 }, 10_000);
    await sleep(500); // this server's poll is parked by now
    const f = await post("finish", { id, success: false });
    assert.equal(f.status, 200, f.text);
    await done; // within 10 s, not at the end of the 30 s wait
    assert.equal(attempt, 2);
  } finally {
    await stopServer("q3");
  }
});

plainTest("long polls whose clients do not read hold at most the output budget in messages", async () => {
  const file = `${RUN_DIR}/queue-slow.sqlite`;
  const i = await startServer("qs", { DB: file, SERVER_ARGS: "--workers 1 --watch-output-budget 1" });
  const conns: Deno.Conn[] = [];
  try {
    const raw = await RawClient.open(i.H1_URL);
    // 300 messages of 64 KB, all due at one moment a few seconds ahead.
    const due = Date.now() + 4000;
    await sqlite(file, `with recursive n(x) as (select 1 union all select x + 1 from n where x < 300)
      insert into queue select ${due}, printf('slow-%03d', x), zeroblob(65000), '[]', '[]' from n`);
    // Three consumers park a poll for 100 messages each and never read.
    const url = new URL(`${raw.dataUrl}/queue/lease`);
    const body = JSON.stringify({ max: 100, waitMs: 20000, leaseMs: 60000 });
    const head = [...raw.headers({ "content-type": "application/json" })]
      .map(([k, v]) => `${k}: ${v}\r\n`).join("");
    for (let n = 0; n < 3; n++) {
      const c = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
      conns.push(c);
      await c.write(new TextEncoder().encode(
        `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n${head}content-length: ${body.length}\r\n\r\n${body}`,
      ));
    }
    await sleep(Math.max(0, due - Date.now()) + 2000);
    // Their answers (~8.7 MB each) cannot drain: past the 1 MiB budget the
    // hub stops leasing for them, and the rest stay for a consumer that reads.
    const held = Number(await sqlite(file, "select count(*) from queue_running"));
    assert.ok(held <= 200, `slow polls hold ${held} of 300 messages`);
    const r = await raw.post("queue/lease", JSON.stringify({ max: 100, waitMs: 0 }), { "content-type": "application/json" });
    assert.equal(r.status, 200, r.text);
    assert.ok(JSON.parse(r.text).messages.length > 0, "a reading consumer gets messages");
  } finally {
    for (const c of conns) c.close();
    await stopServer("qs");
  }
});

plainTest("a consumer that does not read its answer holds no worker", async () => {
  const file = `${RUN_DIR}/queue-unread.sqlite`;
  const i = await startServer("qw", { DB: file, SERVER_ARGS: "--workers 1" });
  let conn: Deno.Conn | undefined;
  try {
    const raw = await RawClient.open(i.H1_URL);
    await sqlite(file, `with recursive n(x) as (select 1 union all select x + 1 from n where x < 200)
      insert into queue select 1000, printf('unread-%03d', x), zeroblob(65000), '[]', '[]' from n`);
    // The only worker answers a lease of 100 messages (~8.7 MB) to a
    // client that never reads it.
    const url = new URL(`${raw.dataUrl}/queue/lease`);
    const body = JSON.stringify({ max: 100, waitMs: 0 });
    const head = [...raw.headers({ "content-type": "application/json" })]
      .map(([k, v]) => `${k}: ${v}\r\n`).join("");
    conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    await conn.write(new TextEncoder().encode(
      `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n${head}content-length: ${body.length}\r\n\r\n${body}`,
    ));
    await sleep(1000);
    // The next request is served at once, not after nginx gives up on the
    // slow client (a minute).
    const r = await withTimeout(
      raw.post("queue/lease", JSON.stringify({ max: 1, waitMs: 0 }), { "content-type": "application/json" }),
      10_000,
      "a lease while another client's answer is unread",
    );
    assert.equal(r.status, 200, r.text);
    assert.equal(JSON.parse(r.text).messages.length, 1);
  } finally {
    conn?.close();
    await stopServer("qw");
  }
});

plainTest("file compatibility with the Deno CLI's local queue, both ways", async () => {
  const file = `${RUN_DIR}/queue-compat.sqlite`;
  const t = tag("compat");
  // 1. The Deno CLI enqueues into a local file; this server delivers it.
  const enq = await run([DENO, "eval", "--unstable-kv", `
    const kv = await Deno.openKv(${JSON.stringify(file)});
    await kv.enqueue({ t: ${JSON.stringify(t)}, from: "deno" });
    kv.close();`]);
  assert.equal(enq.code, 0, enq.stderr);
  const c = await startServer("qc", { DB: file });
  try {
    const q = await openQueue(c.H1_URL, { accessToken: c.TOKEN });
    let got: unknown;
    await listen(q, t, (v) => {
      got = v.from;
    }, () => got !== undefined);
    assert.equal(got, "deno");
    // 2. Enqueued here and left: the Deno CLI's listenQueue delivers it.
    const q2 = await openQueue(c.H1_URL, { accessToken: c.TOKEN });
    await q2.enqueue({ t, from: "server" }, { delay: 300 });
  } finally {
    await stopServer("qc");
  }
  const recv = await run([DENO, "eval", "--unstable-kv", `
    const kv = await Deno.openKv(${JSON.stringify(file)});
    const timer = setTimeout(() => { console.log("timeout"); Deno.exit(3); }, 20000);
    kv.listenQueue((v) => {
      if (v.t !== ${JSON.stringify(t)}) return;
      console.log(v.from);
      clearTimeout(timer);
      setTimeout(() => Deno.exit(0), 100);
    });`]);
  assert.equal(recv.code, 0, recv.stdout + recv.stderr);
  assert.equal(recv.stdout.trim(), "server");
});

plainTest("refusals: 4xx with a one-line reason, and nothing changes", async () => {
  const i = await up();
  const raw = await RawClient.open(i.H1_URL);
  const json = { "content-type": "application/json" };
  const post = (path: string, body: unknown, over: Record<string, string | null> = {}) =>
    raw.post(`queue/${path}`, typeof body === "string" ? body : JSON.stringify(body), { ...json, ...over });
  const t = tag("refusals");
  const q = await queue();
  await q.enqueue({ t });
  // Take the message by hand (other tests' leftovers are finished as well).
  let lease: { id: string; leaseExpiresAt: number } | undefined;
  for (let n = 0; n < 50 && !lease; n++) {
    const r = await post("lease", { max: 10, waitMs: 0, leaseMs: 60000 });
    assert.equal(r.status, 200, r.text);
    for (const m of JSON.parse(r.text).messages) {
      const d = new v8.Deserializer(Uint8Array.from(atob(m.payload), (c) => c.charCodeAt(0)));
      d.readHeader();
      if ((d.readValue() as Record<string, unknown>)?.t === t) lease = m;
      else await post("finish", { id: m.id, success: true });
    }
    if (!lease) await sleep(100);
  }
  assert.ok(lease, "leased the test's message");
  const before = await sqlite(QDB, "select count(*) || '/' || group_concat(deadline) from queue_running");
  const cases: [string, string, unknown, Record<string, string | null>, number, RegExp][] = [
    ["lease: not JSON", "lease", "{", {}, 400, /Invalid queue request/],
    ["lease: unknown field", "lease", { max: 1, wait: 5 }, {}, 400, /Invalid queue request/],
    ["lease: max out of range", "lease", { max: 101 }, {}, 400, /Invalid queue request/],
    ["lease: waitMs negative", "lease", { waitMs: -1 }, {}, 400, /Invalid queue request/],
    ["lease: leaseMs too short", "lease", { leaseMs: 10 }, {}, 400, /Invalid queue request/],
    ["finish: malformed id", "finish", { id: "nonsense", success: true }, {}, 400, /Invalid queue lease id/],
    ["finish: success not a boolean", "finish", { id: lease!.id, success: 1 }, {}, 400, /Invalid queue request/],
    ["finish: unknown id", "finish", { id: "00000000-0000-4000-8000-000000000000:1", success: true }, {}, 409, /not held/],
    ["finish: wrong database", "finish", { id: lease!.id, success: true }, { "x-denokv-database-id": "00000000-0000-4000-8000-000000000000" }, 400, /database id/],
    ["finish: bad token", "finish", { id: lease!.id, success: true }, { authorization: "Bearer wrong-token-123" }, 401, /token/],
    ["renew: bad id", "renew", { id: "x:y" }, {}, 400, /Invalid queue lease id/],
    ["finish batch: empty", "finish", { results: [] }, {}, 400, /Invalid queue request/],
    ["finish batch: one malformed id refuses all", "finish",
      { results: [{ id: lease!.id, success: true }, { id: "bad", success: true }] }, {}, 400, /Invalid queue lease id/],
    ["finish batch: mixed with a single form", "finish",
      { results: [{ id: lease!.id, success: true }], id: lease!.id }, {}, 400, /Invalid queue request/],
  ];
  for (const [what, path, body, over, status, reason] of cases) {
    const r = await post(path, body, over);
    assert.equal(r.status, status, `${what}: ${r.status} ${r.text}`);
    assert.match(r.text, reason, what);
    assert.equal(r.text.trim().split("\n").length, 1, `${what}: one line`);
  }
  assert.equal(await sqlite(QDB, "select count(*) || '/' || group_concat(deadline) from queue_running"), before,
    "no refusal changed queue_running");
  // Renew gives a new name; the old one is then refused. A shorter lease
  // does not shorten it.
  const rn = await post("renew", { id: lease!.id, leaseMs: 1000 });
  assert.equal(rn.status, 200, rn.text);
  const renewed = JSON.parse(rn.text);
  assert.ok(renewed.leaseExpiresAt > lease!.leaseExpiresAt &&
    renewed.leaseExpiresAt <= lease!.leaseExpiresAt + 128, `renewed until ${renewed.leaseExpiresAt}`);
  const old = await post("finish", { id: lease!.id, success: true });
  assert.equal(old.status, 409, `finish with the id before renewal: ${old.text}`);
  // A failure: it comes back (attempt 2), this time on a short lease.
  assert.equal((await post("finish", { id: renewed.id, success: false })).status, 200);
  const takeOne = async (leaseMs: number) => {
    for (let n = 0; n < 100; n++) {
      const r = await post("lease", { max: 1, waitMs: 1000, leaseMs });
      const m = JSON.parse(r.text).messages[0];
      if (m) return m as { id: string; attempt: number; leaseExpiresAt: number };
    }
    return undefined;
  };
  const short = await takeOne(1000);
  assert.ok(short, "redelivered after a failure");
  assert.equal(short!.attempt, 2);
  // Expired: 410 (or 409 once it was returned), and not finished by it.
  await sleep(Math.max(0, short!.leaseExpiresAt - Date.now()) + 200);
  const exp = await post("finish", { id: short!.id, success: true });
  assert.ok(exp.status === 410 || exp.status === 409, `finish after the lease ended: ${exp.status} ${exp.text}`);
  // The message comes back (attempt 3) and a finish then works once.
  const again = await takeOne(30000);
  assert.ok(again, "redelivered after the lease ran out");
  assert.equal(again!.attempt, 3);
  // A batch: each outcome answered on its own, in one commit.
  const batch = await post("finish", {
    results: [{ id: again!.id, success: true }, { id: again!.id, success: true }],
  });
  assert.equal(batch.status, 200, batch.text);
  const res = JSON.parse(batch.text).results;
  assert.equal(res[0].status, 200);
  assert.equal(res[1].status, 409, "the second finish of one lease is refused");
  assert.match(res[1].message, /not held/);
  const twice = await post("finish", { id: again!.id, success: true });
  assert.equal(twice.status, 409, `double finish: ${twice.text}`);
  assert.ok(twice.text.includes("not held"));
});

plainTest("queue stats and queue list read the file", async () => {
  const bin = Deno.env.get("DENOKV_FCGI_BIN") ?? `${new URL("../../src/denokv-fcgi", import.meta.url).pathname}`;
  const q = await queue();
  const t = tag("cli");
  await q.enqueue({ t }, { delay: 600_000, backoffSchedule: [1, 2], keysIfUndelivered: [["cli-dead"]] });
  const stats = await run([bin, "--sqlite-path", QDB, "queue", "stats"]);
  assert.equal(stats.code, 0, stats.stderr);
  const s = Object.fromEntries(stats.stdout.trim().split("\n").map((l) => l.split(" ")));
  assert.ok(Number(s.delayed) >= 1, stats.stdout);
  for (const k of ["ready", "running", "expired_leases", "oldest_due_age_ms"]) assert.ok(k in s, `${k} in ${stats.stdout}`);
  // The failing-handler test above dead-lettered a message in this file.
  assert.ok(Number(s.dead_lettered) >= 1, `dead_lettered in ${stats.stdout}`);
  const list = await run([bin, "--sqlite-path", QDB, "queue", "list", "--limit", "1000"]);
  assert.equal(list.code, 0, list.stderr);
  const line = list.stdout.split("\n").find((l) => l.includes("[1,2]"));
  assert.ok(line, list.stdout);
  assert.match(line!, /^waiting +\S+Z +1 +[0-9a-f-]{36} +\d+ \[1,2\] \[\[2,99,108,105,45,100,101,97,100,0\]\]$/);
  const bad = await run([bin, "--sqlite-path", QDB, "queue", "frobnicate"]);
  assert.equal(bad.code, 2, "a usage error exits 2");
});

plainTest("teardown: the queue instance stops cleanly", async () => {
  if (inst) await stopServer(NAME);
  inst = undefined;
});
