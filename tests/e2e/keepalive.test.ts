// Kept-alive FastCGI connections (the multiplexed request model,
// docs/request-model.md). A dedicated instance with one worker is spoken
// to directly over its socket with a small FastCGI client:
//   - many requests travel over one connection that asked to be kept, and
//     one that did not ask is closed after its response;
//   - FCGI_GET_VALUES is answered, a second request on a busy connection
//     is refused with FCGI_CANT_MPX_CONN, and the connection goes on;
//   - 200 idle connections (kept after a request, or never used) do not
//     stop the one worker from serving a new one, directly or through
//     nginx; a connection that never sends a request is closed after
//     the body timeout;
//   - a peer that sends requests without reading the answers does not
//     make the worker hold them all (the next request is read once the
//     last answer is out);
//   - on a second instance with keepalive-timeout = 1, a kept connection
//     left idle gets the goodbye record (an empty FCGI_STDERR) and is
//     closed soon after, while one that keeps sending requests stays open;
//     nginx drops its pooled connection on that goodbye and serves the
//     requests after each idle spell without an error.
// And through the stack's nginx (upstream keepalive, fastcgi_keep_conn
// on): after sequential requests the main server still holds connections
// from nginx open, which it closes after each request on the earlier model.

import {
  assert,
  encAtomicWrite,
  encodeKey,
  encSnapshotRead,
  ENV,
  H1_URL,
  MutationType,
  plainTest,
  run,
  RUN_DIR,
  sleep,
  SRCDIR,
  startServer,
  stopServer,
  TOKEN,
  ValueEncoding,
} from "./helpers.ts";
import { encodeParams, FcgiConn, fcgiRequest, record } from "./fcgi.ts";

const NAME = "keep";
const inst = await startServer(NAME, { SERVER_ARGS: "--workers 1" });
const SOCKET = inst.SOCKET;
const IDLE_NAME = "keepidle";
// nginx reaches it through a keepalive pool, as it does the main server.
const idleInst = await startServer(IDLE_NAME, {
  SERVER_ARGS: "--workers 1 --keepalive-timeout 1",
  UPSTREAM_KEEPALIVE: "1",
});
const body = new TextEncoder().encode(JSON.stringify({ supportedVersions: [1, 2, 3] }));

function metadataParams(): Record<string, string> {
  return {
    REQUEST_METHOD: "POST",
    REQUEST_URI: "/",
    CONTENT_TYPE: "application/json",
    CONTENT_LENGTH: String(body.length),
    HTTP_AUTHORIZATION: `Bearer ${TOKEN}`,
  };
}

async function metadataOn(c: FcgiConn, keep: boolean): Promise<number> {
  await c.begin(metadataParams(), keep);
  await c.stdin(body, true);
  const o = await c.outcome(10_000);
  assert.equal(o.kind, "response", `no response: ${JSON.stringify(o)}`);
  if (o.kind !== "response") return 0;
  assert.ok(o.response.ended, "the response ended with END_REQUEST");
  return o.response.status;
}

// The worker answers metadata on a connection opened now.
async function assertNewConnectionServed(what = "a new connection is served"): Promise<void> {
  const fresh = await FcgiConn.open(SOCKET);
  try {
    assert.equal(await metadataOn(fresh, true), 200, what);
  } finally {
    fresh.close();
  }
}

// Whether the server closed the connection within ms (reads what comes:
// only for the end of a connection's life).
async function closedWithin(c: FcgiConn, ms: number): Promise<boolean> {
  const o = await c.outcome(ms);
  return o.kind === "closed";
}

plainTest("many requests travel over one kept connection; an unkept one is closed", async () => {
  const c = await FcgiConn.open(SOCKET);
  try {
    // Each answer arrives on the same connection, so it stayed open.
    for (let i = 0; i < 50; i++) assert.equal(await metadataOn(c, true), 200, `request ${i}`);
    // The last request does not ask to keep it: closed after its answer.
    assert.equal(await metadataOn(c, false), 200);
    assert.equal(await closedWithin(c, 10_000), true, "closed after a request without FCGI_KEEP_CONN");
  } finally {
    c.close();
  }
});

