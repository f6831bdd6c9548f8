#!/usr/bin/env node
// Seeds the D1 database the way the Django project's `setup_mobile_auth` management command did.
//
//   npm run setup -- [--create-groups] [--create-test-user] [--remote] [--persist-to DIR]
//
// Always applies the migrations first (`wrangler d1 migrations apply DB`), then runs idempotent SQL:
//   --create-groups     group "Employees" with is_employee_group = 1
//   --create-test-user  user mobile.test@example.com (Mobile Tester, active), profile phone +1234567890,
//                       branch "Head Office", designation "Field Technician", member of "Employees"
// Local D1 (.wrangler/state, or --persist-to DIR) is the default; --remote targets the deployed database.
// Running it again is harmless.

import path from "node:path";
import { existsSync } from "node:fs";

import { ROOT, WRANGLER_BIN, d1Execute, spawnWrangler } from "./lib/wrangler.mjs";

const WRANGLER_LINK = path.join(ROOT, "node_modules", ".bin", "wrangler");

const TEST_USER = Object.freeze({
  email: "mobile.test@example.com",
  firstName: "Mobile",
  lastName: "Tester",
  phone: "+1234567890",
  branch: "Head Office",
  designation: "Field Technician",
});
const EMPLOYEE_GROUP = "Employees";

const USAGE = `Usage: npm run setup -- [--create-groups] [--create-test-user] [--remote] [--persist-to DIR]

Applies the D1 migrations, then:
  --create-groups      create (or fix) the employee group "${EMPLOYEE_GROUP}" (is_employee_group = 1)
  --create-test-user   create (or reset) ${TEST_USER.email}, phone ${TEST_USER.phone}, in "${EMPLOYEE_GROUP}"
  --remote             act on the deployed D1 database instead of the local one
  --persist-to DIR     local state directory (as for \`wrangler dev --persist-to\`); not with --remote
  -h, --help           show this help`;

