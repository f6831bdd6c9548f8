//! Email and SMS delivery through the providers' HTTP APIs. Each provider turns a [`Message`] into the exact
//! request its API expects ([`ProviderRequest`], built purely and tested on the host); [`Delivery`] sends it with
//! `fetch`, trying the channel's providers in the configured order until one accepts.

mod console;
mod mailgun;
mod plivo;
mod postmark;
mod resend;
mod sendgrid;
mod ses;
mod sigv4;
mod sns;
mod twilio;
mod vonage;

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use base64::Engine;
use futures_util::future::{select, Either};
use worker::wasm_bindgen::JsValue;
use worker::{AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit};

use crate::adapters::runtime::WorkerClock;
use crate::domain::{Channel, UnixTime};
use crate::login::{Clock, DeliveryError, DeliveryReport, Message, Notifier};
use console::Console;

/// Sent on every provider call: Resend refuses requests without a `User-Agent` (403), and workerd's `fetch` sets none.
pub const USER_AGENT: &str = concat!("edge-otp-login/", env!("CARGO_PKG_VERSION"));

/// How long one provider may take to answer before the next one is tried. Deliveries run in `ctx.wait_until`,
/// which the runtime ends 30 s after the response, so a failover list of three still completes.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(8);

/// An outgoing provider API call (always a POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl ProviderRequest {
    /// A POST of `body` (a `content_type` document) to `path` under `api_base`, carrying the [`USER_AGENT`] every
    /// provider call needs; providers add their authentication with [`ProviderRequest::header`].
    pub fn new(api_base: &str, path: &str, content_type: &str, body: String) -> ProviderRequest {
        ProviderRequest {
            url: format!("{}{path}", api_base.trim_end_matches('/')),
            headers: vec![("Content-Type", content_type.into()), ("User-Agent", USER_AGENT.into())],
            body,
        }
    }

    pub fn header(mut self, name: &'static str, value: String) -> ProviderRequest {
        self.headers.push((name, value));
        self
    }
}

/// An email provider name accepted in `EMAIL_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProvider {
    Resend,
    SendGrid,
    Mailgun,
    Postmark,
    Ses,
    Console,
}

/// An SMS provider name accepted in `SMS_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsProvider {
    Twilio,
    Vonage,
    Plivo,
    Sns,
    Console,
}

impl EmailProvider {
    pub const ALL: [EmailProvider; 6] = [
        EmailProvider::Resend,
        EmailProvider::SendGrid,
        EmailProvider::Mailgun,
        EmailProvider::Postmark,
        EmailProvider::Ses,
        EmailProvider::Console,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EmailProvider::Resend => resend::NAME,
            EmailProvider::SendGrid => sendgrid::NAME,
            EmailProvider::Mailgun => mailgun::NAME,
            EmailProvider::Postmark => postmark::NAME,
            EmailProvider::Ses => ses::NAME,
            EmailProvider::Console => console::NAME,
        }
    }
}

impl SmsProvider {
    pub const ALL: [SmsProvider; 5] =
        [SmsProvider::Twilio, SmsProvider::Vonage, SmsProvider::Plivo, SmsProvider::Sns, SmsProvider::Console];

    pub fn name(self) -> &'static str {
        match self {
            SmsProvider::Twilio => twilio::NAME,
            SmsProvider::Vonage => vonage::NAME,
            SmsProvider::Plivo => plivo::NAME,
            SmsProvider::Sns => sns::NAME,
            SmsProvider::Console => console::NAME,
        }
    }
}

/// Reads an ordered failover list such as `resend, postmark`: names from `all` (case-insensitive), each at most
/// once, at least one. The error names the offending entry and the accepted names.
pub fn provider_list<P: Copy + PartialEq>(
    spec: &str,
    all: &[P],
    name: fn(P) -> &'static str,
) -> Result<Vec<P>, String> {
    let mut list = Vec::new();
    for entry in spec.split(',').map(str::trim) {
        let known = all.iter().copied().find(|p| name(*p).eq_ignore_ascii_case(entry));
        match known {
            Some(p) if !list.contains(&p) => list.push(p),
            Some(_) => return Err(format!("{entry:?} is listed twice")),
            None => {
                let mut names = String::new();
                for p in all {
                    names.push_str(if names.is_empty() { "" } else { ", " });
                    names.push_str(name(*p));
                }
                return Err(format!("{entry:?} is not one of: {names}"));
            }
        }
    }
    Ok(list)
}

/// Routes each message to the channel's providers in order. Credentials are read from the environment only when
/// a provider is tried, so a provider without credentials fails its own attempts (recorded as `delivery_failed`)
/// and the next one is tried.
pub struct Delivery {
    pub email: Vec<EmailProvider>,
    pub sms: Vec<SmsProvider>,
    pub env: Env,
}

