//! The daily cleanup: state that no longer affects any answer, and audit rows and sessions past retention.

use super::D1;
use crate::adapters::sql::{int, secs, BatchResults, Database, Statement};
use crate::domain::{Seconds, UnixTime};
use crate::login::{Policy, StoreError};

/// Counter windows that have ended: ?1 now, ?2 the longest window in use (the per-IP window, or two days for the
/// per-day SMS buckets). A deleted row behaves exactly like a window that has rolled over.
const PURGE_COUNTERS: &str = "DELETE FROM rate_limits WHERE window_started_at < ?1 - ?2";

/// Challenges whose code, cooldown and hourly window have all lapsed (?1 now): such a row carries no state a new
/// request would read. Failure counts live in `guess_counters`, which no cleanup touches: time never forgives them.
const PURGE_CHALLENGES: &str = "\
DELETE FROM otp_challenges WHERE expires_at < ?1 AND issued_at < ?1 - 3600 AND window_started_at < ?1 - 3600";

/// Audit rows past the retention period: ?1 now, ?2 retention in seconds.
const PURGE_EVENTS: &str = "DELETE FROM login_events WHERE occurred_at < ?1 - ?2";
/// The provisioning audit trail (SCIM and imports) follows the same retention.
const PURGE_PROVISIONING_EVENTS: &str = "DELETE FROM provisioning_events WHERE occurred_at < ?1 - ?2";

/// Sessions revoked, or expired, more than ?2 seconds before ?1, with their refresh tokens (which can then only
/// answer "invalid", as any unknown token does).
const PURGE_REFRESH_TOKENS: &str = "\
DELETE FROM refresh_tokens WHERE session_id IN (
  SELECT id FROM sessions WHERE COALESCE(revoked_at, expires_at) < ?1 - ?2)";
/// Access tokens expired before ?1: KV no longer serves them, so no revocation needs their digests.
const PURGE_ACCESS_TOKENS: &str = "DELETE FROM access_tokens WHERE expires_at < ?1";
const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE COALESCE(revoked_at, expires_at) < ?1 - ?2";

/// Rows removed by one cleanup run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub counters: usize,
    pub challenges: usize,
    pub events: usize,
    pub sessions: usize,
}

impl<X: Database> D1<X> {
    /// Deletes state that no longer affects any answer, audit rows older than `retention`, and sessions that ended
    /// more than `session_retention` ago.
    pub async fn purge(
        &self,
        now: UnixTime,
        policy: &Policy,
        retention: Seconds,
        session_retention: Seconds,
    ) -> Result<Purged, StoreError> {
        let longest_window = policy.ip_window.max(Seconds::DAY.times(2));
        let results = self
            .batch(vec![
                Statement::new(PURGE_COUNTERS, vec![int(now.0), secs(longest_window)]),
                Statement::new(PURGE_CHALLENGES, vec![int(now.0)]),
                Statement::new(PURGE_EVENTS, vec![int(now.0), secs(retention)]),
                Statement::new(PURGE_ACCESS_TOKENS, vec![int(now.0)]),
                Statement::new(PURGE_REFRESH_TOKENS, vec![int(now.0), secs(session_retention)]),
                Statement::new(PURGE_SESSIONS, vec![int(now.0), secs(session_retention)]),
                Statement::new(PURGE_PROVISIONING_EVENTS, vec![int(now.0), secs(retention)]),
            ])
            .await?;
        Ok(Purged {
            counters: results.changes(0)?,
            challenges: results.changes(1)?,
            events: results.changes(2)? + results.changes(6)?,
            sessions: results.changes(5)?,
        })
    }
}
