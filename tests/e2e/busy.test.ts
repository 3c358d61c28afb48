// busy.test.ts: a database whose write lock is held, end to end (nginx, the
// real binary, the real SQLite file, the sqlite3 CLI and the Deno CLI).
//
// Focus: a write waits a bounded time for its turn and is then answered 503
// with a text reason (KV Connect clients retry 5xx by themselves):
//   - another process (the sqlite3 CLI) holds BEGIN IMMEDIATE on the file
//     longer than the busy timeout: a raw write gets 503 after about the
//     promised 5 s (not several times that), reads are served meanwhile, and
//     the write lands when retried after the release; the Deno CLI's
//     kv.set() issued during the hold completes by itself after the release;
//   - a worker of this server stuck while holding the write turn (stopped
//     with SIGSTOP): a write behind it gets 503 after busy-timeout instead
//     of waiting for ever, and once the stuck worker goes on, the line is
//     intact: the next write is answered at once;
//   - a stuck writer with more writers giving up behind it than the table
//     of abandoned tickets holds, with a busy-timeout far below a second:
//     writes resume within a couple of seconds once it goes on;
//   - the two settings involved (busy-timeout, sqlite-file-mode) are
//     validated with their bounds.
import {
  assert,
  DB,
  decAtomicWriteOutput,
  encAtomicWrite,
  encodeKey,
  H1_URL,
  H2C_URL,
  kvTest,
  MutationType,
  plainTest,
  RawClient,
  RawResponse,
  RUN_DIR,
  run,
  sleep,
  startServer,
  stopServer,
  uniquePrefix,
  ValueEncoding,
  withTimeout,
} from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

