#!/usr/bin/env node
// The administrators' command for users, groups and the audit trail (what the Django admin did for the earlier login service, at the edge).
//
//   npm run admin -- <command> [options] [--remote | --persist-to DIR] [--json]
//
// Local D1 (.wrangler/state, or --persist-to DIR) by default; --remote acts on the deployed database.
// Emails and phone numbers are checked and normalised by the service's own Rust parsers, compiled to WebAssembly
// (scripts/lib/admin-check.wasm, from src/admin_check.rs), so Node alone runs them;
// and every change is ONE SQL statement, an INSERT into one of the admin_* views of migrations/0005_admin_views.sql,
// whose trigger checks the preconditions and writes all rows or none: nothing can be left half-written, locally or
// remotely. docs/ADMIN.md is the guide.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { checkField } from "./lib/identifiers.mjs";
import { revokeUserAccess } from "./lib/revoke.mjs";
import { ROOT, WRANGLER_BIN, d1Execute } from "./lib/wrangler.mjs";

const MAX_TEXT = 150; // Django's limit for names, kept for branch, designation and group names too.

const USAGE = `Usage: npm run admin -- <command> [options] [--remote | --persist-to DIR] [--json]

Users
  add-user --email E [--first-name F] [--last-name L] [--phone P] [--branch B] [--designation D]
           [--locale L] [--group G]
                                 add a user (and put them in group G, e.g. Employees, in the same step)
  update-user --email E [--new-email E2] [--first-name F] [--last-name L] [--phone P | --remove-phone]
              [--branch B] [--designation D] [--locale L | --remove-locale]
                                 change only the fields given
  deactivate --email E           no more logins; records a 'revoked' event if they could log in
  reactivate --email E
  delete-user --email E          deactivates, ends every session, then deletes the user (audit rows stay)
  unlock (--email E | --phone P) clear an account's wrong-code count, lockout and administrator's hold
  list [--group G]               users with their groups and whether they may log in

Bulk
  import FILE.csv [--dry-run]    makes each listed user look like their row (columns: email, phone,
                                 first_name, last_name, branch, designation, groups separated by ;);
                                 a file with any refused row changes nothing; --dry-run only reports
  export [FILE.csv]              every user in the same format (stdout without FILE)

Groups
  add-to-group --email E --group G
  remove-from-group --email E --group G
  set-group --name G (--employee | --not-employee)
                                 create a group or mark whether its members may log in
  groups                         every group, its flag and its member count

Audit trail
  events [--email E] [--event KIND] [--limit N]
                                 recent login events, newest first (default 20)
  failures                       wrong codes and lockouts in the last 24 hours, identifiers locked now
  logins [--days N]              logins per day (default the last 14 days)

Where
  (default)         the local D1 database of \`npm start\` (.wrangler/state)
  --persist-to DIR  a local state directory (as for \`wrangler dev --persist-to\`)
  --remote          the deployed D1 database (\`npx wrangler login\` first)
  --json            print rows as JSON instead of a table
  -h, --help        this help`;

const COMMANDS = {
  "add-user": {
    values: ["email", "first-name", "last-name", "phone", "branch", "designation", "locale", "group"],
    run: addUser,
  },
  "update-user": {
    values: ["email", "new-email", "first-name", "last-name", "phone", "branch", "designation", "locale"],
    flags: ["remove-phone", "remove-locale"],
    run: updateUser,
  },
  deactivate: { values: ["email"], run: (a) => setActive(a, 0) },
  reactivate: { values: ["email"], run: (a) => setActive(a, 1) },
  "delete-user": { values: ["email"], run: deleteUser },
  import: { file: true, flags: ["dry-run"], run: importUsers },
  export: { file: true, optionalFile: true, run: exportUsers },
  unlock: { values: ["email", "phone"], run: unlock },
  list: { values: ["group"], run: listUsers },
  "add-to-group": { values: ["email", "group"], run: (a) => membership(a, 1) },
  "remove-from-group": { values: ["email", "group"], run: (a) => membership(a, 0) },
  "set-group": { values: ["name"], flags: ["employee", "not-employee"], run: setGroup },
  groups: { run: listGroups },
  events: { values: ["email", "event", "limit"], run: listEvents },
  failures: { run: failures },
  logins: { values: ["days"], run: logins },
};

