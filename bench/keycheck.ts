/// <reference lib="deno.unstable" />
// keycheck.ts: cross-checks the hand-built wrk bodies against the Deno CLI's
// own KV client. bench/run.sh seeds keys [PREFIX, n] for n < COUNT with
// bench/out/kvbody (protobuf-c, our own key encoder); this reads some of
// them back through Deno.openKv and checks each is a Uint8Array holding the
// value kvbody wrote (FILL repeated, decimal n over its tail). If the key
// or value encoding of the benchmark bodies differed from the client's,
// the keys would not be found.
//
//   DENO_KV_ACCESS_TOKEN=... deno run --unstable-kv --allow-net=127.0.0.1 \
//     --allow-env=DENO_KV_ACCESS_TOKEN bench/keycheck.ts URL PREFIX COUNT \
//     VALSIZE FILL

const [url, prefix, countS, sizeS, fill] = Deno.args;
const count = Number(countS), size = Number(sizeS);
if (!url || !prefix || !(count > 0) || !(size > 0) || !fill) {
  console.error("usage: keycheck.ts URL PREFIX COUNT VALSIZE FILL");
  Deno.exit(2);
}

function expected(n: number): Uint8Array {
  const s = (fill[0].repeat(size) + String(n)).slice(-size);
  return new TextEncoder().encode(s);
}

const kv = await Deno.openKv(url);
const picks = [0, 1, count - 1, Math.floor(count / 2)];
for (let i = 0; i < 16; i++) picks.push(Math.floor(Math.random() * count));
let bad = 0;
for (const n of picks) {
  const e = await kv.get([prefix, n]);
  const want = expected(n);
  const ok = e.value instanceof Uint8Array &&
    e.value.length === want.length &&
    e.value.every((b, i) => b === want[i]);
  if (!ok) {
    bad++;
    console.error(
      `keycheck: [${JSON.stringify(prefix)}, ${n}] = ${
        Deno.inspect(e.value)
      }, expected ${new TextDecoder().decode(want)}`,
    );
  }
}
// A key past the end must be absent.
const past = await kv.get([prefix, count]);
if (past.value !== null) {
  bad++;
  console.error(`keycheck: [${prefix}, ${count}] should not exist`);
}
kv.close();
if (bad) Deno.exit(1);
console.log(
  `keycheck: ${picks.length} seeded keys read back through Deno.openKv OK`,
);
