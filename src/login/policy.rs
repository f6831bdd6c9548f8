use super::ports::{ChallengeState, WindowCounter};
use crate::domain::UnixTime;

/// The limits of SPEC §2, all configurable. The D1 adapter's SQL enforces the same rules atomically; these
/// functions explain a refusal (which limit, how long to wait) and drive the in-memory fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long a code is valid.
    pub code_ttl_seconds: i64,
    /// Wrong guesses allowed before the identifier is locked; a new code does not reset the count.
    pub max_failed_attempts: u32,
    /// How long a lockout lasts, and how long a wrong guess is remembered.
    pub lockout_seconds: i64,
    /// Minimum time between two codes for one identifier.
    pub resend_cooldown_seconds: i64,
    /// Codes one identifier may be sent per hour.
    pub max_sends_per_hour: u32,
    /// Length of the per-IP fixed windows.
    pub ip_window_seconds: i64,
    /// Code requests (generate and resend) one IP may make per window.
    pub ip_send_limit: u32,
    /// Verification attempts one IP may make per window.
    pub ip_verify_limit: u32,
    /// How long an access token lives: the bound on how long a change made to a user by raw SQL (deactivation,
    /// group removal) takes to reach every token, since access tokens carry a snapshot of the user.
    pub access_ttl_seconds: i64,
    /// How long a refresh token lives; each rotation starts a new period, so a device stays signed in as long as it
    /// refreshes within this time.
    pub refresh_ttl_seconds: i64,
    /// SMS messages the whole service may send per UTC day: a ceiling on the bill if someone pumps SMS to
    /// premium numbers through many identifiers and addresses.
    pub sms_daily_cap: u32,
}

/// Length of the per-identifier send-cap window.
pub const HOUR: i64 = 3600;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            code_ttl_seconds: 600,
            max_failed_attempts: 3,
            lockout_seconds: 900,
            resend_cooldown_seconds: 60,
            max_sends_per_hour: 5,
            ip_window_seconds: 900,
            ip_send_limit: 20,
            ip_verify_limit: 60,
            access_ttl_seconds: 15 * 60,
            refresh_ttl_seconds: 30 * 24 * HOUR,
            sms_daily_cap: 500,
        }
    }
}

/// Why a request was refused before any code was sent or checked; each carries the seconds until it may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many requests from this client IP in the current window.
    TooManyRequests { retry_after: u64 },
    /// A code was sent to this identifier moments ago.
    Cooldown { retry_after: u64 },
    /// This identifier has been sent its hourly allowance of codes.
    HourlyCap { retry_after: u64 },
    /// Too many wrong guesses for this identifier.
    Locked { retry_after: u64 },
}

impl Refusal {
    pub fn retry_after(self) -> u64 {
        match self {
            Refusal::TooManyRequests { retry_after }
            | Refusal::Cooldown { retry_after }
            | Refusal::HourlyCap { retry_after }
            | Refusal::Locked { retry_after } => retry_after.max(1),
        }
    }
}

impl Policy {
    /// Whether a counter that has just been incremented is over `limit`.
    pub fn ip_refusal(&self, counter: &WindowCounter, limit: u32, now: UnixTime) -> Option<Refusal> {
        (counter.hits > limit).then(|| Refusal::TooManyRequests {
            retry_after: now.seconds_until(counter.window_started_at.plus(self.ip_window_seconds)),
        })
    }

    /// Wrong guesses that still count at `now`: they are forgotten once the lockout period has passed since the last.
    pub fn live_failures(&self, state: &ChallengeState, now: UnixTime) -> u32 {
        match state.last_failed_at {
            Some(at) if at.plus(self.lockout_seconds) > now => state.failed_attempts,
            _ => 0,
        }
    }

    pub fn attempts_remaining(&self, state: Option<&ChallengeState>, now: UnixTime) -> u32 {
        let failures = state.map_or(0, |s| self.live_failures(s, now));
        self.max_failed_attempts.saturating_sub(failures)
    }

    /// The lockout in force for this identifier, if any.
    pub fn lock_refusal(&self, state: &ChallengeState, now: UnixTime) -> Option<Refusal> {
        let locked = self.live_failures(state, now) >= self.max_failed_attempts;
        locked.then(|| Refusal::Locked {
            retry_after: state.last_failed_at.map_or(0, |at| now.seconds_until(at.plus(self.lockout_seconds))),
        })
    }

    /// Why a new code may not be issued for this identifier now, checked in this order: lockout, cooldown, hourly cap.
    pub fn send_refusal(&self, state: &ChallengeState, now: UnixTime) -> Option<Refusal> {
        if let Some(locked) = self.lock_refusal(state, now) {
            return Some(locked);
        }
        let cooldown_ends = state.issued_at.plus(self.resend_cooldown_seconds);
        if cooldown_ends > now {
            return Some(Refusal::Cooldown { retry_after: now.seconds_until(cooldown_ends) });
        }
        let window_ends = state.window_started_at.plus(HOUR);
        if window_ends > now && state.sends_in_window >= self.max_sends_per_hour {
            return Some(Refusal::HourlyCap { retry_after: now.seconds_until(window_ends) });
        }
        None
    }
}
