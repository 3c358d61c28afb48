// The housekeeper at work, seen from outside: its expiry sweep deletes the
// rows of expired entries from the file in a write that bumps data_version
// (and tells watchers; a hub also re-reads a stream by itself when one of
// its entries expires, so a watcher hears of the expiry either way), and
// its checkpoints move committed data from the WAL into the database file. Nothing here calls the server to do either: the suite only
// writes, waits and looks at the SQLite files with sqlite3 and grep.
//
// The truncating checkpoint starts once the WAL holds more than
// HK_WAL_TRUNCATE_FRAMES (16384 pages, 64 MiB) at a pass. The WAL only gets
// there while a reader keeps an old snapshot (nothing can be copied past
// it, so nothing restarts the WAL): the last test holds one open with
// sqlite3 while it writes 72 MiB, lets go, and watches the WAL file shrink.

import { assert, DB, encodeKey, hex, kvTest, run, RUN_DIR, sleep, sqlite, uniquePrefix } from "./helpers.ts";

// Polls cond every 100 ms for up to ms; returns whether it became true.
async function eventually(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

const version = async () => BigInt(await sqlite(DB, "select version from data_version where k = 0"));
const rows = async (key: Uint8Array) => Number(await sqlite(DB, `select count(*) from kv where k = x'${hex(key)}'`));

kvTest("an expired entry: a watcher is told, the sweep deletes its row and bumps data_version", async (kv, p) => {
  const k = [...p, "ttl"];
  const key = encodeKey(k as string[]);
  const stream = kv.watch([k]).getReader();
  try {
    const first = await stream.read();
    assert.equal(first.value![0].versionstamp, null);
    // Before the call: the client adds expireIn to its clock when it sends.
    const setAt = Date.now();
    const r = await kv.set(k, "short-lived", { expireIn: 1000 });
    const v0 = await version();
    assert.equal(await rows(key), 1, "the row is in the file");
    // The watcher sees the set, then (with no further write) the key gone.
    const next = async (what: string, pred: (vs: string | null) => boolean) => {
      for (;;) {
        const f = await stream.read();
        assert.ok(!f.done, `the watch stream ended before ${what}`);
        if (pred(f.value![0].versionstamp)) return;
      }
    };
    await next("the set", (vs) => vs === r.versionstamp);
    await next("the key was gone", (vs) => vs === null);
    const goneAt = Date.now();
    assert.ok(goneAt >= setAt + 1000 - 50, `told ${goneAt - setAt} ms after the set, before the key expired`);
    // The row was deleted from the file, not only hidden by reads ...
    assert.ok(await eventually(async () => await rows(key) === 0, 5_000), "the expired row is still in the file");
    // ... in a write of its own, which moved data_version on.
    const v1 = await version();
    assert.ok(v1 > v0, `data_version ${v1} did not move past ${v0} when the row was deleted`);
    assert.equal((await kv.get(k)).versionstamp, null);
  } finally {
    await stream.cancel();
  }
}, { timeout: 30_000 });

kvTest("a checkpoint moves a committed value from the WAL into the database file", async (kv) => {
  // A value no other test writes, stored as raw bytes so that it appears
  // verbatim in whichever file holds its page. In WAL mode pages reach the
  // database file only through a checkpoint; the workers' automatic one
  // needs 1000 pages of WAL, which one small write does not make, so the
  // housekeeper's checkpoint (once a second) is what moves it.
  const marker = `checkpoint-marker-${crypto.randomUUID()}`;
  const has = async (file: string) => (await run(["grep", "-c", "-a", "-F", marker, file])).code === 0;
  await kv.set(uniquePrefix("checkpoint"), new TextEncoder().encode(marker));
  assert.ok(await has(`${DB}-wal`), "the committed value is not in the WAL");
  assert.ok(await eventually(() => has(DB), 10_000), "the value did not reach the database file within 10 s: no checkpoint ran");
}, { timeout: 30_000 });

kvTest("a WAL grown past 64 MiB behind a reader is truncated once the reader leaves", async (kv, p) => {
  const walSize = () => Deno.statSync(`${DB}-wal`).size;
  const log = `${RUN_DIR}/server.log`;
  const logBefore = Deno.readTextFileSync(log).length;
  // A reader in the middle of a transaction, holding its snapshot.
  const reader = new Deno.Command("sqlite3", { args: [DB], stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const w = reader.stdin.getWriter();
  const out = reader.stdout.pipeThrough(new TextDecoderStream()).getReader();
  await w.write(new TextEncoder().encode("begin;\nselect 'snapshot', count(*) from data_version;\n"));
  let got = "";
  while (!got.includes("snapshot|")) {
    const r = await out.read();
    assert.ok(!r.done, `sqlite3 ended before taking its snapshot: ${got}`);
    got += r.value;
  }
  // 72 MiB in 96 commits of twelve 64000-byte values (under 800 KiB each).
  const value = new Uint8Array(64000).fill(0x5a);
  try {
    for (let c = 0; c < 96; c += 8) {
      await Promise.all(Array.from({ length: 8 }, (_, j) => {
        const op = kv.atomic();
        for (let i = 0; i < 12; i++) op.set([...p, c + j, i], value);
        return op.commit();
      }));
    }
    const grown = walSize();
    assert.ok(grown > 64 * 1024 * 1024, `the WAL grew to only ${grown} bytes behind the reader`);
  } finally {
    await w.write(new TextEncoder().encode("commit;\n.quit\n"));
    await w.close();
    await reader.status;
  }
  // The housekeeper logs the truncation (with the frames it found) just
  // after it: wait for both.
  const logged = () => Deno.readTextFileSync(log).slice(logBefore).match(/housekeeper\[\d+\]: WAL truncated after (\d+) frames/);
  assert.ok(await eventually(async () => walSize() < 1024 * 1024 && logged() !== null, 15_000),
    `15 s after the reader left: WAL ${walSize()} bytes, truncation ${logged() ? "" : "not "}logged`);
  const frames = Number(logged()![1]);
  assert.ok(frames >= 16384, `the log says the WAL had ${frames} frames; it had over 16384`);
  // Delete the 72 MiB again: later suites need not read past it.
  for (let c = 0; c < 96; c++) {
    const op = kv.atomic();
    for (let i = 0; i < 12; i++) op.delete([...p, c, i]);
    await op.commit();
  }
}, { timeout: 120_000 });
