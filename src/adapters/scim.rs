//! SCIM's storage in D1: users, groups and memberships as the SCIM endpoints read and change them, the per-client
//! request window, and the provisioning audit trail.
//!
//! Every change is one batch (one transaction on D1's single writer) that also ends the sessions of every user
//! the change leaves unable to log in (inactive, deleted, or in no employee group): their rows are marked revoked,
//! one `revoked` event per session is recorded, and the batch returns the access tokens' digests so that the
//! caller deletes them from KV. Uniqueness (email, phone, group name) is the schema's: a violation fails the whole
//! batch and is reported as [`WriteError::Taken`].

use serde::Deserialize;
use serde_json::Value;

use super::sql::{int, opt_text, store_error, text, BatchResults, Database, Param, Statement};
use crate::domain::TokenDigest;
use crate::login::StoreError;
use crate::scim::filter::{Column, Kind};
use crate::scim::resource::{GroupFields, StoredGroup, StoredUser, UserFields};

/// The SCIM statements over a [`Database`]: D1 in the Worker, SQLite in the host tests.
pub struct ScimStore<X> {
    db: X,
}

/// Why a change was not made.
#[derive(Debug)]
pub enum WriteError {
    /// Another user or group already has this value (the attribute's SCIM name).
    Taken(&'static str),
    Store(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

/// A change made: the resource as it is now, and the access tokens of the sessions it ended.
pub struct Changed<T> {
    pub resource: T,
    pub ended: Vec<TokenDigest>,
}

/// Who made a change, for the audit rows: the client's address and the reason named on ended sessions.
pub struct Audit<'a> {
    pub now: i64,
    pub ip: &'a str,
    pub action: &'static str,
    /// What changed, as JSON.
    pub detail: String,
    /// Why sessions end, if this change ends any (`scim: deactivated`).
    pub reason: &'a str,
}

fn ids_json(ids: &[i64]) -> Param {
    text(&Value::from(ids.to_vec()).to_string())
}

/// A filter's bound value (the filter binds texts, and 0 or 1 for booleans).
fn param(value: &Value) -> Param {
    match value {
        Value::String(s) => text(s),
        Value::Number(n) => n.as_i64().map_or_else(|| text(&n.to_string()), int),
        Value::Bool(b) => int(i64::from(*b)),
        _ => Param::Null,
    }
}

const ENTERPRISE_DEPARTMENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:department";

/// The user attributes a list filter may name (lower-cased), and the stored column each reads.
pub fn user_column(attr: &str) -> Option<Column> {
    let (expr, kind) = match attr {
        "id" => ("CAST(u.id AS TEXT)", Kind::Exact),
        "username" | "emails" | "emails.value" => ("u.email", Kind::Lower),
        "externalid" => ("u.external_id", Kind::Exact),
        "name.givenname" => ("u.first_name", Kind::Text),
        "name.familyname" => ("u.last_name", Kind::Text),
        "displayname" | "name.formatted" => ("trim(u.first_name || ' ' || u.last_name)", Kind::Text),
        "title" => ("p.designation", Kind::Text),
        "phonenumbers" | "phonenumbers.value" => ("p.phone_number", Kind::Exact),
        "preferredlanguage" => ("p.locale", Kind::Text),
        "active" => ("u.is_active", Kind::Boolean),
        "meta.created" => ("u.date_joined", Kind::Time),
        "meta.lastmodified" => ("COALESCE(u.updated_at, u.date_joined)", Kind::Time),
        ENTERPRISE_DEPARTMENT => ("p.branch", Kind::Text),
        _ => return None,
    };
    Some(Column { expr, kind })
}

/// The group attributes a list filter may name.
pub fn group_column(attr: &str) -> Option<Column> {
    let (expr, kind) = match attr {
        "id" => ("CAST(g.id AS TEXT)", Kind::Exact),
        "displayname" => ("g.name", Kind::Text),
        "externalid" => ("g.external_id", Kind::Exact),
        "members" | "members.value" => ("g.id", Kind::Member),
        "meta.created" => ("COALESCE(g.created_at, 0)", Kind::Time),
        "meta.lastmodified" => ("COALESCE(g.updated_at, g.created_at, 0)", Kind::Time),
        _ => return None,
    };
    Some(Column { expr, kind })
}

// ---- Statements ---------------------------------------------------------------------------------------------

/// Counts one request in the client's window: ?1 bucket, ?2 now, ?3 window length.
const COUNT_REQUEST: &str = "\
INSERT INTO rate_limits (bucket, window_started_at, hits) VALUES (?1, ?2, 1)
ON CONFLICT (bucket) DO UPDATE SET
  hits = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN 1 ELSE rate_limits.hits + 1 END,
  window_started_at = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN ?2 ELSE rate_limits.window_started_at END
RETURNING hits || ' ' || window_started_at AS v";

/// Each user as one JSON object in the column `v` (one row type for every read keeps the Worker small).
const USER_ROW: &str = "\
SELECT json_object('id', u.id, 'email', u.email, 'first_name', u.first_name, 'last_name', u.last_name,
  'is_active', u.is_active, 'external_id', u.external_id, 'created', u.date_joined,
  'modified', COALESCE(u.updated_at, u.date_joined), 'phone_number', p.phone_number, 'branch', COALESCE(p.branch, ''),
  'designation', COALESCE(p.designation, ''), 'locale', p.locale,
  'groups', json((SELECT json_group_array(json_array(id, name)) FROM (SELECT g.id, g.name FROM user_groups ug
    JOIN groups g ON g.id = ug.group_id WHERE ug.user_id = u.id ORDER BY g.name)))) AS v
FROM users u LEFT JOIN profiles p ON p.user_id = u.id";

const GROUP_COLUMNS: &str = "\
SELECT json_object('id', g.id, 'name', g.name, 'external_id', g.external_id, 'employee', g.is_employee_group,
  'created', COALESCE(g.created_at, 0), 'modified', COALESCE(g.updated_at, g.created_at, 0), 'members', ";
const GROUP_MEMBERS: &str = "\
json((SELECT json_group_array(json_array(id, email)) FROM (SELECT u.id, COALESCE(u.email, '') AS email
 FROM user_groups ug JOIN users u ON u.id = ug.user_id WHERE ug.group_id = g.id ORDER BY u.id)))) AS v FROM groups g";
