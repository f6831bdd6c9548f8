// `npm run scaling`: how far one D1 database carries this service, from figures measured on this machine plus
// published limits. Prints the D1 primary time one login costs, the logins per second one database can take, the
// KV and D1 plan limits that apply, the latency a user sees as a function of their distance to the D1 primary, and
// the location hint to choose. docs/SCALING.md quotes a run and says what to do when one database is not enough.
//
// Measured here, on every run (nothing below is a hard-coded count):
// - the storage work of a whole login (generate-otp + verify-otp) as the Worker's own D1 and KV adapters count it
//   (STORAGE_METRICS=1, tests/e2e/support/storage.mjs): D1 statements, D1 round trips before and after the answers,
//   rows read and written, KV operations;
// - the time one D1 statement takes in local D1 under wrangler dev (SQLite in workerd): D1 round trips of 1 and of
//   STATEMENTS_BIG statements from the no-op Worker (bench/noop, /d1-timing), one after another; the extra time per
//   extra statement is the statement's time, the round trip's own cost cancelled out. This is a LOCAL PROXY for the
//   time a statement holds Cloudflare's D1 primary: the same SQLite engine, on this machine's CPU, without D1's
//   durability and replication work. The statements are /replay's mix (an upsert and a read by primary key, on a
//   small table), not the login's own statements.
//
// Knobs (environment): SCALING_TRIPS (200 round trips per size), SCALING_USERS (how the users are spread over the
// regions of the RTT table, e.g. "enam=60,weur=40"; the default spreads them evenly), E2E_SKIP_BUILD=1.
// Only 127.0.0.1.

import { performance } from "node:perf_hooks";

import { startMockProviders } from "../tests/e2e/support/mock-providers.mjs";
import { loginFlowTotals, measureLogin } from "../tests/e2e/support/storage.mjs";
import { SEED, ensureBuilt, startWorker } from "../tests/e2e/support/worker.mjs";
import { startNoop } from "./noop.mjs";
import { positiveInt, serviceVars } from "./support.mjs";

const TRIPS = positiveInt("SCALING_TRIPS", 200);
const STATEMENTS_BIG = 21;

// ---- published figures: every constant the model uses that was not measured here ----------------------------------
//
// Cloudflare's figures are from its developer documentation (developers.cloudflare.com) as published in 2025, page by
// page as named below; plans and limits change, so check the page before relying on one.
const PUBLISHED = Object.freeze({
  d1: {
    // D1 "Limits" page: each database is single-threaded and runs its queries one at a time, so its throughput is
    // about 1 / (average query time): "1 ms per query, about 1,000 queries per second".
    singleThreaded: true,
    // D1 "Limits" page.
    maxDatabaseGb: { free: 0.5, paid: 10 },
    databasesPerAccount: { free: 10, paid: 50_000 },
    queriesPerInvocation: { free: 50, paid: 1_000 },
    // D1 "Pricing" page: the Free plan's daily allowance (no overage: queries fail until the next UTC day) and the
    // Paid plan's monthly inclusion (then billed per million rows).
    rowsReadPerDay: { free: 5_000_000 },
    rowsWrittenPerDay: { free: 100_000 },
    rowsReadPerMonthIncluded: { paid: 25_000_000_000 },
    rowsWrittenPerMonthIncluded: { paid: 50_000_000 },
    // D1 "Data location" page: the location hints a new database's primary can be placed with.
    locationHints: ["wnam", "enam", "weur", "eeur", "apac", "oc"],
  },
  kv: {
    // KV "Limits" page: writes to the same key, 1 per second; the Free plan's daily operations.
    writesPerSecondPerKey: 1,
    readsPerDay: { free: 100_000, paid: Infinity },
    writesPerDay: { free: 1_000, paid: Infinity },
    deletesPerDay: { free: 1_000, paid: Infinity },
    // KV "Pricing" page: the Paid plan's monthly inclusion (then billed per million).
    readsPerMonthIncluded: { paid: 10_000_000 },
    writesPerMonthIncluded: { paid: 1_000_000 },
  },
  workers: {
    // Workers "Limits" page: CPU time per invocation.
    cpuMsPerInvocation: { free: 10, paid: 30_000 },
  },
});

