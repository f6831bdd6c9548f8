//! Resend: `POST /emails` with a Bearer API key and a JSON body.

use super::{quote, JsonObject, ProviderRequest, Setup};
use crate::login::Message;

pub const NAME: &str = "resend";
pub const DEFAULT_API_BASE: &str = "https://api.resend.com";

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "RESEND_API_BASE",
    settings: &["RESEND_API_KEY", "EMAIL_FROM"],
    optional: &[],
    default_api_base: |_| DEFAULT_API_BASE.into(),
    build: |api_base, values, message, _| {
        let [api_key, from] = values.try_into().ok()?;
        Some(Resend { api_base, api_key, from }.request(message))
    },
};

pub struct Resend {
    pub api_base: String,
    pub api_key: String,
    /// The sender, e.g. `CRM <login@example.com>`.
    pub from: String,
}

impl Resend {
    pub fn request(&self, message: &Message) -> ProviderRequest {
        let body = JsonObject::new()
            .text("from", &self.from)
            .raw("to", &format!("[{}]", quote(message.to.value())))
            .text("subject", &message.subject)
            .text("text", &message.text)
            .text("html", &message.html);
        ProviderRequest::new(&self.api_base, "/emails", "application/json", body.finish())
            .header("Authorization", format!("Bearer {}", self.api_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_resends_emails_call() {
        let resend = Resend {
            api_base: "http://127.0.0.1:9/".into(),
            api_key: "re_test".into(),
            from: "CRM <login@example.com>".into(),
        };
        let request = resend.request(&sample("a@example.com"));
        assert_eq!(request.url, "http://127.0.0.1:9/emails");
        assert!(request.headers.contains(&("Authorization", "Bearer re_test".into())));
        assert!(request.headers.iter().any(|(name, _)| *name == "User-Agent"));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["to"], serde_json::json!(["a@example.com"]));
        assert_eq!(body["from"], "CRM <login@example.com>");
        assert!(body["subject"].as_str().unwrap().starts_with("123456"));
        assert!(body["text"].as_str().unwrap().contains("123456"));
        assert!(body["html"].as_str().unwrap().contains("123456"));
    }
}
