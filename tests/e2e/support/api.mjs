// Small HTTP client and assertions for the login API.

import assert from "node:assert/strict";

export const PATHS = Object.freeze({
  generate: "/auth/api/mobile/generate-otp/",
  verify: "/auth/api/mobile/verify-otp/",
  resend: "/auth/api/mobile/resend-otp/",
  logout: "/auth/api/mobile/logout/",
  me: "/auth/api/mobile/me/",
  refresh: "/auth/api/mobile/refresh/",
});

const REQUEST_TIMEOUT_MS = 20_000;

/**
 * Sends one request. options: json (serialised as the body, Content-Type application/json), body (raw string or
 * Buffer), headers, token ("Token <t>" unless scheme given), scheme, ip (CF-Connecting-IP).
 * Resolves with { status, headers, text, body } where body is the parsed JSON or undefined.
 */
export async function call(baseUrl, method, path, options = {}) {
  const headers = { ...(options.headers ?? {}) };
  let body = options.body;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) headers["Content-Type"] = "application/json";
  }
  if (options.token !== undefined) headers.Authorization = `${options.scheme ?? "Token"} ${options.token}`;
  if (options.ip) headers["CF-Connecting-IP"] = options.ip;
  const res = await fetch(baseUrl + path, {
    method,
    headers,
    body,
    redirect: "manual",
    signal: AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: parsed, method, path };
}

export function client(baseUrl, defaults = {}) {
  const merge = (o) => ({ ...defaults, ...o, headers: { ...(defaults.headers ?? {}), ...(o?.headers ?? {}) } });
  return {
    call: (method, path, o) => call(baseUrl, method, path, merge(o)),
    post: (path, json, o) => call(baseUrl, "POST", path, merge({ ...o, json })),
    get: (path, o) => call(baseUrl, "GET", path, merge(o)),
  };
}

export function describeResponse(res) {
  const hdrs = {};
  res.headers.forEach((v, k) => {
    hdrs[k] = v;
  });
  return `${res.method} ${res.path} -> ${res.status} ${res.text.slice(0, 600)} headers=${JSON.stringify(hdrs)}`;
}

/** Asserts an error answer: status, JSON content type, {"error": {"code", "message"}}. Returns the error object. */
export function assertError(res, status, code) {
  const codes = Array.isArray(code) ? code : [code];
  assert.equal(res.status, status, `expected ${status} ${codes.join("|")}: ${describeResponse(res)}`);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/i, `JSON content type: ${describeResponse(res)}`);
  assert.ok(res.body && typeof res.body.error === "object" && res.body.error !== null, `error object: ${describeResponse(res)}`);
  assert.ok(codes.includes(res.body.error.code), `error code ${codes.join("|")}: ${describeResponse(res)}`);
  assert.equal(typeof res.body.error.message, "string", `error.message: ${describeResponse(res)}`);
  assert.ok(res.body.error.message.length > 0, `error.message not empty: ${describeResponse(res)}`);
  if (status === 429) assertRetryAfter(res);
  if (status === 401) assert.ok(res.headers.get("www-authenticate"), `401 needs WWW-Authenticate: ${describeResponse(res)}`);
  return res.body.error;
}

export function assertRetryAfter(res) {
  const ra = res.headers.get("retry-after");
  assert.match(ra ?? "", /^\d+$/, `Retry-After as whole seconds: ${describeResponse(res)}`);
  assert.ok(Number(ra) >= 1, `Retry-After >= 1: ${describeResponse(res)}`);
  const ras = res.body?.error?.retry_after_seconds;
  assert.ok(Number.isInteger(ras) && ras >= 1, `error.retry_after_seconds: ${describeResponse(res)}`);
  return Number(ra);
}

/** Asserts a generate-otp / resend-otp success answer. */
export function assertOtpSent(res, { otpType, contactInfo }) {
  assert.equal(res.status, 200, describeResponse(res));
  const b = res.body;
  assert.equal(typeof b?.message, "string", describeResponse(res));
  assert.equal(b.otp_type, otpType, describeResponse(res));
  assert.equal(b.contact_info, contactInfo, describeResponse(res));
  assert.equal(b.expires_in_minutes, 10, describeResponse(res));
  assert.ok(Number.isInteger(b.resend_available_in_seconds) && b.resend_available_in_seconds >= 0, describeResponse(res));
}

