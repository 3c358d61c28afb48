// Shared hosting end to end (docs/shared-hosting.md): one denokv-fcgi
// instance serving the databases of [database NAME] sections of its
// configuration file, behind the stack's nginx (h2c for the Deno CLI,
// HTTP/1.1 for raw requests): three at their own mounts under /hosting/,
// two more sharing one mount, told apart by Host.
//
// Covered: own data, versionstamps and id per database; every token against
// every database; read-only and expired tokens; watches of one database not
// woken by another's writes (counted by denokv_watch_reads_total, not timed);
// the max-watches and max-size limits (429, 507, reads go on); expiry swept
// in every database; a file made by the Deno CLI's local Deno.openKv served
// as one of the databases, readable both ways; routing by Host on a shared
// mount; unknown mounts and paths (404 with a reason); SIGHUP adding a
// database, removing one and changing tokens under a concurrent load with no
// failed request to the others.
//
// Run by tests/e2e/run.sh (deno test --unstable-kv -A --reporter=tap).
// The instance is started here (scripts/stack.sh start-server with CONFIG),
// on RUN_DIR/hosting.sock, located at /hosting/ in the stack's nginx.
// Environment, for running the same suite through another proxy (TLS):
//   HOSTING_BASE_URL     base URL the Deno CLI uses (default: the stack's
//                        h2c listener + /hosting/); also the raw requests'
//                        unless HOSTING_H1_BASE_URL is set
//   HOSTING_H1_BASE_URL  base URL of the raw HTTP/1.1 requests
//   DENO_CERT            a CA for https:// (honoured by Deno itself)

import {
  assert,
  AtomicWriteStatus,
  encAtomicWrite,
  encodeKey,
  ENV,
  hex,
  metadataExchange,
  type Metadata,
  MutationType,
  parseEnvFile,
  plainTest,
  RawClient,
  type RawResponse,
  rawFetch,
  run,
  RUN_DIR,
  sleep,
  sqlite,
  startServer,
  STACK,
  uniquePrefix,
  ValueEncoding,
  withTimeout,
} from "./helpers.ts";
import { encWatch } from "./watch_lib.ts";
import { FcgiConn } from "./fcgi.ts";

const NAME = "hosting";
const DIR = `${RUN_DIR}/${NAME}`;
const CONFIG = `${DIR}/hosting.ini`;
const BASE = Deno.env.get("HOSTING_BASE_URL") ?? `http://127.0.0.1:${ENV.H2C_PORT}/${NAME}/`;
const H1BASE = Deno.env.get("HOSTING_H1_BASE_URL") ?? Deno.env.get("HOSTING_BASE_URL") ??
  `http://127.0.0.1:${ENV.H1_PORT}/${NAME}/`;
const METRICS_TOKEN = "hosting-metrics-token-0123";
// Generous deadlines: only a broken server misses them.
const DELIVERY_MS = 10_000;

const T = {
  aliceRW: "alice-read-write-token-0001",
  aliceRO: "alice-read-only-token-00002",
  aliceOld: "alice-expired-token-0000003",
  bobRW: "bob-read-write-token-000004",
  carolRW: "carol-read-write-token-0005",
  daveRW: "dave-read-write-token-00006",
  eveRW: "eve-read-write-token-000007",
  frankRW: "frank-read-write-token-0008",
};

interface Db {
  name: string;
  path: string;
  mount?: string; // default: /hosting/NAME
  host?: string;
  tokens: string[]; // "SCOPE SECRET [expires=...]"
  extra?: string[];
}

async function sha256hex(s: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
  return hex(d);
}

const alice: Db = {
  name: "alice",
  path: `${DIR}/alice.sqlite`,
  tokens: [
    `read-write ${T.aliceRW}`,
    `read-only ${T.aliceRO}`,
    `read-write ${T.aliceOld} expires=2020-01-01T00:00:00Z`,
  ],
};
const bob: Db = {
  name: "bob",
  path: `${DIR}/bob.sqlite`,
  // bob's token is kept as its hash only
  tokens: [`read-write sha256:${await sha256hex(T.bobRW)}`],
  extra: ["max-size = 256K", "max-watches = 2"],
};
// carol's file is made by the Deno CLI's own local KV (below)
const carol: Db = { name: "carol", path: `${DIR}/local.sqlite`, tokens: [`read-write ${T.carolRW}`] };
const dave: Db = { name: "dave", path: `${DIR}/dave.sqlite`, tokens: [`read-write ${T.daveRW}`] };
// One mount, two databases: eve for requests to eve.example, frank for the rest.
const eve: Db = {
  name: "eve",
  path: `${DIR}/eve.sqlite`,
  mount: `/${NAME}/shared`,
  host: "eve.example",
  tokens: [`read-write ${T.eveRW}`],
};
const frank: Db = { name: "frank", path: `${DIR}/frank.sqlite`, mount: `/${NAME}/shared`, tokens: [`read-write ${T.frankRW}`] };

