// Starts the built worker under `wrangler dev` against a fresh, seeded local D1 for end-to-end tests.
//
//   const worker = await startWorker({ vars: { EMAIL_PROVIDER: "console", ... } });
//   worker.url                        e.g. http://127.0.0.1:41234
//   worker.logs()                     everything wrangler dev printed so far (stdout + stderr)
//   await worker.waitForLog(/re/, ms) first match of a regular expression in the log
//   await worker.d1("SELECT ...")     rows of the last statement, read through `wrangler d1 execute --local`
//   await worker.stop()               kills the process group, removes the temp directory
//
// Test vars win over a developer's `.dev.vars`: wrangler dev reads `.dev.vars`/`.env` only when no `--env-file`
// is given, so the harness always passes one (a temp file with the test vars), and passes them again as `--var`
// (which takes precedence over everything).

import { spawn, execFile } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const WRANGLER_BIN = path.join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
const NODE_BIN_DIR = path.join(ROOT, "node_modules", ".bin");

const BUILD_TIMEOUT_MS = 10 * 60 * 1000;
const SETUP_TIMEOUT_MS = 90 * 1000;
const START_TIMEOUT_MS = 90 * 1000;
const D1_TIMEOUT_MS = 60 * 1000;
const STOP_TIMEOUT_MS = 8 * 1000;

export const OTP_HASH_KEY_FOR_TESTS = "e2e-test-hash-key-0123456789abcdef-0123456789abcdef";

/** Limits and settings every test worker gets unless a test overrides them. */
export const BASE_VARS = Object.freeze({
  ENVIRONMENT: "development",
  APP_NAME: "CRM",
  OTP_HASH_KEY: OTP_HASH_KEY_FOR_TESTS,
  OTP_TTL_MINUTES: "10",
  OTP_MAX_ATTEMPTS: "3",
  OTP_LOCKOUT_MINUTES: "15",
  OTP_RESEND_COOLDOWN_SECONDS: "60",
  OTP_MAX_SENDS_PER_HOUR: "5",
  RATE_LIMIT_WINDOW_SECONDS: "900",
  // Every test request comes from 127.0.0.1; the per-IP limits are not what these tests are about.
  RATE_LIMIT_IP_SENDS: "10000",
  RATE_LIMIT_IP_VERIFIES: "10000",
  RATE_LIMIT_IP_REFRESHES: "10000",
  TOKEN_TTL_DAYS: "30",
  CORS_ALLOWED_ORIGINS: "",
});

/** Accounts the harness adds beside setup.mjs's test user. */
export const SEED = Object.freeze({
  testUser: Object.freeze({
    email: "mobile.test@example.com",
    phone: "+1234567890",
    firstName: "Mobile",
    lastName: "Tester",
    branch: "Head Office",
    designation: "Field Technician",
  }),
  outsider: Object.freeze({ email: "outsider@example.com", phone: "+14155550100", group: "Contractors" }),
  former: Object.freeze({ email: "former@example.com", phone: "+14155550101" }),
  // Extra active employees so that each test can use its own identifier (locks and cooldowns stay apart).
  employees: Object.freeze(
    Array.from({ length: 16 }, (_, i) => {
      const n = String(i + 1).padStart(2, "0");
      return Object.freeze({ email: `employee${n}@example.com`, phone: `+1415555020${n}`, firstName: "Employee", lastName: n });
    }),
  ),
});

function sq(v) {
  return `'${String(v).replaceAll("'", "''")}'`;
}

export function extraSeedSql() {
  const s = [];
  s.push(`INSERT INTO groups (name, is_employee_group) VALUES ('Contractors', 0) ON CONFLICT (name) DO NOTHING`);
  const addUser = (u, active, group, first, last) => {
    s.push(
      `INSERT INTO users (email, first_name, last_name, is_active) VALUES (${sq(u.email)}, ${sq(first)}, ${sq(last)}, ${active}) ` +
        `ON CONFLICT (email) DO NOTHING`,
    );
    s.push(
      `INSERT INTO profiles (user_id, phone_number, branch, designation) SELECT id, ${sq(u.phone)}, 'Field', 'Tester' ` +
        `FROM users WHERE email = ${sq(u.email)} ON CONFLICT (user_id) DO NOTHING`,
    );
    s.push(
      `INSERT OR IGNORE INTO user_groups (user_id, group_id) SELECT u.id, g.id FROM users u, groups g ` +
        `WHERE u.email = ${sq(u.email)} AND g.name = ${sq(group)}`,
    );
  };
  addUser(SEED.outsider, 1, "Contractors", "Out", "Sider");
  addUser(SEED.former, 0, "Employees", "Former", "Employee");
  for (const e of SEED.employees) addUser(e, 1, "Employees", e.firstName, e.lastName);
  return s.join("; ");
}

