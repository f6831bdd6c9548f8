//! Mailgun: `POST /v3/{domain}/messages`, HTTP Basic auth with the user `api` and the API key, a form body.
//! EU domains use the API root `https://api.eu.mailgun.net`.

use super::{basic_auth, ProviderRequest, Setup};
use crate::login::Message;

pub const NAME: &str = "mailgun";
pub const DEFAULT_API_BASE: &str = "https://api.mailgun.net";

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "MAILGUN_API_BASE",
    settings: &["MAILGUN_API_KEY", "MAILGUN_DOMAIN", "EMAIL_FROM"],
    optional: &[],
    default_api_base: |_| DEFAULT_API_BASE.into(),
    build: |api_base, values, message, _| {
        let [api_key, domain, from] = values.try_into().ok()?;
        Some(Mailgun { api_base, api_key, domain, from }.request(message))
    },
};

pub struct Mailgun {
    pub api_base: String,
    pub api_key: String,
    /// The sending domain configured in Mailgun, e.g. `mg.example.com`.
    pub domain: String,
    pub from: String,
}

impl Mailgun {
    pub fn request(&self, message: &Message) -> ProviderRequest {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &self.from)
            .append_pair("to", message.to.value())
            .append_pair("subject", &message.subject)
            .append_pair("text", &message.text)
            .append_pair("html", &message.html)
            .finish();
        let path = format!("/v3/{}/messages", self.domain);
        ProviderRequest::new(&self.api_base, &path, "application/x-www-form-urlencoded", body)
            .header("Authorization", basic_auth("api", &self.api_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_mailguns_messages_call() {
        let mailgun = Mailgun {
            api_base: "http://127.0.0.1:9".into(),
            api_key: "key-1".into(),
            domain: "mg.example.com".into(),
            from: "CRM <login@mg.example.com>".into(),
        };
        let request = mailgun.request(&sample("a@example.com"));
        assert_eq!(request.url, "http://127.0.0.1:9/v3/mg.example.com/messages");
        assert!(request.headers.contains(&("Authorization", "Basic YXBpOmtleS0x".into())));
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(request.body.as_bytes()).into_owned().collect();
        assert!(fields.contains(&("to".into(), "a@example.com".into())));
        assert!(fields.contains(&("from".into(), "CRM <login@mg.example.com>".into())));
        assert!(fields.iter().any(|(k, v)| k == "html" && v.contains("123456")));
    }
}
