// Concurrency limits, cooldown, request validation and CORS against the real worker under `wrangler dev`.
// One dev server (default 60 s resend cooldown, one allowed CORS origin) for the whole file.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, test } from "node:test";

import {
  assertError,
  assertLogin,
  assertMockClean,
  assertOtpSent,
  call,
  client,
  describeResponse,
  PATHS,
  poll,
  sleep,
  wrongCode,
} from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, loginEventsFor, startWorker } from "./support/worker.mjs";

const ALLOWED_ORIGIN = "https://app.example.com";
const MESSAGE_TIMEOUT_MS = 10_000;
const T = { timeout: 120_000 };

let mock;
let worker;
let api;

let testStartedAt = 0;


async function codeFor(email, ip) {
  const since = Date.now();
  assertOtpSent(await api.post(PATHS.generate, { email }, { ip }), { otpType: "email", contactInfo: email });
  const msg = await mock.waitForMessage(email, MESSAGE_TIMEOUT_MS, { since });
  assert.match(msg.code ?? "", /^\d{6}$/);
  return msg.code;
}

function tally(responses) {
  const t = {};
  for (const r of responses) {
    const k = `${r.status} ${r.body?.error?.code ?? (r.body?.token ? "token" : "-")}`;
    t[k] = (t[k] ?? 0) + 1;
  }
  return t;
}

