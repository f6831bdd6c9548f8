//! The ports: what the use cases need from the outside world, one small trait each.
//!
//! Futures here are not `Send`: a Worker isolate is single-threaded, and JS-backed futures cannot cross threads.

use serde::{Deserialize, Serialize};

use super::message::Message;
use super::policy::{Policy, Refusal};
use super::ClientIp;
use crate::domain::{ChallengeId, Identifier, TokenDigest, UnixTime, User};

/// A storage call failed; the text is for the log, never for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

/// A provider did not accept a message; `reason` is for the log and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    pub provider: &'static str,
    pub reason: String,
}

pub trait Clock {
    fn now(&self) -> UnixTime;
}

/// Read access to users, profiles and groups.
pub trait Accounts {
    async fn find_by_identifier(&self, identifier: &Identifier) -> Result<Option<User>, StoreError>;
    async fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
}

/// A fixed-window request counter after the current request was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCounter {
    pub hits: u32,
    pub window_started_at: UnixTime,
}

/// The exact, strongly consistent state kept per identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeState {
    pub challenge_id: ChallengeId,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub consumed_at: Option<UnixTime>,
    pub failed_attempts: u32,
    pub last_failed_at: Option<UnixTime>,
    pub window_started_at: UnixTime,
    pub sends_in_window: u32,
}

/// The answer to a request for a new code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// The challenge now carries the new id; any earlier code for the identifier is dead.
    Issued,
    Refused(Refusal),
}

/// The answer to a request to check one guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// One guess may be evaluated; it already counts as failed (`failed_attempts` includes it) until redeemed.
    Reserved {
        challenge_id: ChallengeId,
        failed_attempts: u32,
    },
    /// There is no live, unused code for this identifier.
    NoActiveCode {
        attempts_remaining: u32,
    },
    Refused(Refusal),
}

/// The answer to redeeming a correct guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// This call consumed the code; the account as it is now, if it still exists.
    Redeemed(Option<Box<User>>),
    /// Another request consumed it first.
    AlreadyUsed,
}

/// The per-identifier counters, one-time flags and service-wide quotas. Every method is one atomic step even under concurrent
/// requests: this is what makes "at most 3 guesses" and "exactly one token" hold.
pub trait Challenges {
    /// Counts the request against the client's send limit and, unless a limit refuses it, starts a new challenge
    /// with id `challenge` expiring after `policy.code_ttl_seconds`, keeping the failure count.
    async fn open(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Opening, StoreError>;

    /// Counts the request against the client's verify limit and reserves one guess on the live code.
    async fn reserve_attempt(
        &self,
        identifier: &Identifier,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Reservation, StoreError>;

    /// Takes one of today's (UTC) SMS slots; `false` when `cap` were already taken.
    async fn claim_sms_slot(&self, now: UnixTime, cap: u32) -> Result<bool, StoreError>;

    /// Marks the code consumed and clears the failure count, if nobody did first; loads the account in the same step.
    async fn redeem(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        now: UnixTime,
    ) -> Result<Redemption, StoreError>;
}

/// A code as stored: never the digits, only their keyed digest, plus its own expiry (the store's TTL is cleanup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCode {
    pub challenge_id: String,
    pub digest: String,
    pub expires_at: i64,
}

/// Where issued codes wait for their guess.
pub trait CodeVault {
    async fn put(&self, identifier: &Identifier, code: &StoredCode, ttl_seconds: u64) -> Result<(), StoreError>;
    async fn get(&self, identifier: &Identifier) -> Result<Option<StoredCode>, StoreError>;
}

/// What a live API token grants, stored under the token's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: i64,
    pub issued_at: i64,
    pub expires_at: i64,
}

pub trait Sessions {
    async fn put(&self, token: &TokenDigest, session: &Session, ttl_seconds: u64) -> Result<(), StoreError>;
    async fn get(&self, token: &TokenDigest) -> Result<Option<Session>, StoreError>;
    async fn delete(&self, token: &TokenDigest) -> Result<(), StoreError>;
}

/// What became of one message: the provider that accepted it, if any, and every attempt that failed before
/// (in order). A provider is only tried after the one before it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered_by: Option<&'static str>,
    pub failures: Vec<DeliveryError>,
}

/// Sends a composed message through the providers configured for its channel, in order, until one accepts it.
pub trait Notifier {
    async fn send(&self, message: &Message) -> DeliveryReport;
}

/// The audit trail's event types (SPEC §4), named as stored; `migrations/0002_event_vocabulary.sql` explains each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    CodeRequested,
    CodeSent,
    DeliveryFailed,
    CodeFailed,
    LockedOut,
    Login,
    Refresh,
    RefreshReused,
    Logout,
    Revoked,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CodeRequested => "code_requested",
            EventKind::CodeSent => "code_sent",
            EventKind::DeliveryFailed => "delivery_failed",
            EventKind::CodeFailed => "code_failed",
            EventKind::LockedOut => "locked_out",
            EventKind::Login => "login",
            EventKind::Refresh => "refresh",
            EventKind::RefreshReused => "refresh_reused",
            EventKind::Logout => "logout",
            EventKind::Revoked => "revoked",
        }
    }
}

/// One audit row. Never holds a code or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEvent {
    pub kind: EventKind,
    pub at: UnixTime,
    pub user_id: Option<i64>,
    pub identifier: Option<Identifier>,
    pub detail: Option<String>,
}

/// Collects audit events; adapters write them after the response so that logging never delays or fails a login.
pub trait EventLog {
    fn record(&self, event: LoginEvent);
}
