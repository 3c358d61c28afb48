// group_commit.test.ts: group commit (docs/request-model.md) under real
// concurrency, with the Deno CLI through nginx (h2c, kept connections, the
// multiplexed model), so that atomic writes really share transactions.
//
// Its own instance (scripts/stack.sh start-server with CONFIG) serves two
// databases: "main" without a limit and "small" with max-size 256K, one
// worker (so that every concurrent write meets the others in its loop), and
// metrics. Tests:
//   - a seeded random mix of atomic writes from 48 concurrent loops (bank
//     transfers guarded by checks, optimistic counters, sums, max, min,
//     sets, deletes, sets with expireIn), writes to the small database
//     interleaved: batches form (the metrics say so); the bank's total is
//     conserved; optimistic counters lost no update; versionstamps are
//     unique and increase along each loop; and replaying the acknowledged
//     mutations in versionstamp order on Deno.openKv(":memory:") gives the
//     same data (the Deno CLI cannot enqueue over KV Connect);
//   - at the size limit, writes too big to fit sent together with small
//     ones (raw requests: the Deno client retries a 507 for ever): only
//     the big ones are refused (507), every small one commits;
//   - enqueues (with keysIfUndelivered) in concurrent raw writes, half of
//     them guarded by a check only one can pass: the queue holds exactly
//     the enqueues of the writes that committed.
// TEST_SEED=N replays one seed.
import {
  assert,
  AtomicWriteStatus,
  decAtomicWriteOutput,
  encAtomicWrite,
  encodeKey,
  ENV,
  metadataExchange,
  type Metadata,
  MutationType,
  plainTest,
  RawClient,
  rawFetch,
  RUN_DIR,
  sqlite,
  startServer,
  stopServer,
  ValueEncoding,
  withTimeout,
} from "./helpers.ts";

const NAME = "gcommit";
const DIR = `${RUN_DIR}/${NAME}`;
const CONFIG = `${DIR}/gcommit.ini`;
const TOKEN = "group-commit-token-00001";
const METRICS_TOKEN = "group-commit-metrics-0001";
const MAIN_DB = `${DIR}/main.sqlite`;
const SMALL_DB = `${DIR}/small.sqlite`;
const BASE = `http://127.0.0.1:${ENV.H2C_PORT}/${NAME}/`;
const H1BASE = `http://127.0.0.1:${ENV.H1_PORT}/${NAME}/`;
const SEED = Number(Deno.env.get("TEST_SEED") ?? Date.now() % 100000);

await Deno.mkdir(DIR, { recursive: true });
await Deno.writeTextFile(
  CONFIG,
  [
    "workers = 1",
    `metrics-path = /${NAME}/.metrics`,
    `metrics-token = ${METRICS_TOKEN}`,
    "",
    "[database main]",
    `path = ${MAIN_DB}`,
    `mount = /${NAME}/main`,
    `token = read-write ${TOKEN}`,
    "",
    "[database small]",
    `path = ${SMALL_DB}`,
    `mount = /${NAME}/small`,
    `token = read-write ${TOKEN}`,
    "max-size = 256K",
    "",
  ].join("\n"),
);
let started: Promise<Record<string, string>> | undefined;
function instance(): Promise<Record<string, string>> {
  started ??= startServer(NAME, { CONFIG, TOKEN, READY_PATH: `/${NAME}/main/` });
  return started;
}

async function open(db: string): Promise<Deno.Kv> {
  Deno.env.set("DENO_KV_ACCESS_TOKEN", TOKEN);
  return await withTimeout(Deno.openKv(`${BASE}${db}/`), 30_000, `Deno.openKv(${db})`);
}

