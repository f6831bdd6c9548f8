// Test identifiers (app-store review, QA): declared with a fixed code in TEST_LOGINS, they log in with that code
// and are never sent anything, while every other rule holds (employee in D1, one-time use, lockout). The first
// worker runs as a production deployment opened for an app-store review (ENVIRONMENT=production with the explicit
// TEST_LOGINS_IN_PRODUCTION=allow and a near expiry); the second shows the guard: a production deployment without
// the opt-in refuses to run with test identifiers.

import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { PATHS, assertError, assertLogin, assertMockClean, assertOtpSent, client, describeResponse, eventually, sleep, withoutEcho } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, loginEventsFor, startWorker } from "./support/worker.mjs";

const T = { timeout: 120_000 };
const REVIEWER = SEED.employees[12];
const QA_PHONE = SEED.employees[13];
const LOCKED = SEED.employees[14];
const CODES = { reviewer: "246810", qaPhone: "135792", locked: "864209", outsider: "112358" };

function daysAhead(days) {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

const TEST_LOGINS = [
  `${REVIEWER.email}=${CODES.reviewer}`,
  `${QA_PHONE.phone}=${CODES.qaPhone}`,
  `${LOCKED.email}=${CODES.locked}`,
  `${SEED.outsider.email}=${CODES.outsider}`,
].join(",");

/** Waits until the n-th code request for the account with this email has been handled (its code is stored). */
async function handled(worker, email, n) {
  await eventually(async () => {
    const rows = await loginEventsFor(worker, email);
    return rows.filter((r) => r.event === "code_requested").length >= n;
  }, `${n} code request(s) handled for ${email}`);
}

async function filesUnder(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

describe("test identifiers in a production deployment opened for an app-store review", { timeout: 600_000 }, () => {
  let mock;
  let worker;
  let api;
  let logFrom = 0;
  const startedAt = Date.now();

  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        ENVIRONMENT: "production",
        EMAIL_PROVIDER: "resend",
        SMS_PROVIDER: "twilio",
        OTP_RESEND_COOLDOWN_SECONDS: "1",
        TEST_LOGINS,
        TEST_LOGINS_EXPIRE: daysAhead(10),
        TEST_LOGINS_IN_PRODUCTION: "allow",
      },
    });
    api = client(worker.url);
    // wrangler prints the vars it was started with; what matters is what the worker logs from here on.
    logFrom = worker.logs().length;
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("a test email logs in once with its fixed code, gets the usual answer, and is sent nothing", T, async () => {
    const ip = "192.0.2.60";
    const since = Date.now();
    const employee = SEED.employees[15];
    const real = await api.post(PATHS.generate, { email: employee.email }, { ip });
    const res = await api.post(PATHS.generate, { email: REVIEWER.email }, { ip });
    assertOtpSent(res, { otpType: "email", contactInfo: REVIEWER.email });
    assert.deepEqual(withoutEcho(res.body), withoutEcho(real.body), "a test identifier is answered like anyone");
    await mock.waitForMessage(employee.email, 10_000, { since });
    await mock.expectNoMessage(REVIEWER.email, 2500, { since });
    await handled(worker, REVIEWER.email, 1);

    const token = assertLogin(await api.post(PATHS.verify, { email: REVIEWER.email, otp_code: CODES.reviewer }, { ip }), { email: REVIEWER.email });
    assert.equal((await api.get(PATHS.me, { token, ip })).status, 200);
    assertError(await api.post(PATHS.verify, { email: REVIEWER.email, otp_code: CODES.reviewer }, { ip }), 400, "otp_invalid");

    // A new request makes the fixed code valid again, once.
    await sleep(2200);
    assertOtpSent(await api.post(PATHS.resend, { email: REVIEWER.email }, { ip }), { otpType: "email", contactInfo: REVIEWER.email });
    await handled(worker, REVIEWER.email, 2);
    assertLogin(await api.post(PATHS.verify, { email: REVIEWER.email, otp_code: CODES.reviewer }, { ip }), { email: REVIEWER.email });
    await mock.expectNoMessage(REVIEWER.email, 500, { since });

    const rows = await eventually(async () => {
      const r = await loginEventsFor(worker, REVIEWER.email);
      return r.filter((e) => e.event === "login").length >= 2 ? r : null;
    }, "two logins recorded");
    const requested = rows.filter((r) => r.event === "code_requested");
    assert.ok(requested.length >= 2 && requested.every((r) => r.detail === "test identifier: fixed code, nothing sent"), JSON.stringify(rows));
    assert.ok(!rows.some((r) => r.event === "code_sent" || r.event === "delivery_failed"), JSON.stringify(rows));
    assertMockClean(mock, startedAt);
  });

  test("a test phone number logs in by its fixed code and no SMS is sent", T, async () => {
    const ip = "192.0.2.61";
    const since = Date.now();
    assertOtpSent(await api.post(PATHS.generate, { phone_number: QA_PHONE.phone }, { ip }), { otpType: "sms", contactInfo: QA_PHONE.phone });
    await handled(worker, QA_PHONE.email, 1);
    assertLogin(await api.post(PATHS.verify, { phone_number: QA_PHONE.phone, otp_code: CODES.qaPhone }, { ip }), { email: QA_PHONE.email });
    await mock.expectNoMessage(QA_PHONE.phone, 1500, { since });
  });

  test("a declared identifier that is not an employee does not log in with the fixed code", T, async () => {
    const ip = "192.0.2.62";
    const since = Date.now();
    assertOtpSent(await api.post(PATHS.generate, { email: SEED.outsider.email }, { ip }), { otpType: "email", contactInfo: SEED.outsider.email });
    await handled(worker, SEED.outsider.email, 1);
    assertError(await api.post(PATHS.verify, { email: SEED.outsider.email, otp_code: CODES.outsider }, { ip }), 400, "otp_invalid");
    await mock.expectNoMessage(SEED.outsider.email, 1000, { since });
  });

  test("three wrong guesses lock a test identifier like any other, even against its fixed code", T, async () => {
    const ip = "192.0.2.63";
    assertOtpSent(await api.post(PATHS.generate, { email: LOCKED.email }, { ip }), { otpType: "email", contactInfo: LOCKED.email });
    await handled(worker, LOCKED.email, 1);
    for (const guess of ["000001", "000002"]) {
      assertError(await api.post(PATHS.verify, { email: LOCKED.email, otp_code: guess }, { ip }), 400, "otp_invalid");
    }
    const third = await api.post(PATHS.verify, { email: LOCKED.email, otp_code: "000003" }, { ip });
    assert.ok([400, 429].includes(third.status), describeResponse(third));
    assertError(await api.post(PATHS.verify, { email: LOCKED.email, otp_code: CODES.locked }, { ip }), 429, "otp_locked");
  });

  test("the fixed codes appear nowhere in the worker's log, D1 or the local KV state", T, async () => {
    const log = worker.logs().slice(logFrom);
    const leaks = (text) => Object.values(CODES).filter((c) => new RegExp(`(?<![0-9])${c}(?![0-9])`).test(text));
    assert.deepEqual(leaks(log), [], "a fixed code in the worker's log");
    const tables = (await worker.d1("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")).map((r) => r.name);
    const dump = {};
    for (const name of tables) dump[name] = await worker.d1(`SELECT * FROM "${name}"`);
    assert.deepEqual(leaks(JSON.stringify(dump)), [], "a fixed code in D1");
    for (const file of await filesUnder(worker.persistDir)) {
      const bytes = await readFile(file);
      assert.deepEqual(leaks(bytes.toString("latin1")), [], `a fixed code in ${file}`);
    }
  });
});

describe("the production guard", { timeout: 300_000 }, () => {
  let mock;
  let worker;

  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        ENVIRONMENT: "production",
        EMAIL_PROVIDER: "resend",
        SMS_PROVIDER: "twilio",
        TEST_LOGINS: `${REVIEWER.email}=${CODES.reviewer}`,
        TEST_LOGINS_EXPIRE: daysAhead(10),
      },
    });
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("a production deployment with test identifiers and no explicit opt-in refuses every request and says why", T, async () => {
    const from = worker.logs().length;
    const res = await client(worker.url).post(PATHS.generate, { email: REVIEWER.email }, { ip: "192.0.2.70" });
    assertError(res, 500, "internal_error");
    await worker.waitForLog(/TEST_LOGINS is refused unless ENVIRONMENT is development/, 10_000, { from });
    assert.ok(!worker.logs().slice(from).includes(CODES.reviewer), "the refusal does not repeat the code");
    await mock.expectNoMessage(REVIEWER.email, 1000);
  });
});
