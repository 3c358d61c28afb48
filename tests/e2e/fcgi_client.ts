// fcgi_client.ts: a minimal FastCGI client for the process-model suites, so
// that they can talk to a server instance on its own unix socket without a
// proxy in front of it.
//
//   deno run -A fcgi_client.ts SOCKET URI TOKEN [hold]
//
// Sends a KV Connect metadata exchange (POST URI, bearer TOKEN, body
// {"supportedVersions":[1,2,3]}) and prints "STATUS <code>" and
// "BODY <first line of the body>"; "STATUS none" if the connection closed
// without an answer. With "hold", it declares the whole body but sends only
// its first bytes, prints "HOLDING" and waits (a request that stays in
// progress until this process is killed or the server gives up on it).
const [socket, uri, token, mode] = Deno.args;
const enc = new TextEncoder();
const body = enc.encode(JSON.stringify({ supportedVersions: [1, 2, 3] }));

const FCGI_BEGIN_REQUEST = 1, FCGI_END_REQUEST = 3, FCGI_PARAMS = 4, FCGI_STDIN = 5, FCGI_STDOUT = 6;

function record(type: number, content: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + content.length);
  out.set([1, type, 0, 1, content.length >> 8, content.length & 0xff, 0, 0]);
  out.set(content, 8);
  return out;
}
function nvLength(n: number): number[] {
  return n < 128 ? [n] : [((n >> 24) & 0x7f) | 0x80, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}
function params(p: Record<string, string>): Uint8Array {
  const out: number[] = [];
  for (const [k, v] of Object.entries(p)) {
    const kb = enc.encode(k), vb = enc.encode(v);
    out.push(...nvLength(kb.length), ...nvLength(vb.length), ...kb, ...vb);
  }
  return new Uint8Array(out);
}

const conn = await Deno.connect({ transport: "unix", path: socket });
const sent = mode === "hold" ? body.subarray(0, 5) : body;
const parts = [
  record(FCGI_BEGIN_REQUEST, new Uint8Array([0, 1, 0, 0, 0, 0, 0, 0])),
  record(FCGI_PARAMS, params({
    REQUEST_METHOD: "POST",
    REQUEST_URI: uri,
    SERVER_PROTOCOL: "HTTP/1.1",
    CONTENT_TYPE: "application/json",
    CONTENT_LENGTH: String(body.length),
    HTTP_AUTHORIZATION: `Bearer ${token}`,
  })),
  record(FCGI_PARAMS, new Uint8Array(0)),
  record(FCGI_STDIN, sent),
];
if (mode !== "hold") parts.push(record(FCGI_STDIN, new Uint8Array(0)));
for (const p of parts) await conn.write(p);
if (mode === "hold") console.log("HOLDING");

// Collect STDOUT records until END_REQUEST or the connection closes.
let buf = new Uint8Array(0);
let out = new Uint8Array(0);
let ended = false;
const chunk = new Uint8Array(65536);
while (!ended) {
  let n: number | null = null;
  try {
    n = await conn.read(chunk);
  } catch {
    n = null;
  }
  if (n === null) break;
  const nb = new Uint8Array(buf.length + n);
  nb.set(buf);
  nb.set(chunk.subarray(0, n), buf.length);
  buf = nb;
  while (buf.length >= 8) {
    const len = (buf[4] << 8) | buf[5], pad = buf[6];
    if (buf.length < 8 + len + pad) break;
    const type = buf[1], content = buf.subarray(8, 8 + len);
    if (type === FCGI_STDOUT) {
      const no = new Uint8Array(out.length + content.length);
      no.set(out);
      no.set(content, out.length);
      out = no;
    } else if (type === FCGI_END_REQUEST) ended = true;
    buf = buf.subarray(8 + len + pad);
  }
}
const text = new TextDecoder().decode(out);
const m = /^Status: (\d+)/m.exec(text);
const sep = text.indexOf("\r\n\r\n");
console.log(`STATUS ${m ? m[1] : "none"}`);
console.log(`BODY ${sep >= 0 ? text.slice(sep + 4).split("\n")[0] : ""}`);
try {
  conn.close();
} catch { /* already closed */ }