const EVENT_KINDS = [
  "code_requested", "code_sent", "delivery_failed", "code_failed", "locked_out", "login", "refresh",
  "refresh_reused", "logout", "revoked",
];

/** A refusal the administrator can act on: printed without a stack trace, exit status 1. */
class AdminError extends Error {}

class UsageError extends Error {}

// ---- Arguments ---------------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const args = { command: null, values: new Map(), flags: new Set(), remote: false, persistTo: null, json: false };
  const rest = [...argv];
  while (rest.length > 0) {
    const arg = rest.shift();
    if (arg === "-h" || arg === "--help") {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (arg === "--remote") args.remote = true;
    else if (arg === "--local") args.remote = false;
    else if (arg === "--json") args.json = true;
    else if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const spec = COMMANDS[args.command] ?? {};
      const takesValue = name === "persist-to" || (spec.values ?? []).includes(name);
      if (!takesValue) {
        if (!(spec.flags ?? []).includes(name)) {
          throw new UsageError(args.command ? `${args.command} does not take --${name}` : `unknown option --${name}`);
        }
        if (eq !== -1) throw new UsageError(`--${name} takes no value`);
        args.flags.add(name);
        continue;
      }
      let value;
      if (eq !== -1) value = arg.slice(eq + 1);
      else {
        if (rest.length === 0) throw new UsageError(`--${name} needs a value`);
        value = rest.shift();
      }
      if (name === "persist-to") {
        if (!value) throw new UsageError("--persist-to needs a directory");
        args.persistTo = value;
      } else if (args.values.has(name)) throw new UsageError(`--${name} given twice`);
      else args.values.set(name, value);
    } else if (args.command === null) {
      if (!Object.hasOwn(COMMANDS, arg)) throw new UsageError(`unknown command: ${arg}`);
      args.command = arg;
    } else if (COMMANDS[args.command].file && args.file === undefined) args.file = arg;
    else throw new UsageError(`unexpected argument: ${arg}`);
  }
  if (args.command === null) throw new UsageError("which command?");
  const spec = COMMANDS[args.command];
  if (spec.file && !spec.optionalFile && args.file === undefined) throw new UsageError(`${args.command} needs a file`);
  if (args.remote && args.persistTo) throw new UsageError("--persist-to only applies to the local database, not --remote");
  return args;
}

function required(args, name) {
  const value = args.values.get(name);
  if (value === undefined) throw new UsageError(`${args.command} needs --${name}`);
  return value;
}

/** Free text (names, branch, designation, group names): trimmed, at most MAX_TEXT characters, no control codes. */
function text(args, name, { optional = true } = {}) {
  const raw = optional ? args.values.get(name) : required(args, name);
  if (raw === undefined) return null;
  const value = raw.trim();
  if ([...value].length > MAX_TEXT) throw new AdminError(`--${name} is longer than ${MAX_TEXT} characters`);
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new AdminError(`--${name} contains a control character`);
  return value;
}

function groupName(args, name = "group") {
  const value = text(args, name, { optional: false });
  if (value === "") throw new AdminError(`--${name} is empty`);
  return value;
}

function positiveInt(args, name, fallback, max) {
  const raw = args.values.get(name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
    throw new AdminError(`--${name} must be a whole number from 1 to ${max}`);
  }
  return Number(raw);
}

// ---- The service's own identifier rules (Rust) -------------------------------------------------------------------

/** Country calling codes the deployment accepts: $PHONE_ALLOWED_COUNTRY_CODES, else wrangler.toml's [vars]. */
function allowedCountryCodes() {
  if (process.env.PHONE_ALLOWED_COUNTRY_CODES !== undefined) return process.env.PHONE_ALLOWED_COUNTRY_CODES;
  const toml = readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  return /^\s*PHONE_ALLOWED_COUNTRY_CODES\s*=\s*"([^"]*)"/m.exec(toml)?.[1] ?? "";
}

