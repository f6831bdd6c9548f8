//! Users, groups, the exact per-identifier counters, per-IP windows and the audit trail in D1.
//!
//! Every operation that must be exact under concurrency is a single batch: D1 runs a batch as one transaction on
//! its single writer, so a conditional `UPDATE ... RETURNING` inside it decides each race exactly once. The
//! conditions mirror [`Policy`]'s functions, which then explain a refusal from the state read in the same batch.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

use super::meter::Meter;
use crate::domain::{ChallengeId, Identifier, Profile, TokenDigest, UnixTime, User};
use crate::login::{
    ChallengeState, Challenges, ClientIp, EventKind, EventLog, LoginEvent, NewSession, Opening, Policy, Redemption,
    Reservation, Revoked, Rotation, Scope, SessionInfo, Sessions, StoreError, WindowCounter,
};

/// One D1 database handle, shared by the adapters of a request. The binding is private: every round trip goes
/// through [`D1::batch`] or [`D1::query_first`], which report it to the request's [`Meter`].
#[derive(Clone)]
pub struct D1 {
    db: Rc<D1Database>,
    meter: Meter,
}

/// A statement with its parameters bound. It runs only through a [`D1`] method, so no round trip escapes the meter.
pub struct Statement(D1PreparedStatement);

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("D1: {e}"))
}

fn int(value: i64) -> JsValue {
    // D1 binds JS numbers; every integer here (Unix seconds, counters, ids) is far below 2^53.
    JsValue::from_f64(value as f64)
}

fn text(value: &str) -> JsValue {
    JsValue::from_str(value)
}

fn opt_text(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from_str)
}

impl D1 {
    pub fn new(db: D1Database, meter: Meter) -> D1 {
        D1 { db: Rc::new(db), meter }
    }

    fn statement(&self, sql: &str, params: &[JsValue]) -> Result<Statement, StoreError> {
        self.db.prepare(sql).bind(params).map(Statement).map_err(store_error)
    }

    /// Runs `statements` in one round trip, as one transaction.
    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<D1Result>, StoreError> {
        let count = statements.len();
        let results = self.db.batch(statements.into_iter().map(|s| s.0).collect()).await.map_err(store_error)?;
        self.measure(count, &results);
        Ok(results)
    }

    /// Runs one statement in its own round trip and returns its first row.
    async fn query_first<T: for<'de> Deserialize<'de>>(&self, statement: Statement) -> Result<Option<T>, StoreError> {
        Ok(self.query_all::<T>(statement).await?.into_iter().next())
    }

    /// Runs one statement in its own round trip and returns all its rows.
    async fn query_all<T: for<'de> Deserialize<'de>>(&self, statement: Statement) -> Result<Vec<T>, StoreError> {
        let result = statement.0.all().await.map_err(store_error)?;
        self.measure(1, std::slice::from_ref(&result));
        rows::<T>(&result)
    }

    fn measure(&self, statements: usize, results: &[D1Result]) {
        let (mut read, mut written) = (0, 0);
        if self.meter.counts_rows() {
            for meta in results.iter().filter_map(|r| r.meta().ok().flatten()) {
                read += meta.rows_read.unwrap_or(0);
                written += meta.rows_written.unwrap_or(0);
            }
        }
        self.meter.d1_round_trip(statements, read, written);
    }
}

fn rows<T: for<'de> Deserialize<'de>>(result: &D1Result) -> Result<Vec<T>, StoreError> {
    result.results::<T>().map_err(store_error)
}

fn first<T: for<'de> Deserialize<'de>>(results: &[D1Result], index: usize) -> Result<Option<T>, StoreError> {
    let result = results.get(index).ok_or_else(|| store_error("batch returned too few results"))?;
    Ok(rows::<T>(result)?.into_iter().next())
}

// ---- Users ----------------------------------------------------------------------------------------------------

