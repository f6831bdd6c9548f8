//! Every login limit, stated once. Each rule is an SQL condition here; the statements that decide (open a
//! challenge, reserve a guess, rotate a refresh token) are built from these conditions, and so is the one statement,
//! [`REFUSAL`], that says which rule refused a request and for how long. A new limit goes here: its condition, its
//! reason and its wait in `REFUSAL`, and its parameter in `Policy`.
//!
//! Wrong guesses are counted per *subject*: the account an identifier belongs to (`user:<id>`, shared by its email
//! and its phone and by all its codes), or the identifier itself when it belongs to no account, so that both behave
//! alike. Only a successful login or an administrator's unlock resets a subject's count; the passing of time never
//! does. Every `max_failed_attempts` consecutive failures lock the subject, each lockout twice as long as the one
//! before (capped at a day), and at `max_consecutive_failures` it is held until an administrator unlocks it.

use serde::Deserialize;

use crate::adapters::sql::{int, opt_text, secs, text, Param, Statement};
use crate::domain::{Identifier, Seconds, UnixTime};
use crate::login::{Policy, Refusal, StoreError};

/// The subject an identifier's failures are counted under, from ?1 the identifier's key (`email:…` or `sms:…`) and
/// ?2 its value: its account's, if it has one, or its own.
macro_rules! subject {
    () => {
        "COALESCE((SELECT 'user:' || id FROM users WHERE ?1 = 'email:' || ?2 AND email = ?2), \
         (SELECT 'user:' || user_id FROM profiles WHERE ?1 = 'sms:' || ?2 AND phone_number = ?2), ?1)"
    };
}
pub(super) use subject;

/// The client's counter (bucket `$bucket`, already counting this request) is within `$limit`.
macro_rules! client_within {
    ($bucket:literal, $limit:literal) => {
        concat!("(SELECT hits FROM rate_limits WHERE bucket = ", $bucket, ") <= ", $limit)
    };
}
pub(super) use client_within;

/// The guess counter row `$g` holds its subject for an administrator.
macro_rules! held {
    ($g:literal) => {
        concat!($g, "held = 1")
    };
}
pub(super) use held;

/// The guess counter row `$g` is in a lockout at ?3 (now).
macro_rules! locked {
    ($g:literal) => {
        concat!($g, "locked_until > ?3")
    };
}
pub(super) use locked;

/// True while the subject of ?1/?2 may not guess or be sent a code at ?3 (held or locked).
macro_rules! subject_locked {
    () => {
        concat!(
            "EXISTS (SELECT 1 FROM guess_counters WHERE subject = ",
            subject!(),
            " AND (",
            held!(""),
            " OR ",
            locked!(""),
            "))"
        )
    };
}
pub(super) use subject_locked;

/// The challenge row `$c` was issued less than `$cooldown` seconds before ?3: no new code yet.
macro_rules! cooling_down {
    ($c:literal, $cooldown:literal) => {
        concat!($c, "issued_at > ?3 - ", $cooldown)
    };
}
pub(super) use cooling_down;

/// The challenge row `$c`'s hour, begun less than an hour before ?3, already had `$cap` sends.
macro_rules! hour_full {
    ($c:literal, $cap:literal) => {
        concat!($c, "window_started_at > ?3 - 3600 AND ", $c, "sends_in_window >= ", $cap)
    };
}
pub(super) use hour_full;

/// True when ?1 (key) and ?2 (value) name an account that may log in: active and in an employee group.
macro_rules! account_may_log_in {
    () => {
        "EXISTS (SELECT 1 FROM users u WHERE (u.email = ?2 AND ?1 = 'email:' || ?2 \
         OR u.id = (SELECT user_id FROM profiles WHERE ?1 = 'sms:' || ?2 AND phone_number = ?2)) \
         AND u.is_active = 1 AND EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
         WHERE ug.user_id = u.id AND g.is_employee_group = 1))"
    };
}
pub(super) use account_may_log_in;

