//! Property tests (proptest, a fuzzer with shrinking) over everything that parses client input: the body parser,
//! the field extractors and, through them, the email, phone and code normalisers. Run with `cargo test`; raise
//! `PROPTEST_CASES` for a longer fuzzing session.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::body::{identifier, otp_code, parse_object, MAX_BODY_BYTES};
use super::error::ApiError;
use crate::domain::{Email, Identifier, PhoneNumber, Token};

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// What the D1 schema's CHECK constraints demand of a stored phone number.
fn is_e164(phone: &str) -> bool {
    let digits = &phone[1..];
    phone.starts_with('+')
        && (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

proptest! {
    #[test]
    fn any_bytes_give_an_object_or_a_client_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        match parse_object(&bytes) {
            Ok(_) | Err(ApiError::MalformedJson) | Err(ApiError::InvalidRequest(_)) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed(depth in 100usize..20_000) {
        let body = format!("{{\"email\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        prop_assume!(body.len() <= MAX_BODY_BYTES * 10);
        let parsed = parse_object(body.as_bytes());
        prop_assert!(parsed.is_err() || identifier(&parsed.unwrap(), &[]).is_err());
    }

    #[test]
    fn any_email_field_is_accepted_only_in_stored_form(raw in any::<String>()) {
        if let Ok(Identifier::Email(email)) = identifier(&object(json!({ "email": raw })), &[]) {
            let stored = email.as_str();
            prop_assert_eq!(stored, stored.trim().to_ascii_lowercase());
            prop_assert!(stored.is_ascii() && stored.len() <= 254 && stored.contains('@'));
            prop_assert_eq!(Email::parse(stored), Ok(email.clone()), "normalising is idempotent");
            let _ = email.masked();
        }
    }

    #[test]
    fn any_phone_field_is_accepted_only_as_e164(raw in any::<String>()) {
        if let Ok(Identifier::Phone(phone)) = identifier(&object(json!({ "phone_number": raw })), &[]) {
            prop_assert!(is_e164(phone.as_str()), "{}", phone.as_str());
            prop_assert_eq!(PhoneNumber::parse(phone.as_str()), Ok(phone.clone()), "normalising is idempotent");
            let _ = phone.masked();
        }
    }

    #[test]
    fn formatted_international_numbers_normalise_to_their_digits(
        digits in "[1-9][0-9]{6,14}",
        separators in proptest::collection::vec(prop_oneof![Just(""), Just(" "), Just("-"), Just("."), Just("(")], 15),
        double_zero in any::<bool>(),
    ) {
        let mut raw = String::from(if double_zero { "00" } else { "+" });
        for (digit, separator) in digits.chars().zip(separators) {
            raw.push_str(separator);
            raw.push(digit);
        }
        let expected = format!("+{digits}");
        prop_assert_eq!(PhoneNumber::parse(&raw).map(|p| p.as_str().to_owned()), Ok(expected));
    }

    #[test]
    fn only_six_ascii_digits_are_a_code(raw in any::<String>()) {
        let accepted = otp_code(&object(json!({ "otp_code": raw }))).is_ok();
        let expected = raw.trim().len() == 6 && raw.trim().bytes().all(|b| b.is_ascii_digit());
        prop_assert_eq!(accepted, expected);
    }

    #[test]
    fn any_authorization_header_parses_without_panicking(raw in any::<String>()) {
        if let Ok(token) = Token::from_authorization(Some(&raw)) {
            prop_assert_eq!(token.expose().len(), 64);
        }
    }

    #[test]
    fn arbitrary_json_values_in_fields_never_panic(email in arb_json(), phone in arb_json(), code in arb_json()) {
        let body = object(json!({ "email": email, "phone_number": phone, "otp_code": code }));
        let _ = identifier(&body, &["1".to_owned()]);
        let _ = otp_code(&body);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::hash_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