async function batchMetrics(): Promise<{ count: number; sum: number }> {
  const r = await rawFetch(`${H1BASE}.metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  assert.equal(r.status, 200, `metrics: ${r.status} ${r.text}`);
  const get = (n: string) => Number(r.text.match(new RegExp(`^${n} (\\d+)$`, "m"))?.[1] ?? NaN);
  return { count: get("denokv_write_batch_size_count"), sum: get("denokv_write_batch_size_sum") };
}

async function rawClient(db: string): Promise<RawClient> {
  const m = await metadataExchange(`${H1BASE}${db}/`, { token: TOKEN });
  assert.equal(m.status, 200, `metadata exchange: ${m.status} ${m.text}`);
  const meta = JSON.parse(m.text) as Metadata;
  return new RawClient(`${H1BASE}${db}/`, meta, new URL(meta.endpoints[0].url, `${H1BASE}${db}/`).href.replace(/\/$/, ""));
}

// mulberry32: a small seeded generator, so that a failure can be replayed.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Mut =
  | { type: "set"; key: Deno.KvKey; value: unknown; expireIn?: number }
  | { type: "delete"; key: Deno.KvKey }
  | { type: "sum" | "max" | "min"; key: Deno.KvKey; value: Deno.KvU64 };

interface Acked {
  vs: string;
  muts: Mut[];
}

const ACCOUNTS = 12;
const START = 1000;
const LOOPS = 48;
const OPS = 30;

function apply(op: Deno.AtomicOperation, muts: Mut[]): Deno.AtomicOperation {
  for (const m of muts) {
    if (m.type === "set") op.set(m.key, m.value, m.expireIn ? { expireIn: m.expireIn } : undefined);
    else if (m.type === "delete") op.delete(m.key);
    else op.mutate({ type: m.type, key: m.key, value: m.value });
  }
  return op;
}

function show(v: unknown): string {
  return JSON.stringify(v, (_k, x) => typeof x === "bigint" ? `${x}n` : x instanceof Deno.KvU64 ? `u64:${x.value}` : x);
}

async function dump(kv: Deno.Kv, prefix: Deno.KvKey): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for await (const e of kv.list({ prefix })) m.set(show(e.key), show(e.value));
  return m;
}

plainTest("group commit: a random concurrent mix keeps Deno KV's semantics (seeded)", async () => {
  await instance();
  console.log(`# TEST_SEED=${SEED}`);
  const kvs = [await open("main"), await open("main"), await open("main"), await open("main")];
  const small = await open("small");
  const memory = await Deno.openKv(":memory:");
  try {
    const p = ["gc", SEED];
    const init = kvs[0].atomic();
    for (let i = 0; i < ACCOUNTS; i++) init.set([...p, "acct", i], START);
    for (let i = 0; i < 4; i++) init.set([...p, "chain", i], 0);
    const r0 = await init.commit();
    assert.ok(r0.ok);
    const acked: Acked[] = [{ vs: r0.versionstamp, muts: [] }];
    const chainAcked = [0, 0, 0, 0];
    let smallAcked = 0, conflicts = 0;
    const before = await batchMetrics();

    async function loop(id: number): Promise<void> {
      const rand = rng(SEED * 1000 + id);
      const kv = kvs[id % kvs.length];
      const mine: string[] = [];
      const pick = (n: number) => Math.floor(rand() * n);
      for (let n = 0; n < OPS; n++) {
        const kind = pick(9);
        let muts: Mut[] = [];
        let op = kv.atomic();
        if (kind <= 2) { // a bank transfer, guarded by both balances' versionstamps
          const a = pick(ACCOUNTS), b = (a + 1 + pick(ACCOUNTS - 1)) % ACCOUNTS;
          const [ea, eb] = await kv.getMany<number[]>([[...p, "acct", a], [...p, "acct", b]]);
          const amt = 1 + pick(50);
          op = op.check(ea, eb);
          muts = [{ type: "set", key: ea.key, value: ea.value! - amt }, { type: "set", key: eb.key, value: eb.value! + amt }];
        } else if (kind === 3) { // an optimistic counter: read, check, write
          const c = pick(4);
          const e = await kv.get<number>([...p, "chain", c]);
          op = op.check(e);
          muts = [{ type: "set", key: e.key, value: e.value! + 1 }];
        } else if (kind === 4) {
          muts = [{ type: "sum", key: [...p, "ctr", pick(3)], value: new Deno.KvU64(BigInt(1 + pick(5))) }];
        } else if (kind === 5) {
          const t = pick(2) ? "max" : "min";
          muts = [{ type: t, key: [...p, t, pick(2)], value: new Deno.KvU64(BigInt(pick(1_000_000))) }];
        } else if (kind === 6) {
          const k = pick(16);
          muts = pick(4) === 0 ? [{ type: "delete", key: [...p, "s", k] }] : [{ type: "set", key: [...p, "s", k], value: { id, n, r: pick(1e9) } }];
        } else if (kind === 7) { // a set that expires, but not during the test
          muts = [{ type: "set", key: [...p, "e", pick(8)], value: { id, n }, expireIn: 3_600_000 }];
        } else { // the other database, in the same turns
          const r = await small.set([...p, "small", id, n % 4], { id, n });
          assert.ok(r.ok);
          smallAcked++;
          continue;
        }
        const r = await apply(op, muts).commit();
        if (!r.ok) {
          conflicts++;
          continue;
        }
        mine.push(r.versionstamp);
        acked.push({ vs: r.versionstamp, muts });
        if (kind === 3) chainAcked[(muts[0].key as unknown[])[3] as number]++;
      }
      for (let i = 1; i < mine.length; i++) {
        assert.ok(mine[i] > mine[i - 1], `loop ${id}: versionstamp ${mine[i]} after ${mine[i - 1]}`);
      }
    }
    await withTimeout(Promise.all(Array.from({ length: LOOPS }, (_, i) => loop(i))), 240_000, "the load");
    const after = await batchMetrics();
    console.log(`# ${acked.length - 1} writes acknowledged, ${conflicts} check failures, ${smallAcked} on the small` +
      ` database; batches: ${after.count - before.count} holding ${after.sum - before.sum} writes`);
    assert.ok(after.sum - before.sum > after.count - before.count, "no batch of more than one write formed");

    const stamps = new Set(acked.map((a) => a.vs));
    assert.equal(stamps.size, acked.length, "a versionstamp given twice");

    const kv = kvs[0];
    let total = 0;
    for await (const e of kv.list<number>({ prefix: [...p, "acct"] })) total += e.value;
    assert.equal(total, ACCOUNTS * START, "the bank's total moved");
    for (let c = 0; c < 4; c++) {
      assert.equal((await kv.get<number>([...p, "chain", c])).value, chainAcked[c], `counter ${c} lost an update`);
    }

    // The same mutations, one by one in versionstamp order, on Deno's own KV.
    acked.sort((a, b) => a.vs < b.vs ? -1 : a.vs > b.vs ? 1 : 0);
    const minit = memory.atomic();
    for (let i = 0; i < ACCOUNTS; i++) minit.set([...p, "acct", i], START);
    for (let i = 0; i < 4; i++) minit.set([...p, "chain", i], 0);
    assert.ok((await minit.commit()).ok);
    for (const a of acked) {
      if (a.muts.length > 0) assert.ok((await apply(memory.atomic(), a.muts).commit()).ok);
    }
    const [got, want] = [await dump(kv, p), await dump(memory, p)];
    for (const [k, v] of want) assert.equal(got.get(k), v, `${k}: the server has ${got.get(k)}, Deno's KV ${v}`);
    for (const k of got.keys()) assert.ok(want.has(k), `${k} on the server only`);
  } finally {
    for (const kv of kvs) kv.close();
    small.close();
    memory.close();
  }
}, 300_000);

