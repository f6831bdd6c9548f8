use crate::domain::Seconds;

/// The login limits, all configurable. The D1 adapter's rules (`adapters/d1/rules.rs`) enforce them atomically and
/// say which one refused a request, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long a code is valid.
    pub code_ttl: Seconds,
    /// Wrong guesses a code allows, and the run of consecutive failures that locks an account (or an identifier
    /// that belongs to none); a new code does not reset the account's count.
    pub max_failed_attempts: u32,
    /// How long the first lockout lasts; each consecutive one lasts twice as long as the one before, at most a day.
    pub lockout: Seconds,
    /// Consecutive failures after which the account stays locked until an administrator unlocks it (at most 100).
    pub max_consecutive_failures: u32,
    /// Minimum time between two codes for one identifier.
    pub resend_cooldown: Seconds,
    /// Codes one identifier may be sent per hour.
    pub max_sends_per_hour: u32,
    /// Length of the per-IP fixed windows.
    pub ip_window: Seconds,
    /// Code requests (generate and resend) one IP may make per window.
    pub ip_send_limit: u32,
    /// Verification attempts one IP may make per window.
    pub ip_verify_limit: u32,
    /// Refresh-token exchanges one IP may make per window.
    pub ip_refresh_limit: u32,
    /// How long an access token lives: the bound on how long a change made to a user by raw SQL (deactivation,
    /// group removal) takes to reach every token, since access tokens carry a snapshot of the user.
    pub access_ttl: Seconds,
    /// How long a refresh token lives; each rotation starts a new period, so a device stays signed in as long as it
    /// refreshes within this time, up to `session_max`.
    pub refresh_ttl: Seconds,
    /// The absolute lifetime of a session, counted from its login: refreshing never extends it.
    pub session_max: Seconds,
    /// How long after its rotation a refresh token presented again is taken for a retry (a lost answer, two
    /// parallel refreshes) and gets a working pair for its session; after that it is reuse and revokes the session.
    /// 0 turns the grace off.
    pub refresh_reuse_grace: Seconds,
    /// SMS messages the whole service may send per UTC day: a ceiling on the bill if someone pumps SMS to
    /// premium numbers through many identifiers and addresses.
    pub sms_daily_cap: u32,
}

/// The ceiling on consecutive failures NIST SP 800-63B-4 allows a verifier.
pub const NIST_MAX_CONSECUTIVE_FAILURES: u32 = 100;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            code_ttl: Seconds::MINUTE.times(10),
            max_failed_attempts: 3,
            lockout: Seconds::MINUTE.times(15),
            max_consecutive_failures: 30,
            resend_cooldown: Seconds::MINUTE,
            max_sends_per_hour: 5,
            ip_window: Seconds::MINUTE.times(15),
            ip_send_limit: 20,
            ip_verify_limit: 60,
            ip_refresh_limit: 60,
            access_ttl: Seconds::MINUTE.times(15),
            refresh_ttl: Seconds::DAY.times(30),
            session_max: Seconds::DAY.times(90),
            refresh_reuse_grace: Seconds::new(30),
            sms_daily_cap: 500,
        }
    }
}

/// Why a request was refused before any code was sent or checked; each carries the seconds until it may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many requests from this client IP in the current window.
    TooManyRequests { retry_after: Seconds },
    /// A code was sent to this identifier moments ago.
    Cooldown { retry_after: Seconds },
    /// This identifier has been sent its hourly allowance of codes.
    HourlyCap { retry_after: Seconds },
    /// Too many wrong guesses for this account (or identifier) in a row; the lockout ends after `retry_after`.
    Locked { retry_after: Seconds },
    /// So many consecutive wrong guesses that only an administrator's unlock lets the account log in again.
    Held,
}

impl Refusal {
    /// The refusal as the audit trail records it, e.g. `guess refused: locked for 900 s`.
    pub fn describe(self, what: &str) -> String {
        let why = match self {
            Refusal::TooManyRequests { .. } => "client over its rate limit".to_owned(),
            Refusal::Cooldown { .. } => "resend cooldown".to_owned(),
            Refusal::HourlyCap { .. } => "hourly send cap".to_owned(),
            Refusal::Locked { retry_after } => format!("locked for {} s", retry_after.get()),
            Refusal::Held => "locked until an administrator unlocks it".to_owned(),
        };
        format!("{what} refused: {why}")
    }

    /// How long until the request may succeed, at least a second (what `Retry-After` says; a day for an account
    /// held for an administrator).
    pub fn retry_after(self) -> Seconds {
        match self {
            Refusal::TooManyRequests { retry_after }
            | Refusal::Cooldown { retry_after }
            | Refusal::HourlyCap { retry_after }
            | Refusal::Locked { retry_after } => retry_after.max(Seconds::new(1)),
            Refusal::Held => Seconds::DAY,
        }
    }
}

impl Policy {
    /// Guesses left before the code dies, the subject is locked, or it is held, whichever comes first, given the
    /// subject's consecutive `failures` and the code's own.
    pub fn attempts_remaining(&self, failures: u32, code_failures: u32) -> u32 {
        let per_code = self.max_failed_attempts.saturating_sub(code_failures);
        let before_lockout = self.max_failed_attempts - failures % self.max_failed_attempts.max(1);
        let before_hold = self.max_consecutive_failures.saturating_sub(failures);
        per_code.min(before_lockout).min(before_hold)
    }
}
