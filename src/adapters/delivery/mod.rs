//! Email and SMS delivery through the providers' HTTP APIs. Each provider turns a [`Message`] into the exact
//! request its API expects ([`ProviderRequest`], built purely and tested on the host); [`Delivery`] sends it with
//! `fetch`, trying the channel's providers in the configured order until one accepts.

mod console;
mod encoding;
mod mailgun;
mod plivo;
mod postmark;
mod reason;
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

use futures_util::future::{select, Either};
use worker::wasm_bindgen::JsValue;
use worker::{web_sys, AbortController, Delay, Env, Fetch, Headers};

use crate::adapters::runtime::WorkerClock;
use crate::domain::{Channel, UnixTime};
use crate::login::{Clock, DeliveryError, DeliveryReport, Message, Notifier};
use console::Console;
pub use encoding::{basic_auth, quote, split_sender, JsonObject};
pub use reason::error_reason;

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

/// Sends `request` as a POST, giving up after [`PROVIDER_TIMEOUT`], and maps any non-2xx answer to a
/// [`DeliveryError`] carrying the provider's reason.
async fn post(provider: &'static str, request: ProviderRequest) -> Result<(), DeliveryError> {
    let failed = |reason: String| DeliveryError { provider, reason };
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value).map_err(|e| failed(format!("request: {e}")))?;
    }
    // The runtime's own `RequestInit`: workers-rs's converts its `cf` options through serde on every call, which
    // cost the wasm more than this whole function.
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers.0);
    init.set_body(&JsValue::from_str(&request.body));
    let outgoing = web_sys::Request::new_with_str_and_init(&request.url, &init)
        .map_err(|e| failed(format!("request: {}", worker::Error::from(e))))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = async {
        let mut response = Fetch::Request(outgoing.into())
            .send_with_signal(&signal)
            .await
            .map_err(|e| failed(format!("network: {e}")))?;
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
mod tests;
