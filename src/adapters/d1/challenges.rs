//! Codes, guesses and the request windows: the statements that decide every login limit.
//!
//! Wrong guesses are counted per *subject*: the account an identifier belongs to (`user:<id>`, shared by its email
//! and its phone and by all its codes), or the identifier itself when it belongs to no account, so that both behave
//! alike. Only a successful login or an administrator's unlock resets a subject's count; the passing of time never
//! does. Every `max_failed_attempts` consecutive failures lock the subject, each lockout twice as long as the one
//! before (capped at a day), and at `max_consecutive_failures` it is held until an administrator unlocks it.

use serde::Deserialize;

use super::sessions::{start_session, FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN};
use super::{user_by_identifier, user_from, UserRow, D1};
use crate::adapters::sql::{int, opt_text, store_error, text, BatchResults, Database, Statement};
use crate::domain::{ChallengeId, Identifier, UnixTime};
use crate::login::{
    ChallengeState, Challenges, ClientIp, GuessCounter, NewSession, Opening, Policy, Redemption, Reservation,
    StoreError, WindowCounter,
};

/// The subject an identifier's failures are counted under, from ?1 the identifier's key (`email:…` or `sms:…`) and
/// ?2 its value: its account's, if it has one, or its own.
macro_rules! subject {
    () => {
        "COALESCE((SELECT 'user:' || id FROM users WHERE ?1 = 'email:' || ?2 AND email = ?2), \
         (SELECT 'user:' || user_id FROM profiles WHERE ?1 = 'sms:' || ?2 AND phone_number = ?2), ?1)"
    };
}

/// True while the subject may not guess or be sent a code (`?3` is now).
macro_rules! subject_locked {
    () => {
        concat!(
            "EXISTS (SELECT 1 FROM guess_counters WHERE subject = ",
            subject!(),
            " AND (held = 1 OR locked_until > ?3))"
        )
    };
}

/// Counts one request in a fixed window: ?1 bucket, ?2 now, ?3 window length.
pub(super) const COUNT_REQUEST: &str = "\
INSERT INTO rate_limits (bucket, window_started_at, hits) VALUES (?1, ?2, 1)
ON CONFLICT (bucket) DO UPDATE SET
  hits = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN 1 ELSE rate_limits.hits + 1 END,
  window_started_at = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN ?2 ELSE rate_limits.window_started_at END
RETURNING hits, window_started_at";

/// Starts a new challenge (a new code, with a fresh per-code guess count) unless a limit applies — the mirror of
/// `Policy::ip_refusal` and `Policy::send_refusal`: ?1 key, ?2 value, ?3 now, ?4 challenge id, ?5 expiry, ?6 IP
/// bucket, ?7 IP limit, ?8 cooldown, ?9 hourly cap. The subject's failure count is untouched.
const OPEN_CHALLENGE: &str = concat!(
    "INSERT INTO otp_challenges (identifier, challenge_id, issued_at, expires_at, consumed_at, failed_attempts, ",
    "window_started_at, sends_in_window) ",
    "SELECT ?1, ?4, ?3, ?5, NULL, 0, ?3, 1 ",
    "WHERE (SELECT hits FROM rate_limits WHERE bucket = ?6) <= ?7 AND NOT ",
    subject_locked!(),
    " ON CONFLICT (identifier) DO UPDATE SET ",
    "challenge_id = excluded.challenge_id, issued_at = excluded.issued_at, expires_at = excluded.expires_at, ",
    "consumed_at = NULL, failed_attempts = 0, reserved_by = NULL, code_digest = NULL, ",
    "window_started_at = CASE WHEN otp_challenges.window_started_at > ?3 - 3600 ",
    "THEN otp_challenges.window_started_at ELSE ?3 END, ",
    "sends_in_window = CASE WHEN otp_challenges.window_started_at > ?3 - 3600 ",
    "THEN otp_challenges.sends_in_window + 1 ELSE 1 END ",
    "WHERE otp_challenges.issued_at <= ?3 - ?8 ",
    "AND (otp_challenges.window_started_at <= ?3 - 3600 OR otp_challenges.sends_in_window < ?9) ",
    "RETURNING challenge_id"
);

