// A minimal FastCGI client: the web server's side of the protocol, spoken
// straight to the server's socket. With it a test can send what no
// well-behaved proxy sends: no CONTENT_LENGTH, a malformed one, a body
// shorter than announced, or a body that stops arriving.

const FCGI_BEGIN_REQUEST = 1;
const FCGI_END_REQUEST = 3;
const FCGI_PARAMS = 4;
const FCGI_STDIN = 5;
const FCGI_STDOUT = 6;
const FCGI_RESPONDER = 1;
const REQUEST_ID = 1;

const te = new TextEncoder();
const td = new TextDecoder();

export function record(type: number, content: Uint8Array, id = REQUEST_ID): Uint8Array {
  const out = new Uint8Array(8 + content.length);
  out.set([1, type, id >> 8, id & 0xff, content.length >> 8, content.length & 0xff, 0, 0]);
  out.set(content, 8);
  return out;
}

function nvLength(n: number): number[] {
  return n < 128 ? [n] : [((n >>> 24) & 0x7f) | 0x80, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

export function encodeParams(params: Record<string, string>): Uint8Array {
  const out: number[] = [];
  for (const [k, v] of Object.entries(params)) {
    const kb = te.encode(k), vb = te.encode(v);
    out.push(...nvLength(kb.length), ...nvLength(vb.length), ...kb, ...vb);
  }
  return new Uint8Array(out);
}

export interface FcgiResponse {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
  text: string;
  ended: boolean; // an FCGI_END_REQUEST record arrived
}

// What came back on a connection within a time limit.
export type FcgiOutcome =
  | { kind: "response"; response: FcgiResponse; ms: number }
  | { kind: "closed"; ms: number } // closed without any response
  | { kind: "timeout"; ms: number }; // still open, nothing complete

export class FcgiConn {
  private constructor(private conn: Deno.UnixConn, readonly opened: number) {}

  static async open(socket: string): Promise<FcgiConn> {
    return new FcgiConn(await Deno.connect({ transport: "unix", path: socket }), Date.now());
  }

  async write(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) off += await this.conn.write(b.subarray(off));
  }

  // BEGIN_REQUEST and all the parameters; keep: FCGI_KEEP_CONN, asking the
  // server to keep the connection open after the response.
  async begin(params: Record<string, string>, keep = false): Promise<void> {
    const begin = new Uint8Array(8);
    begin[1] = FCGI_RESPONDER;
    begin[2] = keep ? 1 : 0;
    const p = encodeParams(params);
    const recs: Uint8Array[] = [record(FCGI_BEGIN_REQUEST, begin)];
    for (let i = 0; i < p.length; i += 65535) recs.push(record(FCGI_PARAMS, p.subarray(i, i + 65535)));
    recs.push(record(FCGI_PARAMS, new Uint8Array(0)));
    await this.write(concat(recs));
  }

  // Body bytes, in records of at most 64 KiB; end=true sends the empty STDIN record.
  async stdin(body: Uint8Array, end = false): Promise<void> {
    const recs: Uint8Array[] = [];
    for (let i = 0; i < body.length; i += 65535) recs.push(record(FCGI_STDIN, body.subarray(i, i + 65535)));
    if (end) recs.push(record(FCGI_STDIN, new Uint8Array(0)));
    await this.write(concat(recs));
  }

  // Reads records until END_REQUEST, the connection closes, or ms pass.
  async outcome(ms: number): Promise<FcgiOutcome> {
    const start = Date.now();
    let buf = new Uint8Array(0);
    let stdout = new Uint8Array(0);
    let ended = false;
    const chunk = new Uint8Array(65536);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
    try {
      while (!ended) {
        const n = await Promise.race([this.conn.read(chunk).catch(() => null), timeout]);
        if (n === "timeout") return { kind: "timeout", ms: Date.now() - start };
        if (n === null) break;
        buf = concat([buf, chunk.subarray(0, n)]);
        while (buf.length >= 8) {
          const len = (buf[4] << 8) | buf[5], pad = buf[6];
          if (buf.length < 8 + len + pad) break;
          const type = buf[1], content = buf.subarray(8, 8 + len);
          if (type === FCGI_STDOUT) stdout = concat([stdout, content]);
          if (type === FCGI_END_REQUEST) ended = true;
          buf = buf.subarray(8 + len + pad);
        }
      }
    } finally {
      clearTimeout(timer);
    }
    const took = Date.now() - start;
    if (stdout.length === 0) return { kind: "closed", ms: took };
    return { kind: "response", response: parseCgi(stdout, ended), ms: took };
  }

  // The next whole record (any type), or null if the connection closed or
  // nothing complete came within ms. Bytes after it are kept for the next
  // call.
  private pending = new Uint8Array(0);
  async readRecord(ms: number): Promise<{ type: number; id: number; content: Uint8Array } | null> {
    const deadline = Date.now() + ms;
    const chunk = new Uint8Array(65536);
    for (;;) {
      const b = this.pending;
      if (b.length >= 8 && b.length >= 8 + ((b[4] << 8) | b[5]) + b[6]) {
        const len = (b[4] << 8) | b[5];
        const rec = { type: b[1], id: (b[2] << 8) | b[3], content: b.slice(8, 8 + len) };
        this.pending = b.slice(8 + len + b[6]);
        return rec;
      }
      const left = deadline - Date.now();
      if (left <= 0) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left));
      const n = await Promise.race([this.conn.read(chunk).catch(() => null), timeout]);
      clearTimeout(timer);
      if (n === "timeout" || n === null) return null;
      this.pending = concat([this.pending, chunk.subarray(0, n)]);
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function parseCgi(b: Uint8Array, ended: boolean): FcgiResponse {
  let end = -1;
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) {
      end = i;
      break;
    }
  }
  const head = td.decode(end < 0 ? b : b.subarray(0, end));
  const body = end < 0 ? new Uint8Array(0) : b.subarray(end + 4);
  const headers: Record<string, string> = {};
  for (const line of head.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const status = Number((headers["status"] ?? "200").split(" ")[0]);
  return { status, headers, body, text: td.decode(body), ended };
}

// One request on a fresh connection: parameters, then body (ended unless
// told otherwise), then whatever comes back within ms.
export async function fcgiRequest(
  socket: string,
  params: Record<string, string>,
  body: Uint8Array = new Uint8Array(0),
  opts: { end?: boolean; ms?: number } = {},
): Promise<FcgiOutcome> {
  const c = await FcgiConn.open(socket);
  try {
    await c.begin(params);
    await c.stdin(body, opts.end ?? true);
    return await c.outcome(opts.ms ?? 10_000);
  } finally {
    c.close();
  }
}
