// The Worker's own CPU time per request, as Cloudflare bills it: the time the Worker's isolate spends running for a
// request (its JavaScript and wasm, the garbage collector, the runtime's native code called from them, and the work
// it defers with waitUntil), not the time it waits for D1, KV or a provider. Measured locally, under wrangler dev.
//
// Why not the runtime's own figure: a tail consumer under wrangler dev (workerd) receives `cpuTime: 0` and
// `wallTime: 0` in every trace event (wrangler 4.164.0: a producer Worker spinning a few milliseconds per request,
// tailed by a second Worker in the same `wrangler dev -c producer.toml -c tail.toml`; see docs/PERFORMANCE-CPU.md).
// workerd does not measure it locally, so it is derived here from a V8 CPU profile of the Worker's isolate.
//
// How, and why it is sound:
// - The requests go to the Worker ONE AT A TIME, through a single client. Request k is sent only after request
//   k-1 has been answered, its deferred work (waitUntil: the delivery, the audit rows) has finished, and a quiet
//   period has passed. Nothing else runs in the Worker's isolate, so all the isolate's work between the moment
//   request k is sent and the moment request k+1 is sent is request k's.
// - The profiler (Profiler.start through wrangler dev's inspector proxy) samples the isolate's thread every
//   INTERVAL_US µs. A sample is "(idle)" while the isolate waits (for the network, D1, KV, a timer); any other
//   sample is work: JavaScript, wasm, "(program)" (the runtime's native code) or "(garbage collector)".
// - Each sample's time is profile.startTime plus the running sum of profile.timeDeltas, in microseconds of the
//   monotonic clock (V8's TimeTicks, CLOCK_MONOTONIC on Linux). This process reads the same clock
//   (process.hrtime.bigint()), so the send times taken here split the profile into per-request windows directly;
//   the alignment is checked on every run (the profile must start between the two clock readings around
//   Profiler.start) and a run fails if it does not hold.
// - A work sample counts for the time since the sample before it, capped at CAP_INTERVALS sampling intervals: a
//   longer gap means the profiler took no sample (the isolate was not entered, or the profiler's thread waited for a
//   core on this shared machine), and that time must not be charged to the isolate.
// - A window whose last work sample lies within QUIET_CHECK_US of the next send was still busy when the next
//   request went out (its deferred work overran the quiet period): such windows are counted and printed, so that
//   an overrun cannot hide.
//
// The no-op Worker (bench/noop) is measured the same way: its figure is what any Worker costs in this runtime before
// doing anything of its own (the request and response objects, the static-assets router's hand-off), the ceiling.
// Resolution: one sampling interval (0.1 ms); the sampler's own cost is in every figure, the no-op's included.

import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";

import { PATHS } from "../tests/e2e/support/api.mjs";
import { WORKER_NAME, inspect, positiveInt } from "./support.mjs";

export const INTERVAL_US = 100;
const CAP_INTERVALS = 3;
const QUIET_CHECK_US = 1_000;
// After a route that defers work (generate-otp's delivery and audit rows, the others' audit rows), and after one
// that does not. Locally a deferred D1 batch takes a few milliseconds.
const SETTLE_MS = 60;
const QUIET_MS = 15;
const ME_PER_LOGIN = positiveInt("BENCH_CPU_ME_PER_LOGIN", 3);
const LOGINS = positiveInt("BENCH_CPU_LOGINS", 100);
const NOOP_REQUESTS = positiveInt("BENCH_CPU_NOOP_REQUESTS", 300);
const WARM_UP_LOGINS = 5;
// One profile per batch of about 200 requests: a profile of much longer runs can fail to come back whole.
const LOGINS_PER_PROFILE = Math.max(1, Math.floor(200 / (5 + ME_PER_LOGIN)));
const JSON_HEADERS = Object.freeze({ "content-type": "application/json", "cf-connecting-ip": "198.51.100.201" });
const TIMEOUT_MS = 20_000;

