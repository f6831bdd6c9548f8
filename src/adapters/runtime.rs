//! The runtime's clock and CSPRNG.

use crate::domain::{Random, RandomError, UnixTime};
use crate::login::Clock;

/// `Date.now()`. Inside a request the Workers clock only advances across I/O, which is precise enough for
/// expiries counted in seconds.
#[derive(Clone, Copy, Default)]
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now(&self) -> UnixTime {
        UnixTime((worker::Date::now().as_millis() / 1000) as i64)
    }
}

/// `crypto.getRandomValues`, through getrandom.
#[derive(Clone, Copy, Default)]
pub struct CryptoRandom;

impl Random for CryptoRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
    }
}
