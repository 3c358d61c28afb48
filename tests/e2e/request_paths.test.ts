// Request paths (issue 7, defects 6 and 10). The metadata exchange builds
// the data-path URL from the path a request arrived on; a raw path such as
// "//evil.example/x" used to come back as "//evil.example/x/v2", which a
// client resolves to another host and sends its token there. Paths are now
// normalised (repeated slashes collapsed) and refused with a 400 and a
// one-line reason when they hold a backslash, a dot segment or an encoded
// slash; the advertised URL is always a path on the client's origin. And a
// mount whose name contains "/v2/" works like any other.
//
// Requests are written byte for byte over TCP to nginx's HTTP/1.1 listener
// (fetch would normalise the paths before sending them).

import { assert, H1_URL, plainTest, RawClient, TOKEN } from "./helpers.ts";

const H1 = new URL(H1_URL);
const BAD_PATH = "Invalid request path: it must start with / and contain no backslash, dot segment or encoded slash.";

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

// One HTTP/1.1 request with the path exactly as given.
async function rawRequest(path: string, headers: Record<string, string>, body: string): Promise<Answer> {
  const conn = await Deno.connect({ hostname: H1.hostname, port: Number(H1.port) });
  try {
    const head = [`POST ${path} HTTP/1.1`, `Host: ${H1.host}`, "Connection: close",
      `Content-Length: ${new TextEncoder().encode(body).length}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    await conn.write(new TextEncoder().encode(head.join("\r\n") + "\r\n\r\n" + body));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const all = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
    const [headPart, ...rest] = all.split("\r\n\r\n");
    const lines = headPart.split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    const ct = lines.find((l) => /^content-type:/i.test(l))?.split(":").slice(1).join(":").trim() ?? "";
    let text = rest.join("\r\n\r\n");
    if (lines.some((l) => /^transfer-encoding:\s*chunked/i.test(l))) text = unchunk(text);
    return { status, contentType: ct, text };
  } finally {
    conn.close();
  }
}

function unchunk(s: string): string {
  let out = "";
  for (;;) {
    const i = s.indexOf("\r\n");
    const n = parseInt(s.slice(0, i), 16);
    if (!n) return out;
    out += s.slice(i + 2, i + 2 + n);
    s = s.slice(i + 2 + n + 2);
  }
}

function metadata(path: string, token: string | null = TOKEN): Promise<Answer> {
  const h: Record<string, string> = { "Content-Type": "application/json" };
  if (token !== null) h["Authorization"] = `Bearer ${token}`;
  return rawRequest(path, h, JSON.stringify({ supportedVersions: [2, 3] }));
}

async function assertServed(what: string) {
  const r = await metadata("/");
  assert.equal(r.status, 200, `${what}: the next request is served (${r.status} ${r.text})`);
}

for (
  const [raw, want] of [
    ["//evil.example/x", "/evil.example/x/v2"],
    ["//evil.example", "/evil.example/v2"],
    ["///kv//", "/kv/v2"],
    ["/kv//sub///", "/kv/sub/v2"],
  ]
) {
  plainTest(`metadata at ${JSON.stringify(raw)} advertises ${want}, on the same origin`, async () => {
    const r = await metadata(raw);
    assert.equal(r.status, 200, `${r.status} ${r.text}`);
    const meta = JSON.parse(r.text);
    const url: string = meta.endpoints[0].url;
    assert.equal(url, want);
    const requestUrl = `${H1.origin}${raw}`;
    assert.equal(new URL(url, requestUrl).origin, H1.origin, `${url} resolved against ${requestUrl} stays on ${H1.origin}`);
  });
}

for (
  const raw of [
    "/kv/../x/",
    "/kv/./x/",
    "/kv/%2e%2e/x/",
    "/kv/.%2E/v2/snapshot_read",
    "/kv/%2E/",
    "/a%2Fb/",
    "/a%2fb/v2/atomic_write",
    "/a%5Cb/",
    "/\\evil.example/x",
    "/kv\\x/",
  ]
) {
  plainTest(`path ${JSON.stringify(raw)} -> 400 with a one-line reason`, async () => {
    const r = await metadata(raw);
    assert.equal(r.status, 400, `${r.status} ${r.text}`);
    assert.match(r.contentType, /^text\/plain\b/);
    assert.equal(r.text, `${BAD_PATH}\n`);
    await assertServed(raw);
  });
}

plainTest("a bad path without the token is refused the same way (nothing is read first)", async () => {
  const r = await metadata("/kv/../x/", null);
  assert.equal(r.status, 400, `${r.status} ${r.text}`);
  assert.equal(r.text, `${BAD_PATH}\n`);
});

plainTest("a mount whose name contains /v2/ works: metadata, then a read and a write on its data path", async () => {
  const base = `${H1.origin}/app/v2/kv/`;
  const c = await RawClient.open(base);
  assert.equal(c.meta.endpoints[0].url, "/app/v2/kv/v2");
  assert.equal(c.dataUrl, `${H1.origin}/app/v2/kv/v2`);
  const key = new TextEncoder().encode(`\x02paths-${crypto.randomUUID()}\x00`);
  const w = await c.write({ mutations: [{ key, type: 1, value: { data: new Uint8Array([7]), encoding: 3 } }] });
  assert.equal(w.status, 1, "the write through /app/v2/kv/v2/atomic_write succeeds");
  const e = await c.get(key);
  assert.ok(e, "and the read through /app/v2/kv/v2/snapshot_read sees it");
});
