//! Sessions: one row per signed-in device, its refresh tokens, their rotation, reuse detection and revocation.

use serde::Deserialize;

use super::challenges::{count_request, ip_bucket, SessionIdRow};
use super::rules::{client_within, refresh_refusal, Verdict};
use super::{user_from, user_query, UserRow, D1};
use crate::adapters::sql::{
    int, opt_int, opt_text, secs, store_error, stored_digest, text, BatchResults, Database, Statement,
};
use crate::domain::{Identifier, TokenDigest, UnixTime};
use crate::login::{
    ClientIp, NewSession, Policy, RefreshLogout, Revocation, Rotation, Scope, SessionInfo, Sessions, StoreError,
};

/// Starts a session for the account behind the identifier, in the guess's batch, if the guess that batch reserved
/// is right and the account may log in; the condition is exactly the one `REDEEM` then consumes, evaluated in the
/// same transaction, so the row exists only if this batch redeemed the code. ?1 challenge key, ?2 the guess's nonce,
/// ?3 now, ?4 refresh expiry, ?5 access digest, ?6 access expiry, ?7 user agent, ?8 ip, ?9 country, ?10 city,
/// ?11 the identifier's value, ?12 the session's id (chosen at random by the caller), ?13 the guess's digest.
macro_rules! start_session {
    ($user:literal) => {
        concat!(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, access_digest, access_expires_at, ",
            "user_agent, ip, country, city) ",
            "SELECT ?12, u.id, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 FROM users u WHERE ",
            $user,
            " AND u.is_active = 1 AND EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id ",
            "WHERE ug.user_id = u.id AND g.is_employee_group = 1) ",
            "AND EXISTS (SELECT 1 FROM otp_challenges WHERE identifier = ?1 AND reserved_by = ?2 AND code_digest = ?13 ",
            "AND consumed_at IS NULL AND expires_at > ?3) RETURNING id"
        )
    };
}

const START_SESSION_BY_EMAIL: &str = start_session!("u.email = ?11");
const START_SESSION_BY_PHONE: &str = start_session!("u.id = (SELECT user_id FROM profiles WHERE phone_number = ?11)");

/// The statement that starts a session for the account behind `identifier` (see `start_session!`).
pub(super) fn start_session(identifier: &Identifier) -> &'static str {
    match identifier {
        Identifier::Email(_) => START_SESSION_BY_EMAIL,
        Identifier::Phone(_) => START_SESSION_BY_PHONE,
    }
}

/// The session's first refresh token: ?1 its digest, ?2 the session's access digest (unique), ?3 now.
pub(super) const FIRST_REFRESH_TOKEN: &str = "\
INSERT INTO refresh_tokens (digest, session_id, issued_at, access_digest)
SELECT ?1, id, ?3, ?2 FROM sessions WHERE access_digest = ?2";

/// The session's first access token, listed for revocation: ?1 the session's access digest (unique).
pub(super) const FIRST_ACCESS_TOKEN: &str = "\
INSERT INTO access_tokens (digest, session_id, expires_at)
SELECT access_digest, id, access_expires_at FROM sessions WHERE access_digest = ?1";

/// Whether the account of session `s` may log in (as the `u` of the enclosing query).
macro_rules! may_log_in {
    () => {
        "u.is_active = 1 AND EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
         WHERE ug.user_id = u.id AND g.is_employee_group = 1)"
    };
}

/// The account of the session of refresh token ?1.
const USER_OF_REFRESH: &str = user_query!(
    "u.id = (SELECT s.user_id FROM sessions s JOIN refresh_tokens r ON r.session_id = s.id WHERE r.digest = ?1)"
);

/// The access token issued with refresh token ?1 (to delete once a rotation replaces it); for a token issued before
/// the two were recorded together, the session's latest one.
const PAIRED_ACCESS: &str = "\
SELECT COALESCE(r.access_digest, s.access_digest) AS access_digest
FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.digest = ?1";

/// The step that decides a refresh: the new refresh token ?2 (paired with access token ?5) joins the session of ?1
/// if the client's counter ?6 is within ?7, ?1 is the session's current token, or was rotated out less than ?4
/// seconds before ?3 (a retry), the session is live at ?3 and its account may still log in. Every later statement
/// of the batch keys on ?2 existing.
const ADMIT_REFRESH: &str = concat!(
    "INSERT INTO refresh_tokens (digest, session_id, issued_at, access_digest) ",
    "SELECT ?2, r.session_id, ?3, ?5 FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id ",
    "JOIN users u ON u.id = s.user_id ",
    "WHERE ",
    client_within!("?6", "?7"),
    " AND r.digest = ?1 AND (r.replaced_by IS NULL OR r.replaced_at > ?3 - ?4) ",
    "AND s.revoked_at IS NULL AND s.expires_at > ?3 AND ",
    may_log_in!()
);