function configText(dbs: Db[]): string {
  const lines = [
    "workers = 2",
    "shutdown-timeout = 20",
    // One open handle per worker: every switch of database closes one, so
    // the suite also runs the reopening path, and a handle closed while a
    // request of the same turn still needs it would show.
    "max-open-databases = 1",
    `metrics-path = /${NAME}/.metrics`,
    `metrics-token = ${METRICS_TOKEN}`,
  ];
  for (const d of dbs) {
    lines.push("", `[database ${d.name}]`, `path = ${d.path}`, `mount = ${d.mount ?? `/${NAME}/${d.name}`}`);
    if (d.host) lines.push(`host = ${d.host}`);
    for (const t of d.tokens) lines.push(`token = ${t}`);
    lines.push(...(d.extra ?? []));
  }
  return lines.join("\n") + "\n";
}

// --- setup: carol's file from the Deno CLI, the config, the instance -------

await Deno.mkdir(DIR, { recursive: true });
{
  const code = `const kv = await Deno.openKv(${JSON.stringify(carol.path)});
await kv.set(["local", "greeting"], "from the Deno CLI");
kv.close();`;
  const r = await run([Deno.execPath(), "eval", "--unstable-kv", code]);
  if (r.code !== 0) throw new Error(`making carol's file with the Deno CLI failed: ${r.stderr}`);
}
await Deno.writeTextFile(CONFIG, configText([alice, bob, carol, eve, frank]));
const INSTANCE = await startServer(NAME, {
  CONFIG,
  TOKEN: T.aliceRW,
  READY_PATH: `/${NAME}/alice/`,
});
const MASTER_PID = Number(INSTANCE.PID);

function h1(db: string): string {
  return `${H1BASE}${db}/`;
}
function h2(db: string): string {
  return `${BASE}${db}/`;
}

async function meta(db: string, token: string): Promise<RawResponse> {
  return await metadataExchange(h1(db), { token });
}

async function client(db: string, token: string): Promise<RawClient> {
  const r = await meta(db, token);
  assert.equal(r.status, 200, `metadata exchange at ${db}: ${r.status} ${r.text}`);
  const m = JSON.parse(r.text) as Metadata;
  return new RawClient(h1(db), m, new URL(m.endpoints[0].url, h1(db)).href.replace(/\/$/, ""));
}

// The Deno CLI reads its token from the environment when it opens.
async function openDeno(db: string, token: string): Promise<Deno.Kv> {
  Deno.env.set("DENO_KV_ACCESS_TOKEN", token);
  return await withTimeout(Deno.openKv(h2(db)), 30_000, `Deno.openKv(${db})`);
}

async function version(path: string): Promise<string> {
  return await sqlite(path, "select version from data_version where k = 0");
}

function setBytes(key: Uint8Array, data: Uint8Array) {
  return { mutations: [{ key, type: MutationType.SET, value: { data, encoding: ValueEncoding.BYTES } }] };
}

