// Slow clients must not take the service down (issue 7, defect 1, and the
// request deadlines). More clients than there are workers start a request
// and then send their body slowly (here: not at all); meanwhile ordinary
// requests through the same proxy must still be answered promptly, and the
// slow requests must get an answer, or be closed, soon after the server's
// --body-timeout.
//
// Through three proxies onto one dedicated instance (2 workers, a 2 s body
// deadline; scripts/stack.sh start-server):
//   - caddy with conf/Caddyfile as shipped (it buffers request bodies, so
//     slow bodies never reach the server);
//   - caddy with the same site minus its buffering lines, and nginx with
//     fastcgi_request_buffering off: both pass bodies on as they arrive, so
//     only the server's own deadline frees its workers.
// Half of the slow clients present the token (their body is awaited, then
// 408), half do not (refused with 401 before any body is read). Last, a
// client that never reads its (large) response holds a worker no longer
// than --send-timeout.

import {
  assert,
  encodeKey,
  encSnapshotRead,
  MutationType,
  plainTest,
  RawClient,
  RUN_DIR,
  SRCDIR,
  sleep,
  startServer,
  stopServer,
  TOKEN,
  ValueEncoding,
} from "./helpers.ts";
import { FcgiConn, fcgiRequest } from "./fcgi.ts";

const NAME = "slow";
const WORKERS = 2;
const BODY_TIMEOUT_S = 2;
const SEND_TIMEOUT_S = 2;
const SLOW_CLIENTS = 2 * WORKERS + 2;
// Generous bounds: the work takes milliseconds, the deadline 2 s (a
// worker may serve a few slow clients in turn before an ordinary request
// comes up); without deadlines the ordinary requests never get through.
const ORDINARY_BOUND_MS = 10_000;
const SLOW_ANSWER_BOUND_MS = (BODY_TIMEOUT_S + 10) * 1000;

// nginx/denokv-fcgi.conf with request buffering switched off.
const snippet = Deno.readTextFileSync(`${SRCDIR}/nginx/denokv-fcgi.conf`);
assert.match(snippet, /^fastcgi_request_buffering on;$/m, "nginx/denokv-fcgi.conf buffers request bodies");
Deno.writeTextFileSync(
  `${RUN_DIR}/denokv-fcgi-streaming.conf`,
  snippet.replace(/^fastcgi_request_buffering on;$/m, "fastcgi_request_buffering off;"),
);
const inst = await startServer(NAME, {
  SERVER_ARGS: `--workers ${WORKERS} --body-timeout ${BODY_TIMEOUT_S} --send-timeout ${SEND_TIMEOUT_S}`,
  LOCATION_INCLUDE: "denokv-fcgi-streaming.conf",
});

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

// ---------------------------------------------------------------------------
// caddy: conf/Caddyfile rendered onto free ports and the instance's socket,
// as shipped and without its request buffering.

const CADDY_DIR = `${RUN_DIR}/slow-caddy`;
const SHIPPED_PORT = freePort();
const STREAMING_PORT = freePort();
let caddy: Deno.ChildProcess | undefined;

function renderCaddyfile(): string {
  const shipped = Deno.readTextFileSync(`${SRCDIR}/conf/Caddyfile`);
  const lines = shipped.split("\n");
  // The site block: ":PORT {" or "http://HOST:PORT {".
  const start = lines.findIndex((l) => /^(https?:\/\/[^\s/]*)?:\d+ \{$/.test(l));
  assert.ok(start > 0, "conf/Caddyfile has a ':PORT {' or 'http://HOST:PORT {' site");
  const end = lines.findIndex((l, i) => i > start && l === "}");
  assert.ok(end > start, "the site block ends with '}' at the start of a line");
  const site = lines.slice(start + 1, end).join("\n").replaceAll("unix//run/denokv-fcgi.sock", `unix/${inst.SOCKET}`);
  assert.ok(site.includes(inst.SOCKET), "the site proxies to /run/denokv-fcgi.sock (replaced by the test's socket)");
  const streaming = site.split("\n").filter((l) => !/^\s*(buffer_requests|max_buffer_size|request_buffers)\b/.test(l))
    .join("\n");
  const global = lines.slice(0, start).join("\n").replace(/^\{$/m, "{\n\tadmin off\n\tauto_https off\n\tgrace_period 1s");
  return `# written by tests/e2e/slow_clients.test.ts from conf/Caddyfile\n${global}\n` +
    `http://127.0.0.1:${SHIPPED_PORT} {\n${site}\n}\n\n` +
    `http://127.0.0.1:${STREAMING_PORT} {\n${streaming}\n}\n`;
}

async function metadataStatus(base: string, ms: number): Promise<number> {
  try {
    const r = await fetch(base, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
      signal: AbortSignal.timeout(ms),
    });
    await r.body?.cancel();
    return r.status;
  } catch {
    return 0;
  }
}

async function startCaddy(): Promise<void> {
  Deno.mkdirSync(`${CADDY_DIR}/home`, { recursive: true });
  Deno.writeTextFileSync(`${CADDY_DIR}/Caddyfile`, renderCaddyfile());
  const log = Deno.openSync(`${CADDY_DIR}/caddy.log`, { write: true, create: true, append: true });
  caddy = new Deno.Command(Deno.env.get("CADDY") ?? "caddy", {
    args: ["run", "--config", `${CADDY_DIR}/Caddyfile`, "--adapter", "caddyfile"],
    env: { HOME: `${CADDY_DIR}/home`, XDG_DATA_HOME: `${CADDY_DIR}/data`, XDG_CONFIG_HOME: `${CADDY_DIR}/config` },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // caddy logs to stderr: into its log file.
  caddy.stderr.pipeTo(log.writable).catch(() => {});
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (await metadataStatus(`http://127.0.0.1:${SHIPPED_PORT}/`, 2000) === 200 &&
      await metadataStatus(`http://127.0.0.1:${STREAMING_PORT}/`, 2000) === 200) return;
    await sleep(100);
  }
  throw new Error(`caddy did not come up; see ${CADDY_DIR}/caddy.log`);
}

function killCaddy() {
  try {
    caddy?.kill("SIGKILL");
  } catch {
    // already gone
  }
}
globalThis.addEventListener("unload", killCaddy);
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, () => {
    killCaddy();
    Deno.exit(sig === "SIGTERM" ? 143 : 130);
  });
}

