/// <reference lib="deno.unstable" />
// idle.ts: holds idle load open against a denokv-fcgi mount until killed,
// so that bench/perf/run.sh can measure what it costs the others:
//   --watches N  watch streams through the Deno CLI's kv.watch (HTTP/2, on
//                the --url given), each on its own key that nobody writes;
//   --polls M    parked queue long polls (POST <queue url>/lease with
//                waitMs 60000, sent again whenever one returns) over
//                HTTP/1.1 to --h1-url, the server's queue extension
//                (docs/queues.md).
// Prints "READY watches=N polls=M" once all are open (each watch has
// delivered its first frame; the polls have been sent and had 2 s to
// park), or "UNSUPPORTED ..." and exits 4 when the server does not offer
// queues. Run with --unstable-kv --allow-net=127.0.0.1 --allow-env.
//
//   DENO_KV_ACCESS_TOKEN=... deno run ... idle.ts --url http://127.0.0.1:H2/s/ \
//     --h1-url http://127.0.0.1:H1/s/ --watches 500 --polls 100

const args = new Map<string, string>();
for (let i = 0; i < Deno.args.length; i += 2) {
  args.set(Deno.args[i].replace(/^--/, ""), Deno.args[i + 1] ?? "");
}
const url = args.get("url") ?? "";
const h1 = args.get("h1-url") ?? "";
const watches = Number(args.get("watches") ?? "0");
const polls = Number(args.get("polls") ?? "0");
const token = Deno.env.get("DENO_KV_ACCESS_TOKEN") ?? "";
if (!url || (polls > 0 && !h1) || !(watches >= 0) || !(polls >= 0)) {
  console.error("usage: idle.ts --url URL [--h1-url URL] [--watches N] [--polls M]");
  Deno.exit(2);
}

const held: unknown[] = [];

if (watches > 0) {
  const kv = await Deno.openKv(url);
  held.push(kv);
  const first: Promise<void>[] = [];
  for (let i = 0; i < watches; i++) {
    const reader = kv.watch([["perf", "idle", i]]).getReader();
    held.push(reader);
    first.push(reader.read().then((r) => {
      if (r.done) throw new Error(`watch ${i} ended at once`);
    }));
    // Keep each stream's later frames (keep-alives carry none) drained.
    first[i].then(async () => {
      while (!(await reader.read()).done);
      console.error(`idle.ts: watch ${i} ended`);
    }).catch(() => {});
  }
  await Promise.all(first);
}

if (polls > 0) {
  const meta = await fetch(h1, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [3], denokvFcgiQueues: 1 }),
  });
  if (meta.status !== 200) {
    console.log(`UNSUPPORTED metadata exchange answered ${meta.status}: ${await meta.text()}`);
    Deno.exit(4);
  }
  const m = await meta.json();
  if (!m.denokvFcgiQueues?.url) {
    console.log("UNSUPPORTED the server offers no queue extension (no denokvFcgiQueues)");
    Deno.exit(4);
  }
  const lease = new URL(`${m.denokvFcgiQueues.url}/lease`, h1).href;
  const headers = {
    authorization: `Bearer ${m.token}`,
    "content-type": "application/json",
    "x-denokv-version": "3",
    "x-denokv-database-id": m.databaseId,
  };
  const poll = async (): Promise<void> => {
    for (;;) {
      const r = await fetch(lease, {
        method: "POST",
        headers,
        body: JSON.stringify({ waitMs: 60000, max: 1 }),
      });
      const body = await r.text();
      if (r.status !== 200) throw new Error(`lease answered ${r.status}: ${body}`);
    }
  };
  for (let i = 0; i < polls; i++) {
    poll().catch((e) => {
      console.error(`idle.ts: poll failed: ${e}`);
      Deno.exit(1);
    });
  }
  await new Promise((r) => setTimeout(r, 2000));
}

console.log(`READY watches=${watches} polls=${polls}`);
// Hold everything until killed.
setInterval(() => {}, 1 << 30);
