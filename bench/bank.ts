/// <reference lib="deno.unstable" />
// bank.ts: a bank-transfer workload against a KV Connect server, through the
// Deno CLI's own KV client (HTTP/2), after the workload of denokv's
// scripts/benchmark.ts.
//
// N accounts start at 0n. W writer loops each move a random amount between
// two accounts picked with a hot-spot skew: read both (one getMany), then an
// atomic write that checks both versionstamps and sets both balances. A lost
// race is a conflict (commit returns ok: false) and is counted, not retried.
// R reader loops each read one uniformly random account. After D seconds all
// loops stop and the balances are summed: transfers conserve money, so the
// sum must still be 0n, whatever the conflicts were.
//
// Run (bench/run.sh does this for you):
//   DENO_KV_ACCESS_TOKEN=... deno run --unstable-kv --allow-net=127.0.0.1 \
//     --allow-env=DENO_KV_ACCESS_TOKEN bench/bank.ts --url http://127.0.0.1:PORT \
//     [--accounts 1000] [--readers 128] [--writers 32] [--duration 10] \
//     [--skew 3] [--prefix bank] [--verify 0] [--cpu "NAME=PID,PID ..."]
//
// --verify 0 skips the checks of what is read back (values, the final sum),
// for a target that stores nothing (bench/perf's trivial responder).
// --cpu samples /proc/PID/stat of each named group of processes (and of
// this client, "client") at the start and end of the measured phase and
// prints the CPU each group used, in cores, user and system apart:
//   RESULT_CPU name=server user=0.21 sys=0.40 total=0.61
// (Deno lets a program read /proc/PID only with --allow-all).
//
// Prints one line per second, a summary, and a machine-readable line:
//   RESULT name=bank ... reads_per_s=... transfers_per_s=... consistency=ok
// Exits non-zero if an operation fails or the consistency check fails.

interface Options {
  url: string;
  accounts: number;
  readers: number;
  writers: number;
  duration: number;
  skew: number;
  prefix: string;
  verify: boolean;
  cpu: Map<string, number[]> | null;
}

function parseArgs(args: string[]): Options {
  const o: Options = {
    url: "",
    accounts: 1000,
    readers: 128,
    writers: 32,
    duration: 10,
    skew: 3,
    prefix: "bank",
    verify: true,
    cpu: null,
  };
  for (let i = 0; i < args.length; i++) {
    let [name, value] = args[i].split("=", 2) as [string, string | undefined];
    if (!name.startsWith("--")) usage(`unexpected argument ${args[i]}`);
    name = name.slice(2);
    if (value === undefined) value = args[++i];
    if (value === undefined) usage(`--${name} needs a value`);
    switch (name) {
      case "url":
        o.url = value;
        break;
      case "prefix":
        o.prefix = value;
        break;
      case "verify":
        o.verify = value !== "0";
        break;
      case "cpu":
        o.cpu ??= new Map();
        for (const group of value.split(/\s+/).filter(Boolean)) {
          const [gname, list] = group.split("=", 2);
          const pids = (list ?? "").split(",").filter(Boolean).map(Number);
          if (!gname || pids.some((p) => !Number.isInteger(p) || p <= 0)) {
            usage(`bad --cpu group ${group}`);
          }
          o.cpu!.set(gname, pids);
        }
        break;
      case "accounts":
      case "readers":
      case "writers":
      case "duration":
      case "skew": {
        const n = Number(value);
        if (!Number.isFinite(n) || n < 0) usage(`bad --${name} ${value}`);
        o[name as "accounts" | "readers" | "writers" | "duration" | "skew"] =
          n;
        break;
      }
      default:
        usage(`unknown option --${name}`);
    }
  }
  if (!o.url) usage("--url is required");
  if (o.accounts < 2 || !Number.isInteger(o.accounts)) usage("--accounts >= 2");
  if (o.writers + o.readers < 1) usage("need at least one reader or writer");
  if (o.duration <= 0) usage("--duration > 0");
  return o;
}

function usage(msg: string): never {
  console.error(`bank.ts: ${msg}`);
  console.error(
    "usage: bank.ts --url URL [--accounts N] [--readers R] [--writers W] " +
      "[--duration SECONDS] [--skew K] [--prefix NAME] [--verify 0|1] " +
      "[--cpu \"NAME=PID,PID ...\"]",
  );
  Deno.exit(2);
}

// Runs tasks(i) for i in [0, n) with at most `limit` in flight.
async function pool(
  n: number,
  limit: number,
  task: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, lane));
}