// ---------------------------------------------------------------------------
// A slow client: HTTP/1.1 headers announcing a 4 KiB body, a few bytes of
// it, then silence with the connection open.

interface Slow {
  conn: Deno.TcpConn;
  authed: boolean;
  opened: number;
}

async function openSlow(port: number, path: string, authed: boolean): Promise<Slow> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
    (authed ? `Authorization: Bearer ${TOKEN}\r\n` : "") + `Content-Length: 4096\r\n\r\n{"supportedVersions":[`;
  await conn.write(new TextEncoder().encode(head));
  return { conn, authed, opened: Date.now() };
}

// The status line that came back, "closed" if the connection closed
// without one, or "open" if nothing happened within ms.
async function slowOutcome(s: Slow, ms: number): Promise<string> {
  const buf = new Uint8Array(4096);
  let got = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"open">((r) => timer = setTimeout(() => r("open"), ms));
  try {
    while (!got.includes("\r\n")) {
      const n = await Promise.race([s.conn.read(buf).catch(() => null), timeout]);
      if (n === "open") return "open";
      if (n === null) return got === "" ? "closed" : got;
      got += new TextDecoder().decode(buf.subarray(0, n));
    }
    return got.split("\r\n")[0];
  } finally {
    clearTimeout(timer);
  }
}

function closeAll(slow: Slow[]) {
  for (const s of slow) {
    try {
      s.conn.close();
    } catch {
      // closed by the other side
    }
  }
}

// How many requests the instance has logged as over their deadline for
// their parameters and body (or, with what = "its response", for writing
// their response).
async function overruns(what = "its parameters and body"): Promise<number> {
  const log = await Deno.readTextFile(`${RUN_DIR}/${NAME}.log`);
  return log.split("\n").filter((l) => l.includes("request over its deadline") && l.includes(what)).length;
}

interface Proxy {
  name: string;
  port: () => number;
  path: string; // the instance's mount on that proxy
  streams: boolean; // passes bodies on as they arrive
}

const H1_PORT = Number(new URL(inst.H1_URL).port);
const proxies: Proxy[] = [
  { name: "caddy with conf/Caddyfile as shipped", port: () => SHIPPED_PORT, path: "/", streams: false },
  { name: "caddy without request buffering", port: () => STREAMING_PORT, path: "/", streams: true },
  { name: "nginx with fastcgi_request_buffering off", port: () => H1_PORT, path: `/${NAME}/`, streams: true },
];

plainTest("setup: caddy serves the instance as shipped and without request buffering", async () => {
  await startCaddy();
});

