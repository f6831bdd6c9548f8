//! The identifier rules of the admin command (`scripts/admin.mjs`): the very `Email::parse`,
//! `PhoneNumber::parse_allowed` and `Locale::parse` the service applies to requests, with the administrator's
//! wording of each refusal. `tools/admin-check/` compiles this file and those parsers, and nothing else, to the
//! small WebAssembly module `scripts/lib/admin-check.wasm` that the admin command runs in Node, so an administrator
//! needs no Rust toolchain and can never store an address, a number or a language the service would read
//! differently or refuse. Nothing here reaches the Worker.

use crate::domain::{Email, EmailError, Locale, PhoneNumber, PhoneNumberError};

/// Why a value was refused: the field, the API's error code for it, and a sentence for the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

fn email_problem(error: EmailError) -> &'static str {
    match error {
        EmailError::Empty => "is empty",
        EmailError::TooLong => "is longer than 254 characters",
        EmailError::Malformed => {
            "is not an address the service accepts (ASCII local@domain.tld, no quotes, no spaces, no double dots)"
        }
    }
}

fn phone_problem(error: PhoneNumberError) -> &'static str {
    match error {
        PhoneNumberError::Empty => "is empty",
        PhoneNumberError::MissingCountryCode => {
            "needs the international form: + and the country code, e.g. +44 7700 900123"
        }
        PhoneNumberError::InvalidCharacter => "may hold only digits, spaces, dashes, dots, parentheses and a leading +",
        PhoneNumberError::WrongLength => "must have 7 to 15 digits including the country code",
        PhoneNumberError::CountryNotAllowed => "has a country code that PHONE_ALLOWED_COUNTRY_CODES does not accept",
    }
}

fn refusal(field: &'static str, code: &'static str, value: &str, problem: &str) -> Refusal {
    Refusal { field, code, message: format!("{field} {value:?} {problem}") }
}

/// The calling codes of a `PHONE_ALLOWED_COUNTRY_CODES` value (`"1, +44"` → `["1", "44"]`); empty allows all.
pub fn calling_codes(list: &str) -> Vec<String> {
    list.split(',').map(|c| c.trim().trim_start_matches('+').to_owned()).filter(|c| !c.is_empty()).collect()
}

/// Normalises one value of `field` (`email`, `new_email`, `phone_number` or `locale`), or says why it is refused.
/// `allowed_country_codes` is the deployment's `PHONE_ALLOWED_COUNTRY_CODES`.
pub fn check(field: &str, value: &str, allowed_country_codes: &str) -> Result<String, Refusal> {
    match field {
        "email" | "new_email" => {
            let field = if field == "email" { "email" } else { "new_email" };
            Email::parse(value)
                .map(|e| e.as_str().to_owned())
                .map_err(|e| refusal(field, "invalid_email", value, email_problem(e)))
        }
        "phone_number" => PhoneNumber::parse_allowed(value, &calling_codes(allowed_country_codes))
            .map(|p| p.as_str().to_owned())
            .map_err(|e| refusal("phone_number", "invalid_phone_number", value, phone_problem(e))),
        "locale" => Locale::parse(value).map(|l| l.as_str().to_owned()).map_err(|_| {
            refusal("locale", "invalid_request", value, "is not a language tag such as en, es-MX or pt-BR")
        }),
        _ => Err(Refusal { field: "field", code: "invalid_request", message: format!("unknown field {field:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_normalised_exactly_as_the_service_does() {
        assert_eq!(check("email", " Jane.Doe@Example.COM ", "").unwrap(), "jane.doe@example.com");
        assert_eq!(check("phone_number", "+44 (7700) 900-123", "").unwrap(), "+447700900123");
        assert_eq!(check("new_email", "A@Example.org", "").unwrap(), "a@example.org");
    }

    #[test]
    fn a_refusal_names_the_field_and_its_api_error_code() {
        let err = check("email", "a@b", "").unwrap_err();
        assert_eq!((err.field, err.code), ("email", "invalid_email"));
        assert!(err.message.starts_with("email \"a@b\" is not an address"), "{}", err.message);
        let err = check("phone_number", "07700 900123", "").unwrap_err();
        assert_eq!((err.field, err.code), ("phone_number", "invalid_phone_number"));
        assert_eq!(check("nickname", "x", "").unwrap_err().code, "invalid_request");
    }

    #[test]
    fn a_locale_is_normalised_like_the_request_field_and_nonsense_is_refused() {
        assert_eq!(check("locale", "PT_BR", "").unwrap(), "pt-BR");
        assert_eq!(check("locale", "spanish", "").unwrap_err().field, "locale");
    }

    #[test]
    fn the_country_allow_list_applies_as_it_does_at_login() {
        assert!(check("phone_number", "+33612345678", "1, 44").is_err());
        assert!(check("phone_number", "+447700900123", "1, +44").is_ok());
        assert!(check("phone_number", "+33612345678", "").is_ok());
        assert_eq!(calling_codes(" 1, +44 ,,"), vec!["1", "44"]);
    }
}