// BENCH_CPU_TOP=<n>: also print each route's n functions with the most CPU (needs a build with wasm names for the
// Rust functions: KEEP_WASM_NAMES=1 sh scripts/build.sh). BENCH_CPU_PROFILES=<dir>: keep each profile and its
// request marks (µs, the profile's clock) there.
const TOP = Number(process.env.BENCH_CPU_TOP ?? 0);
const FUNCTIONS = TOP > 0 ? new Map() : null;
const PROFILE_DIR = process.env.BENCH_CPU_PROFILES || null;
let profilesWritten = 0;

export const CPU_ROUTES = Object.freeze(["generate-otp", "verify-otp", "me/", "refresh", "logout", "404"]);
export const CPU_GOALS = Object.freeze({ p99Ms: 5, meP50OverNoop: 1.5 });

const nowUs = () => Number(process.hrtime.bigint() / 1000n);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function send(url, method, path, { json, token } = {}) {
  const headers = { ...(json ? JSON_HEADERS : {}), ...(token ? { authorization: `Token ${token}` } : {}) };
  const res = await fetch(url + path, {
    method,
    headers,
    body: json ? JSON.stringify(json) : undefined,
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/**
 * Runs `drive(mark)` under a CPU profile of the isolate; `drive` calls mark(route) right before sending each request
 * and mark(null) once the last request's work is over. Returns [{ route, cpuMs, busyAtEnd }].
 */
async function profiled(inspector, drive) {
  const marks = [];
  const mark = (route) => marks.push({ route, at: nowUs() });
  const before = nowUs();
  await inspector.call("Profiler.start");
  const after = nowUs();
  await drive(mark);
  const stopped = await inspector.call("Profiler.stop");
  const profile = stopped?.profile;
  if (!profile) throw new Error(`Profiler.stop returned no profile: ${JSON.stringify(stopped)?.slice(0, 300)}`);
  // The clocks must agree: the profile starts between the two readings around Profiler.start (with 50 ms of slack
  // for the round trip through the inspector proxy). Otherwise the windows would not line up with the samples.
  if (!(profile.startTime >= before - 50_000 && profile.startTime <= after + 50_000)) {
    throw new Error(`the profile's clock does not match this process's: startTime ${profile.startTime} µs, Profiler.start called between ${before} and ${after} µs`);
  }
  if (FUNCTIONS) functionsByRoute(profile, marks, FUNCTIONS);
  if (PROFILE_DIR) {
    mkdirSync(PROFILE_DIR, { recursive: true });
    writeFileSync(path.join(PROFILE_DIR, `cpu-${++profilesWritten}.cpuprofile`), JSON.stringify(profile));
    writeFileSync(path.join(PROFILE_DIR, `cpu-${profilesWritten}.marks.json`), JSON.stringify(marks));
  }
  return attribute(profile, marks);
}

/** Splits a profile's work samples into the windows between consecutive marks. Exported for checking by hand. */
export function attribute(profile, marks) {
  const idle = new Set(profile.nodes.filter((n) => n.callFrame.functionName === "(idle)").map((n) => n.id));
  const cap = CAP_INTERVALS * INTERVAL_US;
  const windows = marks.slice(0, -1).map((m, i) => ({ route: m.route, start: m.at, end: marks[i + 1].at, us: 0, lastWork: -Infinity }));
  let t = profile.startTime;
  let w = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (idle.has(profile.samples[i])) continue;
    while (w < windows.length && t >= windows[w].end) w++;
    if (w >= windows.length) break;
    if (t < windows[w].start) continue; // before the first request: not part of any window
    windows[w].us += Math.min(delta, cap);
    windows[w].lastWork = t;
  }
  return windows.map((x) => ({ route: x.route, cpuMs: x.us / 1000, busyAtEnd: x.end - x.lastWork < QUIET_CHECK_US }));
}

/**
 * Where each route's CPU goes: time per function, inclusive of its callees, summed over the route's windows (with
 * the same capped sample intervals as the totals). Adds to `into`: Map route -> Map function -> µs.
 */
export function functionsByRoute(profile, marks, into) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const cap = CAP_INTERVALS * INTERVAL_US;
  let t = profile.startTime;
  let w = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (byId.get(profile.samples[i]).callFrame.functionName === "(idle)") continue;
    while (w < marks.length - 1 && t >= marks[w + 1].at) w++;
    if (w >= marks.length - 1) break;
    if (t < marks[w].at) continue;
    const route = marks[w].route;
    if (!into.has(route)) into.set(route, new Map());
    const fns = into.get(route);
    const seen = new Set();
    for (let nid = profile.samples[i]; nid !== undefined; nid = parent.get(nid)) {
      const { functionName, url, lineNumber } = byId.get(nid).callFrame;
      if (functionName === "(root)") continue;
      const name = `${(functionName || "(anonymous)").replace(/::h[0-9a-f]{16}/g, "")}${url ? ` ${url.split("/").pop()}:${lineNumber + 1}` : ""}`;
      if (seen.has(name)) continue;
      seen.add(name);
      fns.set(name, (fns.get(name) ?? 0) + Math.min(delta, cap));
    }
  }
  return into;
}