/// Which rule refuses the request, checked in this order, and the seconds until it no longer does; read in the
/// deciding batch after its deciding statement, from the same conditions. ?1 identifier key, ?2 value (both NULL for
/// a request that names no identifier), ?3 now, ?4 the client's bucket, ?5 its limit, ?6 the client window's length,
/// ?7 the resend cooldown and ?8 the hourly cap (NULL where those rules do not apply: a guess).
pub(super) const REFUSAL: &str = concat!(
    "SELECT CASE WHEN NOT ",
    client_within!("?4", "?5"),
    " THEN 'client' WHEN ",
    held!("g."),
    " THEN 'held' WHEN ",
    locked!("g."),
    " THEN 'locked' WHEN ",
    cooling_down!("c.", "?7"),
    " THEN 'cooldown' WHEN ",
    hour_full!("c.", "?8"),
    " THEN 'hourly' END AS reason, ",
    "CASE WHEN NOT ",
    client_within!("?4", "?5"),
    " THEN (SELECT window_started_at FROM rate_limits WHERE bucket = ?4) + ?6 - ?3 WHEN ",
    held!("g."),
    " THEN 86400 WHEN ",
    locked!("g."),
    " THEN g.locked_until - ?3 WHEN ",
    cooling_down!("c.", "?7"),
    " THEN c.issued_at + ?7 - ?3 WHEN ",
    hour_full!("c.", "?8"),
    " THEN c.window_started_at + 3600 - ?3 END AS retry_after, ",
    "COALESCE(g.failures, 0) AS failures ",
    "FROM (SELECT 1) LEFT JOIN otp_challenges c ON c.identifier = ?1 ",
    "LEFT JOIN guess_counters g ON g.subject = ",
    subject!()
);

/// The lockout a guess counter row (as an `UPDATE … RETURNING` sees it) is in at ?3, with its wait: the same
/// conditions as [`REFUSAL`]'s.
macro_rules! lock_returning {
    () => {
        concat!(
            "CASE WHEN ",
            held!(""),
            " THEN 'held' WHEN ",
            locked!(""),
            " THEN 'locked' END AS reason, ",
            "CASE WHEN ",
            held!(""),
            " THEN 86400 WHEN ",
            locked!(""),
            " THEN locked_until - ?3 END AS retry_after"
        )
    };
}
pub(super) use lock_returning;

/// A rule's verdict as [`REFUSAL`] or [`lock_returning!`] states it.
#[derive(Deserialize)]
pub(super) struct Verdict {
    reason: Option<String>,
    retry_after: Option<i64>,
    /// The subject's consecutive failures ([`REFUSAL`] only).
    #[serde(default)]
    pub(super) failures: u32,
}

impl Verdict {
    /// The refusal, if a rule refuses.
    pub(super) fn refusal(&self) -> Result<Option<Refusal>, StoreError> {
        let wait = Seconds::from_i64(self.retry_after.unwrap_or(0)).unwrap_or(Seconds::ZERO);
        Ok(Some(match self.reason.as_deref() {
            None => return Ok(None),
            Some("client") => Refusal::TooManyRequests { retry_after: wait },
            Some("held") => Refusal::Held,
            Some("locked") => Refusal::Locked { retry_after: wait },
            Some("cooldown") => Refusal::Cooldown { retry_after: wait },
            Some("hourly") => Refusal::HourlyCap { retry_after: wait },
            Some(other) => return Err(StoreError(format!("unknown refusal reason {other}"))),
        }))
    }
}

/// What refuses a code request, if anything.
pub(super) fn code_request_refusal(identifier: &Identifier, bucket: &str, now: UnixTime, policy: &Policy) -> Statement {
    let (cooldown, cap) = (secs(policy.resend_cooldown), int(policy.max_sends_per_hour.into()));
    refusal(Some(identifier), bucket, policy.ip_send_limit, now, policy, cooldown, cap)
}

/// What refuses a guess, if anything (the cooldown and the hourly cap do not apply).
pub(super) fn guess_refusal(identifier: &Identifier, bucket: &str, now: UnixTime, policy: &Policy) -> Statement {
    refusal(Some(identifier), bucket, policy.ip_verify_limit, now, policy, Param::Null, Param::Null)
}

/// What refuses a request that presents a refresh token: only the client's limit.
pub(super) fn refresh_refusal(bucket: &str, now: UnixTime, policy: &Policy) -> Statement {
    refusal(None, bucket, policy.ip_refresh_limit, now, policy, Param::Null, Param::Null)
}

fn refusal(
    identifier: Option<&Identifier>,
    bucket: &str,
    limit: u32,
    now: UnixTime,
    policy: &Policy,
    cooldown: Param,
    cap: Param,
) -> Statement {
    Statement::new(
        REFUSAL,
        vec![
            opt_text(identifier.map(Identifier::key).as_deref()),
            opt_text(identifier.map(Identifier::value)),
            int(now.0),
            text(bucket),
            int(limit.into()),
            secs(policy.ip_window),
            cooldown,
            cap,
        ],
    )
}
