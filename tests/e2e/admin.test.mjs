// The admin command (`npm run admin`, scripts/admin.mjs) against the local D1 of a running worker, the audit trail
// of a full login and logout, the reporting views of migration 0005, and the administrator's walk-through of
// docs/ADMIN.md: add an employee, see them log in, see their failed attempts, remove their access.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { PATHS, assertError, assertLogin, client, describeResponse, eventually, wrongCode } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { ROOT, SEED, startWorker } from "./support/worker.mjs";

const ADMIN = path.join(ROOT, "scripts", "admin.mjs");
const REFRESH = "/auth/api/mobile/refresh/";
// Generous: each call runs one to three wrangler processes.
const ADMIN_TIMEOUT_MS = 240_000;
const T = { timeout: 300_000 };

let mock;
let worker;
let api;

/** Runs `npm run admin -- ...args` against the test worker's local D1; resolves with { status, stdout, stderr }. */
function admin(...args) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [ADMIN, ...args, "--persist-to", worker.persistDir],
      { cwd: ROOT, timeout: ADMIN_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, NO_COLOR: "1" } },
      (err, stdout, stderr) => resolve({ status: err ? (err.code ?? err.signal) : 0, stdout, stderr }),
    );
  });
}

async function adminOk(...args) {
  const r = await admin(...args);
  assert.equal(r.status, 0, `admin ${args.join(" ")} succeeded:\n${r.stdout}\n${r.stderr}`);
  return r;
}

async function adminJson(...args) {
  return JSON.parse((await adminOk(...args, "--json")).stdout);
}

async function directory(email) {
  const rows = await worker.d1(`SELECT * FROM user_directory WHERE email = '${email}'`);
  return rows[0];
}

/** Logs `email` in through the API (code from the mock provider); returns the token. */
async function logIn(email, ip, headers = {}) {
  const since = Date.now();
  const gen = await api.post(PATHS.generate, { email }, { ip, headers });
  assert.equal(gen.status, 200, describeResponse(gen));
  const { code } = await mock.waitForMessage(email, 10_000, { since });
  const res = await api.post(PATHS.verify, { email, otp_code: code }, { ip, headers });
  return { code, token: assertLogin(res), refresh: res.body.refresh_token };
}

/** Asserts that a code request for `email` is answered as usual and nothing is sent. */
async function assertNoCodeSent(email, ip) {
  const since = Date.now();
  const gen = await api.post(PATHS.generate, { email }, { ip });
  assert.equal(gen.status, 200, describeResponse(gen));
  await mock.expectNoMessage(email, 2500, { since });
}

