// Runs the project's own wrangler for the Node scripts (setup, admin, revoke): one place that knows where it is,
// which Node it needs and the offline environment it runs in.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const WRANGLER_BIN = path.join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
const BUNDLED_NODE = path.join(ROOT, "node_modules", ".bin", "node");

// wrangler 4.164 needs Node >= 22.12. `npm run` puts the project's Node 22 first on PATH; a direct `node` call may
// not, so an older Node falls back to the project's own from node_modules/.bin.
function nodeForWrangler() {
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major > 22 || (major === 22 && minor >= 12)) return process.execPath;
  return existsSync(BUNDLED_NODE) ? BUNDLED_NODE : process.execPath;
}

/** `spawnSync` of `wrangler …args` from the project root; `options` are spawnSync's (stdio, for one). */
export function spawnWrangler(args, options = {}) {
  return spawnSync(nodeForWrangler(), [WRANGLER_BIN, ...args], {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    ...options,
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: process.env.WRANGLER_SEND_METRICS ?? "false",
      CLOUDFLARE_CF_FETCH_ENABLED: process.env.CLOUDFLARE_CF_FETCH_ENABLED ?? "false",
    },
  });
}

/** What the local database says when another process (e.g. `wrangler dev`) holds its write lock. */
const BUSY = /SQLITE_BUSY|database is locked/i;
/** How long a local write waits for the lock in all before it gives up. */
const BUSY_DEADLINE_MS = 30_000;

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * `wrangler d1 execute …args` (arguments after `execute`), retried while the local database is locked by another
 * writer. The local D1 is one SQLite file: `wrangler dev` writes it for every request it serves, and a second
 * writer that arrives meanwhile gets SQLITE_BUSY at once, with nothing written (the whole command is refused, not
 * part of it), so running the same command again is safe. It waits 100 ms, then twice as long each time (at most
 * 2 s), for up to 30 s in all. Returns spawnSync's result of the last attempt.
 */
export function d1Execute(args, options = {}) {
  const started = Date.now();
  for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
    const result = spawnWrangler(["d1", "execute", ...args], options);
    const busy = result.status !== 0 && BUSY.test(`${result.stdout ?? ""}${result.stderr ?? ""}`);
    if (!busy || Date.now() - started + wait > BUSY_DEADLINE_MS) return result;
    sleep(wait + Math.floor(Math.random() * wait));
  }
}