const GROUP_NO_MEMBERS: &str = "json_array()) AS v FROM groups g";

/// Users who may log in: active, in at least one employee group.
const MAY_LOG_IN: &str = "SELECT ug.user_id FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
JOIN users u ON u.id = ug.user_id WHERE u.is_active = 1 AND g.is_employee_group = 1";

/// Records one `revoked` event per live session of the candidates (?1, a JSON array of user ids) who may no longer
/// log in: ?2 now, ?3 reason, ?4 the client's address.
fn record_revocations() -> String {
    format!(
        "INSERT INTO login_events (occurred_at, event, user_id, detail, ip) \
         SELECT ?2, 'revoked', user_id, 'session ' || id || ': ' || ?3, ?4 FROM sessions \
         WHERE revoked_at IS NULL AND user_id IN (SELECT value FROM json_each(?1)) AND user_id NOT IN ({MAY_LOG_IN})"
    )
}

/// Ends those sessions and returns, one row per session, the digests of every access token it holds that has not
/// expired (a session can hold two after a retried refresh), comma-separated: ?1 candidates, ?2 now, ?3 reason.
fn revoke_sessions() -> String {
    format!(
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 \
         WHERE revoked_at IS NULL AND user_id IN (SELECT value FROM json_each(?1)) AND user_id NOT IN ({MAY_LOG_IN}) \
         RETURNING COALESCE((SELECT group_concat(digest) FROM access_tokens \
           WHERE session_id = sessions.id AND expires_at > ?2), access_digest) AS v"
    )
}

/// ?1 now, ?2 action, ?3 resource, ?4 id, ?5 name, ?6 ip, ?7 detail.
const RECORD_CHANGE: &str = "\
INSERT INTO provisioning_events (occurred_at, source, action, resource, resource_id, name, ip, detail)
VALUES (?1, 'scim', ?2, ?3, ?4, ?5, ?6, ?7)";

const INSERT_USER: &str = "\
INSERT INTO users (email, first_name, last_name, is_active, external_id, date_joined, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";
/// ?1 id, ?2 email, ?3 first, ?4 last, ?5 active, ?6 external id, ?7 now.
const UPDATE_USER: &str = "\
UPDATE users SET email = ?2, first_name = ?3, last_name = ?4, is_active = ?5, external_id = ?6, updated_at = ?7
WHERE id = ?1";
/// ?1 user id, or NULL with ?6 the email of a user created in the same batch; ?2 phone, ?3 branch, ?4 designation,
/// ?5 locale.
const UPSERT_PROFILE: &str = "\
INSERT INTO profiles (user_id, phone_number, branch, designation, locale)
SELECT id, ?2, ?3, ?4, ?5 FROM users WHERE id = ?1 OR (?1 IS NULL AND email = ?6)
ON CONFLICT (user_id) DO UPDATE SET phone_number = excluded.phone_number, branch = excluded.branch,
  designation = excluded.designation, locale = excluded.locale";