// The sqlite3 CLI holding SQLite's write lock on db until release().
async function holdWriteLock(db: string) {
  const child = new Deno.Command("sqlite3", {
    args: ["-batch", db],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(enc.encode(".timeout 10000\nbegin immediate;\nselect 'locked';\n"));
  const r = child.stdout.getReader();
  let out = "";
  while (!out.includes("locked")) {
    const { value, done } = await withTimeout(r.read(), 15_000, "sqlite3 begin immediate");
    if (done) throw new Error(`sqlite3 ended before taking the lock: ${out}`);
    out += dec.decode(value);
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await w.write(enc.encode("commit;\n"));
      await w.close();
      r.releaseLock();
      const st = await withTimeout(child.output(), 15_000, "sqlite3 commit");
      if (!st.success) throw new Error(`sqlite3 failed: ${dec.decode(st.stderr)}`);
    },
  };
}

function setBody(key: Uint8Array, value: string): Uint8Array {
  return encAtomicWrite({
    mutations: [{ key, type: MutationType.SET, value: { data: enc.encode(value), encoding: ValueEncoding.BYTES } }],
  });
}

// A raw write (fetch does not retry; rawFetch gives up after 30 s).
async function timedWrite(c: RawClient, key: Uint8Array, value: string) {
  const t0 = performance.now();
  const r: RawResponse = await c.post("atomic_write", setBody(key, value));
  return { r, ms: performance.now() - t0 };
}

async function countAccess(pattern: RegExp): Promise<number> {
  const log = await Deno.readTextFile(`${RUN_DIR}/access.log`);
  return log.split("\n").filter((l) => pattern.test(l)).length;
}

plainTest("a write while another process holds the write lock gets 503 with a reason after about 5 s; reads go on; the retry lands", async () => {
  const c = await RawClient.open(H1_URL);
  const p = uniquePrefix("busy raw");
  const key = encodeKey([...p, "k"]);
  const other = encodeKey([...p, "other"]);
  await c.write({ mutations: [{ key: other, type: MutationType.SET, value: { data: enc.encode("readable"), encoding: ValueEncoding.BYTES } }] });

  const lock = await holdWriteLock(DB);
  try {
    let readDoneAt = 0;
    const write = timedWrite(c, key, "v1").then((x) => ({ ...x, at: performance.now() }));
    // A read issued while the write waits: served by another worker.
    await sleep(500);
    const got = await c.get(other);
    readDoneAt = performance.now();
    assert.ok(got !== null && dec.decode(got.value) === "readable", "a read while the lock is held returns the value");
    const w = await write;
    assert.equal(w.r.status, 503, `the write is answered 503 (got ${w.r.status}: ${w.r.text})`);
    assert.match(w.r.contentType, /^text\/plain/, "with a text/plain body");
    assert.match(w.r.text, /busy/i, `saying the database is busy: "${w.r.text}"`);
    assert.ok(w.ms >= 4500, `no sooner than the 5 s busy timeout (${w.ms.toFixed(0)} ms)`);
    assert.ok(w.ms < 10_000, `and about then, not a multiple of it (${w.ms.toFixed(0)} ms)`);
    assert.ok(readDoneAt < w.at, "the read was answered before the write gave up");
    assert.equal(await c.get(key), null, "nothing of the refused write is visible");
  } finally {
    await lock.release();
  }
  const again = await timedWrite(c, key, "v2");
  assert.equal(again.r.status, 200, `after the release the retried write succeeds (${again.r.status} ${again.r.text})`);
  assert.equal(decAtomicWriteOutput(again.r.body).status, 1, "and commits");
  const v = await c.get(key);
  assert.ok(v !== null && dec.decode(v.value) === "v2", "and reads back");
}, 60_000);

kvTest("the Deno CLI's kv.set() during the hold completes by itself once the lock is released", async (kv, p) => {
  await kv.set([...p, "other"], "readable");
  const before = await countAccess(/"POST \/v2\/atomic_write HTTP\/2\.0" 503 /);
  const lock = await holdWriteLock(DB);
  let settled = false;
  const set = kv.set([...p, "k"], "from deno").finally(() => settled = true);
  try {
    const r = await withTimeout(kv.get([...p, "other"]), 4_000, "a get while the lock is held");
    assert.equal(r.value, "readable", "kv.get() is answered while the lock is held");
    // Past the 5 s busy timeout: the client has had a 503 and retries.
    for (let i = 0; i < 100 && (await countAccess(/"POST \/v2\/atomic_write HTTP\/2\.0" 503 /)) === before; i++) {
      await sleep(100);
    }
    assert.ok((await countAccess(/"POST \/v2\/atomic_write HTTP\/2\.0" 503 /)) > before, "the server answered the held write 503 (nginx access log)");
    assert.equal(settled, false, "kv.set() has not settled while the lock is held (it retries the 503)");
  } finally {
    await lock.release();
  }
  const res = await withTimeout(set, 20_000, "kv.set after the release");
  assert.equal(res.ok, true, "kv.set() resolves ok after the release");
  assert.equal((await kv.get([...p, "k"])).value, "from deno", "and the value is there");
}, { url: H2C_URL, timeout: 60_000 });

// The worker pids of an instance: the processes listening on its socket,
// less the master.
async function workerPids(sock: string, master: string): Promise<number[]> {
  const r = await run(["ss", "-xlpn", "src", sock]);
  const pids = [...r.stdout.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
  return [...new Set(pids)].filter((p) => p !== Number(master));
}

// Whether the worker's main thread sleeps inside a write within 10 s: in
// the busy handler's nap (nanosleep, clock_nanosleep) or on its turn
// (futex), not in ppoll waiting for a connection. (x86-64 and arm64 numbers.)
async function inWriteWait(pid: number): Promise<boolean> {
  const naps = Deno.build.arch === "x86_64" ? ["35", "230", "202"] : ["101", "115", "98"];
  for (let i = 0; i < 200; i++) {
    const sc = (await Deno.readTextFile(`/proc/${pid}/syscall`)).split(" ")[0];
    if (naps.includes(sc)) return true;
    await sleep(50);
  }
  return false;
}

plainTest("one worker: while its write waits for a lock another process holds, the worker answers reads on other connections", async () => {
  // One worker, so the read has nowhere else to go: a worker that slept
  // inside the waiting write would answer it only after the write's 503.
  const env = await startServer("busy1", {
    DB: `${RUN_DIR}/busy1.sqlite`,
    SERVER_ARGS: "--workers 1",
  });
  let lock: Awaited<ReturnType<typeof holdWriteLock>> | null = null;
  try {
    const c = await RawClient.open(env.H1_URL);
    const p = uniquePrefix("one worker");
    const key = encodeKey([...p, "k"]);
    const other = encodeKey([...p, "other"]);
    await c.write({ mutations: [{ key: other, type: MutationType.SET, value: { data: enc.encode("readable"), encoding: ValueEncoding.BYTES } }] });
    lock = await holdWriteLock(env.DB);
    const write = timedWrite(c, key, "v1").then((x) => ({ ...x, at: performance.now() }));
    await sleep(500);
    const t0 = performance.now();
    const got = await c.get(other);
    const readMs = performance.now() - t0;
    const readAt = performance.now();
    assert.ok(got !== null && dec.decode(got.value) === "readable", "the read returns the value");
    const w = await write;
    assert.equal(w.r.status, 503, `the write is answered 503 once the busy timeout is over (got ${w.r.status}: ${w.r.text})`);
    assert.match(w.r.text, /busy/i, `saying the database is busy: "${w.r.text}"`);
    assert.ok(w.ms >= 4500 && w.ms < 10_000, `after about the 5 s busy timeout (${w.ms.toFixed(0)} ms)`);
    assert.ok(readAt < w.at, `the read was answered while the write waited (read took ${readMs.toFixed(0)} ms)`);
    await lock.release();
    lock = null;
    const again = await timedWrite(c, key, "v2");
    assert.equal(again.r.status, 200, `after the release the write succeeds (${again.r.status} ${again.r.text})`);
    const v = await c.get(key);
    assert.ok(v !== null && dec.decode(v.value) === "v2", "and reads back");
  } finally {
    await lock?.release();
    await stopServer("busy1");
  }
}, 60_000);

plainTest("a worker stuck holding the write turn: the write behind it gets 503 after busy-timeout, and the line moves on afterwards", async () => {
  const env = await startServer("busy", {
    DB: `${RUN_DIR}/busy.sqlite`,
    SERVER_ARGS: "--workers 2 --busy-timeout 1500",
  });
  const stopped = new Set<number>();
  const stop = (pid: number) => (Deno.kill(pid, "SIGSTOP"), stopped.add(pid));
  const cont = (pid: number) => (Deno.kill(pid, "SIGCONT"), stopped.delete(pid));
  let lock: Awaited<ReturnType<typeof holdWriteLock>> | null = null;
  try {
    const c = await RawClient.open(env.H1_URL);
    const p = uniquePrefix("stuck");
    const k = (n: string) => encodeKey([...p, n]);
    await c.write({ mutations: [{ key: k("r"), type: MutationType.SET, value: { data: enc.encode("r"), encoding: ValueEncoding.BYTES } }] });
    const workers = await workerPids(env.SOCKET, env.PID);
    assert.equal(workers.length, 2, `two workers listen on ${env.SOCKET}: ${workers}`);
    const [x, y] = workers;

    // X takes the turn and waits for the lock the sqlite3 CLI holds; then
    // X is stopped with the turn in hand and the lock is released: X is a
    // live writer stuck in the middle of its write.
    lock = await holdWriteLock(env.DB);
    stop(y);
    const w1 = timedWrite(c, k("w1"), "w1");
    assert.ok(await inWriteWait(x), `worker ${x} took the write and waits in it`);
    stop(x);
    cont(y);
    await lock.release();
    lock = null;

    const w2 = await timedWrite(c, k("w2"), "w2");
    assert.equal(w2.r.status, 503, `a write behind the stuck one is answered 503 (got ${w2.r.status}: ${w2.r.text})`);
    assert.match(w2.r.text, /turn to write/, `saying it timed out waiting for its turn: "${w2.r.text}"`);
    assert.ok(w2.ms >= 1400 && w2.ms < 10_000, `after about busy-timeout, 1.5 s (${w2.ms.toFixed(0)} ms)`);
    const w3 = await timedWrite(c, k("w3"), "w3");
    assert.equal(w3.r.status, 503, `so is the next one while it stays stuck (${w3.r.status})`);
    const r = await c.get(k("r"));
    assert.ok(r !== null && dec.decode(r.value) === "r", "reads are served by the waiting worker once it has answered");

    cont(x);
    const first = await w1;
    assert.ok(first.r.status === 200 || first.r.status === 503, `the stuck write ends, committed or 503 (${first.r.status})`);
    const w4 = await timedWrite(c, k("w4"), "w4");
    assert.equal(w4.r.status, 200, `the next write goes through: the abandoned turns were passed over (${w4.r.status} ${w4.r.text})`);
    assert.ok(w4.ms < 5_000, `at once, not after another timeout (${w4.ms.toFixed(0)} ms)`);
    assert.equal(await c.get(k("w2")), null, "the refused writes left nothing behind");
    assert.equal(await c.get(k("w3")), null, "(neither of them)");
    const log = await Deno.readTextFile(env.LOG);
    assert.match(log, /no turn to write within 1500 ms/, "the server logged the timed-out waits");
  } finally {
    for (const pid of stopped) Deno.kill(pid, "SIGCONT");
    if (lock) await lock.release();
    await stopServer("busy");
  }
}, 90_000);

// A writer stuck inside its turn (strace holds its commit's fdatasync)
// while writers with a 10 ms busy-timeout give up behind it more often
// than the table of abandoned tickets holds (1024): once it goes on, the
// line must pass the tickets the table could not note. No writer here
// ever waits the second a repair used to count from its own start, so the
// line stayed stuck for good.
plainTest("a stuck writer with more give-ups behind it than can be noted: writes resume soon after it goes on", async () => {
  const env = await startServer("giveups", {
    DB: `${RUN_DIR}/giveups.sqlite`,
    SERVER_ARGS: "--workers 3 --busy-timeout 10",
  });
  let tracer: Deno.ChildProcess | null = null;
  try {
    const c = await RawClient.open(env.H1_URL);
    const p = uniquePrefix("giveups");
    const k = (n: number) => encodeKey([...p, n]);
    assert.equal((await timedWrite(c, k(0), "v")).r.status, 200, "a first write");
    const workers = await workerPids(env.SOCKET, env.PID);
    tracer = new Deno.Command("strace", {
      args: ["-qq", "-o", "/dev/null", "-e", "trace=fdatasync,fsync", "-e", "inject=fdatasync,fsync:delay_enter=600000000",
        ...workers.flatMap((w) => ["-p", String(w)])],
      env: { ASAN_OPTIONS: "detect_leaks=0" },
      stdout: "null",
      stderr: "null",
    }).spawn();
    await sleep(1000);
    const stuck = timedWrite(c, k(1), "stuck");
    await sleep(500);
    let refused = 0;
    const burst = async (from: number) => {
      for (let i = 0; i < 600; i++) {
        if ((await timedWrite(c, k(from + i), "x")).r.status === 503) refused++;
      }
    };
    await Promise.all([burst(100), burst(1000)]);
    assert.ok(refused > 1100, `writes behind the stuck one gave up more often than the table holds (${refused} 503s)`);
    tracer.kill("SIGKILL");
    await tracer.status;
    tracer = null;
    const first = await stuck;
    assert.equal(first.r.status, 200, `the stuck write commits once it goes on (${first.r.status})`);
    let status = 0, tries = 0;
    const t0 = performance.now();
    while (status !== 200 && performance.now() - t0 < 15_000) {
      status = (await timedWrite(c, k(5000 + tries), "after")).r.status;
      tries++;
    }
    assert.equal(status, 200, `a write succeeds again within 15 s (${tries} tries, ${(performance.now() - t0).toFixed(0)} ms)`);
  } finally {
    if (tracer) {
      try { tracer.kill("SIGKILL"); } catch { /* gone */ }
      await tracer.status;
    }
    await stopServer("giveups");
  }
}, 120_000);

plainTest("settings: busy-timeout and sqlite-file-mode are validated (--check-config)", async () => {
  const bin = Deno.env.get("DENOKV_FCGI_BIN")!;
  const check = (...args: string[]) =>
    run([bin, "--sqlite-path", `${RUN_DIR}/check.sqlite`, "--access-token", "check-config-token", ...args, "--check-config"]);
  const good = await check("--busy-timeout", "250", "--sqlite-file-mode", "0640");
  assert.equal(good.code, 0, `busy-timeout 250 and sqlite-file-mode 0640 are accepted: ${good.stderr}`);
  const fast = await check("--busy-timeout", "5");
  assert.equal(fast.code, 2, "busy-timeout 5 (below 10 ms) is refused with exit 2");
  assert.match(fast.stderr, /busy-timeout: "5" is not a number from 10 to 600000/, fast.stderr);
  const locked = await check("--sqlite-file-mode", "0440");
  assert.equal(locked.code, 2, "a mode the owner cannot write is refused with exit 2");
  assert.match(locked.stderr, /sqlite-file-mode: 0440 does not let the server read and write/, locked.stderr);
  const notOctal = await check("--sqlite-file-mode", "rw");
  assert.equal(notOctal.code, 2, "a mode that is not octal is refused");
});