/** One whole login of `email` and what a session does next: generate, verify, me/ (3 times), refresh, logout, 404. */
async function loginCycle(url, mock, email, mark) {
  const since = Date.now();
  mark("generate-otp");
  const sent = await send(url, "POST", PATHS.generate, { json: { email } });
  if (sent.status !== 200) throw new Error(`generate-otp for ${email}: ${sent.status} ${JSON.stringify(sent.body)}`);
  const { code } = await mock.waitForMessage(email, TIMEOUT_MS, { since });
  await sleep(SETTLE_MS);
  mark("verify-otp");
  const verified = await send(url, "POST", PATHS.verify, { json: { email, otp_code: code } });
  if (verified.status !== 200) throw new Error(`verify-otp for ${email}: ${verified.status} ${JSON.stringify(verified.body)}`);
  await sleep(SETTLE_MS);
  for (let i = 0; i < ME_PER_LOGIN; i++) {
    mark("me/");
    const me = await send(url, "GET", PATHS.me, { token: verified.body.token });
    if (me.status !== 200) throw new Error(`me/ for ${email}: ${me.status}`);
    await sleep(QUIET_MS);
  }
  mark("refresh");
  const refreshed = await send(url, "POST", "/auth/api/mobile/refresh/", { json: { refresh_token: verified.body.refresh_token } });
  if (refreshed.status !== 200) throw new Error(`refresh for ${email}: ${refreshed.status} ${JSON.stringify(refreshed.body)}`);
  await sleep(SETTLE_MS);
  mark("logout");
  const out = await send(url, "POST", PATHS.logout, { token: refreshed.body.token });
  if (out.status !== 200) throw new Error(`logout for ${email}: ${out.status}`);
  await sleep(SETTLE_MS);
  mark("404");
  const missing = await send(url, "GET", "/auth/api/mobile/nothing/");
  if (missing.status !== 404) throw new Error(`unknown path: ${missing.status}`);
  await sleep(QUIET_MS);
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN;
}

function summarize(route, windows) {
  const ms = windows.map((w) => w.cpuMs).sort((a, b) => a - b);
  return {
    route,
    requests: ms.length,
    p50: percentile(ms, 50),
    p99: percentile(ms, 99),
    mean: ms.reduce((a, b) => a + b, 0) / (ms.length || 1),
    max: ms[ms.length - 1],
    busyAtEnd: windows.filter((w) => w.busyAtEnd).length,
  };
}

/**
 * CPU per request for the service (`service`: { url, inspectorPort }) and the no-op Worker (`noop`: { url,
 * inspectorPort }). `nextEmail()` gives a fresh employee for each login. Returns { rows, noop, seconds }.
 */
