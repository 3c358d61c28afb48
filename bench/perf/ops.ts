/// <reference lib="deno.unstable" />
// ops.ts: per-operation rates of one KV target through the Deno CLI's own
// KV API: get, set, sum and list, each at the given concurrencies, one
// after the other in this process. The target is whatever Deno.openKv
// takes: a KV Connect URL, a file path, or ":memory:".
//
//   deno run --unstable-kv --allow-net=127.0.0.1 --allow-env --allow-read \
//     --allow-write bench/perf/ops.ts --url URL --ops get,set --conc 1,16,64 \
//     [--duration 2] [--warmup 0.3] [--keys 1000] [--list 100] [--verify 1]
//
// Keys: ["perf", "k", n] for n < keys, 16-byte string values, seeded once
// (a marker key remembers it); sum adds 1n to KvU64 counters
// ["perf", "c", n]; list reads `list` consecutive keys from a random n.
// With --verify 1 (the default) every answer is checked: get finds its
// value, set and sum commit, list returns exactly `list` entries; any
// failure ends the run. --verify 0 is for a target that stores nothing
// (the trivial responder).
//
// One line per cell:
//   RESULT name=ops op=get conc=16 ops=N seconds=S ops_per_s=R p50_us=... p99_us=...

interface Options {
  url: string;
  ops: string[];
  conc: number[];
  duration: number;
  warmup: number;
  keys: number;
  list: number;
  verify: boolean;
}

function usage(msg: string): never {
  console.error(`ops.ts: ${msg}`);
  console.error(
    "usage: ops.ts --url URL|PATH|:memory: [--ops get,set,sum,list] " +
      "[--conc 1,16,64] [--duration S] [--warmup S] [--keys N] [--list N] " +
      "[--verify 0|1]",
  );
  Deno.exit(2);
}

function parseArgs(args: string[]): Options {
  const o: Options = {
    url: "",
    ops: ["get", "set", "sum", "list"],
    conc: [1, 16, 64],
    duration: 2,
    warmup: 0.3,
    keys: 1000,
    list: 100,
    verify: true,
  };
  for (let i = 0; i < args.length; i++) {
    let [name, value] = args[i].split("=", 2) as [string, string | undefined];
    if (!name.startsWith("--")) usage(`unexpected argument ${args[i]}`);
    name = name.slice(2);
    if (value === undefined) value = args[++i];
    if (value === undefined) usage(`--${name} needs a value`);
    const num = () => {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) usage(`bad --${name} ${value}`);
      return n;
    };
    switch (name) {
      case "url":
        o.url = value;
        break;
      case "ops":
        o.ops = value.split(",").filter(Boolean);
        for (const op of o.ops) {
          if (!["get", "set", "sum", "list"].includes(op)) {
            usage(`unknown op ${op}`);
          }
        }
        break;
      case "conc":
        o.conc = value.split(",").map(Number);
        if (o.conc.some((c) => !Number.isInteger(c) || c < 1)) {
          usage(`bad --conc ${value}`);
        }
        break;
      case "duration":
        o.duration = num();
        break;
      case "warmup":
        o.warmup = num();
        break;
      case "keys":
        o.keys = num();
        break;
      case "list":
        o.list = num();
        break;
      case "verify":
        o.verify = value !== "0";
        break;
      default:
        usage(`unknown option --${name}`);
    }
  }
  if (!o.url) usage("--url is required");
  if (o.duration <= 0) usage("--duration > 0");
  if (o.keys < 2 || o.list < 1 || o.list > o.keys) usage("need 1 <= list <= keys");
  return o;
}

const opt = parseArgs(Deno.args);
const VALUE = "v".repeat(16);
const key = (n: number): Deno.KvKey => ["perf", "k", n];
const counter = (n: number): Deno.KvKey => ["perf", "c", n];
const COUNTERS = 100;
const rand = (n: number) => Math.floor(Math.random() * n);

