//! Reading request bodies: media type, size cap (enforced while streaming), JSON, and the API's fields.

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::incoming::{BodyError, Incoming};
use crate::domain::{Email, Identifier, Locale, OtpCode, PhoneNumber, Token};

/// Largest accepted body. The real ones are well under 200 bytes.
pub const MAX_BODY_BYTES: usize = 4096;

/// The body as a JSON object, or the 4xx that explains why not.
pub async fn json_object(req: &Incoming) -> Result<Map<String, Value>, ApiError> {
    let content_type = req.header("Content-Type").unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req.header("Content-Length").and_then(|n| n.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    match req.body(MAX_BODY_BYTES).await {
        Ok(body) => parse_object(&body),
        Err(BodyError::TooLarge) => Err(ApiError::PayloadTooLarge),
        Err(BodyError::Unreadable) => Err(ApiError::MalformedJson),
    }
}

/// Strict JSON that must be an object: no trailing data, nesting bounded by serde_json's limit of 128, and no
/// repeated key (parsers disagree on which copy wins, so a proxy and this service could read different addresses).
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<UniqueKeys>(body) {
        Ok(UniqueKeys(object)) => Ok(object),
        Err(e) if e.is_syntax() || e.is_eof() => Err(ApiError::MalformedJson),
        Err(_) if body.trim_ascii_start().starts_with(b"{") => {
            Err(ApiError::InvalidRequest("Each field may appear only once in the request body."))
        }
        Err(_) => Err(ApiError::InvalidRequest("The request body must be a JSON object.")),
    }
}

/// A JSON object whose keys are all distinct.
struct UniqueKeys(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object with distinct keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<UniqueKeys, A::Error> {
                let mut object = Map::new();
                while let Some((key, value)) = entries.next_entry::<String, Value>()? {
                    if object.contains_key(&key) {
                        return Err(A::Error::custom("duplicate key"));
                    }
                    object.insert(key, value);
                }
                Ok(UniqueKeys(object))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A field that may be absent or null, and must otherwise be a string.
fn optional_string<'a>(
    body: &'a Map<String, Value>,
    field: &'static str,
    wrong_type: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::InvalidRequest(wrong_type)),
    }
}

/// Exactly one of `email` and `phone_number`, validated and normalised; phone numbers must carry one of
/// `calling_codes` when that list is not empty.
pub fn identifier(body: &Map<String, Value>, calling_codes: &[String]) -> Result<Identifier, ApiError> {
    let email = optional_string(body, "email", "`email` must be a string.")?;
    let phone = optional_string(body, "phone_number", "`phone_number` must be a string.")?;
    match (email, phone) {
        (Some(email), None) => Email::parse(email).map(Identifier::Email).map_err(ApiError::InvalidEmail),
        (None, Some(phone)) => PhoneNumber::parse_allowed(phone, calling_codes)
            .map(Identifier::Phone)
            .map_err(ApiError::InvalidPhoneNumber),
        (Some(_), Some(_)) => Err(ApiError::InvalidRequest("Send either `email` or `phone_number`, not both.")),
        (None, None) => Err(ApiError::InvalidRequest("Send `email` or `phone_number`.")),
    }
}

/// The optional `locale` (a short BCP 47 tag such as `es` or `pt-BR`) the message should be written in.
pub fn locale(body: &Map<String, Value>) -> Result<Option<Locale>, ApiError> {
    const INVALID: &str = "`locale` must be a language tag such as en, es or pt-BR.";
    optional_string(body, "locale", INVALID)?
        .map(|tag| Locale::parse(tag).map_err(|_| ApiError::InvalidRequest(INVALID)))
        .transpose()
}

/// The required `otp_code`: a string of six digits.
pub fn otp_code(body: &Map<String, Value>) -> Result<OtpCode, ApiError> {
    match body.get("otp_code") {
        None | Some(Value::Null) => Err(ApiError::InvalidRequest("Send the code as `otp_code`.")),
        Some(Value::String(code)) => OtpCode::parse(code.trim()).map_err(|_| ApiError::InvalidOtpFormat),
        Some(_) => Err(ApiError::InvalidOtpFormat),
    }
}

