// The backup, restore and check verbs of denokv-fcgi against a serving
// stack: a backup taken under a write load through nginx holds every write
// the client saw acknowledged before it started and opens in the Deno CLI;
// restore refuses while the service has the file open, works once it is
// stopped, and versionstamps keep increasing past everything a client saw;
// check passes a good file and names the fault in a damaged one.

import {
  assert,
  assertVersionstamp,
  collect,
  DB,
  H2C_URL,
  plainTest,
  run,
  RUN_DIR,
  sqlite,
  startServer,
  stopServer,
  uniquePrefix,
  withTimeout,
} from "./helpers.ts";

const BIN = Deno.env.get("DENOKV_FCGI_BIN") ?? `${new URL("../..", import.meta.url).pathname}src/denokv-fcgi`;
const DIR = `${RUN_DIR}/backup`;
Deno.mkdirSync(DIR, { recursive: true });

function verb(db: string, ...args: string[]) {
  return run([BIN, "--sqlite-path", db, ...args]);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

// The versionstamp a backup or restore printed ("versionstamp <20 hex>").
function printedVersionstamp(out: string): string {
  const m = out.match(/versionstamp ([0-9a-f]{20})/);
  assert.ok(m, `no versionstamp in: ${out}`);
  return m[1];
}

interface Acked {
  key: Deno.KvKey;
  value: number;
  versionstamp: string;
}

// Writers that set keys one after another and record each acknowledged write.
function writeLoad(kv: Deno.Kv, prefix: string[], writers: number) {
  const acked: Acked[] = [];
  let stop = false;
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      const key = [...prefix, w, i];
      const value = w * 1_000_000 + i;
      const r = await kv.set(key, value);
      assert.ok(r.ok);
      acked.push({ key, value, versionstamp: r.versionstamp });
    }
  });
  return {
    acked,
    async stop() {
      stop = true;
      await Promise.all(loops);
    },
  };
}

plainTest("backup under a write load: the copy holds every write acknowledged before it started", async () => {
  const prefix = uniquePrefix("backup load");
  const dest = `${DIR}/load.sqlite`;
  const kv = await withTimeout(Deno.openKv(H2C_URL), 30_000, "open");
  const load = writeLoad(kv, prefix, 8);
  try {
    // Some writes first, so the backup has something to prove.
    while (load.acked.length < 200) await new Promise((r) => setTimeout(r, 20));
    const before = [...load.acked];
    const r = await verb(DB, "backup", dest);
    const duringBackup = load.acked.length - before.length;
    await load.stop();
    assert.equal(r.code, 0, `backup failed: ${r.stderr}`);
    assert.match(r.stdout, /^backup of .* written to .*: \d+ bytes, data version \d+ \(versionstamp [0-9a-f]{20}\)\n$/);
    const taken = printedVersionstamp(r.stdout);
    assert.ok(duringBackup > 0 || before.length > 0);
    for (const a of before) assert.ok(a.versionstamp <= taken, `acknowledged ${a.versionstamp} after the backup's ${taken}`);

    // The Deno CLI opens the copy as a local database.
    const copy = await Deno.openKv(dest);
    try {
      const entries = await collect(copy.list<number>({ prefix }));
      const got = new Map(entries.map((e) => [JSON.stringify(e.key), e]));
      for (const a of before) {
        const e = got.get(JSON.stringify(a.key));
        assert.ok(e, `acknowledged write ${JSON.stringify(a.key)} is missing from the backup`);
        assert.equal(e.value, a.value);
        assert.equal(e.versionstamp, a.versionstamp);
      }
      // Nothing newer than the snapshot it says it is.
      for (const e of entries) assert.ok(e.versionstamp <= taken, `entry ${e.versionstamp} newer than ${taken}`);
    } finally {
      copy.close();
    }
  } finally {
    await load.stop();
    kv.close();
  }
  // check reads the version the backup recorded.
  const c = await verb(dest, "check");
  assert.equal(c.code, 0, c.stdout + c.stderr);
  assert.match(c.stdout, /^integrity check: ok$/m);
  assert.match(c.stdout, /^backup: taken at data version \d+ \(versionstamp [0-9a-f]{20}\)/m);
}, 120_000);

plainTest("backup never replaces an existing file", async () => {
  const dest = `${DIR}/exists.sqlite`;
  Deno.writeTextFileSync(dest, "precious");
  const r = await verb(DB, "backup", dest);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /exists; a backup never replaces a file/);
  assert.equal(Deno.readTextFileSync(dest), "precious");
  assert.ok(!exists(`${dest}.partial`));
});

plainTest("restore is refused while the service has the database open", async () => {
  const backup = `${DIR}/refused.sqlite`;
  assert.equal((await verb(DB, "backup", backup)).code, 0);
  const before = (await Deno.stat(DB)).ino;
  const r = await verb(DB, "restore", backup);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /restore refused: .* is open in process \d+; stop the service/);
  assert.equal((await Deno.stat(DB)).ino, before, "the database file was replaced");
  const dir = DB.replace(/\/[^/]*$/, "");
  for (const f of Deno.readDirSync(dir)) {
    assert.ok(!/\.restoring|before-restore/.test(f.name), `left behind: ${f.name}`);
  }
});

