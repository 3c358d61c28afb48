// watchers.mjs: holds many watch streams over a few HTTP/2 cleartext
// connections (node:http2) and records when each change arrives. Run by
// bench.mjs as a child process and driven over IPC:
//
//   {cmd: "open", base, metaBase, token, n, keys, prefix, perConn, pending}
//       open n streams; stream i watches [prefix, i % keys]; at most
//       `pending` streams wait for their first frame at any time, so the
//       server's listen backlog never overflows. Replies "opened" once every
//       stream has its initial frame (or failed).
//   {cmd: "record"}   forget earlier deliveries, start recording
//   {cmd: "collect"}  reply with the deliveries since "record"
//   {cmd: "close"}    close every stream and connection ("open" may follow)
//
// A delivery is a frame whose value was written by writer.mjs: the value is
// "SEQ:SENT_AT_MS". Frames are validated: status SR_SUCCESS, one key,
// marked changed, with an entry (the keys are seeded).
import http2 from "node:http2";
import { dataHeaders, decWatchOutput, encodeKey, encWatch, FrameSplitter, metadata, now } from "./kv.mjs";

let sessions = [];
let streams = [];
let recording = false;
let deliveries = { seq: [], sentAt: [], at: [], stream: [] };
const counters = { keepalives: 0, frames: 0, bad: 0, closedEarly: 0, errors: 0 };
let closing = false;
const errorSamples = [];

function noteError(what) {
  counters.errors++;
  if (errorSamples.length < 5) errorSamples.push(what);
}

function connect(base) {
  return new Promise((resolve, reject) => {
    const s = http2.connect(base, { settings: { enablePush: false } });
    s.once("remoteSettings", () => resolve(s));
    s.once("error", reject);
    s.on("error", (e) => noteError(`session: ${e.message}`));
    s.on("goaway", (code) => {
      if (!closing) noteError(`session: GOAWAY ${code}`);
    });
  });
}

function openStream(session, meta, idx, keyIdx, prefix, onFirst) {
  const st = { idx, keyIdx, first: false, frames: 0 };
  const body = encWatch([encodeKey([prefix, keyIdx])]);
  const req = session.request({
    ":method": "POST",
    ":path": `${meta.path}/watch`,
    ...dataHeaders(meta),
    "content-length": String(body.length),
  });
  const split = new FrameSplitter();
  let status = 0;
  const fail = (why) => {
    if (!st.first) {
      st.first = true;
      onFirst(why);
    } else if (!closing && !st.cancelled) {
      counters.closedEarly++;
      noteError(`stream ${idx}: ${why}`);
    }
  };
  req.on("response", (h) => {
    status = h[":status"];
    if (status !== 200) fail(`HTTP ${status}`);
  });
  req.on("data", (chunk) => {
    if (status !== 200) return;
    const at = now();
    for (const f of split.push(chunk)) {
      if (f.length === 0) {
        counters.keepalives++;
        continue;
      }
      counters.frames++;
      let out;
      try {
        out = decWatchOutput(f);
      } catch (e) {
        counters.bad++;
        noteError(`stream ${idx}: ${e.message}`);
        continue;
      }
      if (out.status !== 1 || out.keys.length !== 1 || !out.keys[0].changed || !out.keys[0].entry) {
        counters.bad++;
        noteError(`stream ${idx}: unexpected frame ${JSON.stringify(out)}`);
        continue;
      }
      st.frames++;
      if (!st.first) {
        st.first = true;
        onFirst(null);
      }
      const v = out.keys[0].entry.value.toString("latin1");
      const colon = v.indexOf(":");
      if (recording && colon > 0) {
        deliveries.seq.push(Number(v.slice(0, colon)));
        deliveries.sentAt.push(Number(v.slice(colon + 1)));
        deliveries.at.push(at);
        deliveries.stream.push(idx);
      }
    }
  });
  req.on("error", (e) => fail(e.message));
  req.on("close", () => fail(`closed (rst code ${req.rstCode})`));
  req.end(body);
  st.req = req;
  return st;
}

async function open(msg) {
  const t0 = now();
  closing = false;
  // The metadata exchange over HTTP/1.1 (fetch), the streams over h2c.
  const meta = await metadata(msg.metaBase, msg.token);
  const nConn = Math.ceil(msg.n / msg.perConn);
  for (let i = 0; i < nConn; i++) sessions.push(await connect(msg.base));
  let opened = 0, failed = 0, next = 0, inflight = 0;
  await new Promise((resolve) => {
    const pump = () => {
      while (inflight < msg.pending && next < msg.n) {
        const i = next++;
        inflight++;
        const session = sessions[Math.floor(i / msg.perConn)];
        streams.push(openStream(session, meta, i, i % msg.keys, msg.prefix, (err) => {
          inflight--;
          if (err) {
            failed++;
            noteError(`stream ${i}: ${err}`);
          } else opened++;
          if (opened + failed === msg.n) resolve();
          else pump();
        }));
      }
    };
    pump();
  });
  process.send({ type: "opened", opened, failed, ms: now() - t0, conns: nConn, errors: errorSamples.slice() });
}

process.on("message", async (msg) => {
  try {
    if (msg.cmd === "open") await open(msg);
    else if (msg.cmd === "record") {
      deliveries = { seq: [], sentAt: [], at: [], stream: [] };
      recording = true;
      process.send({ type: "recording" });
    } else if (msg.cmd === "collect") {
      recording = false;
      process.send({ type: "deliveries", ...deliveries, counters: { ...counters }, errors: errorSamples.slice() });
    } else if (msg.cmd === "close") {
      closing = true;
      for (const st of streams) {
        st.cancelled = true;
        st.req.close(http2.constants.NGHTTP2_CANCEL);
      }
      await new Promise((r) => setTimeout(r, 200));
      for (const s of sessions) s.close();
      sessions = [];
      streams = [];
      process.send({ type: "closed" });
    }
  } catch (e) {
    process.send({ type: "error", message: String(e?.stack ?? e) });
  }
});
process.send({ type: "hello" });