/**
 * SQL that adds active members of the `Employees` group: users is [{ email, phone, firstName?, lastName? }].
 * For tests that need more distinct employees than SEED.employees (pass it to startWorker as `sql`).
 */
export function employeesSql(users) {
  const s = [];
  for (const u of users) {
    s.push(
      `INSERT INTO users (email, first_name, last_name, is_active) VALUES (${sq(u.email)}, ${sq(u.firstName ?? "Extra")}, ` +
        `${sq(u.lastName ?? "Employee")}, 1) ON CONFLICT (email) DO NOTHING`,
    );
    s.push(
      `INSERT INTO profiles (user_id, phone_number, branch, designation) SELECT id, ${sq(u.phone)}, 'Field', 'Tester' ` +
        `FROM users WHERE email = ${sq(u.email)} ON CONFLICT (user_id) DO NOTHING`,
    );
    s.push(
      `INSERT OR IGNORE INTO user_groups (user_id, group_id) SELECT u.id, g.id FROM users u, groups g ` +
        `WHERE u.email = ${sq(u.email)} AND g.name = 'Employees'`,
    );
  }
  return s.join("; ");
}

function childEnv(extra = {}) {
  return {
    ...process.env,
    PATH: `${NODE_BIN_DIR}${path.delimiter}${process.env.PATH ?? ""}`,
    WRANGLER_SEND_METRICS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    ...extra,
  };
}