plainTest("GET_VALUES is answered and a second request on a busy connection gets CANT_MPX_CONN", async () => {
  const c = await FcgiConn.open(SOCKET);
  try {
    await c.write(record(9, encodeParams({ FCGI_MPXS_CONNS: "", FCGI_MAX_CONNS: "" }), 0));
    const r = await c.readRecord(10_000);
    assert.ok(r !== null, "an answer to GET_VALUES");
    assert.equal(r!.type, 10, "FCGI_GET_VALUES_RESULT");
    const text = new TextDecoder().decode(r!.content);
    assert.ok(text.includes("FCGI_MPXS_CONNS0"), `no multiplexing announced: ${JSON.stringify(text)}`);
    assert.ok(text.includes("FCGI_MAX_CONNS"), "FCGI_MAX_CONNS announced");
    // Request 1 begins (its body not sent yet); request 2 is refused.
    await c.begin(metadataParams(), true);
    const begin2 = new Uint8Array([0, 1, 1, 0, 0, 0, 0, 0]);
    await c.write(record(1, begin2, 2));
    const refusal = await c.readRecord(10_000);
    assert.ok(refusal !== null, "an answer to the second request");
    assert.equal(refusal!.type, 3, "FCGI_END_REQUEST");
    assert.equal(refusal!.id, 2, "for request 2");
    assert.equal(refusal!.content[4], 1, "protocolStatus FCGI_CANT_MPX_CONN");
    // Request 1 is still served on the same connection.
    await c.stdin(body, true);
    let status = "";
    for (;;) {
      const rec = await c.readRecord(10_000);
      assert.ok(rec !== null, "request 1 answered");
      if (rec!.type === 6 && status === "") status = new TextDecoder().decode(rec!.content).split("\r\n")[0];
      if (rec!.type === 3) {
        assert.equal(rec!.id, 1, "END_REQUEST for request 1");
        break;
      }
    }
    assert.equal(status, "Status: 200 OK");
  } finally {
    c.close();
  }
});

plainTest("200 idle connections do not stop the one worker from serving", async () => {
  const idle: FcgiConn[] = [];
  try {
    // Half kept after a request, half connected and silent.
    for (let i = 0; i < 100; i++) {
      const c = await FcgiConn.open(SOCKET);
      idle.push(c);
      assert.equal(await metadataOn(c, true), 200, `kept connection ${i}`);
    }
    for (let i = 0; i < 100; i++) idle.push(await FcgiConn.open(SOCKET));
    await assertNewConnectionServed();
    // And through nginx, to this instance's location.
    const r = await run(["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
      "-H", `Authorization: Bearer ${TOKEN}`, "-H", "Content-Type: application/json",
      "--data", '{"supportedVersions":[1,2,3]}', inst.H1_URL]);
    assert.equal(r.stdout, "200", `through nginx: ${r.stderr}`);
    // The kept ones still work too.
    assert.equal(await metadataOn(idle[0], true), 200, "an old kept connection is served again");
  } finally {
    for (const c of idle) c.close();
  }
});

plainTest("a connection that never sends a request is closed after the body timeout", async () => {
  // As on the earlier model: otherwise silent connections hold the
  // worker's descriptors until it accepts nothing more (EMFILE).
  const c = await FcgiConn.open(SOCKET);
  try {
    assert.equal(await closedWithin(c, 20_000), true, "a silent connection was still open after 20 s (body timeout 5 s)");
  } finally {
    c.close();
  }
  // The worker still serves a new connection.
  await assertNewConnectionServed();
});

