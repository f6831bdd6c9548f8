// Ends every live session of a user at once: the administrator's side of revocation.
//
//   import { revokeUserAccess } from "./lib/revoke.mjs";
//   const { sessions, keysDeleted } = revokeUserAccess({ email: "jane.doe@example.com", reason: "deactivated" });
//   // options: userId | email (one of them), reason, remote (deployed D1 and KV), persistTo (local state dir)
//
// Also runnable by hand:  node scripts/lib/revoke.mjs --email jane.doe@example.com [--reason R] [--remote]
//                                                     [--persist-to DIR]
//
// Two wrangler calls:
//   1. `wrangler d1 execute DB`: records one 'revoked' event per live session, then one UPDATE ... RETURNING marks
//      those sessions revoked (so their refresh tokens are dead), and a SELECT returns the KV keys of every
//      unexpired access token of the user's revoked sessions (the access_tokens table lists them all);
//   2. `wrangler kv bulk delete --binding AUTH_KV`: deletes those keys, so the access tokens stop working at once
//      where KV is read next (other Cloudflare locations may serve a cached copy for up to 60 s).
// The KV key format ('session:' + SHA-256 of the token, hex) mirrors src/adapters/kv.rs. Running it twice is
// harmless: the second run ends no session and deletes the same keys again.

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { WRANGLER_BIN, d1Execute, spawnWrangler } from "./wrangler.mjs";

function sqlString(value) {
  return `'${String(value).replaceAll("'", "''")}'`;
}

function wrangler(args) {
  if (!existsSync(WRANGLER_BIN)) throw new Error("wrangler is not installed; run `sh scripts/bootstrap.sh` first");
  const result = args[0] === "d1" && args[1] === "execute" ? d1Execute(args.slice(2)) : spawnWrangler(args);
  if (result.error) throw new Error(`could not run wrangler: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`\`wrangler ${args.slice(0, 3).join(" ")}\` failed (exit ${result.status}):\n${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

/**
 * The SQL that records the events and revokes the sessions; the last statement returns the KV keys. `emails` (a
 * list) ends the sessions of several users in the same two statements.
 */
export function revocationSql({ userId = null, email = null, emails = null, reason }) {
  const given = [userId, email, emails].filter((v) => v !== null).length;
  if (given !== 1) throw new Error("revokeUserAccess needs exactly one of userId, email and emails");
  if (userId !== null && !Number.isSafeInteger(userId)) throw new Error(`userId must be an integer, not ${userId}`);
  const list = (emails ?? [email]).map((e) => `lower(trim(${sqlString(e)}))`).join(", ");
  const user = userId !== null ? `= ${userId}` : `IN (SELECT id FROM users WHERE email IN (${list || "NULL"}))`;
  const why = sqlString(reason);
  return [
    `INSERT INTO login_events (occurred_at, event, user_id, detail) ` +
      `SELECT unixepoch(), 'revoked', user_id, 'session ' || id || ': ' || ${why} FROM sessions ` +
      `WHERE user_id ${user} AND revoked_at IS NULL`,
    `UPDATE sessions SET revoked_at = unixepoch(), revoked_reason = ${why} ` +
      `WHERE user_id ${user} AND revoked_at IS NULL RETURNING id`,
    // Every access token of the user's revoked sessions that has not expired (a session can hold more than one, and
    // an earlier run may have failed to delete some): deleting again is harmless.
    `SELECT 'session:' || a.digest AS kv_key FROM access_tokens a JOIN sessions s ON s.id = a.session_id ` +
      `WHERE s.user_id ${user} AND s.revoked_at IS NOT NULL AND a.expires_at > unixepoch()`,
  ].join(";\n");
}

/**
 * Revokes every live session of the user (by `userId` or `email`): marks them revoked in D1 and deletes their
 * access tokens from KV. Local by default (`persistTo` as for `wrangler dev --persist-to`), `remote: true` for the
 * deployed database and namespace. Returns { sessions: [ids], keysDeleted }.
 */
export function revokeUserAccess({ userId = null, email = null, emails = null, reason = "revoked by an administrator", remote = false, persistTo = null } = {}) {
  if (remote && persistTo) throw new Error("persistTo only applies to local state, not remote");
  const target = remote ? ["--remote"] : ["--local", ...(persistTo ? ["--persist-to", persistTo] : [])];
  const sql = revocationSql({ userId, email, emails, reason });
  const out = wrangler(["d1", "execute", "DB", ...target, "--yes", "--json", "--command", sql]);
  let results;
  try {
    results = JSON.parse(out.slice(out.search(/^[[{]/m)));
  } catch {
    throw new Error(`wrangler d1 execute printed no JSON:\n${out}`);
  }
  const ended = results[results.length - 2]?.results ?? [];
  const keys = (results[results.length - 1]?.results ?? []).map((r) => r.kv_key).filter((k) => typeof k === "string");
  if (keys.length > 0) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "revoke-"));
    try {
      const file = path.join(dir, "keys.json");
      writeFileSync(file, JSON.stringify(keys));
      wrangler(["kv", "bulk", "delete", file, "--binding", "AUTH_KV", ...target, "--force"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { sessions: ended.map((r) => r.id), keysDeleted: keys.length };
}

function main(argv) {
  const options = { reason: "revoked by an administrator" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--email") options.email = value();
    else if (arg === "--user-id") options.userId = Number(value());
    else if (arg === "--reason") options.reason = value();
    else if (arg === "--remote") options.remote = true;
    else if (arg === "--persist-to") options.persistTo = value();
    else throw new Error(`unknown argument: ${arg}`);
  }
  const { sessions, keysDeleted } = revokeUserAccess(options);
  console.log(`revoke: ended ${sessions.length} session(s) [${sessions.join(", ")}], deleted ${keysDeleted} access token(s)`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`revoke: ${e.message}\n`);
    process.exit(1);
  }
}
