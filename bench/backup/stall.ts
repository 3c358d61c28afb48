// stall.ts: write latency through the Deno CLI's KV client while
// `denokv-fcgi backup` copies the database, against the same writers'
// latency just before (the reference, same run).
//
//   deno run --unstable-kv -A stall.ts URL BIN DB DEST [WRITERS] [BEFORE_MS]
//
// WRITERS loops (default 8) set one small key after another. After
// BEFORE_MS (default 5000) the backup starts; the run ends 2 s after it
// finished. Prints one line per window: writes, p50, p99 and the longest
// write (ms), and the backup's own duration and output.
const [url, bin, db, dest, writersArg, beforeArg] = Deno.args;
const writers = Number(writersArg ?? 8);
const beforeMs = Number(beforeArg ?? 5000);
const kv = await Deno.openKv(url);
const samples: { start: number; ms: number }[] = [];
let stop = false;
const t0 = performance.now();

const loops = Array.from({ length: writers }, async (_, w) => {
  for (let i = 0; !stop; i++) {
    const start = performance.now();
    const r = await kv.set(["stall", w, i % 1000], i);
    if (!r.ok) throw new Error("write failed");
    samples.push({ start: start - t0, ms: performance.now() - start });
  }
});

await new Promise((r) => setTimeout(r, beforeMs));
const b0 = performance.now() - t0;
const out = await new Deno.Command(bin, { args: ["--sqlite-path", db, "backup", dest] }).output();
const b1 = performance.now() - t0;
await new Promise((r) => setTimeout(r, 2000));
stop = true;
await Promise.all(loops);
kv.close();
if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));

function report(name: string, lo: number, hi: number) {
  // A write that overlaps the window counts in it.
  const xs = samples.filter((s) => s.start + s.ms >= lo && s.start < hi).map((s) => s.ms).sort((a, b) => a - b);
  const q = (p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))].toFixed(1);
  console.log(`${name.padEnd(14)} writes ${String(xs.length).padStart(6)}  p50 ${q(0.5).padStart(6)} ms  p99 ${q(0.99).padStart(7)} ms  max ${xs[xs.length - 1].toFixed(1).padStart(7)} ms`);
}
report("before backup", 500, b0);
report("during backup", b0, b1);
console.log(`backup took ${((b1 - b0) / 1000).toFixed(2)} s: ${new TextDecoder().decode(out.stdout).trim()}`);
