/// A point in time as whole seconds since the Unix epoch (UTC).
///
/// The Workers runtime has no `SystemTime::now`, so time always comes from an injected clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// This instant moved `seconds` later (or earlier when negative).
    pub fn plus(self, seconds: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(seconds))
    }

    /// Whole seconds from `self` until `later`, never below zero.
    pub fn seconds_until(self, later: UnixTime) -> u64 {
        u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0)
    }
}
