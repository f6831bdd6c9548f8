//! The ports: what the use cases need from the outside world, one small trait each.
//!
//! Futures here are not `Send`: a Worker isolate is single-threaded, and JS-backed futures cannot cross threads.

use serde::{Deserialize, Serialize};

use super::message::Message;
use super::policy::{Policy, Refusal};
use super::ClientIp;
use crate::domain::{ChallengeId, Identifier, Seconds, TokenDigest, UnixTime, User};

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

/// The answer to a request for a new code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// The challenge now carries the new id and the new code's digest (stored only if the identifier's account may
    /// log in); any earlier code for the identifier is dead. `account` is the user the identifier names, read in
    /// the same transaction (one round trip for the whole request), for the delivery after the answer; the answer
    /// itself never depends on it. `sms_slot` is whether one of today's SMS slots was taken for this code (only
    /// asked for SMS codes that are sent, and only taken for an account that may log in).
    Issued {
        account: Option<Box<User>>,
        sms_slot: bool,
    },
    Refused(Refusal),
}

/// What a code request asks of storage, besides the identifier and the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCode<'a> {
    pub challenge: &'a ChallengeId,
    /// The code's keyed digest (see [`crate::domain::CodeHasher`]).
    pub digest: &'a str,
    /// Take one of today's SMS slots, under `policy.sms_daily_cap`, if the code is stored.
    pub claim_sms_slot: bool,
}

/// What a guess asks of storage, besides the identifier and the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess<'a> {
    /// Unique to this request: marks the guess it reserves.
    pub nonce: &'a ChallengeId,
    /// The guessed code's keyed digest, compared with the stored one.
    pub digest: &'a str,
    /// The session to start if the guess is right and the account may log in.
    pub session_id: i64,
    pub start: &'a NewSession,
}

/// The answer to a guess, decided in one atomic step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The code was right: it is consumed, the session started and the subject's failures cleared. `user` is the
    /// account as the same step read it.
    LoggedIn {
        user: Box<User>,
        session_id: i64,
    },
    /// The code was right and is now consumed, but no session started: the account (as read, if any) may not log in.
    Consumed {
        account: Option<Box<User>>,
    },
    /// The guess was evaluated and wrong: it counts against the code (`code_failures` with it) and the subject
    /// (`failures` consecutive ones with it), and `lock` is the lockout it started, if it completed a run.
    Wrong {
        code_failures: u32,
        failures: u32,
        lock: Option<Refusal>,
    },
    /// There is no live, unused code with guesses left for this identifier.
    NoActiveCode {
        attempts_remaining: u32,
    },
    Refused(Refusal),
}

/// Codes: each identifier's current challenge, its sending windows and the service-wide SMS quota. One atomic step
/// (one D1 batch) per call, even under concurrent requests.
pub trait Challenges {
    /// Counts the request against the client's send limit and, unless a limit refuses it, starts a new challenge
    /// for `code` expiring after `policy.code_ttl`, keeping the failure count.
    async fn open(
        &self,
        identifier: &Identifier,
        code: &NewCode<'_>,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Opening, StoreError>;
}

/// Guesses on a code. One atomic step (one D1 batch) per call, even under concurrent requests: this is what makes
/// the guess caps and "exactly one session per code" hold.
pub trait Guesses {
    /// Counts the request against the client's verify limit and evaluates one guess on the live code, unless a
    /// limit or a lockout refuses it: a wrong guess counts against the code and the subject; a right one consumes
    /// the code and, if the account may log in, starts the session `guess.start` and clears the subject's count.
    async fn attempt(
        &self,
        identifier: &Identifier,
        guess: &Guess<'_>,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Attempt, StoreError>;

    /// Undoes a guess whose login could not be handed out (its answer was lost, or its access token could not be
    /// written): the session it started with access token `access`, if any, ends at `now`, and the code it consumed
    /// is live again, so that the user can enter it again.
    async fn release(
        &self,
        identifier: &Identifier,
        nonce: &ChallengeId,
        access: &TokenDigest,
        now: UnixTime,
    ) -> Result<(), StoreError>;
}

/// The version of the [`Session`] value this code writes. A reader takes every version it can decode (unknown fields
/// are ignored, missing optional ones take their defaults); a value it cannot use counts as no token (401).
pub const SESSION_FORMAT: u32 = 2;

/// Values written before versions existed have the shape of version 1.
fn unversioned() -> u32 {
    1
}

/// What a live access token grants, stored in KV under the token's digest: the session it belongs to and a snapshot
/// of the user taken when it was issued, so an authenticated call needs exactly one KV read and no D1. A change made
/// to the user by SQL therefore shows only in the next access token (at most `access_ttl_seconds` later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "v", default = "unversioned")]
    pub format: u32,
    pub session_id: i64,
    pub user: User,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

impl Session {
    pub fn encode(&self) -> String {
        // A struct of plain fields always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The stored value, if this code can use it.
    pub fn decode(text: &str) -> Option<Session> {
        serde_json::from_str(text).ok()
    }
}

/// Access tokens in a store with expiration (KV).
pub trait AccessTokens {
    /// Stores the token; KV keeps it at most `ttl_seconds` (the value's own expiry is checked on every read).
    async fn put(&self, token: &TokenDigest, session: &Session, ttl: Seconds) -> Result<(), StoreError>;
    async fn get(&self, token: &TokenDigest) -> Result<Option<Session>, StoreError>;
    async fn delete(&self, token: &TokenDigest) -> Result<(), StoreError>;
}

/// Where a request came from, as recorded on its session row: user agent and Cloudflare's coarse geolocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
}

/// The digests and lifetimes of a freshly issued token pair, and the device it is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub access: TokenDigest,
    pub access_expires_at: UnixTime,
    pub refresh: TokenDigest,
    pub refresh_expires_at: UnixTime,
    pub device: Device,
}

/// The answer to presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The session now also holds the new pair: either this call rotated the token (`previous_access` is the
    /// access token it replaced, to delete from KV) or the token had been rotated out within the grace period (a
    /// retry; nothing is replaced). `user` is the account as it is now, `expires_at` the session's end.
    Rotated { session_id: i64, user: Box<User>, previous_access: Option<TokenDigest>, expires_at: UnixTime },
    /// The token had been rotated out longer ago than the grace period: the session was revoked by this call, and
    /// `access` are its access tokens to delete from KV.
    Reused { session_id: i64, user_id: i64, access: Vec<TokenDigest> },
    /// The token was current but its account may no longer log in (deactivated, or in no employee group): the
    /// session was revoked by this call, and its access tokens (`access`) must go too.
    AccessLost { session_id: i64, user_id: i64, access: Vec<TokenDigest> },
    /// Unknown, expired or revoked.
    Invalid,
    /// The client is over its refresh limit; nothing was decided.
    Refused(Refusal),
}