describe("administration and audit", { timeout: 900_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({ vars: { ...mock.workerVars(), OTP_RESEND_COOLDOWN_SECONDS: "1" } });
    api = client(worker.url);
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("a full login and logout leaves its trail: requested, sent, failed, login, logout, each with IP, country and user agent", T, async () => {
    const u = SEED.employees[0];
    const ip = "203.0.113.77";
    // A client cannot choose its recorded country: only Cloudflare's request.cf counts, not this header.
    const headers = { "User-Agent": "CRM-Mobile/3.1 (e2e)", "CF-IPCountry": "ZZ" };
    const since = Date.now();
    await api.post(PATHS.generate, { email: u.email }, { ip, headers });
    const { code } = await mock.waitForMessage(u.email, 10_000, { since });
    const wrong = await api.post(PATHS.verify, { email: u.email, otp_code: wrongCode(code) }, { ip, headers });
    assertError(wrong, 400, "otp_invalid");
    const token = assertLogin(await api.post(PATHS.verify, { email: u.email, otp_code: code }, { ip, headers }));
    assert.equal((await api.post(PATHS.logout, undefined, { token, ip, headers })).status, 200);

    const trail = await eventually(async () => {
      const rows = await worker.d1(
        `SELECT e.event, e.user_id, u.email, e.channel, e.identifier, e.ip, e.country, e.user_agent FROM login_events e
         LEFT JOIN users u ON u.id = e.user_id WHERE e.ip = '${ip}' ORDER BY e.id`,
      );
      return rows.length >= 5 ? rows : null;
    }, "five audit rows for the login");
    assert.deepEqual(trail.map((r) => r.event), ["code_requested", "code_sent", "code_failed", "login", "logout"]);
    for (const row of trail) {
      assert.equal(row.email, u.email, `every row names the user: ${JSON.stringify(row)}`);
      assert.equal(row.user_agent, headers["User-Agent"]);
      assert.match(row.country ?? "", /^[A-Z]{2}$/, `a country code from request.cf: ${JSON.stringify(row)}`);
      assert.notEqual(row.country, "ZZ", "the CF-IPCountry request header is not trusted");
    }
    for (const row of trail.filter((r) => r.event !== "logout")) {
      assert.equal(row.channel, "email");
      assert.equal(row.identifier, "em********@example.com", "identifiers are stored masked");
    }

    const view = await worker.d1(`SELECT event, email, country, ip FROM recent_login_events WHERE ip = '${ip}' ORDER BY id`);
    assert.deepEqual(view.map((r) => r.event), trail.map((r) => r.event));
    const events = await adminJson("events", "--email", u.email.toUpperCase(), "--limit", "3");
    assert.deepEqual(events.map((e) => e.event), ["logout", "login", "code_failed"], "newest first, for this user only");
  });

  test("add-user normalises with the service's own parsers and adds an employee in one step, who can then log in", T, async () => {
    const r = await adminOk(
      "add-user", "--email", "  Jane.Doe@Example.COM ", "--first-name", "Jane", "--last-name", "Doe",
      "--phone", "+44 (7700) 900-123", "--branch", "North", "--designation", "Engineer", "--locale", "ES_MX",
      "--group", "Employees",
    );
    assert.match(r.stdout, /added jane\.doe@example\.com to Employees/);
    const row = await directory("jane.doe@example.com");
    assert.equal(row.phone_number, "+447700900123");
    assert.equal(row.branch, "North");
    assert.equal(row.designation, "Engineer");
    assert.equal(row.locale, "es-MX", "the locale is normalised by Locale::parse");
    assert.equal(row.groups, "Employees");
    assert.equal(row.may_log_in, 1);

    const since = Date.now();
    await api.post(PATHS.generate, { phone_number: "+447700900123" }, { ip: "203.0.113.78" });
    const sms = await mock.waitForMessage("+447700900123", 10_000, { since });
    const login = await api.post(PATHS.verify, { phone_number: "+447700900123", otp_code: sms.code }, { ip: "203.0.113.78" });
    assertLogin(login, { email: "jane.doe@example.com", firstName: "Jane", branch: "North", groups: ["Employees"] });
  });

  test("input the service would refuse is refused with a clear message, and nothing is written", T, async () => {
    const before = await worker.d1("SELECT count(*) AS n FROM users");
    const cases = [
      [["add-user", "--email", "nobody@localhost"], /email "nobody@localhost" is not an address the service accepts/],
      [["add-user", "--email", "ok@example.com", "--phone", "07700 900123"], /needs the international form/],
      [["add-user", "--email", "ok@example.com", "--phone", "+1 234 abc"], /may hold only digits/],
      [["add-user", "--email", "jane.doe@example.com"], /a user with this email already exists/],
      [["add-user", "--email", "ok@example.com", "--phone", "+1234567890"], /another user already has this phone number/],
      [["add-user", "--email", "ok@example.com", "--group", "Nobody"], /no group has this name/],
      [["add-user", "--email", "ok@example.com", "--first-name", "x".repeat(151)], /longer than 150/],
      [["add-user", "--email", "ok@example.com", "--locale", "spanish"], /locale "spanish" is not a language tag/],
      [["update-user", "--email", "ghost@example.com", "--branch", "X"], /no user has this email/],
      [["deactivate", "--email", "ghost@example.com"], /no user has this email/],
      [["add-to-group", "--email", "ok@example.com", "--group", "Employees"], /no user has this email/],
      [["events", "--event", "hacked"], /--event must be one of/],
    ];
    for (const [args, message] of cases) {
      const r = await admin(...args);
      assert.equal(r.status, 1, `admin ${args.join(" ")} is refused: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message, `admin ${args.join(" ")}`);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace for a refusal");
    }
    for (const args of [["frobnicate"], ["add-user"], ["add-user", "--email"], ["set-group", "--name", "X"], ["list", "--email", "a@b.co"]]) {
      const r = await admin(...args);
      assert.equal(r.status, 2, `admin ${args.join(" ")} is a usage error: ${r.stderr}`);
      assert.match(r.stderr, /Usage: npm run admin/);
    }
    const remoteAndLocal = await admin("list", "--remote");
    assert.equal(remoteAndLocal.status, 2, "--remote and --persist-to together are refused");
    assert.deepEqual(await worker.d1("SELECT count(*) AS n FROM users"), before, "no user was added by any refused call");
    assert.equal((await worker.d1("SELECT count(*) AS n FROM users WHERE email = 'ok@example.com'"))[0].n, 0);
  });

  test("a change that fails part-way leaves nothing half-written", T, async () => {
    // The admin view's trigger inserts the user, then the profile; the profile's CHECK refuses a number that is not
    // E.164 (the admin command never lets one through, so this goes to the view directly). The user row must not stay.
    await assert.rejects(
      worker.d1(`INSERT INTO admin_user_changes (mode, email, phone_number, group_name)
                 VALUES ('add', 'half@example.com', '0770', 'Employees')`),
      /CHECK constraint failed/,
    );
    assert.equal((await worker.d1("SELECT count(*) AS n FROM users WHERE email = 'half@example.com'"))[0].n, 0);
    // Several statements in one `wrangler d1 execute` are one transaction locally as well.
    await assert.rejects(
      worker.d1(`INSERT INTO groups (name) VALUES ('Half'); INSERT INTO groups (name) VALUES ('Employees')`),
      /UNIQUE constraint failed/,
    );
    assert.equal((await worker.d1("SELECT count(*) AS n FROM groups WHERE name = 'Half'"))[0].n, 0);
  });

  test("update-user changes only the fields given, can rename the account and remove the phone", T, async () => {
    await adminOk("update-user", "--email", "jane.doe@example.com", "--branch", "South", "--new-email", "Jane@Example.com");
    const renamed = await directory("jane@example.com");
    assert.equal(renamed.branch, "South");
    assert.equal(renamed.designation, "Engineer", "untouched");
    assert.equal(renamed.phone_number, "+447700900123", "untouched");
    assert.equal(await directory("jane.doe@example.com"), undefined);

    await adminOk("update-user", "--email", "jane@example.com", "--remove-phone", "--first-name", "Janet", "--remove-locale");
    const updated = await directory("jane@example.com");
    assert.equal(updated.phone_number, null);
    assert.equal(updated.first_name, "Janet");
    assert.equal(updated.locale, null);
    await adminOk("update-user", "--email", "jane@example.com", "--locale", "fr");
    assert.equal((await directory("jane@example.com")).locale, "fr");
    await adminOk("update-user", "--email", "jane@example.com", "--phone", "+44 7700 900124");
    assert.equal((await directory("jane@example.com")).phone_number, "+447700900124");
  });

  test("group membership, employee groups, deactivation: access follows at the next login, each loss is recorded", T, async () => {
    const u = SEED.employees[1];
    const ip = "203.0.113.79";
    const { token, refresh } = await logIn(u.email, ip);

    const removed = await adminOk("remove-from-group", "--email", u.email, "--group", "Employees");
    assert.match(removed.stdout, new RegExp(`${u.email} can no longer log in \\(removed from Employees\\)`));
    assert.equal((await directory(u.email)).may_log_in, 0);
    await assertNoCodeSent(u.email, ip);
    assertError(await api.get(PATHS.me, { token }), 401, "invalid_token");
    assertError(await api.post(REFRESH, { refresh_token: refresh }), 401, "invalid_token");
    await adminOk("add-to-group", "--email", u.email, "--group", "Employees");
    await logIn(u.email, ip);

    // Contractors is not an employee group; marking it lets its members in, unmarking takes them out again.
    const outsider = SEED.outsider.email;
    await assertNoCodeSent(outsider, ip);
    await adminOk("set-group", "--name", "Contractors", "--employee");
    await logIn(outsider, ip);
    const unmarked = await adminOk("set-group", "--name", "Contractors", "--not-employee");
    assert.match(unmarked.stdout, new RegExp(`${outsider} can no longer log in`));
    const groups = await adminJson("groups");
    assert.deepEqual(groups.find((g) => g.name === "Contractors"), { name: "Contractors", is_employee_group: 0, members: 1 });

    const v = SEED.employees[2];
    const session = await logIn(v.email, ip);
    const off = await adminOk("deactivate", "--email", v.email);
    assert.match(off.stdout, new RegExp(`${v.email} can no longer log in \\(deactivated\\)`));
    assertError(await api.get(PATHS.me, { token: session.token }), 401, "invalid_token");
    assertError(await api.post(REFRESH, { refresh_token: session.refresh }), 401, "invalid_token");
    const [ended] = await worker.d1(
      `SELECT revoked_reason FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = '${v.email}')`,
    );
    assert.equal(ended.revoked_reason, "deactivated", "the admin command revoked the session row");
    await assertNoCodeSent(v.email, ip);
    const again = await adminOk("deactivate", "--email", v.email);
    assert.doesNotMatch(again.stdout, /can no longer log in/, "deactivating twice loses nothing the second time");
    await adminOk("reactivate", "--email", v.email);
    await logIn(v.email, ip);

    const revoked = await worker.d1(
      `SELECT u.email, e.detail FROM login_events e JOIN users u ON u.id = e.user_id
       WHERE e.event = 'revoked' AND e.detail LIKE 'admin: %' ORDER BY e.id`,
    );
    assert.deepEqual(revoked, [
      { email: u.email, detail: "admin: removed from group Employees" },
      { email: outsider, detail: "admin: group Contractors is no longer an employee group" },
      { email: v.email, detail: "admin: deactivated" },
    ]);
  });

  test("list shows users with their groups; the views answer failed attempts, logins per day and locked identifiers", T, async () => {
    const listed = await adminJson("list", "--group", "Employees");
    const jane = listed.find((r) => r.email === "jane@example.com");
    assert.equal(jane.groups, "Employees");
    assert.ok(listed.every((r) => r.groups.split(", ").includes("Employees")));
    assert.ok(!listed.some((r) => r.email === SEED.outsider.email));
    const table = await adminOk("list");
    assert.match(table.stdout, /^email\s+first_name\s+last_name\s+phone_number/m);
    assert.match(table.stdout, /former@example\.com .* 0 +0 +Employees/, "an inactive member is listed and may not log in");

    const u = SEED.employees[3];
    const ip = "203.0.113.80";
    const since = Date.now();
    await api.post(PATHS.generate, { email: u.email }, { ip });
    const { code } = await mock.waitForMessage(u.email, 10_000, { since });
    for (let i = 0; i < 3; i++) await api.post(PATHS.verify, { email: u.email, otp_code: wrongCode(code, i) }, { ip });

    const report = await eventually(async () => {
      const f = await adminJson("failures");
      const mine = f.failed_attempts_24h.find((r) => r.email === u.email);
      return mine?.lockouts === 1 ? f : null;
    }, "the failures report shows the lockout");
    const mine = report.failed_attempts_24h.find((r) => r.email === u.email);
    assert.equal(mine.wrong_codes, 3);
    assert.equal(mine.ips, ip);
    assert.ok(report.locked_accounts.some((r) => r.email === u.email && r.failures === 3 && r.held_for_admin === 0));
    const text = await adminOk("failures");
    assert.match(text.stdout, /Locked now:/);

    // The lock shows in the user listing; `unlock` by phone clears the account's count, and it is audited.
    const lockedRow = (await adminJson("list")).find((r) => r.email === u.email);
    assert.equal(lockedRow.consecutive_failures, 3);
    assert.match(lockedRow.lock_state, /^locked until /);
    assertError(await api.post(PATHS.generate, { email: u.email }, { ip }), 429, "otp_locked");
    await adminOk("unlock", "--phone", u.phone);
    assert.equal((await directory(u.email)).consecutive_failures, 0);
    assert.equal((await api.post(PATHS.generate, { email: u.email }, { ip: "203.0.113.82" })).status, 200);
    const unlocked = await worker.d1(
      `SELECT e.detail FROM login_events e JOIN users u ON u.id = e.user_id WHERE e.event = 'unlocked' AND u.email = '${u.email}'`,
    );
    assert.deepEqual(unlocked, [{ detail: "admin: unlocked after 3 consecutive failures" }]);
    const nothing = await admin("unlock", "--email", u.email);
    assert.notEqual(nothing.status, 0, "unlocking an account with no failures is refused");
    assert.match(nothing.stderr + nothing.stdout, /nothing to unlock/);

    const logins = await adminJson("logins");
    const today = new Date().toISOString().slice(0, 10);
    const row = logins.find((r) => r.day === today);
    const counted = await worker.d1("SELECT count(*) AS n, count(DISTINCT user_id) AS users FROM login_events WHERE event = 'login'");
    assert.deepEqual(row, { day: today, logins: counted[0].n, users: counted[0].users });
    assert.ok(row.logins >= 6);
  });

  test("the docs/ADMIN.md walk-through: add an employee, see them log in, see their failed attempts, remove their access", T, async () => {
    const email = "sam.lee@example.com";
    await adminOk("add-user", "--email", email, "--first-name", "Sam", "--last-name", "Lee", "--phone", "+15555550123",
      "--branch", "East", "--designation", "Technician", "--group", "Employees");
    const ip = "203.0.113.81";
    const since = Date.now();
    await api.post(PATHS.generate, { email }, { ip });
    const { code } = await mock.waitForMessage(email, 10_000, { since });
    assertError(await api.post(PATHS.verify, { email, otp_code: wrongCode(code) }, { ip }), 400, "otp_invalid");
    const token = assertLogin(await api.post(PATHS.verify, { email, otp_code: code }, { ip }));

    const seen = await eventually(async () => {
      const out = (await adminOk("events", "--email", email)).stdout;
      return /\blogin\b/.test(out) ? out : null;
    }, "the login shows in `admin events`");
    assert.match(seen, /code_failed/);
    const failures = (await adminOk("failures")).stdout;
    assert.match(failures, new RegExp(`${email.replace(".", "\\.")}\\s+sa\\*+@example\\.com\\s+1\\s+0`));

    await adminOk("deactivate", "--email", email);
    assertError(await api.get(PATHS.me, { token }), 401, "invalid_token");
    await assertNoCodeSent(email, ip);
  });
});