/// A non-empty var or secret.
pub fn setting(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string()).filter(|v| !v.trim().is_empty())
}

/// What a provider needs from the environment and how it turns that into its API request. One table entry per
/// provider (`<provider>::SETUP`) keeps the reading of settings in one place instead of once per provider.
pub struct Setup {
    pub name: &'static str,
    /// The var that overrides the API root.
    pub api_base_var: &'static str,
    /// Required secrets and vars, read in this order; a missing one fails the attempt.
    pub settings: &'static [&'static str],
    /// Optional vars and their defaults, read after `settings`.
    pub optional: &'static [(&'static str, &'static str)],
    /// The API root when `api_base_var` is not set, from the values read.
    pub default_api_base: fn(&[String]) -> String,
    /// The request from the API root, the values read (in order) and the time; `None` when the API root is not
    /// usable (SigV4 signs an absolute http(s) URL).
    pub build: fn(String, Vec<String>, &Message, UnixTime) -> Option<ProviderRequest>,
}

impl Delivery {
    /// The provider's request, or why it cannot be made (a missing setting, an unusable API root).
    fn request(&self, setup: &Setup, message: &Message) -> Result<ProviderRequest, DeliveryError> {
        let failed =
            |reason: String| DeliveryError { provider: setup.name, reason: format!("configuration: {reason}") };
        let mut values = Vec::with_capacity(setup.settings.len() + setup.optional.len());
        for name in setup.settings {
            values.push(setting(&self.env, name).ok_or_else(|| failed(format!("{name} is not set")))?);
        }
        for (name, default) in setup.optional {
            values.push(setting(&self.env, name).unwrap_or_else(|| (*default).to_owned()));
        }
        let api_base = setting(&self.env, setup.api_base_var).unwrap_or_else(|| (setup.default_api_base)(&values));
        (setup.build)(api_base, values, message, WorkerClock.now())
            .ok_or_else(|| failed(format!("{} is not an absolute http(s) URL without a query", setup.api_base_var)))
    }

    async fn attempt(&self, provider: Provider, message: &Message) -> Result<(), DeliveryError> {
        let setup = match provider {
            Provider::Email(EmailProvider::Console) | Provider::Sms(SmsProvider::Console) => {
                Console.print(message);
                return Ok(());
            }
            Provider::Email(EmailProvider::Resend) => &resend::SETUP,
            Provider::Email(EmailProvider::SendGrid) => &sendgrid::SETUP,
            Provider::Email(EmailProvider::Mailgun) => &mailgun::SETUP,
            Provider::Email(EmailProvider::Postmark) => &postmark::SETUP,
            Provider::Email(EmailProvider::Ses) => &ses::SETUP,
            Provider::Sms(SmsProvider::Twilio) => &twilio::SETUP,
            Provider::Sms(SmsProvider::Vonage) => &vonage::SETUP,
            Provider::Sms(SmsProvider::Plivo) => &plivo::SETUP,
            Provider::Sms(SmsProvider::Sns) => &sns::SETUP,
        };
        post(setup.name, self.request(setup, message)?).await
    }
}

/// One provider of either channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Email(EmailProvider),
    Sms(SmsProvider),
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::Email(p) => p.name(),
            Provider::Sms(p) => p.name(),
        }
    }
}

/// Tries `providers` in order until `attempt` succeeds; every failure before is kept, in order.
pub async fn failover<P, F>(
    providers: &[P],
    name: fn(P) -> &'static str,
    mut attempt: impl FnMut(P) -> F,
) -> DeliveryReport
where
    P: Copy,
    F: Future<Output = Result<(), DeliveryError>>,
{
    let mut report = DeliveryReport::default();
    for provider in providers.iter().copied() {
        match attempt(provider).await {
            Ok(()) => {
                report.delivered_by = Some(name(provider));
                break;
            }
            Err(failure) => report.failures.push(failure),
        }
    }
    report
}

impl Notifier for Delivery {
    async fn send(&self, message: &Message) -> DeliveryReport {
        let providers: Vec<Provider> = match message.to.channel() {
            Channel::Email => self.email.iter().copied().map(Provider::Email).collect(),
            Channel::Sms => self.sms.iter().copied().map(Provider::Sms).collect(),
        };
        failover(&providers, Provider::name, |provider| self.attempt(provider, message)).await
    }
}

/// A JSON object written field by field. Provider bodies are small; one non-generic builder compiles to much less
/// wasm than `serde_json::json!`, which expands a map insertion per field at every call site.
pub struct JsonObject(String);

impl JsonObject {
    pub fn new() -> JsonObject {
        JsonObject(String::from("{"))
    }

    /// Adds `key` with a string value.
    pub fn text(self, key: &str, value: &str) -> JsonObject {
        self.raw(key, &quote(value))
    }