plainTest("keepalive-timeout: an idle kept connection gets the goodbye and is closed", async () => {
  const c = await FcgiConn.open(idleInst.SOCKET);
  try {
    assert.equal(await metadataOn(c, true), 200);
    // Nothing is sent: after 1 s idle the goodbye comes, the close a
    // moment later (3 s unless the peer closes first, as nginx does).
    const r = await c.readRecord(10_000);
    assert.ok(r !== null, "no goodbye record within 10 s (keepalive-timeout 1 s)");
    assert.equal(r!.type, 7, "the goodbye is an FCGI_STDERR record");
    assert.equal(r!.content.length, 0, "an empty one");
    assert.equal(r!.id, 1, "of the last request's id");
    assert.equal(await closedWithin(c, 10_000), true, "still open 10 s after the goodbye");
  } finally {
    c.close();
  }
  // The worker goes on serving new connections.
  const fresh = await FcgiConn.open(idleInst.SOCKET);
  try {
    assert.equal(await metadataOn(fresh, true), 200, "a new connection is served");
  } finally {
    fresh.close();
  }
});

plainTest("keepalive-timeout: a connection that keeps sending requests stays open", async () => {
  const c = await FcgiConn.open(idleInst.SOCKET);
  try {
    // 6 s of requests 100 ms apart: past the 1 s timeout and the 3 s
    // after a goodbye, so a connection treated as idle would be gone.
    // Each answer is read record by record: no goodbye may come among them.
    const until = Date.now() + 6_000;
    for (let n = 0; Date.now() < until; n++) {
      await c.begin(metadataParams(), true);
      await c.stdin(body, true);
      for (;;) {
        const r = await c.readRecord(10_000);
        assert.ok(r !== null, `request ${n}: the busy connection closed or went silent`);
        assert.ok(!(r!.type === 7 && r!.content.length === 0), `request ${n}: a goodbye on a busy connection`);
        if (r!.type === 3) break;
      }
      await sleep(100);
    }
  } finally {
    c.close();
  }
});

// Connections to a socket that are open now.
async function openTo(sock: string): Promise<number> {
  const r = await run(["ss", "-xH", "state", "established"]);
  return r.stdout.split("\n").filter((l) => l.split(/\s+/).includes(sock)).length;
}

async function metadataThroughNginx(url: string): Promise<string> {
  const r = await run(["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
    "-H", `Authorization: Bearer ${TOKEN}`, "-H", "Content-Type: application/json",
    "--data", '{"supportedVersions":[1,2,3]}', url]);
  return r.stdout || r.stderr;
}

plainTest("keepalive-timeout: nginx's pooled connection is let go when idle, and nginx goes on serving", async () => {
  for (let round = 0; round < 3; round++) {
    assert.equal(await metadataThroughNginx(idleInst.H1_URL), "200", `round ${round}: through nginx`);
    assert.ok(await openTo(idleInst.SOCKET) >= 1, `round ${round}: nginx kept no connection to the instance`);
    // Idle past the timeout: the goodbye makes nginx drop the connection.
    let open = -1;
    for (const until = Date.now() + 10_000; Date.now() < until;) {
      if ((open = await openTo(idleInst.SOCKET)) === 0) break;
      await sleep(200);
    }
    assert.equal(open, 0, `round ${round}: nginx's idle connection still open 10 s on (keepalive-timeout 1 s)`);
  }
  // The next request opens a new connection and is answered.
  assert.equal(await metadataThroughNginx(idleInst.H1_URL), "200", "through nginx after the idle spells");
});

// Resident memory of the instance's processes (its workers), in KiB.
async function instanceRssKiB(): Promise<number> {
  const r = await run(["ps", "-o", "rss=", "--ppid", inst.PID]);
  return r.stdout.split("\n").map((l) => Number(l.trim()) || 0).reduce((a, b) => a + b, 0);
}

