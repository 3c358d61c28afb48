// Watch limits of one worker, with instances started here on the stack's
// database and spoken to in FastCGI straight over their sockets (no proxy
// buffering in between, so what the server holds is what the test sees):
//
// - the output budget: streams whose clients stop reading are dropped,
//   slowest first, once the worker's unsent watch output passes
//   watch-output-budget, and the drop is logged; a stream that reads
//   keeps going;
// - the stream cap follows the open-files limit: past it a watch gets 503
//   "too many open watches", and the worker keeps serving, instead of
//   running out of descriptors.

import { assert, encAtomicWrite, MutationType, parseEnvFile, RawClient, run, RUN_DIR, sleep, STACK, uniquePrefix, ValueEncoding, withTimeout } from "./helpers.ts";
import { encWatch, fcgiRead, fcgiRequest, rawKey } from "./watch_lib.ts";

const dec = new TextDecoder();
const te = new TextEncoder();

// Starts instance name with options, under an open-files limit if given.
async function instance(name: string, args: string, nofile?: number): Promise<Record<string, string>> {
  const cmd = nofile
    ? ["bash", "-c", `ulimit -n ${nofile} && exec "$0" "$@"`, STACK, "start-server", RUN_DIR, name]
    : [STACK, "start-server", RUN_DIR, name];
  const r = await run(cmd, { env: { SERVER_ARGS: args } });
  if (r.code !== 0) throw new Error(`start-server ${name} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return parseEnvFile(`${RUN_DIR}/${name}.env`);
}

function test(name: string, fn: () => Promise<void>, timeout = 120_000) {
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn: () => withTimeout(fn(), timeout, name) });
}

// The response headers and one complete watch frame after them.
function headersAndFrame(stdout: Uint8Array): boolean {
  const s = dec.decode(stdout);
  const h = s.indexOf("\r\n\r\n");
  if (h < 0) return false;
  const rest = stdout.subarray(te.encode(s.slice(0, h + 4)).length);
  return rest.length >= 4 && rest.length >= 4 + (rest[0] | (rest[1] << 8) | (rest[2] << 16));
}

function closeAll(conns: Deno.Conn[]) {
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // closed
    }
  }
}

test("watch output past the worker's budget drops the slowest streams, logs it, and spares a reading stream", async () => {
  const env = await instance("wbudget", "--workers 1 --watch-output-budget 1");
  const raw = await RawClient.open(env.H1_URL);
  const key = rawKey([...uniquePrefix("budget"), "k"]);
  const big = new Uint8Array(60 * 1024).fill(7);
  const set = (v: Uint8Array) =>
    raw.write({ mutations: [{ key, type: MutationType.SET, value: { data: v, encoding: ValueEncoding.BYTES } }] });
  await set(big);
  const watch = fcgiRequest("/v2/watch", encWatch([key]), raw.meta.databaseId, raw.meta.token);
  const stalled: Deno.Conn[] = [];
  let reader: Deno.Conn | undefined;
  try {
    for (let i = 0; i < 6; i++) {
      const c = await Deno.connect({ transport: "unix", path: env.SOCKET });
      stalled.push(c);
      await c.write(watch);
      const r = await withTimeout(fcgiRead(c, headersAndFrame), 20_000, "initial frame");
      assert.ok(headersAndFrame(r.stdout), `stalled stream ${i}: ${dec.decode(r.stdout).slice(0, 120)}`);
    }
    reader = await Deno.connect({ transport: "unix", path: env.SOCKET });
    await reader.write(watch);
    // The reading stream reads everything, all the time.
    let lastSeen = "";
    const pump = fcgiRead(reader, (out) => {
      lastSeen = dec.decode(out.subarray(Math.max(0, out.length - 64)));
      return lastSeen.includes("budget-done");
    });
    // 40 frames of 60 KiB per stream: 2.4 MiB each that nobody reads.
    for (let i = 0; i < 40; i++) await set(big.map((_, j) => (i + j) & 255));
    await set(te.encode("budget-done"));
    const got = await withTimeout(pump, 30_000, "the reading stream gets the last value");
    assert.ok(!got.ended, "the reading stream was not ended");
    assert.ok(dec.decode(got.stdout.subarray(got.stdout.length - 64)).includes("budget-done"));
    // The log names the budget; the stalled streams were closed.
    let log = "";
    for (const t0 = Date.now(); Date.now() - t0 < 10_000; await sleep(100)) {
      log = Deno.readTextFileSync(env.LOG);
      if (log.includes("over its budget")) break;
    }
    assert.match(log, /watch output over its budget of 1048576 bytes: dropped the \d+ slowest streams/);
    let closed = 0;
    for (const c of stalled) {
      // Drain what the kernel still holds: a dropped stream then ends
      // (without FastCGI's END_REQUEST); a stream still open goes on.
      const ended = await Promise.race([
        fcgiRead(c, () => false).then((r) => !r.ended, () => true),
        sleep(5000).then(() => false),
      ]);
      if (ended) closed++;
    }
    assert.ok(closed >= 1, `at least one stalled stream was dropped (${closed} of ${stalled.length})`);
  } finally {
    closeAll(stalled);
    if (reader) closeAll([reader]);
  }
});

// One commit that every stream watches must not let the worker queue a
// frame for each of them before the budget is looked at: the budget bounds
// what the worker holds at any moment, not only between two commits.
test("one commit to many stalled streams keeps the worker's held output within its budget", async () => {
  const env = await instance("wburst", "--workers 1 --watch-output-budget 1");
  const raw = await RawClient.open(env.H1_URL);
  const prefix = uniquePrefix("burst");
  const keys = Array.from({ length: 10 }, (_, i) => rawKey([...prefix, `k${i}`]));
  const watch = fcgiRequest("/v2/watch", encWatch(keys), raw.meta.databaseId, raw.meta.token);
  const stalled: Deno.Conn[] = [];
  try {
    // Sixty streams of ten absent keys: tiny first frames, nothing held.
    for (let i = 0; i < 60; i++) {
      const c = await Deno.connect({ transport: "unix", path: env.SOCKET });
      stalled.push(c);
      await c.write(watch);
      const r = await withTimeout(fcgiRead(c, headersAndFrame), 20_000, "initial frame");
      assert.ok(headersAndFrame(r.stdout), `stream ${i}: ${dec.decode(r.stdout).slice(0, 120)}`);
    }
    // One write of ten 60 KiB values: a 600 KiB frame for every stream,
    // which none of them reads.
    const res = await raw.write({
      mutations: keys.map((key, i) => ({
        key,
        type: MutationType.SET,
        value: { data: new Uint8Array(60 * 1024).fill(i), encoding: ValueEncoding.BYTES },
      })),
    });
    assert.ok(res, "the write committed");
    let log = "";
    for (const t0 = Date.now(); Date.now() - t0 < 10_000; await sleep(100)) {
      log = Deno.readTextFileSync(env.LOG);
      if (log.includes("over its budget")) break;
    }
    // The log says how much the worker held at most (its own count of
    // output buffers, which a sanitizer build does not inflate as it does
    // resident memory). Without the bound: a frame for each of the 60.
    const held = log.match(/over its budget of 1048576 bytes: dropped .* at most (\d+) bytes were held/);
    assert.ok(held, `the drop is logged with what was held: ${log.slice(-400)}`);
    assert.ok(Number(held[1]) <= 2 * 1048576, `the worker held at most ${held[1]} bytes of output`);
    // The worker still answers.
    const r = await raw.post("snapshot_read", new Uint8Array(0));
    assert.ok(r.status < 500, `a read is still served (${r.status} ${r.text})`);
  } finally {
    closeAll(stalled);
  }
});

test("a worker past its watch cap (from the open-files limit) answers 503 'too many open watches' and keeps serving", async () => {
  // 128 descriptors: the cap is 128 - 64 = 64 watches for the one worker.
  const env = await instance("wcap", "--workers 1", 128);
  const raw = await RawClient.open(env.H1_URL);
  const key = rawKey([...uniquePrefix("cap"), "k"]);
  const watch = fcgiRequest("/v2/watch", encWatch([key]), raw.meta.databaseId, raw.meta.token);
  const conns: Deno.Conn[] = [];
  let open = 0, refused = 0, other = "";
  try {
    for (let i = 0; i < 100; i++) {
      const c = await Deno.connect({ transport: "unix", path: env.SOCKET });
      conns.push(c);
      await c.write(watch);
      const r = await withTimeout(
        fcgiRead(c, headersAndFrame),
        20_000,
        `watch ${i} answered (a worker out of descriptors answers nothing)`,
      );
      const text = dec.decode(r.stdout);
      if (headersAndFrame(r.stdout)) open++;
      else if (/^Status: 503/.test(text) && /too many open watches/i.test(text)) refused++;
      else other ||= text.slice(0, 200);
    }
    assert.equal(other, "", "every watch was either opened or refused with the 503 text");
    assert.ok(open >= 32 && open <= 64, `the cap sits below the descriptor limit (${open} opened)`);
    assert.equal(open + refused, 100);
    // The worker still answers other requests.
    const r = await raw.post("snapshot_read", new Uint8Array(0));
    assert.ok(r.status < 500, `a read is still served (${r.status} ${r.text})`);
    assert.ok(!Deno.readTextFileSync(env.LOG).includes("Too many open files"), "no descriptor ran out");
  } finally {
    closeAll(conns);
  }
});
