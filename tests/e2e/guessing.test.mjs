// Guessing capped per account under wrangler dev: client networks (IPv4 per address, IPv6 per /64), one failure
// count for an account's email and phone, lockouts that grow, the Rate Limiting binding in front of D1, refusals in
// the audit trail, and a deployment that is not exactly `development` never printing a code.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { PATHS, assertError, assertOtpSent, client, eventually, sleep, wrongCode } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, startWorker } from "./support/worker.mjs";

const T = { timeout: 180_000 };
const IP_SENDS = 20;
const REFRESH = "/auth/api/mobile/refresh/";

let mock;
let worker;
let api;

describe("guessing capped per account, clients counted per network", { timeout: 600_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        // The default per-network send limit; every test below uses client addresses of its own.
        RATE_LIMIT_IP_SENDS: String(IP_SENDS),
        // A one-minute first lockout, so that waiting one out fits in a test.
        OTP_LOCKOUT_MINUTES: "1",
        STORAGE_METRICS: "1",
      },
    });
    api = client(worker.url);
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("30 code requests from 30 addresses of one IPv6 /64 meet the per-client limit; 30 IPv4 addresses do not", T, async () => {
    const statuses = [];
    for (let i = 0; i < 30; i++) {
      const res = await api.post(PATHS.generate, { email: `net64.${i}@example.com` }, { ip: `2001:db8:64:1::${(i + 1).toString(16)}` });
      statuses.push(res.status);
      if (i >= IP_SENDS) assertError(res, 429, "rate_limited");
    }
    assert.deepEqual(statuses, [...Array(IP_SENDS).fill(200), ...Array(30 - IP_SENDS).fill(429)]);

    for (let i = 0; i < 30; i++) {
      const email = `net4.${i}@example.com`;
      assertOtpSent(await api.post(PATHS.generate, { email }, { ip: `198.51.100.${i + 1}` }), { otpType: "email", contactInfo: email });
    }

    await eventually(async () => {
      const rows = await worker.d1(
        "SELECT count(*) AS n FROM login_events WHERE event = 'refused' AND ip LIKE '2001:db8:64:1::%' " +
          "AND detail = 'code request refused: client over its rate limit'",
      );
      return rows[0].n === 30 - IP_SENDS;
    }, "every refusal leaves an audit row");
  });

  test("locking the account by email also stops a correct code sent by phone", T, async () => {
    const u = SEED.employees[0];
    const ip = "203.0.113.30";
    let since = Date.now();
    await api.post(PATHS.generate, { phone_number: u.phone }, { ip });
    const sms = await mock.waitForMessage(u.phone, 10_000, { since });
    since = Date.now();
    await api.post(PATHS.generate, { email: u.email }, { ip });
    const mail = await mock.waitForMessage(u.email, 10_000, { since });

    assertError(await api.post(PATHS.verify, { email: u.email, otp_code: wrongCode(mail.code, 0) }, { ip }), 400, "otp_invalid");
    assertError(await api.post(PATHS.verify, { email: u.email, otp_code: wrongCode(mail.code, 1) }, { ip }), 400, "otp_invalid");
    const locked = await api.post(PATHS.verify, { email: u.email, otp_code: wrongCode(mail.code, 2) }, { ip });
    assertError(locked, 429, "otp_locked");

    const byPhone = await api.post(PATHS.verify, { phone_number: u.phone, otp_code: sms.code }, { ip });
    assertError(byPhone, 429, "otp_locked");
    const rows = await worker.d1(
      `SELECT g.failures FROM guess_counters g JOIN users u ON g.subject = 'user:' || u.id WHERE u.email = '${u.email}'`,
    );
    assert.deepEqual(rows, [{ failures: 3 }], "one count for the account, whatever the channel");
  });

  test("a second consecutive lockout is longer than the first, and a wait does not reset the count", T, async () => {
    const u = SEED.employees[1];
    const ip = "203.0.113.31";
    const lockOut = async () => {
      const since = Date.now();
      assertOtpSent(await api.post(PATHS.generate, { email: u.email }, { ip }), { otpType: "email", contactInfo: u.email });
      const { code } = await mock.waitForMessage(u.email, 10_000, { since });
      for (let i = 0; i < 2; i++) {
        assertError(await api.post(PATHS.verify, { email: u.email, otp_code: wrongCode(code, i) }, { ip }), 400, "otp_invalid");
      }
      const res = await api.post(PATHS.verify, { email: u.email, otp_code: wrongCode(code, 2) }, { ip });
      assertError(res, 429, "otp_locked");
      return Number(res.headers.get("retry-after"));
    };
    const first = await lockOut();
    assert.ok(first > 50 && first <= 60, `first lockout ${first} s`);
    await sleep((first + 1) * 1000);
    const second = await lockOut();
    assert.ok(second > 110 && second <= 120, `second lockout ${second} s, twice the first`);
    const refused = await api.post(PATHS.generate, { email: u.email }, { ip });
    assertError(refused, 429, "otp_locked");
    assert.ok(Number(refused.headers.get("retry-after")) > 100, "Retry-After tells the truth on a code request too");
  });

  test("the Rate Limiting binding turns a flood away before it reaches D1", T, async () => {
    // The binding counts in fixed 60 s windows: a flood that straddles a window's end is refused only once the
    // next window's 300 are spent, so the flood goes on until 20 are refused (at most two windows' worth).
    const statuses = new Map();
    let refusedStorage;
    let admittedBeforeRefusal;
    for (let i = 0; i < 640 && (statuses.get(429) ?? 0) < 20; i++) {
      const res = await api.post(REFRESH, { refresh_token: "a".repeat(64) }, { ip: `2001:db8:f100:d::${(i + 1).toString(16)}` });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 429) {
        assertError(res, 429, "rate_limited");
        assert.equal(res.headers.get("retry-after"), "60");
        refusedStorage = res.headers.get("x-storage-ops");
        admittedBeforeRefusal ??= statuses.get(401) ?? 0;
      }
    }
    assert.ok(admittedBeforeRefusal >= 290, `at least the first 300 reach the service: ${[...statuses]}`);
    assert.ok(statuses.get(429) >= 15, `the rest are refused: ${[...statuses]}`);
    assert.match(refusedStorage ?? "", /d1_round_trips=0\b/, "a refused request makes no D1 round trip");
    await eventually(async () => {
      const rows = await worker.d1(
        "SELECT count(*) AS n FROM login_events WHERE event = 'refused' AND detail = 'refresh refused: client over the edge rate limit'",
      );
      return rows[0].n >= 1;
    }, "the flood shows in the audit trail");
  });
});

describe("a deployment that is not exactly ENVIRONMENT=development", { timeout: 300_000 }, () => {
  let staging;
  before(async () => {
    staging = await startWorker({ vars: { ENVIRONMENT: "staging", EMAIL_PROVIDER: "console", SMS_PROVIDER: "console" } });
  });
  after(async () => {
    await staging?.stop();
  });

  test("ENVIRONMENT=staging with console delivery refuses to run and never prints a code", T, async () => {
    const from = staging.logs().length;
    const res = await client(staging.url).post(PATHS.generate, { email: SEED.testUser.email }, { ip: "192.0.2.90" });
    assertError(res, 500, "internal_error");
    await staging.waitForLog(/the console provider is refused unless ENVIRONMENT is development/, 10_000, { from });
    await sleep(1000);
    const log = staging.logs().slice(from);
    assert.doesNotMatch(log, /console-delivery/);
    assert.doesNotMatch(log, /code=\d{6}/);
  });
});