async function watchReads(): Promise<number> {
  const r = await rawFetch(`${H1BASE}.metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  assert.equal(r.status, 200, `metrics: ${r.status} ${r.text}`);
  const m = r.text.match(/^denokv_watch_reads_total (\d+)$/m);
  assert.ok(m, "no denokv_watch_reads_total in the metrics");
  return Number(m[1]);
}

// A raw watch stream: resolves once the response headers are in.
async function openWatch(c: RawClient, key: Uint8Array): Promise<{ res: Response; ac: AbortController }> {
  const ac = new AbortController();
  const res = await withTimeout(
    fetch(`${c.dataUrl}/watch`, { method: "POST", headers: c.headers(), body: encWatch([key]), signal: ac.signal }),
    30_000,
    "watch",
  );
  return { res, ac };
}

const REFUSED_RO = "Refused: this token is read-only.\n";
const NO_MOUNT = "No database is mounted at this path.\n";

// --- tests -------------------------------------------------------------------

plainTest("each database has its own id, data and versionstamps", async () => {
  const p = uniquePrefix("own");
  const ids = new Set<string>();
  for (const [db, tok] of [["alice", T.aliceRW], ["bob", T.bobRW], ["carol", T.carolRW]]) {
    const r = await meta(db, tok);
    assert.equal(r.status, 200, `${db}: ${r.text}`);
    const m = JSON.parse(r.text) as Metadata;
    assert.equal(m.endpoints[0].url, `/${NAME}/${db}/v2`, "endpoint under the database's mount");
    ids.add(m.databaseId);
  }
  assert.equal(ids.size, 3, "the three databases share an id");

  const a = await openDeno("alice", T.aliceRW);
  const b = await openDeno("bob", T.bobRW);
  try {
    const bobBefore = await version(bob.path);
    const ra = await a.set([...p, "k"], "alice's");
    assert.ok(ra.ok);
    for (let i = 0; i < 3; i++) await a.set([...p, "n", i], i);
    assert.equal(await version(bob.path), bobBefore, "alice's writes moved bob's data version");
    assert.equal((await b.get([...p, "k"])).value, null, "bob sees alice's entry");
    const rb = await b.set([...p, "k"], "bob's");
    assert.ok(rb.ok);
    assert.equal((await a.get([...p, "k"])).value, "alice's");
    assert.equal((await b.get([...p, "k"])).value, "bob's");
    // Each versionstamp is its own database's counter: alice's four
    // writes did not advance bob's.
    assert.equal(BigInt("0x" + rb.versionstamp.slice(0, 16)), BigInt(bobBefore || "0") + 1n);
    assert.ok(BigInt("0x" + ra.versionstamp.slice(0, 16)) > 0n);
  } finally {
    a.close();
    b.close();
  }
});

plainTest("concurrent writes to three databases, one open handle per worker: every write lands once", async () => {
  const p = uniquePrefix("spread");
  const kvs = await Promise.all([
    openDeno("alice", T.aliceRW),
    openDeno("bob", T.bobRW),
    openDeno("carol", T.carolRW),
  ]);
  try {
    // Many writes in flight at once: the multiplexed loop reads several
    // per turn and groups them by database, while the others of the same
    // turn open (and so close) other handles.
    const N = 40;
    const results = await Promise.all(
      Array.from({ length: 3 * N }, (_, i) => kvs[i % 3].set([...p, i], `v${i}`)),
    );
    results.forEach((r, i) => assert.ok(r.ok, `write ${i} failed`));
    for (let d = 0; d < 3; d++) {
      const stamps = results.filter((_, i) => i % 3 === d).map((r) => r.versionstamp);
      assert.equal(new Set(stamps).size, N, `database ${d}: versionstamps not distinct`);
      const got = await Array.fromAsync(kvs[d].list<string>({ prefix: p }));
      assert.deepEqual(
        got.map((e) => e.value).sort(),
        Array.from({ length: N }, (_, j) => `v${3 * j + d}`).sort(),
        `database ${d} holds other writes than its own`,
      );
    }
  } finally {
    for (const kv of kvs) kv.close();
  }
});

plainTest("every token against every database: only its own opens it (401 otherwise)", async () => {
  const own: Record<string, string[]> = {
    alice: [T.aliceRW, T.aliceRO],
    bob: [T.bobRW],
    carol: [T.carolRW],
  };
  const all = [T.aliceRW, T.aliceRO, T.bobRW, T.carolRW, "no-such-token-anywhere-0"];
  for (const db of Object.keys(own)) {
    for (const tok of all) {
      const r = await meta(db, tok);
      if (own[db].includes(tok)) {
        assert.equal(r.status, 200, `${db} refused its own token: ${r.text}`);
      } else {
        assert.equal(r.status, 401, `${db} with a foreign token: ${r.status} ${r.text}`);
        assert.equal(r.text, "Invalid access token.\n");
      }
    }
  }
  // The data path too: bob's token with alice's id and endpoint.
  const a = await client("alice", T.aliceRW);
  const key = encodeKey([...uniquePrefix("cross"), "k"]);
  const r = await a.post("snapshot_read", new Uint8Array(0), { authorization: `Bearer ${T.bobRW}` });
  assert.equal(r.status, 401, `bob's token on alice's data path: ${r.status} ${r.text}`);
  const w = await a.post("atomic_write", encAtomicWrite(setBytes(key, new Uint8Array([1]))), {
    authorization: `Bearer ${T.carolRW}`,
  });
  assert.equal(w.status, 401, `carol's token writing to alice: ${w.status} ${w.text}`);
  assert.equal(await a.get(key), null, "a refused write changed alice");
  // alice's id on bob's endpoint: the id is checked against the routed database
  const b = await client("bob", T.bobRW);
  const wrongId = await b.post("snapshot_read", new Uint8Array(0), { "x-denokv-database-id": a.meta.databaseId });
  assert.equal(wrongId.status, 400, `alice's id at bob's endpoint: ${wrongId.status} ${wrongId.text}`);
  // The Deno CLI with a foreign token fails at open (no hang, no data),
  // showing the server's reason.
  let outcome = "opened";
  try {
    (await openDeno("bob", T.aliceRW)).close();
  } catch (e) {
    outcome = String(e);
  }
  assert.match(outcome, /401.*Invalid access token/s, `Deno CLI with alice's token on bob: ${outcome}`);
});

