// The Deno CLI against databases behind a TLS proxy (https://, HTTP/2),
// trusting the proxy's certificate through DENO_CERT, as a user would.
// Run by tests/e2e/tls.sh once per proxy (nginx, caddy), which starts the
// proxies and the server and passes:
//
//   TLS_PROXY    the proxy's name (stored in the values written)
//   TLS_KV_URLS  space-separated https:// URLs of distinct databases
//                behind it (mounts under /kv/, with and without the
//                trailing slash)
//   TLS_ORIGIN   https://localhost:PORT of the proxy
//   DENO_CERT    the test CA (tests/e2e/tls_ca.sh), read by the Deno CLI
//   DENO_KV_ACCESS_TOKEN  the token of every database in TLS_KV_URLS
//
// Nothing here talks to the server directly: every byte goes through the
// proxy, over TLS.

import assert from "node:assert/strict";

function need(name: string): string {
  const v = Deno.env.get(name);
  if (!v) throw new Error(`${name} is not set: run through tests/e2e/tls.sh`);
  return v;
}
const PROXY = need("TLS_PROXY");
const KV_URLS = need("TLS_KV_URLS").split(/\s+/).filter(Boolean);
const ORIGIN = need("TLS_ORIGIN");
const TOKEN = need("DENO_KV_ACCESS_TOKEN");
need("DENO_CERT");
const RID = crypto.randomUUID().slice(0, 8);
// The server's own answer to a body over its 1 MiB cap (src/err.h), which
// the proxy must repeat word for word when it refuses a larger body itself.
const TOO_LARGE = "Request body too large.\n";
const TEXT_PLAIN = "text/plain; charset=utf-8";

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: number | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

function test(name: string, fn: () => Promise<void>) {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () => withTimeout(fn(), 60_000, name),
  });
}

async function open(url: string): Promise<Deno.Kv> {
  return await withTimeout(Deno.openKv(url), 30_000, `Deno.openKv(${url})`);
}

for (const url of KV_URLS) {
  test(`Deno.openKv("${url}") over https: set, get, delete`, async () => {
    const kv = await open(url);
    try {
      const key = ["tls", RID, url, "basic"];
      const r = await kv.set(key, { via: PROXY, n: 1 });
      assert.ok(r.ok);
      const e = await kv.get(key);
      assert.deepEqual(e.value, { via: PROXY, n: 1 });
      assert.equal(e.versionstamp, r.versionstamp);
      await kv.delete(key);
      assert.equal((await kv.get(key)).value, null);
    } finally {
      kv.close();
    }
  });

  test(`${url}: an atomic check passes on the current versionstamp, fails on a stale one`, async () => {
    const kv = await open(url);
    try {
      const key = ["tls", RID, url, "check"];
      const first = await kv.set(key, 1);
      const ok = await kv.atomic().check({ key, versionstamp: first.versionstamp }).set(key, 2).commit();
      assert.ok(ok.ok, "the check on the current versionstamp passes");
      const stale = await kv.atomic().check({ key, versionstamp: first.versionstamp }).set(key, 3).commit();
      assert.equal(stale.ok, false, "the check on the old versionstamp fails");
      assert.equal((await kv.get(key)).value, 2, "and writes nothing");
      const absent = await kv.atomic().check({ key: [...key, "x"], versionstamp: null })
        .set([...key, "x"], "new").commit();
      assert.ok(absent.ok, "a check for an absent key passes");
    } finally {
      kv.close();
    }
  });

  test(`${url}: a watch sees a write made on another connection`, async () => {
    const watcher = await open(url);
    const writer = await open(url);
    const key = ["tls", RID, url, "watch"];
    const stream = watcher.watch([key]);
    const reader = stream.getReader();
    try {
      const first = await withTimeout(reader.read(), 20_000, "the watch's first frame");
      assert.equal(first.done, false);
      assert.equal(first.value![0].value, null, "the key starts absent");
      const w = await writer.set(key, "changed");
      for (;;) {
        const next = await withTimeout(reader.read(), 20_000, "the watch frame for the write");
        assert.equal(next.done, false, "the watch stream stays open");
        if (next.value![0].versionstamp === w.versionstamp) {
          assert.equal(next.value![0].value, "changed");
          break;
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
      watcher.close();
      writer.close();
    }
  });
}

test("each URL is a database of its own: its own id, and no key of another", async () => {
  const ids = new Set<string>();
  for (const url of KV_URLS) {
    const r = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ supportedVersions: [3] }),
    });
    assert.equal(r.status, 200, `metadata exchange at ${url}`);
    ids.add((await r.json()).databaseId);
  }
  assert.equal(ids.size, KV_URLS.length, `databaseIds ${[...ids].join(", ")}`);
  const kvs = await Promise.all(KV_URLS.map(open));
  try {
    const key = ["tls", RID, "own"];
    await kvs[0].set(key, "only in the first");
    assert.equal((await kvs[0].get(key)).value, "only in the first");
    for (const kv of kvs.slice(1)) assert.equal((await kv.get(key)).value, null);
  } finally {
    for (const kv of kvs) kv.close();
  }
});

// Bodies sent with fetch: the Deno CLI's own HTTP client, over the same
// TLS connection setup (DENO_CERT), offering HTTP/2. The KV client itself
// never sends more than 800 KiB in one commit, so this is how a proxy's
// refusal of a larger body is seen from Deno.
// The headers of a data-path call as the client makes it (the id and token
// from the metadata exchange), so that the server's only objection is the
// size.
async function dataHeaders(kvUrl: string): Promise<Record<string, string>> {
  const r = await fetch(kvUrl, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [3] }),
  });
  assert.equal(r.status, 200, `metadata exchange at ${kvUrl}`);
  const m = await r.json();
  return {
    authorization: `Bearer ${m.token}`,
    "content-type": "application/x-protobuf",
    "x-denokv-version": "3",
    "x-denokv-database-id": m.databaseId,
  };
}

async function post(
  url: string,
  headers: Record<string, string>,
  size: number,
): Promise<{ status: number; type: string; text: string }> {
  const r = await fetch(url, {
    method: "POST",
    headers,
    body: new Uint8Array(size),
  });
  return { status: r.status, type: r.headers.get("content-type") ?? "", text: await r.text() };
}

test("a body over the proxy's limit: 413 with the server's own one-line text", async () => {
  const headers = await dataHeaders(`${ORIGIN}/kv/alice`);
  const url = `${ORIGIN}/kv/alice/v2/atomic_write`;
  const proxy = await post(url, headers, 3_000_000);
  assert.deepEqual(proxy, { status: 413, type: TEXT_PLAIN, text: TOO_LARGE }, "3 MB, refused by the proxy");
  // Between the server's 1 MiB cap and the proxy's 2 MB one: the server
  // refuses it itself. Same status, same words.
  const server = await post(url, headers, 1_500_000);
  assert.deepEqual(server, proxy, "1.5 MB, refused by the server: the same answer");
});

test("the connection is still usable after a refused body", async () => {
  const kv = await open(KV_URLS[0]);
  try {
    const key = ["tls", RID, "after-413"];
    await kv.set(key, "fine");
    assert.equal((await kv.get(key)).value, "fine");
  } finally {
    kv.close();
  }
});
