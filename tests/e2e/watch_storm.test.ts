// Watch under a write storm: the promise that every committed change to a
// watched key reaches every open watch of it, whoever wrote it and
// whatever else happened meanwhile (docs/signal-segment.md).
//
// This suite starts its own instance "storm" (3 workers) on the stack's
// database, a second instance "storm2" on the same file (a writer the
// first does not hear from), and caddy in front of "storm"; the stack's
// nginx mounts both instances. Watches are the Deno CLI's kv.watch()
// through nginx and through caddy, spread over every worker of "storm".
//
// Every commit of the tests is logged with its versionstamp, so each frame
// a watcher received can be checked against the history: per key,
// versionstamps never go back; every frame is one snapshot (each key shows
// the last commit to it at or before the frame's newest versionstamp, so
// no frame mixes two commits); and every watch ends on the final entries,
// equal to a read afterwards. Waits are generous deadlines; the time it
// took is printed, never asserted tightly.
// It kills or replaces server processes on purpose, so the crash
// tripwire (tripwire_lib.sh) counts only crash signals and sanitizer reports.
// tripwire-allow: process-model

import { assert, RUN_DIR, sleep, startServer, uniquePrefix, withTimeout } from "./helpers.ts";
import { Caddy, startCaddy, streamsPerWorker } from "./watch_lib.ts";

// Convergence deadline: a change by another writer on the file is found
// within about a second (the foreign check); this only catches a watch
// that never gets it.
const DEADLINE_MS = 15_000;
// The change ring holds 16384 entries (src/shm.h): bursts are larger.
const RING = 16384;
const BURST_COMMITS = 18, BURST_KEYS = 999;

interface Setup {
  storm: Record<string, string>;
  other: Record<string, string>;
  caddy: Caddy;
}
let setup: Promise<Setup> | undefined;
function instances(): Promise<Setup> {
  setup ??= (async () => {
    const storm = await startServer("storm", { SERVER_ARGS: "--workers 3" });
    const other = await startServer("storm2", { SERVER_ARGS: "--workers 2" });
    const caddy = await startCaddy("storm", storm.SOCKET);
    return { storm, other, caddy };
  })();
  return setup;
}

// How long things took, for people reading a run (the TAP reporter drops
// console output): RUN_DIR/watch_storm.notes.
function note(line: string) {
  Deno.writeTextFileSync(`${RUN_DIR}/watch_storm.notes`, line + "\n", { append: true });
}

// ---------------------------------------------------------------------------
// The history of commits, and watchers that record every frame

type Vs = string | null;
interface Commit {
  vs: string;
  sets: Map<string, string>; // key name -> value
}

class History {
  commits: Commit[] = [];

  async commit(kv: Deno.Kv, prefix: string[], sets: Map<string, string>, filler: string[] = []): Promise<string> {
    const op = kv.atomic();
    for (const [k, v] of sets) op.set([...prefix, k], v);
    for (const f of filler) op.set([...prefix, "fill", f], 0);
    const r = await withTimeout(op.commit(), 30_000, "commit");
    if (!r.ok) throw new Error("commit not ok");
    this.commits.push({ vs: r.versionstamp, sets });
    return r.versionstamp;
  }

  // The last commit to key at or before vs.
  lastWrite(key: string, vs: string): Commit | undefined {
    let best: Commit | undefined;
    for (const c of this.commits) {
      if (c.sets.has(key) && c.vs <= vs && (!best || c.vs > best.vs)) best = c;
    }
    return best;
  }
}

interface Frame {
  at: number; // Date.now() on arrival
  vs: Vs[];
  values: unknown[];
}

class Watcher {
  frames: Frame[] = [];
  error: unknown;
  done = false;
  #reader: ReadableStreamDefaultReader<Deno.KvEntryMaybe<unknown>[]>;

  constructor(kv: Deno.Kv, readonly via: string, readonly prefix: string[], readonly names: string[]) {
    this.#reader = kv.watch(names.map((n) => [...prefix, n])).getReader();
    this.#pump();
  }