plainTest("a read-only token reads and watches, and its writes get 403 with the reason", async () => {
  const p = uniquePrefix("ro");
  const rw = await openDeno("alice", T.aliceRW);
  const ro = await openDeno("alice", T.aliceRO);
  try {
    const w = await rw.set([...p, "k"], "v1");
    const got = await ro.get([...p, "k"]);
    assert.equal(got.value, "v1");
    assert.equal(got.versionstamp, w.versionstamp);
    // watch: the current value, then a change made with the other token
    const stream = ro.watch([[...p, "k"]]);
    const reader = stream.getReader();
    try {
      const first = await withTimeout(reader.read(), DELIVERY_MS, "first watch frame");
      assert.equal(first.value?.[0].value, "v1");
      await rw.set([...p, "k"], "v2");
      for (;;) {
        const next = await withTimeout(reader.read(), DELIVERY_MS, "watch frame after the change");
        if (next.value?.[0].value === "v2") break;
      }
    } finally {
      await reader.cancel();
    }
    const before = await version(alice.path);
    let outcome = "succeeded";
    try {
      await withTimeout(ro.set([...p, "k"], "from ro"), 20_000, "set with a read-only token");
    } catch (e) {
      outcome = String(e);
    }
    assert.match(outcome, /403.*read-only/s, `Deno CLI write with a read-only token: ${outcome}`);
    assert.equal(await version(alice.path), before, "a refused write moved the data version");
    assert.equal((await rw.get([...p, "k"])).value, "v2");
  } finally {
    rw.close();
    ro.close();
  }
  // raw: the exact status and text, also for a queue lease
  const c = await client("alice", T.aliceRO);
  const r = await c.post("atomic_write", encAtomicWrite(setBytes(encodeKey([...p, "raw"]), new Uint8Array([1]))));
  assert.equal(r.status, 403);
  assert.match(r.contentType, /^text\/plain\b/i);
  assert.equal(r.text, REFUSED_RO);
  const q = await c.post("queue/lease", JSON.stringify({ max: 1, wait_ms: 0 }), { "content-type": "application/json" });
  assert.equal(q.status, 403, `queue lease with a read-only token: ${q.status} ${q.text}`);
  assert.equal(q.text, REFUSED_RO);
});

plainTest("an expired token is refused (401) at the metadata exchange and on the data path", async () => {
  const r = await meta("alice", T.aliceOld);
  assert.equal(r.status, 401);
  assert.equal(r.text, "The access token has expired.\n");
  const c = await client("alice", T.aliceRW);
  const d = await c.post("snapshot_read", new Uint8Array(0), { authorization: `Bearer ${T.aliceOld}` });
  assert.equal(d.status, 401);
  assert.equal(d.text, "The access token has expired.\n");
});

plainTest("a watch on alice is not woken by bob's writes (counted, not timed)", async () => {
  const p = uniquePrefix("iso");
  const a = await openDeno("alice", T.aliceRW);
  const b = await openDeno("bob", T.bobRW);
  try {
    await a.set([...p, "w"], 0);
    const reader = a.watch([[...p, "w"]]).getReader();
    try {
      await withTimeout(reader.read(), DELIVERY_MS, "first frame");
      // The same key in bob: the same change slot, were the slots shared.
      const before = await watchReads();
      for (let i = 0; i < 20; i++) await b.set([...p, "w"], i);
      // Room for any wake-up to be acted on; the assertion is a count.
      await sleep(300);
      assert.equal(await watchReads(), before, "bob's writes made alice's watch read again");
      await a.set([...p, "w"], 1);
      for (;;) {
        const f = await withTimeout(reader.read(), DELIVERY_MS, "frame after alice's write");
        if (f.value?.[0].value === 1) break;
      }
      assert.ok(await watchReads() > before, "the counter did not see alice's own change");
    } finally {
      await reader.cancel();
    }
  } finally {
    a.close();
    b.close();
  }
});

