/// A phone number in E.164 form: `+`, a non-zero country digit, 7 to 15 digits in all.
///
/// Input may carry the usual separators (spaces, dashes, dots, parentheses) and the `00` international prefix;
/// national numbers without a country code are refused rather than guessed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

/// Why a string is not an acceptable phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneNumberError {
    Empty,
    MissingCountryCode,
    InvalidCharacter,
    WrongLength,
    /// Valid E.164, but its country calling code is not on the deployment's allow-list.
    CountryNotAllowed,
}

const MIN_DIGITS: usize = 7;
const MAX_DIGITS: usize = 15;
/// Longest raw input worth looking at: 15 digits plus generous formatting.
const MAX_RAW: usize = 32;

impl PhoneNumber {
    /// Normalises and validates `raw`.
    pub fn parse(raw: &str) -> Result<PhoneNumber, PhoneNumberError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(PhoneNumberError::Empty);
        }
        if trimmed.len() > MAX_RAW {
            return Err(PhoneNumberError::WrongLength);
        }
        let mut compact = String::with_capacity(trimmed.len());
        for c in trimmed.chars() {
            match c {
                ' ' | '-' | '.' | '(' | ')' => {}
                '+' | '0'..='9' => compact.push(c),
                _ => return Err(PhoneNumberError::InvalidCharacter),
            }
        }
        let digits = if let Some(rest) = compact.strip_prefix('+') {
            rest
        } else if let Some(rest) = compact.strip_prefix("00") {
            rest
        } else {
            return Err(PhoneNumberError::MissingCountryCode);
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneNumberError::InvalidCharacter);
        }
        if digits.starts_with('0') {
            return Err(PhoneNumberError::MissingCountryCode);
        }
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
            return Err(PhoneNumberError::WrongLength);
        }
        Ok(PhoneNumber(format!("+{digits}")))
    }

    /// Like [`PhoneNumber::parse`], and the number must start with one of `calling_codes` (digits without `+`,
    /// e.g. `"1"`, `"44"`); an empty list allows every country.
    pub fn parse_allowed(raw: &str, calling_codes: &[String]) -> Result<PhoneNumber, PhoneNumberError> {
        let phone = PhoneNumber::parse(raw)?;
        let digits = &phone.0[1..];
        if calling_codes.is_empty() || calling_codes.iter().any(|code| digits.starts_with(code.as_str())) {
            Ok(phone)
        } else {
            Err(PhoneNumberError::CountryNotAllowed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with its middle hidden, for logs and audit rows: `+12******90`.
    pub fn masked(&self) -> String {
        let n = self.0.len();
        format!("{}{}{}", &self.0[..3], "*".repeat(n - 5), &self.0[n - 2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_test_number_is_already_canonical() {
        assert_eq!(PhoneNumber::parse("+1234567890").unwrap().as_str(), "+1234567890");
    }

    #[test]
    fn separators_and_the_00_prefix_are_normalised_away() {
        for raw in ["+1 (234) 567-890", " +1.234.567.890 ", "001234567890", "+1-234-567-890"] {
            assert_eq!(PhoneNumber::parse(raw).unwrap().as_str(), "+1234567890", "{raw}");
        }
    }

    #[test]
    fn numbers_without_a_country_code_are_refused() {
        assert_eq!(PhoneNumber::parse("0123456789"), Err(PhoneNumberError::MissingCountryCode));
        assert_eq!(PhoneNumber::parse("1234567890"), Err(PhoneNumberError::MissingCountryCode));
        assert_eq!(PhoneNumber::parse("+0123456789"), Err(PhoneNumberError::MissingCountryCode));
    }

    #[test]
    fn letters_and_unicode_digits_are_refused() {
        assert_eq!(PhoneNumber::parse("+1234567abc"), Err(PhoneNumberError::InvalidCharacter));
        assert_eq!(PhoneNumber::parse("+１２３４５６７８９０"), Err(PhoneNumberError::InvalidCharacter));
        assert_eq!(PhoneNumber::parse("+12+34567890"), Err(PhoneNumberError::InvalidCharacter));
    }

    #[test]
    fn lengths_outside_e164_are_refused() {
        assert_eq!(PhoneNumber::parse("+123456"), Err(PhoneNumberError::WrongLength));
        assert_eq!(PhoneNumber::parse("+1234567890123456"), Err(PhoneNumberError::WrongLength));
        assert_eq!(PhoneNumber::parse(&"+1".repeat(40)), Err(PhoneNumberError::WrongLength));
        assert_eq!(PhoneNumber::parse(""), Err(PhoneNumberError::Empty));
    }

    #[test]
    fn an_allow_list_admits_only_its_calling_codes() {
        let codes = vec!["1".to_owned(), "44".to_owned()];
        assert!(PhoneNumber::parse_allowed("+1234567890", &codes).is_ok());
        assert!(PhoneNumber::parse_allowed("+44 7700 900123", &codes).is_ok());
        assert_eq!(PhoneNumber::parse_allowed("+33612345678", &codes), Err(PhoneNumberError::CountryNotAllowed));
        assert!(PhoneNumber::parse_allowed("+33612345678", &[]).is_ok());
        assert_eq!(PhoneNumber::parse_allowed("0612345678", &codes), Err(PhoneNumberError::MissingCountryCode));
    }

    #[test]
    fn masking_keeps_only_the_ends() {
        assert_eq!(PhoneNumber::parse("+1234567890").unwrap().masked(), "+12******90");
    }
}