/// The required `refresh_token`: a string; `None` when it cannot be a token this service issued (it is then as
/// dead as an unknown one, and answered the same way).
pub fn refresh_token(body: &Map<String, Value>) -> Result<Option<Token>, ApiError> {
    match body.get("refresh_token") {
        None | Some(Value::Null) => Err(ApiError::InvalidRequest("Send the refresh token as `refresh_token`.")),
        Some(Value::String(token)) => Ok(Token::parse(token.trim()).ok()),
        Some(_) => Err(ApiError::InvalidRequest("`refresh_token` must be a string.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn exactly_one_identifier_is_required() {
        assert!(identifier(&object(json!({"email": "A@Example.com"})), &[]).is_ok());
        assert!(identifier(&object(json!({"phone_number": "+1234567890", "email": null})), &[]).is_ok());
        assert!(matches!(identifier(&object(json!({})), &[]), Err(ApiError::InvalidRequest(_))));
        let both = object(json!({"email": "a@example.com", "phone_number": "+1234567890"}));
        assert!(matches!(identifier(&both, &[]), Err(ApiError::InvalidRequest(_))));
    }

    #[test]
    fn identifiers_of_the_wrong_type_or_form_are_refused() {
        assert!(matches!(identifier(&object(json!({"email": 5})), &[]), Err(ApiError::InvalidRequest(_))));
        assert!(matches!(identifier(&object(json!({"email": ["a@b.co"]})), &[]), Err(ApiError::InvalidRequest(_))));
        assert!(matches!(identifier(&object(json!({"email": "nope"})), &[]), Err(ApiError::InvalidEmail(_))));
        assert!(matches!(
            identifier(&object(json!({"phone_number": "12"})), &[]),
            Err(ApiError::InvalidPhoneNumber(_))
        ));
    }

    #[test]
    fn the_body_must_be_one_json_object_with_distinct_keys() {
        assert!(parse_object(br#" {"email": "a@example.com", "extra": {"x": 1}} "#).is_ok());
        assert_eq!(parse_object(br#"{"email": "a@example.com""#), Err(ApiError::MalformedJson));
        assert_eq!(parse_object(br#"{"email": "a@example.com"} {}"#), Err(ApiError::MalformedJson));
        assert_eq!(parse_object(b""), Err(ApiError::MalformedJson));
        assert!(matches!(parse_object(b"[1]"), Err(ApiError::InvalidRequest(m)) if m.contains("object")));
        assert!(matches!(parse_object(b"\"a@example.com\""), Err(ApiError::InvalidRequest(m)) if m.contains("object")));
        let duplicate = br#"{"email": "a@example.com", "email": "b@example.com"}"#;
        assert!(matches!(parse_object(duplicate), Err(ApiError::InvalidRequest(m)) if m.contains("once")));
    }

    #[test]
    fn a_refresh_token_must_be_a_string_and_a_malformed_one_is_no_token() {
        let token = "0a".repeat(32);
        assert!(refresh_token(&object(json!({"refresh_token": token}))).unwrap().is_some());
        assert!(refresh_token(&object(json!({"refresh_token": "short"}))).unwrap().is_none());
        assert!(matches!(refresh_token(&object(json!({}))), Err(ApiError::InvalidRequest(_))));
        assert!(matches!(refresh_token(&object(json!({"refresh_token": 7}))), Err(ApiError::InvalidRequest(_))));
    }

    #[test]
    fn the_locale_is_optional_and_otherwise_a_short_language_tag() {
        assert_eq!(locale(&object(json!({}))).unwrap(), None);
        assert_eq!(locale(&object(json!({"locale": null}))).unwrap(), None);
        assert_eq!(locale(&object(json!({"locale": "es-MX"}))).unwrap().unwrap().language(), "es");
        for bad in [json!("spanish"), json!(""), json!(7), json!(["es"]), json!("es;q=1")] {
            assert!(matches!(locale(&object(json!({"locale": bad}))), Err(ApiError::InvalidRequest(_))));
        }
    }

    #[test]
    fn the_code_must_be_a_string_of_six_digits() {
        assert!(otp_code(&object(json!({"otp_code": "012345"}))).is_ok());
        assert_eq!(otp_code(&object(json!({"otp_code": 123456}))).unwrap_err(), ApiError::InvalidOtpFormat);
        assert_eq!(otp_code(&object(json!({"otp_code": "12 345"}))).unwrap_err(), ApiError::InvalidOtpFormat);
        assert!(matches!(otp_code(&object(json!({}))), Err(ApiError::InvalidRequest(_))));
    }
}