// Round-trip times between regions, ms: the median RTTs Microsoft publishes for its own backbone between Azure
// regions ("Azure network round-trip latency statistics", learn.microsoft.com, updated monthly), rounded to 5 ms,
// as recalled, not fetched (this machine is offline): check the page before relying on one. They stand in for the
// path from the Cloudflare location that runs the Worker, near the user, to the D1 primary. Each region is named by
// the D1 location hint that places a primary there (apac: Singapore; oc: Sydney) or, where D1 has none, by a name
// of its own. Within one region this model assumes 10 ms: an assumption, not a published figure.
const RTT_SOURCE = "median RTT between Azure regions as Microsoft publishes them, rounded to 5 ms; 10 ms within a region (assumed)";
const REGIONS = Object.freeze({
  wnam: "West US (California)",
  enam: "East US (Virginia)",
  weur: "West Europe (Netherlands)",
  apac: "Southeast Asia (Singapore)",
  oc: "Australia East (Sydney)",
  sam: "Brazil South (São Paulo), no D1 hint",
  ind: "Central India (Pune), no D1 hint",
});
const SAME_REGION_MS = 10;
const RTT_MS = Object.freeze({
  "wnam-enam": 65,
  "wnam-weur": 140,
  "wnam-apac": 170,
  "wnam-oc": 140,
  "wnam-sam": 175,
  "wnam-ind": 220,
  "enam-weur": 80,
  "enam-apac": 215,
  "enam-oc": 200,
  "enam-sam": 120,
  "enam-ind": 200,
  "weur-apac": 155,
  "weur-oc": 245,
  "weur-sam": 185,
  "weur-ind": 125,
  "apac-oc": 90,
  "apac-sam": 325,
  "apac-ind": 60,
  "oc-sam": 310,
  "oc-ind": 150,
  "sam-ind": 300,
});
const rtt = (a, b) => (a === b ? SAME_REGION_MS : RTT_MS[`${a}-${b}`] ?? RTT_MS[`${b}-${a}`]);

// ---- measurements -------------------------------------------------------------------------------------------------

async function timing(noop, statements) {
  const res = await fetch(`${noop.url}/d1-timing?trips=${TRIPS}&statements=${statements}`, { signal: AbortSignal.timeout(120_000) });
  if (!res.ok) throw new Error(`/d1-timing answered ${res.status}`);
  return res.json();
}

/** Per-statement and per-round-trip time of local D1, from trips of 1 and of STATEMENTS_BIG statements. */
async function measureStatementTime(noop) {
  const init = await fetch(`${noop.url}/replay-init`, { signal: AbortSignal.timeout(30_000) });
  await init.arrayBuffer();
  await timing(noop, 1); // warm-up
  // Alternating, three times each: a shared machine's speed drifts; the medians are taken.
  const small = [];
  const big = [];
  for (let i = 0; i < 3; i++) {
    small.push(await timing(noop, 1));
    big.push(await timing(noop, STATEMENTS_BIG));
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const tripMs = median(small.map((r) => r.elapsedMs / r.trips));
  const bigTripMs = median(big.map((r) => r.elapsedMs / r.trips));
  const statementMs = Math.max(0, (bigTripMs - tripMs) / (STATEMENTS_BIG - 1));
  const sqlMs = median(big.map((r) => r.sqlMs / (r.trips * r.statements)));
  return { tripMs, bigTripMs, statementMs, sqlMs };
}

// ---- report -------------------------------------------------------------------------------------------------------

const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "unlimited");
const whole = (n) => (Number.isFinite(n) ? Math.floor(n).toLocaleString("en-US") : "unlimited");

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join("  ")).join("\n");
}

function userWeights() {
  const raw = process.env.SCALING_USERS;
  const regions = Object.keys(REGIONS);
  if (!raw) return Object.fromEntries(regions.map((r) => [r, 1 / regions.length]));
  const weights = {};
  for (const part of raw.split(",")) {
    const [region, share] = part.split("=").map((x) => x.trim());
    if (!REGIONS[region] || !(Number(share) >= 0)) throw new Error(`SCALING_USERS: ${part} (regions: ${regions.join(", ")})`);
    weights[region] = Number(share);
  }
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  if (!(total > 0)) throw new Error("SCALING_USERS: the shares add up to 0");
  return Object.fromEntries(Object.entries(weights).map(([r, w]) => [r, w / total]));
}