describe("abuse resistance, validation and CORS", { timeout: 600_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        EMAIL_PROVIDER: "resend",
        SMS_PROVIDER: "twilio",
        OTP_RESEND_COOLDOWN_SECONDS: "60",
        CORS_ALLOWED_ORIGINS: `${ALLOWED_ORIGIN},https://admin.example.com`,
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

  test("50 parallel wrong guesses evaluate at most 3, the rest are locked out, and then even the right code is refused", T, async () => {
    const e = SEED.employees[7];
    const ip = "198.51.100.20";
    const code = await codeFor(e.email, ip);
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => api.post(PATHS.verify, { email: e.email, otp_code: wrongCode(code, i) }, { ip })),
    );
    const t = tally(responses);
    const invalid = responses.filter((r) => r.status === 400 && r.body?.error?.code === "otp_invalid");
    const locked = responses.filter((r) => r.status === 429 && r.body?.error?.code === "otp_locked");
    assert.equal(invalid.length + locked.length, 50, `only otp_invalid or otp_locked answers: ${JSON.stringify(t)}`);
    assert.ok(invalid.length <= 3, `at most 3 guesses evaluated, got ${invalid.length}: ${JSON.stringify(t)}`);
    assert.ok(invalid.length >= 1, `some guess was evaluated: ${JSON.stringify(t)}`);
    for (const r of locked) assertError(r, 429, "otp_locked");

    const right = await api.post(PATHS.verify, { email: e.email, otp_code: code }, { ip });
    assertError(right, 429, "otp_locked");

    await sleep(1500); // events are written after the response
    const failed = await poll(async () => {
      const rows = await loginEventsFor(worker, e.email);
      return rows.filter((r) => r.event === "code_failed").length || null;
    }, { timeoutMs: 10_000, intervalMs: 500 });
    const rows = await loginEventsFor(worker, e.email);
    const codeFailed = rows.filter((r) => r.event === "code_failed").length;
    assert.ok(failed >= 1, `code_failed events recorded: ${JSON.stringify(rows.map((r) => r.event))}`);
    assert.ok(codeFailed <= 3, `at most 3 code_failed events, got ${codeFailed}`);
    assertMockClean(mock, testStartedAt);
  });

  test("20 parallel correct submissions yield exactly one token", T, async () => {
    const e = SEED.employees[8];
    const ip = "198.51.100.21";
    const code = await codeFor(e.email, ip);
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => api.post(PATHS.verify, { email: e.email, otp_code: code }, { ip })),
    );
    const t = tally(responses);
    const ok = responses.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, `exactly one success: ${JSON.stringify(t)}`);
    const token = assertLogin(ok[0], { email: e.email });
    for (const r of responses.filter((x) => x !== ok[0])) {
      assert.ok(r.status >= 400 && r.status < 500, `losers get a 4xx: ${describeResponse(r)}`);
      assertError(r, r.status, ["otp_invalid", "otp_locked"]);
    }
    const me = await api.get(PATHS.me, { token, ip });
    assert.equal(me.status, 200, describeResponse(me));
    const sessions = await worker.d1(
      `SELECT count(*) AS n FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = '${e.email}')`,
    );
    assert.equal(sessions[0].n, 1, "exactly one session row");
    assertMockClean(mock, testStartedAt);
  });

  test("a second request within the cooldown gets 429 resend_cooldown with Retry-After", T, async () => {
    const e = SEED.employees[9];
    const ip = "198.51.100.22";
    await codeFor(e.email, ip);
    for (const path of [PATHS.generate, PATHS.resend]) {
      const res = await api.post(path, { email: e.email }, { ip });
      const err = assertError(res, 429, "resend_cooldown");
      const ra = Number(res.headers.get("retry-after"));
      assert.ok(ra >= 1 && ra <= 60, `Retry-After within the 60 s cooldown: ${describeResponse(res)}`);
      assert.ok(err.retry_after_seconds >= 1 && err.retry_after_seconds <= 60, describeResponse(res));
    }
    // Cooldown is per identifier: another address is not held back (unknown, so nothing is sent).
    const other = `cooldown.${randomBytes(3).toString("hex")}@example.com`;
    assertOtpSent(await api.post(PATHS.generate, { email: other }, { ip }), { otpType: "email", contactInfo: other });
    assertMockClean(mock, testStartedAt);
  });

  describe("bad requests get a 4xx JSON error with the right code, never a 5xx", () => {
    const ip = "198.51.100.30";
    const json = { "Content-Type": "application/json" };
    const bin = (s) => new TextEncoder().encode(s); // a body without an implied Content-Type
    const nestedArrays = `{"email": ${"[".repeat(2000)}${"]".repeat(2000)}}`;
    const nestedObjects = `${'{"a":'.repeat(500)}1${"}".repeat(500)}`;
    const big = JSON.stringify({ email: "big@example.com", pad: "x".repeat(100 * 1024) });

    const cases = [
      ["malformed JSON", "POST", PATHS.generate, { body: '{"email": ', headers: json }, 400, "malformed_json"],
      ["JSON with trailing garbage", "POST", PATHS.generate, { body: '{"email": "a@example.com"} x', headers: json }, 400, "malformed_json"],
      ["invalid UTF-8", "POST", PATHS.generate, { body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), headers: json }, 400, ["malformed_json", "invalid_request"]],
      ["an empty body", "POST", PATHS.generate, { body: "", headers: json }, 400, ["malformed_json", "invalid_request"]],
      ["text/plain content type", "POST", PATHS.generate, { body: '{"email": "a@example.com"}', headers: { "Content-Type": "text/plain" } }, 415, "unsupported_media_type"],
      ["form content type", "POST", PATHS.verify, { body: "email=a%40example.com&otp_code=123456", headers: { "Content-Type": "application/x-www-form-urlencoded" } }, 415, "unsupported_media_type"],
      ["no content type", "POST", PATHS.generate, { body: bin('{"email": "a@example.com"}') }, 415, "unsupported_media_type"],
      ["a 100 KB body", "POST", PATHS.generate, { body: big, headers: json }, 413, "payload_too_large"],
      ["both identifiers", "POST", PATHS.generate, { json: { email: "a@example.com", phone_number: "+14155550123" } }, 400, "invalid_request"],
      ["neither identifier", "POST", PATHS.generate, { json: {} }, 400, "invalid_request"],
      ["neither identifier on resend", "POST", PATHS.resend, { json: { foo: "bar" } }, 400, "invalid_request"],
      ["an email of the wrong type", "POST", PATHS.generate, { json: { email: 12345 } }, 400, "invalid_request"],
      ["a phone number of the wrong type", "POST", PATHS.generate, { json: { phone_number: 1234567890 } }, 400, "invalid_request"],
      ["a JSON array body", "POST", PATHS.generate, { json: [] }, 400, "invalid_request"],
      ["a JSON string body", "POST", PATHS.generate, { json: "a@example.com" }, 400, "invalid_request"],
      ["a JSON null body", "POST", PATHS.generate, { json: null }, 400, "invalid_request"],
      ["a bad email", "POST", PATHS.generate, { json: { email: "not-an-email" } }, 400, "invalid_email"],
      ["an email with two @", "POST", PATHS.generate, { json: { email: "two@@example.com" } }, 400, "invalid_email"],
      ["an email with a newline", "POST", PATHS.generate, { json: { email: "a@example.com\nBcc: x@example.com" } }, 400, "invalid_email"],
      ["a very long email", "POST", PATHS.generate, { json: { email: `${"a".repeat(300)}@example.com` } }, 400, "invalid_email"],
      ["a bad email on verify", "POST", PATHS.verify, { json: { email: "nope", otp_code: "123456" } }, 400, "invalid_email"],
      ["a phone with letters", "POST", PATHS.generate, { json: { phone_number: "+1415CALLME" } }, 400, "invalid_phone_number"],
      ["a too-short phone", "POST", PATHS.generate, { json: { phone_number: "+123" } }, 400, "invalid_phone_number"],
      ["a too-long phone", "POST", PATHS.generate, { json: { phone_number: "+1234567890123456789" } }, 400, "invalid_phone_number"],
      ["a phone without country code", "POST", PATHS.generate, { json: { phone_number: "0123456789" } }, 400, "invalid_phone_number"],
      ["a 5-digit code", "POST", PATHS.verify, { json: { email: "a@example.com", otp_code: "12345" } }, 400, "invalid_otp_format"],
      ["a 7-digit code", "POST", PATHS.verify, { json: { email: "a@example.com", otp_code: "1234567" } }, 400, "invalid_otp_format"],
      ["a code with a letter", "POST", PATHS.verify, { json: { email: "a@example.com", otp_code: "12a456" } }, 400, "invalid_otp_format"],
      ["a code with non-ASCII digits", "POST", PATHS.verify, { json: { email: "a@example.com", otp_code: "١٢٣٤٥٦" } }, 400, "invalid_otp_format"],
      ["a numeric code", "POST", PATHS.verify, { json: { email: "a@example.com", otp_code: 123456 } }, 400, ["invalid_otp_format", "invalid_request"]],
      ["a missing code", "POST", PATHS.verify, { json: { email: "a@example.com" } }, 400, ["invalid_otp_format", "invalid_request"]],
      ["verify with both identifiers", "POST", PATHS.verify, { json: { email: "a@example.com", phone_number: "+14155550123", otp_code: "123456" } }, 400, "invalid_request"],
      ["deeply nested arrays", "POST", PATHS.generate, { body: nestedArrays, headers: json }, 400, ["malformed_json", "invalid_request"]],
      ["deeply nested objects", "POST", PATHS.generate, { body: nestedObjects, headers: json }, 400, ["malformed_json", "invalid_request"]],
      ["an unknown route", "POST", "/auth/api/mobile/nope/", { json: { email: "a@example.com" } }, 404, "not_found"],
      ["an unknown GET route", "GET", "/auth/api/mobile/users/", {}, 404, "not_found"],
      ["GET on generate-otp", "GET", PATHS.generate, {}, 405, "method_not_allowed", "POST"],
      ["PUT on verify-otp", "PUT", PATHS.verify, { json: { email: "a@example.com", otp_code: "123456" } }, 405, "method_not_allowed", "POST"],
      ["DELETE on logout", "DELETE", PATHS.logout, {}, 405, "method_not_allowed", "POST"],
      ["POST on me", "POST", PATHS.me, { json: {} }, 405, "method_not_allowed", "GET"],
      ["me without a token", "GET", PATHS.me, {}, 401, "not_authenticated"],
      ["logout without a token", "POST", PATHS.logout, {}, 401, "not_authenticated"],
      ["me with an unknown token", "GET", PATHS.me, { headers: { Authorization: `Token ${randomBytes(32).toString("hex")}` } }, 401, "invalid_token"],
      ["me with a malformed token", "GET", PATHS.me, { headers: { Authorization: "Bearer not-a-token" } }, 401, "invalid_token"],
      ["me with Basic credentials", "GET", PATHS.me, { headers: { Authorization: "Basic dXNlcjpwYXNz" } }, 401, ["not_authenticated", "invalid_token"]],
    ];

    for (const [name, method, path, options, status, code, allow] of cases) {
      test(`${name}: ${status} ${Array.isArray(code) ? code.join("|") : code}`, T, async () => {
        const res = await call(worker.url, method, path, { ...options, ip });
        assert.ok(res.status < 500, `never 5xx: ${describeResponse(res)}`);
        assertError(res, status, code);
        if (allow) {
          const got = (res.headers.get("allow") ?? "").split(",").map((s) => s.trim().toUpperCase());
          assert.ok(got.includes(allow), `Allow header lists ${allow}: ${describeResponse(res)}`);
        }
      });
    }

    test("a 100 KB body streamed without Content-Length: 413 payload_too_large", T, async () => {
      const chunk = new TextEncoder().encode(big);
      const stream = new ReadableStream({
        start(controller) {
          for (let i = 0; i < chunk.length; i += 8192) controller.enqueue(chunk.subarray(i, i + 8192));
          controller.close();
        },
      });
      const res = await fetch(worker.url + PATHS.generate, {
        method: "POST",
        headers: { "Content-Type": "application/json", "CF-Connecting-IP": ip },
        body: stream,
        duplex: "half",
        signal: AbortSignal.timeout(20_000),
      });
      const text = await res.text();
      assert.equal(res.status, 413, text);
      assert.equal(JSON.parse(text).error.code, "payload_too_large", text);
    });

    test("application/json with a charset parameter is accepted", T, async () => {
      const email = `charset.${randomBytes(3).toString("hex")}@example.com`;
      const res = await call(worker.url, "POST", PATHS.generate, {
        body: JSON.stringify({ email }),
        headers: { "Content-Type": "application/json; charset=utf-8" },
        ip,
      });
      assertOtpSent(res, { otpType: "email", contactInfo: email });
    });

    test("phone numbers with a 00 prefix are normalised to +", T, async () => {
      const res = await call(worker.url, "POST", PATHS.generate, { json: { phone_number: "00 1 999 555 0177" }, ip });
      assertOtpSent(res, { otpType: "sms", contactInfo: "+19995550177" });
    });
  });

  describe("CORS", () => {
    const ip = "198.51.100.40";
    const preflight = (origin) =>
      call(worker.url, "OPTIONS", PATHS.generate, {
        ip,
        headers: {
          Origin: origin,
          "Access-Control-Request-Method": "POST",
          "Access-Control-Request-Headers": "content-type,authorization",
        },
      });

    test("a preflight from an allowed origin gets 204 with Access-Control-Allow-Origin echoing it", T, async (t) => {
      const res = await preflight(ALLOWED_ORIGIN);
      assert.equal(res.status, 204, describeResponse(res));
      assert.equal(res.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN, describeResponse(res));
      const methods = (res.headers.get("access-control-allow-methods") ?? "").toUpperCase();
      assert.ok(methods.includes("POST"), `Allow-Methods includes POST: ${describeResponse(res)}`);
      assert.ok(methods.includes("DELETE"), `Allow-Methods includes DELETE (sessions/<id>/): ${describeResponse(res)}`);
      const headers = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
      assert.ok(headers.includes("content-type") && headers.includes("authorization"), `Allow-Headers: ${describeResponse(res)}`);
      if (!/origin/i.test(res.headers.get("vary") ?? "")) t.diagnostic("note: no `Vary: Origin` on the preflight answer");
      const second = await preflight("https://admin.example.com");
      assert.equal(second.headers.get("access-control-allow-origin"), "https://admin.example.com", describeResponse(second));
    });

    test("a preflight from another origin gets no Access-Control-Allow-Origin", T, async () => {
      for (const origin of ["https://evil.example.com", "https://app.example.com.evil.test", "null"]) {
        const res = await preflight(origin);
        assert.ok(res.status < 500, describeResponse(res));
        assert.equal(res.headers.get("access-control-allow-origin"), null, describeResponse(res));
      }
    });

    test("actual requests carry Access-Control-Allow-Origin only for an allowed origin", T, async () => {
      const email = `cors.${randomBytes(3).toString("hex")}@example.com`;
      const allowed = await call(worker.url, "POST", PATHS.generate, { json: { email }, ip, headers: { Origin: ALLOWED_ORIGIN } });
      assertOtpSent(allowed, { otpType: "email", contactInfo: email });
      assert.equal(allowed.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN, describeResponse(allowed));
      assert.equal(allowed.headers.get("access-control-expose-headers"), "Retry-After", describeResponse(allowed));
      const other = await call(worker.url, "POST", PATHS.generate, {
        json: { email: `x.${email}` },
        ip,
        headers: { Origin: "https://evil.example.com" },
      });
      assert.equal(other.headers.get("access-control-allow-origin"), null, describeResponse(other));
    });
  });
});