plainTest("group commit: at the size limit only the writes too big are refused, the small ones sent with them commit", async () => {
  await instance();
  const c = await rawClient("small");
  const p = ["limit", SEED];
  const blob = new Uint8Array(60_000).fill(7);
  const set = (key: unknown[], data: Uint8Array) => ({
    key: encodeKey(key as string[]),
    type: MutationType.SET,
    value: { data, encoding: ValueEncoding.BYTES },
  });
  // Loops of small writes, each sent as soon as the last was answered,
  // while other loops send writes of twelve 60 kB values (far more than
  // 256K holds) until each has been refused 15 times.
  let bigsDone = false;
  const bad: string[] = [];
  let smallOk = 0;
  const bigLoop = async (id: number) => {
    for (let n = 0; n < 15; n++) {
      const r = await c.post("atomic_write", encAtomicWrite({
        mutations: Array.from({ length: 12 }, (_, j) => set([...p, "big", id, n, j], blob)),
      }));
      if (r.status !== 507) bad.push(`a write of 720 kB: ${r.status} ${r.text}`);
    }
  };
  const smallLoop = async (id: number) => {
    for (let n = 0; !bigsDone || n < 3; n++) {
      const r = await c.post("atomic_write", encAtomicWrite({ mutations: [set([...p, "small", id, n % 8], new Uint8Array([n & 0xff]))] }));
      if (r.status !== 200 || decAtomicWriteOutput(r.body).status !== AtomicWriteStatus.SUCCESS) {
        bad.push(`small write ${id}/${n}: ${r.status} ${r.text}`);
      } else smallOk++;
    }
  };
  const m0 = await batchMetrics();
  const smalls = Array.from({ length: 16 }, (_, i) => smallLoop(i));
  await withTimeout(Promise.all(Array.from({ length: 4 }, (_, i) => bigLoop(i))), 60_000, "the big writes");
  bigsDone = true;
  await withTimeout(Promise.all(smalls), 60_000, "the small writes");
  const m1 = await batchMetrics();
  assert.deepEqual(bad.slice(0, 5), [], `${bad.length} wrong answers (${smallOk} small writes committed)`);
  assert.ok(m1.sum - m0.sum > m1.count - m0.count, "no batch of more than one write formed");
}, 120_000);

