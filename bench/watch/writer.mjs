// writer.mjs: writes random watched keys at a fixed rate (open loop) over
// HTTP/1.1 keep-alive connections and records, per write, when it was sent
// and when its commit was acknowledged. Run by bench.mjs, driven over IPC:
//
//   {cmd: "run", base, token, rate, seconds, keys, prefix, conns, seq0}
//       one M_SET of [prefix, random key] per 1/rate s, value
//       "SEQ:SENT_AT_MS" (seq from seq0 on); at most `conns` in flight (a
//       write that finds them all busy waits, and is sent late: reported).
//       Replies "done" with [seq, sentAt, ackAt, key] per committed write.
import http from "node:http";
import { dataHeaders, decAtomicWriteOutput, encodeKey, encSet, metadata, now } from "./kv.mjs";

async function run(msg) {
  const meta = await metadata(msg.base, msg.token);
  const url = new URL(`${meta.path}/atomic_write`, msg.base);
  const agent = new http.Agent({ keepAlive: true, maxSockets: msg.conns });
  const headers = dataHeaders(meta);
  const keys = [];
  for (let i = 0; i < msg.keys; i++) keys.push(encodeKey([msg.prefix, i]));
  const total = Math.round(msg.rate * msg.seconds);
  const acks = [];
  let sent = 0, done = 0, inflight = 0, errors = 0, late = 0, maxLateMs = 0;
  const errorSamples = [];
  const t0 = now() + 50;

  const send = (seq, due) => {
    const sentAt = now();
    const lag = sentAt - due;
    if (lag > 5) late++;
    if (lag > maxLateMs) maxLateMs = lag;
    const key = Math.floor(Math.random() * keys.length);
    const body = encSet(keys[key], Buffer.from(`${seq}:${sentAt.toFixed(3)}`));
    inflight++;
    const req = http.request(url, { method: "POST", agent, headers: { ...headers, "content-length": body.length } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const ackAt = now();
        inflight--;
        done++;
        const b = Buffer.concat(chunks);
        let ok = false;
        if (res.statusCode === 200) {
          try {
            const o = decAtomicWriteOutput(b);
            ok = o.status === 1 && o.versionstamp.length === 10;
          } catch {
            ok = false;
          }
        }
        if (ok) acks.push([seq, sentAt, ackAt, key]);
        else {
          errors++;
          if (errorSamples.length < 5) errorSamples.push(`HTTP ${res.statusCode}: ${b.toString("latin1").slice(0, 200)}`);
        }
        tick();
      });
    });
    req.on("error", (e) => {
      inflight--;
      done++;
      errors++;
      if (errorSamples.length < 5) errorSamples.push(e.message);
      tick();
    });
    req.end(body);
  };

  let finish;
  const finished = new Promise((r) => finish = r);
  let timer = null;
  function tick() {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    const t = now();
    while (sent < total && inflight < msg.conns) {
      const due = t0 + (sent * 1000) / msg.rate;
      if (due > t) break;
      send(msg.seq0 + sent, due);
      sent++;
    }
    if (done === total) return finish();
    if (sent < total && inflight < msg.conns) {
      const due = t0 + (sent * 1000) / msg.rate;
      timer = setTimeout(tick, Math.max(0, due - now()));
    }
  }
  tick();
  await finished;
  agent.destroy();
  const lastAck = acks.reduce((m, a) => Math.max(m, a[2]), t0);
  return {
    type: "done",
    sent,
    ok: acks.length,
    errors,
    errorSamples,
    late,
    maxLateMs,
    seconds: (lastAck - t0) / 1000,
    acks,
  };
}

process.on("message", async (msg) => {
  try {
    if (msg.cmd === "run") process.send(await run(msg));
  } catch (e) {
    process.send({ type: "error", message: String(e?.stack ?? e) });
  }
});
process.send({ type: "hello" });
