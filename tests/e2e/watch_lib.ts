// Shared by the watch suites that run their own server instances
// (watch_storm, watch_limits): caddy in front of an instance's socket, the
// instance's processes and descriptors from /proc, and raw FastCGI
// requests straight to its socket.

import { encodeKey, RUN_DIR, sleep, TOKEN } from "./helpers.ts";

const te = new TextEncoder();

// ---------------------------------------------------------------------------
// caddy on a free port in front of one socket (conf/Caddyfile's recipe)

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export interface Caddy {
  url: string;
  kill: () => void;
}

async function metadataStatus(base: string): Promise<number> {
  try {
    const r = await fetch(base, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
      signal: AbortSignal.timeout(3000),
    });
    await r.body?.cancel();
    return r.status;
  } catch {
    return 0;
  }
}

const caddies: Caddy[] = [];
function killAllCaddies() {
  for (const c of caddies) c.kill();
}
globalThis.addEventListener("unload", killAllCaddies);
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, () => {
    killAllCaddies();
    Deno.exit(sig === "SIGTERM" ? 143 : 130);
  });
}

// Starts caddy (h1 + h2c on one port, FastCGI to socket) and waits until
// the metadata exchange through it answers 200.
export async function startCaddy(name: string, socket: string): Promise<Caddy> {
  const dir = `${RUN_DIR}/${name}-caddy`;
  const port = freePort();
  const url = `http://127.0.0.1:${port}/`;
  Deno.mkdirSync(`${dir}/home`, { recursive: true });
  Deno.writeTextFileSync(
    `${dir}/Caddyfile`,
    `# written by tests/e2e/watch_lib.ts, from conf/Caddyfile
{
	admin off
	auto_https off
	grace_period 1s
	servers {
		protocols h1 h2 h2c
	}
}

http://127.0.0.1:${port} {
	request_body {
		max_size 2MB
	}
	reverse_proxy unix/${socket} {
		transport fastcgi
		flush_interval -1
	}
}
`,
  );
  const log = Deno.openSync(`${dir}/caddy.log`, { write: true, create: true, append: true });
  const child = new Deno.Command(Deno.env.get("CADDY") ?? "caddy", {
    args: ["run", "--config", `${dir}/Caddyfile`, "--adapter", "caddyfile"],
    env: { HOME: `${dir}/home`, XDG_DATA_HOME: `${dir}/data`, XDG_CONFIG_HOME: `${dir}/config` },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const pipe = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) log.writeSync(chunk);
  };
  Promise.all([pipe(child.stdout), pipe(child.stderr)]).catch(() => {}).finally(() => log.close());
  let exited = false;
  child.status.then(() => exited = true);
  const caddy: Caddy = {
    url,
    kill: () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    },
  };
  caddies.push(caddy);
  const deadline = Date.now() + 20_000;
  let status = 0;
  while (Date.now() < deadline && !exited) {
    status = await metadataStatus(url);
    if (status === 200) return caddy;
    await sleep(100);
  }
  caddy.kill();
  throw new Error(`caddy (${dir}) did not answer 200 (last status ${status}, ${exited ? "exited" : "running"})`);
}

// ---------------------------------------------------------------------------
// An instance's processes

function ppidOf(pid: number): number {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return -1;
  }
}

export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (/^\d+$/.test(e.name) && ppidOf(Number(e.name)) === ppid) out.push(Number(e.name));
  }
  return out.sort((a, b) => a - b);
}

export function fdLinks(pid: number): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        out.push(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // gone
  }
  return out;
}