// A broken target must not hang the benchmark: the remote client retries
// failed calls for ever.
const cells = opt.ops.length * opt.conc.length;
const watchdogMs = ((opt.duration + opt.warmup) * cells + 120) * 1000;
const watchdog = setTimeout(() => {
  console.error(`ops.ts: no result after ${watchdogMs / 1000}s, giving up`);
  Deno.exit(3);
}, watchdogMs);

const kv = await Deno.openKv(opt.url);

// Seed once per database: the marker holds the key count.
const marker = await kv.get<number>(["perf", "seeded"]);
if (!opt.verify || marker.value !== opt.keys) {
  const BATCH = 100;
  for (let b = 0; b < opt.keys; b += BATCH) {
    const op = kv.atomic();
    for (let n = b; n < Math.min(opt.keys, b + BATCH); n++) op.set(key(n), VALUE);
    if ((await op.commit()).ok !== true) throw new Error("seeding failed");
  }
  const op = kv.atomic();
  for (let n = 0; n < COUNTERS; n++) op.set(counter(n), new Deno.KvU64(0n));
  op.set(["perf", "seeded"], opt.keys);
  if ((await op.commit()).ok !== true) throw new Error("seeding failed");
}

function fail(what: string): never {
  throw new Error(`${what} (is the target answering correctly?)`);
}

const run: Record<string, () => Promise<void>> = {
  async get() {
    const e = await kv.get(key(rand(opt.keys)));
    if (opt.verify && e.value !== VALUE) fail(`get returned ${e.value}`);
  },
  async set() {
    const r = await kv.set(key(rand(opt.keys)), VALUE);
    if (opt.verify && r.ok !== true) fail("set did not commit");
  },
  async sum() {
    const r = await kv.atomic().sum(counter(rand(COUNTERS)), 1n).commit();
    if (opt.verify && r.ok !== true) fail("sum did not commit");
  },
  async list() {
    const n = rand(opt.keys - opt.list + 1);
    let count = 0;
    for await (
      const _ of kv.list({ start: key(n), end: key(n + opt.list) }, {
        batchSize: Math.min(opt.list, 500),
      })
    ) count++;
    if (opt.verify && count !== opt.list) {
      fail(`list returned ${count} entries, not ${opt.list}`);
    }
  },
};

function percentileUs(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * p / 100) - 1));
  return Math.round(sorted[i] * 1000);
}

// Runs `conc` loops of `op` for `seconds`; returns the count and the
// latencies of the operations that ended inside the window.
async function measure(op: string, conc: number, seconds: number) {
  const fn = run[op];
  const lat: number[] = [];
  let stop = false;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const loop = async () => {
    while (!stop) {
      const s = performance.now();
      await fn();
      const e = performance.now();
      if (e > end) {
        stop = true;
        break;
      }
      lat.push(e - s);
    }
  };
  const timer = setTimeout(() => stop = true, seconds * 1000);
  await Promise.all(Array.from({ length: conc }, loop));
  clearTimeout(timer);
  return { count: lat.length, seconds: Math.min(performance.now(), end) / 1000 - t0 / 1000, lat };
}

for (const op of opt.ops) {
  for (const conc of opt.conc) {
    if (opt.warmup > 0) await measure(op, conc, opt.warmup);
    const r = await measure(op, conc, opt.duration);
    const sorted = Float64Array.from(r.lat).sort();
    console.log(
      [
        "RESULT name=ops",
        `op=${op}`,
        `conc=${conc}`,
        `ops=${r.count}`,
        `seconds=${r.seconds.toFixed(3)}`,
        `ops_per_s=${(r.count / r.seconds).toFixed(1)}`,
        `p50_us=${percentileUs(sorted, 50)}`,
        `p99_us=${percentileUs(sorted, 99)}`,
      ].join(" "),
    );
  }
}
kv.close();
clearTimeout(watchdog);
Deno.exit(0);
