// Sessions end to end: the token pair from verify-otp, refresh rotation and reuse detection (also under 20
// parallel refreshes), the device list, revoking one session, logout-all, revocation through the admin library
// (scripts/lib/revoke.mjs), raw-SQL deactivation and its documented bound, and the cleanup of old sessions.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { assertError, assertLogin, client, describeResponse, eventually, PATHS, sleep } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, loginEventsFor, startWorker } from "./support/worker.mjs";
import { revokeUserAccess } from "../../scripts/lib/revoke.mjs";

const MOBILE = "/auth/api/mobile";
const P = Object.freeze({
  refresh: `${MOBILE}/refresh/`,
  logoutAll: `${MOBILE}/logout-all/`,
  sessions: `${MOBILE}/sessions/`,
  session: (id) => `${MOBILE}/sessions/${id}/`,
});
const ACCESS_TTL = 120;
const GRACE = 5; // REFRESH_REUSE_GRACE_SECONDS here: short, so that the tests can wait it out.
const COOLDOWN_WAIT_MS = 2200; // OTP_RESEND_COOLDOWN_SECONDS is 1 here.
const T = { timeout: 120_000 };

let mock;
let worker;
let api;

/** Logs `email` in from a device with this User-Agent; returns the verify-otp body. */
async function logIn(email, userAgent = "CRM-Mobile/2.0 (Android 15)") {
  const since = Date.now();
  const gen = await api.post(PATHS.generate, { email });
  assert.equal(gen.status, 200, describeResponse(gen));
  const msg = await mock.waitForMessage(email, 10_000, { since });
  const res = await api.post(PATHS.verify, { email, otp_code: msg.code }, { headers: { "User-Agent": userAgent } });
  assertLogin(res, { email });
  return res.body;
}

const me = (token) => api.get(PATHS.me, { token });
const refresh = (refreshToken) => api.post(P.refresh, { refresh_token: refreshToken });
const sq = (s) => `'${s.replaceAll("'", "''")}'`;

