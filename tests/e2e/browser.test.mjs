// A real browser as a client: Debian's Chromium, headless, driven by playwright-core. A page served from an allowed
// origin logs in, lists the user's sessions, ends one (DELETE, preflighted), and reads Retry-After from a 429; the
// same calls from a page on an origin that is not on CORS_ALLOWED_ORIGINS are refused by the browser itself (the
// script sees a network error, never the answer). Everything on 127.0.0.1; each origin is its own port.

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { chromium } from "playwright-core";

import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, startWorker } from "./support/worker.mjs";

const CHROMIUM = "/usr/bin/chromium";
const T = { timeout: 120_000 };
const PAGE = "<!doctype html><html><head><meta charset=utf-8><title>CRM web companion</title></head><body></body></html>";

/** A static server on 127.0.0.1 that serves one page: an origin of its own. */
function servePage() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
      res.end(PAGE);
    });
    server.listen(0, "127.0.0.1", () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

/** Runs one fetch in the page; returns { status, body, retryAfter } or { error } when the browser refused it. */
function pageFetch(page, url, init) {
  return page.evaluate(
    async ({ url, init }) => {
      try {
        const res = await fetch(url, init);
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : null, retryAfter: res.headers.get("Retry-After") };
      } catch (e) {
        return { error: `${e.name}: ${e.message}` };
      }
    },
    { url, init },
  );
}

const json = (body, token) => ({
  method: "POST",
  headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Token ${token}` } : {}) },
  body: JSON.stringify(body),
});

describe("a browser client: CORS as Chromium enforces it", { timeout: 600_000 }, () => {
  let mock;
  let worker;
  let allowed;
  let other;
  let browser;
  let profile;
  const api = (p) => `${worker.url}/auth/api/mobile/${p}`;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is not installed: run sh scripts/bootstrap.sh`);
    [allowed, other] = await Promise.all([servePage(), servePage()]);
    mock = await startMockProviders();
    worker = await startWorker({
      vars: { ...mock.workerVars(), CORS_ALLOWED_ORIGINS: allowed.origin, OTP_RESEND_COOLDOWN_SECONDS: "60" },
    });
    profile = mkdtempSync(path.join(os.tmpdir(), "chromium-profile-"));
    // A fresh profile directory each run (playwright passes it to Chromium as --user-data-dir).
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      timeout: 60_000,
    });
  });

  after(async () => {
    await browser?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await worker?.stop();
    await mock?.close();
    allowed?.server.close();
    other?.server.close();
  });

  async function openPage(origin) {
    const page = await browser.newPage();
    await page.goto(`${origin}/companion.html`);
    return page;
  }

  /** Logs in from the page by email or phone; the code is read from the provider mock, as the user reads it. */
  async function logIn(page, field, identifier) {
    const since = Date.now();
    const gen = await pageFetch(page, api("generate-otp/"), json({ [field]: identifier }));
    assert.equal(gen.status, 200, JSON.stringify(gen));
    const msg = await mock.waitForMessage(identifier, 10_000, { since });
    const ver = await pageFetch(page, api("verify-otp/"), json({ [field]: identifier, otp_code: msg.code }));
    assert.equal(ver.status, 200, JSON.stringify(ver));
    return ver.body;
  }

  test("from an allowed origin a page logs in, lists its sessions, ends one with DELETE and reads Retry-After", T, async () => {
    const page = await openPage(allowed.origin);
    const e = SEED.employees[15];
    const laptop = await logIn(page, "email", e.email);
    const phone = await logIn(page, "phone_number", e.phone);

    const listed = await pageFetch(page, api("sessions/"), { headers: { Authorization: `Token ${phone.token}` } });
    assert.equal(listed.status, 200, JSON.stringify(listed));
    assert.deepEqual(listed.body.sessions.map((s) => s.id).sort(), [laptop.session_id, phone.session_id].sort());

    // DELETE is not a simple method: the browser sends the preflight first and needs DELETE in its answer.
    const ended = await pageFetch(page, api(`sessions/${laptop.session_id}/`), {
      method: "DELETE",
      headers: { Authorization: `Token ${phone.token}` },
    });
    assert.equal(ended.status, 200, JSON.stringify(ended));
    const me = await pageFetch(page, api("me/"), { headers: { Authorization: `Token ${laptop.token}` } });
    assert.equal(me.status, 401, JSON.stringify(me));

    // A second code within the cooldown: 429, and the script can read how long to wait.
    const again = await pageFetch(page, api("generate-otp/"), json({ email: e.email }));
    assert.equal(again.status, 429, JSON.stringify(again));
    assert.ok(Number(again.retryAfter) > 0 && Number(again.retryAfter) <= 60, `Retry-After readable: ${JSON.stringify(again)}`);

    // Logout with the refresh token alone, as an app whose access token expired does.
    const out = await pageFetch(page, api("logout/"), json({ refresh_token: phone.refresh_token }));
    assert.equal(out.status, 200, JSON.stringify(out));
    await page.close();
  });

  test("from an origin not on the list every call is blocked by the browser", T, async () => {
    const page = await openPage(other.origin);
    const e = SEED.employees[14];
    const calls = [
      ["generate-otp", api("generate-otp/"), json({ email: e.email })],
      ["verify-otp", api("verify-otp/"), json({ email: e.email, otp_code: "123456" })],
      ["me", api("me/"), { headers: { Authorization: `Token ${"ab".repeat(32)}` } }],
      ["sessions", api("sessions/"), { headers: { Authorization: `Token ${"ab".repeat(32)}` } }],
      ["delete", api("sessions/1/"), { method: "DELETE", headers: { Authorization: `Token ${"ab".repeat(32)}` } }],
      // A "simple" request (no preflight): it reaches the worker, but the browser withholds the answer.
      ["simple POST", api("generate-otp/"), { method: "POST", headers: { "Content-Type": "text/plain" }, body: "{}" }],
    ];
    for (const [name, url, init] of calls) {
      const result = await pageFetch(page, url, init);
      assert.ok(result.error, `${name}: the browser let the page read the answer: ${JSON.stringify(result)}`);
      assert.match(result.error, /TypeError/, name);
    }
    await page.close();
  });
});
