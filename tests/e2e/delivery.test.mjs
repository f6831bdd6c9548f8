// Every email and SMS provider end to end: one worker with the full failover lists
// (EMAIL_PROVIDER=resend,sendgrid,mailgun,postmark,ses and SMS_PROVIDER=twilio,vonage,plivo,sns) against the mock
// of the providers' APIs. To reach provider N, the mock makes the N-1 before it fail with one of their documented
// error answers; the test then checks that provider's real request (method, path, authentication, body fields —
// the mock refuses anything else and SES/SNS signatures are recomputed), that the code it carried logs in, and
// that each failed attempt was recorded as its own `delivery_failed` event with the provider's reason, followed by
// `code_sent` naming the provider that accepted. Also: message languages, the origin-bound SMS line.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";

import { PATHS, assertError, assertLogin, assertMockClean, assertOtpSent, client, describeResponse, eventually, withoutEcho } from "./support/api.mjs";
import { EMAIL_PROVIDERS, SMS_PROVIDERS, startMockProviders } from "./support/mock-providers.mjs";
import { SEED, loginEventsFor, startWorker } from "./support/worker.mjs";

const T = { timeout: 120_000 };
const MESSAGE_TIMEOUT_MS = 15_000;
const ORIGIN = "app.example.com";

// What each provider's accepted request must look like beyond the mock's own format checks.
const EXPECTED = {
  resend: { path: /^\/emails$/, auth: (c) => `Bearer ${c.RESEND_API_KEY}` },
  sendgrid: { path: /^\/v3\/mail\/send$/, auth: (c) => `Bearer ${c.SENDGRID_API_KEY}` },
  mailgun: { path: /^\/v3\/mg\.example\.com\/messages$/, auth: (c) => "Basic " + Buffer.from(`api:${c.MAILGUN_API_KEY}`).toString("base64") },
  postmark: { path: /^\/email$/, header: ["x-postmark-server-token", (c) => c.POSTMARK_SERVER_TOKEN] },
  ses: { path: /^\/v2\/email\/outbound-emails$/, auth: /^AWS4-HMAC-SHA256 Credential=AKIA\w+\/\d{8}\/eu-west-1\/ses\/aws4_request, / },
  twilio: { path: /^\/2010-04-01\/Accounts\/AC\w+\/Messages\.json$/, auth: (c) => "Basic " + Buffer.from(`${c.TWILIO_ACCOUNT_SID}:${c.TWILIO_AUTH_TOKEN}`).toString("base64") },
  vonage: { path: /^\/v1\/messages$/, auth: (c) => "Basic " + Buffer.from(`${c.VONAGE_API_KEY}:${c.VONAGE_API_SECRET}`).toString("base64") },
  plivo: { path: /^\/v1\/Account\/MA\w+\/Message\/$/, auth: (c) => "Basic " + Buffer.from(`${c.PLIVO_AUTH_ID}:${c.PLIVO_AUTH_TOKEN}`).toString("base64") },
  sns: { path: /^\/$/, auth: /^AWS4-HMAC-SHA256 Credential=AKIA\w+\/\d{8}\/eu-west-1\/sns\/aws4_request, / },
};

// The documented error answer each provider gives when it is made to fail (cycled through 5xx and 4xx kinds).
const FAILURE_STATUS = { resend: 500, sendgrid: 401, mailgun: 400, postmark: 422, ses: 403, twilio: 400, vonage: 401, plivo: 500, sns: 400 };

let mock;
let worker;
let api;
let testStartedAt = 0;