const DELETE_USER: [&str; 5] = [
    "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?1)",
    "DELETE FROM sessions WHERE user_id = ?1",
    "DELETE FROM user_groups WHERE user_id = ?1",
    "DELETE FROM profiles WHERE user_id = ?1",
    "DELETE FROM users WHERE id = ?1",
];

const INSERT_GROUP: &str = "\
INSERT INTO groups (name, is_employee_group, external_id, created_at, updated_at) VALUES (?1, 0, ?2, ?3, ?3)";
const UPDATE_GROUP: &str = "UPDATE groups SET name = ?2, external_id = ?3, updated_at = ?4 WHERE id = ?1";
/// Makes the members of group ?1 (or, when NULL, of the group named ?3) exactly the existing users in ?2.
const DROP_MEMBERS: &str = "\
DELETE FROM user_groups WHERE group_id = COALESCE(?1, (SELECT id FROM groups WHERE name = ?3))
  AND user_id NOT IN (SELECT value FROM json_each(?2))";
const ADD_MEMBERS: &str = "\
INSERT OR IGNORE INTO user_groups (user_id, group_id)
SELECT u.id, g.id FROM json_each(?2) j JOIN users u ON u.id = j.value JOIN groups g
  ON g.id = COALESCE(?1, (SELECT id FROM groups WHERE name = ?3))";
/// Only a group that is not an employee group: access is the administrator's decision.
const DELETE_GROUP: [&str; 2] = [
    "DELETE FROM user_groups WHERE group_id = (SELECT id FROM groups WHERE id = ?1 AND is_employee_group = 0)",
    "DELETE FROM groups WHERE id = ?1 AND is_employee_group = 0 RETURNING CAST(id AS TEXT) AS v",
];

// ---- Rows ---------------------------------------------------------------------------------------------------

/// Every statement here answers one text column `v`: a JSON object, a digest, a count or an id.
#[derive(Deserialize)]
struct Row {
    v: String,
}

fn texts(results: &impl BatchResults, index: usize) -> Result<Vec<String>, StoreError> {
    Ok(results.rows::<Row>(index)?.into_iter().map(|r| r.v).collect())
}

fn objects(results: &impl BatchResults, index: usize) -> Result<Vec<Value>, StoreError> {
    texts(results, index)?.iter().map(|t| serde_json::from_str(t).map_err(store_error)).collect()
}

fn digests(results: &impl BatchResults, index: usize) -> Result<Vec<TokenDigest>, StoreError> {
    let listed = texts(results, index)?;
    Ok(listed.iter().flat_map(|v| v.split(',')).map(|digest| TokenDigest(digest.to_owned())).collect())
}

fn string(row: &Value, key: &str) -> Option<String> {
    row[key].as_str().map(str::to_owned)
}

/// `[[id, name], ...]`.
fn pairs(value: &Value) -> Vec<(i64, String)> {
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    items.iter().filter_map(|p| Some((p[0].as_i64()?, p[1].as_str()?.to_owned()))).collect()
}

fn user_of(row: &Value) -> Result<StoredUser, StoreError> {
    Ok(StoredUser {
        id: row["id"].as_i64().ok_or_else(|| store_error("user row without id"))?,
        fields: UserFields {
            email: string(row, "email").unwrap_or_default(),
            external_id: string(row, "external_id"),
            first_name: string(row, "first_name").unwrap_or_default(),
            last_name: string(row, "last_name").unwrap_or_default(),
            active: Some(row["is_active"].as_i64() == Some(1)),
            phone: string(row, "phone_number"),
            designation: string(row, "designation").unwrap_or_default(),
            branch: string(row, "branch").unwrap_or_default(),
            locale: string(row, "locale"),
        },
        created: row["created"].as_i64().unwrap_or(0),
        modified: row["modified"].as_i64().unwrap_or(0),
        groups: pairs(&row["groups"]),
    })
}

/// A stored group and whether it is an employee group.
pub struct GroupWithFlag {
    pub group: StoredGroup,
    pub employee: bool,
}

fn group_of(row: &Value) -> Result<GroupWithFlag, StoreError> {
    Ok(GroupWithFlag {
        employee: row["employee"].as_i64() == Some(1),
        group: StoredGroup {
            id: row["id"].as_i64().ok_or_else(|| store_error("group row without id"))?,
            name: string(row, "name").unwrap_or_default(),
            external_id: string(row, "external_id"),
            created: row["created"].as_i64().unwrap_or(0),
            modified: row["modified"].as_i64().unwrap_or(0),
            members: pairs(&row["members"]),
        },
    })
}