export async function measureCpu(service, noop, mock, nextEmail) {
  const started = performance.now();
  for (let i = 0; i < WARM_UP_LOGINS; i++) await loginCycle(service.url, mock, nextEmail(), () => {});

  const inspector = await inspect(service.inspectorPort, WORKER_NAME);
  const windows = [];
  try {
    await inspector.call("Profiler.enable");
    await inspector.call("Profiler.setSamplingInterval", { interval: INTERVAL_US });
    for (let done = 0; done < LOGINS; done += LOGINS_PER_PROFILE) {
      const batch = Math.min(LOGINS_PER_PROFILE, LOGINS - done);
      windows.push(
        ...(await profiled(inspector, async (mark) => {
          for (let i = 0; i < batch; i++) await loginCycle(service.url, mock, nextEmail(), mark);
          mark(null);
        })),
      );
    }
  } finally {
    inspector.close();
  }

  const noopInspector = await inspect(noop.inspectorPort, "bench-noop");
  const noopWindows = [];
  const noopGet = () => send(noop.url, "GET", PATHS.me, { token: "0".repeat(64) });
  try {
    for (let i = 0; i < 20; i++) await noopGet();
    await noopInspector.call("Profiler.enable");
    await noopInspector.call("Profiler.setSamplingInterval", { interval: INTERVAL_US });
    noopWindows.push(
      ...(await profiled(noopInspector, async (mark) => {
        for (let i = 0; i < NOOP_REQUESTS; i++) {
          mark("no-op");
          await noopGet();
          await sleep(QUIET_MS);
        }
        mark(null);
      })),
    );
  } finally {
    noopInspector.close();
  }

  return {
    noop: summarize("no-op Worker", noopWindows),
    rows: CPU_ROUTES.map((route) => summarize(route, windows.filter((w) => w.route === route))),
    seconds: (performance.now() - started) / 1000,
  };
}

const fmt = (n, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

/** The CPU table, with the goals (every route's p99 under 5 ms; me/'s p50 at most 1.5 times the no-op's). */
export function formatCpu({ rows, noop, seconds }) {
  const header = ["route", "requests", "p50 ms", "p99 ms", "mean ms", "max ms", "p50 x no-op", "busy at end"];
  const line = (r) => [r.route, r.requests, fmt(r.p50), fmt(r.p99), fmt(r.mean), fmt(r.max), fmt(r.p50 / noop.p50, 1), r.busyAtEnd];
  const all = [header, line(noop), ...rows.map(line)];
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const text = all.map((r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join("  "));
  const me = rows.find((r) => r.route === "me/");
  const over = rows.filter((r) => !(r.p99 < CPU_GOALS.p99Ms)).map((r) => r.route);
  const mark = (ok) => (ok ? "met" : "MISSED");
  const top = [];
  if (FUNCTIONS) {
    for (const r of [noop, ...rows]) {
      const fns = FUNCTIONS.get(r.route === "no-op Worker" ? "no-op" : r.route);
      if (!fns) continue;
      top.push("", `${r.route}: functions with the most CPU, inclusive, ms per request (${r.requests} requests)`);
      for (const [name, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
        top.push(`${fmt(us / 1000 / r.requests, 3).padStart(8)}  ${name.slice(0, 140)}`);
      }
    }
  }
  return [
    ...top,
    ...(top.length ? [""] : []),
    `CPU time of the Worker's isolate per request (V8 profile, one request at a time, ${INTERVAL_US} µs samples; ${fmt(seconds, 0)} s):`,
    ...text,
    `goals: every route's p99 under ${CPU_GOALS.p99Ms} ms: ${mark(over.length === 0)}${over.length ? ` (${over.join(", ")})` : ""}; ` +
      `me/'s p50 at most ${CPU_GOALS.meP50OverNoop} x the no-op's: ${fmt(me.p50 / noop.p50, 2)} x, ${mark(me.p50 <= CPU_GOALS.meP50OverNoop * noop.p50)}`,
  ].join("\n");
}
