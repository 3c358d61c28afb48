// The operator's view of a running service, through nginx: the health
// endpoint, the Prometheus metrics endpoint (checked by promtool, counters
// moved by exactly what a scripted load did, refused without its token)
// and the status verb over the FastCGI socket.
//
// It runs its own instance "ops" (scripts/stack.sh start-server) on its
// own database, so that nothing but this suite moves its counters.
// It kills or replaces server processes on purpose, so the crash
// tripwire (tripwire_lib.sh) counts only crash signals and sanitizer reports.
// tripwire-allow: process-model

import {
  assert,
  encAtomicWrite,
  encodeKey,
  H1_URL,
  MutationType,
  RawClient,
  plainTest,
  rawFetch,
  run,
  RUN_DIR,
  SRCDIR,
  startServer,
  stopServer,
  TOKEN,
  ValueEncoding,
  withTimeout,
} from "./helpers.ts";
import { openQueue } from "../../clients/queue.mjs";

const BIN = Deno.env.get("DENOKV_FCGI_BIN") ?? `${SRCDIR}/src/denokv-fcgi`;
const NAME = "ops";
const METRICS_TOKEN = "metrics-token-for-the-suite";
const DB = `${RUN_DIR}/ops/ops.sqlite`;
Deno.mkdirSync(`${RUN_DIR}/ops`, { recursive: true });

let started: Promise<Record<string, string>> | undefined;
function instance(): Promise<Record<string, string>> {
  started ??= startServer(NAME, {
    DB,
    SERVER_ARGS: `--workers 2 --health-path /${NAME}/healthz --metrics-path /${NAME}/metrics` +
      ` --metrics-token ${METRICS_TOKEN}`,
  });
  return started;
}

function promtool(): string {
  const fromEnv = Deno.env.get("PROMTOOL");
  if (fromEnv) return fromEnv;
  for (const p of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      Deno.statSync(`${p}/promtool`);
      return `${p}/promtool`;
    } catch { /* next */ }
  }
  return `${SRCDIR}/tools/bin/promtool`;
}

async function scrape(base: string, token: string | null = METRICS_TOKEN) {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return await rawFetch(`${base}metrics`, { headers });
}

// "name{labels}" -> value, for every sample line.
function samples(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

function delta(a: Map<string, number>, b: Map<string, number>, name: string): number {
  return (b.get(name) ?? 0) - (a.get(name) ?? 0);
}

plainTest("health: 200 ok from a serving instance, 405 for other methods, nothing where it is not configured", async () => {
  const env = await instance();
  let r = await rawFetch(`${env.H1_URL}healthz`, {});
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, "ok\n");
  r = await rawFetch(`${env.H1_URL}healthz`, { method: "HEAD" });
  assert.equal(r.status, 200);
  r = await rawFetch(`${env.H1_URL}healthz`, { method: "POST", body: "x" });
  assert.equal(r.status, 405);
  assert.equal(r.text, "Use GET.\n");
  // The main instance has no health path: the path is nothing special there
  // (a GET of a KV Connect base path is refused).
  r = await rawFetch(`${H1_URL}healthz`, {});
  assert.notEqual(r.status, 200);
  assert.notEqual(r.text, "ok\n");
});

async function availBytes(dir: string): Promise<number> {
  const r = await run(["df", "-B1", "--output=avail", dir]);
  return Number(r.stdout.trim().split("\n").pop());
}

