// crash_bank.ts: the bank workload of tests/e2e/crash.sh, with the Deno
// CLI's KV client.
//
//   deno run --unstable-kv -A crash_bank.ts init   URL ACCOUNTS
//   deno run --unstable-kv -A crash_bank.ts run    URL ACCOUNTS ACKFILE STOPFILE CONCURRENCY
//   deno run --unstable-kv -A crash_bank.ts verify URL|PATH ACCOUNTS ACKFILE
//
// init: ACCOUNTS accounts ["acct", i] holding 1000 each (one atomic write).
// run: CONCURRENCY loops of transfers until STOPFILE exists. A transfer
// reads two accounts, then commits, guarded by checks on both
// versionstamps: both new balances plus a record ["xfer", id] =
// {from, to, amount}. After each commit the client saw succeed, it appends
// "id versionstamp" to ACKFILE (synchronously, so the line survives this
// process being killed). Prints "STARTED" once the first transfer is
// acknowledged, and "RESULT acked=N conflicts=N" at the end.
// verify (through the server, or on the file itself with Deno's own SQLite
// backend): the balances add up to ACCOUNTS * 1000; each balance equals
// 1000 plus what the transfer records say came in minus what went out (so
// no transfer was half applied); every acknowledged transfer's record is
// there with the versionstamp the client was given. Prints
// "RESULT sum=.. expected=.. transfers=.. acked=.. missing=.. wrong_stamp=..
// unbalanced=.." and up to five examples of each problem.
const [mode, target, accountsStr, ackPath, stopPath, concStr] = Deno.args;
const accounts = Number(accountsStr);
const START = 1000;

function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: number | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, rej) => t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms)),
  ]).finally(() => clearTimeout(t));
}

const kv = await Deno.openKv(target);

if (mode === "init") {
  const op = kv.atomic();
  for (let i = 0; i < accounts; i++) op.check({ key: ["acct", i], versionstamp: null }).set(["acct", i], START);
  const r = await deadline(op.commit(), 30000, "init");
  console.log(`RESULT init=${r.ok}`);
  kv.close();
  Deno.exit(r.ok ? 0 : 1);
}

if (mode === "run") {
  const enc = new TextEncoder();
  const ack = Deno.openSync(ackPath, { append: true, create: true });
  let stopping = false, acked = 0, conflicts = 0, started = false;
  const poll = setInterval(() => {
    try {
      Deno.statSync(stopPath);
      stopping = true;
    } catch { /* not yet */ }
  }, 20);
  const tag = `${Deno.pid}`;
  async function loop(id: number) {
    for (let seq = 0; !stopping; seq++) {
      const a = Math.floor(Math.random() * accounts);
      let b = Math.floor(Math.random() * (accounts - 1));
      if (b >= a) b++;
      const amount = 1 + Math.floor(Math.random() * 50);
      const xid = `${tag}-${id}-${seq}`;
      // No deadline here: while the service is down the client retries
      // until it is back, which is what a user's program would see.
      const [ea, eb] = await kv.getMany<number[]>([["acct", a], ["acct", b]]);
      const r = await kv.atomic()
        .check(ea).check(eb)
        .set(["acct", a], (ea.value as number) - amount)
        .set(["acct", b], (eb.value as number) + amount)
        .set(["xfer", xid], { from: a, to: b, amount })
        .commit();
      if (!r.ok) {
        conflicts++;
        continue;
      }
      ack.writeSync(enc.encode(`${xid} ${r.versionstamp}\n`));
      acked++;
      if (!started) {
        started = true;
        console.log("STARTED");
      }
    }
  }
  const loops = [];
  for (let i = 0; i < Number(concStr); i++) loops.push(loop(i));
  await Promise.all(loops);
  clearInterval(poll);
  console.log(`RESULT acked=${acked} conflicts=${conflicts}`);
  kv.close();
  Deno.exit(0);
}

if (mode === "verify") {
  const examples: Record<string, string[]> = { missing: [], wrong_stamp: [], unbalanced: [] };
  const note = (what: string, s: string) => {
    if (examples[what].length < 5) examples[what].push(s);
  };
  const balances: number[] = [];
  for (let i = 0; i < accounts; i += 10) {
    const keys = [];
    for (let j = i; j < Math.min(i + 10, accounts); j++) keys.push(["acct", j]);
    for (const e of await deadline(kv.getMany<number[]>(keys), 30000, "read accounts")) {
      balances.push(e.value as number);
    }
  }
  const sum = balances.reduce((s, v) => s + v, 0);
  const expectBal = new Array(accounts).fill(START);
  const records = new Map<string, string>();
  for await (const e of kv.list<{ from: number; to: number; amount: number }>({ prefix: ["xfer"] })) {
    records.set(e.key[1] as string, e.versionstamp);
    expectBal[e.value.from] -= e.value.amount;
    expectBal[e.value.to] += e.value.amount;
  }
  let unbalanced = 0;
  for (let i = 0; i < accounts; i++) {
    if (balances[i] !== expectBal[i]) {
      unbalanced++;
      note("unbalanced", `account ${i}: balance ${balances[i]}, transfer records say ${expectBal[i]}`);
    }
  }
  let ackedN = 0, missing = 0, wrongStamp = 0;
  for (const line of Deno.readTextFileSync(ackPath).split("\n")) {
    if (line === "") continue;
    const [xid, stamp] = line.split(" ");
    ackedN++;
    const got = records.get(xid);
    if (got === undefined) {
      missing++;
      note("missing", `acknowledged transfer ${xid} (versionstamp ${stamp}) is not in the database`);
    } else if (got !== stamp) {
      wrongStamp++;
      note("wrong_stamp", `transfer ${xid}: acknowledged with ${stamp}, stored with ${got}`);
    }
  }
  console.log(
    `RESULT sum=${sum} expected=${accounts * START} transfers=${records.size} acked=${ackedN}` +
      ` missing=${missing} wrong_stamp=${wrongStamp} unbalanced=${unbalanced}`,
  );
  for (const [what, list] of Object.entries(examples)) for (const s of list) console.log(`EXAMPLE ${what}: ${s}`);
  kv.close();
  Deno.exit(0);
}
console.log(`unknown mode ${mode}`);
Deno.exit(2);