function usageError(message) {
  process.stderr.write(`setup: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { createGroups: false, createTestUser: false, remote: false, persistTo: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--create-groups") opts.createGroups = true;
    else if (arg === "--create-test-user") opts.createTestUser = true;
    else if (arg === "--remote") opts.remote = true;
    else if (arg === "--local") opts.remote = false;
    else if (arg === "--persist-to") {
      const value = argv[++i];
      if (!value || value.startsWith("--")) usageError("--persist-to needs a directory");
      opts.persistTo = value;
    } else if (arg.startsWith("--persist-to=")) {
      opts.persistTo = arg.slice("--persist-to=".length);
      if (!opts.persistTo) usageError("--persist-to needs a directory");
    } else if (arg === "-h" || arg === "--help") {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else usageError(`unknown argument: ${arg}`);
  }
  if (opts.remote && opts.persistTo) usageError("--persist-to only applies to the local database, not --remote");
  return opts;
}

function sqlString(value) {
  return `'${String(value).replaceAll("'", "''")}'`;
}

function groupsSql() {
  return [
    `INSERT INTO groups (name, is_employee_group) VALUES (${sqlString(EMPLOYEE_GROUP)}, 1)
       ON CONFLICT (name) DO UPDATE SET is_employee_group = 1`,
  ];
}

function testUserSql() {
  const u = TEST_USER;
  const email = sqlString(u.email);
  return [
    // The user is useless without an employee group to belong to; create it if missing (leave it alone otherwise).
    `INSERT INTO groups (name, is_employee_group) VALUES (${sqlString(EMPLOYEE_GROUP)}, 1)
       ON CONFLICT (name) DO NOTHING`,
    `INSERT INTO users (email, first_name, last_name, is_active)
       VALUES (${email}, ${sqlString(u.firstName)}, ${sqlString(u.lastName)}, 1)
       ON CONFLICT (email) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name,
         is_active = 1`,
    `INSERT INTO profiles (user_id, phone_number, branch, designation)
       SELECT id, ${sqlString(u.phone)}, ${sqlString(u.branch)}, ${sqlString(u.designation)}
       FROM users WHERE email = ${email}
       ON CONFLICT (user_id) DO UPDATE SET phone_number = excluded.phone_number, branch = excluded.branch,
         designation = excluded.designation`,
    `INSERT OR IGNORE INTO user_groups (user_id, group_id)
       SELECT u.id, g.id FROM users u, groups g WHERE u.email = ${email} AND g.name = ${sqlString(EMPLOYEE_GROUP)}`,
  ];
}

function wrangler(args, { capture = false } = {}) {
  if (!existsSync(WRANGLER_BIN)) {
    process.stderr.write(`setup: wrangler not found at ${WRANGLER_LINK}; run \`npm install\` first.\n`);
    process.exit(1);
  }
  const options = { stdio: capture ? ["ignore", "pipe", "pipe"] : "inherit" };
  const result = args[1] === "execute" ? d1Execute(args.slice(2), options) : spawnWrangler(args, options);
  if (result.error) {
    process.stderr.write(`setup: could not run wrangler: ${result.error.message}\n`);
    process.exit(1);
  }
  if (result.status !== 0) {
    if (capture) process.stderr.write(`${result.stdout ?? ""}${result.stderr ?? ""}`);
    process.stderr.write(`setup: \`wrangler ${args.join(" ")}\` failed (exit ${result.status ?? result.signal})\n`);
    process.exit(1);
  }
  return result.stdout;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const target = opts.remote ? ["--remote"] : ["--local", ...(opts.persistTo ? ["--persist-to", opts.persistTo] : [])];
  const where = opts.remote ? "remote D1 database" : `local D1 database${opts.persistTo ? ` in ${opts.persistTo}` : ""}`;

  // Migrations: wrangler asks for confirmation on a terminal and answers "yes" by itself when not interactive.
  console.log(`setup: applying migrations to the ${where}`);
  wrangler(["d1", "migrations", "apply", "DB", ...target]);

  const statements = [];
  if (opts.createGroups) statements.push(...groupsSql());
  if (opts.createTestUser) statements.push(...testUserSql());
  if (statements.length === 0) {
    console.log("setup: migrations applied; nothing else asked (see --create-groups, --create-test-user).");
    return;
  }

  const sql = statements.map((s) => s.replace(/\s+/g, " ").trim()).join("; ");
  wrangler(["d1", "execute", "DB", ...target, "--yes", "--command", sql], { capture: true });
  if (opts.createGroups) console.log(`setup: group "${EMPLOYEE_GROUP}" exists and is an employee group`);
  if (opts.createTestUser) {
    console.log(
      `setup: test user ${TEST_USER.email} (${TEST_USER.firstName} ${TEST_USER.lastName}) is active, ` +
        `phone ${TEST_USER.phone}, ${TEST_USER.branch} / ${TEST_USER.designation}, member of "${EMPLOYEE_GROUP}"`,
    );
  }

  // Show the resulting state so the operator sees what is there now.
  const check = `SELECT u.email, u.is_active, p.phone_number, group_concat(g.name) AS groups
    FROM users u LEFT JOIN profiles p ON p.user_id = u.id
    LEFT JOIN user_groups ug ON ug.user_id = u.id LEFT JOIN groups g ON g.id = ug.group_id
    WHERE u.email = ${sqlString(TEST_USER.email)} GROUP BY u.id`;
  const groupsCheck = "SELECT name, is_employee_group FROM groups ORDER BY name";
  const out = wrangler(
    ["d1", "execute", "DB", ...target, "--yes", "--json", "--command", `${groupsCheck}; ${check.replace(/\s+/g, " ")}`],
    { capture: true },
  );
  try {
    const results = JSON.parse(out);
    const groups = results[0]?.results ?? [];
    console.log(
      `setup: groups now: ${groups.map((g) => `${g.name}${g.is_employee_group ? " (employee)" : ""}`).join(", ") || "none"}`,
    );
    const user = results[1]?.results?.[0];
    if (user) {
      console.log(
        `setup: ${user.email}: active=${user.is_active} phone=${user.phone_number} groups=${user.groups ?? ""}`,
      );
    }
  } catch {
    // The summary is informational; the statements above already succeeded.
  }
  console.log("setup: done");
}

main();