function assertAcceptedRequest(provider, since, recipient) {
  const accepted = mock.requests.filter((r) => r.at >= since && r.provider === provider && r.status < 300);
  assert.equal(accepted.length, 1, `one accepted ${provider} request: ${JSON.stringify(accepted)}`);
  const [r] = accepted;
  const expected = EXPECTED[provider];
  assert.equal(r.method, "POST");
  assert.match(new URL(r.path, "http://x").pathname, expected.path);
  if (expected.auth instanceof RegExp) assert.match(r.headers.authorization ?? "", expected.auth);
  else if (expected.auth) assert.equal(r.headers.authorization, expected.auth(mock.credentials));
  if (expected.header) assert.equal(r.headers[expected.header[0]], expected.header[1](mock.credentials));
  const body = r.headers["content-type"]?.startsWith("application/x-www-form-urlencoded")
    ? [...new URLSearchParams(r.rawBody).values()].join("\n")
    : r.rawBody;
  assert.ok(body.includes(recipient.replace(/^\+/, "")), `the ${provider} body names ${recipient}`);
}

/** The delivery events recorded for `email` after the n-th code_requested, once `code_sent` or `count` failures are in. */
async function deliveryEvents(email, { failures, sent }) {
  return eventually(async () => {
    const rows = (await loginEventsFor(worker, email)).filter((r) => r.event === "delivery_failed" || r.event === "code_sent");
    const failed = rows.filter((r) => r.event === "delivery_failed").length;
    const done = sent ? rows.some((r) => r.event === "code_sent") : failed >= failures;
    return done && failed >= failures ? rows : null;
  }, `delivery events for ${email}`);
}