fn one<T>(
    results: &impl BatchResults,
    index: usize,
    read: fn(&Value) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    objects(results, index)?.first().map(read).transpose()
}

/// The schema's uniqueness violations, by the attribute a SCIM client knows them as.
fn taken(message: &str) -> Option<&'static str> {
    if !message.contains("UNIQUE") {
        return None;
    }
    [("users.email", "userName"), ("profiles.phone_number", "phoneNumbers"), ("groups.name", "displayName")]
        .into_iter()
        .find(|(column, _)| message.contains(column))
        .map(|(_, attr)| attr)
}

impl<X: Database> ScimStore<X> {
    pub fn new(db: X) -> ScimStore<X> {
        ScimStore { db }
    }

    fn statement(&self, sql: &str, params: &[Param]) -> Result<Statement, StoreError> {
        Ok(Statement::new(sql.to_owned(), params.to_vec()))
    }

    async fn batch(&self, statements: Vec<Statement>) -> Result<X::Results, WriteError> {
        self.db.batch(statements).await.map_err(|e| taken(&e.0).map_or(WriteError::Store(e), WriteError::Taken))
    }

    async fn read(&self, statements: Vec<Statement>) -> Result<X::Results, StoreError> {
        self.batch(statements).await.map_err(|e| match e {
            WriteError::Store(e) => e,
            WriteError::Taken(attr) => store_error(format!("a read reported {attr} taken")),
        })
    }

    /// Counts a request in the client's window; returns the hits so far and when the window started.
    pub async fn count_request(&self, bucket: &str, now: i64, window: i64) -> Result<(u32, i64), StoreError> {
        let results = self.read(vec![self.statement(COUNT_REQUEST, &[text(bucket), int(now), int(window)])?]).await?;
        let row = texts(&results, 0)?.into_iter().next().unwrap_or_default();
        let mut numbers = row.split(' ').map(|n| n.parse::<i64>().ok());
        match (numbers.next().flatten(), numbers.next().flatten()) {
            (Some(hits), Some(started)) => Ok((u32::try_from(hits).unwrap_or(u32::MAX), started)),
            _ => Err(store_error("the request counter returned no row")),
        }
    }

    pub async fn user(&self, id: i64) -> Result<Option<StoredUser>, StoreError> {
        let results = self.read(vec![self.statement(&format!("{USER_ROW} WHERE u.id = ?1"), &[int(id)])?]).await?;
        one(&results, 0, user_of)
    }

    /// One page of the users matching `filter` (SQL over `u` and `p` with `params`), and how many match in all.
    pub async fn users(
        &self,
        filter: &str,
        params: &[Value],
        offset: usize,
        count: usize,
    ) -> Result<(u64, Vec<StoredUser>), StoreError> {
        let bound: Vec<Param> = params.iter().map(param).collect();
        let total = format!(
            "SELECT CAST(count(*) AS TEXT) AS v FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE {filter}"
        );
        let mut page_params = bound.clone();
        page_params.extend([int(count as i64), int(offset as i64)]);
        let page = format!("{USER_ROW} WHERE {filter} ORDER BY u.id LIMIT ? OFFSET ?");
        let results = self.read(vec![self.statement(&total, &bound)?, self.statement(&page, &page_params)?]).await?;
        let total = texts(&results, 0)?.first().and_then(|n| n.parse().ok()).unwrap_or(0);
        let users = objects(&results, 1)?.iter().map(user_of).collect::<Result<_, _>>()?;
        Ok((total, users))
    }

    pub async fn group(&self, id: i64) -> Result<Option<GroupWithFlag>, StoreError> {
        let sql = format!("{GROUP_COLUMNS}{GROUP_MEMBERS} WHERE g.id = ?1");
        let results = self.read(vec![self.statement(&sql, &[int(id)])?]).await?;
        one(&results, 0, group_of)
    }

    /// Like [`ScimStore::users`]; `members` false leaves them out (a client that excludes them).
    pub async fn groups(
        &self,
        filter: &str,
        params: &[Value],
        offset: usize,
        count: usize,
        members: bool,
    ) -> Result<(u64, Vec<StoredGroup>), StoreError> {
        let bound: Vec<Param> = params.iter().map(param).collect();
        let total = format!("SELECT CAST(count(*) AS TEXT) AS v FROM groups g WHERE {filter}");
        let mut page_params = bound.clone();
        page_params.extend([int(count as i64), int(offset as i64)]);
        let tail = if members { GROUP_MEMBERS } else { GROUP_NO_MEMBERS };
        let page = format!("{GROUP_COLUMNS}{tail} WHERE {filter} ORDER BY g.id LIMIT ? OFFSET ?");
        let results = self.read(vec![self.statement(&total, &bound)?, self.statement(&page, &page_params)?]).await?;
        let total = texts(&results, 0)?.first().and_then(|n| n.parse().ok()).unwrap_or(0);
        let groups =
            objects(&results, 1)?.iter().map(|row| group_of(row).map(|g| g.group)).collect::<Result<_, _>>()?;
        Ok((total, groups))
    }