function run(cmd, args, { timeoutMs, env, label }) {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd: ROOT, env: env ?? childEnv(), timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const why = err.killed ? `timed out after ${timeoutMs} ms` : `exit ${err.code ?? err.signal}`;
          reject(new Error(`${label ?? cmd} failed (${why})\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
        } else resolve({ stdout, stderr });
      },
    );
  });
}

const buildPromises = new Map();
/**
 * Builds a worker once per test process (`sh scripts/build.sh`, or `sh scripts/build.sh scim` for the provisioning
 * Worker). E2E_SKIP_BUILD=1 skips it.
 */
export function ensureBuilt(variant = "login") {
  if (process.env.E2E_SKIP_BUILD === "1") return Promise.resolve();
  if (!buildPromises.has(variant)) {
    const script = path.join(ROOT, "scripts", "build.sh");
    if (!existsSync(script)) return Promise.reject(new Error(`${script} does not exist; cannot build the worker`));
    const env = childEnv();
    delete env.SKIP_WORKER_BUILD;
    const args = variant === "scim" ? [script, "scim"] : [script];
    buildPromises.set(variant, run("sh", args, { timeoutMs: BUILD_TIMEOUT_MS, env, label: `sh ${args.join(" ")}` }));
  }
  return buildPromises.get(variant);
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function d1Execute(persistDir, sql) {
  const { stdout } = await run(
    process.execPath,
    [WRANGLER_BIN, "d1", "execute", "DB", "--local", "--persist-to", persistDir, "--json", "--command", sql],
    { timeoutMs: D1_TIMEOUT_MS, label: "wrangler d1 execute" },
  );
  const start = stdout.indexOf("[");
  let parsed;
  try {
    parsed = JSON.parse(stdout.slice(start));
  } catch {
    throw new Error(`wrangler d1 execute printed no JSON:\n${stdout}`);
  }
  return parsed;
}

// Process groups of the dev servers still running, killed if the test process exits without stopping them.
// (wrangler dev runs in its own process group, so a Ctrl-C at the terminal does not reach it by itself.)
const liveGroups = new Set();
const liveTempDirs = new Set();
function killLiveGroups() {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  liveGroups.clear();
  for (const dir of liveTempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
  liveTempDirs.clear();
}
process.on("exit", killLiveGroups);
for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]]) {
  process.once(signal, () => {
    killLiveGroups();
    process.exit(code);
  });
}

function envFileLine(key, value) {
  const v = String(value);
  if (/["\n\r\\]/.test(v)) throw new Error(`var ${key} holds a character the env file cannot carry: ${JSON.stringify(v)}`);
  return `${key}="${v}"`;
}

/**
 * Starts `wrangler dev` for the built worker with a fresh, seeded local D1.
 * options.vars: worker vars/secrets (strings), over BASE_VARS. options.extraSeed: false to skip the harness's
 * extra accounts. options.sql: more SQL to run before starting. options.devArgs: more `wrangler dev` arguments.
 * options.variant: "login" (wrangler.toml) or "scim" (wrangler.scim.toml: the same service with SCIM built in).
 */
export async function startWorker({ vars = {}, extraSeed = true, sql = null, devArgs = [], variant = "login" } = {}) {
  await ensureBuilt(variant);
  const tmp = await mkdtemp(path.join(os.tmpdir(), "otp-e2e-"));
  liveTempDirs.add(tmp);
  const persistDir = path.join(tmp, "state");
  let child = null;
  let output = "";
  let exited = null;
  const logWaiters = new Set();

  const allVars = { ...BASE_VARS, ...vars };
  for (const [k, v] of Object.entries(allVars)) {
    if (typeof v !== "string") throw new Error(`var ${k} must be a string, got ${typeof v}`);
  }

  async function stop() {
    for (const w of logWaiters) w.cancel(new Error("worker stopped"));
    if (child && exited === null) {
      const pgid = child.pid;
      const done = new Promise((resolve) => child.once("exit", resolve));
      try {
        process.kill(-pgid, "SIGTERM");
      } catch {
        // gone already
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-pgid, "SIGKILL");
        } catch {
          // gone already
        }
      }, STOP_TIMEOUT_MS);
      let giveUp;
      await Promise.race([done, new Promise((r) => (giveUp = setTimeout(r, STOP_TIMEOUT_MS + 2000)))]);
      clearTimeout(giveUp);
      clearTimeout(timer);
      // workerd is in the same group; make sure nothing of it survives.
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // gone
      }
      liveGroups.delete(pgid);
    }
    await rm(tmp, { recursive: true, force: true, maxRetries: 3 });
    liveTempDirs.delete(tmp);
  }

  try {
    await run(process.execPath, [path.join(ROOT, "scripts", "setup.mjs"), "--create-groups", "--create-test-user", "--persist-to", persistDir], {
      timeoutMs: SETUP_TIMEOUT_MS,
      label: "scripts/setup.mjs",
    });
    const seedSql = [extraSeed ? extraSeedSql() : null, sql].filter(Boolean).join("; ");
    if (seedSql) await d1Execute(persistDir, seedSql);

    const envFile = path.join(tmp, "test.env");
    await writeFile(envFile, Object.entries(allVars).map(([k, v]) => envFileLine(k, v)).join("\n") + "\n");

    const port = await freePort();
    const inspectorPort = await freePort();
    const args = [
      WRANGLER_BIN, "dev",
      ...(variant === "scim" ? ["--config", "wrangler.scim.toml"] : []),
      "--ip", "127.0.0.1",
      "--port", String(port),
      "--inspector-port", String(inspectorPort),
      "--persist-to", persistDir,
      "--env-file", envFile,
      "--show-interactive-dev-session=false",
      // Exposes /__scheduled, so tests can fire the Cron Trigger.
      "--test-scheduled",
    ];
    for (const [k, v] of Object.entries(allVars)) args.push("--var", `${k}:${v}`);
    args.push(...devArgs);

    child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: childEnv({ SKIP_WORKER_BUILD: "1", WRANGLER_LOG_PATH: path.join(tmp, "wrangler-logs"), NO_COLOR: "1", FORCE_COLOR: "0" }),
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    liveGroups.add(child.pid);
    const onData = (chunk) => {
      output += chunk.toString("utf8");
      for (const w of [...logWaiters]) w.check();
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      liveGroups.delete(child.pid);
      for (const w of [...logWaiters]) w.check();
    });

    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exited) throw new Error(`wrangler dev exited early (${JSON.stringify(exited)}):\n${output}`);
      if (Date.now() > deadline) throw new Error(`wrangler dev did not answer within ${START_TIMEOUT_MS} ms:\n${output}`);
      try {
        const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      }
    }

    const logs = () => output;
    const waitForLog = (re, timeoutMs = 5000, { from = 0 } = {}) =>
      new Promise((resolve, reject) => {
        const w = {
          check() {
            const m = re.exec(output.slice(from));
            if (m) {
              finish();
              resolve(m);
            } else if (exited) {
              finish();
              reject(new Error(`wrangler dev exited before logging ${re}`));
            }
          },
          cancel(err) {
            finish();
            reject(err);
          },
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`no log line matching ${re} within ${timeoutMs} ms; log since offset ${from}:\n${output.slice(from)}`));
        }, timeoutMs);
        function finish() {
          clearTimeout(timer);
          logWaiters.delete(w);
        }
        logWaiters.add(w);
        w.check();
      });

    /** Runs SQL against the worker's local D1; returns the rows of the last statement. */
    const d1 = async (statement) => {
      const results = await d1Execute(persistDir, statement);
      return results[results.length - 1]?.results ?? [];
    };

    return { url, port, inspectorPort, persistDir, vars: allVars, logs, waitForLog, d1, stop, process: child };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

/** Login events recorded for the user with this email: [{ event, channel, identifier, ip, detail }]. */
export async function loginEventsFor(worker, email) {
  return worker.d1(
    `SELECT e.event, e.channel, e.identifier, e.ip, e.detail FROM login_events e JOIN users u ON u.id = e.user_id ` +
      `WHERE u.email = ${sq(email)} ORDER BY e.id`,
  );
}
