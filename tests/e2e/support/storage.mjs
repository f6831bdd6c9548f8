// Storage work per operation, as the worker counts it in its D1 and KV adapters when started with
// STORAGE_METRICS=1: the `X-Storage-Ops` header holds the work done before the answer, and a log line
// `storage-ops after-response route=<route> ...` the work deferred with waitUntil (delivery, audit rows).
//
//   const steps = await measureLogin(worker, mock, "employee01@example.com");
//   steps.map((s) => s.op)  -> ["generate-otp", "verify-otp", "me", "logout"]
//   formatStorageTable(steps)

import assert from "node:assert/strict";

import { PATHS, call, describeResponse } from "./api.mjs";

export const FIELDS = Object.freeze([
  "kv_reads",
  "kv_writes",
  "kv_deletes",
  "d1_round_trips",
  "d1_statements",
  "d1_rows_read",
  "d1_rows_written",
]);

const ZERO = Object.freeze(Object.fromEntries(FIELDS.map((f) => [f, 0])));
const AFTER_RESPONSE_TIMEOUT_MS = 20_000;

/** Parses `kv_reads=1 kv_writes=0 ...`; every field must be present. */
export function parseOps(text) {
  const ops = {};
  for (const [, key, value] of String(text).matchAll(/([a-z0-9_]+)=(\d+)/g)) ops[key] = Number(value);
  for (const f of FIELDS) assert.ok(Number.isInteger(ops[f]), `storage figure ${f} in ${JSON.stringify(text)}`);
  return ops;
}

/** The response path's storage work, from the answer's `X-Storage-Ops` header. */
export function responseOps(res) {
  const header = res.headers.get("x-storage-ops");
  assert.ok(header, `X-Storage-Ops header (is STORAGE_METRICS=1 set?): ${describeResponse(res)}`);
  return parseOps(header);
}

export function addOps(a, b) {
  return Object.fromEntries(FIELDS.map((f) => [f, a[f] + b[f]]));
}

export const kvOps = (ops) => ops.kv_reads + ops.kv_writes + ops.kv_deletes;

function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function afterResponseOps(worker, route, from) {
  const re = new RegExp(`storage-ops after-response route=${escapeRe(route)} ([^\\n]*)`);
  const m = await worker.waitForLog(re, AFTER_RESPONSE_TIMEOUT_MS, { from });
  return parseOps(m[1]);
}

/**
 * One whole login by email, one request at a time, with the storage work of each step: generate-otp, verify-otp
 * (with the code the mock provider received), me/, refresh and logout. Returns
 * [{ op, response: ops, after: ops, status }], `after` being the work deferred past the answer.
 */
export async function measureLogin(worker, mock, email, { ip = "198.51.100.77" } = {}) {
  const steps = [];
  const step = async (op, route, method, path, options, { deferred }) => {
    const from = worker.logs().length;
    const res = await call(worker.url, method, path, { ip, ...options });
    assert.equal(res.status, 200, describeResponse(res));
    const after = deferred ? await afterResponseOps(worker, route, from) : { ...ZERO };
    steps.push({ op, response: responseOps(res), after, status: res.status });
    return res;
  };

  const since = Date.now();
  await step("generate-otp", "generate-otp", "POST", PATHS.generate, { json: { email } }, { deferred: true });
  const message = await mock.waitForMessage(email, AFTER_RESPONSE_TIMEOUT_MS, { since });
  const verified = await step(
    "verify-otp",
    "verify-otp",
    "POST",
    PATHS.verify,
    { json: { email, otp_code: message.code } },
    { deferred: true },
  );
  assert.ok(verified.body?.token, describeResponse(verified));
  // me/ defers nothing: it has no waitUntil, so there is no after-response line to wait for.
  await step("me (authenticated)", "me", "GET", PATHS.me, { token: verified.body.token }, { deferred: false });
  const refreshed = await step(
    "refresh",
    "refresh",
    "POST",
    PATHS.refresh,
    { json: { refresh_token: verified.body.refresh_token } },
    { deferred: true },
  );
  await step("logout", "logout", "POST", PATHS.logout, { token: refreshed.body.token }, { deferred: true });
  return steps;
}

/** The login flow's totals: generate-otp and verify-otp, on the response path and overall. */
export function loginFlowTotals(steps) {
  const flow = steps.filter((s) => s.op === "generate-otp" || s.op === "verify-otp");
  assert.equal(flow.length, 2, "a login flow is one generate-otp and one verify-otp");
  const response = flow.reduce((acc, s) => addOps(acc, s.response), { ...ZERO });
  const after = flow.reduce((acc, s) => addOps(acc, s.after), { ...ZERO });
  return { response, after, total: addOps(response, after) };
}

/** A plain-text table: one row per step, response path / after the response, plus the login flow's total. */
export function formatStorageTable(steps) {
  const cols = [
    ["KV reads", "kv_reads"],
    ["KV writes", "kv_writes"],
    ["KV deletes", "kv_deletes"],
    ["D1 round trips", "d1_round_trips"],
    ["D1 statements", "d1_statements"],
    ["D1 rows read", "d1_rows_read"],
    ["D1 rows written", "d1_rows_written"],
  ];
  const flow = loginFlowTotals(steps);
  const rows = [
    ...steps.map((s) => [s.op, s.response, s.after]),
    ["login flow (generate + verify)", flow.response, flow.after],
  ];
  const header = ["operation (response path / after response)", ...cols.map(([label]) => label)];
  const body = rows.map(([op, r, a]) => [op, ...cols.map(([, key]) => `${r[key]} / ${a[key]}`)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), ...body.map(line)].join("\n");
}