// The connections a worker's request loop holds (request-model =
// multiplexed): the sockets in the epoll set that also holds the listener.
// These are nginx's kept-alive connections between requests (its upstream
// keepalive pool) and requests in progress, never watch streams, which
// the hub holds in its own epoll set. Empty on the one-per-connection
// model, whose worker holds no epoll set.
export function loopSockets(pid: number, l: string): Set<string> {
  const byFd = new Map<string, string>();
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        byFd.set(e.name, Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
      } catch { /* closed meanwhile */ }
    }
  } catch {
    return new Set();
  }
  const lfd = [...byFd].find(([, link]) => link === l)?.[0];
  for (const [fd, link] of byFd) {
    if (link !== "anon_inode:[eventpoll]") continue;
    let info = "";
    try {
      info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${fd}`);
    } catch {
      continue;
    }
    const tfds = [...info.matchAll(/^tfd:\s+(\d+)\s/gm)].map((m) => m[1]);
    if (lfd === undefined || !tfds.includes(lfd)) continue;
    return new Set(tfds.map((t) => byFd.get(t)).filter((x): x is string => x !== undefined && x !== l));
  }
  return new Set();
}

// Workers: the master's children holding its listening socket (the
// housekeeper does not), with the accepted connections each holds (but
// the request loop's: kept-alive connections between requests).
export function streamsPerWorker(master: number): Map<number, number> {
  const socks = fdLinks(master).filter((l) => l.startsWith("socket:"));
  const out = new Map<number, number>();
  if (socks.length !== 1) return out;
  for (const p of childrenOf(master)) {
    const links = fdLinks(p);
    if (!links.includes(socks[0])) continue;
    const loop = loopSockets(p, socks[0]);
    out.set(p, links.filter((x) => x.startsWith("socket:") && x !== socks[0] && !loop.has(x)).length);
  }
  return out;
}

// ---------------------------------------------------------------------------
// FastCGI straight to a socket

export function encWatch(keys: Uint8Array[]): Uint8Array {
  const out: number[] = [];
  const varint = (n: number) => {
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    out.push(n);
  };
  for (const k of keys) {
    // Watch { repeated WatchKey keys = 1 }, WatchKey { bytes key = 1 }
    const inner: number[] = [0x0a];
    let n = k.length;
    while (n >= 0x80) {
      inner.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    inner.push(n, ...k);
    out.push(0x0a);
    varint(inner.length);
    out.push(...inner);
  }
  return new Uint8Array(out);
}

function fcgiRecord(type: number, content: Uint8Array): Uint8Array {
  const pad = (8 - (content.length % 8)) % 8;
  const out = new Uint8Array(8 + content.length + pad);
  out.set([1, type, 0, 1, content.length >> 8, content.length & 255, pad, 0]);
  out.set(content, 8);
  return out;
}

export function fcgiRequest(path: string, body: Uint8Array, databaseId: string, token: string): Uint8Array {
  const pairs: number[] = [];
  const len = (n: number) => n < 128 ? [n] : [((n >> 24) & 127) | 128, (n >> 16) & 255, (n >> 8) & 255, n & 255];
  const nv = (k: string, v: string) => {
    const kb = te.encode(k), vb = te.encode(v);
    pairs.push(...len(kb.length), ...len(vb.length), ...kb, ...vb);
  };
  nv("REQUEST_METHOD", "POST");
  nv("REQUEST_URI", path);
  nv("SCRIPT_NAME", path);
  nv("CONTENT_LENGTH", String(body.length));
  nv("CONTENT_TYPE", "application/x-protobuf");
  nv("HTTP_AUTHORIZATION", `Bearer ${token}`);
  nv("HTTP_X_DENOKV_VERSION", "3");
  nv("HTTP_X_DENOKV_DATABASE_ID", databaseId);
  const parts = [
    fcgiRecord(1, new Uint8Array([0, 1, 0, 0, 0, 0, 0, 0])), // BEGIN_REQUEST, responder
    fcgiRecord(4, new Uint8Array(pairs)),
    fcgiRecord(4, new Uint8Array()),
    ...(body.length ? [fcgiRecord(5, body)] : []),
    fcgiRecord(5, new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// Reads a FastCGI response's STDOUT until `enough` holds or it ends.
export async function fcgiRead(
  conn: Deno.Conn,
  enough: (stdout: Uint8Array) => boolean,
): Promise<{ stdout: Uint8Array; ended: boolean }> {
  let buf = new Uint8Array(0), stdout = new Uint8Array(0), ended = false;
  const chunk = new Uint8Array(65536);
  while (!ended && !enough(stdout)) {
    const n = await conn.read(chunk);
    if (n === null) break;
    const b = new Uint8Array(buf.length + n);
    b.set(buf);
    b.set(chunk.subarray(0, n), buf.length);
    let i = 0;
    while (b.length - i >= 8) {
      const clen = (b[i + 4] << 8) | b[i + 5], total = 8 + clen + b[i + 6];
      if (b.length - i < total) break;
      if (b[i + 1] === 6) {
        const s = new Uint8Array(stdout.length + clen);
        s.set(stdout);
        s.set(b.subarray(i + 8, i + 8 + clen), stdout.length);
        stdout = s;
      } else if (b[i + 1] === 3) ended = true;
      i += total;
    }
    buf = b.slice(i);
  }
  return { stdout, ended };
}

export function rawKey(parts: string[]): Uint8Array {
  return encodeKey(parts);
}
