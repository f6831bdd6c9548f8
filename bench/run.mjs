// `npm run bench`: the built worker under wrangler dev (workerd, local D1 and KV, the e2e harness), driven by
// autocannon at a fixed concurrency for a bounded time per scenario, beside a no-op Worker in the same runtime
// (the ceiling). Prints requests/s, p50/p99 latency and errors per scenario, each as a ratio of the no-op's
// requests/s, and the storage work per operation as the worker's adapters count it. Only 127.0.0.1.
//
// Then the Worker's own CPU time per request and route (p50, p99), beside the no-op Worker's: bench/cpu.mjs.
// `npm run bench -- cpu` measures only that (about a minute).
//
// Knobs (environment): BENCH_CONNECTIONS (16), BENCH_DURATION_SECONDS (10), BENCH_EMPLOYEES (4000),
// BENCH_CPU_LOGINS (100), BENCH_CPU_ME_PER_LOGIN (3), E2E_SKIP_BUILD=1 to use build/ as it is.
//
// Both dev servers run without wrangler's local observability collector and local explorer (bench/support.mjs).

import { readFileSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";

import autocannon from "autocannon";

import { PATHS } from "../tests/e2e/support/api.mjs";
import { startMockProviders } from "../tests/e2e/support/mock-providers.mjs";
import { formatStorageTable, kvOps, loginFlowTotals, measureLogin } from "../tests/e2e/support/storage.mjs";
import { ROOT, ensureBuilt, startWorker } from "../tests/e2e/support/worker.mjs";
import { formatCpu, measureCpu } from "./cpu.mjs";
import { startNoop } from "./noop.mjs";
import { benchEmail, benchEmployeesSql, positiveInt, serviceVars } from "./support.mjs";

const CONNECTIONS = positiveInt("BENCH_CONNECTIONS", 16);
const DURATION_S = positiveInt("BENCH_DURATION_SECONDS", 10);
const EMPLOYEES = positiveInt("BENCH_EMPLOYEES", 4000);
const REQUEST_TIMEOUT_S = 10;
const CODE_WAIT_MS = 15_000;
const TARGETS = Object.freeze({ me: 0.7, flow: 0.3 });
const CPU_ONLY = process.argv[2] === "cpu";

const QUIET = Object.freeze(["--log-level", "warn"]);
const JSON_HEADERS = Object.freeze({ "content-type": "application/json", "cf-connecting-ip": "198.51.100.200" });

// ---- the workers ------------------------------------------------------------------------------------------------

/**
 * CPU time (user + system, ms) used so far by the live processes of a dev server's process group: wrangler's Node
 * process and its workerd processes (the proxy and the runtime that runs the Worker, its D1 and its KV). Per request,
 * this is the figure that a busy machine distorts least: requests/s and latency also count the time spent waiting
 * for a core.
 */
function groupCpuMs(pgid) {
  const ticksPerSecond = 100; // USER_HZ, 100 on Linux
  let ticks = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // Fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]);
  }
  return (ticks * 1000) / ticksPerSecond;
}

/** Runs `scenario` and adds the server's and this process's CPU per request (or per `per` of the result). */
async function measured(server, scenario, per = (r) => r.requests) {
  const serverBefore = groupCpuMs(server.pgid);
  const selfBefore = process.cpuUsage();
  const result = await scenario();
  const selfUsed = process.cpuUsage(selfBefore);
  const n = per(result);
  return {
    ...result,
    serverCpuMs: (groupCpuMs(server.pgid) - serverBefore) / n,
    loadCpuMs: (selfUsed.user + selfUsed.system) / 1000 / n,
  };
}

