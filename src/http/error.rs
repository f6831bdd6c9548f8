//! The one error vocabulary of the API: every failure a client can see, with its status, stable code and message.

use serde_json::{json, Map, Value};

use super::answer::Answer;
use crate::domain::{EmailError, PhoneNumberError, Seconds};
use crate::login::{AuthError, InternalError, LoginError, Refusal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the body is not JSON (syntax, truncation, nesting deeper than the parser allows).
    MalformedJson,
    /// 400: valid JSON of the wrong shape (not an object, missing or conflicting fields, wrong types).
    InvalidRequest(&'static str),
    /// 400: `email` is not an address the service accepts.
    InvalidEmail(EmailError),
    /// 400: `phone_number` cannot be read as E.164.
    InvalidPhoneNumber(PhoneNumberError),
    /// 400: `otp_code` is not six digits.
    InvalidOtpFormat,
    /// 400: wrong, expired, used or never-issued code.
    OtpInvalid { attempts_remaining: u32 },
    /// 401: no token was presented.
    NotAuthenticated,
    /// 401: the token is malformed, expired or logged out.
    InvalidToken,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists with another method.
    MethodNotAllowed { allow: &'static str },
    /// 413: the body is larger than [`super::body::MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// 415: the body is not declared as `application/json`.
    UnsupportedMediaType,
    /// 429: a per-IP limit or the per-identifier hourly cap.
    RateLimited { retry_after: Seconds },
    /// 429: a code was sent to this identifier moments ago.
    ResendCooldown { retry_after: Seconds },
    /// 429: too many wrong codes in a row for this account; the lockout ends after `retry_after`.
    OtpLocked { retry_after: Seconds },
    /// 429: so many wrong codes in a row that only an administrator can unlock the account; `Retry-After` says a
    /// day, the longest any lockout lasts.
    AccountLocked,
    /// 500: a fault in this service; the cause is logged where it is created, never sent.
    Internal,
    /// 502: gateway mode could not reach the origin (`ORIGIN_URL`); the cause is logged.
    OriginUnavailable,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::MalformedJson
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidEmail(_)
            | ApiError::InvalidPhoneNumber(_)
            | ApiError::InvalidOtpFormat
            | ApiError::OtpInvalid { .. } => 400,
            ApiError::NotAuthenticated | ApiError::InvalidToken => 401,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::RateLimited { .. }
            | ApiError::ResendCooldown { .. }
            | ApiError::OtpLocked { .. }
            | ApiError::AccountLocked => 429,
            ApiError::Internal => 500,
            ApiError::OriginUnavailable => 502,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson => "malformed_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidEmail(_) => "invalid_email",
            ApiError::InvalidPhoneNumber(_) => "invalid_phone_number",
            ApiError::InvalidOtpFormat => "invalid_otp_format",
            ApiError::OtpInvalid { .. } => "otp_invalid",
            ApiError::NotAuthenticated => "not_authenticated",
            ApiError::InvalidToken => "invalid_token",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::ResendCooldown { .. } => "resend_cooldown",
            ApiError::OtpLocked { .. } => "otp_locked",
            ApiError::AccountLocked => "account_locked",
            ApiError::Internal => "internal_error",
            ApiError::OriginUnavailable => "origin_unavailable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::MalformedJson => "The request body is not valid JSON.".into(),
            ApiError::InvalidRequest(why) => (*why).into(),
            ApiError::InvalidEmail(EmailError::Empty) => "Enter an email address.".into(),
            ApiError::InvalidEmail(EmailError::TooLong) => "The email address is too long.".into(),
            ApiError::InvalidEmail(EmailError::Malformed) => "Enter a valid email address.".into(),
            ApiError::InvalidPhoneNumber(PhoneNumberError::Empty) => "Enter a phone number.".into(),
            ApiError::InvalidPhoneNumber(PhoneNumberError::MissingCountryCode) => {
                "Enter the phone number in international format, starting with + and the country code.".into()
            }
            ApiError::InvalidPhoneNumber(PhoneNumberError::InvalidCharacter) => {
                "The phone number may contain only digits, spaces, dashes, dots, parentheses and a leading +.".into()
            }
            ApiError::InvalidPhoneNumber(PhoneNumberError::CountryNotAllowed) => {
                "Phone numbers with this country code are not accepted.".into()
            }
            ApiError::InvalidPhoneNumber(PhoneNumberError::WrongLength) => {
                "The phone number must have 7 to 15 digits including the country code.".into()
            }
            ApiError::InvalidOtpFormat => "The code must be 6 digits.".into(),
            ApiError::OtpInvalid { .. } => "Invalid or expired code.".into(),
            ApiError::NotAuthenticated => "Authentication credentials were not provided.".into(),
            ApiError::InvalidToken => "Invalid or expired token.".into(),
            ApiError::NotFound => "Not found.".into(),
            ApiError::MethodNotAllowed { allow } => format!("Method not allowed; use {allow}."),
            ApiError::PayloadTooLarge => "The request body is too large.".into(),
            ApiError::UnsupportedMediaType => "Send the request body as application/json.".into(),
            ApiError::RateLimited { retry_after } => {
                format!("Too many requests. Try again in {} seconds.", retry_after.get())
            }
            ApiError::ResendCooldown { retry_after } => {
                format!("A code was sent moments ago. You can ask for a new one in {} seconds.", retry_after.get())
            }
            ApiError::OtpLocked { retry_after } => {
                format!("Too many wrong codes. Try again in {} minutes.", retry_after.get().div_ceil(60))
            }
            ApiError::AccountLocked => "Too many wrong codes. Ask your administrator to unlock your account.".into(),
            ApiError::Internal => "Something went wrong on our side. Please try again.".into(),
            ApiError::OriginUnavailable => "The service behind this gateway did not answer. Please try again.".into(),
        }
    }

    fn retry_after(&self) -> Option<Seconds> {
        match self {
            ApiError::RateLimited { retry_after }
            | ApiError::ResendCooldown { retry_after }
            | ApiError::OtpLocked { retry_after } => Some(*retry_after),
            ApiError::AccountLocked => Some(Refusal::Held.retry_after()),
            _ => None,
        }
    }

    /// The JSON answer with its status and protocol headers (`Retry-After`, `WWW-Authenticate`, `Allow`).
    pub fn response(&self) -> Answer {
        let mut error = Map::new();
        error.insert("code".into(), self.code().into());
        error.insert("message".into(), self.message().into());
        if let ApiError::OtpInvalid { attempts_remaining } = self {
            error.insert("attempts_remaining".into(), (*attempts_remaining).into());
        }
        if let ApiError::OtpLocked { .. } | ApiError::AccountLocked = self {
            error.insert("attempts_remaining".into(), 0.into());
        }
        if let Some(seconds) = self.retry_after() {
            error.insert("retry_after_seconds".into(), seconds.get().into());
        }
        let mut answer = Answer::json(self.status(), &json!({ "error": Value::Object(error) }));
        if let Some(seconds) = self.retry_after() {
            answer.header("Retry-After", seconds.get().to_string());
        }
        match self {
            ApiError::NotAuthenticated => answer.header("WWW-Authenticate", "Token realm=\"api\""),
            ApiError::InvalidToken => answer.header("WWW-Authenticate", "Token realm=\"api\", error=\"invalid_token\""),
            ApiError::MethodNotAllowed { allow } => answer.header("Allow", *allow),
            _ => {}
        }
        answer
    }

    /// Logs an internal fault (never client data) and answers opaquely.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> ApiError {
        worker::console_error!("{context}: {cause}");
        ApiError::Internal
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let retry_after = refusal.retry_after();
        match refusal {
            Refusal::TooManyRequests { .. } | Refusal::HourlyCap { .. } => ApiError::RateLimited { retry_after },
            Refusal::Cooldown { .. } => ApiError::ResendCooldown { retry_after },
            Refusal::Locked { .. } => ApiError::OtpLocked { retry_after },
            Refusal::Held => ApiError::AccountLocked,
        }
    }
}

fn internal(error: InternalError) -> ApiError {
    ApiError::internal("login", &error)
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Refused(refusal) => refusal.into(),
            LoginError::InvalidCode { attempts_remaining } => ApiError::OtpInvalid { attempts_remaining },
            LoginError::Internal(e) => internal(e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => ApiError::NotAuthenticated,
            AuthError::Invalid => ApiError::InvalidToken,
            AuthError::Refused(refusal) => refusal.into(),
            AuthError::Internal(e) => internal(e),
        }
    }
}
