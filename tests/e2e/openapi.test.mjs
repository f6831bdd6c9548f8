// The OpenAPI document: valid OpenAPI 3.1, served unchanged at /auth/api/mobile/openapi.json, naming exactly the
// error codes of src/http/error.rs, and describing what the running worker really answers: every success and every
// client error below is produced by the real worker and validated (JSON Schema 2020-12, Ajv) against the schema the
// document gives for that path, method and status, including the documented headers.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { validate as validateOpenApi } from "@readme/openapi-parser";
import Ajv2020 from "ajv/dist/2020.js";

import { PATHS, call, describeResponse, wrongCode } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { ROOT, SEED, startWorker } from "./support/worker.mjs";

const DOC_PATH = path.join(ROOT, "public", "auth", "api", "mobile", "openapi.json");
const DOC_URL = "/auth/api/mobile/openapi.json";
const doc = JSON.parse(readFileSync(DOC_PATH, "utf8"));

const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema(doc, "openapi");

let mock;
let worker;
/** Every (operation, status, error code) the scenarios produced, for the coverage check. */
const seen = [];

function resolve(node) {
  let value = node;
  while (value && value.$ref) {
    value = value.$ref.slice(2).split("/").reduce((o, key) => o[key], doc);
  }
  return value;
}

/** The documented operation for a request path (templates such as `{session_id}` match one segment). */
function operationFor(method, urlPath) {
  const withSlash = urlPath.endsWith("/") || urlPath.endsWith(".json") ? urlPath : `${urlPath}/`;
  for (const [template, item] of Object.entries(doc.paths)) {
    const pattern = new RegExp(`^${template.replace(/[.]/g, "\\.").replace(/\{[^}]+\}/g, "[^/]+")}$`);
    if (pattern.test(withSlash) && item[method.toLowerCase()]) {
      return { key: `${method} ${template}`, op: item[method.toLowerCase()] };
    }
  }
  return null;
}

/** Validates one real answer against the document; returns the answer. */
function conforms(res) {
  const found = operationFor(res.method, res.path);
  // Unknown routes answer 404 not_found; the document describes it on every operation, so check it against one.
  const { key, op } = found ?? { key: `${res.method} (unknown route)`, op: doc.paths[PATHS.me].get };
  const response = resolve(op.responses[String(res.status)]);
  assert.ok(response, `${key} documents status ${res.status}: ${describeResponse(res)}`);
  for (const [name, header] of Object.entries(response.headers ?? {})) {
    if (resolve(header).required) assert.ok(res.headers.get(name), `${key} ${res.status} carries ${name}: ${describeResponse(res)}`);
  }
  const media = response.content?.["application/json"];
  assert.ok(media, `${key} ${res.status} documents a JSON body`);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/, describeResponse(res));
  const pointer = media.schema.$ref ?? null;
  const check = pointer ? ajv.getSchema(`openapi${pointer}`) : ajv.compile(media.schema);
  assert.ok(check(res.body), `${key} ${res.status} matches its schema: ${ajv.errorsText(check.errors)}\n${describeResponse(res)}`);
  seen.push({ key, status: res.status, code: res.body?.error?.code ?? null });
  return res;
}

const send = async (method, urlPath, options = {}) => conforms(await call(worker.url, method, urlPath, options));
const post = (urlPath, json, options = {}) => send("POST", urlPath, { ...options, json });