/// Rotation: ?1 is replaced by ?2 at ?3, if ?1 was still current and ?2 was admitted. Only one request can find
/// `replaced_by IS NULL`; a retry within the grace period leaves the first successor in place.
const CLAIM_REFRESH: &str = "\
UPDATE refresh_tokens SET replaced_by = ?2, replaced_at = ?3
WHERE digest = ?1 AND replaced_by IS NULL AND EXISTS (SELECT 1 FROM refresh_tokens WHERE digest = ?2)
RETURNING session_id AS id";

/// Lists the new access token ?3 (expiring at ?4) under the session ?2 joined: ?2 new refresh token.
const NEXT_ACCESS_TOKEN: &str = "\
INSERT INTO access_tokens (digest, session_id, expires_at) SELECT ?3, session_id, ?4 FROM refresh_tokens WHERE digest = ?2";

/// Moves the session to the new pair, if ?2 was admitted: ?2 new refresh, ?3 now, ?4 access digest, ?5 access
/// expiry, ?6 refresh expiry, ?7 the absolute lifetime from creation, ?8 user agent, ?9 ip, ?10 country, ?11 city.
/// The session's end never moves past its creation plus ?7, however often it is refreshed.
const MOVE_SESSION: &str = "\
UPDATE sessions SET access_digest = ?4, access_expires_at = ?5, expires_at = min(?6, created_at + ?7), last_used_at = ?3,
  user_agent = COALESCE(?8, user_agent), ip = COALESCE(?9, ip), country = COALESCE(?10, country),
  city = COALESCE(?11, city)
WHERE id = (SELECT session_id FROM refresh_tokens WHERE digest = ?2)
RETURNING id, user_id, expires_at";

/// Reuse detection: ?1 was rotated out and ?2 was not admitted (so the rotation was longer ago than the grace
/// period, or the account lost access), so whoever holds ?1 is replaying it; the live session ends at ?3. Only
/// within the client's limit (?4 its counter, ?5 the limit).
const REVOKE_ON_REUSE: &str = concat!(
    "UPDATE sessions SET revoked_at = ?3, revoked_reason = 'refresh token reused' ",
    "WHERE revoked_at IS NULL AND expires_at > ?3 AND NOT EXISTS (SELECT 1 FROM refresh_tokens WHERE digest = ?2) ",
    "AND ",
    client_within!("?4", "?5"),
    " AND id = (SELECT session_id FROM refresh_tokens WHERE digest = ?1 AND replaced_by IS NOT NULL) ",
    "RETURNING id, user_id"
);

/// The account lost access: ?1 is its session's current token, the session is live at ?3, ?2 was not admitted, the
/// client is within its limit (?4 its counter, ?5 the limit) and the user is inactive or in no employee group; the
/// session ends, so the access tokens' stale snapshots go too.
const REVOKE_ON_LOST_ACCESS: &str = concat!(
    "UPDATE sessions SET revoked_at = ?3, revoked_reason = 'account may no longer log in' ",
    "WHERE revoked_at IS NULL AND expires_at > ?3 AND NOT EXISTS (SELECT 1 FROM refresh_tokens WHERE digest = ?2) ",
    "AND ",
    client_within!("?4", "?5"),
    " ",
    "AND id = (SELECT session_id FROM refresh_tokens WHERE digest = ?1 AND replaced_by IS NULL) ",
    "AND user_id NOT IN (SELECT u.id FROM users u WHERE ",
    may_log_in!(),
    ") RETURNING id, user_id"
);

/// The unexpired access tokens at ?2 of the session of refresh token ?1, if it is revoked.
const ACCESS_OF_REVOKED_FAMILY: &str = "\
SELECT a.digest FROM access_tokens a JOIN sessions s ON s.id = a.session_id
WHERE s.id = (SELECT session_id FROM refresh_tokens WHERE digest = ?1) AND s.revoked_at IS NOT NULL
  AND a.expires_at > ?2";

/// Undoing a rotation to ?2 whose answer was lost: ?1 is current again (if ?2 had replaced it), and ?2 and its
/// access token ?3 are forgotten.
const RESTORE_REFRESH: &str = "\
UPDATE refresh_tokens SET replaced_by = NULL, replaced_at = NULL WHERE digest = ?1 AND replaced_by = ?2";
const FORGET_REFRESH: &str = "DELETE FROM refresh_tokens WHERE digest = ?1";
const FORGET_ACCESS: &str = "DELETE FROM access_tokens WHERE digest = ?1";

/// Ends one live session of a user: ?1 user, ?2 session, ?3 now, ?4 reason.
const REVOKE_ONE: &str = "\
UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4 WHERE user_id = ?1 AND id = ?2 AND revoked_at IS NULL
RETURNING id";

