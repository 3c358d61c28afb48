// prepare.mjs: metadata exchange and seeding for many databases behind one
// nginx, for bench/hosting/run.sh. For every input line "MOUNT TOKEN" it
// POSTs the metadata exchange to BASE + MOUNT + "/", then one atomic_write
// of the seed body to the data path it was given, and checks both. Prints
// "DATAPATH TOKEN DATABASE_ID" per database, in input order (DATAPATH is
// the strong endpoint's path, e.g. /h/db0007/v2; TOKEN the data-path token).
//
//   node prepare.mjs BASE DBFILE SEEDBODY [CONCURRENCY]
//
// Exits non-zero on the first failure, with the answer that failed.
import { readFileSync } from "node:fs";

const [base, dbFile, seedFile, concArg] = process.argv.slice(2);
if (!base || !dbFile || !seedFile) {
  console.error("usage: node prepare.mjs BASE DBFILE SEEDBODY [CONCURRENCY]");
  process.exit(2);
}
const dbs = readFileSync(dbFile, "utf8").split("\n").filter(Boolean).map((l) => l.split(" "));
const seed = readFileSync(seedFile);
const out = new Array(dbs.length);

async function prepare(i) {
  const [mount, token] = dbs[i];
  const metaUrl = `${base}${mount}/`;
  const m = await fetch(metaUrl, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [3] }),
  });
  const text = await m.text();
  if (m.status !== 200) throw new Error(`metadata exchange at ${metaUrl}: ${m.status} ${text}`);
  const meta = JSON.parse(text);
  const ep = meta.endpoints?.find((e) => e.consistency === "strong");
  if (!ep || !meta.databaseId) throw new Error(`metadata at ${metaUrl} without a strong endpoint or id: ${text}`);
  const data = new URL(ep.url, metaUrl);
  const dataToken = meta.token || token;
  const w = await fetch(`${data.href.replace(/\/$/, "")}/atomic_write`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${dataToken}`,
      "content-type": "application/x-protobuf",
      "x-denokv-version": "3",
      "x-denokv-database-id": meta.databaseId,
    },
    body: seed,
  });
  const body = new Uint8Array(await w.arrayBuffer());
  // AtomicWriteOutput: status (field 1) AW_SUCCESS comes first.
  if (w.status !== 200 || body[0] !== 0x08 || body[1] !== 0x01) {
    throw new Error(`seeding ${mount}: ${w.status} ${Buffer.from(body).toString("utf8", 0, 200)}`);
  }
  out[i] = `${data.pathname.replace(/\/$/, "")} ${dataToken} ${meta.databaseId}`;
}

let next = 0;
const lanes = Array.from({ length: Math.min(Number(concArg ?? 16), dbs.length) }, async () => {
  while (next < dbs.length) await prepare(next++);
});
try {
  await Promise.all(lanes);
} catch (e) {
  console.error(`prepare.mjs: ${e.message}`);
  process.exit(1);
}
const ids = new Set(out.map((l) => l.split(" ")[2]));
if (ids.size !== out.length) {
  console.error(`prepare.mjs: ${out.length} databases but only ${ids.size} distinct database ids`);
  process.exit(1);
}
process.stdout.write(out.join("\n") + "\n");