/// Reserves one guess on the live, unused code, if the code has guesses left, the client is under its limit and the
/// subject is not locked; the reservation is marked with this request's ?7 nonce. ?1 key, ?2 value, ?3 now,
/// ?4 guesses per code, ?5 IP bucket, ?6 IP limit.
const RESERVE_GUESS: &str = concat!(
    "UPDATE otp_challenges SET failed_attempts = failed_attempts + 1, reserved_by = ?7 ",
    "WHERE identifier = ?1 AND consumed_at IS NULL AND expires_at > ?3 AND failed_attempts < ?4 ",
    "AND (SELECT hits FROM rate_limits WHERE bucket = ?5) <= ?6 AND NOT ",
    subject_locked!(),
    " RETURNING challenge_id, failed_attempts, code_digest"
);

/// The delivery's record of the code it sends: ?3 its keyed digest, on the identifier's (?1) current challenge ?2.
const STORE_CODE: &str = "\
UPDATE otp_challenges SET code_digest = ?3 WHERE identifier = ?1 AND challenge_id = ?2 AND consumed_at IS NULL";

/// The subject's counter row, created empty if this batch reserved a guess (?4 the nonce): ?1 key, ?2 value, ?3 now.
const ENSURE_COUNTER: &str = concat!(
    "INSERT OR IGNORE INTO guess_counters (subject, failures, locked_until, held, last_failed_at) SELECT ",
    subject!(),
    ", 0, 0, 0, ?3 WHERE EXISTS (SELECT 1 FROM otp_challenges WHERE identifier = ?1 AND reserved_by = ?4)"
);

/// Counts the reserved guess as a failure until it is redeemed, in the same transaction as the reservation: the
/// failure that completes a run of ?5 locks the subject for ?6 × 2^(k−1) seconds (k-th lockout, at most a day), and
/// the ?7-th consecutive failure holds it for an administrator. ?1 key, ?2 value, ?3 now, ?4 nonce.
const COUNT_FAILURE: &str = concat!(
    "UPDATE guess_counters SET failures = failures + 1, last_failed_at = ?3, ",
    "locked_until = CASE WHEN (failures + 1) % ?5 = 0 ",
    "THEN ?3 + min(?6 << min((failures + 1) / ?5 - 1, 20), 86400) ELSE locked_until END, ",
    "held = CASE WHEN failures + 1 >= ?7 THEN 1 ELSE held END ",
    "WHERE subject = ",
    subject!(),
    " AND EXISTS (SELECT 1 FROM otp_challenges WHERE identifier = ?1 AND reserved_by = ?4) ",
    "RETURNING failures, locked_until, held"
);

/// Consumes the code, once: ?1 key, ?2 challenge id, ?3 now.
const REDEEM: &str = "\
UPDATE otp_challenges SET consumed_at = ?3
WHERE identifier = ?1 AND challenge_id = ?2 AND consumed_at IS NULL AND expires_at > ?3
RETURNING challenge_id";

/// A successful login (the session ?4 was started in this batch) clears the subject's failures and lockouts:
/// ?1 key, ?2 value.
const CLEAR_FAILURES: &str = concat!(
    "UPDATE guess_counters SET failures = 0, locked_until = 0, held = 0 WHERE subject = ",
    subject!(),
    " AND EXISTS (SELECT 1 FROM sessions WHERE access_digest = ?4)"
);

/// What a refusal is explained from, read in the deciding batch: ?1 key, ?2 value.
const STATE: &str = concat!(
    "SELECT c.challenge_id, c.issued_at, c.expires_at, c.consumed_at, c.failed_attempts, c.window_started_at, ",
    "c.sends_in_window, g.failures, g.locked_until, g.held ",
    "FROM (SELECT 1) LEFT JOIN otp_challenges c ON c.identifier = ?1 ",
    "LEFT JOIN guess_counters g ON g.subject = ",
    subject!()
);

#[derive(Deserialize)]
struct CounterRow {
    hits: u32,
    window_started_at: i64,
}

#[derive(Deserialize)]
struct StateRow {
    challenge_id: Option<String>,
    issued_at: Option<i64>,
    expires_at: Option<i64>,
    consumed_at: Option<i64>,
    failed_attempts: Option<u32>,
    window_started_at: Option<i64>,
    sends_in_window: Option<u32>,
    failures: Option<u32>,
    locked_until: Option<i64>,
    held: Option<i64>,
}