/// Sessions that were ended, and the access tokens of the caller's ended sessions that may still be in KV.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocation {
    /// The sessions this call ended.
    pub ended: Vec<i64>,
    /// Every unexpired access token of the sessions in scope that are revoked now, whenever they were revoked: a
    /// retried revocation deletes again what an earlier attempt may have failed to delete.
    pub access: Vec<TokenDigest>,
}

/// The answer to a logout by refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshLogout {
    /// The token belongs to this session, which is revoked now (`ended` if by this call).
    Ended {
        session_id: i64,
        user_id: i64,
        ended: bool,
        access: Vec<TokenDigest>,
    },
    /// No session has ever had this token (or its record is gone).
    Unknown,
    Refused(Refusal),
}

/// A live session as its owner sees it in the device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: i64,
    pub created_at: UnixTime,
    pub last_used_at: UnixTime,
    pub expires_at: UnixTime,
    pub user_agent: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
}

/// Which sessions of a user to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    One(i64),
    All,
}

/// The strongly consistent record of sessions (D1). Each method is one atomic step: a refresh token is rotated by
/// at most one request, however many race, and a rotated-out token presented after the grace period revokes its
/// session.
pub trait Sessions {
    /// Counts the request against the client's refresh limit and, within it, gives the session the pair `next` if
    /// `refresh` is its current token, or was rotated out less than `policy.refresh_reuse_grace_seconds` ago, the
    /// session is live and the account may still log in; revokes the session if `refresh` was rotated out before
    /// that, or if the account lost access.
    async fn rotate(
        &self,
        refresh: &TokenDigest,
        next: &NewSession,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Rotation, StoreError>;
    /// Undoes a rotation to `next` whose answer could not be completed, so that presenting `refresh` again is
    /// not reuse: `refresh` is current again and `next` never existed.
    async fn unrotate(&self, refresh: &TokenDigest, next: &NewSession) -> Result<(), StoreError>;
    /// Ends the user's live sessions in `scope`.
    async fn revoke(&self, user_id: i64, scope: Scope, now: UnixTime, reason: &str) -> Result<Revocation, StoreError>;
    /// Counts the request against the client's refresh limit and, within it, ends the session that `refresh`
    /// (current or rotated out) belongs to.
    async fn end_by_refresh(
        &self,
        refresh: &TokenDigest,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<RefreshLogout, StoreError>;
    /// The user's live sessions, most recently used first.
    async fn list(&self, user_id: i64, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError>;
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

/// The audit trail's event types, named as stored; `migrations/0006_guess_limits.sql` explains each.
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
    Refused,
    Unlocked,
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
            EventKind::Refused => "refused",
            EventKind::Unlocked => "unlocked",
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

/// What a request leaves for after its answer: its audit events, and the access tokens it wrote to KV after the step
/// that made them live. Adapters write the events after the response, so that logging never delays or fails a login.
pub trait EventLog {
    fn record(&self, event: LoginEvent);
    /// Remembers an access token this request issued, whose session is checked again by [`EventLog::flush`].
    fn issued(&self, token: &TokenDigest);
    /// Writes the recorded events and, in the same round trip, finds which of the issued access tokens belong to
    /// sessions that have ended since: those must leave KV. An issued token stays remembered until a flush answers.
    async fn flush(&self) -> Result<Vec<TokenDigest>, StoreError>;
}

/// Records nothing: for a login core whose events nobody reads.
impl EventLog for () {
    fn record(&self, _: LoginEvent) {}
    fn issued(&self, _: &TokenDigest) {}
    async fn flush(&self) -> Result<Vec<TokenDigest>, StoreError> {
        Ok(Vec::new())
    }
}