plainTest("a peer that sends requests without reading their answers does not grow the worker", async () => {
  const meta = await fcgiRequest(SOCKET, metadataParams(), body);
  assert.equal(meta.kind, "response");
  if (meta.kind !== "response") return;
  const dbId = JSON.parse(meta.response.text).databaseId as string;
  const dataParams = (path: string, len: number) => ({
    REQUEST_METHOD: "POST",
    REQUEST_URI: path,
    CONTENT_TYPE: "application/x-protobuf",
    CONTENT_LENGTH: String(len),
    HTTP_AUTHORIZATION: `Bearer ${TOKEN}`,
    HTTP_X_DENOKV_VERSION: "3",
    HTTP_X_DENOKV_DATABASE_ID: dbId,
  });
  // 15 values of 60 KB: each read of them is a 900 KB answer.
  const prefix = new TextEncoder().encode("unread");
  for (let i = 0; i < 15; i++) {
    const w = encAtomicWrite({
      mutations: [{
        key: encodeKey([prefix, i]),
        type: MutationType.SET,
        value: { data: new Uint8Array(60_000).fill(120), encoding: ValueEncoding.BYTES },
      }],
    });
    const o = await fcgiRequest(SOCKET, dataParams("/v2/atomic_write", w.length), w);
    assert.ok(o.kind === "response" && o.response.status === 200, `write ${i}: ${JSON.stringify(o.kind)}`);
  }
  const read = encSnapshotRead([{ start: encodeKey([prefix]), end: encodeKey([prefix, 1000]), limit: 100 }]);
  const before = await instanceRssKiB();
  // 100 reads, one after another, none of their answers read: 90 MB if
  // the worker kept them all.
  const c = await FcgiConn.open(SOCKET);
  try {
    for (let i = 0; i < 100; i++) {
      await c.begin(dataParams("/v2/snapshot_read", read.length), true);
      await c.stdin(read, true);
      await sleep(30);
    }
    await sleep(500);
    const grown = await instanceRssKiB() - before;
    assert.ok(grown < 40 * 1024, `the worker grew by ${grown} KiB holding unread answers`);
  } finally {
    c.close();
  }
  // The worker goes on serving.
  await assertNewConnectionServed();
});

// The main server's connections from nginx that are open now.
async function keptFromNginx(): Promise<number> {
  const sock = ENV.SOCKET;
  const r = await run(["ss", "-xH", "state", "established"]);
  return r.stdout.split("\n").filter((l) => l.split(/\s+/).includes(sock)).length;
}

plainTest("nginx keeps its connections to the server open between requests", async () => {
  for (let i = 0; i < 20; i++) {
    const res = await fetch(H1_URL, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
      body: '{"supportedVersions":[1,2,3]}',
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  const kept = await keptFromNginx();
  assert.ok(kept >= 1, `no connection from nginx kept open (${kept}); nginx config in ${SRCDIR}/nginx`);
});

plainTest("stop the keepalive-timeout instance", async () => {
  await stopServer(IDLE_NAME);
});

plainTest("a stopping worker keeps serving a kept connection the proxy goes on using, for LOOP_DRAIN_MS after each goodbye", async () => {
  // A proxy may take a kept connection again just before the goodbye
  // arrives; it must not be closed under that connection's next request
  // at some fixed time after the stop, only once it stays idle.
  const name = "keepdrain";
  const d = await startServer(name, { SERVER_ARGS: "--workers 1" });
  const pid = Number(d.PID);
  const c = await FcgiConn.open(d.SOCKET);
  try {
    assert.equal(await metadataOn(c, true), 200, "before the stop");
    Deno.kill(pid, "SIGTERM");
    await sleep(1000);
    assert.equal(await metadataOn(c, true), 200, "1 s after the stop, on the kept connection");
    await sleep(2200);
    assert.equal(await metadataOn(c, true), 200, "3.2 s after the stop, 2.2 s after the last goodbye");
    assert.equal(await closedWithin(c, 10_000), true, "closed once left idle after its goodbye");
    for (let i = 0; i < 100; i++) {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch {
        // Exited as it should: not one for the teardown to stop.
        await Deno.remove(`${RUN_DIR}/${name}.pid`);
        return;
      }
      await sleep(100);
    }
    assert.fail(`instance ${name} still running 10 s after its connection closed`);
  } finally {
    c.close();
  }
});

plainTest("stop the keep-alive instance (SIGTERM closes its idle kept connections)", async () => {
  const c = await FcgiConn.open(SOCKET);
  try {
    assert.equal(await metadataOn(c, true), 200);
    await stopServer(NAME);
    assert.equal(await closedWithin(c, 10_000), true, "the idle kept connection was closed at the stop");
  } finally {
    c.close();
  }
});