plainTest("health: 503 'disk full' while the database's file system is full, 200 once space is freed; the fault is counted", async () => {
  assert.equal(Deno.uid(), 0, "this test mounts a tmpfs and must run as root (CI does)");
  const mnt = `${RUN_DIR}/ops/full-fs`;
  const name = "opsfull";
  Deno.mkdirSync(mnt, { recursive: true });
  let r = await run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mnt]);
  assert.equal(r.code, 0, r.stderr);
  let started = false;
  try {
    const env = await startServer(name, {
      DB: `${mnt}/kv.sqlite`,
      SERVER_ARGS: `--workers 2 --health-path /${name}/healthz --metrics-path /${name}/metrics --metrics-token ${METRICS_TOKEN}`,
    });
    started = true;
    const health = () => rawFetch(`${env.H1_URL}healthz`, {});
    let h = await health();
    assert.equal(h.status, 200, h.text);
    // Fill all but about 256 KiB: less than the largest write needs.
    const filler = `${mnt}/filler`;
    const room = await availBytes(mnt);
    r = await run(["dd", "if=/dev/zero", `of=${filler}`, "bs=64K",
      `count=${Math.floor((room - 256 * 1024) / 65536)}`, "status=none"]);
    assert.equal(r.code, 0, r.stderr);
    h = await health();
    assert.equal(h.status, 503, h.text);
    assert.match(h.text, /^disk full: \d+ bytes free where the database is\n$/);
    assert.match(h.contentType, /^text\/plain/);
    // Full to the last block: a write is refused (507), and counted.
    await run(["dd", "if=/dev/zero", `of=${filler}-rest`, "bs=4K", "status=none"]);
    const c = await RawClient.open(env.H1_URL);
    const w = await c.post("atomic_write", encAtomicWrite({
      mutations: [{ key: encodeKey(["full", 1]), type: MutationType.SET, value: { data: new Uint8Array(60_000).fill(7), encoding: ValueEncoding.BYTES } }],
    }));
    assert.equal(w.status, 507, w.text);
    const m = samples((await scrape(env.H1_URL)).text);
    assert.ok(m.get('denokv_storage_faults_total{kind="disk_full"}')! >= 1, "the full disk is counted");
    assert.equal(m.get('denokv_requests_total{endpoint="atomic_write",code="507"}'), 1);
    Deno.removeSync(`${filler}-rest`);
    Deno.removeSync(filler);
    h = await health();
    assert.equal(h.status, 200, `after freeing space: ${h.status} ${h.text}`);
    assert.equal(h.text, "ok\n");
    await stopServer(name);
    started = false;
  } finally {
    if (started) await stopServer(name).catch(() => {});
    await run(["umount", "-l", mnt]);
  }
});

plainTest("health: 503 'database unreadable' when the kv table is damaged; check names it too", async () => {
  const name = "opsbad";
  const db = `${RUN_DIR}/ops/damaged.sqlite`;
  let env = await startServer(name, { DB: db, SERVER_ARGS: `--workers 2 --health-path /${name}/healthz` });
  let started = true;
  try {
    const kv = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open");
    // Enough rows that the kv table's root is a page of pointers.
    for (let i = 0; i < 40; i++) await kv.set(["bad", i], "x".repeat(3000));
    kv.close();
    assert.equal((await rawFetch(`${env.H1_URL}healthz`, {})).status, 200);
    await stopServer(name);
    started = false;
    const sql = (q: string) => run(["sqlite3", db, q]).then((r) => Number(r.stdout.trim()));
    const root = await sql("select rootpage from sqlite_schema where name = 'kv'");
    const pageSize = await sql("pragma page_size");
    assert.ok(root > 1 && pageSize >= 512);
    const f = await Deno.open(db, { write: true });
    await f.seek((root - 1) * pageSize, Deno.SeekMode.Start);
    await f.write(new Uint8Array(pageSize).fill(0xa5));
    f.close();
    env = await startServer(name, { DB: db, SERVER_ARGS: `--workers 2 --health-path /${name}/healthz` });
    started = true;
    const h = await rawFetch(`${env.H1_URL}healthz`, {});
    assert.equal(h.status, 503, h.text);
    assert.match(h.text, /^database unreadable: The database file is damaged/);
    const c = await run([BIN, "--sqlite-path", db, "check"]);
    assert.equal(c.code, 1, c.stdout);
    assert.match(c.stdout, /^problem: /m);
  } finally {
    if (started) await stopServer(name).catch(() => {});
  }
});

plainTest("metrics: refused without its token, even with the data token", async () => {
  const env = await instance();
  for (const t of [null, "wrong-token-wrong-token", TOKEN]) {
    const r = await scrape(env.H1_URL, t);
    assert.equal(r.status, 401, `token ${t}: ${r.status} ${r.text}`);
    assert.ok(!r.text.includes("denokv_"), "no metrics in a refusal");
  }
  const r = await rawFetch(`${env.H1_URL}metrics`, {
    method: "POST",
    headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    body: "",
  });
  assert.equal(r.status, 405);
});

