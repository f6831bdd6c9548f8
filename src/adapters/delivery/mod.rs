//! Email and SMS delivery through the providers' HTTP APIs. Each provider turns a [`Message`] into the exact
//! request its API expects ([`ProviderRequest`], testable on the host); [`Delivery`] sends it with `fetch`.

mod console;
mod resend;
mod twilio;

use worker::wasm_bindgen::JsValue;
use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

pub use console::Console;
pub use resend::Resend;
pub use twilio::Twilio;

use crate::domain::Channel;
use crate::login::{DeliveryError, Message, Notifier};

/// Sent on every provider call: Resend refuses requests without a `User-Agent` (403), and workerd's `fetch` sets none.
pub const USER_AGENT: &str = concat!("edge-otp-login/", env!("CARGO_PKG_VERSION"));

/// An outgoing provider API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// An email provider name accepted in `EMAIL_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProvider {
    Resend,
    Console,
}

/// An SMS provider name accepted in `SMS_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsProvider {
    Twilio,
    Console,
}

impl EmailProvider {
    pub fn parse(name: &str) -> Option<EmailProvider> {
        match name.trim().to_ascii_lowercase().as_str() {
            resend::NAME => Some(EmailProvider::Resend),
            console::NAME => Some(EmailProvider::Console),
            _ => None,
        }
    }
}

impl SmsProvider {
    pub fn parse(name: &str) -> Option<SmsProvider> {
        match name.trim().to_ascii_lowercase().as_str() {
            twilio::NAME => Some(SmsProvider::Twilio),
            console::NAME => Some(SmsProvider::Console),
            _ => None,
        }
    }
}

/// Routes each message to the configured provider for its channel. Credentials are read from the environment
/// only when a message is sent, so a channel without credentials fails its own deliveries (recorded as
/// `delivery_failed`) and nothing else.
pub struct Delivery {
    pub email: EmailProvider,
    pub sms: SmsProvider,
    pub env: Env,
}

impl Delivery {
    fn secret(&self, provider: &'static str, name: &'static str) -> Result<String, DeliveryError> {
        setting(&self.env, name)
            .ok_or_else(|| DeliveryError { provider, reason: format!("configuration: {name} is not set") })
    }

    fn api_base(&self, name: &'static str, default: &str) -> String {
        setting(&self.env, name).unwrap_or_else(|| default.to_owned())
    }

    fn resend(&self) -> Result<Resend, DeliveryError> {
        Ok(Resend {
            api_base: self.api_base("RESEND_API_BASE", resend::DEFAULT_API_BASE),
            api_key: self.secret(resend::NAME, "RESEND_API_KEY")?,
            from: self.secret(resend::NAME, "EMAIL_FROM")?,
        })
    }

    fn twilio(&self) -> Result<Twilio, DeliveryError> {
        Ok(Twilio {
            api_base: self.api_base("TWILIO_API_BASE", twilio::DEFAULT_API_BASE),
            account_sid: self.secret(twilio::NAME, "TWILIO_ACCOUNT_SID")?,
            auth_token: self.secret(twilio::NAME, "TWILIO_AUTH_TOKEN")?,
            from_number: self.secret(twilio::NAME, "TWILIO_FROM_NUMBER")?,
        })
    }
}

/// A non-empty var or secret.
pub fn setting(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string()).filter(|v| !v.trim().is_empty())
}

impl Notifier for Delivery {
    async fn send(&self, message: &Message) -> Result<(), DeliveryError> {
        match message.to.channel() {
            Channel::Email => match self.email {
                EmailProvider::Resend => post(resend::NAME, self.resend()?.request(message)).await,
                EmailProvider::Console => {
                    Console.print(message);
                    Ok(())
                }
            },
            Channel::Sms => match self.sms {
                SmsProvider::Twilio => post(twilio::NAME, self.twilio()?.request(message)).await,
                SmsProvider::Console => {
                    Console.print(message);
                    Ok(())
                }
            },
        }
    }
}

/// Sends `request` as a POST and maps any non-2xx answer to a [`DeliveryError`] carrying the provider's reason.
async fn post(provider: &'static str, request: ProviderRequest) -> Result<(), DeliveryError> {
    let failed = |reason: String| DeliveryError { provider, reason };
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value).map_err(|e| failed(e.to_string()))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&request.body)));
    let outgoing = Request::new_with_init(&request.url, &init).map_err(|e| failed(e.to_string()))?;
    let mut response = Fetch::Request(outgoing).send().await.map_err(|e| failed(format!("network: {e}")))?;
    let status = response.status_code();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(failed(format!("HTTP {status}: {}", error_reason(&body))))
}

/// The `message` field both Resend and Twilio put in their error bodies, or a bounded excerpt of the body.
fn error_reason(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_bodies_yield_their_message() {
        assert_eq!(
            error_reason(r#"{"statusCode":422,"message":"Invalid `to` field","name":"validation_error"}"#),
            "Invalid `to` field"
        );
        assert_eq!(
            error_reason(r#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#),
            "Invalid 'To' Phone Number"
        );
        assert_eq!(error_reason("Bad Gateway"), "Bad Gateway");
    }
}