  async #pump() {
    try {
      for (;;) {
        const r = await this.#reader.read();
        if (r.done) break;
        this.frames.push({ at: Date.now(), vs: r.value.map((e) => e.versionstamp), values: r.value.map((e) => e.value) });
      }
    } catch (e) {
      this.error = e;
    } finally {
      this.done = true;
    }
  }

  last(): Frame | undefined {
    return this.frames[this.frames.length - 1];
  }

  async cancel() {
    await this.#reader.cancel().catch(() => {});
  }

  describe(): string {
    return `${this.via} watching ${this.names.join(",")}: ${this.frames.length} frames, last ` +
      JSON.stringify(this.last()?.values ?? null) + (this.done ? ` (ended: ${String(this.error ?? "closed")})` : "");
  }
}

// Waits until every watcher's last frame holds `want` (key -> value).
async function converge(ws: Watcher[], want: Map<string, unknown>, what: string): Promise<number> {
  const t0 = Date.now();
  const behind = () =>
    ws.filter((w) => {
      const f = w.last();
      return !f || w.names.some((n, i) => f.values[i] !== want.get(n));
    });
  while (behind().length > 0) {
    if (Date.now() - t0 > DEADLINE_MS) {
      const b = behind();
      throw new Error(`${what}: ${b.length} of ${ws.length} watches did not get the final values within ${DEADLINE_MS} ms, ` +
        `want ${JSON.stringify([...want])}; e.g. ${b.slice(0, 3).map((w) => w.describe()).join(" | ")}`);
    }
    await sleep(20);
  }
  return Date.now() - t0;
}

// Per key, versionstamps never go back; each frame is one snapshot.
function checkFrames(ws: Watcher[], h: History) {
  let frames = 0;
  for (const w of ws) {
    const lastVs: Vs[] = w.names.map(() => null);
    for (const f of w.frames) {
      frames++;
      w.names.forEach((n, i) => {
        const vs = f.vs[i];
        assert.ok(vs !== null, `${w.via}: key ${n} absent in a frame although written before the watch began`);
        assert.ok(lastVs[i] === null || vs! >= lastVs[i]!, `${w.via}: ${n} went back from ${lastVs[i]} to ${vs}`);
        lastVs[i] = vs;
      });
      const top = f.vs.reduce((a, b) => (b! > a! ? b : a))!;
      w.names.forEach((n, i) => {
        const c = h.lastWrite(n, top);
        assert.ok(c, `${w.via}: ${n} at ${f.vs[i]} matches no logged commit`);
        assert.equal(f.vs[i], c!.vs, `${w.via}: a frame mixes commits: ${n} shows ${f.vs[i]}, but the snapshot at ${top} has ${c!.vs}`);
        assert.equal(f.values[i], c!.sets.get(n), `${w.via}: ${n} at ${f.vs[i]} has a value that commit did not write`);
      });
    }
  }
  return frames;
}

async function finalValues(kv: Deno.Kv, prefix: string[], names: string[]): Promise<Map<string, unknown>> {
  const got = await kv.getMany(names.map((n) => [...prefix, n]));
  return new Map(names.map((n, i) => [n, got[i].value]));
}

function pick<T>(xs: T[]): T {
  return xs[Math.floor(Math.random() * xs.length)];
}

function randomSubset(names: string[]): string[] {
  const s = names.filter(() => Math.random() < 0.5);
  return s.length ? s : [pick(names)];
}

// A test with KV handles on both instances and caddy, closed afterwards.
function stormTest(
  name: string,
  fn: (ctx: { open: (url: string) => Promise<Deno.Kv>; s: Setup; prefix: string[] }) => Promise<void>,
  timeout = 120_000,
) {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const handles: Deno.Kv[] = [];
      try {
        await withTimeout(
          (async () => {
            const s = await instances();
            await fn({
              s,
              prefix: uniquePrefix(name),
              open: async (url) => {
                const kv = await withTimeout(Deno.openKv(url), 30_000, `openKv ${url}`);
                handles.push(kv);
                return kv;
              },
            });
          })(),
          timeout,
          name,
        );
      } finally {
        for (const kv of handles) {
          try {
            kv.close();
          } catch {
            // closed
          }
        }
      }
    },
  });
}

