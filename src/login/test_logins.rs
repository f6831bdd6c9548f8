//! Test identifiers for app-store review and QA: declared email addresses and phone numbers whose code is fixed
//! and for which nothing is sent. Every other rule still applies to them (active employee in D1, limits, lockout,
//! one-time use); only the code's origin differs.

use crate::domain::{Email, Identifier, OtpCode, PhoneNumber, Seconds, UnixTime};

/// The declared test identifiers and the instant they stop working.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestLogins {
    entries: Vec<(Identifier, OtpCode)>,
    expires_at: Option<UnixTime>,
}

/// Where the declaration is read, which decides what it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestLoginRules {
    /// `ENVIRONMENT=production`: test identifiers are refused unless `allowed_in_production`.
    pub production: bool,
    /// The explicit production opt-in (`TEST_LOGINS_IN_PRODUCTION=allow`), for an app-store review.
    pub allowed_in_production: bool,
    pub now: UnixTime,
}

/// Longest a declaration may stay valid: an app-store review takes days, not months.
pub const MAX_DAYS_IN_PRODUCTION: u32 = 30;
/// Longest elsewhere (QA, benchmarks).
pub const MAX_DAYS_ELSEWHERE: u32 = 366;

impl TestLogins {
    /// Reads `spec` (`TEST_LOGINS`: comma-separated `identifier=code`, e.g. `review@example.com=246810,
    /// +15555550100=135790`) and `expires` (`TEST_LOGINS_EXPIRE`: `YYYY-MM-DD`, the first UTC day they no longer
    /// work). An empty `spec` declares none. Errors never repeat a code.
    pub fn parse(spec: &str, expires: Option<&str>, rules: TestLoginRules) -> Result<TestLogins, String> {
        let declared: Vec<&str> = spec.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if declared.is_empty() {
            return Ok(TestLogins::default());
        }
        if rules.production && !rules.allowed_in_production {
            return Err("TEST_LOGINS is refused unless ENVIRONMENT is development; for an app-store review set \
                        TEST_LOGINS_IN_PRODUCTION=allow and an expiry at most 30 days ahead"
                .into());
        }
        let expires = expires.map(str::trim).filter(|e| !e.is_empty()).ok_or(
            "TEST_LOGINS needs TEST_LOGINS_EXPIRE, the first UTC day (YYYY-MM-DD) the test identifiers stop working",
        )?;
        let expires_at = UnixTime::parse_date(expires)
            .ok_or_else(|| format!("TEST_LOGINS_EXPIRE {expires:?} is not a date in the form YYYY-MM-DD"))?;
        let max_days = if rules.production { MAX_DAYS_IN_PRODUCTION } else { MAX_DAYS_ELSEWHERE };
        if expires_at > rules.now.plus(Seconds::DAY.times(max_days)) {
            return Err(format!("TEST_LOGINS_EXPIRE {expires} is more than {max_days} days ahead"));
        }

        let mut entries: Vec<(Identifier, OtpCode)> = Vec::with_capacity(declared.len());
        for (n, entry) in declared.iter().enumerate() {
            let malformed = || format!("TEST_LOGINS entry {} is not `email-or-phone=6 digits`", n + 1);
            let (who, code) = entry.rsplit_once('=').ok_or_else(malformed)?;
            let who = who.trim();
            let identifier = if who.starts_with('+') {
                PhoneNumber::parse(who).map(Identifier::Phone).ok()
            } else {
                Email::parse(who).map(Identifier::Email).ok()
            };
            let identifier = identifier.ok_or_else(malformed)?;
            let code = OtpCode::parse(code.trim()).map_err(|_| malformed())?;
            if entries.iter().any(|(known, _)| *known == identifier) {
                return Err(format!("TEST_LOGINS names {} twice", identifier.masked()));
            }
            entries.push((identifier, code));
        }
        Ok(TestLogins { entries, expires_at: Some(expires_at) })
    }

    /// A test identifier's fixed code, until the declaration expires.
    pub fn code_for(&self, identifier: &Identifier, now: UnixTime) -> Option<&OtpCode> {
        let live = self.expires_at.is_some_and(|end| now < end);
        live.then(|| self.entries.iter().find(|(known, _)| known == identifier).map(|(_, code)| code)).flatten()
    }

    /// How many identifiers are declared, and until when (for the start-up log; never the codes).
    pub fn summary(&self) -> Option<(usize, UnixTime)> {
        self.expires_at.map(|end| (self.entries.len(), end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime(1_795_996_800); // 2026-11-30

    fn rules(production: bool, allowed_in_production: bool) -> TestLoginRules {
        TestLoginRules { production, allowed_in_production, now: NOW }
    }

    fn email(address: &str) -> Identifier {
        Identifier::Email(Email::parse(address).unwrap())
    }

    #[test]
    fn declared_identifiers_get_their_fixed_code_until_the_expiry_date() {
        let spec = " Review@Example.com=246810 , +1 555 555 0100=135790 ";
        let logins = TestLogins::parse(spec, Some("2026-12-15"), rules(false, false)).unwrap();
        assert_eq!(logins.code_for(&email("review@example.com"), NOW).map(OtpCode::expose), Some("246810"));
        let phone = Identifier::Phone(PhoneNumber::parse("+15555550100").unwrap());
        assert_eq!(logins.code_for(&phone, NOW).map(OtpCode::expose), Some("135790"));
        assert_eq!(logins.code_for(&email("someone@example.com"), NOW), None);
        let end = UnixTime::parse_date("2026-12-15").unwrap();
        assert!(logins.code_for(&phone, end.minus(Seconds::new(1))).is_some());
        assert_eq!(logins.code_for(&phone, end), None, "dead from the first second of the expiry date");
        assert_eq!(logins.summary(), Some((2, end)));
    }

    #[test]
    fn production_refuses_test_identifiers_unless_explicitly_allowed_for_at_most_30_days() {
        let spec = "review@example.com=246810";
        let refused = TestLogins::parse(spec, Some("2026-12-15"), rules(true, false)).unwrap_err();
        assert!(refused.contains("refused unless ENVIRONMENT is development"), "{refused}");
        assert!(TestLogins::parse(spec, Some("2026-12-30"), rules(true, true)).is_ok());
        let too_long = TestLogins::parse(spec, Some("2026-12-31"), rules(true, true)).unwrap_err();
        assert!(too_long.contains("more than 30 days"), "{too_long}");
        assert!(TestLogins::parse(spec, Some("2027-12-01"), rules(false, false)).is_ok());
        assert!(TestLogins::parse(spec, Some("2027-12-02"), rules(false, false)).is_err());
        assert_eq!(TestLogins::parse(" , ", None, rules(true, false)), Ok(TestLogins::default()));
    }

    #[test]
    fn a_declaration_without_a_valid_expiry_or_with_a_bad_entry_is_refused_without_echoing_codes() {
        let spec = "review@example.com=246810";
        assert!(TestLogins::parse(spec, None, rules(false, false)).unwrap_err().contains("TEST_LOGINS_EXPIRE"));
        assert!(TestLogins::parse(spec, Some("15/12/2026"), rules(false, false)).is_err());
        for bad in [
            "review@example.com",
            "review@example.com=24681",
            "not-an-address=246810",
            "+12=246810",
            "review@example.com=246810,review@example.com=999999",
            "review@example.com=24681x",
        ] {
            let error = TestLogins::parse(bad, Some("2026-12-15"), rules(false, false)).unwrap_err();
            assert!(!error.contains("246810") && !error.contains("24681") && !error.contains("999999"), "{error}");
        }
    }
}