    /// The statements that end the sessions of `candidates` who may no longer log in, and record why.
    fn revocations(&self, candidates: &[i64], audit: &Audit<'_>) -> Result<[Statement; 2], StoreError> {
        let params = [ids_json(candidates), int(audit.now), text(audit.reason), text(audit.ip)];
        Ok([self.statement(&record_revocations(), &params)?, self.statement(&revoke_sessions(), &params[..3])?])
    }

    fn record(&self, audit: &Audit<'_>, resource: &str, id: Option<i64>, name: &str) -> Result<Statement, StoreError> {
        self.statement(
            RECORD_CHANGE,
            &[
                int(audit.now),
                text(audit.action),
                text(resource),
                super::sql::opt_int(id),
                text(name),
                text(audit.ip),
                text(&audit.detail),
            ],
        )
    }

    fn profile(&self, id: Option<i64>, f: &UserFields) -> Result<Statement, StoreError> {
        self.statement(
            UPSERT_PROFILE,
            &[
                super::sql::opt_int(id),
                opt_text(f.phone.as_deref()),
                text(&f.branch),
                text(&f.designation),
                opt_text(f.locale.as_deref()),
                text(&f.email),
            ],
        )
    }

    pub async fn create_user(&self, f: &UserFields, audit: &Audit<'_>) -> Result<StoredUser, WriteError> {
        let active = int(i64::from(f.active.unwrap_or(true)));
        let insert = self.statement(
            INSERT_USER,
            &[
                text(&f.email),
                text(&f.first_name),
                text(&f.last_name),
                active,
                opt_text(f.external_id.as_deref()),
                int(audit.now),
            ],
        )?;
        let record = self.statement(
            "INSERT INTO provisioning_events (occurred_at, source, action, resource, resource_id, name, ip, detail) \
             SELECT ?1, 'scim', 'create', 'User', id, email, ?2, ?3 FROM users WHERE email = ?4",
            &[int(audit.now), text(audit.ip), text(&audit.detail), text(&f.email)],
        )?;
        let read = self.statement(&format!("{USER_ROW} WHERE u.email = ?1"), &[text(&f.email)])?;
        let results = self.batch(vec![insert, self.profile(None, f)?, record, read]).await?;
        Ok(one(&results, 3, user_of)?.ok_or_else(|| store_error("created user vanished"))?)
    }

    /// Stores `f` as user `id` (which must exist) and ends the user's sessions if they may no longer log in.
    pub async fn update_user(
        &self,
        id: i64,
        f: &UserFields,
        audit: &Audit<'_>,
    ) -> Result<Changed<StoredUser>, WriteError> {
        let update = self.statement(
            UPDATE_USER,
            &[
                int(id),
                text(&f.email),
                text(&f.first_name),
                text(&f.last_name),
                int(i64::from(f.active.unwrap_or(true))),
                opt_text(f.external_id.as_deref()),
                int(audit.now),
            ],
        )?;
        let [record_ended, end] = self.revocations(&[id], audit)?;
        let read = self.statement(&format!("{USER_ROW} WHERE u.id = ?1"), &[int(id)])?;
        let statements = vec![
            update,
            self.profile(Some(id), f)?,
            record_ended,
            end,
            self.record(audit, "User", Some(id), &f.email)?,
            read,
        ];
        let results = self.batch(statements).await?;
        let resource = one(&results, 5, user_of)?.ok_or_else(|| store_error("updated user vanished"))?;
        Ok(Changed { resource, ended: digests(&results, 3)? })
    }

    /// Deletes user `id`, ending every session first; `None` when there is no such user.
    pub async fn delete_user(
        &self,
        id: i64,
        email: &str,
        audit: &Audit<'_>,
    ) -> Result<Option<Vec<TokenDigest>>, WriteError> {
        let mut statements = vec![self.statement("UPDATE users SET is_active = 0 WHERE id = ?1", &[int(id)])?];
        statements.extend(self.revocations(&[id], audit)?);
        statements.push(self.record(audit, "User", Some(id), email)?);
        for sql in DELETE_USER {
            statements.push(self.statement(sql, &[int(id)])?);
        }
        let statements_count = statements.len();
        let results = self.batch(statements).await?;
        let deleted = results.changes(statements_count - 1)?;
        Ok((deleted > 0).then_some(digests(&results, 2)?))
    }