/**
 * Normalises { email, newEmail, phone, locale } with the service's own parsers (`Email::parse`,
 * `PhoneNumber::parse_allowed`, `Locale::parse`: the functions the worker runs on requests), compiled to
 * scripts/lib/admin-check.wasm, so that Node alone runs them. Returns { email, new_email, phone_number, locale }
 * (only the fields given) or throws the first refusal.
 */
function checkIdentifiers({ email, newEmail, phone, locale }, countryCodes = allowedCountryCodes()) {
  const answer = {};
  const fields = [["email", email], ["locale", locale], ["new_email", newEmail], ["phone_number", phone]];
  for (const [field, value] of fields) {
    if (value === undefined) continue;
    const checked = checkField(field, value, field === "phone_number" ? countryCodes : "");
    if (!checked.ok) throw new AdminError(checked.message);
    answer[field] = checked.value;
  }
  return answer;
}

// ---- D1 through wrangler -----------------------------------------------------------------------------------------

function sql(value) {
  if (value === null || value === undefined) return "NULL";
  if (typeof value === "number") return String(value);
  return `'${String(value).replaceAll("'", "''")}'`;
}

/**
 * Runs `statements` in one `wrangler d1 execute` call and returns each one's rows, or throws what D1 refused.
 * At most one of them may write (an INSERT into an admin_* view): the others only read, so the change is atomic
 * however wrangler and D1 group the statements.
 */