for (const p of proxies) {
  plainTest(`${p.name}: ${SLOW_CLIENTS} slow bodies on ${WORKERS} workers do not stop ordinary requests`, async () => {
    const base = `http://127.0.0.1:${p.port()}${p.path}`;
    const slow: Slow[] = [];
    const before = await overruns();
    try {
      for (let i = 0; i < SLOW_CLIENTS; i++) slow.push(await openSlow(p.port(), p.path, i % 2 === 0));
      await sleep(300); // let the proxy pass them on to the workers
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        const status = await metadataStatus(base, ORDINARY_BOUND_MS);
        const took = Date.now() - t0;
        assert.equal(status, 200, `ordinary request ${i + 1}: ${status === 0 ? `no answer within ${took} ms` : status}`);
      }
      if (!p.streams) return; // the proxy holds them; the server never sees them
      // The server gave up on each body it was waiting for, by its deadline.
      const authed = slow.filter((s) => s.authed).length;
      const until = Date.now() + SLOW_ANSWER_BOUND_MS;
      let cut = 0;
      while ((cut = (await overruns()) - before) < authed && Date.now() < until) await sleep(100);
      assert.equal(cut, authed, `bodies the server cut off by its deadline (of ${authed} awaited)`);
      if (p.name.startsWith("nginx")) {
        // nginx passes the server's answers on: 408 after the deadline for
        // bodies it was waiting for, 401 at once for the others. (caddy
        // 2.6 reads the answer only once it has sent the whole body, so
        // its clients hear nothing until they send more or give up.)
        const outs = await Promise.all(slow.map((s) => slowOutcome(s, SLOW_ANSWER_BOUND_MS)));
        for (const [i, o] of outs.entries()) {
          assert.equal(o, slow[i].authed ? "HTTP/1.1 408 Request Timeout" : "HTTP/1.1 401 Unauthorized", `slow client ${i}`);
          assert.ok(Date.now() - slow[i].opened < SLOW_ANSWER_BOUND_MS, `slow client ${i} answered in time`);
        }
      }
    } finally {
      closeAll(slow);
    }
  }, 60_000);
}

plainTest(`a client that does not read its response holds a worker for --send-timeout (${SEND_TIMEOUT_S} s) at most`, async () => {
  // About 3 MiB of values: far more than the socket buffers hold.
  const raw = await RawClient.open(inst.H1_URL);
  const rid = crypto.randomUUID().slice(0, 8);
  const value = new Uint8Array(60 * 1024).fill(0x61);
  for (let w = 0; w < 4; w++) {
    const mutations = [];
    for (let i = 0; i < 12; i++) {
      mutations.push({ key: encodeKey(["slowread", rid, w * 12 + i]), type: MutationType.SET, value: { data: value, encoding: ValueEncoding.BYTES } });
    }
    await raw.write({ mutations });
  }
  const before = await overruns("its response");
  const read = encSnapshotRead([{ start: encodeKey(["slowread", rid]), end: encodeKey(["slowread", rid + "\xff"]), limit: 100 }]);
  const c = await FcgiConn.open(inst.SOCKET);
  try {
    await c.begin({
      REQUEST_METHOD: "POST",
      REQUEST_URI: "/v2/snapshot_read",
      CONTENT_TYPE: "application/x-protobuf",
      CONTENT_LENGTH: String(read.length),
      HTTP_AUTHORIZATION: `Bearer ${raw.meta.token}`,
      HTTP_X_DENOKV_VERSION: "3",
      HTTP_X_DENOKV_DATABASE_ID: raw.meta.databaseId,
    });
    await c.stdin(read, true);
    // ... and never read: the server's writes block once the buffers fill.
    const until = Date.now() + (SEND_TIMEOUT_S + 10) * 1000;
    let n = 0;
    while ((n = (await overruns("its response")) - before) < 1 && Date.now() < until) await sleep(100);
    assert.equal(n, 1, "the server gave up writing the response and logged it");
    const log = await Deno.readTextFile(`${RUN_DIR}/${NAME}.log`);
    assert.match(log, /request over its deadline: snapshot_read at "\/": its response took \d+ ms \(limit 2000 ms\)/);
  } finally {
    c.close();
  }
  // Both workers serve again.
  for (let i = 0; i < 2 * WORKERS; i++) {
    const o = await fcgiRequest(inst.SOCKET, {
      REQUEST_METHOD: "POST",
      REQUEST_URI: "/",
      CONTENT_TYPE: "application/json",
      HTTP_AUTHORIZATION: `Bearer ${TOKEN}`,
    }, new TextEncoder().encode(JSON.stringify({ supportedVersions: [3] })), { ms: 5_000 });
    assert.ok(o.kind === "response" && o.response.status === 200, `ordinary request ${i}: ${o.kind}`);
  }
}, 60_000);

plainTest("the server logged the bodies that ran out of time, with endpoint and duration", async () => {
  const log = await Deno.readTextFile(`${RUN_DIR}/${NAME}.log`);
  const lines = log.split("\n").filter((l) => l.includes("request over its deadline") && l.includes("its parameters and body"));
  assert.ok(lines.length >= 1, "at least one 'request over its deadline' line");
  for (const l of lines) {
    assert.match(l, /request over its deadline: metadata at "\/(slow)?\/?": its parameters and body took \d+ ms \(limit 2000 ms\)/, l);
  }
});

plainTest("teardown: caddy and the instance stop", async () => {
  killCaddy();
  await caddy?.status;
  await stopServer(NAME);
});