plainTest("restore on a stopped service: the backup's data is back and versionstamps keep increasing", async () => {
  const db = `${DIR}/rs.sqlite`;
  const backup = `${DIR}/rs-backup.sqlite`;
  const name = "rs";
  let env = await startServer(name, { DB: db });
  let kv = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open rs");
  let seen = "";
  let keptStamp = "";
  try {
    const r1 = await kv.set(["rs", "kept"], "from the backup");
    keptStamp = r1.versionstamp;
    const b = await verb(db, "backup", backup);
    assert.equal(b.code, 0, b.stderr);
    // Writes after the backup: the restore takes them back, but a client
    // has seen their versionstamps.
    for (let i = 0; i < 20; i++) seen = (await kv.set(["rs", "later", i], i)).versionstamp;
    seen = (await kv.set(["rs", "kept"], "overwritten later")).versionstamp;
  } finally {
    kv.close();
  }
  await stopServer(name);

  const r = await verb(db, "restore", backup);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^restored .* from .*: backup at data version \d+, previous database at \d+; data version now \d+/);
  assert.match(r.stdout, /previous database kept as .*\.before-restore-\d{8}T\d{6}Z/);
  const aside = r.stdout.match(/kept as (\S+)/)![1];
  assert.ok(exists(aside));
  // The old file is intact beside the new one.
  assert.equal(await sqlite(aside, "select count(*) from kv"), "21");
  assert.equal(await sqlite(db, `select count(*) from sqlite_master where name = 'denokv_fcgi_backup'`), "0");

  env = await startServer(name, { DB: db });
  kv = await withTimeout(Deno.openKv(env.H2C_URL), 30_000, "open rs again");
  try {
    const kept = await kv.get(["rs", "kept"]);
    assert.equal(kept.value, "from the backup");
    assert.equal(kept.versionstamp, keptStamp, "restored entries keep their versionstamps");
    assert.equal((await collect(kv.list({ prefix: ["rs", "later"] }))).length, 0);
    const w = await kv.set(["rs", "after restore"], 1);
    assertVersionstamp(w.versionstamp);
    assert.ok(w.versionstamp > seen, `versionstamp ${w.versionstamp} after the restore is not past ${seen}, seen before it`);
    // A check against a versionstamp from before the restore fails.
    const c = await kv.atomic().check({ key: ["rs", "kept"], versionstamp: seen }).set(["rs", "x"], 1).commit();
    assert.equal(c.ok, false);
  } finally {
    kv.close();
    await stopServer(name);
  }
}, 120_000);

plainTest("check: a good file passes, a damaged one and a foreign one are named", async () => {
  const good = `${DIR}/check-good.sqlite`;
  // Enough rows for many pages, so the damage lands inside the kv b-tree.
  const kv = await Deno.openKv(good);
  for (let i = 0; i < 20; i++) {
    const op = kv.atomic();
    for (let j = 0; j < 100; j++) op.set(["c", i, j], "x".repeat(200));
    await op.commit();
  }
  kv.close();
  let r = await verb(good, "check");
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^integrity check: ok$/m);
  assert.match(r.stdout, /^schema: denokv's, at migration 3 of 3: ok$/m);
  assert.match(r.stdout, /, 2000 entries$/m);
  assert.match(r.stdout, /: ok\n$/);

  // Overwrite pages in the middle of the file with garbage.
  const bad = `${DIR}/check-bad.sqlite`;
  Deno.copyFileSync(good, bad);
  const f = await Deno.open(bad, { write: true });
  await f.seek(4096 * 20, Deno.SeekMode.Start);
  await f.write(new Uint8Array(4096 * 4).fill(0x5a));
  f.close();
  r = await verb(bad, "check");
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^problem: /m);
  assert.match(r.stdout, /: \d+ problems? found\n$/);

  // An SQLite file that is not a Deno KV database.
  const foreign = `${DIR}/check-foreign.sqlite`;
  await sqlite(foreign, "create table t (x); insert into t values (1)");
  r = await verb(foreign, "check");
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^problem: schema: no migration state: this is not a Deno KV database$/m);

  // Not a database at all, and no file.
  Deno.writeTextFileSync(`${DIR}/check-text.sqlite`, "hello, this is text and not a database ".repeat(200));
  r = await verb(`${DIR}/check-text.sqlite`, "check");
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^problem: .*not a database/m);
  r = await verb(`${DIR}/no-such.sqlite`, "check");
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^problem: cannot open the database: .*No such file or directory$/m);
  assert.ok(!exists(`${DIR}/no-such.sqlite`), "check created a file");

  // Usage errors are exit status 2.
  r = await verb(good, "check", "extra");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /check takes fewer arguments/);
  r = await verb(good, "restore");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /restore needs more arguments/);
}, 120_000);