plainTest("max-watches: bob's third open watch is refused with 429 and its reason", async () => {
  const c = await client("bob", T.bobRW);
  const key = encodeKey([...uniquePrefix("maxw"), "k"]);
  const open: { res: Response; ac: AbortController }[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const w = await openWatch(c, key);
      open.push(w);
      assert.equal(w.res.status, 200);
    }
    const third = await c.post("watch", encWatch([key]));
    assert.equal(third.status, 429, `third watch: ${third.status} ${third.text}`);
    assert.equal(third.text, "This database has too many open watches.\n");
    // alice's watches are not bob's
    const a = await client("alice", T.aliceRW);
    const wa = await openWatch(a, key);
    assert.equal(wa.res.status, 200, "bob's limit refused a watch on alice");
    wa.ac.abort();
    // one ends: a new one is taken again (once the server has seen it end)
    open.pop()!.ac.abort();
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      const w = await openWatch(c, key);
      status = w.res.status;
      if (status === 200) open.push(w);
      else {
        await w.res.body?.cancel();
        await sleep(100);
      }
    }
    assert.equal(status, 200, "no watch taken after one of two ended");
  } finally {
    for (const w of open) w.ac.abort();
  }
});

plainTest("max-size: a write past it is 507 with its reason, nothing written, reads go on", async () => {
  const c = await client("bob", T.bobRW);
  const p = uniquePrefix("size");
  const blob = crypto.getRandomValues(new Uint8Array(60_000));
  let refused: RawResponse | null = null;
  let i = 0;
  for (; i < 40 && refused === null; i++) {
    const r = await c.post("atomic_write", encAtomicWrite(setBytes(encodeKey([...p, i]), blob)));
    if (r.status !== 200) refused = r;
  }
  assert.ok(refused, "256K held 40 writes of 60 kB");
  assert.equal(refused.status, 507, `${refused.status} ${refused.text}`);
  assert.match(refused.contentType, /^text\/plain\b/i);
  assert.equal(refused.text, "The write was not applied: database size limit reached (reads still work).\n");
  const last = i - 1;
  const dv = await version(bob.path);
  const again = await c.post("atomic_write", encAtomicWrite(setBytes(encodeKey([...p, "more"]), blob)));
  assert.equal(again.status, 507);
  assert.equal(await version(bob.path), dv, "a refused write moved the data version");
  assert.equal(await c.get(encodeKey([...p, last])), null, "the refused write is there");
  const first = await c.get(encodeKey([...p, 0]));
  assert.ok(first, "an earlier entry is no longer readable");
  assert.equal(first.value.length, blob.length);
  // Deleting makes room again (free pages are reused).
  const del = await c.write({ mutations: [{ key: encodeKey([...p, 0]), type: MutationType.DELETE }] });
  assert.equal(del.status, AtomicWriteStatus.SUCCESS);
  const small = await c.write(setBytes(encodeKey([...p, "small"]), new Uint8Array([1])));
  assert.equal(small.status, AtomicWriteStatus.SUCCESS);
  // alice has no limit
  const a = await client("alice", T.aliceRW);
  assert.equal((await a.write(setBytes(encodeKey([...p, "a"]), blob))).status, AtomicWriteStatus.SUCCESS);
});

plainTest("a file made by the Deno CLI's local KV is served, and what is written is read back by it", async () => {
  const kv = await openDeno("carol", T.carolRW);
  try {
    assert.equal((await kv.get(["local", "greeting"])).value, "from the Deno CLI");
    assert.ok((await kv.set(["remote", "reply"], "from the server")).ok);
  } finally {
    kv.close();
  }
  const code = `const kv = await Deno.openKv(${JSON.stringify(carol.path)});
console.log(JSON.stringify((await kv.get(["remote", "reply"])).value));
kv.close();`;
  const r = await run([Deno.execPath(), "eval", "--unstable-kv", code]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), JSON.stringify("from the server"));
});

plainTest("the housekeeper visits every database: an expired entry in bob is deleted from its file", async () => {
  const b = await openDeno("bob", T.bobRW);
  try {
    assert.ok((await b.set([...uniquePrefix("hk"), "gone"], 1, { expireIn: 1 })).ok);
  } finally {
    b.close();
  }
  const expiring = () => sqlite(bob.path, "select count(*) from kv where expiration_ms >= 0");
  let left = await expiring();
  for (let i = 0; i < 150 && left !== "0"; i++) {
    await sleep(100);
    left = await expiring();
  }
  assert.equal(left, "0", "the expired entry is still in bob's file after 15 s");
});

