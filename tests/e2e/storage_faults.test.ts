// storage_faults.test.ts: storage faults end to end (nginx, the real
// binary, SQLite in WAL mode, the Deno CLI): the database on a file system
// that runs out of space (a small tmpfs mounted here: needs root, as CI has;
// without it the suite fails rather than skips), and a damaged database file.
//
// Focus, full disk:
//   - the files the server creates (database, -wal, -shm) have the default
//     sqlite-file-mode, 0600;
//   - once the disk is full a write is answered 507 with "database or disk
//     is full" in text/plain, and nothing of it is applied; every write
//     acknowledged before is read back intact, over HTTP/1.1 and with the
//     Deno CLI;
//   - no process dies meanwhile: neither the workers (SQLITE_FULL at commit)
//     nor the housekeeper (its checkpoints fail for want of room); the
//     fault is logged at error level a bounded number of times, and shows
//     in sd_notify STATUS=. (The WAL here stays far below the 4062 frames
//     at which the -shm grows; a -shm that cannot grow is covered by
//     tests/unit/test_kv.c, "failed commit".)
//   - once space is freed, writes succeed again without a restart (a
//     kv.set() the Deno CLI kept retrying meanwhile commits by itself), and
//     the file passes integrity_check with everything acknowledged in it.
// Damaged file (the kv table's root page overwritten while the server was
// stopped):
//   - a read or a write of it is answered 500 with a text saying the file
//     is damaged (not a 503 that says "try again" for ever), logged at
//     error level and shown in STATUS=; the service stays up.
import {
  assert,
  encAtomicWrite,
  encodeKey,
  encSnapshotRead,
  H2C_URL,
  metadataExchange,
  MutationType,
  plainTest,
  RawClient,
  RUN_DIR,
  run,
  sleep,
  startServer,
  stopServer,
  uniquePrefix,
  ValueEncoding,
  withTimeout,
} from "./helpers.ts";

const MNT = `${RUN_DIR}/full-fs`;
const VALUE_BYTES = 60 * 1024;

