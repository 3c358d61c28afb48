// app.ts: the README's first program. Opens the database given as the
// first argument (default: the h2c listener scripts/run.sh starts), writes
// a key, reads it back, and prints it.
//
//   DENO_KV_ACCESS_TOKEN=<token> deno run --unstable-kv -A examples/app.ts \
//       http://127.0.0.1:4512/
const url = Deno.args[0] ?? "http://127.0.0.1:4512/";
const kv = await Deno.openKv(url);
await kv.set(["users", "ada"], { name: "Ada" });
console.log(await kv.get(["users", "ada"]));
kv.close();