impl StateRow {
    fn counter(&self) -> GuessCounter {
        GuessCounter {
            failures: self.failures.unwrap_or(0),
            locked_until: UnixTime(self.locked_until.unwrap_or(0)),
            held: self.held.unwrap_or(0) != 0,
        }
    }

    fn challenge(&self) -> Option<ChallengeState> {
        Some(ChallengeState {
            challenge_id: ChallengeId(self.challenge_id.clone()?),
            issued_at: UnixTime(self.issued_at?),
            expires_at: UnixTime(self.expires_at?),
            consumed_at: self.consumed_at.map(UnixTime),
            failed_attempts: self.failed_attempts?,
            window_started_at: UnixTime(self.window_started_at?),
            sends_in_window: self.sends_in_window?,
        })
    }
}

#[derive(Deserialize)]
struct ReservedRow {
    challenge_id: String,
    failed_attempts: u32,
    code_digest: Option<String>,
}

#[derive(Deserialize)]
struct FailureRow {
    failures: u32,
    locked_until: i64,
    held: i64,
}

#[derive(Deserialize)]
struct IdRow {
    challenge_id: String,
}

#[derive(Deserialize)]
struct SessionIdRow {
    id: i64,
}

const DAY: i64 = 86_400;

/// A client's bucket for one purpose: per IPv4 address, per IPv6 /64.
pub(super) fn ip_bucket(client: &ClientIp, purpose: &str) -> String {
    format!("ip:{}:{purpose}", client.network())
}

pub(super) fn count_request(bucket: &str, now: UnixTime, policy: &Policy) -> Statement {
    Statement::new(COUNT_REQUEST, vec![text(bucket), int(now.0), int(policy.ip_window_seconds)])
}

pub(super) fn counter<R: BatchResults>(results: &R, index: usize) -> Result<WindowCounter, StoreError> {
    let row: CounterRow = results.first(index)?.ok_or_else(|| store_error("rate counter returned no row"))?;
    Ok(WindowCounter { hits: row.hits, window_started_at: UnixTime(row.window_started_at) })
}

fn state(identifier: &Identifier) -> Statement {
    Statement::new(STATE, vec![text(&identifier.key()), text(identifier.value())])
}

