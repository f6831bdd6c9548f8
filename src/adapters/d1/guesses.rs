//! Guesses: one batch decides each, whoever the identifier belongs to — the client's window, the reservation on
//! the live code, the comparison of digests, the session it starts, the subject's failure count — and a guess whose
//! login could not be handed out is released.

use serde::Deserialize;

use super::challenges::{count_request, ip_bucket, IdRow, SessionIdRow};
use super::rules::{client_within, guess_refusal, held, lock_returning, locked, subject, subject_locked, Verdict};
use super::sessions::{start_session, FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN};
use super::{user_by_identifier, user_from, UserRow, D1};
use crate::adapters::sql::{int, opt_text, secs, store_error, text, BatchResults, Database, Statement};
use crate::domain::{ChallengeId, Identifier, TokenDigest, UnixTime};
use crate::login::{Attempt, ClientIp, Guess, Guesses, Policy, StoreError};

/// Reserves one guess on the live, unused code, if the code has guesses left, the client is under its limit and the
/// subject is not locked; the reservation is marked with this request's ?7 nonce. ?1 key, ?2 value, ?3 now,
/// ?4 guesses per code, ?5 IP bucket, ?6 IP limit.
const RESERVE_GUESS: &str = concat!(
    "UPDATE otp_challenges SET failed_attempts = failed_attempts + 1, reserved_by = ?7 ",
    "WHERE identifier = ?1 AND consumed_at IS NULL AND expires_at > ?3 AND failed_attempts < ?4 ",
    "AND ",
    client_within!("?5", "?6"),
    " AND NOT ",
    subject_locked!(),
    " RETURNING challenge_id, failed_attempts"
);

/// The subject's counter row, created empty if this batch reserved a guess (?4 the nonce): ?1 key, ?2 value, ?3 now.
const ENSURE_COUNTER: &str = concat!(
    "INSERT OR IGNORE INTO guess_counters (subject, failures, locked_until, held, last_failed_at) SELECT ",
    subject!(),
    ", 0, 0, 0, ?3 WHERE EXISTS (SELECT 1 FROM otp_challenges WHERE identifier = ?1 AND reserved_by = ?4)"
);

/// Counts the reserved guess as a failure until it is redeemed (a login clears it later in the same batch), in the
/// same transaction as the reservation: the failure that completes a run of ?5 locks the subject for ?6 × 2^(k−1) seconds (k-th lockout, at
/// most a day), and the ?7-th consecutive failure holds it for an administrator. ?1 key, ?2 value, ?3 now, ?4 nonce.
const COUNT_FAILURE: &str = concat!(
    "UPDATE guess_counters SET failures = failures + 1, last_failed_at = ?3, ",
    "locked_until = CASE WHEN (failures + 1) % ?5 = 0 ",
    "THEN ?3 + min(?6 << min((failures + 1) / ?5 - 1, 20), 86400) ELSE locked_until END, ",
    "held = CASE WHEN failures + 1 >= ?7 THEN 1 ELSE held END ",
    "WHERE subject = ",
    subject!(),
    " AND EXISTS (SELECT 1 FROM otp_challenges WHERE identifier = ?1 AND reserved_by = ?4) ",
    "RETURNING failures, ",
    lock_returning!()
);

/// Consumes the code if the guess this batch reserved (?2 nonce) is right (?4 its digest), once: ?1 key, ?3 now.
const REDEEM: &str = "\
UPDATE otp_challenges SET consumed_at = ?3
WHERE identifier = ?1 AND reserved_by = ?2 AND code_digest = ?4 AND consumed_at IS NULL AND expires_at > ?3
RETURNING challenge_id";

/// Makes the code consumed by the guess ?2 (nonce) live again if that guess started the session ?3, whose answer
/// could not be given: ?1 key.
const RELEASE_CODE: &str = "\
UPDATE otp_challenges SET consumed_at = NULL
WHERE identifier = ?1 AND reserved_by = ?2 AND consumed_at IS NOT NULL
  AND EXISTS (SELECT 1 FROM sessions WHERE access_digest = ?3)";

/// A session started with access token ?1 whose answer could not be given ends at ?2.
pub(super) const ABANDON: &str = "\
UPDATE sessions SET revoked_at = ?2, revoked_reason = 'answer not delivered' WHERE access_digest = ?1 AND revoked_at IS NULL";

/// A successful login (the session ?4 was started in this batch) clears the subject's failures and lockouts:
/// ?1 key, ?2 value.
const CLEAR_FAILURES: &str = concat!(
    "UPDATE guess_counters SET failures = 0, locked_until = 0, held = 0 WHERE subject = ",
    subject!(),
    " AND EXISTS (SELECT 1 FROM sessions WHERE access_digest = ?4)"
);

#[derive(Deserialize)]
struct ReservedRow {
    failed_attempts: u32,
}