// Opens n watches of each subset through each proxy and waits for their
// first frames.
async function openWatches(
  proxies: { via: string; kv: Deno.Kv }[],
  prefix: string[],
  subsets: string[][],
  perSubset: number,
): Promise<Watcher[]> {
  const ws: Watcher[] = [];
  for (const p of proxies) {
    for (const names of subsets) {
      for (let i = 0; i < perSubset; i++) ws.push(new Watcher(p.kv, p.via, prefix, names));
    }
  }
  const t0 = Date.now();
  while (ws.some((w) => w.frames.length === 0)) {
    const dead = ws.find((w) => w.done);
    if (dead) throw new Error(`a watch ended before its first frame: ${dead.describe()}`);
    if (Date.now() - t0 > 30_000) throw new Error("watches without a first frame after 30 s");
    await sleep(20);
  }
  return ws;
}

// Which worker accepts a connection is a race among them; on a loaded
// machine one may lose every race for a whole batch. Opens more watches
// until every worker of master holds one (the tests need them spread).
async function spreadOver(master: number, ws: Watcher[], more: () => Promise<Watcher[]>) {
  for (let round = 0; round < 20; round++) {
    if ([...streamsPerWorker(master).values()].every((n) => n > 0)) return;
    ws.push(...await more());
  }
}

function workerPids(master: number): number[] {
  return [...streamsPerWorker(master).keys()];
}

// ---------------------------------------------------------------------------

// A commit by another writer on the file, followed at once and for a while
// by commits of this server to other keys: the foreign commit must still
// reach every watch (a check that compares the database's version with
// the latest version this server published is fooled by them).
stormTest("a foreign commit followed by local commits reaches every watch", async ({ s, open, prefix }) => {
  const h = new History();
  const local = await open(s.storm.H2C_URL), foreign = await open(s.other.H2C_URL);
  const viaCaddy = await open(s.caddy.url);
  await h.commit(local, prefix, new Map([["a", "a0"], ["b", "b0"]]));
  const ws = await openWatches(
    [{ via: "nginx", kv: local }, { via: "caddy", kv: viaCaddy }],
    prefix,
    [["a"], ["a", "b"]],
    4,
  );
  await h.commit(foreign, prefix, new Map([["a", "a-foreign"]]));
  const t0 = Date.now();
  // Local commits to b every 20 ms for 2.5 s: more than two foreign-check
  // intervals, so every check sees a newer local commit.
  let i = 0;
  while (Date.now() - t0 < 2500) {
    await h.commit(local, prefix, new Map([["b", `b${++i}`]]));
    await sleep(20);
  }
  const want = await finalValues(local, prefix, ["a", "b"]);
  assert.equal(want.get("a"), "a-foreign");
  await converge(ws, want, "foreign commit then local commits");
  const seen = ws.map((w) => w.frames.find((f) => f.values[0] === "a-foreign")!.at - t0);
  note(`every watch had the foreign change at most ${Math.max(...seen)} ms after it, with local commits every 20 ms`);
  checkFrames(ws, h);
  await Promise.all(ws.map((w) => w.cancel()));
});

// A hub that is stopped (SIGSTOP) while more changes than the change ring
// holds are published, then continued: its watches must still get the
// change made while it was stopped.
stormTest("a hub paused past a burst larger than the change ring misses nothing", async ({ s, open, prefix }) => {
  const h = new History();
  const kv = await open(s.storm.H2C_URL);
  const viaCaddy = await open(s.caddy.url);
  await h.commit(kv, prefix, new Map([["c", "c0"]]));
  const proxies = [{ via: "nginx", kv }, { via: "caddy", kv: viaCaddy }];
  const ws = await openWatches(proxies, prefix, [["c"]], 12);
  const master = Number(s.storm.PID);
  await spreadOver(master, ws, () => openWatches(proxies, prefix, [["c"]], 1));
  const busy = [...streamsPerWorker(master)].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).map(([p]) => p);
  assert.ok(busy.length >= 2, `watches spread over the workers: ${JSON.stringify([...streamsPerWorker(master)])}`);
  const paused = busy[0];
  const filler = Array.from({ length: BURST_KEYS }, (_, i) => `f${i}`);
  Deno.kill(paused, "SIGSTOP");
  try {
    await h.commit(kv, prefix, new Map([["c", "c-while-paused"]]));
    for (let i = 0; i < BURST_COMMITS; i++) await h.commit(kv, prefix, new Map(), filler);
  } finally {
    Deno.kill(paused, "SIGCONT");
  }
  assert.ok(BURST_COMMITS * BURST_KEYS > RING, "the burst is larger than the ring");
  const took = await converge(ws, new Map([["c", "c-while-paused"]]), "paused hub");
  note(`the paused hub's watches had the change ${took} ms after it continued`);
  checkFrames(ws, h);
  await Promise.all(ws.map((w) => w.cancel()));
});