impl<X: Database> Challenges for D1<X> {
    async fn open(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Opening, StoreError> {
        let bucket = ip_bucket(client, "send");
        let open = Statement::new(
            OPEN_CHALLENGE,
            vec![
                text(&identifier.key()),
                text(identifier.value()),
                int(now.0),
                text(&challenge.0),
                int(now.plus(policy.code_ttl_seconds).0),
                text(&bucket),
                int(policy.ip_send_limit.into()),
                int(policy.resend_cooldown_seconds),
                int(policy.max_sends_per_hour.into()),
            ],
        );
        // The account is read in the same batch whether or not it exists, so the round trip is the same for every
        // identifier; it is used only for the delivery after the answer.
        let results = self
            .batch(vec![count_request(&bucket, now, policy), open, state(identifier), user_by_identifier(identifier)])
            .await?;

        if results.first::<IdRow>(1)?.is_some_and(|row| row.challenge_id == challenge.0) {
            return Ok(Opening::Issued { account: user_from(results.first::<UserRow>(3)?)? });
        }
        if let Some(refusal) = policy.ip_refusal(&counter(&results, 0)?, policy.ip_send_limit, now) {
            return Ok(Opening::Refused(refusal));
        }
        let state: StateRow = results.first(2)?.ok_or_else(|| store_error("state returned no row"))?;
        match policy.send_refusal(&state.counter(), state.challenge().as_ref(), now) {
            Some(refusal) => Ok(Opening::Refused(refusal)),
            None => Err(store_error("challenge was neither opened nor refused")),
        }
    }

    async fn reserve_attempt(
        &self,
        identifier: &Identifier,
        nonce: &ChallengeId,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Reservation, StoreError> {
        let (key, value) = (text(&identifier.key()), text(identifier.value()));
        let bucket = ip_bucket(client, "verify");
        let reserve = Statement::new(
            RESERVE_GUESS,
            vec![
                key.clone(),
                value.clone(),
                int(now.0),
                int(policy.max_failed_attempts.into()),
                text(&bucket),
                int(policy.ip_verify_limit.into()),
                text(&nonce.0),
            ],
        );
        let ensure = Statement::new(ENSURE_COUNTER, vec![key.clone(), value.clone(), int(now.0), text(&nonce.0)]);
        let count = Statement::new(
            COUNT_FAILURE,
            vec![
                key,
                value,
                int(now.0),
                text(&nonce.0),
                int(policy.max_failed_attempts.into()),
                int(policy.lockout_seconds),
                int(policy.max_consecutive_failures.into()),
            ],
        );
        // The account is read in the same batch for every identifier; it is used only once a code proved correct.
        let results = self
            .batch(vec![
                count_request(&bucket, now, policy),
                reserve,
                ensure,
                count,
                state(identifier),
                user_by_identifier(identifier),
            ])
            .await?;

        if let Some(row) = results.first::<ReservedRow>(1)? {
            let counted: FailureRow =
                results.first(3)?.ok_or_else(|| store_error("a reserved guess was not counted"))?;
            return Ok(Reservation::Reserved {
                challenge_id: ChallengeId(row.challenge_id),
                code_failures: row.failed_attempts,
                counter: GuessCounter {
                    failures: counted.failures,
                    locked_until: UnixTime(counted.locked_until),
                    held: counted.held != 0,
                },
                digest: row.code_digest,
                account: user_from(results.first::<UserRow>(5)?)?.map(Box::new),
            });
        }
        if let Some(refusal) = policy.ip_refusal(&counter(&results, 0)?, policy.ip_verify_limit, now) {
            return Ok(Reservation::Refused(refusal));
        }
        let state: StateRow = results.first(4)?.ok_or_else(|| store_error("state returned no row"))?;
        let counter = state.counter();
        if let Some(refusal) = policy.lock_refusal(&counter, now) {
            return Ok(Reservation::Refused(refusal));
        }
        // No live code: the next one starts with all its guesses, so only the subject's count limits them.
        Ok(Reservation::NoActiveCode { attempts_remaining: policy.attempts_remaining(&counter, 0) })
    }

    async fn claim_sms_slot(&self, now: UnixTime, cap: u32) -> Result<bool, StoreError> {
        // One bucket per UTC day; the window never rolls over inside it.
        let bucket = format!("sms:{}", now.0.div_euclid(DAY));
        let counted = Statement::new(COUNT_REQUEST, vec![text(&bucket), int(now.0), int(DAY)]);
        let row: CounterRow = self
            .query_all(counted)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| store_error("SMS counter returned no row"))?;
        Ok(row.hits <= cap)
    }

    async fn store_code(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        digest: &str,
    ) -> Result<(), StoreError> {
        let statement = Statement::new(STORE_CODE, vec![text(&identifier.key()), text(&challenge.0), text(digest)]);
        self.batch(vec![statement]).await.map(|_| ())
    }

    async fn redeem(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        now: UnixTime,
        session_id: i64,
        start: &NewSession,
    ) -> Result<Redemption, StoreError> {
        let key = identifier.key();
        let device = &start.device;
        let session = Statement::new(
            start_session(identifier),
            vec![
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
                int(session_id),
            ],
        );
        let refresh =
            Statement::new(FIRST_REFRESH_TOKEN, vec![text(&start.refresh.0), text(&start.access.0), int(now.0)]);
        let access = Statement::new(FIRST_ACCESS_TOKEN, vec![text(&start.access.0)]);
        let clear = Statement::new(
            CLEAR_FAILURES,
            vec![text(&key), text(identifier.value()), int(now.0), text(&start.access.0)],
        );
        let redeem = Statement::new(REDEEM, vec![text(&key), text(&challenge.0), int(now.0)]);
        let results = self.batch(vec![session, refresh, access, clear, redeem, user_by_identifier(identifier)]).await?;
        if results.first::<IdRow>(4)?.is_none() {
            return Ok(Redemption::AlreadyUsed);
        }
        let session_id = results.first::<SessionIdRow>(0)?.map(|row| row.id);
        Ok(Redemption::Redeemed { user: user_from(results.first::<UserRow>(5)?)?.map(Box::new), session_id })
    }
}