#[derive(Deserialize)]
struct FailureRow {
    failures: u32,
    #[serde(flatten)]
    lock: Verdict,
}

/// The positions of a guess's statements in its batch (2 creates the counter row, 4 and 5 record the session's
/// tokens, 7 clears the failures).
mod guess_batch {
    pub const RESERVE: usize = 1;
    pub const SESSION: usize = 3;
    pub const FAILURE: usize = 6;
    pub const REDEEM: usize = 8;
    pub const REFUSAL: usize = 9;
    pub const USER: usize = 10;
}

impl<X: Database> Guesses for D1<X> {
    async fn attempt(
        &self,
        identifier: &Identifier,
        guess: &Guess<'_>,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Attempt, StoreError> {
        let key = identifier.key();
        let value = identifier.value();
        let nonce = guess.nonce.as_str();
        let start = guess.start;
        let device = &start.device;
        let bucket = ip_bucket(client, "verify");
        let reserve = Statement::new(
            RESERVE_GUESS,
            vec![
                text(&key),
                text(value),
                int(now.0),
                int(policy.max_failed_attempts.into()),
                text(&bucket),
                int(policy.ip_verify_limit.into()),
                text(nonce),
            ],
        );
        let ensure = Statement::new(ENSURE_COUNTER, vec![text(&key), text(value), int(now.0), text(nonce)]);
        let session = Statement::new(
            start_session(identifier),
            vec![
                text(&key),
                text(nonce),
                int(now.0),
                int(start.refresh_expires_at.0),
                text(start.access.as_str()),
                int(start.access_expires_at.0),
                opt_text(device.user_agent.as_deref()),
                opt_text(device.ip.as_deref()),
                opt_text(device.country.as_deref()),
                opt_text(device.city.as_deref()),
                text(value),
                int(guess.session_id),
                text(guess.digest),
            ],
        );
        let refresh = Statement::new(
            FIRST_REFRESH_TOKEN,
            vec![text(start.refresh.as_str()), text(start.access.as_str()), int(now.0)],
        );
        let access = Statement::new(FIRST_ACCESS_TOKEN, vec![text(start.access.as_str())]);
        let count = Statement::new(
            COUNT_FAILURE,
            vec![
                text(&key),
                text(value),
                int(now.0),
                text(nonce),
                int(policy.max_failed_attempts.into()),
                secs(policy.lockout),
                int(policy.max_consecutive_failures.into()),
            ],
        );
        let clear =
            Statement::new(CLEAR_FAILURES, vec![text(&key), text(value), int(now.0), text(start.access.as_str())]);
        let redeem = Statement::new(REDEEM, vec![text(&key), text(nonce), int(now.0), text(guess.digest)]);
        // One transaction decides the guess whoever the identifier belongs to: the same statements for every
        // identifier, and the account read with them.
        let results = self
            .batch(vec![
                count_request(&bucket, now, policy),
                reserve,
                ensure,
                session,
                refresh,
                access,
                count,
                clear,
                redeem,
                guess_refusal(identifier, &bucket, now, policy),
                user_by_identifier(identifier),
            ])
            .await?;

        if let Some(reserved) = results.first::<ReservedRow>(guess_batch::RESERVE)? {
            let account = user_from(results.first::<UserRow>(guess_batch::USER)?)?.map(Box::new);
            if let Some(session) = results.first::<SessionIdRow>(guess_batch::SESSION)? {
                let user = account.ok_or_else(|| store_error("a session started for no account"))?;
                return Ok(Attempt::LoggedIn { user, session_id: session.id });
            }
            if results.first::<IdRow>(guess_batch::REDEEM)?.is_some() {
                return Ok(Attempt::Consumed { account });
            }
            let counted: FailureRow =
                results.first(guess_batch::FAILURE)?.ok_or_else(|| store_error("a wrong guess was not counted"))?;
            return Ok(Attempt::Wrong {
                code_failures: reserved.failed_attempts,
                failures: counted.failures,
                lock: counted.lock.refusal()?,
            });
        }
        let verdict: Verdict = results.first(guess_batch::REFUSAL)?.ok_or_else(|| store_error("no verdict"))?;
        if let Some(refusal) = verdict.refusal()? {
            return Ok(Attempt::Refused(refusal));
        }
        // No live code: the next one starts with all its guesses, so only the subject's count limits them.
        Ok(Attempt::NoActiveCode { attempts_remaining: policy.attempts_remaining(verdict.failures, 0) })
    }

    async fn release(
        &self,
        identifier: &Identifier,
        nonce: &ChallengeId,
        access: &TokenDigest,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let release =
            Statement::new(RELEASE_CODE, vec![text(&identifier.key()), text(nonce.as_str()), text(access.as_str())]);
        let abandon = Statement::new(ABANDON, vec![text(access.as_str()), int(now.0)]);
        self.batch(vec![release, abandon]).await.map(drop)
    }
}
