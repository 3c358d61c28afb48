// A worker out of file descriptors must back off, not spin (issue 7,
// defect 4). A dedicated instance with one worker gets its descriptor
// limit lowered (prlimit) until accept(2) fails with EMFILE; connections
// then wait in the listen queue. Over a few seconds the worker must use
// almost no CPU and log the failure once, not once per attempt; once the
// limit is raised again the queued requests must be answered.

import { assert, plainTest, RUN_DIR, run, sleep, startServer, stopServer, TOKEN } from "./helpers.ts";
import { FcgiConn, type FcgiOutcome } from "./fcgi.ts";

const NAME = "fdcap";
const inst = await startServer(NAME, { SERVER_ARGS: "--workers 1" });
const MASTER = Number(inst.PID);
const OBSERVE_MS = 3_000;
const CLK_TCK = 100; // USER_HZ on Linux

async function children(pid: number): Promise<number[]> {
  const r = await run(["pgrep", "-P", String(pid)]);
  return r.stdout.split("\n").filter((l) => l.trim() !== "").map(Number);
}

function fds(pid: number): number[] {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => Number(e.name));
}

// The worker is the child that holds the listening socket (the
// housekeeper closes it).
async function workerPid(): Promise<number> {
  for (const c of await children(MASTER)) {
    const socket = fds(c).some((fd) => {
      try {
        return Deno.readLinkSync(`/proc/${c}/fd/${fd}`).startsWith("socket:");
      } catch {
        return false;
      }
    });
    if (socket) return c;
  }
  throw new Error(`no worker among the children of ${MASTER}`);
}

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}

function acceptFailures(): number {
  const log = Deno.readTextFileSync(`${RUN_DIR}/${NAME}.log`);
  let n = 0;
  for (let i = log.indexOf("accept failed"); i >= 0; i = log.indexOf("accept failed", i + 1)) n++;
  return n;
}

async function nofile(pid: number): Promise<[string, string]> {
  const r = await run(["prlimit", "--pid", String(pid), "--nofile", "--noheadings", "--raw", "--output", "SOFT,HARD"]);
  assert.equal(r.code, 0, `prlimit: ${r.stderr}`);
  const [soft, hard] = r.stdout.trim().split(/\s+/);
  return [soft, hard];
}

async function setNofile(pid: number, soft: string, hard: string) {
  const r = await run(["prlimit", "--pid", String(pid), `--nofile=${soft}:${hard}`]);
  assert.equal(r.code, 0, `prlimit --nofile=${soft}:${hard}: ${r.stderr}`);
}

function metadataParams(): Record<string, string> {
  return {
    REQUEST_METHOD: "POST",
    REQUEST_URI: "/",
    CONTENT_TYPE: "application/json",
    HTTP_AUTHORIZATION: `Bearer ${TOKEN}`,
  };
}

plainTest("a worker out of descriptors pauses accepting, logs once, and serves again when it has some", async () => {
  const worker = await workerPid();
  const [soft, hard] = await nofile(worker);
  // The lowest free descriptor number: with the limit there, accept has
  // nowhere to put a new one.
  const open = new Set(fds(worker));
  let lowest = 0;
  while (open.has(lowest)) lowest++;
  await setNofile(worker, String(lowest), hard);
  const conns: FcgiConn[] = [];
  let limitRaised = false;
  try {
    const logged0 = acceptFailures();
    for (let i = 0; i < 3; i++) {
      const c = await FcgiConn.open(inst.SOCKET);
      await c.begin(metadataParams());
      await c.stdin(new TextEncoder().encode(JSON.stringify({ supportedVersions: [3] })), true);
      conns.push(c);
    }
    const cpu0 = cpuTicks(worker);
    await sleep(OBSERVE_MS);
    const cpu = cpuTicks(worker) - cpu0;
    const logged = acceptFailures() - logged0;
    // Spinning takes a whole core (about 300 ticks in 3 s) and logs
    // hundreds of thousands of lines.
    assert.ok(cpu < 50, `the worker used ${cpu / CLK_TCK} s of CPU in ${OBSERVE_MS / 1000} s while out of descriptors`);
    assert.ok(logged >= 1 && logged <= 2, `accept failures logged ${logged} times in ${OBSERVE_MS / 1000} s (want 1, at most 2)`);
    const log = Deno.readTextFileSync(`${RUN_DIR}/${NAME}.log`);
    assert.match(log, /accept failed: Too many open files; pausing accepts/, "the log line says what and that accepting pauses");

    await setNofile(worker, soft, hard);
    limitRaised = true;
    const outs: FcgiOutcome[] = await Promise.all(conns.map((c) => c.outcome(5_000)));
    for (const [i, o] of outs.entries()) {
      assert.ok(o.kind === "response" && o.response.status === 200,
        `queued request ${i} answered once descriptors are back: ${o.kind}` +
          (o.kind === "response" ? ` ${o.response.status}` : ""));
    }
    assert.equal(await workerPid(), worker, "the same worker served them (it never exited)");
  } finally {
    if (!limitRaised) await setNofile(worker, soft, hard).catch(() => {});
    for (const c of conns) c.close();
  }
}, 60_000);

plainTest("teardown: the instance stops on SIGTERM", async () => {
  await stopServer(NAME);
});
