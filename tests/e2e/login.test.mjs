// End-to-end login flows through the real worker under `wrangler dev`, delivering through the mock Resend and
// Twilio APIs. One dev server for the whole file; each test uses its own identifiers so locks and cooldowns of one
// test cannot leak into another.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, test } from "node:test";

import {
  assertError,
  assertLogin,
  assertMockClean,
  assertOtpSent,
  assertUser,
  client,
  describeResponse,
  eventually,
  PATHS,
  poll,
  sleep,
  withoutEcho,
  wrongCode,
} from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, loginEventsFor, startWorker } from "./support/worker.mjs";

const COOLDOWN_WAIT_MS = 2200; // OTP_RESEND_COOLDOWN_SECONDS is 1 here; allow for whole-second rounding.
const MESSAGE_TIMEOUT_MS = 10_000;
const T = { timeout: 120_000 };

let mock;
let worker;
let api;

let testStartedAt = 0;




describe("login flows with the Resend and Twilio APIs (mocked)", { timeout: 600_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        EMAIL_PROVIDER: "resend",
        SMS_PROVIDER: "twilio",
        OTP_RESEND_COOLDOWN_SECONDS: "1",
      },
    });
    api = client(worker.url);
  });

  beforeEach(() => {
    testStartedAt = Date.now();
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("an employee logs in by email through Resend, the token works on me/ and dies at logout (Token and Bearer)", T, async () => {
    const u = SEED.testUser;
    const ip = "203.0.113.10";
    const tokens = [];
    const codes = [];
    for (const scheme of ["Token", "Bearer"]) {
      if (scheme === "Bearer") await sleep(COOLDOWN_WAIT_MS);
      const since = Date.now();
      const gen = await api.post(PATHS.generate, { email: "Mobile.Test@Example.COM" }, { ip });
      assertOtpSent(gen, { otpType: "email", contactInfo: u.email });

      const msg = await mock.waitForMessage(u.email, MESSAGE_TIMEOUT_MS, { since });
      assert.equal(msg.provider, "resend");
      assert.equal(msg.from, mock.credentials.EMAIL_FROM);
      assert.match(msg.code ?? "", /^\d{6}$/, `a 6-digit code in the email text: ${JSON.stringify(msg.body)}`);
      if (msg.html !== null) assert.equal(msg.htmlCode, msg.code, "the HTML part carries the same code");
      codes.push(msg.code);

      const ver = await api.post(PATHS.verify, { email: u.email, otp_code: msg.code }, { ip });
      const token = assertLogin(ver, { ...u, groups: ["Employees"] });
      tokens.push(token);

      const me = await api.get(PATHS.me, { token, scheme, ip });
      assert.equal(me.status, 200, describeResponse(me));
      assertUser(me.body?.user, { ...u, groups: ["Employees"] });
      assert.deepEqual(me.body.user, ver.body.user, "me/ returns the same user as the login");

      const out = await api.post(PATHS.logout, undefined, { token, scheme, ip });
      assert.equal(out.status, 200, describeResponse(out));
      assert.equal(typeof out.body?.message, "string", describeResponse(out));

      assertError(await api.get(PATHS.me, { token, scheme, ip }), 401, "invalid_token");
      const again = await api.post(PATHS.logout, undefined, { token, scheme, ip });
      assertError(again, 401, "invalid_token");
      assert.ok(again.headers.get("www-authenticate"), "second logout carries WWW-Authenticate");
    }
    assert.notEqual(tokens[0], tokens[1], "each login gets a new token");

    // Codes and tokens never reach the log.
    const log = worker.logs();
    for (const t of tokens) assert.ok(!log.includes(t), "a token appears in the wrangler dev log");
    for (const c of codes) assert.ok(!log.includes(c), `the code ${c} appears in the wrangler dev log`);

    // The login events are in D1 (written after the response).
    const events = await eventually(async () => {
      const rows = await loginEventsFor(worker, u.email);
      const names = rows.map((r) => r.event);
      return names.filter((e) => e === "logout").length >= 2 ? rows : null;
    }, "two logout events recorded for the test user");
    const names = events.map((r) => r.event);
    for (const e of ["code_requested", "code_sent", "login", "logout"]) assert.ok(names.includes(e), `${e} in ${names}`);
    assert.equal(names.filter((e) => e === "login").length, 2, `two login events: ${names}`);
    const logText = JSON.stringify(events);
    for (const t of [...tokens, ...codes]) assert.ok(!logText.includes(t), "a code or token stored in login_events");
    assertMockClean(mock, testStartedAt);
  });

  test("an employee logs in by SMS through Twilio with +1234567890, also written as +1 (234) 567-890", T, async () => {
    const u = SEED.testUser;
    const ip = "203.0.113.11";
    const variants = [
      { generate: "+1 (234) 567-890", verify: "+1234567890" },
      { generate: "+1234567890", verify: "+1-234.567 890" },
    ];
    for (const [i, v] of variants.entries()) {
      if (i > 0) await sleep(COOLDOWN_WAIT_MS);
      const since = Date.now();
      const gen = await api.post(PATHS.generate, { phone_number: v.generate }, { ip });
      assertOtpSent(gen, { otpType: "sms", contactInfo: u.phone });

      const msg = await mock.waitForMessage(u.phone, MESSAGE_TIMEOUT_MS, { since });
      assert.equal(msg.provider, "twilio");
      assert.equal(msg.from, mock.credentials.TWILIO_FROM_NUMBER);
      assert.match(msg.code ?? "", /^\d{6}$/, `a 6-digit code in the SMS: ${JSON.stringify(msg.body)}`);

      const ver = await api.post(PATHS.verify, { phone_number: v.verify, otp_code: msg.code }, { ip });
      const token = assertLogin(ver, { ...u, groups: ["Employees"] });
      const me = await api.get(PATHS.me, { token, ip });
      assert.equal(me.status, 200, describeResponse(me));
      const out = await api.post(PATHS.logout, undefined, { token, ip });
      assert.equal(out.status, 200, describeResponse(out));
    }
    assertMockClean(mock, testStartedAt);
  });

  test("a non-employee, an inactive user and an unknown address get the same answer as an employee and nothing is sent", T, async () => {
    const employee = SEED.employees[0];
    const unknownEmail = `nobody.${randomBytes(4).toString("hex")}@example.com`;
    const unknownPhone = "+19995550" + String(100 + Math.floor(Math.random() * 800));
    const ip = "203.0.113.12";
    const channels = [
      {
        field: "email",
        otpType: "email",
        employee: employee.email,
        others: [SEED.outsider.email, SEED.former.email, unknownEmail],
      },
      {
        field: "phone_number",
        otpType: "sms",
        employee: employee.phone,
        others: [SEED.outsider.phone, SEED.former.phone, unknownPhone],
      },
    ];

    for (const ch of channels) {
      for (const path of [PATHS.generate, PATHS.resend]) {
        if (path === PATHS.resend) await sleep(COOLDOWN_WAIT_MS);
        const since = Date.now();
        const base = await api.post(path, { [ch.field]: ch.employee }, { ip });
        assertOtpSent(base, { otpType: ch.otpType, contactInfo: ch.employee });
        for (const other of ch.others) {
          const res = await api.post(path, { [ch.field]: other }, { ip });
          assert.equal(res.status, base.status, `${path} ${other}: ${describeResponse(res)}`);
          assertOtpSent(res, { otpType: ch.otpType, contactInfo: other });
          assert.deepEqual(withoutEcho(res.body), withoutEcho(base.body), `${path} for ${other} answers like for an employee`);
          assert.equal(res.headers.get("content-type"), base.headers.get("content-type"));
        }
        await mock.waitForMessage(ch.employee, MESSAGE_TIMEOUT_MS, { since });
        await Promise.all(ch.others.map((o) => mock.expectNoMessage(o, 2500, { since })));
      }

      // Verifying behaves as for a real user: a wrong code is otp_invalid with attempts_remaining. Failures are
      // counted per account, across its email and phone; so that every identifier here starts from the same count,
      // the counts the email round left are cleared before the phone round (as a successful login would).
      if (ch.field === "phone_number") await worker.d1("DELETE FROM guess_counters");
      const code = mock.messagesTo(ch.employee).at(-1).code;
      const guess = wrongCode(code);
      const base = await api.post(PATHS.verify, { [ch.field]: ch.employee, otp_code: guess }, { ip });
      const baseErr = assertError(base, 400, "otp_invalid");
      assert.ok(Number.isInteger(baseErr.attempts_remaining), `attempts_remaining: ${describeResponse(base)}`);
      for (const other of ch.others) {
        const res = await api.post(PATHS.verify, { [ch.field]: other, otp_code: guess }, { ip });
        assertError(res, 400, "otp_invalid");
        assert.deepEqual(res.body, base.body, `verify for ${other} answers like for an employee`);
      }
    }
    assertMockClean(mock, testStartedAt);
  });

  test("resend never resets the failure count: two wrong guesses, a resend and one more wrong guess lock the identifier", T, async () => {
    const e = SEED.employees[1];
    const ip = "203.0.113.13";
    let since = Date.now();
    assertOtpSent(await api.post(PATHS.generate, { email: e.email }, { ip }), { otpType: "email", contactInfo: e.email });
    const first = await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });

    const r1 = await api.post(PATHS.verify, { email: e.email, otp_code: wrongCode(first.code, 0) }, { ip });
    assert.equal(assertError(r1, 400, "otp_invalid").attempts_remaining, 2, describeResponse(r1));
    const r2 = await api.post(PATHS.verify, { email: e.email, otp_code: wrongCode(first.code, 1) }, { ip });
    assert.equal(assertError(r2, 400, "otp_invalid").attempts_remaining, 1, describeResponse(r2));

    await sleep(COOLDOWN_WAIT_MS);
    since = Date.now();
    assertOtpSent(await api.post(PATHS.resend, { email: e.email }, { ip }), { otpType: "email", contactInfo: e.email });
    const second = await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });

    const r3 = await api.post(PATHS.verify, { email: e.email, otp_code: wrongCode(second.code, 0) }, { ip });
    if (r3.status === 400) assert.equal(assertError(r3, 400, "otp_invalid").attempts_remaining, 0, describeResponse(r3));
    else assertError(r3, 429, "otp_locked");

    const right = await api.post(PATHS.verify, { email: e.email, otp_code: second.code }, { ip });
    const lockErr = assertError(right, 429, "otp_locked");
    assert.ok(lockErr.retry_after_seconds > 60 && lockErr.retry_after_seconds <= 15 * 60, describeResponse(right));
    assertError(await api.post(PATHS.generate, { email: e.email }, { ip }), 429, "otp_locked");
    assertError(await api.post(PATHS.resend, { email: e.email }, { ip }), 429, "otp_locked");
    assertMockClean(mock, testStartedAt);
  });

  test("a used code cannot be used again", T, async () => {
    const e = SEED.employees[2];
    const ip = "203.0.113.14";
    const since = Date.now();
    assertOtpSent(await api.post(PATHS.generate, { email: e.email }, { ip }), { otpType: "email", contactInfo: e.email });
    const msg = await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });
    assertLogin(await api.post(PATHS.verify, { email: e.email, otp_code: msg.code }, { ip }), { email: e.email });
    assertError(await api.post(PATHS.verify, { email: e.email, otp_code: msg.code }, { ip }), 400, "otp_invalid");
    assertMockClean(mock, testStartedAt);
  });

  test("a resend kills the previous code and the new one works", T, async () => {
    const e = SEED.employees[3];
    const ip = "203.0.113.15";
    let since = Date.now();
    assertOtpSent(await api.post(PATHS.generate, { email: e.email }, { ip }), { otpType: "email", contactInfo: e.email });
    const oldMsg = await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });
    await sleep(COOLDOWN_WAIT_MS);
    since = Date.now();
    assertOtpSent(await api.post(PATHS.resend, { email: e.email }, { ip }), { otpType: "email", contactInfo: e.email });
    const newMsg = await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });
    if (oldMsg.code !== newMsg.code) {
      const old = await api.post(PATHS.verify, { email: e.email, otp_code: oldMsg.code }, { ip });
      assertError(old, 400, "otp_invalid");
    }
    assertLogin(await api.post(PATHS.verify, { email: e.email, otp_code: newMsg.code }, { ip }), { email: e.email });
    assertMockClean(mock, testStartedAt);
  });

  test("every endpoint answers with and without the trailing slash", T, async () => {
    const e = SEED.employees[4];
    const ip = "203.0.113.16";
    const bare = (p) => p.replace(/\/$/, "");
    let since = Date.now();
    assertOtpSent(await api.post(bare(PATHS.generate), { email: e.email }, { ip }), { otpType: "email", contactInfo: e.email });
    await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });
    await sleep(COOLDOWN_WAIT_MS);
    since = Date.now();
    assertOtpSent(await api.post(bare(PATHS.resend), { email: e.email }, { ip }), { otpType: "email", contactInfo: e.email });
    const msg = await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });
    const token = assertLogin(await api.post(bare(PATHS.verify), { email: e.email, otp_code: msg.code }, { ip }), { email: e.email });
    for (const p of [bare(PATHS.me), PATHS.me]) {
      const me = await api.get(p, { token, ip });
      assert.equal(me.status, 200, describeResponse(me));
      assert.equal(me.body?.user?.email, e.email);
    }
    const out = await api.post(bare(PATHS.logout), undefined, { token, ip });
    assert.equal(out.status, 200, describeResponse(out));
    assertError(await api.get(bare(PATHS.me), { token, ip }), 401, "invalid_token");
    assertMockClean(mock, testStartedAt);
  });

  test("a provider failure does not change the API answer and records a delivery_failed event", T, async () => {
    const ok = SEED.employees[5];
    const failing = SEED.employees[6];
    const ip = "203.0.113.17";
    try {
      for (const [provider, field, otpType] of [["resend", "email", "email"], ["twilio", "phone_number", "sms"]]) {
        const key = field === "email" ? "email" : "phone";
        mock.fail(provider, null);
        let since = Date.now();
        const base = await api.post(PATHS.generate, { [field]: ok[key] }, { ip });
        assertOtpSent(base, { otpType, contactInfo: ok[key] });
        await mock.waitForMessage(ok[key], MESSAGE_TIMEOUT_MS, { since });

        mock.fail(provider, 500);
        since = Date.now();
        const res = await api.post(PATHS.generate, { [field]: failing[key] }, { ip });
        assertOtpSent(res, { otpType, contactInfo: failing[key] });
        assert.deepEqual(withoutEcho(res.body), withoutEcho(base.body), "same answer while the provider fails");

        const hit = await poll(
          () => mock.requests.find((r) => r.at >= since && r.provider === provider && r.status === 500),
          { timeoutMs: MESSAGE_TIMEOUT_MS, intervalMs: 100 },
        );
        assert.ok(hit, `the worker called ${provider} (which answered 500)`);
        mock.fail(provider, null);

        await eventually(async () => {
          const rows = await loginEventsFor(worker, failing.email);
          return rows.some((r) => r.event === "delivery_failed" && r.channel === otpType);
        }, `a delivery_failed event (channel ${otpType}) for ${failing.email}`);
      }
    } finally {
      mock.fail("resend", null);
      mock.fail("twilio", null);
    }
    assertMockClean(mock, testStartedAt);
  });

  test("without SCIM_TOKEN the SCIM endpoints do not exist: /scim/v2/ answers 404 not_found, with or without a token", T, async () => {
    for (const path of ["/scim/v2/Users", "/scim/v2/", "/scim/v2/ServiceProviderConfig"]) {
      for (const headers of [{}, { Authorization: "Bearer 0123456789abcdef0123456789abcdef" }]) {
        assertError(await api.get(path, { headers, ip: "203.0.113.240" }), 404, "not_found");
      }
    }
  });
});