    pub async fn create_group(&self, f: &GroupFields, audit: &Audit<'_>) -> Result<StoredGroup, WriteError> {
        let insert =
            self.statement(INSERT_GROUP, &[text(&f.name), opt_text(f.external_id.as_deref()), int(audit.now)])?;
        let members = [Param::Null, ids_json(&f.members), text(&f.name)];
        let record = self.statement(
            "INSERT INTO provisioning_events (occurred_at, source, action, resource, resource_id, name, ip, detail) \
             SELECT ?1, 'scim', 'create', 'Group', id, name, ?2, ?3 FROM groups WHERE name = ?4",
            &[int(audit.now), text(audit.ip), text(&audit.detail), text(&f.name)],
        )?;
        let read = self.statement(&format!("{GROUP_COLUMNS}{GROUP_MEMBERS} WHERE g.name = ?1"), &[text(&f.name)])?;
        let results = self.batch(vec![insert, self.statement(ADD_MEMBERS, &members)?, record, read]).await?;
        Ok(one(&results, 3, group_of)?.ok_or_else(|| store_error("created group vanished"))?.group)
    }

    /// Stores `f` as group `id`; `before` are its members before the change, whose access is re-checked.
    pub async fn update_group(
        &self,
        id: i64,
        f: &GroupFields,
        before: &[i64],
        audit: &Audit<'_>,
    ) -> Result<Changed<StoredGroup>, WriteError> {
        let update = self
            .statement(UPDATE_GROUP, &[int(id), text(&f.name), opt_text(f.external_id.as_deref()), int(audit.now)])?;
        let members = [int(id), ids_json(&f.members), Param::Null];
        let [record_ended, end] = self.revocations(before, audit)?;
        let read = self.statement(&format!("{GROUP_COLUMNS}{GROUP_MEMBERS} WHERE g.id = ?1"), &[int(id)])?;
        let statements = vec![
            update,
            self.statement(DROP_MEMBERS, &members)?,
            self.statement(ADD_MEMBERS, &members)?,
            record_ended,
            end,
            self.record(audit, "Group", Some(id), &f.name)?,
            read,
        ];
        let results = self.batch(statements).await?;
        let resource = one(&results, 6, group_of)?.ok_or_else(|| store_error("updated group vanished"))?.group;
        Ok(Changed { resource, ended: digests(&results, 4)? })
    }

    /// Deletes group `id` if it is not an employee group; false when nothing was deleted.
    pub async fn delete_group(&self, id: i64, name: &str, audit: &Audit<'_>) -> Result<bool, WriteError> {
        let record = self.statement(
            "INSERT INTO provisioning_events (occurred_at, source, action, resource, resource_id, name, ip, detail) \
             SELECT ?1, 'scim', 'delete', 'Group', id, ?2, ?3, ?4 FROM groups WHERE id = ?5 AND is_employee_group = 0",
            &[int(audit.now), text(name), text(audit.ip), text(&audit.detail), int(id)],
        )?;
        let mut statements = vec![record];
        for sql in DELETE_GROUP {
            statements.push(self.statement(sql, &[int(id)])?);
        }
        let results = self.batch(statements).await?;
        Ok(!texts(&results, 2)?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniqueness_violations_name_the_scim_attribute() {
        assert_eq!(taken("D1_ERROR: UNIQUE constraint failed: users.email: SQLITE_CONSTRAINT"), Some("userName"));
        assert_eq!(taken("UNIQUE constraint failed: profiles.phone_number"), Some("phoneNumbers"));
        assert_eq!(taken("UNIQUE constraint failed: groups.name"), Some("displayName"));
        assert_eq!(taken("no such table: users"), None);
    }

    #[test]
    fn only_listed_attributes_are_filterable_and_none_reads_a_secret() {
        assert_eq!(user_column("username").map(|c| c.expr), Some("u.email"));
        assert_eq!(user_column(ENTERPRISE_DEPARTMENT).map(|c| c.expr), Some("p.branch"));
        assert!(user_column("password").is_none() && user_column("u.email").is_none());
        assert_eq!(group_column("members").map(|c| c.kind), Some(Kind::Member));
    }
}

/// The statements on SQLite with every migration applied: what each change writes, and whose sessions it ends.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod on_sqlite {
    use crate::test_support::run;

    use super::*;
    use crate::adapters::sqlite::Sqlite;
    use crate::scim::filter;

    const NOW: i64 = 1_800_000_000;

    fn audit(action: &'static str, reason: &'static str) -> Audit<'static> {
        Audit { now: NOW, ip: "203.0.113.5", action, detail: "{}".into(), reason }
    }