    /// Adds `key` with `json`, which must already be valid JSON.
    pub fn raw(mut self, key: &str, json: &str) -> JsonObject {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&quote(key));
        self.0.push(':');
        self.0.push_str(json);
        self
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

impl Default for JsonObject {
    fn default() -> Self {
        JsonObject::new()
    }
}

/// `text` as a JSON string literal.
pub fn quote(text: &str) -> String {
    // Serialising a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// `Basic` credentials for an `Authorization` header.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Splits `CRM <login@example.com>` into its display name and address; a bare address has no name.
pub fn split_sender(from: &str) -> (Option<&str>, &str) {
    let from = from.trim();
    match (from.rfind('<'), from.strip_suffix('>')) {
        (Some(open), Some(inner)) => {
            let name = from[..open].trim().trim_matches('"').trim();
            ((!name.is_empty()).then_some(name), inner[open + 1..].trim())
        }
        _ => (None, from),
    }
}

/// Sends `request` as a POST, giving up after [`PROVIDER_TIMEOUT`], and maps any non-2xx answer to a
/// [`DeliveryError`] carrying the provider's reason.
async fn post(provider: &'static str, request: ProviderRequest) -> Result<(), DeliveryError> {
    let failed = |reason: String| DeliveryError { provider, reason };
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value).map_err(|e| failed(format!("request: {e}")))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&request.body)));
    let outgoing = Request::new_with_init(&request.url, &init).map_err(|e| failed(format!("request: {e}")))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = async {
        let mut response =
            Fetch::Request(outgoing).send_with_signal(&signal).await.map_err(|e| failed(format!("network: {e}")))?;
        let status = response.status_code();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(failed(format!("HTTP {status}: {}", error_reason(&body))))
    };
    // Bound to a local so the pinned futures, which borrow `signal`, are dropped before it (edition 2021 keeps a
    // tail expression's temporaries alive past the function's locals).
    let outcome = match select(pin!(exchange), pin!(Delay::from(PROVIDER_TIMEOUT))).await {
        Either::Left((outcome, _)) => outcome,
        Either::Right(((), _)) => {
            controller.abort();
            Err(failed(format!("timeout: no answer within {} s", PROVIDER_TIMEOUT.as_secs())))
        }
    };
    outcome
}

/// Longest provider reason kept for the log and the audit row.
const MAX_REASON: usize = 300;

/// The reason in a provider's error body: `errors[0].message` (SendGrid), `ErrorCode` and `Message` (Postmark),
/// `title` and `detail` (Vonage), `code` and `message` (Twilio, Resend, Mailgun, SES), `error` (Plivo), or
/// `<Code>` and `<Message>` (SNS's XML); otherwise a bounded excerpt of the body.
pub fn error_reason(body: &str) -> String {
    let reason = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(json) => json_reason(&json),
        Err(_) => xml_reason(body),
    };
    reason.unwrap_or_else(|| body.trim().to_owned()).chars().take(MAX_REASON).collect()
}

fn json_reason(json: &serde_json::Value) -> Option<String> {
    let text = |value: &serde_json::Value, key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let labelled = |code: Option<String>, message: Option<String>| match (code, message) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (None, Some(message)) => Some(message),
        (Some(code), None) => Some(code),
        (None, None) => None,
    };
    if let Some(first) = json.get("errors").and_then(|e| e.get(0)) {
        let message = text(first, "message").or_else(|| text(first, "description"));
        return labelled(text(first, "field"), message);
    }
    if let Some(code) = json.get("ErrorCode") {
        return labelled(Some(format!("ErrorCode {code}")), text(json, "Message"));
    }
    if json.get("title").is_some() {
        return labelled(text(json, "title"), text(json, "detail"));
    }
    let code = json.get("code").filter(|c| c.is_number() || c.is_string()).map(|c| c.to_string().replace('"', ""));
    labelled(code, text(json, "message").or_else(|| text(json, "Message")).or_else(|| text(json, "error")))
}

fn xml_reason(body: &str) -> Option<String> {
    let element = |name: &str| {
        let start = body.find(&format!("<{name}>"))? + name.len() + 2;
        let end = start + body[start..].find(&format!("</{name}>"))?;
        Some(body[start..end].trim().to_owned())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (code, message) => message.or(code),
    }
}

/// A message to `to` (an address or an E.164 number) carrying the code 123456, for the providers' tests.
#[cfg(test)]
pub(crate) fn sample(to: &str) -> Message {
    use crate::domain::{Email, Identifier, OtpCode, PhoneNumber};
    use crate::login::{Language, MessageSettings};
    let to = match to.strip_prefix('+') {
        Some(_) => Identifier::Phone(PhoneNumber::parse(to).unwrap()),
        None => Identifier::Email(Email::parse(to).unwrap()),
    };
    let settings = MessageSettings { app_name: "CRM".into(), ..MessageSettings::default() };
    Message::one_time_code(&settings, &to, &OtpCode::parse("123456").unwrap(), 10, Language::English)
}

