// The console delivery providers: with EMAIL_PROVIDER/SMS_PROVIDER=console the code is printed to the dev server's
// log (`console-delivery channel=... to=... code=...`) instead of being sent, and it logs the test user in.
// The same dev server runs with low per-IP limits to check the rate limiting by CF-Connecting-IP.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { randomBytes } from "node:crypto";

import { PATHS, assertError, assertLogin, assertOtpSent, client, describeResponse } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, startWorker } from "./support/worker.mjs";

const T = { timeout: 120_000 };
let mock;
let worker;
let api;

function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const IP_SENDS = 3;
const IP_VERIFIES = 4;

describe("console delivery and per-IP limits", { timeout: 300_000 }, () => {
  before(async () => {
    // The real-provider endpoints point at the mock so that anything sent despite `console` would be seen.
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        EMAIL_PROVIDER: "console",
        SMS_PROVIDER: "console",
        // Each test below uses its own client IP, so these low limits only bite where a test means them to.
        RATE_LIMIT_IP_SENDS: String(IP_SENDS),
        RATE_LIMIT_IP_VERIFIES: String(IP_VERIFIES),
      },
    });
    api = client(worker.url);
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  for (const [channel, field, key] of [["email", "email", "email"], ["sms", "phone_number", "phone"]]) {
    test(`a code read from the wrangler dev log (channel=${channel}) logs the test user in`, T, async () => {
      const u = SEED.testUser;
      const ip = channel === "email" ? "192.0.2.10" : "192.0.2.11";
      const from = worker.logs().length;
      const gen = await api.post(PATHS.generate, { [field]: u[key] }, { ip });
      assertOtpSent(gen, { otpType: channel, contactInfo: u[key] });

      const re = new RegExp(`console-delivery channel=${channel} to=${escapeRe(u[key])} code=(\\d{6})(?!\\d)`);
      const m = await worker.waitForLog(re, 10_000, { from });
      const token = assertLogin(await api.post(PATHS.verify, { [field]: u[key], otp_code: m[1] }, { ip }), {
        ...u,
        groups: ["Employees"],
      });
      const me = await api.get(PATHS.me, { token, ip });
      assert.equal(me.status, 200, describeResponse(me));
      assert.ok(!worker.logs().includes(token), "the token appears in the log");
      assert.deepEqual(mock.requests, [], "nothing went to a real provider");
    });
  }

  test("the console provider prints nothing for a non-employee", T, async () => {
    const from = worker.logs().length;
    const gen = await api.post(PATHS.generate, { email: SEED.outsider.email }, { ip: "192.0.2.12" });
    assertOtpSent(gen, { otpType: "email", contactInfo: SEED.outsider.email });
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(!worker.logs().slice(from).includes("console-delivery"), `log since the request:\n${worker.logs().slice(from)}`);
  });

  test("code requests beyond RATE_LIMIT_IP_SENDS from one client IP get 429 rate_limited; another IP is unaffected", T, async () => {
    const ip = "192.0.2.50";
    const tag = randomBytes(3).toString("hex");
    for (let i = 0; i < IP_SENDS; i++) {
      const email = `ip.${tag}.${i}@example.com`;
      assertOtpSent(await api.post(PATHS.generate, { email }, { ip }), { otpType: "email", contactInfo: email });
    }
    const over = await api.post(PATHS.generate, { email: `ip.${tag}.over@example.com` }, { ip });
    assertError(over, 429, "rate_limited");
    assertError(await api.post(PATHS.resend, { email: `ip.${tag}.over2@example.com` }, { ip }), 429, "rate_limited");
    const elsewhere = `ip.${tag}.elsewhere@example.com`;
    assertOtpSent(await api.post(PATHS.generate, { email: elsewhere }, { ip: "192.0.2.51" }), {
      otpType: "email",
      contactInfo: elsewhere,
    });
  });

  test("verifications beyond RATE_LIMIT_IP_VERIFIES from one client IP get 429 rate_limited", T, async () => {
    const ip = "192.0.2.60";
    const tag = randomBytes(3).toString("hex");
    for (let i = 0; i < IP_VERIFIES; i++) {
      const res = await api.post(PATHS.verify, { email: `v.${tag}.${i}@example.com`, otp_code: "123456" }, { ip });
      assertError(res, 400, "otp_invalid");
    }
    const over = await api.post(PATHS.verify, { email: `v.${tag}.over@example.com`, otp_code: "123456" }, { ip });
    assertError(over, 429, "rate_limited");
  });
});
