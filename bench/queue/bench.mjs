// bench/queue/bench.mjs: the measurements of bench/queue/run.sh, in one
// Deno process: delivery rate with 1 and 4 consumers and enqueue-to-
// delivery latency through nginx with clients/queue.mjs, the same with
// Deno's own local queue on a file, and server memory per idle long poll.
// Prints a report and writes results.json into $OUT_DIR.

import v8 from "node:v8";
import { openQueue } from "../../clients/queue.mjs";

const env = (k, d) => Deno.env.get(k) ?? d;
const URL_ = env("URL");
const TOKEN = env("TOKEN");
const LOCAL_DB = env("LOCAL_DB");
const SERVER_PID = env("SERVER_PID");
const OUT_DIR = env("OUT_DIR", ".");
const N = Number(env("MESSAGES", "5000"));
const LAT = Number(env("LATENCY_MESSAGES", "300"));
const POLLS = Number(env("POLLS", "300"));
const CONC = Number(env("CONCURRENCY", "8"));

const ser = (v) => {
  const s = new v8.Serializer();
  s.writeHeader();
  s.writeValue(v);
  return new Uint8Array(s.releaseBuffer());
};
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

// --- protobuf: an AtomicWrite of many Enqueues (datapath.proto) ----------
function varint(out, n) {
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}
function bytesField(out, num, b) {
  varint(out, (num << 3) | 2);
  varint(out, b.length);
  for (const x of b) out.push(x);
}
function enqueueMany(payloads) {
  const w = [];
  const due = Date.now();
  for (const p of payloads) {
    const e = [];
    bytesField(e, 1, p);
    varint(e, (2 << 3) | 0);
    varint(e, due);
    bytesField(w, 3, e);
  }
  return new Uint8Array(w);
}

async function meta() {
  const r = await fetch(URL_, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [3] }),
  });
  return await r.json();
}

