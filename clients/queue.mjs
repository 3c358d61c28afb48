// @ts-self-types="./queue.d.mts"
// queue.mjs: a client for denokv-fcgi's queue delivery (docs/queues.md).
//
// A plain ES module with no dependencies: it needs only fetch and node:v8,
// so it runs unchanged in Deno and in Node 18 or newer.
//
//   import { openQueue } from "./queue.mjs";
//   const q = await openQueue("https://example.org/kv/", { accessToken });
//   await q.enqueue({ job: "mail", to: "a@example.org" }, { delay: 5000 });
//   const done = q.listenQueue(async (msg) => { ... }, { concurrency: 4 });
//   ...
//   q.close(); await done;
//
// Values are V8-serialized like Deno KV's own, so messages enqueued here
// are read by Deno.Kv.listenQueue and the other way round.

import v8 from "node:v8";

/** @typedef {Uint8Array | string | number | bigint | boolean} KvKeyPart */
/** @typedef {KvKeyPart[]} KvKey */

/**
 * @typedef {object} OpenOptions
 * @property {string} [accessToken] the server's access token; defaults to
 *   the DENO_KV_ACCESS_TOKEN environment variable
 */

/**
 * @typedef {object} EnqueueOptions
 * @property {number} [delay] milliseconds before the message is due (0)
 * @property {KvKey[]} [keysIfUndelivered] where the value is written when
 *   every attempt failed
 * @property {number[]} [backoffSchedule] delays between attempts, in ms
 *   (the server's default: 100, 1000, 5000, 30000, 60000)
 */

/**
 * @typedef {object} ListenOptions
 * @property {number} [concurrency] messages handled at once (1)
 * @property {number} [leaseMs] how long a message is held before it is
 *   renewed (30000; renewed at a third of it while the handler runs)
 * @property {number} [waitMs] long-poll wait per request (30000)
 */

/**
 * @typedef {object} QueueMessageInfo
 * @property {number} attempt 1 on the first delivery; 0 if unknown
 * @property {number} dueAt when the message was due (ms since the epoch)
 */

const PROTOCOL_VERSIONS = [2, 3];

/** Serializes a value as Deno KV does (V8 format, typed arrays inline). */
function serialize(value) {
  const s = new v8.Serializer();
  s.writeHeader();
  s.writeValue(value);
  return new Uint8Array(s.releaseBuffer());
}

function deserialize(bytes) {
  const d = new v8.Deserializer(bytes);
  d.readHeader();
  return d.readValue();
}

function envToken() {
  try {
    if (typeof Deno !== "undefined") return Deno.env.get("DENO_KV_ACCESS_TOKEN");
  } catch { /* no --allow-env: fall through */ }
  if (typeof process !== "undefined") return process.env.DENO_KV_ACCESS_TOKEN;
  return undefined;
}

// --- protobuf: just enough for one AtomicWrite with one Enqueue --------------

function varint(out, n) {
  let v = BigInt.asUintN(64, BigInt(n));
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

function field(out, num, wire) {
  varint(out, (num << 3) | wire);
}

function bytesField(out, num, bytes) {
  field(out, num, 2);
  varint(out, bytes.length);
  for (const b of bytes) out.push(b);
}

/** AtomicWrite { enqueues: [Enqueue { payload, deadline_ms, keys, backoff }] } */
function encodeEnqueueWrite(payload, deadlineMs, keys, backoff) {
  const enq = [];
  bytesField(enq, 1, payload);
  field(enq, 2, 0);
  varint(enq, deadlineMs);
  for (const k of keys) bytesField(enq, 3, k);
  if (backoff !== undefined) {
    const packed = [];
    for (const d of backoff) varint(packed, d);
    bytesField(enq, 4, packed);
  }
  const write = [];
  bytesField(write, 3, enq);
  return new Uint8Array(write);
}

/** AtomicWriteOutput: status (1 = success) and versionstamp. */
function decodeWriteOutput(buf) {
  let pos = 0, status = 0, versionstamp = null;
  const readVarint = () => {
    let v = 0n, shift = 0n, b;
    do {
      if (pos >= buf.length) throw new Error("truncated response");
      b = buf[pos++];
      v |= BigInt(b & 0x7f) << shift;
      shift += 7n;
    } while (b & 0x80);
    return v;
  };
  while (pos < buf.length) {
    const tag = Number(readVarint());
    const num = tag >> 3, wire = tag & 7;
    if (wire === 0) {
      const v = readVarint();
      if (num === 1) status = Number(v);
    } else if (wire === 2) {
      const len = Number(readVarint());
      if (num === 2) versionstamp = buf.subarray(pos, pos + len);
      pos += len;
    } else if (wire === 5) pos += 4;
    else if (wire === 1) pos += 8;
    else throw new Error("unexpected protobuf wire type " + wire);
  }
  return { status, versionstamp };
}

// --- Deno KV key encoding (for keysIfUndelivered) ----------------------------

function escapeZeros(out, bytes) {
  for (const b of bytes) {
    out.push(b);
    if (b === 0) out.push(0xff);
  }
  out.push(0);
}

function encodeKeyPart(out, part) {
  if (part instanceof Uint8Array) {
    out.push(0x01);
    escapeZeros(out, part);
  } else if (typeof part === "string") {
    out.push(0x02);
    escapeZeros(out, new TextEncoder().encode(part));
  } else if (typeof part === "bigint") {
    const neg = part < 0n;
    let abs = neg ? -part : part;
    const digits = [];
    while (abs > 0n) {
      digits.unshift(Number(abs & 0xffn));
      abs >>= 8n;
    }
    const n = digits.length;
    if (n > 255) throw new RangeError("bigint key part too large");
    if (n <= 8) out.push(neg ? 0x14 - n : 0x14 + n);
    else out.push(neg ? 0x0b : 0x1d, neg ? 0xff - n : n);
    for (const d of digits) out.push(neg ? 0xff - d : d);
  } else if (typeof part === "number") {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, part, false);
    if (b[0] & 0x80) for (let i = 0; i < 8; i++) b[i] ^= 0xff;
    else b[0] ^= 0x80;
    out.push(0x21, ...b);
  } else if (part === false) out.push(0x26);
  else if (part === true) out.push(0x27);
  else throw new TypeError("unsupported key part: " + typeof part);
}