#[cfg(test)]
mod tests {
    use crate::test_support::run;
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn each_providers_error_body_yields_a_clear_reason() {
        let cases = [
            (r#"{"statusCode":422,"message":"Invalid `to` field","name":"validation_error"}"#, "Invalid `to` field"),
            (r#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#, "21211: Invalid 'To' Phone Number"),
            (
                r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#,
                "from: The from address does not match a verified Sender Identity.",
            ),
            (r#"{"message":"Domain not found: mg.example.com"}"#, "Domain not found: mg.example.com"),
            (r#"{"ErrorCode":300,"Message":"Invalid email request"}"#, "ErrorCode 300: Invalid email request"),
            (r#"{"message":"Email address is not verified."}"#, "Email address is not verified."),
            (
                r#"{"type":"https://developer.vonage.com/api-errors#unauthorized","title":"Unauthorized","detail":"You did not provide correct credentials.","instance":"x"}"#,
                "Unauthorized: You did not provide correct credentials.",
            ),
            (r#"{"api_id":"97ceeb52","error":"authentication_failed"}"#, "authentication_failed"),
            (
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>Invalid parameter: PhoneNumber</Message></Error></ErrorResponse>",
                "InvalidParameter: Invalid parameter: PhoneNumber",
            ),
            ("Forbidden", "Forbidden"),
        ];
        for (body, reason) in cases {
            assert_eq!(error_reason(body), reason, "{body}");
        }
        assert_eq!(error_reason(&"x".repeat(1000)).len(), MAX_REASON);
    }

    #[test]
    fn provider_lists_are_ordered_distinct_known_names() {
        let list = provider_list(" Resend, postmark ,ses", &EmailProvider::ALL, EmailProvider::name).unwrap();
        assert_eq!(list, [EmailProvider::Resend, EmailProvider::Postmark, EmailProvider::Ses]);
        let sms = provider_list("plivo,twilio", &SmsProvider::ALL, SmsProvider::name).unwrap();
        assert_eq!(sms, [SmsProvider::Plivo, SmsProvider::Twilio]);
        assert!(provider_list("resend,resend", &EmailProvider::ALL, EmailProvider::name)
            .unwrap_err()
            .contains("twice"));
        let unknown = provider_list("resend,smtp", &EmailProvider::ALL, EmailProvider::name).unwrap_err();
        assert!(unknown.contains("\"smtp\"") && unknown.contains("sendgrid"), "{unknown}");
        assert!(provider_list("resend,", &EmailProvider::ALL, EmailProvider::name).is_err());
    }

    #[test]
    fn failover_tries_each_provider_in_order_until_one_accepts() {
        let tried = RefCell::new(Vec::new());
        let report = run(failover(&SmsProvider::ALL[..3], SmsProvider::name, |p| {
            tried.borrow_mut().push(p);
            let outcome = match p {
                SmsProvider::Vonage => Ok(()),
                _ => Err(DeliveryError { provider: p.name(), reason: "HTTP 500: down".into() }),
            };
            async move { outcome }
        }));
        assert_eq!(*tried.borrow(), [SmsProvider::Twilio, SmsProvider::Vonage], "plivo is never tried");
        assert_eq!(report.delivered_by, Some("vonage"));
        assert_eq!(report.failures, [DeliveryError { provider: "twilio", reason: "HTTP 500: down".into() }]);

        let none = run(failover(&SmsProvider::ALL[..2], SmsProvider::name, |p| {
            let failure = DeliveryError { provider: p.name(), reason: "timeout".into() };
            async move { Err(failure) }
        }));
        assert_eq!((none.delivered_by, none.failures.len()), (None, 2));
    }

    #[test]
    fn json_objects_are_written_with_escaped_keys_and_values() {
        let nested = JsonObject::new().text("a\"b", "line\n<tag> é").finish();
        let json = JsonObject::new().raw("n", &nested).text("s", "x").finish();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, serde_json::json!({ "n": { "a\"b": "line\n<tag> é" }, "s": "x" }));
        assert_eq!(JsonObject::new().finish(), "{}");
    }

    #[test]
    fn a_sender_is_split_into_name_and_address() {
        assert_eq!(split_sender("CRM <login@example.com>"), (Some("CRM"), "login@example.com"));
        assert_eq!(split_sender("\"CRM Login\" <login@example.com>"), (Some("CRM Login"), "login@example.com"));
        assert_eq!(split_sender("login@example.com"), (None, "login@example.com"));
        assert_eq!(split_sender("<login@example.com>"), (None, "login@example.com"));
    }
}