// ---- load -------------------------------------------------------------------------------------------------------

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** One autocannon run: `connections` connections, `DURATION_S` seconds (or `amount` requests, whichever first). */
function cannon(url, options) {
  return new Promise((resolve, reject) => {
    const { amount, ...rest } = options;
    const instance = autocannon(
      { url, connections: CONNECTIONS, timeout: REQUEST_TIMEOUT_S, ...(amount ? { amount } : { duration: DURATION_S }), ...rest },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
    if (amount) setTimeout(() => instance.stop(), DURATION_S * 1000).unref();
  });
}

/** Errors: answers other than `expectStatus` (2xx by default), socket errors and timeouts. */
function summarize(name, result, { expectStatus, ...extra } = {}) {
  const completed = result["1xx"] + result["2xx"] + result["3xx"] + result["4xx"] + result["5xx"];
  const unexpected = expectStatus ? completed - (result.statusCodeStats?.[expectStatus]?.count ?? 0) : result.non2xx;
  const seconds = result.duration;
  return {
    name,
    requests: completed,
    seconds,
    rps: completed / seconds,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: unexpected + result.errors + result.timeouts,
    ...extra,
  };
}

/** Rotates through the seeded employees so that each is asked for a code at most once every few seconds. */
let nextEmployee = 0;
const takeEmployee = () => benchEmail((nextEmployee++ % EMPLOYEES) + 1);

async function noopScenario(noop, duration = DURATION_S) {
  const result = await cannon(noop.url, { method: "GET", path: PATHS.me, headers: { authorization: `Token ${"0".repeat(64)}` }, duration });
  return summarize("no-op worker (ceiling)", result);
}

/** One storage call in the no-op Worker, priced by its server CPU over the no-op's (half the duration each). */
async function calibrationScenario(noop, route) {
  const result = await cannon(noop.url, { method: "GET", path: route, duration: Math.max(1, Math.round(DURATION_S / 2)) });
  return summarize(`no-op + one ${route.slice(1)}`, result);
}

/** The service's own fixed cost: an unknown path answers 404 before any storage call. */
async function notFoundScenario(service) {
  const result = await cannon(service.url, { method: "GET", path: "/auth/api/mobile/nothing/" });
  return summarize("service 404 (no storage)", result, { expectStatus: 404 });
}

async function generateScenario(service) {
  const result = await cannon(service.url, {
    requests: [
      {
        method: "POST",
        path: PATHS.generate,
        headers: JSON_HEADERS,
        setupRequest: (req) => ({ ...req, body: JSON.stringify({ email: takeEmployee() }) }),
      },
    ],
  });
  return summarize("generate-otp", result);
}

/** Waits until the mock has received no message for `quietMs`: the deliveries of a scenario are done. */
async function settleDeliveries(mock, quietMs = 1500, maxMs = 60_000) {
  const deadline = Date.now() + maxMs;
  let count = -1;
  while (Date.now() < deadline) {
    if (mock.messages.length === count) return;
    count = mock.messages.length;
    await new Promise((r) => setTimeout(r, quietMs));
  }
}

/** The newest code each bench employee received: a live code per employee (a refused request sends nothing). */
function liveCodes(mock) {
  const latest = new Map();
  for (const m of mock.messages) {
    const to = [].concat(m.to)[0];
    if (m.code && /^bench\d+@/.test(to ?? "")) latest.set(to, m.code);
  }
  return [...latest].map(([email, code]) => ({ email, code }));
}

async function verifyScenario(service, pairs, tokens) {
  let next = 0;
  let exhausted = 0;
  const result = await cannon(service.url, {
    amount: pairs.length,
    requests: [
      {
        method: "POST",
        path: PATHS.verify,
        headers: JSON_HEADERS,
        setupRequest: (req) => {
          const pair = pairs[next++];
          if (!pair) exhausted++;
          const body = pair ? { email: pair.email, otp_code: pair.code } : { email: takeEmployee(), otp_code: "000000" };
          return { ...req, body: JSON.stringify(body) };
        },
        onResponse: (status, body) => {
          if (status === 200) tokens.push(JSON.parse(body).token);
        },
      },
    ],
  });
  return summarize("verify-otp", result, { note: `${pairs.length} live codes${exhausted ? `, ${exhausted} past the pool` : ""}` });
}

async function meScenario(service, tokens) {
  let next = 0;
  const result = await cannon(service.url, {
    requests: [
      {
        method: "GET",
        path: PATHS.me,
        setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Token ${tokens[next++ % tokens.length]}` } }),
      },
    ],
  });
  return summarize("me/ (authenticated)", result, { note: `${tokens.length} tokens in rotation` });
}

/**
 * Whole logins: each connection alternates generate-otp for a fresh employee and verify-otp for an employee whose
 * code has already arrived (as a person types the code a little later). The delivery of every code (account look-up,
 * KV write, provider call) runs inside the measured window. A flow's latency is its generate's plus its verify's.
 */
async function flowScenario(service, mock) {
  const ready = [];
  let lostCodes = 0;
  const expectCode = (email, since, generateMs) =>
    mock
      .waitForMessage(email, CODE_WAIT_MS, { since })
      .then((m) => ready.push({ email, code: m.code, generateMs }))
      .catch(() => lostCodes++);

  // Codes ready before the clock starts, so that no connection waits for its first verify.
  await Promise.all(
    Array.from({ length: 2 * CONNECTIONS }, async () => {
      const email = takeEmployee();
      const since = Date.now();
      const started = performance.now();
      const res = await fetch(service.url + PATHS.generate, {
        method: "POST",
        headers: JSON_HEADERS,
        body: JSON.stringify({ email }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_S * 1000),
      });
      await res.arrayBuffer();
      if (res.ok) await expectCode(email, since, performance.now() - started);
    }),
  );

  const flowMs = [];
  let flowErrors = 0;
  let starved = 0;
  const result = await cannon(service.url, {
    requests: [
      {
        method: "POST",
        path: PATHS.generate,
        headers: JSON_HEADERS,
        setupRequest: (req, ctx) => {
          ctx.email = takeEmployee();
          ctx.since = Date.now();
          ctx.started = performance.now();
          return { ...req, body: JSON.stringify({ email: ctx.email }) };
        },
        onResponse: (status, _body, ctx) => {
          if (status === 200) expectCode(ctx.email, ctx.since, performance.now() - ctx.started);
        },
      },
      {
        method: "POST",
        path: PATHS.verify,
        headers: JSON_HEADERS,
        setupRequest: (req, ctx) => {
          const pair = ready.shift();
          if (!pair) {
            // No code has arrived yet: this connection starts its next flow instead (autocannon restarts the
            // sequence when a request cannot be built).
            starved++;
            return null;
          }
          ctx.pair = pair;
          ctx.started = performance.now();
          return { ...req, body: JSON.stringify({ email: pair.email, otp_code: pair.code }) };
        },
        onResponse: (status, _body, ctx) => {
          if (status === 200) flowMs.push(ctx.pair.generateMs + (performance.now() - ctx.started));
          else flowErrors++;
        },
      },
    ],
  });
  flowMs.sort((a, b) => a - b);
  const summary = summarize("login flow (generate + verify)", result);
  return {
    ...summary,
    flows: flowMs.length,
    flowsPerSecond: flowMs.length / summary.seconds,
    flowP50: percentile(flowMs, 50),
    flowP99: percentile(flowMs, 99),
    flowErrors: flowErrors + lostCodes,
    note: `${flowMs.length} logins; ${starved} verifies waited for a code; ${lostCodes} codes never arrived`,
  };
}

// ---- the floor: the same storage work in the no-op Worker ---------------------------------------------------------

/** The mock Resend API, for the floor's delivery: the service's own provider and credentials. */
function deliveryVars(mock) {
  const vars = mock.workerVars();
  return { RESEND_API_BASE: vars.RESEND_API_BASE, RESEND_API_KEY: vars.RESEND_API_KEY, EMAIL_FROM: vars.EMAIL_FROM };
}

/** Spreads `statements` over `trips` D1 round trips as evenly as they go: "2,1" for 3 over 2. */
function tripSizes(trips, statements) {
  return Array.from({ length: trips }, (_, i) => Math.floor(statements / trips) + (i < statements % trips ? 1 : 0));
}

/** The /replay path that repeats a step's counted storage work, plus `deliveries` provider calls after the answer. */
function replayPath(step, deliveries = 0) {
  const q = new URLSearchParams();
  for (const [prefix, ops] of [["", step.response], ["a", step.after]]) {
    if (ops.d1_round_trips) q.set(`${prefix}d1`, tripSizes(ops.d1_round_trips, Math.max(ops.d1_statements, ops.d1_round_trips)).join(","));
    if (ops.kv_reads) q.set(`${prefix}kvr`, String(ops.kv_reads));
    if (ops.kv_writes) q.set(`${prefix}kvw`, String(ops.kv_writes));
    if (ops.kv_deletes) q.set(`${prefix}kvd`, String(ops.kv_deletes));
  }
  if (deliveries) q.set("afetch", String(deliveries));
  return `/replay?${q}`;
}

async function floorMeScenario(noop, meStep) {
  const path = replayPath(meStep);
  const result = await cannon(noop.url, { method: "GET", path });
  return summarize("floor: me/'s storage only", result, { note: `no-op Worker, ${path}` });
}

/** Each connection alternates generate-otp's storage work (and one delivery) and verify-otp's, in the no-op. */
async function floorFlowScenario(noop, generateStep, verifyStep) {
  const generate = replayPath(generateStep, 1);
  const verify = replayPath(verifyStep);
  const result = await cannon(noop.url, { requests: [{ method: "GET", path: generate }, { method: "GET", path: verify }] });
  const summary = summarize("floor: a login's storage only", result);
  const flows = Math.floor(result["2xx"] / 2);
  return {
    ...summary,
    flows,
    flowsPerSecond: flows / summary.seconds,
    // Per login, the two requests' latencies at the same percentile: close to what a login waits.
    flowP50: 2 * summary.p50,
    flowP99: 2 * summary.p99,
    flowErrors: summary.errors,
    note: `no-op Worker, ${generate} then ${verify}`,
  };
}

// ---- report -----------------------------------------------------------------------------------------------------

function machine() {
  let cpu = os.cpus()[0]?.model ?? "unknown CPU";
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpu;
  } catch {
    // not Linux
  }
  const wranglerVersion = JSON.parse(readFileSync(path.join(ROOT, "node_modules", "wrangler", "package.json"), "utf8")).version;
  return `${os.availableParallelism()} cores (nproc), ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ` +
    `node ${process.version}, wrangler ${wranglerVersion}`;
}

const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

/** The per-login row under a flow scenario: logins per second and a login's latency, CPU per login. */
function flowRow(flow) {
  const { ceiling } = flow;
  return [
    "  whole logins (flows)",
    `${fmt(flow.flowsPerSecond)} flows/s`,
    fmt(flow.flowP50),
    fmt(flow.flowP99),
    flow.flowErrors,
    flow.flows,
    fmt(flow.flowsPerSecond / ceiling.rps, 2),
    fmt(flow.serverCpuMs, 2),
    fmt(flow.serverCpuMs / ceiling.serverCpuMs, 1),
    fmt(flow.loadCpuMs, 2),
  ];
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join("  ")).join("\n");
}

function report(results, flows) {
  const header = ["scenario", "req/s", "p50 ms", "p99 ms", "errors", "requests", "x no-op req/s", "server CPU ms", "x no-op CPU", "load gen CPU ms"];
  const rows = results.flatMap((r) => [[
    r.name,
    fmt(r.rps),
    fmt(r.p50),
    fmt(r.p99),
    r.errors,
    r.requests,
    fmt(r.rps / r.ceiling.rps, 2),
    flows.includes(r) ? "" : fmt(r.serverCpuMs, 2),
    flows.includes(r) ? "" : fmt(r.serverCpuMs / r.ceiling.serverCpuMs, 1),
    flows.includes(r) ? "" : fmt(r.loadCpuMs, 2),
  ], ...(flows.includes(r) ? [flowRow(r)] : [])]);
  return table([header, ...rows]);
}

async function main() {
  const loadBefore = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(`machine: ${machine()}`);
  if (CPU_ONLY) console.log(`CPU per request only (npm run bench -- cpu); load average before: ${loadBefore}`);
  else console.log(`load: ${CONNECTIONS} connections, ${DURATION_S} s per scenario, ${EMPLOYEES} seeded employees; load average before: ${loadBefore}`);
  await ensureBuilt();

  const mock = await startMockProviders();
  const cleanup = [() => mock.close()];
  try {
    // Storage work per operation, one request at a time, on a worker that counts it (STORAGE_METRICS=1).
    let steps = [];
    if (!CPU_ONLY) {
      const probe = await startWorker({ vars: serviceVars(mock, { STORAGE_METRICS: "1" }), sql: benchEmployeesSql(EMPLOYEES) });
      steps = await measureLogin(probe, mock, benchEmail(EMPLOYEES));
      await probe.stop();
      mock.reset();
    }

    // Load, on a worker that counts nothing (as deployed), beside the no-op. Both without wrangler's log line per
    // request, which costs its Node process as much CPU as the no-op Worker costs workerd.
    const worker = await startWorker({ vars: serviceVars(mock), sql: benchEmployeesSql(EMPLOYEES), devArgs: QUIET });
    cleanup.push(() => worker.stop());
    const service = { url: worker.url, pgid: worker.process.pid, inspectorPort: worker.inspectorPort };
    const noop = await startNoop(deliveryVars(mock));
    cleanup.push(() => noop.stop());
    const init = await fetch(`${noop.url}/replay-init`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_S * 1000) });
    await init.arrayBuffer();
    if (!init.ok) throw new Error(`the no-op worker's /replay-init answered ${init.status}`);

    // Warm-up, not measured: the first requests of an isolate pay for JIT compilation in workerd and the proxy.
    const warmUp = { duration: 2, connections: Math.min(4, CONNECTIONS) };
    await cannon(noop.url, { method: "GET", path: PATHS.me, ...warmUp });
    await cannon(service.url, { method: "GET", path: PATHS.me, ...warmUp });

    // The Worker's own CPU per request, one request at a time, before any load (bench/cpu.mjs).
    const cpu = await measureCpu(service, noop, mock, takeEmployee);
    mock.reset();
    if (CPU_ONLY) {
      console.log("");
      console.log(formatCpu(cpu));
      console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
      return;
    }

    // Each scenario's ratios are taken against a no-op run right before it (half as long): the speed of a shared
    // machine drifts over minutes, and a single ceiling at the start would carry that drift into every ratio.
    const results = [];
    const ceiling = await measured(noop, () => noopScenario(noop));
    ceiling.ceiling = ceiling;
    results.push(ceiling);
    const ceilings = [];
    const paired = async (server, scenario, per) => {
      const before = await measured(noop, () => noopScenario(noop, Math.max(1, Math.round(DURATION_S / 2))));
      ceilings.push(before);
      return { ...(await measured(server, scenario, per)), ceiling: before };
    };
    results.push(await paired(service, () => notFoundScenario(service)));
    results.push(await paired(service, () => generateScenario(service)));
    await settleDeliveries(mock);
    const tokens = [];
    const codes = liveCodes(mock);
    results.push(await paired(service, () => verifyScenario(service, codes, tokens)));
    if (tokens.length === 0) throw new Error("verify-otp logged nobody in; cannot run the authenticated scenario");
    const me = await paired(service, () => meScenario(service, tokens));
    results.push(me);
    mock.reset();
    // Per whole login: the server's CPU includes each login's share of the deliveries and audit rows.
    const flow = await paired(service, () => flowScenario(service, mock), (r) => r.flows);
    results.push(flow);
    // The floor: the no-op Worker making only the storage calls (and the delivery) of me/ and of a login.
    const stepOf = (op) => steps.find((s) => s.op === op);
    const floorMe = await paired(noop, () => floorMeScenario(noop, stepOf("me (authenticated)")));
    results.push(floorMe);
    const floorFlow = await paired(noop, () => floorFlowScenario(noop, stepOf("generate-otp"), stepOf("verify-otp")), (r) => r.flows);
    results.push(floorFlow);
    const calibration = [];
    for (const route of ["/no-op", "/kv-read", "/kv-write", "/d1-query"]) {
      calibration.push(await measured(noop, () => calibrationScenario(noop, route)));
    }

    console.log("");
    console.log(report(results, [flow, floorFlow]));
    for (const r of results) if (r.note) console.log(`  ${r.name}: ${r.note}`);
    console.log("  server CPU ms: CPU time of the dev server's processes (wrangler, workerd) per request, or per login on");
    console.log("  the flows row (including its delivery and audit rows); load gen CPU ms: this process (autocannon and");
    console.log("  the mock provider) per request.");

    console.log("");
    console.log("what one storage call costs in this runtime (the no-op Worker making it, right after a no-op baseline):");
    const [baseline, ...calls] = calibration;
    console.log(`  ${"no-op baseline".padEnd(22)} ${fmt(baseline.rps).padStart(7)} req/s  ${fmt(baseline.serverCpuMs, 2)} ms CPU/req`);
    for (const c of calls) {
      const extra = c.serverCpuMs - baseline.serverCpuMs;
      console.log(`  ${c.name.padEnd(22)} ${fmt(c.rps).padStart(7)} req/s  ${fmt(c.serverCpuMs, 2)} ms CPU/req: ` +
        `${extra >= 0 ? "+" : ""}${fmt(extra, 2)} ms = ${fmt(extra / baseline.serverCpuMs, 2)} no-op requests` +
        (c.errors ? `  (${c.errors} errors)` : ""));
    }

    console.log(`  the no-op's req/s right before each later scenario (the base of its ratios): ` +
      `${ceilings.map((c) => fmt(c.rps, 0)).join(", ")}`);
    const meRatio = me.rps / me.ceiling.rps;
    const flowRatio = flow.flowsPerSecond / flow.ceiling.rps;
    const floorMeRatio = floorMe.rps / floorMe.ceiling.rps;
    const floorFlowRatio = floorFlow.flowsPerSecond / floorFlow.ceiling.rps;
    const mark = (ok) => (ok ? "met" : "MISSED");
    console.log("");
    console.log(`targets: me/ at ${fmt(meRatio * 100, 0)}% of the no-op's req/s (>= ${TARGETS.me * 100}%: ${mark(meRatio >= TARGETS.me)}); ` +
      `whole logins at ${fmt(flowRatio * 100, 0)}% (>= ${TARGETS.flow * 100}%: ${mark(flowRatio >= TARGETS.flow)})`);
    console.log(`the floor (the no-op making the same storage calls and nothing else): me/ at ${fmt(floorMeRatio * 100, 0)}%, ` +
      `whole logins at ${fmt(floorFlowRatio * 100, 0)}%; the service reaches ` +
      `${fmt((meRatio / floorMeRatio) * 100, 0)}% and ${fmt((flowRatio / floorFlowRatio) * 100, 0)}% of its floor`);

    console.log("");
    console.log(formatCpu(cpu));

    const totals = loginFlowTotals(steps);
    console.log("");
    console.log("storage work per operation (response path / after response), counted by the adapters:");
    console.log(formatStorageTable(steps));
    console.log(`login flow: ${totals.response.d1_round_trips} D1 round trips before the answers (budget 3), ` +
      `${kvOps(totals.total)} KV operations in all (budget 4)`);
    console.log("");
    console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  } finally {
    for (const stop of cleanup.reverse()) await Promise.resolve().then(stop).catch(() => {});
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
