// The admin command as a new administrator runs it, with Node alone (no Rust toolchain on PATH, an empty home):
// list, add, import, export and delete users against the local D1 of a running `wrangler dev`; the 5,000-row
// import and its timing; a file with bad rows reports each and applies none; access lost through an import or a
// deletion ends the sessions at once; a local write waits for a database that `wrangler dev` (or anyone) holds
// locked instead of failing with SQLITE_BUSY; and the committed wasm module is built from the current parsers.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, test } from "node:test";

import { PATHS, assertSignedOut, client, describeResponse, logInByEmail } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { ROOT, startWorker } from "./support/worker.mjs";
import { currentSourcesDigest, moduleSourcesDigest } from "../../scripts/lib/identifiers.mjs";

const ADMIN = path.join(ROOT, "scripts", "admin.mjs");
const T = { timeout: 300_000 };

let mock;
let worker;
let api;
let home;
let files;

/** The environment of a machine with Node only: PATH holds nothing but Node's own directory, HOME is empty. */
function nodeOnlyEnv() {
  return { PATH: path.dirname(process.execPath), HOME: home, NO_COLOR: "1", LANG: "C.UTF-8" };
}

/** Runs the admin command against the test worker's local D1; resolves with { status, stdout, stderr, ms }. */
function admin(...args) {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [ADMIN, ...args, "--persist-to", worker.persistDir],
      { cwd: ROOT, timeout: 240_000, maxBuffer: 64 * 1024 * 1024, env: nodeOnlyEnv() },
      (err, stdout, stderr) => resolve({ status: err ? (err.code ?? err.signal) : 0, stdout, stderr, ms: Date.now() - started }),
    );
  });
}

async function adminOk(...args) {
  const r = await admin(...args);
  assert.equal(r.status, 0, `admin ${args.join(" ")} succeeded:\n${r.stdout}\n${r.stderr}`);
  return r;
}

