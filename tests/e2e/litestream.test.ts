// Continuous backup with Litestream (the release binary of the npm package
// @flydotio/litestream, Litestream 0.3.13) next to a serving instance with
// "checkpoint = external": a file replica taken under a write load from
// the Deno CLI, then the service, the database and Litestream's own files
// are destroyed; `litestream restore` rebuilds the file with every write
// the client saw acknowledged before the last sync interval, restore to a
// timestamp gives the state as of then, and the server's restore verb
// serves the rebuilt file again.
//
// Litestream: $LITESTREAM, else node_modules/@flydotio/litestream-<os>-<arch>,
// else litestream on PATH. Missing, the suite fails (it is not skipped).

import {
  assert,
  collect,
  plainTest,
  run,
  RUN_DIR,
  SRCDIR,
  startServer,
  stopServer,
  withTimeout,
} from "./helpers.ts";

const BIN = Deno.env.get("DENOKV_FCGI_BIN") ?? `${SRCDIR}/src/denokv-fcgi`;
const DIR = `${RUN_DIR}/litestream`;
const DB = `${DIR}/kv.sqlite`;
const REPLICA = `${DIR}/replica`;
const CONFIG = `${DIR}/litestream.yml`;
const SYNC_MS = 1000;
// A write acknowledged this long before the replicator stopped must be in
// the replica: one sync interval, and as much again for the copy itself.
const SAFE_MS = 2 * SYNC_MS;
const NAME = "ls";

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

function litestreamBin(): string {
  const env = Deno.env.get("LITESTREAM");
  if (env) return env;
  const arch = Deno.build.arch === "x86_64" ? "x64" : "arm64";
  const npm = `${SRCDIR}/node_modules/@flydotio/litestream-${Deno.build.os}-${arch}/litestream`;
  if (exists(npm)) return npm;
  for (const p of (Deno.env.get("PATH") ?? "").split(":")) {
    if (exists(`${p}/litestream`)) return `${p}/litestream`;
  }
  throw new Error(`no litestream binary: run npm install in ${SRCDIR} (devDependency @flydotio/litestream) or set LITESTREAM`);
}

interface Write {
  i: number;
  started: number;
  acked: number;
  versionstamp: string;
}

// The keys present, checked to be 0..n-1 with the values written: one
// writer wrote them in order, so any consistent state is a prefix.
async function restoredPrefix(path: string): Promise<number> {
  const kv = await Deno.openKv(path);
  try {
    const entries = await collect(kv.list<number>({ prefix: ["ls"] }));
    const got = entries.map((e) => e.key[1] as number).sort((a, b) => a - b);
    got.forEach((k, idx) => assert.equal(k, idx, `key ${idx} missing while ${k} is there: not a consistent state`));
    for (const e of entries) assert.equal(e.value, (e.key[1] as number) * 7);
    return got.length;
  } finally {
    kv.close();
  }
}

