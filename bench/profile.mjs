// `npm run profile -- <scenario>`: a V8 CPU profile of the Worker's isolate while autocannon drives one scenario,
// for finding where a request's CPU time goes (the benchmark says how much, this says where).
//
//   npm run profile -- me          # or: generate, verify, 404
//
// Builds the worker with the wasm name section kept (KEEP_WASM_NAMES=1, so the Rust functions have names; the
// bundle is larger than the deployed one), starts it the way the benchmark does, connects to the Worker's inspector
// through wrangler dev's inspector proxy, and samples every 100 µs for BENCH_DURATION_SECONDS (10). Writes
// target/profile-<scenario>.cpuprofile (open it in Chrome DevTools' Performance panel or https://www.speedscope.app)
// and prints the functions with the most time, inclusive of what they call. Times are wall-clock time between
// samples while the isolate ran, so on a loaded machine they also hold waits for a core: compare them with each
// other, not with the benchmark's CPU figures. Only 127.0.0.1.

import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import autocannon from "autocannon";

import { PATHS } from "../tests/e2e/support/api.mjs";
import { startMockProviders } from "../tests/e2e/support/mock-providers.mjs";
import { ROOT, startWorker } from "../tests/e2e/support/worker.mjs";
import { WORKER_NAME, benchEmail, benchEmployeesSql, inspect, positiveInt, serviceVars } from "./support.mjs";

const SCENARIOS = ["me", "generate", "verify", "404"];
const scenario = process.argv[2] ?? "me";
if (!SCENARIOS.includes(scenario)) throw new Error(`scenario must be one of ${SCENARIOS.join(", ")}, not ${scenario}`);
const DURATION_S = positiveInt("BENCH_DURATION_SECONDS", 10);
const CONNECTIONS = positiveInt("BENCH_CONNECTIONS", 16);
const EMPLOYEES = 2000;
const TOP = 40;
const JSON_HEADERS = Object.freeze({ "content-type": "application/json", "cf-connecting-ip": "198.51.100.200" });

/** Logs `n` employees in through the mock provider; their access tokens. */
async function logIn(worker, mock, n) {
  const tokens = [];
  for (let i = 1; i <= n; i++) {
    const email = benchEmail(EMPLOYEES - i + 1);
    const since = Date.now();
    const sent = await fetch(worker.url + PATHS.generate, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ email }) });
    await sent.arrayBuffer();
    const { code } = await mock.waitForMessage(email, 15_000, { since });
    const res = await fetch(worker.url + PATHS.verify, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ email, otp_code: code }) });
    const body = await res.json();
    if (!body.token) throw new Error(`could not log ${email} in: ${res.status} ${JSON.stringify(body)}`);
    tokens.push(body.token);
  }
  return tokens;
}

/** The load for a scenario: autocannon's request list. */
function requests(tokens, codes) {
  let next = 0;
  switch (scenario) {
    case "me":
      return [{ method: "GET", path: PATHS.me, setupRequest: (r) => ({ ...r, headers: { authorization: `Token ${tokens[next++ % tokens.length]}` } }) }];
    case "generate":
      return [{ method: "POST", path: PATHS.generate, headers: JSON_HEADERS, setupRequest: (r) => ({ ...r, body: JSON.stringify({ email: benchEmail((next++ % (EMPLOYEES - 100)) + 1) }) }) }];
    case "verify":
      // Wrong codes for employees in rotation: each guess is counted and refused, as an attacker's would be.
      return [{ method: "POST", path: PATHS.verify, headers: JSON_HEADERS, setupRequest: (r) => ({ ...r, body: JSON.stringify({ email: benchEmail((next++ % (EMPLOYEES - 100)) + 1), otp_code: codes() }) }) }];
    default:
      return [{ method: "GET", path: "/auth/api/mobile/nothing/" }];
  }
}

/** Inclusive time per function (a function counted once per sample however deep it recurses), largest first. */
function hotFunctions(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const leaf = byId.get(profile.samples[i]).callFrame.functionName;
    if (leaf === "(idle)") continue;
    total += dt;
    const seen = new Set();
    for (let nid = profile.samples[i]; nid !== undefined; nid = parent.get(nid)) {
      const { functionName, url, lineNumber } = byId.get(nid).callFrame;
      if (functionName === "(root)") continue;
      const name = `${(functionName || "(anonymous)").replace(/::h[0-9a-f]{16}/g, "")} ${url ? `${url.split("/").pop()}:${lineNumber + 1}` : ""}`;
      if (!seen.has(name)) {
        seen.add(name);
        inclusive.set(name, (inclusive.get(name) ?? 0) + dt);
      }
    }
  }
  return { total, top: [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, TOP) };
}

async function main() {
  process.env.KEEP_WASM_NAMES = "1";
  const mock = await startMockProviders();
  let worker;
  try {
    worker = await startWorker({ vars: serviceVars(mock), sql: benchEmployeesSql(EMPLOYEES), devArgs: ["--log-level", "warn"] });
    const tokens = scenario === "me" ? await logIn(worker, mock, 50) : [];
    const codes = () => String(Math.floor(Math.random() * 1e6)).padStart(6, "0");
    const load = (duration) =>
      new Promise((resolve, reject) =>
        autocannon({ url: worker.url, connections: CONNECTIONS, duration, requests: requests(tokens, codes) }, (e, r) => (e ? reject(e) : resolve(r))),
      );
    await load(2); // warm-up: JIT and wasm tier-up before sampling

    const inspector = await inspect(worker.inspectorPort, WORKER_NAME);
    await inspector.call("Profiler.enable");
    await inspector.call("Profiler.setSamplingInterval", { interval: 100 });
    await inspector.call("Profiler.start");
    const result = await load(DURATION_S);
    const { profile } = await inspector.call("Profiler.stop");
    inspector.close();

    const out = path.join(ROOT, "target", `profile-${scenario}.cpuprofile`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(profile));
    const requestsDone = result["1xx"] + result["2xx"] + result["3xx"] + result["4xx"] + result["5xx"];
    const { total, top } = hotFunctions(profile);
    console.log(`${scenario}: ${requestsDone} requests in ${result.duration} s (${result["2xx"]} 2xx); profile: ${path.relative(ROOT, out)}`);
    console.log(`isolate busy ${(total / 1000).toFixed(0)} ms; inclusive time per function (ms, share of busy time):`);
    for (const [name, us] of top) console.log(`${(us / 1000).toFixed(0).padStart(8)}  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${name.slice(0, 150)}`);
    console.log("build/ holds a build with the wasm name section; the next npm test or npm start builds the deployed one.");
  } finally {
    await worker?.stop();
    await mock.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
