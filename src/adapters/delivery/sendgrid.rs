//! SendGrid (Twilio SendGrid) v3 Mail Send: `POST /v3/mail/send` with a Bearer API key and a JSON body of
//! personalizations, sender and content parts. It answers 202 with no body.

use super::{split_sender, JsonObject, ProviderRequest, Setup};
use crate::login::Message;

pub const NAME: &str = "sendgrid";
pub const DEFAULT_API_BASE: &str = "https://api.sendgrid.com";

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "SENDGRID_API_BASE",
    settings: &["SENDGRID_API_KEY", "EMAIL_FROM"],
    optional: &[],
    default_api_base: |_| DEFAULT_API_BASE.into(),
    build: |api_base, values, message, _| {
        let [api_key, from] = values.try_into().ok()?;
        Some(SendGrid { api_base, api_key, from }.request(message))
    },
};

pub struct SendGrid {
    pub api_base: String,
    pub api_key: String,
    /// The sender, e.g. `CRM <login@example.com>`.
    pub from: String,
}

impl SendGrid {
    pub fn request(&self, message: &Message) -> ProviderRequest {
        let (name, address) = split_sender(&self.from);
        let mut from = JsonObject::new().text("email", address);
        if let Some(name) = name {
            from = from.text("name", name);
        }
        let to = JsonObject::new().text("email", message.to.value()).finish();
        let part = |kind: &str, value: &str| JsonObject::new().text("type", kind).text("value", value).finish();
        let body = JsonObject::new()
            .raw("personalizations", &format!("[{{\"to\":[{to}]}}]"))
            .raw("from", &from.finish())
            .text("subject", &message.subject)
            // SendGrid requires text/plain first, then text/html.
            .raw("content", &format!("[{},{}]", part("text/plain", &message.text), part("text/html", &message.html)));
        ProviderRequest::new(&self.api_base, "/v3/mail/send", "application/json", body.finish())
            .header("Authorization", format!("Bearer {}", self.api_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_sendgrids_mail_send_call() {
        let sendgrid = SendGrid {
            api_base: "http://127.0.0.1:9".into(),
            api_key: "SG.key".into(),
            from: "CRM <login@example.com>".into(),
        };
        let request = sendgrid.request(&sample("a@example.com"));
        assert_eq!(request.url, "http://127.0.0.1:9/v3/mail/send");
        assert!(request.headers.contains(&("Authorization", "Bearer SG.key".into())));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["personalizations"], serde_json::json!([{ "to": [{ "email": "a@example.com" }] }]));
        assert_eq!(body["from"], serde_json::json!({ "email": "login@example.com", "name": "CRM" }));
        assert_eq!(body["content"][0]["type"], "text/plain");
        assert!(body["content"][1]["value"].as_str().unwrap().contains("123456"));
    }
}