plainTest("the Host header picks between databases on the same mount", async () => {
  // curl: the Host header is the client's to set
  const ask = async (host: string | null, token: string) => {
    const args = ["curl", "-sS", "-m", "20", "-X", "POST", "-H", `Authorization: Bearer ${token}`, "-H",
      "Content-Type: application/json", "--data", '{"supportedVersions":[2,3]}', "-w", "\n%{http_code}"];
    if (host) args.push("-H", `Host: ${host}`);
    const r = await run([...args, h1("shared")]);
    assert.equal(r.code, 0, r.stderr);
    const i = r.stdout.lastIndexOf("\n");
    return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
  };
  const e = await ask("eve.example", T.eveRW);
  assert.equal(e.status, 200, e.body);
  const f = await ask(null, T.frankRW);
  assert.equal(f.status, 200, f.body);
  assert.notEqual(JSON.parse(e.body).databaseId, JSON.parse(f.body).databaseId);
  // each token only where its database answers
  assert.equal((await ask("eve.example", T.frankRW)).status, 401);
  assert.equal((await ask("EVE.example:8443", T.eveRW)).status, 200, "Host is matched without case and port");
  assert.equal((await ask("other.example", T.eveRW)).status, 401, "eve answered for another host");
});

plainTest("unknown mounts and paths under a mount are 404 with a reason; the worker goes on", async () => {
  for (const path of ["nobody/", "alice/extra", "alice/v2/nonsense", "alicex/", ""]) {
    const r = await metadataExchange(`${H1BASE}${path}`, { token: T.aliceRW });
    assert.equal(r.status, 404, `${path}: ${r.status} ${r.text}`);
    assert.equal(r.text, NO_MOUNT);
  }
  const c = await client("alice", T.aliceRW);
  const bad = await c.post("v3/snapshot_read", new Uint8Array(0));
  assert.equal(bad.status, 404);
  assert.equal(bad.text, NO_MOUNT);
  const get = await rawFetch(h1("alice"), { method: "GET" });
  assert.equal(get.status, 405);
  assert.match(get.text, /^[^\n]+\n$/);
  assert.equal((await meta("alice", T.aliceRW)).status, 200);
});

plainTest("SIGHUP adds dave, removes carol and changes alice's tokens under load, failing nothing else", async () => {
  const a = await client("alice", T.aliceRW);
  const b = await client("bob", T.bobRW);
  const carolC = await client("carol", T.carolRW);
  const p = uniquePrefix("hup");
  // A watch on carol, open across the reload: it ends when its worker retires.
  const cw = await openWatch(carolC, encodeKey([...p, "w"]));
  assert.equal(cw.res.status, 200);
  const cwEnded = (async () => {
    const reader = cw.res.body!.getReader();
    try {
      for (;;) if ((await reader.read()).done) return "ended";
    } catch (e) {
      return `ended with ${e}`;
    }
  })();

  let stop = false;
  const failures: string[] = [];
  let done = 0;
  const load = async (c: RawClient, who: string) => {
    for (let i = 0; !stop; i++) {
      try {
        const key = encodeKey([...p, who, i]);
        const w = await c.post("atomic_write", encAtomicWrite(setBytes(key, new Uint8Array([i & 255]))));
        if (w.status !== 200) failures.push(`${who} write ${i}: ${w.status} ${w.text}`);
        const r = await c.post("snapshot_read", new Uint8Array(0));
        if (r.status !== 200) failures.push(`${who} read ${i}: ${r.status} ${r.text}`);
        const m = await meta(who, who === "alice" ? T.aliceRW : T.bobRW);
        if (m.status !== 200) failures.push(`${who} metadata ${i}: ${m.status} ${m.text}`);
        done++;
      } catch (e) {
        failures.push(`${who} ${i}: ${e}`);
      }
    }
  };
  const loads = [load(a, "alice"), load(a, "alice"), load(b, "bob"), load(b, "bob")];
  try {
    while (done < 20) await sleep(20);
    const aliceNew = { ...alice, tokens: [`read-write ${T.aliceRW}`] }; // the read-only token goes
    await Deno.writeTextFile(CONFIG, configText([aliceNew, bob, dave]));
    Deno.kill(MASTER_PID, "SIGHUP");
    let daveUp = false, carolGone = false, roGone = false;
    for (let i = 0; i < 200 && !(daveUp && carolGone && roGone); i++) {
      daveUp ||= (await meta("dave", T.daveRW)).status === 200;
      const c = await meta("carol", T.carolRW);
      carolGone ||= c.status === 404 && c.text === NO_MOUNT;
      roGone ||= (await meta("alice", T.aliceRO)).status === 401;
      if (!(daveUp && carolGone && roGone)) await sleep(100);
    }
    assert.ok(daveUp, "dave does not answer after the reload");
    assert.ok(carolGone, "carol still answers after the reload");
    assert.ok(roGone, "alice's removed token still opens it");
    const mark = done;
    while (done < mark + 20) await sleep(20);
  } finally {
    stop = true;
    await Promise.all(loads);
  }
  assert.deepEqual(failures.slice(0, 5), [], `${failures.length} requests to alice or bob failed across the reload`);
  // carol's data path is gone too, and its open watch ended
  const cr = await carolC.post("snapshot_read", new Uint8Array(0));
  assert.equal(cr.status, 404);
  assert.match(await withTimeout(cwEnded, 30_000, "carol's watch ending after the reload"), /^ended/);
  // dave works for the Deno CLI
  const kv = await openDeno("dave", T.daveRW);
  try {
    assert.ok((await kv.set(["d"], "dave's")).ok);
    assert.equal((await kv.get(["d"])).value, "dave's");
  } finally {
    kv.close();
  }
});