function percentileUs(samplesMs: number[], p: number): number {
  if (samplesMs.length === 0) return 0;
  const sorted = Float64Array.from(samplesMs).sort();
  const idx = Math.min(
    sorted.length - 1,
    Math.max(0, Math.ceil(sorted.length * p / 100) - 1),
  );
  return Math.round(sorted[idx] * 1000);
}

// Clock ticks of user and system time of a process so far (fields 14 and
// 15 of /proc/PID/stat, counted after the parenthesised command name); a
// process that is gone counts as zero.
function cpuTicks(pid: number): [number, number] {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [0, 0];
    if (e instanceof Deno.errors.NotCapable) {
      usage("--cpu needs --allow-all (Deno guards /proc/PID behind it)");
    }
    throw e;
  }
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return [Number(f[11]), Number(f[12])];
}

function sampleCpu(groups: Map<string, number[]>): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const [name, pids] of groups) {
    let u = 0, s = 0;
    for (const pid of pids) {
      const [pu, ps] = cpuTicks(pid);
      u += pu;
      s += ps;
    }
    out.set(name, [u, s]);
  }
  return out;
}

const opt = parseArgs(Deno.args);
// With --cpu (even an empty one) the client itself is always sampled.
const cpuGroups = opt.cpu ?? new Map<string, number[]>();
if (opt.cpu) cpuGroups.set("client", [Deno.pid]);
const CLK_TCK = 100; // USER_HZ: what /proc reports in on Linux
const acct = (i: number): Deno.KvKey => [opt.prefix, i];
const BATCH = 100; // mutations per atomic write while preparing
const STALL_SECONDS = 10; // no progress for this long: the run has failed

// A broken server must not hang the benchmark forever.
const watchdogMs = (opt.duration + 120) * 1000;
const watchdog = setTimeout(() => {
  console.error(`bank.ts: no result after ${watchdogMs / 1000}s, giving up`);
  Deno.exit(3);
}, watchdogMs);

const kv = await Deno.openKv(opt.url);

// Start from exactly `accounts` accounts at 0n.
{
  const t0 = performance.now();
  const old: Deno.KvKey[] = [];
  for await (const e of kv.list({ prefix: [opt.prefix] })) old.push(e.key);
  await pool(Math.ceil(old.length / BATCH), 8, async (b) => {
    const op = kv.atomic();
    for (const k of old.slice(b * BATCH, (b + 1) * BATCH)) op.delete(k);
    await op.commit();
  });
  await pool(Math.ceil(opt.accounts / BATCH), 8, async (b) => {
    const op = kv.atomic();
    const end = Math.min(opt.accounts, (b + 1) * BATCH);
    for (let i = b * BATCH; i < end; i++) op.set(acct(i), 0n);
    const r = await op.commit();
    if (!r.ok) throw new Error("seeding commit failed");
  });
  console.log(
    `bank: deleted ${old.length} old keys, created ${opt.accounts} accounts ` +
      `in ${Math.round(performance.now() - t0)} ms`,
  );
}

const stats = { reads: 0, attempts: 0, transfers: 0, conflicts: 0 };
const readLat: number[] = [];
const writeLat: number[] = [];
let running = true;
let failure: unknown = null;

function fail(e: unknown) {
  if (failure === null) failure = e;
  running = false;
}

function pick(): number {
  return Math.floor(opt.accounts * Math.random() ** opt.skew);
}

async function writer() {
  while (running) {
    const a = pick();
    const b = pick();
    if (a === b) continue;
    const amount = BigInt(1 + Math.floor(Math.random() * 1000));
    const t0 = performance.now();
    const [ea, eb] = await kv.getMany<[bigint, bigint]>([acct(a), acct(b)]);
    if (!opt.verify) {
      ea.value ??= 0n;
      eb.value ??= 0n;
    } else if (typeof ea.value !== "bigint" || typeof eb.value !== "bigint") {
      throw new Error(`account ${a} or ${b} is missing or not a bigint`);
    }
    const r = await kv.atomic()
      .check(ea, eb)
      .set(acct(a), ea.value - amount)
      .set(acct(b), eb.value + amount)
      .commit();
    writeLat.push(performance.now() - t0);
    stats.attempts++;
    if (r.ok) stats.transfers++;
    else stats.conflicts++;
  }
}

async function reader() {
  while (running) {
    const i = Math.floor(Math.random() * opt.accounts);
    const t0 = performance.now();
    const e = await kv.get<bigint>(acct(i));
    readLat.push(performance.now() - t0);
    if (opt.verify && typeof e.value !== "bigint") {
      throw new Error(`account ${i} is missing or not a bigint`);
    }
    stats.reads++;
  }
}