function encodeKey(key) {
  const out = [];
  for (const part of key) encodeKeyPart(out, part);
  return new Uint8Array(out);
}

// --- base64 ---------------------------------------------------------------------

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// --- the queue --------------------------------------------------------------------

/** An HTTP refusal from the server, with its status and one-line reason. */
export class QueueError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(`denokv-fcgi queue (status ${status}): ${message}`);
    this.name = "QueueError";
    this.status = status;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Connects to a denokv-fcgi database and checks that it delivers queues.
 * @param {string} url the database URL, as given to Deno.openKv
 * @param {OpenOptions} [options]
 * @returns {Promise<Queue>}
 */
export async function openQueue(url, options = {}) {
  const token = options.accessToken ?? envToken();
  if (!token) throw new TypeError("openQueue: no accessToken given");
  const res = await fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
    },
    // denokvFcgiQueues: ask for the extension (other clients do not see it).
    body: JSON.stringify({ supportedVersions: PROTOCOL_VERSIONS, denokvFcgiQueues: 1 }),
  });
  const text = await res.text();
  if (!res.ok) throw new QueueError(res.status, text.trim());
  const meta = JSON.parse(text);
  const ext = meta.denokvFcgiQueues;
  if (!ext || ext.version !== 1 || typeof ext.url !== "string") {
    throw new Error(
      "this server does not deliver queues (no denokvFcgiQueues in its metadata)",
    );
  }
  const strong = meta.endpoints.find((e) => e.consistency === "strong");
  return new Queue({
    dataUrl: new URL(strong.url, url).href.replace(/\/$/, ""),
    queueUrl: new URL(ext.url, url).href.replace(/\/$/, ""),
    token: meta.token,
    databaseId: meta.databaseId,
    version: meta.version,
  });
}

export class Queue {
  #c;
  #closed = false;
  #abort = new AbortController();
  /** @type {Set<Promise<void>>} */
  #listeners = new Set();
  /** Outcomes waiting to be sent, and whether a send is under way. */
  #outcomes = [];
  #sending = false;

  /** @param {{dataUrl: string, queueUrl: string, token: string, databaseId: string, version: number}} c */
  constructor(c) {
    this.#c = c;
  }

  #headers(ctype) {
    return {
      authorization: `Bearer ${this.#c.token}`,
      "content-type": ctype,
      "x-denokv-database-id": this.#c.databaseId,
      "x-denokv-version": String(this.#c.version),
    };
  }