describe("every provider, failover and message templates (mocked provider APIs)", { timeout: 900_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        EMAIL_PROVIDER: EMAIL_PROVIDERS.join(","),
        SMS_PROVIDER: SMS_PROVIDERS.join(","),
        OTP_RESEND_COOLDOWN_SECONDS: "1",
        SMS_ORIGIN_DOMAIN: ORIGIN,
      },
    });
    api = client(worker.url);
  });

  beforeEach(() => {
    testStartedAt = Date.now();
    mock.reset();
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  for (const [channel, providers, field, key, offset] of [
    ["email", EMAIL_PROVIDERS, "email", "email", 0],
    ["sms", SMS_PROVIDERS, "phone_number", "phone", EMAIL_PROVIDERS.length],
  ]) {
    providers.forEach((provider, i) => {
      const before = providers.slice(0, i);
      const title = before.length
        ? `${provider} delivers a working code after ${before.join(", ")} failed; each failure is recorded with its reason`
        : `${provider} delivers a working code in its real API format`;
      test(title, T, async () => {
        const e = SEED.employees[offset + i];
        const to = e[key];
        const ip = `198.51.100.${10 + offset + i}`;
        for (const p of before) mock.fail(p, FAILURE_STATUS[p]);
        const since = Date.now();
        assertOtpSent(await api.post(PATHS.generate, { [field]: to }, { ip }), { otpType: channel, contactInfo: to });

        const msg = await mock.waitForMessage(to, MESSAGE_TIMEOUT_MS, { since });
        assert.equal(msg.provider, provider);
        assertAcceptedRequest(provider, since, to);
        for (const p of before) {
          const refused = mock.requests.filter((r) => r.at >= since && r.provider === p);
          assert.equal(refused.length, 1, `${p} was tried once before ${provider}`);
          assert.equal(refused[0].status, FAILURE_STATUS[p]);
        }
        for (const p of providers.slice(i + 1)) {
          assert.equal(mock.requests.filter((r) => r.at >= since && r.provider === p).length, 0, `${p} is not tried after ${provider} accepted`);
        }
        assert.match(msg.code ?? "", /^\d{6}$/);
        if (channel === "email") {
          assert.ok(msg.subject.startsWith(`${msg.code} `), `the code leads the subject: ${msg.subject}`);
          assert.equal(msg.htmlCode, msg.code, "the HTML part carries the same code");
        } else {
          assert.equal(msg.text.split("\n").at(-1), `@${ORIGIN} #${msg.code}`, `origin-bound last line: ${JSON.stringify(msg.text)}`);
        }

        const rows = await deliveryEvents(e.email, { failures: before.length, sent: true });
        const expected = [
          ...before.map((p) => ({ event: "delivery_failed", detail: `${p}: HTTP ${FAILURE_STATUS[p]}: ${mock.failureReason(p, FAILURE_STATUS[p])}` })),
          { event: "code_sent", detail: provider },
        ];
        assert.deepEqual(rows.map((r) => ({ event: r.event, detail: r.detail })), expected);
        assert.ok(rows.every((r) => r.channel === channel));

        assertLogin(await api.post(PATHS.verify, { [field]: to, otp_code: msg.code }, { ip }), { email: e.email });
        assertMockClean(mock, testStartedAt);
      });
    });
  }

  test("when every email provider fails, each attempt is recorded in order and the answer does not change", T, async () => {
    const e = SEED.employees[9];
    const ok = SEED.employees[10];
    const ip = "198.51.100.40";
    const since = Date.now();
    const base = await api.post(PATHS.generate, { email: ok.email }, { ip });
    await mock.waitForMessage(ok.email, MESSAGE_TIMEOUT_MS, { since });
    for (const p of EMAIL_PROVIDERS) mock.fail(p, 429);
    const res = await api.post(PATHS.generate, { email: e.email }, { ip });
    assertOtpSent(res, { otpType: "email", contactInfo: e.email });
    assert.deepEqual(withoutEcho(res.body), withoutEcho(base.body));
    const rows = await deliveryEvents(e.email, { failures: EMAIL_PROVIDERS.length, sent: false });
    assert.deepEqual(
      rows.map((r) => r.detail),
      EMAIL_PROVIDERS.map((p) => `${p}: HTTP 429: ${mock.failureReason(p, 429)}`),
    );
    assert.ok(!rows.some((r) => r.event === "code_sent"));
    assertMockClean(mock, testStartedAt);
  });

  test("the message is written in the request's locale, else the profile's, and the answer does not depend on it", T, async () => {
    const e = SEED.employees[11];
    const ip = "198.51.100.41";
    let since = Date.now();
    const plain = await api.post(PATHS.generate, { email: e.email }, { ip });
    const english = await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });
    assert.match(english.subject, /verification code/);

    await new Promise((r) => setTimeout(r, 2200));
    since = Date.now();
    const spanish = await api.post(PATHS.resend, { email: e.email, locale: "es-MX" }, { ip });
    assert.deepEqual(spanish.body, plain.body, "the locale does not change the answer");
    const es = await mock.waitForMessage(e.email, MESSAGE_TIMEOUT_MS, { since });
    assert.match(es.subject, /código de verificación/);
    assert.match(es.html, /<html lang="es">/);

    await worker.d1(`UPDATE profiles SET locale = 'fr-CA' WHERE user_id = (SELECT id FROM users WHERE email = '${e.email}')`);
    await new Promise((r) => setTimeout(r, 2200));
    since = Date.now();
    assertOtpSent(await api.post(PATHS.resend, { phone_number: e.phone }, { ip }), { otpType: "sms", contactInfo: e.phone });
    const fr = await mock.waitForMessage(e.phone, MESSAGE_TIMEOUT_MS, { since });
    assert.match(fr.text, /est votre code de vérification/);
    assertLogin(await api.post(PATHS.verify, { phone_number: e.phone, otp_code: fr.code }, { ip }), { email: e.email });

    // An invalid locale is refused alike for an employee and an unknown address, before anything is sent.
    since = Date.now();
    const bad = await api.post(PATHS.generate, { email: SEED.employees[12].email, locale: "español" }, { ip });
    assertError(bad, 400, "invalid_request");
    const unknown = await api.post(PATHS.generate, { email: "nobody.locale@example.com", locale: "español" }, { ip });
    assert.deepEqual(unknown.body, bad.body, describeResponse(unknown));
    await mock.expectNoMessage(SEED.employees[12].email, 1500, { since });
    assertMockClean(mock, testStartedAt);
  });
});