// A second instance, spoken to over FastCGI directly: one worker that may
// keep one database open, so that a write to one database and a request
// to the other, ready in the same turn, close the write's handle before
// the write commits (it must be taken again, not used after it closed).
plainTest("max-open-databases = 1: writes to two databases in one turn all commit, the worker stays up", async () => {
  const name = "hostlru";
  const ids: Record<string, string> = {
    x: "11111111-1111-8111-8111-111111111111",
    y: "22222222-2222-8222-8222-222222222222",
  };
  const tok = (db: string) => `${name}-${db}-token-0123456789`;
  const lines = ["workers = 1", "max-open-databases = 1"];
  for (const db of Object.keys(ids)) {
    lines.push("", `[database ${db}]`, `path = ${DIR}/${name}-${db}.sqlite`, `mount = /${name}/${db}`);
    lines.push(`id = ${ids[db]}`, `token = read-write ${tok(db)}`);
  }
  await Deno.writeTextFile(`${DIR}/${name}.ini`, lines.join("\n") + "\n");
  const inst = await startServer(name, { CONFIG: `${DIR}/${name}.ini`, TOKEN: tok("x"), READY_PATH: `/${name}/x/` });
  const failures: string[] = [];
  try {
    for (let round = 0; round < 40; round++) {
      const conns = await Promise.all([0, 1, 2, 3].map(() => FcgiConn.open(inst.SOCKET)));
      try {
        await Promise.all(conns.map(async (c, k) => {
          const db = k % 2 === 0 ? "x" : "y";
          const body = encAtomicWrite(setBytes(encodeKey(["lru", round, k]), new Uint8Array([k])));
          await c.begin({
            REQUEST_METHOD: "POST",
            REQUEST_URI: `/${name}/${db}/v2/atomic_write`,
            CONTENT_TYPE: "application/x-protobuf",
            CONTENT_LENGTH: String(body.length),
            HTTP_AUTHORIZATION: `Bearer ${tok(db)}`,
            HTTP_X_DENOKV_VERSION: "2",
            HTTP_X_DENOKV_DATABASE_ID: ids[db],
          });
          await c.stdin(body, true);
        }));
        for (const [k, o] of (await Promise.all(conns.map((c) => c.outcome(30_000)))).entries()) {
          if (o.kind !== "response" || o.response.status !== 200) {
            failures.push(`round ${round} write ${k}: ${o.kind === "response" ? o.response.status : o.kind}`);
          }
        }
      } finally {
        conns.forEach((c) => c.close());
      }
      if (failures.length > 0) break;
    }
    assert.deepEqual(failures, [], "writes lost with one open database");
    const rows = Number(await sqlite(`${DIR}/${name}-x.sqlite`, "select count(*) from kv"));
    assert.equal(rows, 80, "every write to x is in its file");
  } finally {
    await run([STACK, "stop-server", RUN_DIR, name]);
  }
});

