// What the benchmark (run.mjs) and the profiler (profile.mjs) share: the seeded employees and the service's vars.
//
// Importing this turns off wrangler's local observability collector (X_LOCAL_OBSERVABILITY=false) and local explorer
// (X_LOCAL_EXPLORER=false) for the dev servers started afterwards: development dashboards that wrangler dev attaches
// to every Worker as a tail, whose cost grows with each subrequest's trace span. A deployed Worker does not run them.

process.env.X_LOCAL_OBSERVABILITY ??= "false";
process.env.X_LOCAL_EXPLORER ??= "false";

export function positiveInt(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number, not ${raw}`);
  return n;
}

export const benchEmail = (i) => `bench${String(i).padStart(5, "0")}@example.com`;

/** `count` active members of Employees, generated inside D1 (a statement per user would not fit a command line). */
export function benchEmployeesSql(count) {
  return [
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${count}) ` +
      `INSERT INTO users (email, first_name, last_name) SELECT printf('bench%05d@example.com', i), 'Bench', ` +
      `printf('%05d', i) FROM n`,
    `INSERT INTO profiles (user_id, phone_number, branch, designation) SELECT id, printf('+1666%07d', id), ` +
      `'Bench', 'Load' FROM users WHERE email LIKE 'bench%@example.com'`,
    `INSERT INTO user_groups (user_id, group_id) SELECT u.id, g.id FROM users u, groups g ` +
      `WHERE u.email LIKE 'bench%@example.com' AND g.name = 'Employees'`,
  ].join("; ");
}

export function serviceVars(mock, extra = {}) {
  return {
    ...mock.workerVars(),
    EMAIL_PROVIDER: "resend",
    SMS_PROVIDER: "twilio",
    // The shortest cooldown and the highest caps the configuration accepts: the load comes from one client IP and
    // reuses each employee every few seconds.
    OTP_RESEND_COOLDOWN_SECONDS: "1",
    OTP_MAX_SENDS_PER_HOUR: "100",
    RATE_LIMIT_IP_SENDS: "1000000",
    RATE_LIMIT_IP_VERIFIES: "1000000",
    RATE_LIMIT_IP_REFRESHES: "1000000",
    ...extra,
  };
}

/** wrangler.toml's name: the inspector proxy's path is /core:user:<name>. */
export const WORKER_NAME = "edge-otp-login";

/** A Chrome DevTools Protocol session over the inspector proxy (which wants an Origin it allows). */
export async function inspect(port, workerName) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/core:user:${workerName}`, { headers: { origin: "http://localhost" } });
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`could not connect to the inspector on 127.0.0.1:${port}`));
  });
  let id = 0;
  const pending = new Map();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    const done = msg.id !== undefined && pending.get(msg.id);
    if (!done) return;
    pending.delete(msg.id);
    if (msg.error) done.reject(new Error(`${done.method}: ${msg.error.message}`));
    else done.resolve(msg.result);
  };
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${method}: no answer from the inspector`)), 30_000);
      pending.set(++id, { method, resolve: (r) => (clearTimeout(timer), resolve(r)), reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { call, close: () => ws.close() };
}