/// One row per user with profile, sorted group names (as a JSON array) and the employee flag: one round trip.
macro_rules! user_query {
    ($filter:literal) => {
        concat!(
            "SELECT u.id, u.email, u.first_name, u.last_name, u.is_active, ",
            "p.phone_number, p.branch, p.designation, p.locale, ",
            "(SELECT json_group_array(name) FROM (SELECT g.name FROM user_groups ug JOIN groups g ",
            "ON g.id = ug.group_id WHERE ug.user_id = u.id ORDER BY g.name)) AS groups, ",
            "EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id ",
            "WHERE ug.user_id = u.id AND g.is_employee_group = 1) AS is_employee ",
            "FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE ",
            $filter
        )
    };
}

const USER_BY_EMAIL: &str = user_query!("u.email = ?1");
const USER_BY_PHONE: &str = user_query!("p.phone_number = ?1");
/// The account whose refresh token ?1 was just rotated to ?2 by this batch.
const USER_OF_ROTATION: &str = user_query!(
    "u.id = (SELECT s.user_id FROM sessions s JOIN refresh_tokens r ON r.session_id = s.id \
     WHERE r.digest = ?1 AND r.replaced_by = ?2)"
);

#[derive(Deserialize)]
struct UserRow {
    id: i64,
    email: Option<String>,
    first_name: String,
    last_name: String,
    is_active: i64,
    phone_number: Option<String>,
    branch: Option<String>,
    designation: Option<String>,
    locale: Option<String>,
    groups: String,
    is_employee: i64,
}

impl UserRow {
    fn into_user(self) -> Result<User, StoreError> {
        let groups: Vec<String> = serde_json::from_str(&self.groups).map_err(store_error)?;
        Ok(User {
            id: self.id,
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            is_active: self.is_active != 0,
            profile: Profile {
                phone_number: self.phone_number,
                branch: self.branch.unwrap_or_default(),
                designation: self.designation.unwrap_or_default(),
                locale: self.locale,
            },
            groups,
            in_employee_group: self.is_employee != 0,
        })
    }
}

impl D1 {
    fn user_by_identifier(&self, identifier: &Identifier) -> Result<Statement, StoreError> {
        let sql = match identifier {
            Identifier::Email(_) => USER_BY_EMAIL,
            Identifier::Phone(_) => USER_BY_PHONE,
        };
        self.statement(sql, &[text(identifier.value())])
    }
}

fn user_from(row: Option<UserRow>) -> Result<Option<User>, StoreError> {
    row.map(UserRow::into_user).transpose()
}

// ---- Challenges -----------------------------------------------------------------------------------------------

/// Counts one request in a fixed window: ?1 bucket, ?2 now, ?3 window length.
const COUNT_REQUEST: &str = "\
INSERT INTO rate_limits (bucket, window_started_at, hits) VALUES (?1, ?2, 1)
ON CONFLICT (bucket) DO UPDATE SET
  hits = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN 1 ELSE rate_limits.hits + 1 END,
  window_started_at = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN ?2 ELSE rate_limits.window_started_at END
RETURNING hits, window_started_at";

/// Starts a new challenge unless a limit applies (the mirror of `Policy::ip_refusal` and `Policy::send_refusal`):
/// ?1 identifier, ?2 challenge id, ?3 now, ?4 expiry, ?5 IP bucket, ?6 IP limit, ?7 cooldown, ?8 max failures,
/// ?9 lockout, ?10 hourly cap. Failures older than the lockout are forgotten; recent ones are kept.
const OPEN_CHALLENGE: &str = "\
INSERT INTO otp_challenges (identifier, challenge_id, issued_at, expires_at, consumed_at, failed_attempts,
                            last_failed_at, window_started_at, sends_in_window)