/// Ends every live session of a user: ?1 user, ?2 now, ?3 reason.
const REVOKE_ALL: &str = "\
UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE user_id = ?1 AND revoked_at IS NULL
RETURNING id";

/// The unexpired access tokens at ?2 of user ?1's revoked sessions (only session ?3, if it is not NULL).
const ACCESS_OF_REVOKED: &str = "\
SELECT a.digest FROM access_tokens a JOIN sessions s ON s.id = a.session_id
WHERE s.user_id = ?1 AND s.revoked_at IS NOT NULL AND a.expires_at > ?2 AND (?3 IS NULL OR s.id = ?3)";

/// Logout by refresh token: ends the session ?1 (current or rotated out) belongs to, at ?2, unless the client's
/// counter ?3 is over ?4.
const REVOKE_BY_REFRESH: &str = concat!(
    "UPDATE sessions SET revoked_at = ?2, revoked_reason = 'logout' WHERE revoked_at IS NULL AND ",
    client_within!("?3", "?4"),
    " AND id = (SELECT session_id FROM refresh_tokens WHERE digest = ?1) RETURNING id"
);

/// The session refresh token ?1 belongs to, whatever its state.
const SESSION_OF_TOKEN: &str = "\
SELECT s.id, s.user_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.digest = ?1";

/// A user's live sessions at ?2, most recently used first.
const LIST_SESSIONS: &str = "\
SELECT id, created_at, last_used_at, expires_at, user_agent, country, city FROM sessions
WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 ORDER BY last_used_at DESC, id DESC";

#[derive(Deserialize)]
struct OwnedRow {
    id: i64,
    user_id: i64,
}

#[derive(Deserialize)]
struct MovedRow {
    id: i64,
    expires_at: i64,
}

#[derive(Deserialize)]
struct AccessRow {
    access_digest: String,
}

#[derive(Deserialize)]
struct DigestRow {
    digest: String,
}

#[derive(Deserialize)]
struct SessionInfoRow {
    id: i64,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    user_agent: Option<String>,
    country: Option<String>,
    city: Option<String>,
}

/// The positions of a refresh's statements in its batch (0 counts the client, 3 lists the new access token).
mod rotate_batch {
    pub const PAIRED: usize = 1;
    pub const CLAIM: usize = 3;
    pub const MOVE: usize = 5;
    pub const REUSE: usize = 6;
    pub const LOST: usize = 7;
    pub const USER: usize = 8;
    pub const REVOKED_ACCESS: usize = 9;
    pub const REFUSAL: usize = 10;
}

fn digests<R: BatchResults>(results: &R, index: usize) -> Result<Vec<TokenDigest>, StoreError> {
    results.rows::<DigestRow>(index)?.iter().map(|row| stored_digest(&row.digest)).collect()
}