/** Asserts the user object's shape (and values when given). */
export function assertUser(user, expected = {}) {
  assert.ok(user && typeof user === "object", `user object: ${JSON.stringify(user)}`);
  for (const key of ["id", "email", "first_name", "last_name", "phone_number", "is_active", "profile", "groups"]) {
    assert.ok(key in user, `user.${key} present: ${JSON.stringify(user)}`);
  }
  assert.ok(user.profile && typeof user.profile === "object", `user.profile: ${JSON.stringify(user)}`);
  for (const key of ["phone_number", "branch", "designation"]) {
    assert.ok(key in user.profile, `user.profile.${key} present: ${JSON.stringify(user)}`);
  }
  assert.ok(Array.isArray(user.groups), `user.groups array: ${JSON.stringify(user)}`);
  assert.equal(user.is_active, true, `user.is_active: ${JSON.stringify(user)}`);
  if (expected.email !== undefined) assert.equal(user.email, expected.email);
  if (expected.firstName !== undefined) assert.equal(user.first_name, expected.firstName);
  if (expected.lastName !== undefined) assert.equal(user.last_name, expected.lastName);
  if (expected.phone !== undefined) {
    assert.equal(user.phone_number, expected.phone);
    assert.equal(user.profile.phone_number, expected.phone);
  }
  if (expected.branch !== undefined) assert.equal(user.profile.branch, expected.branch);
  if (expected.designation !== undefined) assert.equal(user.profile.designation, expected.designation);
  if (expected.groups !== undefined) for (const g of expected.groups) assert.ok(user.groups.includes(g), `group ${g} in ${JSON.stringify(user.groups)}`);
}

/** Asserts a verify-otp success; returns the token. */
export function assertLogin(res, expectedUser = {}) {
  assert.equal(res.status, 200, describeResponse(res));
  const b = res.body;
  assertUser(b?.user, expectedUser);
  assert.match(b.token ?? "", /^[0-9a-f]{64}$/, `token is 64 hex chars: ${describeResponse(res)}`);
  assert.equal(b.token_type, "Token", describeResponse(res));
  assert.ok(Number.isInteger(b.expires_in) && b.expires_in > 0 && b.expires_in <= 30 * 86400, describeResponse(res));
  assert.equal(b.message, "Login successful", describeResponse(res));
  return b.token;
}

/** A six-digit code different from `code`. */
export function wrongCode(code, i = 0) {
  return String((Number(code) + 1 + i) % 1_000_000).padStart(6, "0");
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value or timeoutMs passes; resolves with the last value. */
export async function poll(fn, { timeoutMs = 10_000, intervalMs = 300 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) return last;
    await sleep(intervalMs);
  }
}

/** Fails if any provider request since `since` (ms) broke the provider's real format. */
export function assertMockClean(mock, since) {
  const errors = mock.validationErrors.filter((e) => e.at >= since);
  assert.deepEqual(errors, [], "every provider request had the provider's real format");
}

/** A code-request answer without the fields that echo the request, for comparing answers across identifiers. */
export function withoutEcho(body) {
  const { contact_info: _c, otp_type: _t, ...rest } = body ?? {};
  return rest;
}

/** Polls `fn` until it returns something truthy (every 500 ms, up to `timeoutMs`), asserting that it did. */
export async function eventually(fn, what, timeoutMs = 15_000) {
  const result = await poll(fn, { timeoutMs, intervalMs: 500 });
  assert.ok(result, what);
  return result;
}

/** Asks `api` (a `client`) for a code for `email`, waiting out a resend cooldown left by an earlier request. */
export async function requestCode(api, email, ip) {
  let gen = await api.post(PATHS.generate, { email }, { ip });
  if (gen.status === 429 && gen.body?.error?.code === "resend_cooldown") {
    await sleep(1000 * Number(gen.headers.get("retry-after")) + 100);
    gen = await api.post(PATHS.generate, { email }, { ip });
  }
  assert.equal(gen.status, 200, describeResponse(gen));
}

/**
 * Logs `email` in through `api` (a `client`), with the code the mock provider received; a resend cooldown left by
 * an earlier request is waited out. Returns the access and refresh tokens.
 */
export async function logInByEmail(api, mock, email, ip) {
  const since = Date.now();
  await requestCode(api, email, ip);
  const { code } = await mock.waitForMessage(email, 10_000, { since });
  const res = await api.post(PATHS.verify, { email, otp_code: code }, { ip });
  return { token: assertLogin(res), refresh: res.body.refresh_token };
}

/** The access token and the refresh token of a login are both dead now. */
export async function assertSignedOut(api, { token, refresh }, ip) {
  const me = await api.get(PATHS.me, { token, ip });
  assert.equal(me.status, 401, `access token dead at once: ${describeResponse(me)}`);
  const refreshed = await api.post(PATHS.refresh, { refresh_token: refresh }, { ip });
  assert.equal(refreshed.status, 401, `refresh token dead at once: ${describeResponse(refreshed)}`);
}