function d1(args, ...statements) {
  if (!existsSync(WRANGLER_BIN)) throw new Error("wrangler is not installed; run `sh scripts/bootstrap.sh` first");
  const target = args.remote ? ["--remote"] : ["--local", ...(args.persistTo ? ["--persist-to", args.persistTo] : [])];
  const command = statements.map((s) => s.trim()).join(";\n");
  const result = d1Execute(["DB", ...target, "--yes", "--json", "--command", command]);
  if (result.error) throw new Error(`could not run wrangler: ${result.error.message}`);
  const out = result.stdout ?? "";
  const start = out.search(/^[[{]/m);
  let parsed;
  try {
    parsed = JSON.parse(out.slice(start));
  } catch {
    throw new Error(`wrangler d1 execute failed (exit ${result.status}):\n${out}${result.stderr ?? ""}`);
  }
  if (!Array.isArray(parsed) || result.status !== 0) throw d1Refusal(parsed.error?.text ?? JSON.stringify(parsed));
  return parsed.map((r) => r.results ?? []);
}

/** The rows of a single read. */
function query(args, statement) {
  return d1(args, statement)[0];
}

function d1Refusal(textOfError) {
  const own = /admin: ([^:]+)/.exec(textOfError);
  if (own) return new AdminError(own[1]);
  if (/no such table: admin_|no such table: user_directory/.test(textOfError)) {
    return new AdminError("the admin views are missing: apply the migrations first (`npm run setup`, with --remote if so)");
  }
  return new AdminError(`D1 refused the change: ${textOfError}`);
}

// ---- Output ------------------------------------------------------------------------------------------------------

function print(args, rows, columns) {
  if (args.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    console.log("(none)");
    return;
  }
  const cell = (v) => (v === null || v === undefined ? "" : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values) => values.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
  console.log(line(columns));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const row of rows) console.log(line(columns.map((c) => cell(row[c]))));
}

const USER_COLUMNS = [
  "email", "first_name", "last_name", "phone_number", "branch", "designation", "locale", "is_active", "may_log_in",
  "groups", "last_login", "consecutive_failures", "lock_state",
];

function userRow(email) {
  return `SELECT * FROM user_directory WHERE email = ${sql(email)}`;
}

/**
 * THE place where an administrator's change takes someone's access away (deactivate, remove-from-group,
 * set-group --not-employee). The change itself already refuses their next login and refresh (the service checks
 * is_active and the employee groups in D1) and recorded an 'admin: …' revoked event in the same statement; here the
 * sessions they already hold end too: scripts/lib/revoke.mjs marks them revoked in D1 and deletes their access
 * tokens from KV, so `me/` answers 401 at once.
 */
function onAccessLost(args, users, reason) {
  for (const user of users) {
    const { sessions } = revokeUserAccess({ email: user.email, reason, remote: args.remote, persistTo: args.persistTo });
    console.log(`admin: ${user.email} can no longer log in (${reason}); ${sessions.length} open session(s) ended`);
  }
}

// ---- Commands ----------------------------------------------------------------------------------------------------

function addUser(args) {
  const raw = { email: required(args, "email"), phone: args.values.get("phone"), locale: args.values.get("locale") };
  const ids = checkIdentifiers(raw);
  const group = args.values.has("group") ? groupName(args) : null;
  const [, user] = d1(
    args,
    `INSERT INTO admin_user_changes (mode, email, first_name, last_name, phone_number, branch, designation, locale,
                                     group_name)
     VALUES ('add', ${sql(ids.email)}, ${sql(text(args, "first-name"))}, ${sql(text(args, "last-name"))},
             ${sql(ids.phone_number)}, ${sql(text(args, "branch"))}, ${sql(text(args, "designation"))},
             ${sql(ids.locale)}, ${sql(group)})`,
    userRow(ids.email),
  );
  console.log(`admin: added ${ids.email}${group ? ` to ${group}` : ""}`);
  print(args, user, USER_COLUMNS);
  if (!user[0]?.may_log_in) {
    console.log(`admin: ${ids.email} cannot log in until they are in an employee group (add-to-group --group Employees)`);
  }
}

function updateUser(args) {
  const removePhone = args.flags.has("remove-phone");
  const removeLocale = args.flags.has("remove-locale");
  if (removePhone && args.values.has("phone")) throw new UsageError("give --phone or --remove-phone, not both");
  if (removeLocale && args.values.has("locale")) throw new UsageError("give --locale or --remove-locale, not both");
  const changes = ["new-email", "first-name", "last-name", "phone", "branch", "designation", "locale"];
  if (!removePhone && !removeLocale && !changes.some((c) => args.values.has(c))) {
    throw new UsageError("update-user needs something to change (--first-name, --phone, ...)");
  }
  const ids = checkIdentifiers({
    email: required(args, "email"),
    newEmail: args.values.get("new-email"),
    phone: args.values.get("phone"),
    locale: args.values.get("locale"),
  });
  const phone = removePhone ? "" : (ids.phone_number ?? null);
  const locale = removeLocale ? "" : (ids.locale ?? null);
  const email = ids.new_email ?? ids.email;
  const [, user] = d1(
    args,
    `INSERT INTO admin_user_changes (mode, email, new_email, first_name, last_name, phone_number, branch, designation,
                                     locale)
     VALUES ('update', ${sql(ids.email)}, ${sql(ids.new_email ?? null)}, ${sql(text(args, "first-name"))},
             ${sql(text(args, "last-name"))}, ${sql(phone)}, ${sql(text(args, "branch"))},
             ${sql(text(args, "designation"))}, ${sql(locale)})`,
    userRow(email),
  );
  console.log(`admin: updated ${email}`);
  print(args, user, USER_COLUMNS);
}

function setActive(args, active) {
  const { email } = checkIdentifiers({ email: required(args, "email") });
  const [before, , after] = d1(
    args,
    userRow(email),
    `INSERT INTO admin_user_status (email, is_active) VALUES (${sql(email)}, ${active})`,
    userRow(email),
  );
  console.log(`admin: ${email} is now ${active ? "active" : "inactive"}`);
  if (before[0]?.may_log_in && !after[0]?.may_log_in) onAccessLost(args, after, "deactivated");
  print(args, after, USER_COLUMNS);
}

function unlock(args) {
  const [email, phone] = [args.values.get("email"), args.values.get("phone")];
  if ((email === undefined) === (phone === undefined)) throw new UsageError("unlock needs --email or --phone");
  const checked = checkIdentifiers(email !== undefined ? { email } : { phone });
  const identifier = checked.email ?? checked.phone_number;
  d1(args, `INSERT INTO admin_unlocks (identifier) VALUES (${sql(identifier)})`);
  console.log(`admin: ${identifier} unlocked`);
}

function membership(args, member) {
  const { email } = checkIdentifiers({ email: required(args, "email") });
  const group = groupName(args);
  const [before, , after] = d1(
    args,
    userRow(email),
    `INSERT INTO admin_memberships (email, group_name, member) VALUES (${sql(email)}, ${sql(group)}, ${member})`,
    userRow(email),
  );
  console.log(`admin: ${email} ${member ? "added to" : "removed from"} ${group}`);
  if (before[0]?.may_log_in && !after[0]?.may_log_in) onAccessLost(args, after, `removed from ${group}`);
  print(args, after, USER_COLUMNS);
}

function setGroup(args) {
  const name = groupName(args, "name");
  const employee = args.flags.has("employee");
  if (employee === args.flags.has("not-employee")) throw new UsageError("set-group needs --employee or --not-employee");
  const members = `SELECT d.email, d.may_log_in FROM user_directory d JOIN user_groups ug ON ug.user_id = d.id
                   JOIN groups g ON g.id = ug.group_id WHERE g.name = ${sql(name)} ORDER BY d.email`;
  const [before, , afterRows, groups] = d1(
    args,
    members,
    `INSERT INTO admin_groups (name, is_employee_group) VALUES (${sql(name)}, ${employee ? 1 : 0})`,
    members,
    GROUPS,
  );
  console.log(`admin: ${name} is ${employee ? "an employee group: its active members may log in" : "not an employee group"}`);
  const after = new Map(afterRows.map((m) => [m.email, m.may_log_in]));
  const lost = before.filter((m) => m.may_log_in && !after.get(m.email));
  if (lost.length > 0) onAccessLost(args, lost, `${name} is no longer an employee group`);
  print(args, groups, ["name", "is_employee_group", "members"]);
}

function listUsers(args) {
  const group = args.values.has("group") ? groupName(args) : null;
  const filter = group
    ? `WHERE id IN (SELECT ug.user_id FROM user_groups ug JOIN groups g ON g.id = ug.group_id WHERE g.name = ${sql(group)})`
    : "";
  print(args, query(args, `SELECT * FROM user_directory ${filter} ORDER BY email`), USER_COLUMNS);
}

const GROUPS = `SELECT g.name, g.is_employee_group, count(ug.user_id) AS members FROM groups g
  LEFT JOIN user_groups ug ON ug.group_id = g.id GROUP BY g.id ORDER BY g.name`;

function listGroups(args) {
  print(args, query(args, GROUPS), ["name", "is_employee_group", "members"]);
}

function listEvents(args) {
  const where = [];
  if (args.values.has("email")) where.push(`email = ${sql(checkIdentifiers({ email: args.values.get("email") }).email)}`);
  if (args.values.has("event")) {
    const kind = args.values.get("event");
    if (!EVENT_KINDS.includes(kind)) throw new AdminError(`--event must be one of: ${EVENT_KINDS.join(", ")}`);
    where.push(`event = ${sql(kind)}`);
  }
  const limit = positiveInt(args, "limit", 20, 10_000);
  const rows = query(
    args,
    `SELECT * FROM recent_login_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ${limit}`,
  );
  print(args, rows, ["at", "event", "email", "channel", "identifier", "ip", "country", "detail", "user_agent"]);
}

function failures(args) {
  const [failed, locked] = d1(
    args,
    "SELECT * FROM failed_attempts_24h ORDER BY wrong_codes + lockouts + refusals DESC, last_failure DESC",
    "SELECT * FROM locked_accounts ORDER BY held_for_admin DESC, locked_until DESC",
  );
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ failed_attempts_24h: failed, locked_accounts: locked }, null, 2)}\n`);
    return;
  }
  console.log("Wrong codes, lockouts and refusals in the last 24 hours:");
  print(args, failed, ["email", "identifier", "wrong_codes", "lockouts", "refusals", "last_failure", "ips", "countries"]);
  console.log("\nLocked now:");
  print(args, locked, ["email", "identifier", "failures", "held_for_admin", "locked_until", "last_failure"]);
}

function logins(args) {
  const days = positiveInt(args, "days", 14, 3650);
  const rows = query(
    args,
    `SELECT * FROM logins_per_day WHERE day > date('now', ${sql(`-${days} days`)}) ORDER BY day DESC`,
  );
  print(args, rows, ["day", "logins", "users"]);
}

function deleteUser(args) {
  const { email } = checkIdentifiers({ email: required(args, "email") });
  // No login can start once the user is inactive; then the sessions end; then the rows go.
  const [before] = d1(args, userRow(email), `INSERT INTO admin_user_status (email, is_active) VALUES (${sql(email)}, 0)`);
  if (before.length === 0) throw new AdminError("no user has this email");
  const { sessions } = revokeUserAccess({ email, reason: "deleted", remote: args.remote, persistTo: args.persistTo });
  d1(args, `INSERT INTO admin_user_deletions (email) VALUES (${sql(email)})`);
  console.log(`admin: deleted ${email}; ${sessions.length} open session(s) ended`);
}

// ---- Import and export -------------------------------------------------------------------------------------------

const CSV_COLUMNS = ["email", "phone", "first_name", "last_name", "branch", "designation", "groups"];

/** RFC 4180 CSV: quoted fields (with "" for a quote, and line breaks inside), CRLF or LF. Returns rows of cells. */
export function parseCsv(textOfFile) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  const text = textOfFile.replace(/^\uFEFF/, "");
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else {
        if (c === "\n") line++;
        cell += c;
      }
    } else if (c === '"' && cell === "") quoted = true;
    else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell);
      rows.push({ line: rowLine, cells: row });
      row = [];
      cell = "";
      line++;
      rowLine = line;
    } else cell += c;
  }
  if (quoted) throw new AdminError(`line ${rowLine}: a quoted field is not closed`);
  if (cell !== "" || row.length > 0) {
    row.push(cell);
    rows.push({ line: rowLine, cells: row });
  }
  return rows.filter((r) => !(r.cells.length === 1 && r.cells[0].trim() === ""));
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(text) || text !== text.trim() ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A cell of free text: trimmed, at most MAX_TEXT characters, no control characters; or why not. */
function cellText(value, name) {
  const text = value.trim();
  if ([...text].length > MAX_TEXT) return { error: `${name} is longer than ${MAX_TEXT} characters` };
  if (/[\u0000-\u001f\u007f]/.test(text)) return { error: `${name} contains a control character` };
  return { text };
}

/** What the database holds for every user (email → row) and every group name, in one read. */
function currentState(args) {
  const [users, groups] = d1(
    args,
    `SELECT u.email, COALESCE(p.phone_number, '') AS phone, u.first_name, u.last_name, COALESCE(p.branch, '') AS branch,
            COALESCE(p.designation, '') AS designation,
            (SELECT json_group_array(name) FROM (SELECT g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id
             WHERE ug.user_id = u.id ORDER BY g.name)) AS groups,
            d.may_log_in
     FROM users u LEFT JOIN profiles p ON p.user_id = u.id JOIN user_directory d ON d.id = u.id
     WHERE u.email IS NOT NULL ORDER BY u.email`,
    "SELECT name, is_employee_group FROM groups",
  );
  return {
    users: new Map(users.map((u) => [u.email, { ...u, groups: JSON.parse(u.groups) }])),
    groups: new Map(groups.map((g) => [g.name, g.is_employee_group === 1])),
  };
}

/**
 * Reads and checks every row of a CSV file against the service's rules and the database; returns
 * { rows: [{ line, email, phone, first_name, last_name, branch, designation, groups, change, losesAccess }],
 *   refused: [{ line, email, reason }] }. Nothing is written.
 */
function planImport(args, file) {
  let content;
  try {
    content = readFileSync(file, "utf8");
  } catch (e) {
    throw new AdminError(`cannot read ${file}: ${e.message}`);
  }
  const [header, ...records] = parseCsv(content);
  if (!header) throw new AdminError(`${file} is empty`);
  const columns = header.cells.map((c) => c.trim().toLowerCase());
  const unknown = columns.filter((c) => !CSV_COLUMNS.includes(c));
  if (unknown.length > 0) throw new AdminError(`unknown column(s) ${unknown.join(", ")}; the columns are ${CSV_COLUMNS.join(", ")}`);
  if (!columns.includes("email")) throw new AdminError("the file needs an email column");
  if (new Set(columns).size !== columns.length) throw new AdminError("a column appears twice in the header");

  const state = currentState(args);
  const countryCodes = allowedCountryCodes();
  const rows = [];
  const refused = [];
  const emailsSeen = new Map();
  const phonesSeen = new Map();
  const phoneHolders = new Map([...state.users.values()].filter((u) => u.phone).map((u) => [u.phone, u.email]));
  const planned = new Map();
  for (const { line, cells } of records) {
    const raw = Object.fromEntries(columns.map((c, i) => [c, cells[i] ?? ""]));
    const refuse = (reason) => refused.push({ line, email: raw.email.trim(), reason });
    if (cells.length !== columns.length) {
      refuse(`has ${cells.length} fields, the header ${columns.length}`);
      continue;
    }
    const email = checkField("email", raw.email);
    if (!email.ok) {
      refuse(email.message);
      continue;
    }
    const current = state.users.get(email.value);
    const row = { line, email: email.value };
    const problems = [];
    if (emailsSeen.has(email.value)) problems.push(`the same email as line ${emailsSeen.get(email.value)}`);
    emailsSeen.set(email.value, line);
    if (columns.includes("phone") && raw.phone.trim() !== "") {
      const phone = checkField("phone_number", raw.phone, countryCodes);
      if (!phone.ok) problems.push(phone.message);
      else row.phone = phone.value;
    } else row.phone = columns.includes("phone") ? "" : (current?.phone ?? "");
    for (const name of ["first_name", "last_name", "branch", "designation"]) {
      if (!columns.includes(name)) {
        row[name] = current?.[name] ?? "";
        continue;
      }
      const checked = cellText(raw[name], name);
      if (checked.error) problems.push(checked.error);
      else row[name] = checked.text;
    }
    if (columns.includes("groups")) {
      const names = [...new Set(raw.groups.split(";").map((g) => g.trim()).filter((g) => g !== ""))].sort();
      const missing = names.filter((g) => !state.groups.has(g));
      if (missing.length > 0) problems.push(`no group has the name ${missing.map((g) => JSON.stringify(g)).join(", ")} (create it with set-group)`);
      row.groups = names;
    } else row.groups = current?.groups ?? [];
    if (row.phone) {
      const holder = phoneHolders.get(row.phone);
      const movedAway = holder && planned.has(holder) && planned.get(holder).phone !== row.phone;
      if (holder && holder !== email.value && !movedAway) {
        problems.push(`another user (${holder}) already has the phone number ${row.phone}`);
      }
      if (phonesSeen.has(row.phone)) problems.push(`the same phone number as line ${phonesSeen.get(row.phone)}`);
      phonesSeen.set(row.phone, line);
    }
    if (problems.length > 0) {
      refuse(problems.join("; "));
      continue;
    }
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    row.change = !current
      ? "create"
      : ["phone", "first_name", "last_name", "branch", "designation"].every((k) => current[k] === row[k]) && same(current.groups, row.groups)
        ? "unchanged"
        : "update";
    const employee = row.groups.some((g) => state.groups.get(g));
    row.losesAccess = Boolean(current?.may_log_in) && !employee;
    rows.push(row);
    planned.set(row.email, row);
  }
  return { rows, refused };
}

/** Rows per INSERT: wrangler parses and sends each statement on its own, which costs far more than SQLite's work. */
const IMPORT_CHUNK = 100;

/**
 * INSERTs into admin_imports, up to IMPORT_CHUNK rows each. Its trigger applies each row completely or not at all,
 * and one statement is atomic, so a chunk is applied whole or not at all.
 */
function importStatements(rows) {
  const statements = [];
  for (let i = 0; i < rows.length; i += IMPORT_CHUNK) {
    const values = rows.slice(i, i + IMPORT_CHUNK).map(
      (row) => `(${[row.email, row.first_name, row.last_name, row.phone, row.branch, row.designation, JSON.stringify(row.groups)].map(sql).join(", ")})`,
    );
    statements.push(
      `INSERT INTO admin_imports (email, first_name, last_name, phone_number, branch, designation, groups) VALUES\n${values.join(",\n")};`,
    );
  }
  return statements;
}

function importUsers(args) {
  const started = Date.now();
  const { rows, refused } = planImport(args, args.file);
  const count = (kind) => rows.filter((r) => r.change === kind).length;
  const losing = rows.filter((r) => r.losesAccess && r.change !== "unchanged");
  const summary = { create: count("create"), update: count("update"), unchanged: count("unchanged"), refused: refused.length, lose_access: losing.map((r) => r.email) };
  if (refused.length > 0) {
    if (args.json) process.stdout.write(`${JSON.stringify({ applied: false, ...summary, refused_rows: refused }, null, 2)}\n`);
    else {
      console.log(`admin: ${refused.length} row(s) of ${args.file} refused; nothing was imported:`);
      print(args, refused.map((r) => ({ line: r.line, email: r.email, reason: r.reason })), ["line", "email", "reason"]);
    }
    throw new AdminError(`fix the refused row(s) and import again; no row was applied`);
  }
  const changed = rows.filter((r) => r.change !== "unchanged");
  if (args.flags.has("dry-run") || changed.length === 0) {
    const verb = args.flags.has("dry-run") ? "would" : "will";
    if (args.json) process.stdout.write(`${JSON.stringify({ applied: false, dry_run: args.flags.has("dry-run"), ...summary }, null, 2)}\n`);
    else {
      console.log(`admin: ${args.file}: ${summary.create} to create, ${summary.update} to update, ${summary.unchanged} unchanged${args.flags.has("dry-run") ? " (dry run: nothing written)" : ""}`);
      for (const r of losing) console.log(`admin: ${r.email} ${verb} lose access (no employee group left); their sessions ${verb} end`);
    }
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "admin-import-"));
  try {
    const file = path.join(dir, "import.sql");
    writeFileSync(file, importStatements(changed).join("\n"));
    const target = args.remote ? ["--remote"] : ["--local", ...(args.persistTo ? ["--persist-to", args.persistTo] : [])];
    const result = d1Execute(["DB", ...target, "--yes", "--file", file]);
    if (result.status !== 0) {
      throw d1Refusal(`${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-5).join("\n"));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  let ended = 0;
  if (losing.length > 0) {
    const { sessions } = revokeUserAccess({ emails: losing.map((r) => r.email), reason: "import removed the last employee group", remote: args.remote, persistTo: args.persistTo });
    ended = sessions.length;
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (args.json) process.stdout.write(`${JSON.stringify({ applied: true, ...summary, sessions_ended: ended, seconds: Number(seconds) }, null, 2)}\n`);
  else {
    console.log(`admin: imported ${args.file}: ${summary.create} created, ${summary.update} updated, ${summary.unchanged} unchanged, in ${seconds} s`);
    for (const r of losing) console.log(`admin: ${r.email} can no longer log in (no employee group left)`);
    if (losing.length > 0) console.log(`admin: ${ended} open session(s) ended`);
  }
}

function exportUsers(args) {
  const state = currentState(args);
  const lines = [CSV_COLUMNS.join(",")];
  for (const u of state.users.values()) {
    lines.push([u.email, u.phone, u.first_name, u.last_name, u.branch, u.designation, u.groups.join(";")].map(csvCell).join(","));
  }
  const text = `${lines.join("\r\n")}\r\n`;
  if (args.file === undefined) process.stdout.write(text);
  else {
    writeFileSync(args.file, text);
    console.error(`admin: exported ${state.users.size} user(s) to ${args.file}`);
  }
}

// ---- Main --------------------------------------------------------------------------------------------------------

function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
    COMMANDS[args.command].run(args);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`admin: ${err.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    if (err instanceof AdminError) {
      process.stderr.write(`admin: ${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`admin: ${err.stack ?? err}\n`);
    process.exit(1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
