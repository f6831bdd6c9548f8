//! Validates and normalises the identifiers the admin command (`scripts/admin.mjs`) is about to store, with the very
//! `Email::parse`, `PhoneNumber::parse_allowed` and `Locale::parse` the service applies to requests, so that an
//! administrator can never store an address, a number or a language the service would read differently or refuse.
//!
//!     admin-check [--email E] [--new-email E] [--phone P] [--allowed-country-codes 1,44] [--locale L]
//!
//! Prints one JSON object on stdout: the normalised values (`{"email", "new_email", "phone_number", "locale"}`,
//! only the fields given) and exits 0, or `{"error": {"field", "code", "message"}}` and exits 1. A usage mistake
//! exits 2. A host tool only: it is a separate binary target, so nothing of it reaches the worker's wasm.

use std::process::ExitCode;

use edge_otp_login::domain::{Email, EmailError, Locale, PhoneNumber, PhoneNumberError};
use serde_json::{json, Map, Value};

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

fn invalid(field: &str, code: &str, value: &str, problem: &str) -> Value {
    json!({ "error": { "field": field, "code": code, "message": format!("{field} {value:?} {problem}") } })
}

/// The normalised fields, or the first invalid one as an error object.
fn check(args: &[(String, String)]) -> Result<Value, Value> {
    let calling_codes: Vec<String> = args
        .iter()
        .filter(|(flag, _)| flag == "--allowed-country-codes")
        .flat_map(|(_, list)| list.split(','))
        .map(|code| code.trim().trim_start_matches('+').to_owned())
        .filter(|code| !code.is_empty())
        .collect();
    let mut out = Map::new();
    for (flag, value) in args {
        match flag.as_str() {
            "--email" | "--new-email" => {
                let field = if flag == "--email" { "email" } else { "new_email" };
                let email =
                    Email::parse(value).map_err(|e| invalid(field, "invalid_email", value, email_problem(e)))?;
                out.insert(field.into(), email.as_str().into());
            }
            "--locale" => {
                let problem = "is not a language tag such as en, es-MX or pt-BR";
                let locale = Locale::parse(value).map_err(|_| invalid("locale", "invalid_request", value, problem))?;
                out.insert("locale".into(), locale.as_str().into());
            }
            "--phone" => {
                let phone = PhoneNumber::parse_allowed(value, &calling_codes)
                    .map_err(|e| invalid("phone_number", "invalid_phone_number", value, phone_problem(e)))?;
                out.insert("phone_number".into(), phone.as_str().into());
            }
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

fn main() -> ExitCode {
    const FLAGS: [&str; 5] = ["--email", "--new-email", "--phone", "--allowed-country-codes", "--locale"];
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Vec::new();
    let mut iter = raw.into_iter();
    while let Some(flag) = iter.next() {
        match iter.next() {
            Some(value) if FLAGS.contains(&flag.as_str()) => args.push((flag, value)),
            _ => {
                eprintln!(
                    "usage: admin-check [--email E] [--new-email E] [--phone P] [--allowed-country-codes 1,44] [--locale L]"
                );
                return ExitCode::from(2);
            }
        }
    }
    match check(&args) {
        Ok(normalised) => {
            println!("{normalised}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(f, v)| ((*f).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn identifiers_are_normalised_exactly_as_the_service_does() {
        let out = check(&pairs(&[("--email", " Jane.Doe@Example.COM "), ("--phone", "+44 (7700) 900-123")])).unwrap();
        assert_eq!(out, json!({ "email": "jane.doe@example.com", "phone_number": "+447700900123" }));
    }

    #[test]
    fn the_first_invalid_field_is_named_with_its_api_error_code() {
        let err = check(&pairs(&[("--email", "a@b"), ("--phone", "+1234567890")])).unwrap_err();
        assert_eq!(err["error"]["field"], "email");
        assert_eq!(err["error"]["code"], "invalid_email");
        let err = check(&pairs(&[("--phone", "07700 900123")])).unwrap_err();
        assert_eq!(err["error"]["code"], "invalid_phone_number");
    }

    #[test]
    fn a_locale_is_normalised_like_the_request_field_and_nonsense_is_refused() {
        let out = check(&pairs(&[("--locale", "PT_BR")])).unwrap();
        assert_eq!(out, json!({ "locale": "pt-BR" }));
        assert_eq!(check(&pairs(&[("--locale", "spanish")])).unwrap_err()["error"]["field"], "locale");
    }

    #[test]
    fn the_country_allow_list_applies_as_it_does_at_login() {
        let list = ("--allowed-country-codes", "1, 44");
        assert!(check(&pairs(&[list, ("--phone", "+33612345678")])).is_err());
        assert!(check(&pairs(&[list, ("--phone", "+447700900123")])).is_ok());
        assert!(check(&pairs(&[("--phone", "+33612345678")])).is_ok());
    }
}