SELECT ?1, ?2, ?3, ?4, NULL, 0, NULL, ?3, 1
WHERE (SELECT hits FROM rate_limits WHERE bucket = ?5) <= ?6
ON CONFLICT (identifier) DO UPDATE SET
  challenge_id = excluded.challenge_id,
  issued_at = excluded.issued_at,
  expires_at = excluded.expires_at,
  consumed_at = NULL,
  failed_attempts = CASE WHEN otp_challenges.last_failed_at > ?3 - ?9 THEN otp_challenges.failed_attempts ELSE 0 END,
  last_failed_at = CASE WHEN otp_challenges.last_failed_at > ?3 - ?9 THEN otp_challenges.last_failed_at ELSE NULL END,
  window_started_at = CASE WHEN otp_challenges.window_started_at > ?3 - 3600
                           THEN otp_challenges.window_started_at ELSE ?3 END,
  sends_in_window = CASE WHEN otp_challenges.window_started_at > ?3 - 3600
                         THEN otp_challenges.sends_in_window + 1 ELSE 1 END
WHERE otp_challenges.issued_at <= ?3 - ?7
  AND NOT (otp_challenges.failed_attempts >= ?8 AND COALESCE(otp_challenges.last_failed_at, 0) > ?3 - ?9)
  AND (otp_challenges.window_started_at <= ?3 - 3600 OR otp_challenges.sends_in_window < ?10)
RETURNING challenge_id";

/// Reserves one guess on a live, unused, unlocked code, counting it as failed until redeemed:
/// ?1 identifier, ?2 now, ?3 max failures, ?4 lockout, ?5 IP bucket, ?6 IP limit.
const RESERVE_ATTEMPT: &str = "\
UPDATE otp_challenges SET
  failed_attempts = CASE WHEN last_failed_at > ?2 - ?4 THEN failed_attempts + 1 ELSE 1 END,
  last_failed_at = ?2
WHERE identifier = ?1 AND consumed_at IS NULL AND expires_at > ?2
  AND (failed_attempts < ?3 OR last_failed_at IS NULL OR last_failed_at <= ?2 - ?4)
  AND (SELECT hits FROM rate_limits WHERE bucket = ?5) <= ?6
RETURNING challenge_id, failed_attempts";

/// Consumes the code and clears the failure count, once: ?1 identifier, ?2 challenge id, ?3 now.
const REDEEM: &str = "\
UPDATE otp_challenges SET consumed_at = ?3, failed_attempts = 0, last_failed_at = NULL
WHERE identifier = ?1 AND challenge_id = ?2 AND consumed_at IS NULL AND expires_at > ?3
RETURNING challenge_id";

const CHALLENGE_STATE: &str = "\
SELECT challenge_id, issued_at, expires_at, consumed_at, failed_attempts, last_failed_at, window_started_at,
       sends_in_window
FROM otp_challenges WHERE identifier = ?1";

#[derive(Deserialize)]
struct CounterRow {
    hits: u32,
    window_started_at: i64,
}

#[derive(Deserialize)]
struct ChallengeRow {
    challenge_id: String,
    issued_at: i64,
    expires_at: i64,
    consumed_at: Option<i64>,
    failed_attempts: u32,
    last_failed_at: Option<i64>,
    window_started_at: i64,
    sends_in_window: u32,
}

impl From<ChallengeRow> for ChallengeState {
    fn from(row: ChallengeRow) -> Self {
        ChallengeState {
            challenge_id: ChallengeId(row.challenge_id),
            issued_at: UnixTime(row.issued_at),
            expires_at: UnixTime(row.expires_at),
            consumed_at: row.consumed_at.map(UnixTime),
            failed_attempts: row.failed_attempts,
            last_failed_at: row.last_failed_at.map(UnixTime),
            window_started_at: UnixTime(row.window_started_at),
            sends_in_window: row.sends_in_window,
        }
    }
}

#[derive(Deserialize)]
struct ReservedRow {
    challenge_id: String,
    failed_attempts: u32,
}

#[derive(Deserialize)]
struct IdRow {
    challenge_id: String,
}

const DAY: i64 = 86_400;

fn ip_bucket(client: &ClientIp, purpose: &str) -> String {
    format!("ip:{}:{purpose}", client.0)
}