plainTest("group commit: enqueues in concurrent writes: one per committed write, none for a failed check", async () => {
  await instance();
  const c = await rawClient("main");
  const te = new TextEncoder();
  const claim = encodeKey(["qe", SEED, "claim"]);
  const later = Date.now() + 3_600_000;
  const send = (i: number, guarded: boolean) =>
    c.post("atomic_write", encAtomicWrite({
      // Every guarded write claims the same key: exactly one may commit.
      checks: guarded ? [{ key: claim }] : [],
      mutations: guarded ? [{ key: claim, type: MutationType.SET, value: { data: new Uint8Array([i]), encoding: ValueEncoding.BYTES } }] : [],
      enqueues: [{
        payload: te.encode(`qe-${SEED}-${guarded ? "g" : "u"}-${i}`),
        deadlineMs: later,
        keysIfUndelivered: [encodeKey(["qe", SEED, "dead", i])],
      }],
    }));
  const rs = await withTimeout(Promise.all(Array.from({ length: 48 }, (_, i) => send(i, i % 2 === 0))), 60_000, "the writes");
  let won = -1, lost = 0;
  for (const [i, r] of rs.entries()) {
    assert.equal(r.status, 200, `write ${i}: ${r.status} ${r.text}`);
    const out = decAtomicWriteOutput(r.body);
    if (i % 2 === 1) assert.equal(out.status, AtomicWriteStatus.SUCCESS, `unguarded write ${i}`);
    else if (out.status === AtomicWriteStatus.SUCCESS) {
      assert.equal(won, -1, `writes ${won} and ${i} both claimed the key`);
      won = i;
    } else {
      assert.equal(out.status, AtomicWriteStatus.CHECK_FAILURE);
      lost++;
    }
  }
  assert.ok(won >= 0 && lost === 23, `one claim commits (${won}), 23 fail their check (${lost})`);
  const rows = (await sqlite(MAIN_DB, `select cast(data as text) from queue where cast(data as text) like 'qe-${SEED}-%'`))
    .split("\n").filter((l) => l !== "").sort();
  const want = [`qe-${SEED}-g-${won}`, ...Array.from({ length: 24 }, (_, k) => `qe-${SEED}-u-${2 * k + 1}`)].sort();
  assert.deepEqual(rows, want, "the queue holds the enqueues of the committed writes only");
  const dead = await sqlite(MAIN_DB, `select keys_if_undelivered from queue where cast(data as text) = 'qe-${SEED}-g-${won}'`);
  assert.equal(dead.trim(), JSON.stringify([Array.from(encodeKey(["qe", SEED, "dead", won]))]), "its keysIfUndelivered");
}, 120_000);

plainTest("group commit: the instance stops cleanly", async () => {
  await instance();
  await stopServer(NAME);
});
