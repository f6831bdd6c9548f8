//! Codes and the request windows: the statement that opens a challenge (a guess's own statements are in
//! `guesses`, the rules they share in `rules`).

use serde::Deserialize;

use super::rules::{
    account_may_log_in, client_within, code_request_refusal, cooling_down, held, hour_full, locked, subject,
    subject_locked, Verdict,
};
use super::{user_by_identifier, user_from, UserRow, D1};
use crate::adapters::sql::{int, secs, store_error, text, BatchResults, Database, Statement};
use crate::domain::{Identifier, UnixTime};
use crate::login::{Challenges, ClientIp, NewCode, Opening, Policy, StoreError};

/// Counts one request in a fixed window: ?1 bucket, ?2 now, ?3 window length.
pub(super) const COUNT_REQUEST: &str = "\
INSERT INTO rate_limits (bucket, window_started_at, hits) VALUES (?1, ?2, 1)
ON CONFLICT (bucket) DO UPDATE SET
  hits = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN 1 ELSE rate_limits.hits + 1 END,
  window_started_at = CASE WHEN rate_limits.window_started_at <= ?2 - ?3 THEN ?2 ELSE rate_limits.window_started_at END
RETURNING hits, window_started_at";

/// Starts a new challenge (a new code, with a fresh per-code guess count) unless a rule refuses it (the client's
/// limit, the subject's lockout, the resend cooldown, the hourly cap): ?1 key, ?2 value, ?3 now, ?4 challenge id, ?5 expiry, ?6 IP
/// bucket, ?7 IP limit, ?8 cooldown, ?9 hourly cap, ?10 the code's digest, stored only if the account may log in
/// (nothing is sent otherwise, so no code can be right). The subject's failure count is untouched.
const OPEN_CHALLENGE: &str = concat!(
    "INSERT INTO otp_challenges (identifier, challenge_id, issued_at, expires_at, consumed_at, failed_attempts, ",
    "window_started_at, sends_in_window, code_digest) ",
    "SELECT ?1, ?4, ?3, ?5, NULL, 0, ?3, 1, CASE WHEN ",
    account_may_log_in!(),
    " THEN ?10 END ",
    "WHERE ",
    client_within!("?6", "?7"),
    " AND NOT ",
    subject_locked!(),
    " ON CONFLICT (identifier) DO UPDATE SET ",
    "challenge_id = excluded.challenge_id, issued_at = excluded.issued_at, expires_at = excluded.expires_at, ",
    "consumed_at = NULL, failed_attempts = 0, reserved_by = NULL, code_digest = excluded.code_digest, ",
    "window_started_at = CASE WHEN otp_challenges.window_started_at > ?3 - 3600 ",
    "THEN otp_challenges.window_started_at ELSE ?3 END, ",
    "sends_in_window = CASE WHEN otp_challenges.window_started_at > ?3 - 3600 ",
    "THEN otp_challenges.sends_in_window + 1 ELSE 1 END ",
    "WHERE NOT (",
    cooling_down!("otp_challenges.", "?8"),
    ") AND NOT (",
    hour_full!("otp_challenges.", "?9"),
    ") RETURNING challenge_id"
);

/// Takes one of the UTC day's SMS slots (?1 the day's bucket, ?2 now) for the code just stored for ?3 (identifier
/// key) under challenge ?4: only a code that will be sent takes one.
const CLAIM_SMS_SLOT: &str = "\
INSERT INTO rate_limits (bucket, window_started_at, hits) SELECT ?1, ?2, 1
WHERE EXISTS (SELECT 1 FROM otp_challenges WHERE identifier = ?3 AND challenge_id = ?4 AND code_digest IS NOT NULL)
ON CONFLICT (bucket) DO UPDATE SET hits = rate_limits.hits + 1
RETURNING hits";

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
    Statement::new(COUNT_REQUEST, vec![text(bucket), int(now.0), secs(policy.ip_window)])
}

/// The positions of a code request's statements in its batch.
mod open_batch {
    pub const OPEN: usize = 1;
    pub const REFUSAL: usize = 2;
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
                text(code.challenge.as_str()),
                int(now.plus(policy.code_ttl).0),
                text(&bucket),
                int(policy.ip_send_limit.into()),
                secs(policy.resend_cooldown),
                int(policy.max_sends_per_hour.into()),
                text(code.digest),
            ],
        );
        let refusal = code_request_refusal(identifier, &bucket, now, policy);
        // The account is read in the same batch whether or not it exists, so the round trip is the same for every
        // identifier; it is used only for the delivery after the answer.
        let mut statements = vec![count_request(&bucket, now, policy), open, refusal, user_by_identifier(identifier)];
        if code.claim_sms_slot {
            // One bucket per UTC day; the window never rolls over inside it.
            let day = format!("sms:{}", now.0.div_euclid(DAY));
            let slot =
                Statement::new(CLAIM_SMS_SLOT, vec![text(&day), int(now.0), text(&key), text(code.challenge.as_str())]);
            statements.push(slot);
        }
        let results = self.batch(statements).await?;

        if results.first::<IdRow>(open_batch::OPEN)?.is_some_and(|row| row.challenge_id == code.challenge.as_str()) {
            let sms_slot = code.claim_sms_slot
                && results.first::<HitsRow>(open_batch::SMS_SLOT)?.is_some_and(|row| row.hits <= policy.sms_daily_cap);
            let account = user_from(results.first::<UserRow>(open_batch::USER)?)?.map(Box::new);
            return Ok(Opening::Issued { account, sms_slot });
        }
        let verdict: Verdict = results.first(open_batch::REFUSAL)?.ok_or_else(|| store_error("no verdict"))?;
        match verdict.refusal()? {
            Some(refusal) => Ok(Opening::Refused(refusal)),
            None => Err(store_error("challenge was neither opened nor refused")),
        }
    }
}