// An instance of n databases d0..d{n-1} at /NAME/dI, each with its own
// pinned id and token, spoken to over FastCGI directly; nofile: the
// open-files limit it starts with.
async function manyInstance(name: string, n: number, extra: string[], nofile?: number) {
  const id = (i: number) => `33333333-3333-8333-8333-${String(i).padStart(12, "0")}`;
  const tok = (i: number) => `${name}-${i}-token-0123456789`;
  const lines = [...extra];
  for (let i = 0; i < n; i++) {
    lines.push("", `[database d${i}]`, `path = ${DIR}/${name}-${i}.sqlite`, `mount = /${name}/d${i}`);
    lines.push(`id = ${id(i)}`, `token = read-write ${tok(i)}`);
  }
  await Deno.writeTextFile(`${DIR}/${name}.ini`, lines.join("\n") + "\n");
  const env = { CONFIG: `${DIR}/${name}.ini`, TOKEN: tok(0), READY_PATH: `/${name}/d0/` };
  const inst = nofile === undefined ? await startServer(name, env) : await (async () => {
    const r = await run(["bash", "-c", `ulimit -n ${nofile} && exec "$0" "$@"`, STACK, "start-server", RUN_DIR, name], { env });
    if (r.code !== 0) throw new Error(`start-server ${name}: ${r.stdout}\n${r.stderr}`);
    return parseEnvFile(`${RUN_DIR}/${name}.env`);
  })();
  // Sends a request; the first record's status line (or "nothing" within 10 s).
  const send = async (i: number, ep: string, body: Uint8Array): Promise<[FcgiConn, string]> => {
    const c = await FcgiConn.open(inst.SOCKET);
    await c.begin({
      REQUEST_METHOD: "POST",
      REQUEST_URI: `/${name}/d${i}/v2/${ep}`,
      CONTENT_TYPE: "application/x-protobuf",
      CONTENT_LENGTH: String(body.length),
      HTTP_AUTHORIZATION: `Bearer ${tok(i)}`,
      HTTP_X_DENOKV_VERSION: "3",
      HTTP_X_DENOKV_DATABASE_ID: id(i),
    });
    await c.stdin(body, true);
    const rec = await c.readRecord(10_000);
    return [c, rec === null ? "nothing" : new TextDecoder().decode(rec.content).split("\r\n")[0]];
  };
  const stop = async () => void await run([STACK, "stop-server", RUN_DIR, name]);
  return { inst, id, tok, send, stop };
}

// Watches on more databases than a worker used to run hubs for (32): with
// one worker, a watch on each of 40 databases is served (its descriptors
// allow it), and a write to the last one reaches its watch.
plainTest("one worker serves watches on 40 databases at once", async () => {
  const n = 40;
  const m = await manyInstance("hostmany", n, ["workers = 1"]);
  const key = encodeKey(["many"]);
  const conns: FcgiConn[] = [];
  try {
    const refused: string[] = [];
    for (let i = 0; i < n; i++) {
      const [c, status] = await m.send(i, "watch", encWatch([key]));
      conns.push(c);
      if (!status.startsWith("Status: 200")) refused.push(`d${i}: ${status}`);
    }
    assert.deepEqual(refused, [], "watches refused");
    // The last database's watch sees its write.
    const MARK = "hostmany-write-marker";
    const [wc, ws] = await m.send(n - 1, "atomic_write", encAtomicWrite(setBytes(key, new TextEncoder().encode(MARK))));
    wc.close();
    assert.equal(ws, "Status: 200 OK", `write to d${n - 1}`);
    let seen = false;
    for (let k = 0; k < 10 && !seen; k++) {
      const rec = await conns[n - 1].readRecord(DELIVERY_MS);
      if (rec === null) break;
      seen = new TextDecoder().decode(rec.content).includes(MARK);
    }
    assert.ok(seen, "the write to the last database did not reach its watch");
  } finally {
    conns.forEach((c) => c.close());
    await m.stop();
  }
});

// The descriptor budget of watches counts the open databases' descriptors
// too: with 40 databases open under 256 descriptors, watches past the
// budget get 503 (not an accept failing with EMFILE, which leaves them and
// every later request unanswered), and requests go on being served.
plainTest("with 40 databases open and 256 descriptors, watches past the budget get 503 and requests go on", async () => {
  const n = 40;
  const m = await manyInstance("hostfd", n, ["workers = 1"], 256);
  const conns: FcgiConn[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const [c, status] = await m.send(i, "snapshot_read", new Uint8Array(0));
      c.close();
      assert.notEqual(status, "nothing", `a request to d${i} unanswered`);
    }
    let last = "";
    for (let k = 0; k < 256 && last === ""; k++) {
      const [c, status] = await m.send(0, "watch", encWatch([encodeKey(["fd"])]));
      conns.push(c);
      if (!status.startsWith("Status: 200")) last = status;
    }
    assert.equal(last, "Status: 503 Service Unavailable", `after ${conns.length} watches`);
    const [c, status] = await m.send(1, "atomic_write", encAtomicWrite(setBytes(encodeKey(["fd"]), new Uint8Array([1]))));
    c.close();
    assert.equal(status, "Status: 200 OK", "a write with the watch budget spent");
  } finally {
    conns.forEach((c) => c.close());
    await m.stop();
  }
});

plainTest("the instance stops cleanly (SIGTERM)", async () => {
  const r = await run([STACK, "stop-server", RUN_DIR, NAME]);
  assert.equal(r.code, 0, `stop-server: ${r.stderr.trim()}`);
});