describe("the OpenAPI document", { timeout: 300_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({ vars: { ...mock.workerVars(), RATE_LIMIT_IP_SENDS: "3" } });
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("is a valid OpenAPI 3.1 document", async () => {
    assert.equal(doc.openapi, "3.1.0");
    const result = await validateOpenApi(structuredClone(doc));
    assert.equal(result.valid, true, JSON.stringify(result.errors));
    assert.equal(result.specification, "OpenAPI");
  });

  test("is served unchanged at /auth/api/mobile/openapi.json", async () => {
    const res = await call(worker.url, "GET", DOC_URL);
    assert.equal(res.status, 200, describeResponse(res));
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    assert.deepEqual(res.body, doc);
  });

  test("names exactly the error codes the service has (src/http/error.rs)", () => {
    const source = readFileSync(path.join(ROOT, "src", "http", "error.rs"), "utf8");
    const codeFn = source.slice(source.indexOf("pub fn code(&self)"), source.indexOf("pub fn message(&self)"));
    const codes = [...codeFn.matchAll(/=> "([a-z_]+)"/g)].map((m) => m[1]).sort();
    assert.ok(codes.length >= 16, `read the codes from error.rs: ${codes}`);
    assert.deepEqual([...resolve(doc.components.schemas.Error).properties.error.properties.code.enum].sort(), codes);
  });

  test("describes the real answers: a login by email and by SMS, me/, logout", async () => {
    const email = SEED.employees[0];
    const since = Date.now();
    await post(PATHS.generate, { email: email.email.toUpperCase() }, { ip: "198.51.100.1" });
    const { code } = await mock.waitForMessage(email.email, 10_000, { since });
    const login = await post(PATHS.verify, { email: email.email, otp_code: code }, { ip: "198.51.100.1" });
    assert.equal(login.status, 200, describeResponse(login));
    const token = login.body.token;
    await send("GET", PATHS.me, { token });
    await send("GET", PATHS.me.slice(0, -1), { token, scheme: "Bearer" });
    await send("POST", PATHS.logout, { token });
    await send("POST", PATHS.logout, { token });
    await send("GET", PATHS.me);

    const sms = SEED.employees[1];
    const smsSince = Date.now();
    await post(PATHS.generate, { phone_number: sms.phone }, { ip: "198.51.100.2" });
    const text = await mock.waitForMessage(sms.phone, 10_000, { since: smsSince });
    const smsLogin = await post(PATHS.verify, { phone_number: sms.phone, otp_code: text.code, email: null }, { ip: "198.51.100.2" });
    assert.equal(smsLogin.status, 200, describeResponse(smsLogin));
    await send("GET", PATHS.me, { token: "0".repeat(64) });
    await post(PATHS.resend, { email: SEED.employees[8].email }, { ip: "198.51.100.5" });
    if (doc.components.schemas.SendCodeRequest) {
      const res = await post(PATHS.generate, { email: SEED.employees[12].email, locale: "es-MX" }, { ip: "198.51.100.5" });
      assert.equal(res.status, 200, describeResponse(res));
      const bad = await post(PATHS.generate, { email: SEED.employees[12].email, locale: "spanish!" }, { ip: "198.51.100.5" });
      assert.equal(bad.body?.error?.code, "invalid_request", describeResponse(bad));
    }
  });

  test("describes the real answers of the session endpoints, where the service has them", async (t) => {
    if (!doc.paths["/auth/api/mobile/refresh/"]) {
      t.skip("this version of the service has no refresh tokens");
      return;
    }
    const who = SEED.employees[9];
    const ip = "198.51.100.6";
    const since = Date.now();
    await post(PATHS.generate, { email: who.email }, { ip });
    const { code } = await mock.waitForMessage(who.email, 10_000, { since });
    const first = await post(PATHS.verify, { email: who.email, otp_code: code }, { ip });
    assert.equal(first.status, 200, describeResponse(first));
    const refreshed = await post("/auth/api/mobile/refresh/", { refresh_token: first.body.refresh_token }, { ip });
    assert.equal(refreshed.status, 200, describeResponse(refreshed));
    await post("/auth/api/mobile/refresh/", { refresh_token: first.body.refresh_token }, { ip }); // reused: 401
    await post("/auth/api/mobile/refresh/", {}, { ip });

    const other = SEED.employees[10];
    const otherSince = Date.now();
    await post(PATHS.generate, { email: other.email }, { ip });
    const second = await mock.waitForMessage(other.email, 10_000, { since: otherSince });
    const a = await post(PATHS.verify, { email: other.email, otp_code: second.code }, { ip });
    await send("GET", "/auth/api/mobile/sessions/", { token: a.body.token });
    await send("DELETE", "/auth/api/mobile/sessions/999999/", { token: a.body.token });
    await send("DELETE", `/auth/api/mobile/sessions/${a.body.session_id}/`, { token: a.body.token });
    await send("GET", "/auth/api/mobile/sessions/");

    const third = SEED.employees[11];
    const thirdSince = Date.now();
    await post(PATHS.generate, { email: third.email }, { ip });
    const msg = await mock.waitForMessage(third.email, 10_000, { since: thirdSince });
    const b = await post(PATHS.verify, { email: third.email, otp_code: msg.code }, { ip });
    await send("POST", "/auth/api/mobile/logout-all/", { token: b.body.token });
    await send("POST", "/auth/api/mobile/logout-all/", { token: b.body.token });
  });

  test("describes the real client errors of every endpoint", async () => {
    const ip = "198.51.100.3";
    const who = SEED.employees[2];
    const since = Date.now();
    await post(PATHS.generate, { email: who.email }, { ip });
    const { code } = await mock.waitForMessage(who.email, 10_000, { since });
    await post(PATHS.resend, { email: who.email }, { ip }); // resend_cooldown
    await post(PATHS.verify, { email: who.email, otp_code: "12345" }, { ip }); // invalid_otp_format
    await post(PATHS.verify, { email: who.email, otp_code: wrongCode(code, 0) }, { ip }); // otp_invalid
    await post(PATHS.verify, { email: who.email, otp_code: wrongCode(code, 1) }, { ip });
    await post(PATHS.verify, { email: who.email, otp_code: wrongCode(code, 2) }, { ip }); // otp_locked
    await post(PATHS.verify, { email: who.email, otp_code: code }, { ip }); // still otp_locked
    await post(PATHS.generate, { email: who.email }, { ip: "198.51.100.4" }); // otp_locked on a code request
    // An account at the consecutive-failure ceiling waits for an administrator: account_locked, on verify and on a
    // code request. (Reaching it by guessing takes days of lockouts; the row is what 30 wrong codes leave.)
    const held = SEED.employees[13];
    await worker.d1(
      `INSERT INTO guess_counters (subject, failures, locked_until, held) SELECT 'user:' || id, 30, 0, 1 FROM users WHERE email = '${held.email}'`,
    );
    await post(PATHS.generate, { email: held.email }, { ip: "198.51.100.6" }); // account_locked
    await post(PATHS.verify, { email: held.email, otp_code: "123456" }, { ip: "198.51.100.6" }); // account_locked

    for (const [urlPath, body] of [
      [PATHS.generate, { email: "not-an-address" }],
      [PATHS.resend, { phone_number: "0612345678" }],
      [PATHS.generate, { email: who.email, phone_number: who.phone }],
      [PATHS.generate, ["a list"]],
      [PATHS.verify, { email: who.email }],
      [PATHS.verify, { email: 5, otp_code: "123456" }],
    ]) {
      await post(urlPath, body, { ip });
    }
    await send("POST", PATHS.generate, { ip, body: "{not json", headers: { "Content-Type": "application/json" } });
    await send("POST", PATHS.verify, { ip, body: "email=a", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    await send("POST", PATHS.generate, { ip, json: { email: `${"a".repeat(5000)}@example.com` } });
    await send("GET", PATHS.generate, { ip });
    await send("POST", PATHS.me, { ip });
    await send("GET", "/auth/api/mobile/nothing-here/", { ip });

    // RATE_LIMIT_IP_SENDS is 3 here: the fourth code request from one address is refused.
    const flood = "198.51.100.9";
    for (let i = 0; i < 4; i++) await post(PATHS.generate, { email: SEED.employees[3 + i].email }, { ip: flood });
  });

  // The request schemas and the service agree: each body below is run through the schema (Ajv) and sent to the
  // worker. A body the schema rejects is refused with a 4xx for its body; a body the schema accepts passes every
  // check of the body, and gets the answer of a well-formed request for an identifier or token the service does not
  // know (200 for a code request, otp_invalid for a code never issued, invalid_token for an unknown refresh token).
  // The edge cases are the ones the document's patterns spell out: lengths, characters, and Rust's trimming (U+0085
  // is whitespace to the service, U+FEFF is not, the reverse of JavaScript's \s).
  test("the request schemas accept exactly what the service accepts", async () => {
    const long = (local, last) => `${"a".repeat(local)}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(last)}.com`;
    const hex = "0123456789abcdef".repeat(4);
    const phone32 = `(+${[..."123456789012345"].join("-")})`;
    const locale35 = "en-a1b2c3d4-a1b2c3d4-a1b2c3d4-a1b2c";
    let n = 0;
    const email = () => `agree.${++n}@example.com`;
    const send = [PATHS.generate, "SendCodeRequest", { status: 200 }];
    const resend = [PATHS.resend, "SendCodeRequest", { status: 200 }];
    const verify = [PATHS.verify, "VerifyRequest", { status: 400, code: "otp_invalid" }];
    const refresh = ["/auth/api/mobile/refresh/", "RefreshRequest", { status: 401, code: "invalid_token" }];
    const cases = [
      // accepted
      [send, true, { email: email() }],
      [send, true, { email: `  Agree.${++n}@Example.COM\u0085` }],
      [send, true, { email: long(64, 57), phone_number: null }],
      [send, true, { email: "a!#$%&'*+/=?^_`{|}~-b@x-y.example.co" }],
      [send, true, { email: `agree.${++n}@example.a1` }],
      [resend, true, { phone_number: "+1 (234) 567-801", email: null }],
      [send, true, { phone_number: "0 0 44 7700 900 124" }],
      [send, true, { phone_number: "+123456789012345" }],
      [send, true, { phone_number: "+1234561" }],
      [send, true, { phone_number: phone32.replace("1-2-3", "1-2-4") }],
      [send, true, { email: email(), locale: "pt_BR" }],
      [send, true, { email: email(), locale: ` ${locale35}\t` }],
      [resend, true, { email: email(), locale: null, other: { x: 1 } }],
      [verify, true, { email: email(), otp_code: "012345" }],
      [verify, true, { phone_number: "+1 234 567 811", otp_code: " 123456\u2028" }],
      [verify, true, { email: ` Agree.${++n}@example.com`, otp_code: "000000", locale: "not read here!" }],
      [refresh, true, { refresh_token: hex }],
      [refresh, true, { refresh_token: ` ${hex}\n` }],
      // rejected
      [send, false, { email: long(64, 58) }],
      [send, false, { email: long(65, 57) }],
      [send, false, { email: `agree@${"e".repeat(64)}.com` }],
      [send, false, { email: "a@b" }],
      [send, false, { email: "agree@example.1" }],
      [send, false, { email: "agree..x@example.com" }],
      [send, false, { email: ".agree@example.com" }],
      [send, false, { email: "agree@-example.com" }],
      [send, false, { email: "j\u043ehn@example.com" }],
      [send, false, { email: "agree x@example.com" }],
      [send, false, { email: "\ufeffagree.x@example.com" }],
      [send, false, { email: "   " }],
      [send, false, { email: 5 }],
      [send, false, {}],
      [send, false, { email: null, phone_number: null }],
      [send, false, { email: email(), phone_number: "+1234567890" }],
      [send, false, { phone_number: "0612345678" }],
      [send, false, { phone_number: "+0123456789" }],
      [send, false, { phone_number: "+123456" }],
      [send, false, { phone_number: "+1234567890123456" }],
      [send, false, { phone_number: "+12+34567890" }],
      [send, false, { phone_number: "+\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18" }],
      [send, false, { phone_number: `${phone32}.` }],
      [send, false, { phone_number: "+1 234\t567 890" }],
      [send, false, { phone_number: "\u200b+1234567890" }],
      [send, false, { email: email(), locale: "spanish!" }],
      [send, false, { email: email(), locale: "e" }],
      [send, false, { email: email(), locale: `${locale35}3` }],
      [send, false, { email: email(), locale: "" }],
      [send, false, { email: email(), locale: 7 }],
      [send, false, { email: email(), locale: "es;q=1" }],
      [verify, false, { email: email(), otp_code: "12345" }],
      [verify, false, { email: email(), otp_code: "1234567" }],
      [verify, false, { email: email(), otp_code: 123456 }],
      [verify, false, { email: email(), otp_code: "12 3456" }],
      [verify, false, { email: email(), otp_code: "\u0661\u0662\u0663\u0664\u0665\u0666" }],
      [verify, false, { email: email(), otp_code: "\ufeff123456" }],
      [verify, false, { email: email(), otp_code: null }],
      [verify, false, { email: email() }],
      [verify, false, { otp_code: "123456" }],
      [verify, false, { email: "not-an-address", otp_code: "123456" }],
      [refresh, false, {}],
      [refresh, false, { refresh_token: null }],
      [refresh, false, { refresh_token: 7 }],
      [refresh, false, { refresh_token: "short" }],
      [refresh, false, { refresh_token: hex.toUpperCase() }],
      [refresh, false, { refresh_token: hex.slice(1) }],
    ];
    const bodyErrors = ["malformed_json", "invalid_request", "invalid_email", "invalid_phone_number", "invalid_otp_format"];
    let ip = 0;
    for (const [[urlPath, schema, wellFormed], accepted, body] of cases) {
      const check = ajv.getSchema(`openapi#/components/schemas/${schema}`);
      const shown = JSON.stringify(body).slice(0, 120);
      assert.equal(check(body), accepted, `${schema} ${accepted ? "accepts" : "rejects"} ${shown}: ${ajv.errorsText(check.errors)}`);
      const res = await post(urlPath, body, { ip: `203.0.113.${++ip}` });
      const code = res.body?.error?.code;
      if (accepted) {
        assert.equal(res.status, wellFormed.status, `the service accepts ${shown}: ${describeResponse(res)}`);
        assert.equal(code, wellFormed.code, `the service accepts ${shown}: ${describeResponse(res)}`);
      } else if (schema === "RefreshRequest" && typeof body.refresh_token === "string") {
        // A string that cannot be a token is answered as an unknown token is (no oracle for the token's form).
        assert.equal(code, "invalid_token", `the service refuses ${shown}: ${describeResponse(res)}`);
      } else {
        assert.equal(res.status, 400, `the service refuses ${shown}: ${describeResponse(res)}`);
        assert.ok(bodyErrors.includes(code), `the service refuses ${shown} for its body: ${describeResponse(res)}`);
      }
    }
  });

  // Workers Logs (wrangler.toml [observability]) keeps what the Worker logs: one JSON line per request, with the
  // route's name, the status, the error code and the duration, and nothing a client sent.
  test("logs one JSON line per request, and never a code, a token or an identifier", async () => {
    const who = SEED.employees[14];
    const sms = SEED.employees[15];
    const ip = "198.51.100.20";
    const from = worker.logs().length;
    const since = Date.now();
    await post(PATHS.generate, { email: who.email }, { ip });
    const { code } = await mock.waitForMessage(who.email, 10_000, { since });
    await post(PATHS.verify, { email: who.email, otp_code: wrongCode(code, 0) }, { ip });
    const login = await post(PATHS.verify, { email: who.email, otp_code: code }, { ip });
    assert.equal(login.status, 200, describeResponse(login));
    await send("GET", PATHS.me, { token: login.body.token });
    const refreshed = await post("/auth/api/mobile/refresh/", { refresh_token: login.body.refresh_token }, { ip });
    assert.equal(refreshed.status, 200, describeResponse(refreshed));
    await send("DELETE", `/auth/api/mobile/sessions/${refreshed.body.session_id}/`, { token: refreshed.body.token });
    await send("POST", PATHS.logout, { token: refreshed.body.token });
    const smsSince = Date.now();
    await post(PATHS.generate, { phone_number: sms.phone }, { ip });
    const text = await mock.waitForMessage(sms.phone, 10_000, { since: smsSince });
    const smsLogin = await post(PATHS.verify, { phone_number: sms.phone, otp_code: text.code }, { ip });
    assert.equal(smsLogin.status, 200, describeResponse(smsLogin));
    await send("GET", "/auth/api/mobile/nothing-here/", { ip });
    await worker.waitForLog(/\{"route":"not-found","status":404,"error":"not_found","ms":\d+\}/, 10_000, { from });
    // Deferred work (delivery, audit rows) may log after the answers; give it a moment.
    await new Promise((r) => setTimeout(r, 1500));

    const output = worker.logs().slice(from);
    const lines = output
      .split("\n")
      .map((line) => line.slice(line.indexOf("{")))
      .filter((line) => line.startsWith('{"route":'))
      .map((line) => JSON.parse(line));
    assert.deepEqual(
      lines.map(({ route, status, error }) => [route, status, error]),
      [
        ["generate-otp", 200, null],
        ["verify-otp", 400, "otp_invalid"],
        ["verify-otp", 200, null],
        ["me", 200, null],
        ["refresh", 200, null],
        ["session", 200, null],
        ["logout", 401, "invalid_token"],
        ["generate-otp", 200, null],
        ["verify-otp", 200, null],
        ["not-found", 404, "not_found"],
      ],
      output,
    );
    for (const line of lines) {
      assert.deepEqual(Object.keys(line), ["route", "status", "error", "ms"]);
      assert.ok(Number.isInteger(line.ms) && line.ms >= 0, JSON.stringify(line));
    }
    const secrets = {
      code,
      "the SMS code": text.code,
      token: login.body.token,
      "refresh token": login.body.refresh_token,
      "new token": refreshed.body.token,
      "new refresh token": refreshed.body.refresh_token,
      "SMS token": smsLogin.body.token,
      email: who.email,
      "email's local part": who.email.split("@")[0],
      "phone number": sms.phone.slice(1),
    };
    for (const [what, value] of Object.entries(secrets)) {
      assert.ok(!output.includes(value), `the ${what} (${value}) appears in the log:\n${output}`);
    }
  });

  test("every documented operation and client error code was seen in a real answer", () => {
    for (const [p, item] of Object.entries(doc.paths)) {
      for (const method of Object.keys(item)) {
        if (p === DOC_URL) continue;
        const key = `${method.toUpperCase()} ${p}`;
        assert.ok(seen.some((s) => s.key === key && s.status === 200), `a 200 from ${key}`);
      }
    }
    const documented = resolve(doc.components.schemas.Error).properties.error.properties.code.enum;
    // Server faults cannot be provoked from outside: internal_error, and origin_unavailable (gateway mode only).
    const faults = ["internal_error", "origin_unavailable"];
    const unseen = documented.filter((c) => !faults.includes(c) && !seen.some((s) => s.code === c));
    assert.deepEqual(unseen, [], "every client error code was produced by the worker and matched the document");
  });
});
