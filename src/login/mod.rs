//! The login use cases and the ports they reach the world through. No `worker` import: storage, delivery,
//! the clock and randomness are traits, implemented by `crate::adapters` on the edge and by fakes in tests.

mod message;
mod policy;
mod ports;
mod service;
mod test_logins;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

pub use message::{Language, Message, MessageSettings};
pub use policy::{Policy, Refusal};
pub use ports::{
    AccessTokens, ChallengeState, Challenges, Clock, CodeVault, DeliveryError, DeliveryReport, Device, EventKind,
    EventLog, LoginEvent, NewSession, Notifier, Opening, Redemption, Reservation, Revoked, Rotation, Scope, Session,
    SessionInfo, Sessions, StoreError, StoredCode, WindowCounter,
};
pub use service::{AuthError, Authenticated, InternalError, Login, LoginError, LoginGrant, PendingCode, TokenPair};
pub use test_logins::{TestLoginRules, TestLogins};

/// The client's address as Cloudflare saw it (`CF-Connecting-IP`), the key for per-IP limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIp(pub String);