impl<X: Database> Sessions for D1<X> {
    async fn rotate(
        &self,
        refresh: &TokenDigest,
        next: &NewSession,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Rotation, StoreError> {
        let (old, new) = (text(refresh.as_str()), text(next.refresh.as_str()));
        let bucket = ip_bucket(client, "refresh");
        let limit = int(policy.ip_refresh_limit.into());
        let device = &next.device;
        let results = self
            .batch(vec![
                count_request(&bucket, now, policy),
                Statement::new(PAIRED_ACCESS, vec![old.clone()]),
                Statement::new(
                    ADMIT_REFRESH,
                    vec![
                        old.clone(),
                        new.clone(),
                        int(now.0),
                        secs(policy.refresh_reuse_grace),
                        text(next.access.as_str()),
                        text(&bucket),
                        limit.clone(),
                    ],
                ),
                Statement::new(CLAIM_REFRESH, vec![old.clone(), new.clone(), int(now.0)]),
                Statement::new(
                    NEXT_ACCESS_TOKEN,
                    vec![old.clone(), new.clone(), text(next.access.as_str()), int(next.access_expires_at.0)],
                ),
                Statement::new(
                    MOVE_SESSION,
                    vec![
                        old.clone(),
                        new.clone(),
                        int(now.0),
                        text(next.access.as_str()),
                        int(next.access_expires_at.0),
                        int(next.refresh_expires_at.0),
                        secs(policy.session_max),
                        opt_text(device.user_agent.as_deref()),
                        opt_text(device.ip.as_deref()),
                        opt_text(device.country.as_deref()),
                        opt_text(device.city.as_deref()),
                    ],
                ),
                Statement::new(
                    REVOKE_ON_REUSE,
                    vec![old.clone(), new.clone(), int(now.0), text(&bucket), limit.clone()],
                ),
                Statement::new(REVOKE_ON_LOST_ACCESS, vec![old.clone(), new.clone(), int(now.0), text(&bucket), limit]),
                Statement::new(USER_OF_REFRESH, vec![new]),
                Statement::new(ACCESS_OF_REVOKED_FAMILY, vec![old, int(now.0)]),
                refresh_refusal(&bucket, now, policy),
            ])
            .await?;
        let verdict: Verdict = results.first(rotate_batch::REFUSAL)?.ok_or_else(|| store_error("no verdict"))?;
        if let Some(refusal) = verdict.refusal()? {
            return Ok(Rotation::Refused(refusal));
        }
        if let Some(moved) = results.first::<MovedRow>(rotate_batch::MOVE)? {
            let claimed = results.first::<SessionIdRow>(rotate_batch::CLAIM)?.is_some();
            let previous = results
                .first::<AccessRow>(rotate_batch::PAIRED)?
                .map(|row| stored_digest(&row.access_digest))
                .transpose()?;
            return match user_from(results.first::<UserRow>(rotate_batch::USER)?)? {
                Some(user) => Ok(Rotation::Rotated {
                    session_id: moved.id,
                    user: Box::new(user),
                    previous_access: previous.filter(|_| claimed),
                    expires_at: UnixTime(moved.expires_at),
                }),
                None => Err(store_error("rotated session has no user")),
            };
        }
        let access = || digests(&results, rotate_batch::REVOKED_ACCESS);
        if let Some(row) = results.first::<OwnedRow>(rotate_batch::REUSE)? {
            return Ok(Rotation::Reused { session_id: row.id, user_id: row.user_id, access: access()? });
        }
        Ok(match results.first::<OwnedRow>(rotate_batch::LOST)? {
            Some(row) => Rotation::AccessLost { session_id: row.id, user_id: row.user_id, access: access()? },
            None => Rotation::Invalid,
        })
    }

    async fn unrotate(&self, refresh: &TokenDigest, next: &NewSession) -> Result<(), StoreError> {
        let (old, new) = (text(refresh.as_str()), text(next.refresh.as_str()));
        self.batch(vec![
            Statement::new(RESTORE_REFRESH, vec![old, new.clone()]),
            Statement::new(FORGET_ACCESS, vec![text(next.access.as_str())]),
            Statement::new(FORGET_REFRESH, vec![new]),
        ])
        .await
        .map(|_| ())
    }

    async fn revoke(&self, user_id: i64, scope: Scope, now: UnixTime, reason: &str) -> Result<Revocation, StoreError> {
        let (statement, only) = match scope {
            Scope::One(id) => {
                (Statement::new(REVOKE_ONE, vec![int(user_id), int(id), int(now.0), text(reason)]), opt_int(Some(id)))
            }
            Scope::All => (Statement::new(REVOKE_ALL, vec![int(user_id), int(now.0), text(reason)]), opt_int(None)),
        };
        let access = Statement::new(ACCESS_OF_REVOKED, vec![int(user_id), int(now.0), only]);
        let results = self.batch(vec![statement, access]).await?;
        Ok(Revocation {
            ended: results.rows::<SessionIdRow>(0)?.into_iter().map(|row| row.id).collect(),
            access: digests(&results, 1)?,
        })
    }

    async fn end_by_refresh(
        &self,
        refresh: &TokenDigest,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<RefreshLogout, StoreError> {
        let bucket = ip_bucket(client, "refresh");
        let token = text(refresh.as_str());
        let results = self
            .batch(vec![
                count_request(&bucket, now, policy),
                Statement::new(
                    REVOKE_BY_REFRESH,
                    vec![token.clone(), int(now.0), text(&bucket), int(policy.ip_refresh_limit.into())],
                ),
                Statement::new(SESSION_OF_TOKEN, vec![token.clone()]),
                Statement::new(ACCESS_OF_REVOKED_FAMILY, vec![token, int(now.0)]),
                refresh_refusal(&bucket, now, policy),
            ])
            .await?;
        let verdict: Verdict = results.first(4)?.ok_or_else(|| store_error("no verdict"))?;
        if let Some(refusal) = verdict.refusal()? {
            return Ok(RefreshLogout::Refused(refusal));
        }
        let ended = results.first::<SessionIdRow>(1)?.is_some();
        Ok(match results.first::<OwnedRow>(2)? {
            Some(row) => {
                RefreshLogout::Ended { session_id: row.id, user_id: row.user_id, ended, access: digests(&results, 3)? }
            }
            None => RefreshLogout::Unknown,
        })
    }

    async fn list(&self, user_id: i64, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        Ok(self
            .query_all::<SessionInfoRow>(Statement::new(LIST_SESSIONS, vec![int(user_id), int(now.0)]))
            .await?
            .into_iter()
            .map(|row| SessionInfo {
                id: row.id,
                created_at: UnixTime(row.created_at),
                last_used_at: UnixTime(row.last_used_at),
                expires_at: UnixTime(row.expires_at),
                user_agent: row.user_agent,
                country: row.country,
                city: row.city,
            })
            .collect())
    }
}
