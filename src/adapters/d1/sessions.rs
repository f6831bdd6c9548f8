//! Sessions: one row per signed-in device, its refresh tokens, their rotation, reuse detection and revocation.

use serde::Deserialize;

use super::challenges::{count_request, counter, ip_bucket};
use super::{user_from, user_query, UserRow, D1};
use crate::adapters::sql::{int, opt_text, store_error, text, BatchResults, Database, Statement};
use crate::domain::{Identifier, TokenDigest, UnixTime};
use crate::login::{ClientIp, NewSession, Policy, Revoked, Rotation, Scope, SessionInfo, Sessions, StoreError};

/// The account whose refresh token ?1 was just rotated to ?2 by this batch.
const USER_OF_ROTATION: &str = user_query!(
    "u.id = (SELECT s.user_id FROM sessions s JOIN refresh_tokens r ON r.session_id = s.id \
     WHERE r.digest = ?1 AND r.replaced_by = ?2)"
);

/// Starts a session for the account behind the identifier, in the redeem batch and *before* its `REDEEM`: the
/// condition is exactly the one `REDEEM` then consumes, evaluated in the same transaction, so the row exists if and
/// only if this batch redeemed the code, and only for an account that may log in. ?1 challenge key, ?2 challenge id,
/// ?3 now, ?4 refresh expiry, ?5 access digest, ?6 access expiry, ?7 user agent, ?8 ip, ?9 country, ?10 city,
/// ?11 the identifier's value.
macro_rules! start_session {
    ($user:literal) => {
        concat!(
            "INSERT INTO sessions (user_id, created_at, last_used_at, expires_at, access_digest, access_expires_at, ",
            "user_agent, ip, country, city) ",
            "SELECT u.id, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 FROM users u WHERE ",
            $user,
            " AND u.is_active = 1 AND EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id ",
            "WHERE ug.user_id = u.id AND g.is_employee_group = 1) ",
            "AND EXISTS (SELECT 1 FROM otp_challenges WHERE identifier = ?1 AND challenge_id = ?2 ",
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
INSERT INTO refresh_tokens (digest, session_id, issued_at) SELECT ?1, id, ?3 FROM sessions WHERE access_digest = ?2";

/// The session a refresh token ?1 belongs to, read before the batch changes it (for its access digest).
const SESSION_OF_REFRESH: &str = "\
SELECT s.id, s.user_id, s.access_digest FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
WHERE r.digest = ?1";

/// The race-deciding step of a refresh: marks ?1 replaced by ?2 if it is its session's current token, the session
/// is live at ?3, the account may still log in and the client's counter ?4 is within ?5. Only one request can find
/// `replaced_by IS NULL`.
const CLAIM_REFRESH: &str = "\
UPDATE refresh_tokens SET replaced_by = ?2
WHERE digest = ?1 AND replaced_by IS NULL AND (SELECT hits FROM rate_limits WHERE bucket = ?4) <= ?5
  AND session_id IN (
  SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.revoked_at IS NULL AND s.expires_at > ?3 AND u.is_active = 1
    AND EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id
                WHERE ug.user_id = u.id AND g.is_employee_group = 1))
RETURNING session_id AS id";

/// The successor token, only if this batch's claim succeeded (?2 is unique to it): ?1 old, ?2 new, ?3 now.
const NEXT_REFRESH_TOKEN: &str = "\
INSERT INTO refresh_tokens (digest, session_id, issued_at)
SELECT ?2, session_id, ?3 FROM refresh_tokens WHERE digest = ?1 AND replaced_by = ?2";

/// Moves the session to the new pair, only if this batch's claim succeeded: ?1 old refresh, ?2 new refresh, ?3 now,
/// ?4 access digest, ?5 access expiry, ?6 refresh expiry, ?7 user agent, ?8 ip, ?9 country, ?10 city.
const MOVE_SESSION: &str = "\
UPDATE sessions SET access_digest = ?4, access_expires_at = ?5, expires_at = ?6, last_used_at = ?3,
  user_agent = COALESCE(?7, user_agent), ip = COALESCE(?8, ip), country = COALESCE(?9, country),
  city = COALESCE(?10, city)
WHERE id = (SELECT session_id FROM refresh_tokens WHERE digest = ?1 AND replaced_by = ?2)";

/// Reuse detection: ?1 was rotated out by another request (its successor is not this batch's ?2), so whoever holds
/// it is replaying it; the session ends at ?3 (unless the client's counter ?4 is over ?5: nothing is decided then).
const REVOKE_ON_REUSE: &str = "\
UPDATE sessions SET revoked_at = ?3, revoked_reason = 'refresh token reused'
WHERE revoked_at IS NULL AND (SELECT hits FROM rate_limits WHERE bucket = ?4) <= ?5 AND id = (
  SELECT session_id FROM refresh_tokens WHERE digest = ?1 AND replaced_by IS NOT NULL AND replaced_by <> ?2)
RETURNING id, user_id, access_digest";

/// The account lost access: ?1 is its session's current token (not rotated), the session is live at ?2, but the
/// user is inactive or in no employee group; the session ends, so the access token's stale snapshot can go too
/// (unless the client's counter ?3 is over ?4).
const REVOKE_ON_LOST_ACCESS: &str = "\
UPDATE sessions SET revoked_at = ?2, revoked_reason = 'account may no longer log in'
WHERE revoked_at IS NULL AND expires_at > ?2 AND (SELECT hits FROM rate_limits WHERE bucket = ?3) <= ?4
  AND id = (SELECT session_id FROM refresh_tokens WHERE digest = ?1 AND replaced_by IS NULL)
  AND user_id NOT IN (SELECT u.id FROM users u WHERE u.is_active = 1 AND EXISTS (
    SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id
    WHERE ug.user_id = u.id AND g.is_employee_group = 1))
RETURNING id, user_id, access_digest";

/// Ends one live session of a user: ?1 user, ?2 session, ?3 now, ?4 reason.
const REVOKE_ONE: &str = "\
UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4 WHERE user_id = ?1 AND id = ?2 AND revoked_at IS NULL
RETURNING id, user_id, access_digest";

/// Ends every live session of a user: ?1 user, ?2 now, ?3 reason.
const REVOKE_ALL: &str = "\
UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE user_id = ?1 AND revoked_at IS NULL
RETURNING id, user_id, access_digest";

/// A user's live sessions at ?2, most recently used first.
const LIST_SESSIONS: &str = "\
SELECT id, created_at, last_used_at, expires_at, user_agent, country, city FROM sessions
WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 ORDER BY last_used_at DESC, id DESC";

#[derive(Deserialize)]
struct SessionIdRow {
    id: i64,
}

/// A session's id, owner and access digest (one row type for several statements keeps the Worker small).
#[derive(Deserialize)]
struct SessionKeyRow {
    id: i64,
    user_id: i64,
    access_digest: String,
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

impl<X: Database> Sessions for D1<X> {
    async fn rotate(
        &self,
        refresh: &TokenDigest,
        next: &NewSession,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Rotation, StoreError> {
        let (old, new) = (text(&refresh.0), text(&next.refresh.0));
        let bucket = ip_bucket(client, "refresh");
        let (gate, limit) = (text(&bucket), int(policy.ip_refresh_limit.into()));
        let device = &next.device;
        let results = self
            .batch(vec![
                count_request(&bucket, now, policy),
                Statement::new(SESSION_OF_REFRESH, vec![old.clone()]),
                Statement::new(CLAIM_REFRESH, vec![old.clone(), new.clone(), int(now.0), gate.clone(), limit.clone()]),
                Statement::new(NEXT_REFRESH_TOKEN, vec![old.clone(), new.clone(), int(now.0)]),
                Statement::new(
                    MOVE_SESSION,
                    vec![
                        old.clone(),
                        new.clone(),
                        int(now.0),
                        text(&next.access.0),
                        int(next.access_expires_at.0),
                        int(next.refresh_expires_at.0),
                        opt_text(device.user_agent.as_deref()),
                        opt_text(device.ip.as_deref()),
                        opt_text(device.country.as_deref()),
                        opt_text(device.city.as_deref()),
                    ],
                ),
                Statement::new(
                    REVOKE_ON_REUSE,
                    vec![old.clone(), new.clone(), int(now.0), gate.clone(), limit.clone()],
                ),
                Statement::new(USER_OF_ROTATION, vec![old.clone(), new]),
                Statement::new(REVOKE_ON_LOST_ACCESS, vec![old, int(now.0), gate, limit]),
            ])
            .await?;
        if let Some(claimed) = results.first::<SessionIdRow>(2)? {
            let previous = results.first::<SessionKeyRow>(1)?.ok_or_else(|| store_error("rotated session vanished"))?;
            return match user_from(results.first::<UserRow>(6)?)? {
                Some(user) => Ok(Rotation::Rotated {
                    session_id: claimed.id,
                    user,
                    previous_access: TokenDigest(previous.access_digest),
                }),
                None => Err(store_error("rotated session has no user")),
            };
        }
        if let Some(refusal) = policy.ip_refusal(&counter(&results, 0)?, policy.ip_refresh_limit, now) {
            return Ok(Rotation::Refused(refusal));
        }
        if let Some(row) = results.first::<SessionKeyRow>(5)? {
            let access = TokenDigest(row.access_digest);
            return Ok(Rotation::Reused { session_id: row.id, user_id: row.user_id, access });
        }
        Ok(match results.first::<SessionKeyRow>(7)? {
            Some(row) => Rotation::AccessLost {
                session_id: row.id,
                user_id: row.user_id,
                access: TokenDigest(row.access_digest),
            },
            None => Rotation::Invalid,
        })
    }

    async fn revoke(
        &self,
        user_id: i64,
        scope: Scope,
        now: UnixTime,
        reason: &str,
    ) -> Result<Vec<Revoked>, StoreError> {
        let statement = match scope {
            Scope::One(id) => Statement::new(REVOKE_ONE, vec![int(user_id), int(id), int(now.0), text(reason)]),
            Scope::All => Statement::new(REVOKE_ALL, vec![int(user_id), int(now.0), text(reason)]),
        };
        Ok(self
            .query_all::<SessionKeyRow>(statement)
            .await?
            .into_iter()
            .map(|row| Revoked { session_id: row.id, access: TokenDigest(row.access_digest) })
            .collect())
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
