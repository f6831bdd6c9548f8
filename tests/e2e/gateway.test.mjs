// Gateway mode: with ORIGIN_URL set, requests outside /auth/ need a live access token and reach a local origin
// (node, 127.0.0.1) with signed identity headers. The origin here verifies the signature with node's crypto, the
// same algorithm as the Django middleware in docs/GATEWAY.md.

import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { after, before, beforeEach, describe, test } from "node:test";

import { assertError, assertLogin, client, describeResponse, PATHS } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, startWorker } from "./support/worker.mjs";

const SECRET = "gateway-test-secret-0123456789abcdef-0123456789";
const REPLAY_WINDOW_SECONDS = 60;
const T = { timeout: 120_000 };
const APP_ORIGIN = "https://app.example.com";

/** The origin's check, written from the description in docs/GATEWAY.md only. */
function verify(req) {
  const h = (name) => req.headers[name.toLowerCase()] ?? "";
  const canonical = [
    "v1",
    req.method,
    req.url,
    h("X-Auth-Timestamp"),
    h("X-Auth-User-Id"),
    h("X-Auth-User-Email"),
    h("X-Auth-User-Groups"),
    h("X-Auth-Session-Id"),
  ].join("\n");
  const expected = Buffer.from(createHmac("sha256", SECRET).update(canonical).digest("hex"));
  const given = Buffer.from(h("X-Auth-Signature"));
  const fresh = Math.abs(Date.now() / 1000 - Number(h("X-Auth-Timestamp"))) <= REPLAY_WINDOW_SECONDS;
  return given.length === expected.length && timingSafeEqual(given, expected) && fresh;
}

let origin;
let received = [];
let mock;
let worker;
let api;

function startOrigin() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const valid = verify(req);
        received.push({ method: req.method, url: req.url, headers: req.headers, body, valid });
        if (!valid) {
          res.writeHead(403, { "Content-Type": "application/json" }).end('{"detail":"bad signature"}');
        } else if (req.url.startsWith("/api/cors")) {
          res.writeHead(200, { "Access-Control-Allow-Origin": "*", Vary: "Accept-Encoding", "X-Origin": "crm" }).end("ok");
        } else if (req.url.startsWith("/api/redirect")) {
          res.writeHead(302, { Location: "/api/elsewhere/" }).end();
        } else {
          const user = { id: req.headers["x-auth-user-id"], email: req.headers["x-auth-user-email"] };
          res.writeHead(req.method === "POST" ? 201 : 200, { "Content-Type": "application/json", "X-Origin": "crm" });
          res.end(JSON.stringify({ from: "origin", user, echo: body }));
        }
      });
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function logIn(email) {
  const since = Date.now();
  await api.post(PATHS.generate, { email });
  const msg = await mock.waitForMessage(email, 10_000, { since });
  const res = await api.post(PATHS.verify, { email, otp_code: msg.code });
  assertLogin(res, { email });
  return res.body;
}