impl D1 {
    fn count_request(&self, bucket: &str, now: UnixTime, policy: &Policy) -> Result<Statement, StoreError> {
        self.statement(COUNT_REQUEST, &[text(bucket), int(now.0), int(policy.ip_window_seconds)])
    }

    fn counter(results: &[D1Result]) -> Result<WindowCounter, StoreError> {
        let row: CounterRow = first(results, 0)?.ok_or_else(|| store_error("rate counter returned no row"))?;
        Ok(WindowCounter { hits: row.hits, window_started_at: UnixTime(row.window_started_at) })
    }
}

impl Challenges for D1 {
    async fn open(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Opening, StoreError> {
        let key = identifier.key();
        let bucket = ip_bucket(client, "send");
        let open = self.statement(
            OPEN_CHALLENGE,
            &[
                text(&key),
                text(&challenge.0),
                int(now.0),
                int(now.plus(policy.code_ttl_seconds).0),
                text(&bucket),
                int(policy.ip_send_limit.into()),
                int(policy.resend_cooldown_seconds),
                int(policy.max_failed_attempts.into()),
                int(policy.lockout_seconds),
                int(policy.max_sends_per_hour.into()),
            ],
        )?;
        let state = self.statement(CHALLENGE_STATE, &[text(&key)])?;
        // The account is read in the same batch whether or not it exists, so the round trip is the same for every
        // identifier; it is used only for the delivery after the answer.
        let account = self.user_by_identifier(identifier)?;
        let results = self.batch(vec![self.count_request(&bucket, now, policy)?, open, state, account]).await?;

        if first::<IdRow>(&results, 1)?.is_some_and(|row| row.challenge_id == challenge.0) {
            return Ok(Opening::Issued { account: user_from(first::<UserRow>(&results, 3)?)? });
        }
        if let Some(refusal) = policy.ip_refusal(&Self::counter(&results)?, policy.ip_send_limit, now) {
            return Ok(Opening::Refused(refusal));
        }
        let state: Option<ChallengeState> = first::<ChallengeRow>(&results, 2)?.map(Into::into);
        match state.and_then(|s| policy.send_refusal(&s, now)) {
            Some(refusal) => Ok(Opening::Refused(refusal)),
            None => Err(store_error("challenge was neither opened nor refused")),
        }
    }

    async fn reserve_attempt(
        &self,
        identifier: &Identifier,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Reservation, StoreError> {
        let key = identifier.key();
        let bucket = ip_bucket(client, "verify");
        let reserve = self.statement(
            RESERVE_ATTEMPT,
            &[
                text(&key),
                int(now.0),
                int(policy.max_failed_attempts.into()),
                int(policy.lockout_seconds),
                text(&bucket),
                int(policy.ip_verify_limit.into()),
            ],
        )?;
        let state = self.statement(CHALLENGE_STATE, &[text(&key)])?;
        let results = self.batch(vec![self.count_request(&bucket, now, policy)?, reserve, state]).await?;

        if let Some(row) = first::<ReservedRow>(&results, 1)? {
            return Ok(Reservation::Reserved {
                challenge_id: ChallengeId(row.challenge_id),
                failed_attempts: row.failed_attempts,
            });
        }
        if let Some(refusal) = policy.ip_refusal(&Self::counter(&results)?, policy.ip_verify_limit, now) {
            return Ok(Reservation::Refused(refusal));
        }
        let state: Option<ChallengeState> = first::<ChallengeRow>(&results, 2)?.map(Into::into);
        if let Some(refusal) = state.as_ref().and_then(|s| policy.lock_refusal(s, now)) {
            return Ok(Reservation::Refused(refusal));
        }
        Ok(Reservation::NoActiveCode { attempts_remaining: policy.attempts_remaining(state.as_ref(), now) })
    }

    async fn claim_sms_slot(&self, now: UnixTime, cap: u32) -> Result<bool, StoreError> {
        // One bucket per UTC day; the window never rolls over inside it.
        let bucket = format!("sms:{}", now.0.div_euclid(DAY));
        let counted = self.statement(COUNT_REQUEST, &[text(&bucket), int(now.0), int(DAY)])?;
        let row: CounterRow =
            self.query_first(counted).await?.ok_or_else(|| store_error("SMS counter returned no row"))?;
        Ok(row.hits <= cap)
    }

    async fn redeem(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        now: UnixTime,
        start: &NewSession,
    ) -> Result<Redemption, StoreError> {
        let key = identifier.key();
        let sql = match identifier {
            Identifier::Email(_) => START_SESSION_BY_EMAIL,
            Identifier::Phone(_) => START_SESSION_BY_PHONE,
        };
        let device = &start.device;
        let session = self.statement(
            sql,
            &[
                text(&key),
                text(&challenge.0),
                int(now.0),
                int(start.refresh_expires_at.0),
                text(&start.access.0),
                int(start.access_expires_at.0),
                opt_text(device.user_agent.as_deref()),
                opt_text(device.ip.as_deref()),
                opt_text(device.country.as_deref()),
                opt_text(device.city.as_deref()),
                text(identifier.value()),
            ],
        )?;
        let refresh =
            self.statement(FIRST_REFRESH_TOKEN, &[text(&start.refresh.0), text(&start.access.0), int(now.0)])?;
        let redeem = self.statement(REDEEM, &[text(&key), text(&challenge.0), int(now.0)])?;
        let results = self.batch(vec![session, refresh, redeem, self.user_by_identifier(identifier)?]).await?;
        if first::<IdRow>(&results, 2)?.is_none() {
            return Ok(Redemption::AlreadyUsed);
        }
        let session_id = first::<SessionIdRow>(&results, 0)?.map(|row| row.id);
        Ok(Redemption::Redeemed { user: user_from(first::<UserRow>(&results, 3)?)?.map(Box::new), session_id })
    }
}

// ---- Sessions -------------------------------------------------------------------------------------------------

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

/// The session's first refresh token: ?1 its digest, ?2 the session's access digest (unique), ?3 now.
const FIRST_REFRESH_TOKEN: &str = "\
INSERT INTO refresh_tokens (digest, session_id, issued_at) SELECT ?1, id, ?3 FROM sessions WHERE access_digest = ?2";

/// The session a refresh token ?1 belongs to, read before the batch changes it (for its access digest).
const SESSION_OF_REFRESH: &str = "\
SELECT s.id, s.user_id, s.access_digest FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
WHERE r.digest = ?1";

/// The race-deciding step of a refresh: marks ?1 replaced by ?2 if it is its session's current token, the session
/// is live at ?3 and the account may still log in. Only one request can find `replaced_by IS NULL`.
const CLAIM_REFRESH: &str = "\
UPDATE refresh_tokens SET replaced_by = ?2
WHERE digest = ?1 AND replaced_by IS NULL AND session_id IN (
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
/// it is replaying it; the session ends at ?3.
const REVOKE_ON_REUSE: &str = "\
UPDATE sessions SET revoked_at = ?3, revoked_reason = 'refresh token reused'
WHERE revoked_at IS NULL AND id = (
  SELECT session_id FROM refresh_tokens WHERE digest = ?1 AND replaced_by IS NOT NULL AND replaced_by <> ?2)
RETURNING id, user_id, access_digest";

/// The account lost access: ?1 is its session's current token (not rotated), the session is live at ?2, but the
/// user is inactive or in no employee group; the session ends, so the access token's stale snapshot can go too.
const REVOKE_ON_LOST_ACCESS: &str = "\
UPDATE sessions SET revoked_at = ?2, revoked_reason = 'account may no longer log in'
WHERE revoked_at IS NULL AND expires_at > ?2
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

impl Sessions for D1 {
    async fn rotate(&self, refresh: &TokenDigest, next: &NewSession, now: UnixTime) -> Result<Rotation, StoreError> {
        let (old, new) = (text(&refresh.0), text(&next.refresh.0));
        let device = &next.device;
        let results = self
            .batch(vec![
                self.statement(SESSION_OF_REFRESH, std::slice::from_ref(&old))?,
                self.statement(CLAIM_REFRESH, &[old.clone(), new.clone(), int(now.0)])?,
                self.statement(NEXT_REFRESH_TOKEN, &[old.clone(), new.clone(), int(now.0)])?,
                self.statement(
                    MOVE_SESSION,
                    &[
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
                )?,
                self.statement(REVOKE_ON_REUSE, &[old.clone(), new.clone(), int(now.0)])?,
                self.statement(USER_OF_ROTATION, &[old.clone(), new])?,
                self.statement(REVOKE_ON_LOST_ACCESS, &[old, int(now.0)])?,
            ])
            .await?;
        if let Some(claimed) = first::<SessionIdRow>(&results, 1)? {
            let previous =
                first::<SessionKeyRow>(&results, 0)?.ok_or_else(|| store_error("rotated session vanished"))?;
            return match user_from(first::<UserRow>(&results, 5)?)? {
                Some(user) => Ok(Rotation::Rotated {
                    session_id: claimed.id,
                    user,
                    previous_access: TokenDigest(previous.access_digest),
                }),
                None => Err(store_error("rotated session has no user")),
            };
        }
        if let Some(row) = first::<SessionKeyRow>(&results, 4)? {
            let access = TokenDigest(row.access_digest);
            return Ok(Rotation::Reused { session_id: row.id, user_id: row.user_id, access });
        }
        Ok(match first::<SessionKeyRow>(&results, 6)? {
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
            Scope::One(id) => self.statement(REVOKE_ONE, &[int(user_id), int(id), int(now.0), text(reason)])?,
            Scope::All => self.statement(REVOKE_ALL, &[int(user_id), int(now.0), text(reason)])?,
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
            .query_all::<SessionInfoRow>(self.statement(LIST_SESSIONS, &[int(user_id), int(now.0)])?)
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

// ---- Retention ------------------------------------------------------------------------------------------------

/// Counter windows that have ended: ?1 now, ?2 the longest window in use (the per-IP window, or two days for the
/// per-day SMS buckets). A deleted row behaves exactly like a window that has rolled over.
const PURGE_COUNTERS: &str = "DELETE FROM rate_limits WHERE window_started_at < ?1 - ?2";

/// Challenges whose code, cooldown, hourly window and remembered failures have all lapsed: ?1 now, ?2 lockout.
/// Such a row carries no state a new request would read.
const PURGE_CHALLENGES: &str = "\
DELETE FROM otp_challenges
WHERE expires_at < ?1 AND issued_at < ?1 - 3600 AND window_started_at < ?1 - 3600
  AND COALESCE(last_failed_at, 0) < ?1 - ?2";

/// Audit rows past the retention period: ?1 now, ?2 retention in seconds.
const PURGE_EVENTS: &str = "DELETE FROM login_events WHERE occurred_at < ?1 - ?2";

/// Sessions revoked, or expired, more than ?2 seconds before ?1, with their refresh tokens (which can then only
/// answer "invalid", as any unknown token does).
const PURGE_REFRESH_TOKENS: &str = "\
DELETE FROM refresh_tokens WHERE session_id IN (
  SELECT id FROM sessions WHERE COALESCE(revoked_at, expires_at) < ?1 - ?2)";
const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE COALESCE(revoked_at, expires_at) < ?1 - ?2";

/// Rows removed by one cleanup run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub counters: usize,
    pub challenges: usize,
    pub events: usize,
    pub sessions: usize,
}

impl D1 {
    /// Deletes state that no longer affects any answer, audit rows older than `retention_seconds`, and sessions
    /// that ended more than `session_retention_seconds` ago.
    pub async fn purge(
        &self,
        now: UnixTime,
        policy: &Policy,
        retention_seconds: i64,
        session_retention_seconds: i64,
    ) -> Result<Purged, StoreError> {
        let longest_window = policy.ip_window_seconds.max(2 * DAY);
        let results = self
            .batch(vec![
                self.statement(PURGE_COUNTERS, &[int(now.0), int(longest_window)])?,
                self.statement(PURGE_CHALLENGES, &[int(now.0), int(policy.lockout_seconds)])?,
                self.statement(PURGE_EVENTS, &[int(now.0), int(retention_seconds)])?,
                self.statement(PURGE_REFRESH_TOKENS, &[int(now.0), int(session_retention_seconds)])?,
                self.statement(PURGE_SESSIONS, &[int(now.0), int(session_retention_seconds)])?,
            ])
            .await?;
        let changes = |i: usize| -> Result<usize, StoreError> {
            let meta = results.get(i).map(|r| r.meta()).transpose().map_err(store_error)?.flatten();
            Ok(meta.and_then(|m| m.changes).unwrap_or(0))
        };
        Ok(Purged { counters: changes(0)?, challenges: changes(1)?, events: changes(2)?, sessions: changes(4)? })
    }
}

// ---- Audit trail ----------------------------------------------------------------------------------------------

/// ?1 time, ?2 event, ?3 user id, ?4 channel, ?5 masked identifier, ?6 ip, ?7 user agent, ?8 detail,
/// ?9 the plain identifier, used only to find the user when the use case did not know it, ?10 country.
const INSERT_EVENT: &str = "\
INSERT INTO login_events (occurred_at, event, user_id, channel, identifier, ip, user_agent, detail, country)
VALUES (?1, ?2, COALESCE(?3, CASE ?4
    WHEN 'email' THEN (SELECT id FROM users WHERE email = ?9)
    WHEN 'sms' THEN (SELECT user_id FROM profiles WHERE phone_number = ?9) END), ?4, ?5, ?6, ?7, ?8, ?10)";

const RECORD_LOGIN: &str = "UPDATE users SET last_login = ?2 WHERE id = ?1";

/// Where a request came from, stamped on each of its audit rows.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// ISO 3166-1 alpha-2 code from Cloudflare's own geolocation (`request.cf.country`); `None` when the runtime
    /// gives none.
    pub country: Option<String>,
}

/// Buffers a request's audit events; [`DeferredEvents::flush`] writes them in one batch after the response.
#[derive(Clone)]
pub struct DeferredEvents {
    db: D1,
    origin: Rc<RequestOrigin>,
    pending: Rc<RefCell<Vec<LoginEvent>>>,
}

impl DeferredEvents {
    pub fn new(db: D1, origin: RequestOrigin) -> DeferredEvents {
        DeferredEvents { db, origin: Rc::new(origin), pending: Rc::default() }
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        let events: Vec<LoginEvent> = self.pending.borrow_mut().drain(..).collect();
        if events.is_empty() {
            return Ok(());
        }
        let mut statements = Vec::with_capacity(events.len() + 1);
        for event in &events {
            let identifier = event.identifier.as_ref();
            statements.push(self.db.statement(
                INSERT_EVENT,
                &[
                    int(event.at.0),
                    text(event.kind.as_str()),
                    event.user_id.map_or(JsValue::NULL, int),
                    opt_text(identifier.map(|i| i.channel().as_str())),
                    opt_text(identifier.map(Identifier::masked).as_deref()),
                    opt_text(self.origin.ip.as_deref()),
                    opt_text(self.origin.user_agent.as_deref()),
                    opt_text(event.detail.as_deref()),
                    opt_text(identifier.map(Identifier::value)),
                    opt_text(self.origin.country.as_deref()),
                ],
            )?);
            if let (EventKind::Login, Some(user_id)) = (event.kind, event.user_id) {
                statements.push(self.db.statement(RECORD_LOGIN, &[int(user_id), int(event.at.0)])?);
            }
        }
        self.db.batch(statements).await.map(drop)
    }
}

impl EventLog for DeferredEvents {
    fn record(&self, event: LoginEvent) {
        self.pending.borrow_mut().push(event);
    }
}
