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
