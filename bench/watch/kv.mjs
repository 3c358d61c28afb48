// kv.mjs: the bits of KV Connect the watch benchmark's Node clients need,
// by hand (proto/datapath.proto): key encoding, Watch and AtomicWrite
// bodies, WatchOutput / AtomicWriteOutput decoding, watch stream framing,
// the metadata exchange. No dependencies beyond Node itself.

import { performance } from "node:perf_hooks";

// Wall-clock milliseconds with sub-millisecond resolution, comparable
// between processes on one machine.
export function now() {
  return performance.timeOrigin + performance.now();
}

// ---------------------------------------------------------------------------
// Keys: [string, number] as the Deno client encodes them.

function escapeZeros(bytes, out) {
  for (const b of bytes) {
    out.push(b);
    if (b === 0) out.push(0xff);
  }
}

export function encodeKey(parts) {
  const out = [];
  for (const p of parts) {
    if (typeof p === "string") {
      out.push(0x02);
      escapeZeros(Buffer.from(p, "utf8"), out);
      out.push(0x00);
    } else if (typeof p === "number") {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(p);
      if (b[0] & 0x80) for (let i = 0; i < 8; i++) b[i] ^= 0xff;
      else b[0] ^= 0x80;
      out.push(0x21, ...b);
    } else {
      throw new Error(`encodeKey: unsupported part ${p}`);
    }
  }
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------
// Protobuf

function varint(n, out) {
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

function field(num, bytes, out) {
  varint((num << 3) | 2, out);
  varint(bytes.length, out);
  for (const b of bytes) out.push(b);
}

function fieldVarint(num, v, out) {
  varint(num << 3, out);
  varint(v, out);
}

// Watch { repeated WatchKey keys = 1 }, WatchKey { bytes key = 1 }
export function encWatch(keys) {
  const out = [];
  for (const k of keys) {
    const inner = [];
    field(1, k, inner);
    field(1, inner, out);
  }
  return Buffer.from(out);
}

// AtomicWrite { repeated Mutation mutations = 2 }: one M_SET (1) of a
// VE_BYTES (3) value.
export function encSet(key, value) {
  const kv = [];
  field(1, value, kv);
  fieldVarint(2, 3, kv);
  const m = [];
  field(1, key, m);
  field(2, kv, m);
  fieldVarint(3, 1, m);
  const out = [];
  field(2, m, out);
  return Buffer.from(out);
}

export function pbParse(b) {
  const out = new Map();
  let i = 0;
  const rd = () => {
    let n = 0, mul = 1;
    for (;;) {
      if (i >= b.length) throw new Error("protobuf: truncated varint");
      const x = b[i++];
      n += (x & 0x7f) * mul;
      if (!(x & 0x80)) return n;
      mul *= 128;
    }
  };
  while (i < b.length) {
    const tag = rd();
    const f = Math.floor(tag / 8), wire = tag & 7;
    let v;
    if (wire === 0) v = rd();
    else if (wire === 2) {
      const len = rd();
      if (i + len > b.length) throw new Error("protobuf: truncated bytes");
      v = b.subarray(i, i + len);
      i += len;
    } else if (wire === 1) {
      v = b.subarray(i, i + 8);
      i += 8;
    } else if (wire === 5) {
      v = b.subarray(i, i + 4);
      i += 4;
    } else throw new Error(`protobuf: wire type ${wire}`);
    if (!out.has(f)) out.set(f, []);
    out.get(f).push(v);
  }
  return out;
}

const last = (m, f, dflt) => {
  const xs = m.get(f);
  return xs ? xs[xs.length - 1] : dflt;
};

// WatchOutput { status = 1; repeated WatchKeyOutput keys = 2 }
// WatchKeyOutput { bool changed = 1; KvEntry entry_if_changed = 2 }
// KvEntry { key = 1; value = 2; encoding = 3; versionstamp = 4 }
export function decWatchOutput(b) {
  const m = pbParse(b);
  return {
    status: last(m, 1, 0),
    keys: (m.get(2) ?? []).map((k) => {
      const km = pbParse(k);
      const e = last(km, 2, null);
      let entry = null;
      if (e) {
        const em = pbParse(e);
        entry = {
          key: last(em, 1, Buffer.alloc(0)),
          value: last(em, 2, Buffer.alloc(0)),
          encoding: last(em, 3, 0),
          versionstamp: last(em, 4, Buffer.alloc(0)),
        };
      }
      return { changed: last(km, 1, 0) !== 0, entry };
    }),
  };
}

// AtomicWriteOutput { status = 1; versionstamp = 2 }
export function decAtomicWriteOutput(b) {
  const m = pbParse(b);
  return { status: last(m, 1, 0), versionstamp: last(m, 2, Buffer.alloc(0)) };
}

// Splits a watch response body into frames: u32 LE length + WatchOutput;
// length 0 is a keep-alive. push(chunk) returns the complete payloads
// (an empty Buffer for a keep-alive).
export class FrameSplitter {
  buf = Buffer.alloc(0);
  push(chunk) {
    const b = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames = [];
    let i = 0;
    while (b.length - i >= 4) {
      const len = b.readUInt32LE(i);
      if (b.length - i - 4 < len) break;
      frames.push(b.subarray(i + 4, i + 4 + len));
      i += 4 + len;
    }
    this.buf = i === b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(i));
    return frames;
  }
}

// ---------------------------------------------------------------------------
// Metadata exchange over HTTP/1.1

export async function metadata(base, token) {
  const r = await fetch(base, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`metadata exchange at ${base}: ${r.status} ${text}`);
  const m = JSON.parse(text);
  const strong = m.endpoints.find((e) => e.consistency === "strong");
  if (!strong) throw new Error(`no strong endpoint in ${text}`);
  // The path of the data endpoint, e.g. /v2 (resolved against base).
  const path = new URL(strong.url, base).pathname.replace(/\/$/, "");
  return { version: m.version, databaseId: m.databaseId, token: m.token, path };
}

export function dataHeaders(meta) {
  return {
    authorization: `Bearer ${meta.token}`,
    "content-type": "application/x-protobuf",
    "x-denokv-version": String(meta.version),
    "x-denokv-database-id": meta.databaseId,
  };
}

// Percentile of a sorted array (nearest rank).
export function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}