plainTest("metrics: promtool accepts the exposition", async () => {
  const env = await instance();
  const r = await scrape(env.H1_URL);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.contentType, "text/plain; version=0.0.4; charset=utf-8");
  const c = await run([promtool(), "check", "metrics"], { stdin: r.text });
  assert.equal(c.code, 0, `promtool check metrics:\n${c.stdout}${c.stderr}`);
  for (const name of ["denokv_commits_total", "denokv_write_queue_wait_seconds_count", "denokv_write_batch_size_count", "denokv_watch_streams",
    "denokv_database_bytes", "denokv_wal_bytes", "denokv_workers"]) {
    assert.match(r.text, new RegExp(`^${name} \\d`, "m"), `${name} missing`);
  }
  assert.equal(samples(r.text).get("denokv_workers"), 2);
  assert.ok(samples(r.text).get("denokv_database_bytes")! > 0);
});

plainTest("metrics: the queue gauges agree with queue stats on the same file", async () => {
  const env = await instance();
  const q = await openQueue(env.H1_URL, { accessToken: env.TOKEN ?? TOKEN });
  for (let i = 0; i < 2; i++) await q.enqueue({ i }, { delay: 600_000 });
  q.close();
  const r = await scrape(env.H1_URL);
  assert.equal(r.status, 200, r.text);
  const m = samples(r.text);
  const st = await run([BIN, "--sqlite-path", DB, "queue", "stats"]);
  assert.equal(st.code, 0, st.stderr);
  const s = Object.fromEntries(st.stdout.trim().split("\n").map((l) => l.split(" ")));
  assert.ok(Number(s.delayed) >= 2, st.stdout);
  for (const [metric, field] of [["ready", "ready"], ["delayed", "delayed"], ["running", "running"],
    ["dead_lettered_total", "dead_lettered"]]) {
    assert.equal(m.get(`denokv_queue_${metric}`), Number(s[field]), `denokv_queue_${metric} vs ${st.stdout}`);
  }
});

plainTest("metrics: counters move by exactly what a scripted load did", async () => {
  const env = await instance();
  const kv = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open");
  try {
    await kv.set(["m", "warm"], 0); // the client's metadata exchanges happen here
    const a = samples((await scrape(env.H1_URL)).text);

    let vs = "";
    for (let i = 0; i < 7; i++) vs = (await kv.set(["m", i], i)).versionstamp;
    for (let i = 0; i < 3; i++) {
      const r = await kv.atomic().check({ key: ["m", 0], versionstamp: "00000000000000000001" }).set(["m", "x"], i)
        .commit();
      assert.equal(r.ok, false);
    }
    for (let i = 0; i < 5; i++) assert.equal((await kv.get(["m", i])).value, i);
    // One refused data-path call.
    const bad = await rawFetch(`${env.H1_URL}v2/atomic_write`, {
      method: "POST",
      headers: { authorization: "Bearer nope-nope-nope", "content-type": "application/x-protobuf", "x-denokv-version": "3" },
      body: new Uint8Array(),
    });
    assert.equal(bad.status, 401);
    // A watch: the stream is counted while open, and its frames.
    const stream = kv.watch([["m", "w"]]);
    const reader = stream.getReader();
    await withTimeout(reader.read(), 10_000, "first watch frame");
    await kv.set(["m", "w"], 1);
    const next = await withTimeout(reader.read(), 10_000, "second watch frame");
    assert.equal((next.value as Deno.KvEntryMaybe<unknown>[])[0].value, 1);

    const b = samples((await scrape(env.H1_URL)).text);
    assert.equal(delta(a, b, "denokv_commits_total"), 8, "7 sets and the watched key's");
    assert.equal(delta(a, b, "denokv_check_failures_total"), 3);
    assert.equal(delta(a, b, 'denokv_requests_total{endpoint="atomic_write",code="200"}'), 11);
    assert.equal(delta(a, b, 'denokv_requests_total{endpoint="atomic_write",code="401"}'), 1);
    assert.equal(delta(a, b, 'denokv_requests_total{endpoint="snapshot_read",code="200"}'), 5);
    assert.equal(delta(a, b, 'denokv_requests_total{endpoint="watch",code="200"}'), 1);
    assert.equal(delta(a, b, 'denokv_requests_total{endpoint="metrics",code="200"}'), 1, "the first scrape");
    assert.equal(delta(a, b, 'denokv_request_duration_seconds_count{endpoint="snapshot_read"}'), 5);
    assert.equal(delta(a, b, 'denokv_request_duration_seconds_bucket{endpoint="snapshot_read",le="+Inf"}'), 5);
    assert.ok(delta(a, b, "denokv_write_queue_wait_seconds_count") >= 11, "every write took a turn");
    // Each write waited for its answer before the next: batches of one.
    assert.equal(delta(a, b, "denokv_write_batch_size_count"), 11, "a batch per write");
    assert.equal(delta(a, b, "denokv_write_batch_size_sum"), 11, "11 writes in them");
    assert.equal(b.get("denokv_watch_streams"), 1);
    assert.equal(delta(a, b, "denokv_watch_deliveries_total"), 2, "the first frame and the change");

    await reader.cancel();
    // The hub sees the closed stream and the gauge drops.
    let open = 1;
    for (let i = 0; i < 100 && open !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      open = samples((await scrape(env.H1_URL)).text).get("denokv_watch_streams")!;
    }
    assert.equal(open, 0, "the closed watch is still counted after 10 s");
    void vs;
  } finally {
    kv.close();
  }
});