function csv(name, lines) {
  const file = path.join(files, name);
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

describe("the admin command with Node only: import, export, offboarding, a locked database", { timeout: 900_000 }, () => {
  before(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), "admin-home-"));
    files = mkdtempSync(path.join(os.tmpdir(), "admin-files-"));
    mock = await startMockProviders();
    worker = await startWorker({ vars: { ...mock.workerVars(), OTP_RESEND_COOLDOWN_SECONDS: "1" } });
    api = client(worker.url);
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
    for (const dir of [home, files]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the committed wasm module is built from the current parsers, and no Rust toolchain is reachable here", T, async () => {
    assert.equal(moduleSourcesDigest(), currentSourcesDigest(), "run sh scripts/build-admin-check.sh and commit scripts/lib/admin-check.wasm");
    const cargo = await new Promise((resolve) => execFile("cargo", ["--version"], { env: nodeOnlyEnv() }, (err) => resolve(err)));
    assert.ok(cargo && cargo.code === "ENOENT", "cargo must not be on the administrator's PATH in these tests");
  });

  test("a new administrator lists, adds, unlocks and exports users with Node alone", T, async () => {
    const listed = JSON.parse((await adminOk("list", "--json")).stdout);
    assert.ok(listed.some((u) => u.email === "mobile.test@example.com"));
    const added = await adminOk("add-user", "--email", "New.Admin.User@Example.com", "--phone", "+44 (7700) 900-555", "--group", "Employees");
    assert.match(added.stdout, /added new\.admin\.user@example\.com to Employees/);
    const refused = await admin("add-user", "--email", "bad@@example.com");
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /is not an address the service accepts/);
    // A wrong code counts against the account; unlock clears it, and says so.
    const email = "employee08@example.com";
    const since = Date.now();
    const gen = await api.post(PATHS.generate, { email }, { ip: "192.0.2.12" });
    assert.equal(gen.status, 200, describeResponse(gen));
    const { code } = await mock.waitForMessage(email, 10_000, { since });
    const wrong = await api.post(PATHS.verify, { email, otp_code: code === "000000" ? "111111" : "000000" }, { ip: "192.0.2.12" });
    assert.equal(wrong.status, 400, describeResponse(wrong));
    const unlocked = await adminOk("unlock", "--email", "Employee08@Example.com");
    assert.match(unlocked.stdout, /employee08@example\.com unlocked/);
    const again = await admin("unlock", "--phone", "+1 415 555 0208");
    assert.notEqual(again.status, 0, "nothing left to unlock");
    const exported = (await adminOk("export")).stdout.split("\r\n");
    assert.equal(exported[0], "email,phone,first_name,last_name,branch,designation,groups");
    assert.ok(exported.includes("new.admin.user@example.com,+447700900555,,,,,Employees"), exported.slice(0, 5).join("\n"));
  });

  test("5,000 rows import against the running service's local D1 in seconds; exported and imported again, nothing changes", T, async (t) => {
    const lines = ["email,phone,first_name,last_name,branch,designation,groups"];
    for (let i = 0; i < 5000; i++) {
      const n = String(i).padStart(5, "0");
      lines.push(`Bulk.${n}@Example.com,+1 415 70${n},Bulk,"User, ${n}",Branch ${i % 7},Technician,Employees`);
    }
    const file = csv("bulk.csv", lines);
    const dry = await adminOk("import", file, "--dry-run");
    assert.match(dry.stdout, /5000 to create, 0 to update, 0 unchanged \(dry run: nothing written\)/);
    assert.deepEqual(await worker.d1("SELECT email FROM users WHERE email LIKE 'bulk.%'"), []);

    const run = await adminOk("import", file);
    t.diagnostic(`5000-row import: ${run.ms} ms (${run.stdout.trim()})`);
    assert.match(run.stdout, /5000 created, 0 updated, 0 unchanged/);
    assert.ok(run.ms < 60_000, `5000 rows in ${run.ms} ms`);
    const [count] = await worker.d1("SELECT count(*) AS n, sum(may_log_in) AS employees FROM user_directory WHERE email LIKE 'bulk.%'");
    assert.deepEqual(count, { n: 5000, employees: 5000 });
    const [one] = await worker.d1("SELECT * FROM user_directory WHERE email = 'bulk.00042@example.com'");
    assert.equal(one.phone_number, "+14157000042");
    assert.equal(one.last_name, "User, 00042");
    const [audited] = await worker.d1("SELECT count(*) AS n FROM provisioning_events WHERE source = 'import' AND action = 'create'");
    assert.equal(audited.n, 5000);

    const exported = path.join(files, "exported.csv");
    await adminOk("export", exported);
    const again = await adminOk("import", exported);
    assert.match(again.stdout, /0 to create, 0 to update, \d+ unchanged/);
    await logInByEmail(api, mock, "bulk.00042@example.com", "192.0.2.10");
  });

  test("a file with bad rows reports each one, with its line and reason, and applies none of them", T, async () => {
    const file = csv("bad.csv", [
      "email,phone,first_name,last_name,branch,designation,groups",
      "good.row@example.com,+1 415 555 0999,Good,Row,East,Tech,Employees",
      "not-an-email,,A,B,,,Employees",
      "other.row@example.com,+1234567890,A,B,,,Employees",
      "third.row@example.com,,A,B,,,Employees;No Such Group",
      "fourth.row@example.com,0612345678,A,B,,,",
      "good.row@example.com,,Again,,,,",
      "fifth.row@example.com,,A,B,,,Employees,extra",
    ]);
    const r = await admin("import", file, "--json");
    assert.equal(r.status, 1, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.applied, false);
    assert.deepEqual(report.refused_rows.map((row) => row.line), [3, 4, 5, 6, 7, 8]);
    const reasons = report.refused_rows.map((row) => row.reason).join("\n");
    for (const why of [/not an address the service accepts/, /another user \(mobile\.test@example\.com\) already has the phone number/, /no group has the name "No Such Group"/, /international form/, /the same email as line 2/, /has 8 fields, the header 7/]) {
      assert.match(reasons, why);
    }
    assert.deepEqual(await worker.d1("SELECT email FROM users WHERE email IN ('good.row@example.com', 'other.row@example.com')"), []);
  });

  test("an import that takes away the last employee group, and delete-user, end the sessions at once", T, async () => {
    const ip = "192.0.2.11";
    const session = await logInByEmail(api, mock, "employee05@example.com", ip);
    const file = csv("leave.csv", ["email,groups", "employee05@example.com,Contractors"]);
    const dry = await adminOk("import", file, "--dry-run");
    assert.match(dry.stdout, /employee05@example\.com would lose access/);
    const run = await adminOk("import", file);
    assert.match(run.stdout, /1 open session\(s\) ended/);
    await assertSignedOut(api, session, ip);
    const [row] = await worker.d1("SELECT groups, may_log_in, first_name FROM user_directory WHERE email = 'employee05@example.com'");
    assert.deepEqual(row, { groups: "Contractors", may_log_in: 0, first_name: "Employee" }, "columns not in the file stay");

    const other = await logInByEmail(api, mock, "employee06@example.com", ip);
    const deleted = await adminOk("delete-user", "--email", "Employee06@example.com");
    assert.match(deleted.stdout, /deleted employee06@example\.com; 1 open session\(s\) ended/);
    await assertSignedOut(api, other, ip);
    assert.deepEqual(await worker.d1("SELECT id FROM users WHERE email = 'employee06@example.com'"), []);
  });

  test("a local change waits while another writer holds the database locked, then succeeds (no SQLITE_BUSY)", T, async () => {
    const dir = path.join(worker.persistDir, "v3", "d1", "miniflare-D1DatabaseObject");
    const file = readdirSync(dir).find((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite");
    const db = new DatabaseSync(path.join(dir, file));
    db.exec("BEGIN IMMEDIATE");
    const held = 3000;
    const release = setTimeout(() => db.exec("COMMIT"), held);
    try {
      const r = await admin("deactivate", "--email", "employee07@example.com");
      assert.equal(r.status, 0, `deactivate waited for the lock:\n${r.stdout}\n${r.stderr}`);
      assert.ok(r.ms >= held, `it finished after the lock was released (${r.ms} ms)`);
    } finally {
      clearTimeout(release);
      try {
        db.exec("COMMIT");
      } catch {
        // committed by the timer already
      }
      db.close();
    }
    const [row] = await worker.d1("SELECT is_active FROM users WHERE email = 'employee07@example.com'");
    assert.equal(row.is_active, 0);
    assert.equal(readFileSync(ADMIN, "utf8").includes("cargo"), false, "the admin command never calls cargo");
  });
});