    fn user(email: &str) -> UserFields {
        UserFields { email: email.into(), first_name: "Sam".into(), active: Some(true), ..UserFields::default() }
    }

    /// A database with the Employees group and Sam, a member with two live sessions.
    fn world() -> (Sqlite, ScimStore<Sqlite>, i64) {
        let db = Sqlite::migrated();
        let store = ScimStore::new(db.clone());
        db.execute("INSERT INTO groups (name, is_employee_group) VALUES ('Employees', 1), ('Sales', 0)");
        let sam = run(store.create_user(&user("sam@example.com"), &audit("create", ""))).unwrap();
        db.execute(&format!(
            "INSERT INTO user_groups (user_id, group_id) SELECT {id}, id FROM groups WHERE name IN ('Employees', 'Sales');
             INSERT INTO sessions (user_id, created_at, last_used_at, expires_at, access_digest, access_expires_at)
             VALUES ({id}, 1, 1, {far}, 'digest-a', {far}), ({id}, 1, 1, {far}, 'digest-b', {far});",
            id = sam.id,
            far = NOW + 86_400
        ));
        (db, store, sam.id)
    }

    fn live_sessions(db: &Sqlite, id: i64) -> i64 {
        db.number(&format!("SELECT count(*) FROM sessions WHERE user_id = {id} AND revoked_at IS NULL"))
    }

    #[test]
    fn a_created_user_reads_back_with_profile_and_an_audit_row() {
        let (db, store, id) = world();
        let sam = run(store.user(id)).unwrap().unwrap();
        assert_eq!(sam.fields.email, "sam@example.com");
        assert_eq!(sam.created, NOW);
        assert_eq!(sam.groups.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["Employees", "Sales"]);
        assert_eq!(
            db.number("SELECT count(*) FROM provisioning_events WHERE action = 'create' AND resource_id = 1"),
            1
        );
        let taken = run(store.create_user(&user("sam@example.com"), &audit("create", "")));
        assert!(matches!(taken, Err(WriteError::Taken("userName"))));
    }

    #[test]
    fn deactivating_ends_every_session_in_the_same_batch_and_returns_their_access_tokens() {
        let (db, store, id) = world();
        let renamed = UserFields { first_name: "Samuel".into(), ..user("sam@example.com") };
        let kept = run(store.update_user(id, &renamed, &audit("update", "scim: access removed"))).unwrap();
        assert!(kept.ended.is_empty(), "a change that keeps access keeps the sessions");
        assert_eq!(live_sessions(&db, id), 2);

        let inactive = UserFields { active: Some(false), ..renamed };
        let changed = run(store.update_user(id, &inactive, &audit("update", "scim: deactivated"))).unwrap();
        let mut ended: Vec<String> = changed.ended.into_iter().map(|d| d.0).collect();
        ended.sort();
        assert_eq!(ended, ["digest-a", "digest-b"]);
        assert_eq!(live_sessions(&db, id), 0);
        assert_eq!(
            db.number("SELECT count(*) FROM login_events WHERE event = 'revoked' AND detail LIKE 'session %: scim: deactivated'"),
            2
        );
    }

    #[test]
    fn leaving_the_last_employee_group_ends_the_sessions_leaving_another_group_does_not() {
        let (db, store, id) = world();
        let employees = db.number("SELECT id FROM groups WHERE name = 'Employees'");
        let sales = db.number("SELECT id FROM groups WHERE name = 'Sales'");
        let fields = |name: &str| GroupFields { name: name.into(), external_id: None, members: vec![] };
        let left_sales =
            run(store.update_group(sales, &fields("Sales"), &[id], &audit("update", "scim: removed"))).unwrap();
        assert!(left_sales.ended.is_empty());
        assert_eq!(live_sessions(&db, id), 2);
        let left =
            run(store.update_group(employees, &fields("Employees"), &[id], &audit("update", "scim: removed"))).unwrap();
        assert_eq!(left.ended.len(), 2);
        assert!(left.resource.members.is_empty());
        assert_eq!(live_sessions(&db, id), 0);
    }

    #[test]
    fn deleting_a_user_ends_the_sessions_and_removes_every_row_that_hangs_on_them() {
        let (db, store, id) = world();
        let ended = run(store.delete_user(id, "sam@example.com", &audit("delete", "scim: deleted"))).unwrap();
        assert_eq!(ended.map(|e| e.len()), Some(2));
        for table in ["users WHERE id", "profiles WHERE user_id", "user_groups WHERE user_id", "sessions WHERE user_id"]
        {
            assert_eq!(db.number(&format!("SELECT count(*) FROM {table} = {id}")), 0, "{table}");
        }
        assert_eq!(
            db.number("SELECT count(*) FROM provisioning_events WHERE action = 'delete' AND name = 'sam@example.com'"),
            1
        );
        assert_eq!(run(store.delete_user(id, "sam@example.com", &audit("delete", ""))).unwrap(), None);
    }

