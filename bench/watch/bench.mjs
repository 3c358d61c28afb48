// bench.mjs: the phases of the watch benchmark (see README.md). Started by
// run.sh once nginx and denokv-fcgi are up and the keys are seeded; all
// settings come from the environment run.sh sets.
import { fork, spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { now, pct } from "./kv.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const E = process.env;
const num = (k) => {
  const v = Number(E[k]);
  if (!Number.isFinite(v)) throw new Error(`${k} is not set to a number`);
  return v;
};
const cfg = {
  h1: E.H1_BASE,
  h2: E.H2_BASE,
  token: E.TOKEN,
  serverPid: num("SERVER_PID"),
  nginxPid: num("NGINX_PID"),
  watches: num("WATCHES"),
  keys: num("WATCH_KEYS"),
  perConn: num("STREAMS_PER_CONN"),
  pending: num("OPEN_PENDING"),
  rate: num("RATE"),
  writeSeconds: num("WRITE_SECONDS"),
  writerConns: num("WRITER_CONNS"),
  readSeconds: num("READ_SECONDS"),
  rounds: num("READ_ROUNDS"),
  wrk: E.WRK,
  wrkThreads: num("WRK_THREADS"),
  wrkConns: num("WRK_CONNS"),
  wrkScript: E.WRK_SCRIPT,
  readBodies: E.READ_BODIES,
  readUrl: E.READ_URL,
  dbId: E.DB_ID,
  dataToken: E.DATA_TOKEN,
  out: E.OUT_DIR,
};
const PREFIX = "watch";

function log(s) {
  process.stderr.write(`==> ${s}\n`);
}

// ---------------------------------------------------------------------------
// /proc

function children(pid) {
  const out = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

function tree(pid) {
  const all = [pid];
  for (const c of children(pid)) all.push(...tree(c));
  return all;
}

function rssKiB(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function cpuTicks(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch {
    return 0;
  }
}

function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const serverPids = () => tree(cfg.serverPid);
const nginxPids = () => tree(cfg.nginxPid);
const serverRss = () => sum(serverPids().map(rssKiB));
const nginxRss = () => sum(nginxPids().map(rssKiB));
const serverFds = () => sum(serverPids().map(fdCount));

const clientPids = [];
function cpuMeter() {
  const t0 = now();
  const s0 = sum(serverPids().map(cpuTicks)), n0 = sum(nginxPids().map(cpuTicks));
  const c0 = sum(clientPids.map(cpuTicks));
  return () => {
    const secs = (now() - t0) / 1000;
    const s1 = sum(serverPids().map(cpuTicks)), n1 = sum(nginxPids().map(cpuTicks));
    const c1 = sum(clientPids.map(cpuTicks));
    // clock ticks are 1/100 s on Linux: ticks / secs = percent of one core
    return { server: (s1 - s0) / secs, nginx: (n1 - n0) / secs, clients: (c1 - c0) / secs };
  };
}

function serverAlive() {
  try {
    process.kill(cfg.serverPid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// child processes

function child(file) {
  const c = fork(join(HERE, file), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  clientPids.push(c.pid);
  const queue = [];
  const waiters = [];
  c.on("message", (m) => {
    if (waiters.length) waiters.shift()(m);
    else queue.push(m);
  });
  c.on("exit", (code, sig) => {
    for (const w of waiters.splice(0)) w({ type: "error", message: `${file} exited (${code ?? sig})` });
  });
  const next = () => queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r));
  return {
    proc: c,
    async ask(msg, want) {
      c.send(msg);
      const m = await next();
      if (m.type === "error") throw new Error(`${file}: ${m.message}`);
      if (m.type !== want) throw new Error(`${file}: expected ${want}, got ${JSON.stringify(m).slice(0, 300)}`);
      return m;
    },
    async hello() {
      const m = await next();
      if (m.type !== "hello") throw new Error(`${file}: ${JSON.stringify(m)}`);
    },
  };
}

// ---------------------------------------------------------------------------
// wrk

function wrk(name) {
  return new Promise((resolve, reject) => {
    const args = [`-t${cfg.wrkThreads}`, `-c${cfg.wrkConns}`, `-d${cfg.readSeconds}s`, "--timeout", "10s", "-s", cfg.wrkScript, cfg.readUrl];
    const p = spawn(cfg.wrk, args, {
      env: {
        ...process.env,
        BENCH_NAME: name,
        BENCH_BODIES: cfg.readBodies,
        DENOKV_TOKEN: cfg.dataToken,
        DENOKV_DATABASE_ID: cfg.dbId,
        DENOKV_VERSION: "3",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    p.stdout.on("data", (d) => out += d);
    p.stderr.on("data", (d) => out += d);
    p.on("exit", (code) => {
      writeFileSync(join(cfg.out, `wrk-${name}.txt`), out);
      const line = out.split("\n").find((l) => l.startsWith("RESULT "));
      if (code !== 0 || !line) return reject(new Error(`wrk ${name} failed (exit ${code}):\n${out}`));
      const f = Object.fromEntries(line.slice(7).split(" ").map((kv) => kv.split("=")));
      for (const k of ["non2xx", "bad", "connect_err", "read_err", "write_err", "timeouts"]) {
        if (Number(f[k]) !== 0) return reject(new Error(`wrk ${name}: ${k}=${f[k]} (every read must be a valid 200):\n${out}`));
      }
      if (/Non-2xx/.test(out)) return reject(new Error(`wrk ${name}: non-2xx responses:\n${out}`));
      resolve({ rps: Number(f.rps), p50: Number(f.p50_us) / 1000, p99: Number(f.p99_us) / 1000, requests: Number(f.requests) });
    });
  });
}

// ---------------------------------------------------------------------------
// latency

let seq = 1;

function analyse(w, d, label, usage) {
  d ??= { seq: [], sentAt: [], at: [], stream: [], counters: {}, errors: [] };
  const ack = new Map(w.acks.map(([s, sent, a]) => [s, { sent, ack: a }]));
  const fromSent = [], fromAck = [];
  // Each stream's newest value in this phase. A write counts as delivered
  // to a watcher of its key once that watcher has seen it or a later write
  // of the same key (a watch reports the current state; two quick writes to
  // one key may arrive as one frame).
  const maxSeen = new Map();
  for (let i = 0; i < d.seq.length; i++) {
    const a = ack.get(d.seq[i]);
    if (!a) continue; // an earlier phase's value
    fromSent.push(d.at[i] - d.sentAt[i]);
    fromAck.push(d.at[i] - a.ack);
    if ((maxSeen.get(d.stream[i]) ?? 0) < d.seq[i]) maxSeen.set(d.stream[i], d.seq[i]);
  }
  fromSent.sort((a, b) => a - b);
  fromAck.sort((a, b) => a - b);
  const rtt = w.acks.map(([, sent, a]) => a - sent).sort((a, b) => a - b);
  let missed = 0, expected = 0;
  for (const [s, , , key] of w.acks) {
    for (let st = key; st < cfg.watches; st += cfg.keys) {
      expected++;
      if ((maxSeen.get(st) ?? 0) < s) missed++;
    }
  }
  const r = {
    label,
    writesSent: w.sent,
    writesOk: w.ok,
    writeErrors: w.errors,
    writeErrorSamples: w.errorSamples,
    late: w.late,
    maxLateMs: w.maxLateMs,
    rate: w.ok / w.seconds,
    deliveries: fromSent.length,
    expected,
    missed,
    p50: pct(fromSent, 50),
    p90: pct(fromSent, 90),
    p99: pct(fromSent, 99),
    max: fromSent[fromSent.length - 1],
    ackP50: pct(fromAck, 50),
    ackP99: pct(fromAck, 99),
    rttP50: pct(rtt, 50),
    rttP99: pct(rtt, 99),
    counters: d.counters,
    watcherErrors: d.errors,
    cpu: usage,
  };
  writeFileSync(join(cfg.out, `latency-${label}.json`), JSON.stringify({ ...r, fromSent, fromAck, rtt, acks: w.acks }));
  return r;
}

// ---------------------------------------------------------------------------

function cpuSteal() {
  // aggregate "cpu" line of /proc/stat: user nice system idle iowait irq softirq steal
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), steal: f[7] ?? 0, idle: f[3] + f[4] };
}

async function openWatches(watchers, res) {
  const o = await watchers.ask({
    cmd: "open",
    base: cfg.h2,
    metaBase: cfg.h1,
    token: cfg.token,
    n: cfg.watches,
    keys: cfg.keys,
    prefix: PREFIX,
    perConn: cfg.perConn,
    pending: cfg.pending,
  }, "opened");
  log(`opened ${o.opened}, failed ${o.failed} in ${(o.ms / 1000).toFixed(1)} s over ${o.conns} connections${o.errors.length ? `; errors: ${o.errors.join("; ")}` : ""}`);
  if (o.opened !== cfg.watches) throw new Error(`only ${o.opened} of ${cfg.watches} watch streams opened`);
  res.open ??= o;
  // Every stream holds one socket in some worker.
  const deadline = now() + 10000;
  while (serverFds() < res.fds0 + cfg.watches && now() < deadline) await sleep(100);
  if (serverFds() < res.fds0 + cfg.watches) throw new Error(`the server holds ${serverFds()} fds, expected >= ${res.fds0 + cfg.watches}`);
  await sleep(1000);
}

async function closeWatches(watchers, res) {
  await watchers.ask({ cmd: "close" }, "closed");
  const deadline = now() + 15000;
  let fds = serverFds();
  while (fds > res.fds0 + 2 && now() < deadline) {
    await sleep(100);
    fds = serverFds();
  }
  return fds;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function readRun(name) {
  const cpu = cpuMeter();
  const r = await wrk(name);
  r.cpu = cpu();
  log(`  ${name}: ${r.rps.toFixed(1)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`);
  return r;
}

async function main() {
  const res = {};
  const kib = (x) => `${(x / 1024).toFixed(1)} MiB`;
  const steal0 = cpuSteal();

  log("warm-up read (3 s, not reported)");
  const saved = cfg.readSeconds;
  cfg.readSeconds = 3;
  await wrk("warmup");
  cfg.readSeconds = saved;

  await sleep(1000);
  res.rss0 = serverRss();
  res.nginxRss0 = nginxRss();
  res.fds0 = serverFds();
  log(`server RSS before watches: ${kib(res.rss0)} (${serverPids().length} processes), nginx ${kib(res.nginxRss0)}, server fds ${res.fds0}`);

  const writer = child("writer.mjs");
  await writer.hello();
  const watchers = child("watchers.mjs");
  await watchers.hello();
  const writeRun = (seconds) => {
    const p = writer.ask({ cmd: "run", base: cfg.h1, token: cfg.token, rate: cfg.rate, seconds, keys: cfg.keys, prefix: PREFIX, conns: cfg.writerConns, seq0: seq }, "done");
    seq += Math.round(cfg.rate * seconds);
    return p;
  };

  log(`writes at ${cfg.rate}/s for ${cfg.writeSeconds} s, no watches (the write round trip for reference)`);
  let cpu = cpuMeter();
  res.writeRef = analyse(await writeRun(cfg.writeSeconds), null, "writes_nowatch", cpu());

  // Point reads without and with the streams, alternating, so that drift
  // in the machine's load (other tenants, CPU steal) hits both sides.
  res.read0 = [];
  res.read1 = [];
  for (let round = 1; round <= cfg.rounds; round++) {
    log(`round ${round}/${cfg.rounds}: reads without watches, then with ${cfg.watches} idle watches`);
    res.read0.push(await readRun(`read_nowatch_${round}`));
    await openWatches(watchers, res);
    if (round === 1) {
      res.rss1 = serverRss();
      res.nginxRss1 = nginxRss();
      res.fds1 = serverFds();
      log(`server RSS with watches: ${kib(res.rss1)}, nginx ${kib(res.nginxRss1)}, server fds ${res.fds1}`);
    }
    res.read1.push(await readRun(`read_watch_${round}`));
    if (round < cfg.rounds) await closeWatches(watchers, res);
  }

  log(`writes at ${cfg.rate}/s for ${cfg.writeSeconds} s to random watched keys; measuring delivery`);
  await watchers.ask({ cmd: "record" }, "recording");
  cpu = cpuMeter();
  const wl = await writeRun(cfg.writeSeconds);
  const usage = cpu();
  await sleep(2000); // the last changes arrive
  res.lat = analyse(wl, await watchers.ask({ cmd: "collect" }, "deliveries"), "writes_only", usage);
  res.rss2 = serverRss();
  res.nginxRss2 = nginxRss();

  log(`reads while writing ${cfg.rate}/s, with the watches open`);
  await watchers.ask({ cmd: "record" }, "recording");
  let wp = writeRun(cfg.readSeconds + 2);
  await sleep(1000);
  res.readW1 = await readRun("read_writes_watch");
  const wYes = await wp;
  await sleep(2000);
  res.latLoaded = analyse(wYes, await watchers.ask({ cmd: "collect" }, "deliveries"), "writes_and_reads", res.readW1.cpu);
  res.rss3 = serverRss();

  log("closing the watch streams");
  res.fdsAfter = await closeWatches(watchers, res);
  res.rssAfter = serverRss();

  log(`reads while writing ${cfg.rate}/s, no watches`);
  wp = writeRun(cfg.readSeconds + 2);
  await sleep(1000);
  res.readW0 = await readRun("read_writes_nowatch");
  res.writeNoWatch = analyse(await wp, null, "writes_reads_nowatch", res.readW0.cpu);

  writer.proc.kill();
  watchers.proc.kill();
  if (!serverAlive()) throw new Error("denokv-fcgi is gone");
  const steal1 = cpuSteal();
  res.steal = (100 * (steal1.steal - steal0.steal)) / (steal1.total - steal0.total);
  res.idle = (100 * (steal1.idle - steal0.idle)) / (steal1.total - steal0.total);
  writeFileSync(join(cfg.out, "results.json"), JSON.stringify(res, null, 2));
  report(res);
}

function report(r) {
  const f1 = (x) => Number.isFinite(x) ? x.toFixed(1) : "-";
  const f2 = (x) => Number.isFinite(x) ? x.toFixed(2) : "-";
  const perStream1 = ((r.rss1 - r.rss0) * 1024) / cfg.watches;
  const perStream2 = ((Math.max(r.rss2, r.rss3) - r.rss0) * 1024) / cfg.watches;
  const nginxPer = ((r.nginxRss1 - r.nginxRss0) * 1024) / cfg.watches;
  const m0 = median(r.read0.map((x) => x.rps)), m1 = median(r.read1.map((x) => x.rps));
  const ratio = m1 / m0;
  const ratioW = r.readW1.rps / r.readW0.rps;
  const L = r.lat;
  const out = [];
  out.push("");
  out.push(`denokv-fcgi watch benchmark, ${new Date().toISOString().replace("T", " ").slice(0, 19)} UTC`);
  out.push(E.REPORT_HEADER ?? "");
  out.push(`machine during the run: ${f1(r.idle)}% idle, ${f1(r.steal)}% CPU steal (other tenants of the host); figures move with both`);
  out.push("");
  out.push(`watch streams: ${cfg.watches} over ${r.open.conns} h2c connections to nginx (up to ${cfg.perConn} per connection), ${cfg.keys} watched keys, 1 key per stream; all opened (initial frame received) in ${f1(r.open.ms / 1000)} s`);
  out.push(`writer: ${cfg.rate} writes/s target (open loop, at most ${cfg.writerConns} in flight over HTTP/1.1 keep-alive), one M_SET of a random watched key per write`);
  out.push("");
  out.push("writes                                     writes/s  late   RTT p50  RTT p99   server CPU%  nginx CPU%  clients CPU%");
  const wrow = (n, x) =>
    `  ${n.padEnd(40)} ${f1(x.rate).padStart(8)} ${String(x.late).padStart(5)} ${f2(x.rttP50).padStart(9)} ${f2(x.rttP99).padStart(8)}  ${x.cpu ? f1(x.cpu.server).padStart(11) : "          -"} ${x.cpu ? f1(x.cpu.nginx).padStart(11) : "          -"} ${x.cpu ? f1(x.cpu.clients).padStart(13) : "            -"}`;
  out.push(wrow("no watches", r.writeRef));
  out.push(wrow(`${cfg.watches} watches open`, L));
  out.push(wrow("no watches, with wrk reads", r.writeNoWatch));
  out.push(wrow(`${cfg.watches} watches open, with wrk reads`, r.latLoaded));
  out.push("  (RTT: write request sent -> commit acknowledged, ms; late: writes sent > 5 ms after their slot because all connections were busy)");
  out.push("");
  out.push("change-to-delivery latency, ms           p50      p90      p99      max   deliveries  missed");
  const lrow = (n, x, a, b, c, d) => `  ${n.padEnd(36)} ${f2(a).padStart(7)}  ${f2(b).padStart(7)}  ${f2(c).padStart(7)}  ${f2(d).padStart(7)}  ${String(x.deliveries).padStart(11)}  ${String(x.missed).padStart(6)}`;
  out.push(lrow("from commit ack, writes only", L, L.ackP50, NaN, L.ackP99, NaN));
  out.push(lrow("from write sent, writes only", L, L.p50, L.p90, L.p99, L.max));
  const X = r.latLoaded;
  out.push(lrow("from commit ack, with wrk reads", X, X.ackP50, NaN, X.ackP99, NaN));
  out.push(lrow("from write sent, with wrk reads", X, X.p50, X.p90, X.p99, X.max));
  out.push("  (the commit happens between the write being sent and its acknowledgement: \"from write sent\" includes the write's own");
  out.push("   round trip and is an upper bound; \"from commit ack\" is delivery time minus the time the writer got the 200, a slight");
  out.push("   underestimate, negative when the frame beats the acknowledgement)");
  out.push(`  (deliveries: frames carrying a write of the phase, ${L.expected} expected for the first phase without coalescing; missed: write/watcher pairs whose watcher never saw that write or a later one of its key)`);
  const c = X.counters; // cumulative since the streams opened
  out.push(`  all frames: ${c.frames} checked, ${c.bad} bad; ${c.keepalives} keep-alives; ${c.closedEarly} streams ended early; write errors ${r.writeRef.writeErrors + L.writeErrors + r.writeNoWatch.writeErrors + X.writeErrors}`);
  out.push("");
  out.push("server memory (RSS, sum of master + workers + housekeeper)");
  out.push(`  before watches                 ${f1(r.rss0 / 1024).padStart(8)} MiB`);
  out.push(`  ${String(cfg.watches).padEnd(6)} watches open           ${f1(r.rss1 / 1024).padStart(8)} MiB   -> ${f2(perStream1 / 1024)} KiB per stream`);
  out.push(`  after the write phases         ${f1(Math.max(r.rss2, r.rss3) / 1024).padStart(8)} MiB   -> ${f2(perStream2 / 1024)} KiB per stream`);
  out.push(`  after closing them             ${f1(r.rssAfter / 1024).padStart(8)} MiB;  server fds ${r.fds0} before, ${r.fds1} open, ${r.fdsAfter} after`);
  out.push(`  nginx, for reference           ${f1(r.nginxRss0 / 1024)} -> ${f1(r.nginxRss1 / 1024)} MiB, ${f2(nginxPer / 1024)} KiB per stream`);
  out.push("");
  out.push(`point reads (wrk -t${cfg.wrkThreads} -c${cfg.wrkConns}, ${cfg.readSeconds} s each, HTTP/1.1)  req/s   p50 ms   p99 ms   server CPU%  nginx CPU%  clients CPU%`);
  const row = (n, x) => `  ${n.padEnd(42)} ${f1(x.rps).padStart(8)} ${f2(x.p50).padStart(8)} ${f2(x.p99).padStart(8)} ${f1(x.cpu.server).padStart(11)} ${f1(x.cpu.nginx).padStart(11)} ${f1(x.cpu.clients).padStart(13)}`;
  for (let i = 0; i < r.read0.length; i++) {
    out.push(row(`round ${i + 1}: no watches`, r.read0[i]));
    out.push(row(`round ${i + 1}: ${cfg.watches} watches open, idle`, r.read1[i]));
  }
  out.push(row(`no watches, writer at ${cfg.rate}/s`, r.readW0));
  out.push(row(`${cfg.watches} watches open, writer at ${cfg.rate}/s`, r.readW1));
  out.push(`  median req/s: ${f1(m0)} without, ${f1(m1)} with idle watches; per-round ratios ${r.read1.map((x, i) => f2(x.rps / r.read0[i].rps)).join(", ")}`);
  out.push("  (CPU%: percent of one core; clients = the Node watcher and writer processes, not wrk)");
  out.push("");
  out.push("against the targets:");
  const mark = (ok) => ok ? "met" : "NOT MET";
  out.push(`  p99 change-to-delivery < 50 ms        from commit ack ${f2(L.ackP99)} ms (${mark(L.ackP99 < 50)}), from write sent ${f2(L.p99)} ms (${mark(L.p99 < 50)})`);
  out.push(`                                        with wrk reads: ${f2(X.ackP99)} ms (${mark(X.ackP99 < 50)}), ${f2(X.p99)} ms (${mark(X.p99 < 50)})`);
  out.push(`  < 16 KiB server memory per watch      ${f2(perStream1 / 1024)} KiB at open, ${f2(perStream2 / 1024)} KiB after the writes (${mark(Math.max(perStream1, perStream2) < 16 * 1024)})`);
  out.push(`  reads with watches >= 80% of without  ${f2(ratio)} (medians, idle watches) (${mark(ratio >= 0.8)}); ${f2(ratioW)} with the writer running (${mark(ratioW >= 0.8)})`);
  const text = out.join("\n") + "\n";
  process.stdout.write(text);
  writeFileSync(join(cfg.out, "report.txt"), text);
}

main().catch((e) => {
  process.stderr.write(`\nBENCHMARK FAILED: ${e?.stack ?? e}\n`);
  process.exit(1);
});