describe("gateway mode: the edge authenticates and forwards to the origin", { timeout: 600_000 }, () => {
  before(async () => {
    origin = await startOrigin();
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        ORIGIN_URL: `http://127.0.0.1:${origin.address().port}`,
        GATEWAY_SIGNING_SECRET: SECRET,
        CORS_ALLOWED_ORIGINS: APP_ORIGIN,
      },
    });
    api = client(worker.url);
  });

  beforeEach(() => {
    received = [];
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
    await new Promise((r) => origin?.close(r));
  });

  test("without a token, or with a dead one, the answer is 401 and the origin sees nothing", T, async () => {
    assertError(await api.get("/api/leads/"), 401, "not_authenticated");
    assertError(await api.get("/api/leads/", { token: "ab".repeat(32) }), 401, "invalid_token");
    assertError(await api.post("/api/leads/", { name: "x" }, { token: "garbage" }), 401, "invalid_token");
    assert.deepEqual(received, []);
  });

  test("a GET is forwarded with path, query and the user's identity, signed; the origin's answer comes back as is", T, async () => {
    const body = await logIn(SEED.testUser.email);
    const res = await api.get("/api/leads/?page=2&q=caf%C3%A9", { token: body.token, headers: { Accept: "application/json" } });
    assert.equal(res.status, 200, describeResponse(res));
    assert.equal(res.headers.get("x-origin"), "crm");
    assert.deepEqual(res.body.user, { id: String(body.user.id), email: SEED.testUser.email });
    assert.equal(received.length, 1);
    const seen = received[0];
    assert.equal(seen.valid, true, "the signature verifies with the shared secret");
    assert.equal(seen.method, "GET");
    assert.equal(seen.url, "/api/leads/?page=2&q=caf%C3%A9");
    assert.equal(seen.headers["x-auth-user-groups"], "Employees");
    assert.equal(seen.headers["x-auth-session-id"], String(body.session_id));
    assert.equal(seen.headers.accept, "application/json");
    assert.equal(seen.headers.authorization, undefined, "the edge token is not forwarded");
    assert.ok(Math.abs(Date.now() / 1000 - Number(seen.headers["x-auth-timestamp"])) < 30);
  });

  test("a POST body is forwarded byte for byte, and spoofed identity headers are stripped", T, async () => {
    const body = await logIn(SEED.employees[0].email);
    const payload = JSON.stringify({ name: "Acme", note: "ünïcode ✓", n: [1, 2, 3] });
    const res = await api.call("POST", "/api/leads/", {
      token: body.token,
      body: payload,
      headers: {
        "Content-Type": "application/json",
        "X-Auth-User-Id": "1",
        "X-Auth-User-Email": "admin@example.com",
        "X-Auth-User-Groups": "Administrators",
        "X-Auth-Signature": "0".repeat(64),
        "x-auth-timestamp": "1",
        "X-Auth-Extra": "sneaky",
      },
    });
    assert.equal(res.status, 201, describeResponse(res));
    assert.equal(res.body.echo, payload);
    const seen = received[0];
    assert.equal(seen.valid, true);
    assert.equal(seen.headers["x-auth-user-id"], String(body.user.id));
    assert.equal(seen.headers["x-auth-user-email"], SEED.employees[0].email);
    assert.equal(seen.headers["x-auth-user-groups"], "Employees");
    assert.equal(seen.headers["x-auth-extra"], undefined);
    assert.equal(seen.headers["content-type"], "application/json");
  });

  test("a signature does not verify for another path or method (what the origin's check relies on)", T, async () => {
    const body = await logIn(SEED.employees[1].email);
    await api.call("DELETE", "/api/leads/7/", { token: body.token });
    const seen = received[0];
    assert.equal(seen.valid, true);
    assert.equal(seen.method, "DELETE");
    assert.equal(verify({ ...seen, method: "GET" }), false);
    assert.equal(verify({ ...seen, url: "/api/leads/8/" }), false);
    const stale = { ...seen, headers: { ...seen.headers } };
    stale.headers["x-auth-timestamp"] = String(Number(seen.headers["x-auth-timestamp"]) - REPLAY_WINDOW_SECONDS - 5);
    assert.equal(verify(stale), false, "a changed timestamp breaks the signature");
  });

  test("the origin's answer carries the edge's CORS headers in place of its own, and its Vary extended", T, async () => {
    const body = await logIn(SEED.employees[3].email);
    const res = await api.get("/api/cors/", { token: body.token, headers: { Origin: APP_ORIGIN } });
    assert.equal(res.status, 200, describeResponse(res));
    assert.equal(res.text, "ok");
    assert.equal(res.headers.get("x-origin"), "crm");
    assert.equal(res.headers.get("access-control-allow-origin"), APP_ORIGIN);
    assert.equal(res.headers.get("access-control-expose-headers"), "Retry-After");
    assert.equal(res.headers.get("vary"), "Accept-Encoding, Origin");
  });

  test("redirects from the origin reach the client; /auth/ stays with the edge; a logged-out token is refused", T, async () => {
    const body = await logIn(SEED.employees[2].email);
    const redirect = await api.get("/api/redirect/", { token: body.token });
    assert.equal(redirect.status, 302, describeResponse(redirect));
    assert.equal(redirect.headers.get("location"), "/api/elsewhere/");

    received = [];
    assert.equal((await api.get(PATHS.me, { token: body.token })).status, 200);
    assertError(await api.get("/auth/unknown/", { token: body.token }), 404, "not_found");
    assert.deepEqual(received, [], "the origin never sees /auth/");

    assert.equal((await api.post(PATHS.logout, undefined, { token: body.token })).status, 200);
    assertError(await api.get("/api/leads/", { token: body.token }), 401, "invalid_token");
    assert.deepEqual(received, []);
  });
});