plainTest("metrics: counts survive a worker killed with SIGKILL; the restart is counted", async () => {
  const env = await instance();
  const kv = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open");
  try {
    for (let i = 0; i < 20; i++) await kv.set(["k9", i], i);
    const a = samples((await scrape(env.H1_URL)).text);
    assert.ok(a.get("denokv_commits_total")! >= 20);
    const kids = (await run(["pgrep", "-P", env.PID])).stdout.trim().split("\n").map(Number);
    assert.ok(kids.length >= 3, `workers and housekeeper of ${env.PID}: ${kids}`);
    // Kill a process that has served: both workers took requests by now,
    // so any of them will do (the housekeeper too counts as a restart).
    await run(["kill", "-KILL", String(kids[0])]);
    let b = a;
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      b = samples((await scrape(env.H1_URL)).text);
      if (b.get("denokv_restarts_total") === (a.get("denokv_restarts_total") ?? 0) + 1 && b.get("denokv_workers") === 2) break;
    }
    assert.equal(b.get("denokv_restarts_total"), (a.get("denokv_restarts_total") ?? 0) + 1, "the restart is counted");
    assert.equal(b.get("denokv_workers"), 2, "both workers run again");
    assert.equal(b.get("denokv_commits_total"), a.get("denokv_commits_total"), "no commit count was lost");
    assert.equal(
      b.get('denokv_requests_total{endpoint="atomic_write",code="200"}'),
      a.get('denokv_requests_total{endpoint="atomic_write",code="200"}'),
    );
    await kv.set(["k9", "after"], 1);
    const c = samples((await scrape(env.H1_URL)).text);
    assert.equal(c.get("denokv_commits_total"), a.get("denokv_commits_total")! + 1);
  } finally {
    kv.close();
  }
});

plainTest("status: the verb asks the service over its socket", async () => {
  const env = await instance();
  // The socket is enough: no database path needed.
  const r = await run([BIN, "--listen", `unix:${env.SOCKET}`, "status"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^pid: \d+$/m);
  assert.match(r.stdout, /^uptime: \d+ s$/m);
  assert.match(r.stdout, /^generation: 0$/m);
  assert.match(r.stdout, /^workers: 2 of 2 running$/m);
  assert.match(r.stdout, /^requests: \d+$/m);
  assert.match(r.stdout, /^write-queue waits: \d+, mean [\d.]+ ms, longest [\d.]+ ms$/m);
  assert.match(r.stdout, /^open watches: \d+$/m);
  assert.match(r.stdout, /^write-queue timeouts: \d+$/m);
  assert.match(r.stdout, /^storage faults: disk_full \d+ corrupt \d+ io \d+ not_writable \d+ other \d+$/m);
  assert.match(r.stdout, new RegExp(`^database: ${DB}, \\d+ bytes, WAL \\d+ bytes$`, "m"));
  // Nothing answers on a socket that is not there.
  const gone = await run([BIN, "--sqlite-path", DB, "--listen", `unix:${RUN_DIR}/ops/none.sock`, "status"]);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /cannot connect to unix:.*none\.sock.*is the service running\?/);
});

plainTest("status: the parameter cannot be sent through the web server", async () => {
  const env = await instance();
  // A header becomes HTTP_DENOKV_FCGI_STATUS, which is not the parameter.
  const r = await rawFetch(`${env.H1_URL}anything`, { headers: { "denokv-fcgi-status": "1" } });
  assert.notEqual(r.status, 200);
  assert.ok(!r.text.includes("workers:"));
});

plainTest("stop the ops instance", async () => {
  await instance();
  await stopServer(NAME);
});