// A value that tells which write it came from, byte by byte.
function valueFor(i: number): Uint8Array {
  const v = new Uint8Array(VALUE_BYTES);
  for (let j = 0; j < v.length; j++) v[j] = (i * 131 + j * 7) & 0xff;
  return v;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sh(cmd: string[]): Promise<string> {
  const r = await run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

async function availBytes(dir: string): Promise<number> {
  return Number((await sh(["df", "-B1", "--output=avail", dir])).split("\n").pop());
}

async function children(pid: string): Promise<string> {
  const r = await run(["pgrep", "-P", pid]);
  return r.stdout.trim().split("\n").sort().join(" ");
}

function mode(path: string): string {
  return ((Deno.statSync(path).mode ?? 0) & 0o7777).toString(8).padStart(4, "0");
}

// A datagram socket standing in for systemd's NOTIFY_SOCKET.
function notifyListener(name: string) {
  const path = `${RUN_DIR}/${name}-notify.sock`;
  const out = `${RUN_DIR}/${name}-notify.out`;
  const child = new Deno.Command("socat", {
    args: ["-u", `UNIX-RECV:${path}`, `CREATE:${out}`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  return {
    path,
    async ready() {
      for (let i = 0; i < 100; i++) {
        try {
          Deno.statSync(path);
          return;
        } catch { await sleep(50); }
      }
      throw new Error(`socat did not create ${path}`);
    },
    // The last STATUS=serving... message that matches re, within 15 s
    // (the master refreshes it every 5 s); "" if none did.
    async status(re: RegExp): Promise<string> {
      let last = "";
      for (let n = 0; n < 150; n++) {
        // Datagrams, one after another without separators.
        const all = (await Deno.readTextFile(out).catch(() => "")).split(/(?=READY=|STATUS=|STOPPING=|RELOADING=)/)
          .filter((l) => l.startsWith("STATUS=serving"));
        last = all.pop() ?? "";
        if (re.test(last)) return last;
        await sleep(100);
      }
      return last;
    },
    async close() {
      try { child.kill("SIGTERM"); } catch { /* gone */ }
      await child.status;
    },
  };
}

plainTest("a full disk: 507 with a reason, acknowledged writes intact, no crash, writes resume once space is freed", async () => {
  assert.equal(Deno.uid(), 0, "this suite mounts a tmpfs and must run as root (CI does)");
  await Deno.mkdir(MNT, { recursive: true });
  await sh(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", MNT]);
  const notify = notifyListener("full");
  let started = false;
  let kv: Deno.Kv | null = null;
  try {
    await notify.ready();
    const env = await startServer("full", {
      DB: `${MNT}/kv.sqlite`,
      SERVER_ARGS: "--workers 2",
      NOTIFY_SOCKET: notify.path,
    });
    started = true;
    const c = await RawClient.open(env.H1_URL);
    const p = uniquePrefix("full");
    const key = (i: number) => encodeKey([...p, i]);
    const write = (i: number) =>
      c.post("atomic_write", encAtomicWrite({
        mutations: [{ key: key(i), type: MutationType.SET, value: { data: valueFor(i), encoding: ValueEncoding.BYTES } }],
      }));
    const procs = await children(env.PID);

    // Acknowledged writes before the disk fills.
    const acked: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await write(i);
      assert.equal(r.status, 200, `write ${i} before the fill: ${r.status} ${r.text}`);
      acked.push(i);
    }
    for (const f of ["kv.sqlite", "kv.sqlite-wal", "kv.sqlite-shm"]) {
      assert.equal(mode(`${MNT}/${f}`), "0600", `${f} was created with mode 0600 (sqlite-file-mode)`);
    }

    // A filler file takes all but about 600 KiB; writes take the rest.
    const filler = `${MNT}/filler`;
    const room = await availBytes(MNT);
    await sh(["dd", "if=/dev/zero", `of=${filler}`, "bs=64K", `count=${Math.max(1, Math.floor((room - 600 * 1024) / 65536))}`, "status=none"]);
    let full: { status: number; contentType: string; text: string } | null = null;
    let i = acked.length;
    for (; i < 200 && full === null; i++) {
      const r = await write(i);
      if (r.status === 200) acked.push(i);
      else full = r;
    }
    assert.ok(full !== null, `the disk filled up within ${i} writes`);
    assert.equal(full.status, 507, `a write on the full disk is answered 507 (got ${full.status}: ${full.text})`);
    assert.match(full.contentType, /^text\/plain/, "in text/plain");
    assert.match(full.text, /database or disk is full/, `saying "database or disk is full": "${full.text}"`);
    const refused = i - 1;
    const more: number[] = [];
    for (let n = 0; n < 20; n++) more.push((await write(1000 + n)).status);
    assert.ok(more.every((s) => s === 507), `the following writes are 507 too: ${more}`);

    // Reads go on: everything acknowledged, byte for byte.
    for (const n of acked) {
      const e = await c.get(key(n));
      assert.ok(e !== null && sameBytes(e.value, valueFor(n)), `acknowledged write ${n} reads back intact on the full disk`);
    }
    assert.equal(await c.get(key(refused)), null, "the refused write left nothing behind");
    kv = await Deno.openKv(env.H2C_URL ?? H2C_URL);
    const e = await kv.get<Uint8Array>([...p, acked[acked.length - 1]]);
    assert.ok(e.value !== null && sameBytes(e.value, valueFor(acked[acked.length - 1])), "the Deno CLI reads the last acknowledged write");
    // The Deno CLI retries a 5xx by itself: its write waits for the space.
    let setSettled = false;
    const pendingSet = kv.set([...p, 5000], valueFor(5000)).finally(() => setSettled = true);

    // Let the housekeeper try its checkpoints on the full disk.
    await sleep(2500);
    assert.equal(await children(env.PID), procs, "no worker and no housekeeper died or was replaced");
    let log = await Deno.readTextFile(env.LOG);
    const faultLines = log.split("\n").filter((l) => /^<3>worker\[\d+\]: .*disk is full/.test(l));
    assert.ok(faultLines.length >= 1, "the full disk is logged at error level");
    assert.ok(faultLines.length * 3 <= more.length + 1, `once per interval per process, not per request (${faultLines.length} lines for ${more.length + 1} refusals)`);
    assert.doesNotMatch(log, /request failed: KV_ERR_DISK_FULL/, "and not again per request");
    assert.doesNotMatch(log, /killed by signal|exited with status/, "the master saw no child fail");
    const status = await notify.status(/disk full/);
    assert.match(status, /database errors \(\d+ disk full\)/, `STATUS= reports it: "${status}"`);
    assert.match(status, /database or disk is full/, "with the last error's reason");

    assert.equal(setSettled, false, "the Deno CLI's kv.set() has not settled on the full disk (it retries the 507)");

    // Space comes back: writes resume, without a restart.
    await Deno.remove(filler);
    const setResult = await withTimeout(pendingSet, 20_000, "the Deno CLI's kv.set() once space is freed");
    assert.equal(setResult.ok, true, "once space is freed the Deno CLI's pending kv.set() commits by itself");
    acked.push(5000);
    let back = 0;
    for (let n = 0; n < 50; n++, await sleep(100)) {
      back = (await write(2000)).status;
      if (back === 200) break;
    }
    assert.equal(back, 200, "with space freed, a write succeeds again");
    acked.push(2000);
    for (let n = 0; n < 20; n++) {
      const r = await write(3000 + n);
      assert.equal(r.status, 200, `and so do the next ones (${r.status} ${r.text})`);
      acked.push(3000 + n);
    }
    for (const n of acked) {
      const e = await c.get(key(n));
      assert.ok(e !== null && sameBytes(e.value, valueFor(n)), `write ${n} reads back after the recovery`);
    }
    assert.equal(await children(env.PID), procs, "the same processes serve: no restart");
    await sleep(1500);
    log = await Deno.readTextFile(env.LOG);
    assert.doesNotMatch(log, /killed by signal|exited with status/, "nothing crashed afterwards either (checkpoints resumed)");

    await stopServer("full");
    started = false;
    const db = `${MNT}/kv.sqlite`;
    assert.equal(await sh(["sqlite3", db, "pragma integrity_check"]), "ok", "the file passes integrity_check");
    const rows = Number(await sh(["sqlite3", db, `select count(*) from kv where length(v) = ${VALUE_BYTES}`]));
    assert.equal(rows, acked.length, `every acknowledged write is in the file, nothing else (${rows} rows)`);
  } finally {
    kv?.close();
    if (started) await stopServer("full").catch(() => {});
    await notify.close();
    await run(["umount", "-l", MNT]);
  }
}, 120_000);

plainTest("a damaged database file: 500 with a reason, logged and in STATUS=, the service stays up", async () => {
  const db = `${RUN_DIR}/damaged.sqlite`;
  const notify = notifyListener("damaged");
  let started = false;
  try {
    await notify.ready();
    let env = await startServer("damaged", { DB: db, SERVER_ARGS: "--workers 2" });
    started = true;
    let c = await RawClient.open(env.H1_URL);
    const p = uniquePrefix("damaged");
    const key = (i: number) => encodeKey([...p, i]);
    // Enough rows that the kv table's root is a page of pointers.
    for (let i = 0; i < 40; i++) {
      await c.write({ mutations: [{ key: key(i), type: MutationType.SET, value: { data: valueFor(i), encoding: ValueEncoding.BYTES } }] });
    }
    await stopServer("damaged");
    started = false;
    const root = Number(await sh(["sqlite3", db, "select rootpage from sqlite_schema where name = 'kv'"]));
    const pageSize = Number(await sh(["sqlite3", db, "pragma page_size"]));
    assert.ok(root > 1 && pageSize >= 512, `the kv table's root page (${root}, ${pageSize} bytes)`);
    const f = await Deno.open(db, { write: true });
    await f.seek((root - 1) * pageSize, Deno.SeekMode.Start);
    await f.write(new Uint8Array(pageSize).fill(0xa5));
    f.close();

    env = await startServer("damaged", { DB: db, SERVER_ARGS: "--workers 2", NOTIFY_SOCKET: notify.path });
    started = true;
    const procs = await children(env.PID);
    c = await RawClient.open(env.H1_URL);
    const read = await c.post("snapshot_read", encSnapshotRead([{ start: key(0), end: key(99), limit: 10 }]));
    assert.equal(read.status, 500, `a read of the damaged table is answered 500 (got ${read.status}: ${read.text})`);
    assert.match(read.contentType, /^text\/plain/, "in text/plain");
    assert.match(read.text, /damaged/, `saying the file is damaged: "${read.text}"`);
    const write = await c.post("atomic_write", encAtomicWrite({
      mutations: [{ key: key(100), type: MutationType.SET, value: { data: valueFor(100), encoding: ValueEncoding.BYTES } }],
    }));
    assert.equal(write.status, 500, `so is a write into it (${write.status}: ${write.text})`);
    assert.match(write.text, /damaged/, "with the same reason");
    const log = await Deno.readTextFile(env.LOG);
    assert.match(log, /^<3>worker\[\d+\]: database .*damaged\.sqlite: .*malformed/m, "logged at error level with SQLite's words");
    const status = await notify.status(/damaged/);
    assert.match(status, /database errors .*The database file is damaged/, `STATUS= says so: "${status}"`);
    assert.equal(await children(env.PID), procs, "no process died");
    assert.equal((await metadataExchange(env.H1_URL)).status, 200, "the metadata exchange still answers");
  } finally {
    if (started) await stopServer("damaged").catch(() => {});
    await notify.close();
  }
}, 60_000);