function report(flow, stepsAll, d1) {
  const { response, after, total } = flow;
  const out = [];
  const say = (line = "") => out.push(line);

  say("measured: one login (generate-otp + verify-otp), as the Worker's adapters count it (STORAGE_METRICS=1):");
  say(`  D1: ${total.d1_statements} statements in ${total.d1_round_trips} round trips (${response.d1_round_trips} before the answers, ` +
    `${after.d1_round_trips} after them); ${total.d1_rows_read} rows read, ${total.d1_rows_written} rows written`);
  say(`  KV: ${total.kv_reads} reads, ${total.kv_writes} writes, ${total.kv_deletes} deletes`);
  const me = stepsAll.find((s) => s.op === "me (authenticated)");
  say(`  an authenticated call (me/): ${me.response.kv_reads} KV read, ${me.response.d1_round_trips} D1 round trips`);
  say("measured: local D1 under wrangler dev (SQLite in workerd, this machine), the no-op Worker's /d1-timing:");
  say(`  one round trip of 1 statement: ${fmt(d1.tripMs, 2)} ms; of ${STATEMENTS_BIG} statements: ${fmt(d1.bigTripMs, 2)} ms ` +
    `(${TRIPS} trips each, median of 3)`);
  say(`  one statement: ${fmt(d1.statementMs, 3)} ms with local D1's own handling of it (the difference per extra statement); ` +
    `its SQL alone, as D1 reports it (meta.duration): ${fmt(d1.sqlMs, 3)} ms`);
  say("  (LOCAL PROXIES for the time a statement holds the D1 primary: the same SQLite on this machine, without D1's");
  say("  durability and replication work, and /replay's small statements rather than the login's own)");

  const primaryMs = total.d1_statements * d1.statementMs;
  const sqlOnlyMs = total.d1_statements * d1.sqlMs;
  const loginsPerSecond = 1000 / primaryMs;
  say();
  say("one D1 database (single-threaded: it runs one query at a time):");
  say(`  D1 primary time per login: ${total.d1_statements} statements x ${fmt(d1.statementMs, 3)} ms = ${fmt(primaryMs, 2)} ms ` +
    `(SQL alone: ${fmt(sqlOnlyMs, 2)} ms)`);
  say(`  logins per second one database can take: 1000 / ${fmt(primaryMs, 2)} = ${whole(loginsPerSecond)} ` +
    `(at 50% busy, to keep queues short: ${whole(loginsPerSecond / 2)}; from the SQL alone: ${whole(1000 / sqlOnlyMs)})`);
  say(`  per day at ${whole(loginsPerSecond)}/s: ${whole(loginsPerSecond * 86_400)} logins; per hour at 50% busy: ${whole((loginsPerSecond / 2) * 3600)}`);

  const perDay = (limit, perLogin) => (perLogin > 0 ? limit / perLogin : Infinity);
  say();
  say("plan limits that bind first (logins per day, from the counts above; published limits, see the script):");
  const rows = [["limit", "Free plan, per day", "Paid plan, per day (monthly inclusion / 30)"]];
  rows.push([`D1 rows written (${total.d1_rows_written}/login)`, whole(perDay(PUBLISHED.d1.rowsWrittenPerDay.free, total.d1_rows_written)),
    `${whole(perDay(PUBLISHED.d1.rowsWrittenPerMonthIncluded.paid / 30, total.d1_rows_written))} included, then billed`]);
  rows.push([`D1 rows read (${total.d1_rows_read}/login)`, whole(perDay(PUBLISHED.d1.rowsReadPerDay.free, total.d1_rows_read)),
    `${whole(perDay(PUBLISHED.d1.rowsReadPerMonthIncluded.paid / 30, total.d1_rows_read))} included, then billed`]);
  rows.push([`KV writes (${total.kv_writes}/login)`, whole(perDay(PUBLISHED.kv.writesPerDay.free, total.kv_writes)),
    `${whole(perDay(PUBLISHED.kv.writesPerMonthIncluded.paid / 30, total.kv_writes))} included, then billed`]);
  rows.push([`KV reads (${me.response.kv_reads} per me/ call)`, `${whole(perDay(PUBLISHED.kv.readsPerDay.free, me.response.kv_reads))} calls`,
    `${whole(perDay(PUBLISHED.kv.readsPerMonthIncluded.paid / 30, me.response.kv_reads))} calls included, then billed`]);
  rows.push([`D1 queries per invocation (${Math.max(...stepsAll.map((s) => s.response.d1_statements + s.after.d1_statements))} at most)`,
    `${PUBLISHED.d1.queriesPerInvocation.free} allowed`, `${PUBLISHED.d1.queriesPerInvocation.paid} allowed`]);
  say(table(rows).split("\n").map((l) => `  ${l}`).join("\n"));
  say(`  KV allows ${PUBLISHED.kv.writesPerSecondPerKey} write per second to one key; a login's KV write is its new access token, ` +
    "under a key of its own (session:<digest>), so no key is written twice a second.");
  say(`  Workers CPU per invocation: ${PUBLISHED.workers.cpuMsPerInvocation.free} ms (Free), ${PUBLISHED.workers.cpuMsPerInvocation.paid / 1000} s (Paid)`);

  const trips = response.d1_round_trips;
  const statementsBefore = response.d1_statements;
  const hints = PUBLISHED.d1.locationHints.filter((h) => REGIONS[h]);
  const users = Object.keys(REGIONS);
  const wait = (user, primary) => trips * rtt(user, primary) + statementsBefore * d1.statementMs;
  say();
  say(`D1 wait a user's login adds (generate + verify: ${trips} round trips to the primary before the answers x RTT, ` +
    `+ ${statementsBefore} statements x ${fmt(d1.statementMs, 3)} ms), ms, by where the user is (rows) and the primary (columns):`);
  const matrix = [["user \\ primary", ...hints]];
  for (const u of users) matrix.push([`${u}: ${REGIONS[u]}`, ...hints.map((h) => whole(wait(u, h)))]);
  say(table(matrix).split("\n").map((l) => `  ${l}`).join("\n"));
  say(`  RTT: ${RTT_SOURCE}`);

  const weights = userWeights();
  const mean = (h) => Object.entries(weights).reduce((acc, [u, w]) => acc + w * wait(u, h), 0);
  const worst = (h) => Math.max(...Object.entries(weights).filter(([, w]) => w > 0).map(([u]) => wait(u, h)));
  const ranked = hints.map((h) => ({ h, mean: mean(h), worst: worst(h) })).sort((a, b) => a.mean - b.mean);
  say();
  say(`location hint, for users spread ${Object.entries(weights).map(([u, w]) => `${u} ${fmt(w * 100, 0)}%`).join(", ")} ` +
    `(SCALING_USERS to change):`);
  for (const r of ranked) say(`  ${r.h.padEnd(5)} mean ${whole(r.mean)} ms, worst ${whole(r.worst)} ms`);
  say(`  choose: ${ranked[0].h} (lowest mean D1 wait per login); with most users in one region, that region's hint.`);
  return out.join("\n");
}

async function main() {
  const started = performance.now();
  await ensureBuilt();
  const mock = await startMockProviders();
  const cleanup = [() => mock.close()];
  try {
    const worker = await startWorker({ vars: serviceVars(mock, { STORAGE_METRICS: "1" }) });
    cleanup.push(() => worker.stop());
    const steps = await measureLogin(worker, mock, SEED.employees[0].email);
    await worker.stop();
    const noop = await startNoop();
    cleanup.push(() => noop.stop());
    const d1 = await measureStatementTime(noop);
    console.log(report(loginFlowTotals(steps), steps, d1));
    console.log(`\n(${((performance.now() - started) / 1000).toFixed(0)} s; rerun: npm run scaling)`);
  } finally {
    for (const stop of cleanup.reverse()) await Promise.resolve().then(stop).catch(() => {});
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