describe("sessions: refresh rotation, device list, logout-all and revocation", { timeout: 900_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({
      vars: {
        ...mock.workerVars(),
        OTP_RESEND_COOLDOWN_SECONDS: "1",
        ACCESS_TOKEN_TTL_SECONDS: String(ACCESS_TTL),
        REFRESH_REUSE_GRACE_SECONDS: String(GRACE),
      },
    });
    api = client(worker.url);
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("verify-otp keeps the seed's fields and adds a refresh token, both lifetimes and the session id", T, async () => {
    const body = await logIn(SEED.employees[0].email);
    assert.equal(body.expires_in, ACCESS_TTL, "token is the short-lived access token");
    assert.match(body.refresh_token, /^[0-9a-f]{64}$/);
    assert.notEqual(body.refresh_token, body.token);
    assert.equal(body.refresh_expires_in, 30 * 86_400);
    assert.ok(Number.isInteger(body.session_id), JSON.stringify(body));

    const who = await me(body.token);
    assert.equal(who.status, 200, describeResponse(who));
    assert.deepEqual(who.body.user, body.user);
    assert.equal(who.body.session_id, body.session_id);

    // Only digests are stored: neither token appears in D1.
    const rows = await worker.d1(
      `SELECT s.access_digest, r.digest FROM sessions s JOIN refresh_tokens r ON r.session_id = s.id WHERE s.id = ${body.session_id}`,
    );
    assert.equal(rows.length, 1);
    assert.ok(!JSON.stringify(rows).includes(body.token) && !JSON.stringify(rows).includes(body.refresh_token));
  });

  test("a refresh rotates both tokens; the rotated-out refresh token presented after the grace period revokes the session", T, async () => {
    const e = SEED.employees[1];
    const first = await logIn(e.email);
    const second = await refresh(first.refresh_token);
    assert.equal(second.status, 200, describeResponse(second));
    assert.equal(second.body.session_id, first.session_id);
    assert.equal(second.body.expires_in, ACCESS_TTL);
    assert.equal(second.body.token_type, "Token");
    assert.deepEqual(second.body.user, first.user);
    for (const t of [second.body.token, second.body.refresh_token]) assert.match(t, /^[0-9a-f]{64}$/);
    assert.notEqual(second.body.refresh_token, first.refresh_token);

    assertError(await me(first.token), 401, "invalid_token"); // the replaced access token is deleted
    assert.equal((await me(second.body.token)).status, 200);

    // The thief (or the owner) replays the old refresh token after the grace period: the whole session dies.
    await sleep(GRACE * 1000 + 1500);
    assertError(await refresh(first.refresh_token), 401, "invalid_token");
    assertError(await me(second.body.token), 401, "invalid_token");
    assertError(await refresh(second.body.refresh_token), 401, "invalid_token");
    const [row] = await worker.d1(`SELECT revoked_reason FROM sessions WHERE id = ${first.session_id}`);
    assert.equal(row.revoked_reason, "refresh token reused");

    const events = await eventually(async () => {
      const rows = await loginEventsFor(worker, e.email);
      return rows.some((r) => r.event === "refresh_reused") ? rows : null;
    }, "a refresh_reused event is recorded");
    assert.ok(events.some((r) => r.event === "refresh" && r.detail === `session ${first.session_id}`));
  });

  test("20 parallel refreshes with one refresh token: one rotates it, the other 19 are retries and all 20 pairs work", T, async () => {
    const body = await logIn(SEED.employees[2].email);
    const answers = await Promise.all(Array.from({ length: 20 }, () => refresh(body.refresh_token)));
    for (const r of answers) assert.equal(r.status, 200, describeResponse(r));
    assert.ok(answers.every((r) => r.body.session_id === body.session_id), "all for the same session");
    const [{ n }] = await worker.d1(`SELECT count(*) AS n FROM refresh_tokens WHERE session_id = ${body.session_id}`);
    assert.equal(n, 21, "the first token and twenty successors");
    const [{ rotated }] = await worker.d1(
      `SELECT count(*) AS rotated FROM refresh_tokens WHERE session_id = ${body.session_id} AND replaced_by IS NOT NULL`,
    );
    assert.equal(rotated, 1, "one rotation; the others were served as retries");
    const [row] = await worker.d1(`SELECT revoked_at FROM sessions WHERE id = ${body.session_id}`);
    assert.equal(row.revoked_at, null, "no reuse");
    for (const r of [answers[0], answers[19]]) assert.equal((await me(r.body.token)).status, 200);
  });

  test("two parallel refreshes of one token both work, and so do both of their refresh tokens", T, async () => {
    const body = await logIn(SEED.employees[13].email);
    const [a, b] = await Promise.all([refresh(body.refresh_token), refresh(body.refresh_token)]);
    assert.equal(a.status, 200, describeResponse(a));
    assert.equal(b.status, 200, describeResponse(b));
    await sleep(GRACE * 1000 + 1500);
    for (const pair of [a.body, b.body]) {
      const next = await refresh(pair.refresh_token);
      assert.equal(next.status, 200, describeResponse(next));
      assert.equal((await me(next.body.token)).status, 200);
    }
  });

  test("a refresh whose answer was lost, retried within the grace period, works, and so does the retry's refresh token", T, async () => {
    const body = await logIn(SEED.employees[12].email);
    const lost = await refresh(body.refresh_token); // the app never sees this answer
    assert.equal(lost.status, 200, describeResponse(lost));
    const retried = await refresh(body.refresh_token);
    assert.equal(retried.status, 200, describeResponse(retried));
    assert.equal(retried.body.session_id, body.session_id);
    assert.equal((await me(retried.body.token)).status, 200);
    await sleep(GRACE * 1000 + 1500);
    const next = await refresh(retried.body.refresh_token);
    assert.equal(next.status, 200, describeResponse(next));
    assert.equal((await me(next.body.token)).status, 200);
    const [row] = await worker.d1(`SELECT revoked_at FROM sessions WHERE id = ${body.session_id}`);
    assert.equal(row.revoked_at, null);
  });

  test("logout with the refresh token alone (no Authorization) ends that session; a retry answers the same", T, async () => {
    const e = SEED.employees[11];
    const body = await logIn(e.email);
    await sleep(COOLDOWN_WAIT_MS);
    const other = await logIn(e.email);
    const out = await api.post(PATHS.logout, { refresh_token: body.refresh_token });
    assert.equal(out.status, 200, describeResponse(out));
    assertError(await refresh(body.refresh_token), 401, "invalid_token");
    assertError(await me(body.token), 401, "invalid_token");
    assert.equal((await me(other.token)).status, 200, "only that session ended");
    const again = await api.post(PATHS.logout, { refresh_token: body.refresh_token });
    assert.equal(again.status, 200, describeResponse(again));
    assertError(await api.post(PATHS.logout, { refresh_token: "ab".repeat(32) }), 401, "invalid_token");
    assertError(await api.post(PATHS.logout, { refresh_token: 7 }), 400, "invalid_request");
    assertError(await api.post(PATHS.logout, {}), 401, "not_authenticated");
    const [row] = await worker.d1(`SELECT revoked_reason FROM sessions WHERE id = ${body.session_id}`);
    assert.equal(row.revoked_reason, "logout");
    const events = await eventually(async () => {
      const rows = await loginEventsFor(worker, e.email);
      return rows.some((r) => r.event === "logout") ? rows : null;
    }, "a logout event");
    assert.equal(events.filter((r) => r.event === "logout").length, 1, "the retry ended nothing");
  });

  test("the refresh token's lifetime never passes SESSION_MAX_DAYS after the login", T, async () => {
    const body = await logIn(SEED.employees[14].email);
    // Move the login 89 days into the past: the next refresh may extend the session by one day at most.
    await worker.d1(`UPDATE sessions SET created_at = created_at - 89 * 86400 WHERE id = ${body.session_id}`);
    const next = await refresh(body.refresh_token);
    assert.equal(next.status, 200, describeResponse(next));
    assert.ok(next.body.refresh_expires_in <= 86_400 && next.body.refresh_expires_in > 86_000, String(next.body.refresh_expires_in));
  });

  test("20 parallel correct submissions of one code start exactly one session", T, async () => {
    const e = SEED.employees[3];
    const since = Date.now();
    await api.post(PATHS.generate, { email: e.email });
    const msg = await mock.waitForMessage(e.email, 10_000, { since });
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => api.post(PATHS.verify, { email: e.email, otp_code: msg.code })),
    );
    assert.equal(answers.filter((r) => r.status === 200).length, 1);
    const [{ n }] = await worker.d1(
      `SELECT count(*) AS n FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = ${sq(e.email)})`,
    );
    assert.equal(n, 1);
  });

  test("the device list shows each session; revoking one ends only that one; logout-all ends the rest", T, async () => {
    const e = SEED.employees[4];
    const phone = await logIn(e.email, "CRM-Mobile/2.0 (iPhone)");
    await sleep(COOLDOWN_WAIT_MS);
    const tablet = await logIn(e.email, "CRM-Mobile/2.0 (iPad)");
    await sleep(COOLDOWN_WAIT_MS);
    const laptop = await logIn(e.email, "CRM-Mobile/2.0 (Android tablet)");

    const list = await api.get(P.sessions, { token: phone.token });
    assert.equal(list.status, 200, describeResponse(list));
    const sessions = list.body.sessions;
    assert.equal(sessions.length, 3, describeResponse(list));
    const mine = sessions.find((s) => s.id === phone.session_id);
    assert.equal(mine.current, true);
    assert.equal(mine.user_agent, "CRM-Mobile/2.0 (iPhone)");
    for (const s of sessions) {
      for (const k of ["created_at", "last_used_at", "expires_at"]) assert.ok(Number.isInteger(s[k]), JSON.stringify(s));
      assert.ok("country" in s && "city" in s, JSON.stringify(s));
    }
    assert.equal(sessions.filter((s) => s.current).length, 1);

    // Revoke the tablet from the phone.
    const del = await api.call("DELETE", P.session(tablet.session_id), { token: phone.token });
    assert.equal(del.status, 200, describeResponse(del));
    assertError(await me(tablet.token), 401, "invalid_token");
    assertError(await refresh(tablet.refresh_token), 401, "invalid_token");
    assert.equal((await me(laptop.token)).status, 200);
    assertError(await api.call("DELETE", P.session(tablet.session_id), { token: phone.token }), 404, "not_found");
    assertError(await api.post(P.session(laptop.session_id), {}, { token: phone.token }), 405, "method_not_allowed");

    // Someone else's session cannot be revoked (nor told apart from a missing one).
    const other = await logIn(SEED.employees[5].email);
    assertError(await api.call("DELETE", P.session(other.session_id), { token: phone.token }), 404, "not_found");
    assert.equal((await me(other.token)).status, 200);

    const all = await api.post(P.logoutAll, undefined, { token: laptop.token });
    assert.equal(all.status, 200, describeResponse(all));
    assert.equal(all.body.sessions_ended, 2);
    for (const s of [phone, laptop]) {
      assertError(await me(s.token), 401, "invalid_token");
      assertError(await refresh(s.refresh_token), 401, "invalid_token");
    }
    assert.equal((await me(other.token)).status, 200, "another user's session is untouched");
    assertError(await api.get(P.sessions, { token: phone.token }), 401, "invalid_token");

    const events = await eventually(async () => {
      const rows = await loginEventsFor(worker, e.email);
      return rows.some((r) => r.event === "logout" && r.detail === "all") ? rows : null;
    }, "a logout event with detail 'all'");
    assert.ok(events.some((r) => r.event === "logout" && r.detail === `session ${tablet.session_id}`));
  });

  test("logout also kills the refresh token", T, async () => {
    const body = await logIn(SEED.employees[6].email);
    assert.equal((await api.post(PATHS.logout, undefined, { token: body.token })).status, 200);
    assertError(await refresh(body.refresh_token), 401, "invalid_token");
  });

  test("bad refresh requests get 4xx, never 5xx", T, async () => {
    assertError(await api.post(P.refresh, {}), 400, "invalid_request");
    assertError(await api.post(P.refresh, { refresh_token: 12 }), 400, "invalid_request");
    assertError(await api.post(P.refresh, { refresh_token: "not-a-token" }), 401, "invalid_token");
    assertError(await api.post(P.refresh, { refresh_token: "ab".repeat(32) }), 401, "invalid_token");
    assertError(await api.get(P.refresh), 405, "method_not_allowed");
    assertError(await api.get(P.sessions), 401, "not_authenticated");
    assertError(await api.post(P.logoutAll), 401, "not_authenticated");
  });

  test("the admin library's revocation ends a deactivated user's sessions at once, and their refresh tokens", T, async () => {
    const e = SEED.employees[7];
    const a = await logIn(e.email);
    await sleep(COOLDOWN_WAIT_MS);
    const b = await logIn(e.email);
    await worker.d1(`UPDATE users SET is_active = 0 WHERE email = ${sq(e.email)}`);
    const result = revokeUserAccess({ email: e.email, reason: "deactivated", persistTo: worker.persistDir });
    assert.deepEqual(result.sessions.sort(), [a.session_id, b.session_id].sort());
    assert.equal(result.keysDeleted, 2);
    for (const s of [a, b]) {
      assertError(await me(s.token), 401, "invalid_token");
      assertError(await refresh(s.refresh_token), 401, "invalid_token");
    }
    const events = (await loginEventsFor(worker, e.email)).filter((r) => r.event === "revoked");
    assert.deepEqual(events.map((r) => r.detail).sort(), [`session ${a.session_id}: deactivated`, `session ${b.session_id}: deactivated`].sort());
    // A second run ends nothing and deletes the same keys again (harmless; it completes a run that failed part-way).
    assert.deepEqual(revokeUserAccess({ email: e.email, reason: "again", persistTo: worker.persistDir }), { sessions: [], keysDeleted: 2 });
  });

  test("removed from every employee group by raw SQL: the access token lives on until it expires or the next refresh", T, async () => {
    const e = SEED.employees[8];
    const body = await logIn(e.email);
    await worker.d1(`DELETE FROM user_groups WHERE user_id = (SELECT id FROM users WHERE email = ${sq(e.email)})`);
    // The access token carries the user as it was at issue: documented bound, ACCESS_TOKEN_TTL_SECONDS.
    const still = await me(body.token);
    assert.equal(still.status, 200, describeResponse(still));
    assert.ok(still.body.user.groups.includes("Employees"));
    // The refresh re-checks D1: refused, the session revoked and its access token deleted.
    assertError(await refresh(body.refresh_token), 401, "invalid_token");
    assertError(await me(body.token), 401, "invalid_token");
    const [row] = await worker.d1(`SELECT revoked_reason FROM sessions WHERE id = ${body.session_id}`);
    assert.equal(row.revoked_reason, "account may no longer log in");
    await eventually(async () => {
      const rows = await loginEventsFor(worker, e.email);
      return rows.some((r) => r.event === "revoked" && r.detail === `session ${body.session_id}: account may no longer log in`);
    }, "a revoked event for the lost access");
  });

  test("without ORIGIN_URL, paths outside /auth/ are 404 JSON even with a token", T, async () => {
    const body = await logIn(SEED.employees[9].email);
    assertError(await api.get("/api/leads/", { token: body.token }), 404, "not_found");
    assertError(await api.get("/"), 404, "not_found");
  });

  test("the daily cleanup removes sessions revoked or expired more than SESSION_RETENTION_DAYS ago", T, async () => {
    const now = Math.floor(Date.now() / 1000);
    const day = 86_400;
    const user = `(SELECT id FROM users WHERE email = ${sq(SEED.employees[10].email)})`;
    const row = (digest, expires, revoked) =>
      `INSERT INTO sessions (user_id, created_at, last_used_at, expires_at, access_digest, access_expires_at, revoked_at)
       VALUES (${user}, ${now - 90 * day}, ${now - 90 * day}, ${expires}, '${digest}', ${now - 89 * day}, ${revoked})`;
    await worker.d1(
      [
        row("old-expired", now - 31 * day, "NULL"),
        row("old-revoked", now + 10 * day, now - 31 * day),
        row("recently-revoked", now + 10 * day, now - 29 * day),
        `INSERT INTO refresh_tokens (digest, session_id, issued_at) SELECT 'r-' || access_digest, id, ${now} FROM sessions WHERE access_digest LIKE 'old-%'`,
      ].join(";\n"),
    );
    const from = worker.logs().length;
    const trigger = await fetch(`${worker.url}/__scheduled?cron=${encodeURIComponent("17 3 * * *")}`);
    assert.equal(trigger.status, 200);
    await worker.waitForLog(/cleanup: removed \d+ counters, \d+ challenges, \d+ audit rows, 2 sessions/, 15_000, { from });
    const left = (await worker.d1(`SELECT access_digest FROM sessions WHERE user_id = ${user}`)).map((r) => r.access_digest);
    assert.deepEqual(left, ["recently-revoked"]);
    const [{ n }] = await worker.d1(`SELECT count(*) AS n FROM refresh_tokens WHERE digest LIKE 'r-old-%'`);
    assert.equal(n, 0);
  });
});
