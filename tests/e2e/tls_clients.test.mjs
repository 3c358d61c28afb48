// Node's @deno/kv (remote mode: Node's fetch, HTTP/1.1 over TLS) against
// databases behind a TLS proxy, trusting the proxy's certificate through
// NODE_EXTRA_CA_CERTS, as a user would. Run by tests/e2e/tls.sh once per
// proxy with TLS_PROXY, TLS_KV_URLS, TLS_ORIGIN and DENO_KV_ACCESS_TOKEN
// (see tls_clients.test.ts) and NODE_EXTRA_CA_CERTS set to the test CA.

import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { openKv } from "@deno/kv";

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through tests/e2e/tls.sh`);
  return v;
}
const PROXY = need("TLS_PROXY");
const KV_URLS = need("TLS_KV_URLS").split(/\s+/).filter(Boolean);
const ORIGIN = need("TLS_ORIGIN");
const TOKEN = need("DENO_KV_ACCESS_TOKEN");
need("NODE_EXTRA_CA_CERTS");
const RID = randomUUID().slice(0, 8);
const TOO_LARGE = "Request body too large.\n";
const TEXT_PLAIN = "text/plain; charset=utf-8";

function withTimeout(p, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

function kvTest(name, fn) {
  test(name, { timeout: 60_000 }, fn);
}

// 4xx are never retried by the client, so a refusal surfaces at once.
const open = (url) => withTimeout(openKv(url, { accessToken: TOKEN }), 30_000, `openKv(${url})`);

for (const url of KV_URLS) {
  kvTest(`@deno/kv openKv("${url}") over https: set, get, delete`, async () => {
    const kv = await open(url);
    try {
      const key = ["tls-node", RID, url, "basic"];
      const r = await kv.set(key, { via: PROXY });
      assert.ok(r.ok);
      const e = await kv.get(key);
      assert.deepEqual(e.value, { via: PROXY });
      assert.equal(e.versionstamp, r.versionstamp);
      await kv.delete(key);
      assert.equal((await kv.get(key)).value, null);
    } finally {
      kv.close();
    }
  });

  kvTest(`${url}: an atomic check passes on the current versionstamp, fails on a stale one`, async () => {
    const kv = await open(url);
    try {
      const key = ["tls-node", RID, url, "check"];
      const first = await kv.set(key, 1);
      const ok = await kv.atomic().check({ key, versionstamp: first.versionstamp }).set(key, 2).commit();
      assert.ok(ok.ok);
      const stale = await kv.atomic().check({ key, versionstamp: first.versionstamp }).set(key, 3).commit();
      assert.equal(stale.ok, false);
      assert.equal((await kv.get(key)).value, 2);
    } finally {
      kv.close();
    }
  });

  kvTest(`${url}: a watch sees a write made on another connection`, async () => {
    const watcher = await open(url);
    const writer = await open(url);
    const key = ["tls-node", RID, url, "watch"];
    // @deno/kv holds a watch's first frame back while every key in it is
    // absent, so the key exists before the watch starts.
    const before = await writer.set(key, "before");
    const reader = watcher.watch([key]).getReader();
    try {
      const first = await withTimeout(reader.read(), 20_000, "the watch's first frame");
      assert.equal(first.done, false);
      assert.equal(first.value[0].value, "before");
      assert.equal(first.value[0].versionstamp, before.versionstamp);
      const w = await writer.set(key, "changed");
      for (;;) {
        const next = await withTimeout(reader.read(), 20_000, "the watch frame for the write");
        assert.equal(next.done, false);
        if (next.value[0].versionstamp === w.versionstamp) {
          assert.equal(next.value[0].value, "changed");
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

kvTest("an atomic write over the proxy's body limit fails with the 413 text", async () => {
  const kv = await open(KV_URLS[0]);
  try {
    // @deno/kv checks no total size: 40 values of 60 KB make a 2.4 MB
    // body, past the proxy's 2 MB limit (the server's is 1 MiB).
    let op = kv.atomic();
    for (let i = 0; i < 40; i++) op = op.set(["tls-node", RID, "big", i], new Uint8Array(60_000));
    await assert.rejects(op.commit(), (e) => {
      assert.match(String(e.message), /413/, e.message);
      assert.ok(String(e.message).endsWith(TOO_LARGE.trimEnd()) || String(e.message).includes(TOO_LARGE),
        `the client's error carries the one-line text: ${e.message}`);
      assert.doesNotMatch(String(e.message), /<html/i);
      return true;
    });
    assert.equal((await kv.get(["tls-node", RID, "big", 0])).value, null, "nothing was written");
    await kv.set(["tls-node", RID, "after"], 1);
    assert.equal((await kv.get(["tls-node", RID, "after"])).value, 1, "the client goes on working");
  } finally {
    kv.close();
  }
});

kvTest("fetch over HTTP/1.1: 3 MB gets the proxy's 413, 1.5 MB the server's, both the same text", async () => {
  // A data-path call as the client makes it: the id from the metadata
  // exchange, so that the server's only objection is the size.
  const meta = await fetch(`${ORIGIN}/kv/alice`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [3] }),
  });
  assert.equal(meta.status, 200);
  const { databaseId, token } = await meta.json();
  const post = async (size) => {
    const r = await fetch(`${ORIGIN}/kv/alice/v2/atomic_write`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/x-protobuf",
        "x-denokv-version": "3",
        "x-denokv-database-id": databaseId,
      },
      body: new Uint8Array(size),
    });
    return { status: r.status, type: r.headers.get("content-type"), text: await r.text() };
  };
  const proxy = await post(3_000_000);
  assert.deepEqual(proxy, { status: 413, type: TEXT_PLAIN, text: TOO_LARGE });
  assert.deepEqual(await post(1_500_000), proxy);
});
