//! The SQL of every SCIM statement, and the binding of filter values and id lists as parameters.

use serde_json::Value;

use super::super::sql::{int, text, Param};

pub(super) fn ids_json(ids: &[i64]) -> Param {
    text(&Value::from(ids.to_vec()).to_string())
}

/// A filter's bound value (the filter binds texts, and 0 or 1 for booleans).
pub(super) fn param(value: &Value) -> Param {
    match value {
        Value::String(s) => text(s),
        Value::Number(n) => n.as_i64().map_or_else(|| text(&n.to_string()), int),
        Value::Bool(b) => int(i64::from(*b)),
        _ => Param::Null,
    }
}

/// Counts one request in the client's window: ?1 bucket, ?2 now, ?3 window length.
pub(super) const COUNT_REQUEST: &str = "\
INSERT INTO rate_limits (bucket, window_started_at, hits) VALUES (?1, ?2, 1)
ON CONFLICT (bucket) DO UPDATE SET
  hits = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN 1 ELSE rate_limits.hits + 1 END,
  window_started_at = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN ?2 ELSE rate_limits.window_started_at END
RETURNING hits || ' ' || window_started_at AS v";

/// Each user as one JSON object in the column `v` (one row type for every read keeps the Worker small).
pub(super) const USER_ROW: &str = "\
SELECT json_object('id', u.id, 'email', u.email, 'first_name', u.first_name, 'last_name', u.last_name,
  'is_active', u.is_active, 'external_id', u.external_id, 'created', u.date_joined,
  'modified', COALESCE(u.updated_at, u.date_joined), 'phone_number', p.phone_number, 'branch', COALESCE(p.branch, ''),
  'designation', COALESCE(p.designation, ''), 'locale', p.locale,
  'groups', json((SELECT json_group_array(json_array(id, name)) FROM (SELECT g.id, g.name FROM user_groups ug
    JOIN groups g ON g.id = ug.group_id WHERE ug.user_id = u.id ORDER BY g.name)))) AS v
FROM users u LEFT JOIN profiles p ON p.user_id = u.id";

pub(super) const GROUP_COLUMNS: &str = "\
SELECT json_object('id', g.id, 'name', g.name, 'external_id', g.external_id, 'employee', g.is_employee_group,
  'created', COALESCE(g.created_at, 0), 'modified', COALESCE(g.updated_at, g.created_at, 0), 'members', ";
pub(super) const GROUP_MEMBERS: &str = "\
json((SELECT json_group_array(json_array(id, email)) FROM (SELECT u.id, COALESCE(u.email, '') AS email
 FROM user_groups ug JOIN users u ON u.id = ug.user_id WHERE ug.group_id = g.id ORDER BY u.id)))) AS v FROM groups g";
pub(super) const GROUP_NO_MEMBERS: &str = "json_array()) AS v FROM groups g";

/// Users who may log in: active, in at least one employee group.
pub(super) const MAY_LOG_IN: &str = "SELECT ug.user_id FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
JOIN users u ON u.id = ug.user_id WHERE u.is_active = 1 AND g.is_employee_group = 1";

/// Records one `revoked` event per live session of the candidates (?1, a JSON array of user ids) who may no longer
/// log in: ?2 now, ?3 reason, ?4 the client's address.
pub(super) fn record_revocations() -> String {
    format!(
        "INSERT INTO login_events (occurred_at, event, user_id, detail, ip) \
         SELECT ?2, 'revoked', user_id, 'session ' || id || ': ' || ?3, ?4 FROM sessions \
         WHERE revoked_at IS NULL AND user_id IN (SELECT value FROM json_each(?1)) AND user_id NOT IN ({MAY_LOG_IN})"
    )
}

/// Ends those sessions and returns, one row per session, the digests of every access token it holds that has not
/// expired (a session can hold two after a retried refresh), comma-separated: ?1 candidates, ?2 now, ?3 reason.
pub(super) fn revoke_sessions() -> String {
    format!(
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 \
         WHERE revoked_at IS NULL AND user_id IN (SELECT value FROM json_each(?1)) AND user_id NOT IN ({MAY_LOG_IN}) \
         RETURNING COALESCE((SELECT group_concat(digest) FROM access_tokens \
           WHERE session_id = sessions.id AND expires_at > ?2), access_digest) AS v"
    )
}

/// ?1 now, ?2 action, ?3 resource, ?4 id, ?5 name, ?6 ip, ?7 detail.
pub(super) const RECORD_CHANGE: &str = "\
INSERT INTO provisioning_events (occurred_at, source, action, resource, resource_id, name, ip, detail)
VALUES (?1, 'scim', ?2, ?3, ?4, ?5, ?6, ?7)";

pub(super) const INSERT_USER: &str = "\
INSERT INTO users (email, first_name, last_name, is_active, external_id, date_joined, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";
/// ?1 id, ?2 email, ?3 first, ?4 last, ?5 active, ?6 external id, ?7 now.
pub(super) const UPDATE_USER: &str = "\
UPDATE users SET email = ?2, first_name = ?3, last_name = ?4, is_active = ?5, external_id = ?6, updated_at = ?7
WHERE id = ?1";
/// ?1 user id, or NULL with ?6 the email of a user created in the same batch; ?2 phone, ?3 branch, ?4 designation,
/// ?5 locale.
pub(super) const UPSERT_PROFILE: &str = "\
INSERT INTO profiles (user_id, phone_number, branch, designation, locale)
SELECT id, ?2, ?3, ?4, ?5 FROM users WHERE id = ?1 OR (?1 IS NULL AND email = ?6)
ON CONFLICT (user_id) DO UPDATE SET phone_number = excluded.phone_number, branch = excluded.branch,
  designation = excluded.designation, locale = excluded.locale";
pub(super) const DELETE_USER: [&str; 5] = [
    "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?1)",
    "DELETE FROM sessions WHERE user_id = ?1",
    "DELETE FROM user_groups WHERE user_id = ?1",
    "DELETE FROM profiles WHERE user_id = ?1",
    "DELETE FROM users WHERE id = ?1",
];

pub(super) const INSERT_GROUP: &str = "\
INSERT INTO groups (name, is_employee_group, external_id, created_at, updated_at) VALUES (?1, 0, ?2, ?3, ?3)";
pub(super) const UPDATE_GROUP: &str = "UPDATE groups SET name = ?2, external_id = ?3, updated_at = ?4 WHERE id = ?1";
/// Makes the members of group ?1 (or, when NULL, of the group named ?3) exactly the existing users in ?2.
pub(super) const DROP_MEMBERS: &str = "\
DELETE FROM user_groups WHERE group_id = COALESCE(?1, (SELECT id FROM groups WHERE name = ?3))
  AND user_id NOT IN (SELECT value FROM json_each(?2))";
pub(super) const ADD_MEMBERS: &str = "\
INSERT OR IGNORE INTO user_groups (user_id, group_id)
SELECT u.id, g.id FROM json_each(?2) j JOIN users u ON u.id = j.value JOIN groups g
  ON g.id = COALESCE(?1, (SELECT id FROM groups WHERE name = ?3))";
/// Only a group that is not an employee group: access is the administrator's decision.
pub(super) const DELETE_GROUP: [&str; 2] = [
    "DELETE FROM user_groups WHERE group_id = (SELECT id FROM groups WHERE id = ?1 AND is_employee_group = 0)",
    "DELETE FROM groups WHERE id = ?1 AND is_employee_group = 0 RETURNING CAST(id AS TEXT) AS v",
];