// The randomized storm: writers through both instances and both proxies,
// watches of a few keys over every worker, a burst larger than the ring
// while a hub is paused, a worker killed in the middle.
stormTest("write storm: every watch sees every key's final value, in order, one snapshot per frame", async ({ s, open, prefix }) => {
  const names = ["k0", "k1", "k2", "k3"];
  const h = new History();
  const master = Number(s.storm.PID);
  const kvNginx = await open(s.storm.H2C_URL);
  const kvCaddy = await open(s.caddy.url);
  const kvOther = await open(s.other.H2C_URL);
  await h.commit(kvNginx, prefix, new Map(names.map((n) => [n, `${n}-init`])));
  const proxies = [{ via: "nginx", kv: kvNginx }, { via: "caddy", kv: kvCaddy }];
  const subsets = [["k0"], ["k1", "k2"], ["k3", "k0"], names];
  const ws = await openWatches(proxies, prefix, subsets, 4);
  await spreadOver(master, ws, () => openWatches(proxies, prefix, subsets, 1));
  const spread = streamsPerWorker(master);
  assert.ok([...spread.values()].every((n) => n > 0), `watches on every worker: ${JSON.stringify([...spread])}`);

  const writer = async (kv: Deno.Kv, who: string, n: number) => {
    for (let i = 0; i < n; i++) {
      await h.commit(kv, prefix, new Map(randomSubset(names).map((k) => [k, `${who}-${i}-${k}`])));
      await sleep(Math.random() * 15);
    }
  };
  // A burst larger than the ring while a hub is stopped. If the stopped
  // worker happens to hold the write turn, the burst waits for it: it is
  // continued after a few seconds whatever happened.
  const pauseDuringBurst = async () => {
    await sleep(300);
    const paused = [...streamsPerWorker(master)].sort((a, b) => b[1] - a[1])[0][0];
    const filler = Array.from({ length: BURST_KEYS }, (_, i) => `f${i}`);
    Deno.kill(paused, "SIGSTOP");
    let burst: Promise<void> = Promise.resolve();
    try {
      burst = (async () => {
        for (let i = 0; i < BURST_COMMITS; i++) {
          await h.commit(kvNginx, prefix, new Map(i % 6 === 0 ? [[pick(names), `burst-${i}`]] : []), filler);
        }
      })();
      await Promise.race([burst.catch(() => {}), sleep(5000)]);
    } finally {
      Deno.kill(paused, "SIGCONT");
    }
    await burst;
  };
  await Promise.all([
    writer(kvNginx, "nginx", 40),
    writer(kvCaddy, "caddy", 40),
    writer(kvOther, "other", 40),
    pauseDuringBurst(),
  ]);
  // A worker killed with its watch streams open (between writes: a write
  // cut off after its COMMIT would be retried by the client, and its first
  // versionstamp would be missing from the log). Writes go on while it is
  // replaced and its watches reconnect.
  const killed = pick(workerPids(master));
  Deno.kill(killed, "SIGKILL");
  await Promise.all([
    writer(kvNginx, "nginx2", 20),
    writer(kvCaddy, "caddy2", 20),
    writer(kvOther, "other2", 20),
  ]);
  // The last word: another writer on the file, then this server at once.
  await h.commit(kvOther, prefix, new Map([["k0", "final-foreign"]]));
  await h.commit(kvNginx, prefix, new Map([["k1", "final-local"]]));
  const want = await finalValues(kvNginx, prefix, names);
  const took = await converge(ws, want, "storm");
  const frames = checkFrames(ws, h);
  note(`${ws.length} watches, ${h.commits.length} commits, ${frames} frames checked; converged ${took} ms after the last commit`);
  const replaced = () => workerPids(master).length === 3 && !workerPids(master).includes(killed);
  for (const t0 = Date.now(); !replaced() && Date.now() - t0 < DEADLINE_MS;) await sleep(50);
  assert.ok(replaced(), `the killed worker ${killed} was replaced: ${workerPids(master)}`);
  await Promise.all(ws.map((w) => w.cancel()));
}, 180_000);
