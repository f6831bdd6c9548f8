use serde::{Deserialize, Serialize};

/// A point in time as whole seconds since the Unix epoch (UTC).
///
/// The Workers runtime has no `SystemTime::now`, so time always comes from an injected clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

/// A length of time in whole seconds, never negative: every duration of the service (a limit's window, a lifetime, a
/// wait) is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(u32);

impl Seconds {
    pub const ZERO: Seconds = Seconds(0);
    pub const MINUTE: Seconds = Seconds(60);
    pub const HOUR: Seconds = Seconds(3600);
    pub const DAY: Seconds = Seconds(86_400);

    pub const fn new(seconds: u32) -> Seconds {
        Seconds(seconds)
    }

    /// `None` when negative or beyond a `u32`'s 136 years.
    pub fn from_i64(seconds: i64) -> Option<Seconds> {
        u32::try_from(seconds).ok().map(Seconds)
    }

    /// `n` times this length, saturating.
    pub const fn times(self, n: u32) -> Seconds {
        Seconds(self.0.saturating_mul(n))
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    pub const fn as_i64(self) -> i64 {
        self.0 as i64
    }
}

/// A UTC calendar date and time of day, as protocols that sign or compare dates need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

const DAY: i64 = 86_400;

impl UnixTime {
    /// This instant moved `length` later.
    pub fn plus(self, length: Seconds) -> UnixTime {
        UnixTime(self.0.saturating_add(length.as_i64()))
    }

    /// This instant moved `length` earlier.
    pub fn minus(self, length: Seconds) -> UnixTime {
        UnixTime(self.0.saturating_sub(length.as_i64()))
    }

    /// The time from `self` until `later`, never below zero.
    pub fn seconds_until(self, later: UnixTime) -> Seconds {
        Seconds(u32::try_from(later.0.saturating_sub(self.0).max(0)).unwrap_or(u32::MAX))
    }

    /// Midnight UTC at the start of a proleptic Gregorian date; `None` when the date does not exist.
    pub fn from_date(year: i64, month: u32, day: u32) -> Option<UnixTime> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        // Howard Hinnant's days_from_civil: years start in March so the leap day is the last of the year.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let shifted_month = i64::from((month + 9) % 12);
        let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        Some(UnixTime((era * 146_097 + day_of_era - 719_468) * DAY))
    }

    /// Reads `YYYY-MM-DD` as midnight UTC at the start of that date.
    pub fn parse_date(text: &str) -> Option<UnixTime> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = text.get(range)?;
            part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok()).flatten()
        };
        UnixTime::from_date(i64::from(number(0..4)?), number(5..7)?, number(8..10)?)
    }

    /// The UTC calendar date and time of day of this instant.
    pub fn civil(self) -> CivilTime {
        let days = self.0.div_euclid(DAY);
        let secs = self.0.rem_euclid(DAY);
        // The inverse of `from_date` (civil_from_days).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
        let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        CivilTime {
            year,
            month,
            day,
            hour: (secs / 3600) as u32,
            minute: (secs % 3600 / 60) as u32,
            second: (secs % 60) as u32,
        }
    }
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_unix_seconds_and_back() {
        assert_eq!(UnixTime::from_date(1970, 1, 1), Some(UnixTime(0)));
        assert_eq!(UnixTime::from_date(2000, 3, 1), Some(UnixTime(951_868_800)));
        assert_eq!(UnixTime::from_date(2026, 11, 30), Some(UnixTime(1_795_996_800)));
        let t = UnixTime(1_440_938_160); // 2015-08-30T12:36:00Z, the AWS SigV4 test suite's date
        assert_eq!(t.civil(), CivilTime { year: 2015, month: 8, day: 30, hour: 12, minute: 36, second: 0 });
        for days in [-800_000i64, -1, 0, 59, 60, 365, 10_957, 20_000, 2_932_896] {
            let c = UnixTime(days * DAY + 3_661).civil();
            assert_eq!(UnixTime::from_date(c.year, c.month, c.day), Some(UnixTime(days * DAY)), "day {days}");
            assert_eq!((c.hour, c.minute, c.second), (1, 1, 1));
        }
    }

    #[test]
    fn only_real_dates_in_the_iso_form_are_read() {
        assert_eq!(UnixTime::parse_date("2024-02-29"), UnixTime::from_date(2024, 2, 29));
        for bad in ["2023-02-29", "2026-13-01", "2026-00-10", "2026-1-01", "2026/01/01", "+026-01-01", "2026-01-32", ""]
        {
            assert_eq!(UnixTime::parse_date(bad), None, "{bad}");
        }
    }
}