  /**
   * POSTs and returns the body; 5xx and network errors are retried (the
   * server says busy), 4xx are thrown as QueueError.
   */
  async #post(url, body, ctype, { signal, retry = true } = {}) {
    for (let delay = 100;; delay = Math.min(delay * 2, 5000)) {
      let res;
      try {
        res = await fetch(url, {
          method: "POST",
          headers: this.#headers(ctype),
          body,
          signal,
        });
      } catch (e) {
        if (signal?.aborted || !retry) throw e;
        await sleep(delay);
        continue;
      }
      if (res.ok) return new Uint8Array(await res.arrayBuffer());
      const reason = (await res.text()).trim();
      if (res.status < 500 || !retry) throw new QueueError(res.status, reason);
      await sleep(delay);
    }
  }

  async #json(path, obj, opts) {
    const body = await this.#post(
      `${this.#c.queueUrl}/${path}`,
      JSON.stringify(obj),
      "application/json",
      opts,
    );
    return JSON.parse(new TextDecoder().decode(body));
  }

  /**
   * Enqueues a value: an ordinary atomic write with one enqueue.
   * @param {unknown} value
   * @param {EnqueueOptions} [options]
   * @returns {Promise<{ok: true, versionstamp: string}>}
   */
  async enqueue(value, options = {}) {
    const delay = options.delay ?? 0;
    if (!Number.isInteger(delay) || delay < 0) {
      throw new TypeError("delay must be a non-negative integer");
    }
    // KV Connect cannot tell an empty schedule from none, and the server
    // stores none as the default one: [] ("never retry" to Deno's local
    // queue) would be retried five times.
    if (options.backoffSchedule?.length === 0) {
      throw new RangeError(
        "backoffSchedule must not be empty over KV Connect (it would mean the default schedule)",
      );
    }
    const keys = (options.keysIfUndelivered ?? []).map(encodeKey);
    const body = encodeEnqueueWrite(
      serialize(value),
      Date.now() + delay,
      keys,
      options.backoffSchedule,
    );
    const out = decodeWriteOutput(
      await this.#post(`${this.#c.dataUrl}/atomic_write`, body, "application/x-protobuf"),
    );
    if (out.status !== 1) throw new Error(`enqueue failed (status ${out.status})`);
    const vs = [...(out.versionstamp ?? [])]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    return { ok: true, versionstamp: vs };
  }

  /**
   * Calls handler for each message as it becomes due, like
   * Deno.Kv.listenQueue: a handler that resolves finishes the message, one
   * that throws or rejects fails it (it is retried on its backoff
   * schedule). Leases are renewed while a handler runs. Resolves once
   * close() was called and the handlers in flight have finished.
   * @param {(value: any, info: QueueMessageInfo) => unknown} handler
   * @param {ListenOptions} [options]
   * @returns {Promise<void>}
   */
  listenQueue(handler, options = {}) {
    const p = this.#listen(handler, options);
    this.#listeners.add(p);
    p.finally(() => this.#listeners.delete(p)).catch(() => {});
    return p;
  }

  async #listen(handler, options) {
    const concurrency = options.concurrency ?? 1;
    const leaseMs = options.leaseMs ?? 30000;
    const waitMs = options.waitMs ?? 30000;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 100) {
      throw new RangeError("concurrency must be an integer from 1 to 100");
    }
    /** @type {Set<Promise<void>>} */
    const running = new Set();
    while (!this.#closed) {
      if (running.size >= concurrency) {
        await Promise.race(running);
        continue;
      }
      let answer;
      try {
        answer = await this.#json(
          "lease",
          { max: concurrency - running.size, waitMs, leaseMs },
          { signal: this.#abort.signal },
        );
      } catch (e) {
        if (this.#closed) break;
        if (e instanceof QueueError && e.status < 500) throw e;
        // A long poll cut short (its server process restarted, say):
        // anything leased for it comes again after its lease.
        await sleep(200);
        continue;
      }
      for (const m of answer.messages) {
        const task = this.#handle(m, handler, leaseMs);
        running.add(task);
        task.finally(() => running.delete(task));
      }
    }
    await Promise.allSettled(running);
  }

  async #handle(m, handler, leaseMs) {
    let id = m.id;
    let renewing = Promise.resolve();
    let lost = false;
    const timer = setInterval(() => {
      renewing = renewing.then(async () => {
        if (lost) return;
        try {
          id = (await this.#json("renew", { id, leaseMs })).id;
        } catch (e) {
          // The lease is gone: another consumer may get the message.
          if (e instanceof QueueError && e.status < 500) lost = true;
        }
      });
    }, Math.floor(leaseMs / 3));
    let success = false;
    try {
      const value = deserialize(fromBase64(m.payload));
      await handler(value, { attempt: m.attempt, dueAt: m.dueAt });
      success = true;
    } catch (e) {
      reportHandlerError(e);
    } finally {
      clearInterval(timer);
    }
    await renewing;
    if (lost) return;
    try {
      await this.#finish(id, success);
    } catch (e) {
      // 409/410: the lease ran out first; the message comes again.
      if (!(e instanceof QueueError)) throw e;
    }
  }

  /**
   * Reports one outcome. Outcomes that arrive while a report is on its way
   * go together in the next one, which the server commits at once: under
   * load, many messages share one commit; alone, nothing waits.
   */
  #finish(id, success) {
    return new Promise((resolve, reject) => {
      this.#outcomes.push({ id, success, resolve, reject });
      if (!this.#sending) this.#sendOutcomes();
    });
  }

  async #sendOutcomes() {
    this.#sending = true;
    try {
      while (this.#outcomes.length > 0) {
        const batch = this.#outcomes.splice(0, 100);
        try {
          const out = await this.#json("finish", {
            results: batch.map(({ id, success }) => ({ id, success })),
          });
          out.results.forEach((r, i) => {
            if (r.status === 200) batch[i].resolve();
            else batch[i].reject(new QueueError(r.status, r.message));
          });
        } catch (e) {
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.#sending = false;
    }
  }

  /**
   * Stops listening: pending long polls are abandoned and every
   * listenQueue promise resolves once its handlers in flight are done.
   */
  close() {
    this.#closed = true;
    this.#abort.abort();
  }
}

function reportHandlerError(e) {
  console.error("queue handler failed:", e);
}