console.log(
  `bank: ${opt.readers} readers, ${opt.writers} writers, ${opt.accounts} ` +
    `accounts, ${opt.duration} s, against ${opt.url}`,
);
const cpuBefore = sampleCpu(cpuGroups);
const start = performance.now();
let last = { ...stats };
let tick = 0;
let idleSeconds = 0;
const ticker = setInterval(() => {
  tick++;
  // The KV client retries failed calls forever: a dead server shows up as
  // no progress at all, which must end the run rather than hang it.
  if (stats.reads === last.reads && stats.attempts === last.attempts) {
    if (++idleSeconds >= STALL_SECONDS) {
      console.error(
        `bank: FAILED: no operation completed for ${STALL_SECONDS} s ` +
          `(is the server still up?)`,
      );
      Deno.exit(1);
    }
  } else {
    idleSeconds = 0;
  }
  console.log(
    `  t=${String(tick).padStart(3)}s reads/s=${
      String(stats.reads - last.reads).padStart(7)
    } transfers/s=${String(stats.transfers - last.transfers).padStart(6)} ` +
      `conflicts/s=${String(stats.conflicts - last.conflicts).padStart(6)}`,
  );
  last = { ...stats };
}, 1000);
const stopper = setTimeout(() => running = false, opt.duration * 1000);

const loops = [
  ...Array.from({ length: opt.writers }, () => writer().catch(fail)),
  ...Array.from({ length: opt.readers }, () => reader().catch(fail)),
];
await Promise.all(loops);
const elapsed = (performance.now() - start) / 1000;
const cpuAfter = sampleCpu(cpuGroups);
clearInterval(ticker);
clearTimeout(stopper);

if (failure !== null) {
  console.error("bank: FAILED:", failure);
  Deno.exit(1);
}

// Consistency: every account present, balances sum to zero.
let sum = 0n;
let count = 0;
let absSum = 0n;
for await (const e of kv.list<bigint>({ prefix: [opt.prefix] })) {
  if (!opt.verify) break;
  if (typeof e.value !== "bigint") {
    console.error(`bank: FAILED: ${JSON.stringify(e.key)} is not a bigint`);
    Deno.exit(1);
  }
  sum += e.value;
  absSum += e.value < 0n ? -e.value : e.value;
  count++;
}
const consistent = !opt.verify || (sum === 0n && count === opt.accounts);
const verdict = !opt.verify ? "skipped" : consistent ? "ok" : "FAILED";
kv.close();
clearTimeout(watchdog);

const r = (n: number) => (n / elapsed).toFixed(1);
console.log(
  `bank: ${stats.reads} reads (${r(stats.reads)}/s, p50 ${
    percentileUs(readLat, 50)
  } us, p99 ${percentileUs(readLat, 99)} us)`,
);
console.log(
  `bank: ${stats.transfers} transfers committed (${
    r(stats.transfers)
  }/s), ${stats.conflicts} conflicts of ${stats.attempts} attempts; ` +
    `transfer p50 ${percentileUs(writeLat, 50)} us, p99 ${
      percentileUs(writeLat, 99)
    } us (getMany + commit)`,
);
for (const [name, [u1, s1]] of cpuAfter) {
  const [u0, s0] = cpuBefore.get(name)!;
  const u = (u1 - u0) / CLK_TCK / elapsed, s = (s1 - s0) / CLK_TCK / elapsed;
  console.log(
    `RESULT_CPU name=${name} user=${u.toFixed(2)} sys=${s.toFixed(2)} ` +
      `total=${(u + s).toFixed(2)} pids=${cpuGroups.get(name)!.join(",")}`,
  );
}
console.log(
  `bank: consistency ${verdict}: ${count} accounts ` +
    `(expected ${opt.accounts}), sum ${sum} (expected 0), money moved ${absSum}`,
);
console.log(
  [
    "RESULT name=bank",
    `accounts=${opt.accounts}`,
    `readers=${opt.readers}`,
    `writers=${opt.writers}`,
    `seconds=${elapsed.toFixed(3)}`,
    `reads=${stats.reads}`,
    `reads_per_s=${r(stats.reads)}`,
    `read_p50_us=${percentileUs(readLat, 50)}`,
    `read_p99_us=${percentileUs(readLat, 99)}`,
    `attempts=${stats.attempts}`,
    `transfers=${stats.transfers}`,
    `transfers_per_s=${r(stats.transfers)}`,
    `conflicts=${stats.conflicts}`,
    `write_p50_us=${percentileUs(writeLat, 50)}`,
    `write_p99_us=${percentileUs(writeLat, 99)}`,
    `sum=${sum}`,
    `consistency=${verdict}`,
  ].join(" "),
);
Deno.exit(consistent ? 0 : 1);
