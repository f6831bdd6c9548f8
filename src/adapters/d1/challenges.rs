//! Codes and the request windows: the statements that open a challenge, and the subject and window rules every
//! login limit shares (a guess's own statements are in `guesses`).
//!
//! Wrong guesses are counted per *subject*: the account an identifier belongs to (`user:<id>`, shared by its email
//! and its phone and by all its codes), or the identifier itself when it belongs to no account, so that both behave
//! alike. Only a successful login or an administrator's unlock resets a subject's count; the passing of time never
//! does. Every `max_failed_attempts` consecutive failures lock the subject, each lockout twice as long as the one
//! before (capped at a day), and at `max_consecutive_failures` it is held until an administrator unlocks it.

use serde::Deserialize;

use super::{user_by_identifier, user_from, UserRow, D1};
use crate::adapters::sql::{int, store_error, text, BatchResults, Database, Statement};
use crate::domain::{ChallengeId, Identifier, TokenDigest, UnixTime};
use crate::login::{
    Attempt, ChallengeState, Challenges, ClientIp, Guess, GuessCounter, NewCode, Opening, Policy, StoreError,
    WindowCounter,
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
pub(super) use subject;

macro_rules! subject_locked {
    () => {
        concat!(
            "EXISTS (SELECT 1 FROM guess_counters WHERE subject = ",
            subject!(),
            " AND (held = 1 OR locked_until > ?3))"
        )
    };
}

pub(super) use subject_locked;

/// True when ?1 (key) and ?2 (value) name an account that may log in: active and in an employee group.
macro_rules! account_may_log_in {
    () => {
        "EXISTS (SELECT 1 FROM users u WHERE (u.email = ?2 AND ?1 = 'email:' || ?2 \
         OR u.id = (SELECT user_id FROM profiles WHERE ?1 = 'sms:' || ?2 AND phone_number = ?2)) \
         AND u.is_active = 1 AND EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
         WHERE ug.user_id = u.id AND g.is_employee_group = 1))"
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
/// bucket, ?7 IP limit, ?8 cooldown, ?9 hourly cap, ?10 the code's digest, stored only if the account may log in
/// (nothing is sent otherwise, so no code can be right). The subject's failure count is untouched.
const OPEN_CHALLENGE: &str = concat!(
    "INSERT INTO otp_challenges (identifier, challenge_id, issued_at, expires_at, consumed_at, failed_attempts, ",
    "window_started_at, sends_in_window, code_digest) ",
    "SELECT ?1, ?4, ?3, ?5, NULL, 0, ?3, 1, CASE WHEN ",
    account_may_log_in!(),
    " THEN ?10 END ",
    "WHERE (SELECT hits FROM rate_limits WHERE bucket = ?6) <= ?7 AND NOT ",
    subject_locked!(),
    " ON CONFLICT (identifier) DO UPDATE SET ",
    "challenge_id = excluded.challenge_id, issued_at = excluded.issued_at, expires_at = excluded.expires_at, ",
    "consumed_at = NULL, failed_attempts = 0, reserved_by = NULL, code_digest = excluded.code_digest, ",
    "window_started_at = CASE WHEN otp_challenges.window_started_at > ?3 - 3600 ",
    "THEN otp_challenges.window_started_at ELSE ?3 END, ",
    "sends_in_window = CASE WHEN otp_challenges.window_started_at > ?3 - 3600 ",
    "THEN otp_challenges.sends_in_window + 1 ELSE 1 END ",
    "WHERE otp_challenges.issued_at <= ?3 - ?8 ",
    "AND (otp_challenges.window_started_at <= ?3 - 3600 OR otp_challenges.sends_in_window < ?9) ",
    "RETURNING challenge_id"
);

/// Takes one of the UTC day's SMS slots (?1 the day's bucket, ?2 now) for the code just stored for ?3 (identifier
/// key) under challenge ?4: only a code that will be sent takes one.
const CLAIM_SMS_SLOT: &str = "\
INSERT INTO rate_limits (bucket, window_started_at, hits) SELECT ?1, ?2, 1
WHERE EXISTS (SELECT 1 FROM otp_challenges WHERE identifier = ?3 AND challenge_id = ?4 AND code_digest IS NOT NULL)
ON CONFLICT (bucket) DO UPDATE SET hits = rate_limits.hits + 1
RETURNING hits";

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
pub(super) struct StateRow {
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
    pub(super) fn counter(&self) -> GuessCounter {
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
struct HitsRow {
    hits: u32,
}

#[derive(Deserialize)]
pub(super) struct IdRow {
    pub(super) challenge_id: String,
}

#[derive(Deserialize)]
pub(super) struct SessionIdRow {
    pub(super) id: i64,
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

pub(super) fn state(identifier: &Identifier) -> Statement {
    Statement::new(STATE, vec![text(&identifier.key()), text(identifier.value())])
}

/// The positions of a code request's statements in its batch.
mod open_batch {
    pub const COUNT: usize = 0;
    pub const OPEN: usize = 1;
    pub const STATE: usize = 2;
    pub const USER: usize = 3;
    pub const SMS_SLOT: usize = 4;
}

impl<X: Database> Challenges for D1<X> {
    async fn open(
        &self,
        identifier: &Identifier,
        code: &NewCode<'_>,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Opening, StoreError> {
        let bucket = ip_bucket(client, "send");
        let key = identifier.key();
        let open = Statement::new(
            OPEN_CHALLENGE,
            vec![
                text(&key),
                text(identifier.value()),
                int(now.0),
                text(&code.challenge.0),
                int(now.plus(policy.code_ttl_seconds).0),
                text(&bucket),
                int(policy.ip_send_limit.into()),
                int(policy.resend_cooldown_seconds),
                int(policy.max_sends_per_hour.into()),
                text(code.digest),
            ],
        );
        // The account is read in the same batch whether or not it exists, so the round trip is the same for every
        // identifier; it is used only for the delivery after the answer.
        let mut statements =
            vec![count_request(&bucket, now, policy), open, state(identifier), user_by_identifier(identifier)];
        if code.claim_sms_slot {
            // One bucket per UTC day; the window never rolls over inside it.
            let day = format!("sms:{}", now.0.div_euclid(DAY));
            let slot =
                Statement::new(CLAIM_SMS_SLOT, vec![text(&day), int(now.0), text(&key), text(&code.challenge.0)]);
            statements.push(slot);
        }
        let results = self.batch(statements).await?;

        if results.first::<IdRow>(open_batch::OPEN)?.is_some_and(|row| row.challenge_id == code.challenge.0) {
            let sms_slot = code.claim_sms_slot
                && results.first::<HitsRow>(open_batch::SMS_SLOT)?.is_some_and(|row| row.hits <= policy.sms_daily_cap);
            let account = user_from(results.first::<UserRow>(open_batch::USER)?)?;
            return Ok(Opening::Issued { account, sms_slot });
        }
        if let Some(refusal) = policy.ip_refusal(&counter(&results, open_batch::COUNT)?, policy.ip_send_limit, now) {
            return Ok(Opening::Refused(refusal));
        }
        let state: StateRow = results.first(open_batch::STATE)?.ok_or_else(|| store_error("state returned no row"))?;
        match policy.send_refusal(&state.counter(), state.challenge().as_ref(), now) {
            Some(refusal) => Ok(Opening::Refused(refusal)),
            None => Err(store_error("challenge was neither opened nor refused")),
        }
    }

    async fn attempt(
        &self,
        identifier: &Identifier,
        guess: &Guess<'_>,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Attempt, StoreError> {
        self.decide_guess(identifier, guess, client, now, policy).await
    }

    async fn release(
        &self,
        identifier: &Identifier,
        nonce: &ChallengeId,
        access: &TokenDigest,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.release_guess(identifier, nonce, access, now).await
    }
}