plainTest("Litestream: replica under load, everything lost, restored to the latest state and to a point in time", async () => {
  const litestream = litestreamBin();
  Deno.mkdirSync(DIR, { recursive: true });
  Deno.writeTextFileSync(
    CONFIG,
    `dbs:\n  - path: ${DB}\n    replicas:\n      - type: file\n        path: ${REPLICA}\n        sync-interval: ${SYNC_MS}ms\n`,
  );
  const env = await startServer(NAME, { DB, SERVER_ARGS: "--workers 2 --checkpoint external" });
  const kv = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open");
  const log = await Deno.open(`${DIR}/litestream.log`, { write: true, create: true });
  let replicator: Deno.ChildProcess | undefined;
  const writes: Write[] = [];
  let stopWriting = false;
  let writer: Promise<void> | undefined;
  let killedAt = 0, midpoint = 0;
  try {
    await kv.set(["warm"], 1);
    replicator = new Deno.Command(litestream, {
      args: ["replicate", "-config", CONFIG],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    replicator.stdout.pipeTo(log.writable, { preventClose: true });
    replicator.stderr.pipeTo((await Deno.open(`${DIR}/litestream.err`, { write: true, create: true })).writable);
    // Its first snapshot marks the start of the replica.
    for (let i = 0; i < 150 && !exists(`${REPLICA}/generations`); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(exists(`${REPLICA}/generations`), "litestream made no generation within 15 s");
    await new Promise((r) => setTimeout(r, SYNC_MS));

    writer = (async () => {
      for (let i = 0; !stopWriting; i++) {
        const started = Date.now();
        const r = await kv.set(["ls", i], i * 7);
        assert.ok(r.ok);
        writes.push({ i, started, acked: Date.now(), versionstamp: r.versionstamp });
      }
    })();
    await new Promise((r) => setTimeout(r, 3000));
    midpoint = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    // The replicator dies first, then the service and every file.
    replicator.kill("SIGKILL");
    killedAt = Date.now();
    await replicator.status;
    replicator = undefined;
    stopWriting = true;
    await writer;
  } finally {
    stopWriting = true;
    await writer?.catch(() => {});
    replicator?.kill("SIGKILL");
    await replicator?.status;
    kv.close();
    await stopServer(NAME);
  }
  for (const suffix of ["", "-wal", "-shm"]) if (exists(DB + suffix)) Deno.removeSync(DB + suffix);
  Deno.removeSync(`${DIR}/.kv.sqlite-litestream`, { recursive: true });
  assert.ok(writes.length > 100, `only ${writes.length} writes`);

  // The latest state.
  const latest = `${DIR}/latest.sqlite`;
  let r = await run([litestream, "restore", "-config", CONFIG, "-o", latest, DB]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  r = await run([BIN, "--sqlite-path", latest, "check"]);
  assert.equal(r.code, 0, `check of the restored file:\n${r.stdout}${r.stderr}`);
  const n = await restoredPrefix(latest);
  const mustHave = writes.filter((w) => w.acked < killedAt - SAFE_MS).length;
  assert.ok(n >= mustHave, `restored ${n} writes; ${mustHave} were acknowledged ${SAFE_MS} ms before the replicator stopped`);
  assert.ok(n <= writes.length + 1, "more writes than were made");

  // As of the midpoint.
  const pit = `${DIR}/pit.sqlite`;
  r = await run([litestream, "restore", "-config", CONFIG, "-o", pit, "-timestamp", new Date(midpoint).toISOString(), DB]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const m = await restoredPrefix(pit);
  const before = writes.filter((w) => w.acked < midpoint - SAFE_MS).length;
  const after = writes.findIndex((w) => w.started > midpoint);
  assert.ok(m >= before, `as of the midpoint: ${m} writes, but ${before} were acknowledged ${SAFE_MS} ms before it`);
  assert.ok(after > 0 && m <= after, `as of the midpoint: ${m} writes, but write ${after} started after it`);
  assert.ok(m < n, "the point in time is earlier than the latest state");
  Deno.writeTextFileSync(`${DIR}/result.txt`, `writes ${writes.length}; latest restore ${n} (acknowledged ${SAFE_MS} ms before the kill: ${mustHave});` +
    ` as of the midpoint ${m} (acknowledged before it: ${writes.filter((w) => w.acked < midpoint).length})\n`);

  // The server's restore verb puts the rebuilt file in place, and it serves.
  r = await run([BIN, "--sqlite-path", DB, "restore", latest]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /previous database at unknown/);
  const env2 = await startServer(NAME, { DB, SERVER_ARGS: "--workers 2" });
  const kv2 = await withTimeout(Deno.openKv(env2.H2C_URL), 30_000, "open restored");
  try {
    assert.equal((await kv2.get(["ls", n - 1])).value, (n - 1) * 7);
    // Writes after the last sync are lost, but their versionstamps were
    // seen: the restored service must be past them.
    const w = await kv2.set(["after"], 1);
    const seen = writes[writes.length - 1].versionstamp;
    assert.ok(w.versionstamp > seen, `versionstamp ${w.versionstamp} after the restore, ${seen} seen before`);
  } finally {
    kv2.close();
    await stopServer(NAME);
  }
}, 180_000);
