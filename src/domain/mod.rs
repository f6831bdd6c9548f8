//! Domain types: each validates once at the boundary, so the rest of the code can trust it.
//! Nothing here knows about HTTP, storage or the Workers runtime.

mod code;
mod email;
mod identifier;
mod locale;
mod phone;
mod time;
mod token;
mod user;

pub use code::{ChallengeId, CodeHasher, OtpCode, OtpCodeError};
pub use email::{Email, EmailError};
pub use identifier::{Channel, Identifier};
pub use locale::{Locale, LocaleError};
pub use phone::{PhoneNumber, PhoneNumberError};
pub use time::{CivilTime, Seconds, UnixTime};
pub use token::{Token, TokenDigest, TokenError};
pub use user::{Profile, User};

/// A source of cryptographically secure random bytes.
pub trait Random {
    /// Fills `buf` entirely, or fails; never returns predictable bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError>;
}

/// The platform's CSPRNG was unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomError(pub String);

impl std::fmt::Display for RandomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "random source failed: {}", self.0)
    }
}
