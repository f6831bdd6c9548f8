//! SCIM's storage in D1: users, groups and memberships as the SCIM endpoints read and change them, the per-client
//! request window, and the provisioning audit trail.
//!
//! Every change is one batch (one transaction on D1's single writer) that also ends the sessions of every user
//! the change leaves unable to log in (inactive, deleted, or in no employee group): their rows are marked revoked,
//! one `revoked` event per session is recorded, and the batch returns the access tokens' digests so that the
//! caller deletes them from KV. Uniqueness (email, phone, group name) is the schema's: a violation fails the whole
//! batch and is reported as [`WriteError::Taken`].

mod columns;
mod rows;
mod statements;

use serde_json::Value;

use super::sql::{int, opt_text, store_error, text, BatchResults, Database, Param, Statement};
use crate::domain::{Seconds, TokenDigest};
use crate::login::StoreError;
use crate::scim::resource::{GroupFields, StoredGroup, StoredUser, UserFields};
pub use columns::{group_column, user_column};
pub use rows::GroupWithFlag;
use rows::*;
use statements::*;

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
    pub async fn count_request(&self, bucket: &str, now: i64, window: Seconds) -> Result<(u32, i64), StoreError> {
        let results =
            self.read(vec![self.statement(COUNT_REQUEST, &[text(bucket), int(now), int(window.as_i64())])?]).await?;
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
mod tests;

/// The statements on SQLite with every migration applied: what each change writes, and whose sessions it ends.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod on_sqlite;
