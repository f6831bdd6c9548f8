//! Postmark: `POST /email` with the server token in `X-Postmark-Server-Token` and a JSON body.

use super::{JsonObject, ProviderRequest, Setup};
use crate::login::Message;

pub const NAME: &str = "postmark";
pub const DEFAULT_API_BASE: &str = "https://api.postmarkapp.com";
/// Postmark's default transactional stream.
pub const DEFAULT_STREAM: &str = "outbound";

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "POSTMARK_API_BASE",
    settings: &["POSTMARK_SERVER_TOKEN", "EMAIL_FROM"],
    optional: &[("POSTMARK_MESSAGE_STREAM", DEFAULT_STREAM)],
    default_api_base: |_| DEFAULT_API_BASE.into(),
    build: |api_base, values, message, _| {
        let [server_token, from, message_stream] = values.try_into().ok()?;
        Some(Postmark { api_base, server_token, from, message_stream }.request(message))
    },
};

pub struct Postmark {
    pub api_base: String,
    pub server_token: String,
    pub from: String,
    pub message_stream: String,
}

impl Postmark {
    pub fn request(&self, message: &Message) -> ProviderRequest {
        let body = JsonObject::new()
            .text("From", &self.from)
            .text("To", message.to.value())
            .text("Subject", &message.subject)
            .text("TextBody", &message.text)
            .text("HtmlBody", &message.html)
            .text("MessageStream", &self.message_stream);
        ProviderRequest::new(&self.api_base, "/email", "application/json", body.finish())
            .header("X-Postmark-Server-Token", self.server_token.clone())
            .header("Accept", "application/json".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_postmarks_email_call() {
        let postmark = Postmark {
            api_base: "http://127.0.0.1:9".into(),
            server_token: "server-token".into(),
            from: "CRM <login@example.com>".into(),
            message_stream: DEFAULT_STREAM.into(),
        };
        let request = postmark.request(&sample("a@example.com"));
        assert_eq!(request.url, "http://127.0.0.1:9/email");
        assert!(request.headers.contains(&("X-Postmark-Server-Token", "server-token".into())));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!((body["To"].as_str(), body["MessageStream"].as_str()), (Some("a@example.com"), Some("outbound")));
        assert!(body["TextBody"].as_str().unwrap().contains("123456"));
    }
}