    #[test]
    fn an_employee_group_is_never_deleted_through_scim_and_a_new_group_is_never_an_employee_group() {
        let (db, store, id) = world();
        let employees = db.number("SELECT id FROM groups WHERE name = 'Employees'");
        assert!(!run(store.delete_group(employees, "Employees", &audit("delete", ""))).unwrap());
        assert_eq!(live_sessions(&db, id), 2);
        let group = GroupFields { name: "Field".into(), external_id: Some("okta-1".into()), members: vec![id, 999] };
        let created = run(store.create_group(&group, &audit("create", ""))).unwrap();
        assert_eq!(created.members, vec![(id, "sam@example.com".to_owned())], "unknown ids are ignored");
        assert_eq!(db.number("SELECT is_employee_group FROM groups WHERE name = 'Field'"), 0);
        assert!(run(store.delete_group(created.id, "Field", &audit("delete", ""))).unwrap());
    }

    #[test]
    fn the_daily_cleanup_deletes_provisioning_rows_past_the_retention_period() {
        let (db, _store, _) = world();
        db.execute("UPDATE provisioning_events SET occurred_at = 1000");
        run(crate::adapters::scim::ScimStore::new(db.clone())
            .create_user(&user("new@example.com"), &audit("create", "")))
        .unwrap();
        let d1 = crate::adapters::d1::D1::new(db.clone());
        let purged =
            run(d1.purge(crate::domain::UnixTime(NOW), &crate::login::Policy::default(), 86_400, 86_400)).unwrap();
        assert!(purged.events >= 1);
        assert_eq!(db.number("SELECT count(*) FROM provisioning_events"), 1, "the recent row stays");
    }

    #[test]
    fn list_filters_run_as_bound_sql_with_paging() {
        let (_db, store, _) = world();
        for n in 1..=4 {
            run(store.create_user(&user(&format!("page.{n}@example.com")), &audit("create", ""))).unwrap();
        }
        let mut params = Vec::new();
        let column = |attr: &str| user_column(attr);
        let sql =
            filter::parse(r#"userName sw "PAGE." and active eq true"#).unwrap().to_sql(&column, &mut params).unwrap();
        let (total, page) = run(store.users(&sql, &params, 1, 2)).unwrap();
        assert_eq!(total, 4);
        assert_eq!(
            page.iter().map(|u| u.fields.email.as_str()).collect::<Vec<_>>(),
            ["page.2@example.com", "page.3@example.com"]
        );
        let mut params = Vec::new();
        let sql = filter::parse(r#"displayName eq "employees""#)
            .unwrap()
            .to_sql(&|a: &str| group_column(a), &mut params)
            .unwrap();
        let (total, groups) = run(store.groups(&sql, &params, 0, 10, false)).unwrap();
        assert_eq!((total, groups[0].members.len()), (1, 0));
    }

    #[test]
    fn an_import_row_makes_the_user_look_like_the_row_and_records_the_lost_access() {
        let (db, _store, id) = world();
        db.execute(
            "INSERT INTO admin_imports (email, first_name, last_name, phone_number, branch, designation, groups)
             VALUES ('sam@example.com', 'Sam', 'Lee', '+15555550123', 'East', 'Tech', '[\"Sales\"]'),
                    ('new@example.com', 'New', 'Hire', '', '', '', '[\"Employees\"]')",
        );
        assert_eq!(db.number(&format!("SELECT may_log_in FROM user_directory WHERE id = {id}")), 0);
        assert_eq!(db.number("SELECT may_log_in FROM user_directory WHERE email = 'new@example.com'"), 1);
        assert_eq!(
            db.number("SELECT count(*) FROM login_events WHERE event = 'revoked' AND detail LIKE 'admin: import%'"),
            1
        );
        assert_eq!(
            db.number("SELECT count(*) FROM provisioning_events WHERE source = 'import' AND resource_id IS NOT NULL"),
            2
        );
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.execute(
                "INSERT INTO admin_imports (email, phone_number, groups) VALUES ('x@example.com', '', '[\"Nope\"]')",
            )
        }));
        assert!(refused.is_err(), "an unknown group refuses the row");
        assert_eq!(db.number("SELECT count(*) FROM users WHERE email = 'x@example.com'"), 0);
    }
}