async function preload(m, tag, n) {
  const data = new URL(m.endpoints[0].url, URL_).href;
  for (let base = 0; base < n; base += 1000) {
    const payloads = [];
    for (let i = base; i < Math.min(n, base + 1000); i++) payloads.push(ser({ tag, i }));
    const r = await fetch(`${data}/atomic_write`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${m.token}`,
        "content-type": "application/x-protobuf",
        "x-denokv-version": "3",
        "x-denokv-database-id": m.databaseId,
      },
      body: enqueueMany(payloads),
    });
    if (!r.ok) throw new Error(`preload: ${r.status} ${await r.text()}`);
    await r.arrayBuffer();
  }
}

// --- over the network ----------------------------------------------------------
async function remoteRate(m, consumers) {
  const tag = `rate${consumers}-${crypto.randomUUID().slice(0, 6)}`;
  await preload(m, tag, N);
  const qs = [];
  for (let c = 0; c < consumers; c++) qs.push(await openQueue(URL_, { accessToken: TOKEN }));
  let got = 0;
  const t0 = now();
  let t1 = 0;
  await Promise.all(qs.map((q) =>
    q.listenQueue((v) => {
      if (v.tag !== tag) return;
      if (++got === N) {
        t1 = now();
        for (const x of qs) x.close();
      }
    }, { concurrency: CONC, waitMs: 2000 })
  ));
  return N / ((t1 - t0) / 1000);
}

async function remoteLatency() {
  const q = await openQueue(URL_, { accessToken: TOKEN });
  const tag = `lat-${crypto.randomUUID().slice(0, 6)}`;
  const lat = [];
  const done = q.listenQueue((v) => {
    if (v.tag !== tag) return;
    lat.push(now() - v.sent);
    if (lat.length === LAT) q.close();
  }, { concurrency: CONC });
  await sleep(300); // the consumer's poll is parked
  const eq = await openQueue(URL_, { accessToken: TOKEN });
  for (let i = 0; i < LAT; i++) {
    await eq.enqueue({ tag, sent: now() });
    await sleep(10);
  }
  await done;
  return lat;
}

// --- Deno's local queue on a file ----------------------------------------------------
async function localRate() {
  const kv = await Deno.openKv(LOCAL_DB);
  const tag = `lrate-${crypto.randomUUID().slice(0, 6)}`;
  for (let base = 0; base < N; base += 500) {
    let op = kv.atomic();
    for (let i = base; i < Math.min(N, base + 500); i++) op = op.enqueue({ tag, i });
    await op.commit();
  }
  let got = 0, t1 = 0, resolve;
  const all = new Promise((r) => (resolve = r));
  const t0 = now();
  kv.listenQueue((v) => {
    if (v.tag !== tag) return;
    if (++got === N) {
      t1 = now();
      resolve();
    }
  });
  await all;
  kv.close();
  return N / ((t1 - t0) / 1000);
}

async function localLatency() {
  const kv = await Deno.openKv(LOCAL_DB);
  const tag = `llat-${crypto.randomUUID().slice(0, 6)}`;
  const lat = [];
  let resolve;
  const all = new Promise((r) => (resolve = r));
  kv.listenQueue((v) => {
    if (v.tag !== tag) return;
    lat.push(now() - v.sent);
    if (lat.length === LAT) resolve();
  });
  await sleep(300);
  for (let i = 0; i < LAT; i++) {
    await kv.enqueue({ tag, sent: now() });
    await sleep(10);
  }
  await all;
  kv.close();
  return lat;
}

// --- memory per idle long poll -------------------------------------------------------
/** Server RSS (master and children) in KiB, and how many fds they hold. */
async function serverUsage(pid) {
  const pids = [pid, ...(await new Deno.Command("pgrep", { args: ["-P", pid] }).output().then((o) =>
    new TextDecoder().decode(o.stdout).trim().split("\n").filter(Boolean)
  ))];
  let kib = 0, fds = 0;
  for (const p of pids) {
    const st = await Deno.readTextFile(`/proc/${p}/status`).catch(() => "");
    const m = st.match(/VmRSS:\s+(\d+) kB/);
    if (m) kib += Number(m[1]);
    for await (const _ of Deno.readDir(`/proc/${p}/fd`)) fds++;
  }
  return { kib, fds };
}

async function pollMemory(m) {
  const url = `${new URL(m.endpoints[0].url, URL_).href}/queue/lease`;
  const headers = {
    authorization: `Bearer ${m.token}`,
    "content-type": "application/json",
    "x-denokv-version": "3",
    "x-denokv-database-id": m.databaseId,
  };
  await sleep(500);
  const before = await serverUsage(SERVER_PID);
  const ac = new AbortController();
  const polls = [];
  for (let i = 0; i < POLLS; i++) {
    polls.push(fetch(url, { method: "POST", headers, body: JSON.stringify({ waitMs: 60000 }), signal: ac.signal })
      .then((r) => r.text()).catch(() => {}));
  }
  await sleep(3000); // all parked
  const during = await serverUsage(SERVER_PID);
  // A worker is still free: an ordinary request answers at once.
  const t0 = now();
  const q = await openQueue(URL_, { accessToken: TOKEN });
  await q.enqueue({ tag: "ping" }, { delay: 3_600_000 });
  const pingMs = now() - t0;
  ac.abort();
  await Promise.all(polls);
  return {
    before: before.kib,
    during: during.kib,
    parked: during.fds - before.fds,
    perPollBytes: ((during.kib - before.kib) * 1024) / POLLS,
    pingMs,
  };
}

const m = await meta();
const res = {};
res.remote1 = await remoteRate(m, 1);
res.remote4 = await remoteRate(m, 4);
const rl = await remoteLatency();
res.remoteP50 = pct(rl, 50);
res.remoteP99 = pct(rl, 99);
res.local = await localRate();
const ll = await localLatency();
res.localP50 = pct(ll, 50);
res.localP99 = pct(ll, 99);
res.memory = await pollMemory(m);
await Deno.writeTextFile(`${OUT_DIR}/results.json`, JSON.stringify(res, null, 2));
const f = (x) => x.toFixed(0);
console.log(`messages: ${N} per rate run, consumer concurrency ${CONC}`);
console.log(`delivery rate, denokv-fcgi, 1 consumer:   ${f(res.remote1)} msg/s`);
console.log(`delivery rate, denokv-fcgi, 4 consumers:  ${f(res.remote4)} msg/s`);
console.log(`delivery rate, Deno local queue (file):   ${f(res.local)} msg/s`);
console.log(`ratio 4 consumers / local:                ${(res.remote4 / res.local).toFixed(2)}`);
console.log(`enqueue-to-delivery, denokv-fcgi:  p50 ${res.remoteP50.toFixed(1)} ms, p99 ${res.remoteP99.toFixed(1)} ms`);
console.log(`enqueue-to-delivery, Deno local:   p50 ${res.localP50.toFixed(1)} ms, p99 ${res.localP99.toFixed(1)} ms`);
console.log(`idle long polls: ${POLLS} (${res.memory.parked} held by the server), ` +
  `server RSS ${res.memory.before} -> ${res.memory.during} KiB, ` +
  `${f(res.memory.perPollBytes)} bytes each; an enqueue meanwhile took ${res.memory.pingMs.toFixed(1)} ms`);
