// The no-op Worker of bench/noop under wrangler dev, for the benchmark (bench/run.mjs) and the scaling model
// (bench/scaling.mjs).

import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { ROOT, freePort } from "../tests/e2e/support/worker.mjs";

const QUIET = Object.freeze(["--log-level", "warn"]);

/** The no-op Worker of bench/noop under wrangler dev, started the way the harness starts the service. */
export async function startNoop(vars = {}) {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "otp-bench-noop-"));
  const port = await freePort();
  const inspectorPort = await freePort();
  const child = spawn(
    process.execPath,
    [
      path.join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js"),
      "dev",
      "--config", path.join(ROOT, "bench", "noop", "wrangler.toml"),
      "--ip", "127.0.0.1",
      "--port", String(port),
      "--inspector-port", String(inspectorPort),
      "--persist-to", path.join(tmp, "state"),
      "--show-interactive-dev-session=false",
      ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
      ...QUIET,
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        PATH: `${path.join(ROOT, "node_modules", ".bin")}${path.delimiter}${process.env.PATH ?? ""}`,
        WRANGLER_SEND_METRICS: "false",
        CLOUDFLARE_CF_FETCH_ENABLED: "false",
        WRANGLER_LOG_PATH: path.join(tmp, "logs"),
        NO_COLOR: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    },
  );
  let output = "";
  let exited = false;
  child.stdout.on("data", (c) => (output += c));
  child.stderr.on("data", (c) => (output += c));
  child.once("exit", () => (exited = true));
  const kill = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  process.once("exit", () => kill("SIGKILL"));
  const stop = async () => {
    if (!exited) {
      const gone = new Promise((r) => child.once("exit", r));
      kill("SIGTERM");
      await Promise.race([gone, new Promise((r) => setTimeout(r, 8000))]);
      kill("SIGKILL");
    }
    await rm(tmp, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (exited) throw new Error(`the no-op worker exited:\n${output}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the no-op worker did not answer within 90 s:\n${output}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, stop, pgid: child.pid, inspectorPort };
}
