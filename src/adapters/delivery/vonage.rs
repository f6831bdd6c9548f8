//! Vonage Messages API: `POST /v1/messages`, HTTP Basic auth with the API key and secret, a JSON body with
//! `channel: sms`. Numbers are written without the leading `+`. It answers 202 with a `message_uuid`.

use super::{basic_auth, JsonObject, ProviderRequest, Setup};
use crate::login::Message;

pub const NAME: &str = "vonage";
pub const DEFAULT_API_BASE: &str = "https://api.nexmo.com";

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "VONAGE_API_BASE",
    settings: &["VONAGE_API_KEY", "VONAGE_API_SECRET", "VONAGE_FROM"],
    optional: &[],
    default_api_base: |_| DEFAULT_API_BASE.into(),
    build: |api_base, values, message, _| {
        let [api_key, api_secret, from] = values.try_into().ok()?;
        Some(Vonage { api_base, api_key, api_secret, from }.request(message))
    },
};

pub struct Vonage {
    pub api_base: String,
    pub api_key: String,
    pub api_secret: String,
    /// A Vonage number (E.164, with or without `+`) or an alphanumeric sender ID where the country allows it.
    pub from: String,
}

impl Vonage {
    pub fn request(&self, message: &Message) -> ProviderRequest {
        let body = JsonObject::new()
            .text("message_type", "text")
            .text("channel", "sms")
            .text("to", message.to.value().trim_start_matches('+'))
            .text("from", self.from.trim_start_matches('+'))
            .text("text", &message.text);
        ProviderRequest::new(&self.api_base, "/v1/messages", "application/json", body.finish())
            .header("Authorization", basic_auth(&self.api_key, &self.api_secret))
            .header("Accept", "application/json".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_vonages_messages_call() {
        let vonage = Vonage {
            api_base: "http://127.0.0.1:9".into(),
            api_key: "abcd1234".into(),
            api_secret: "s3cret".into(),
            from: "+447700900001".into(),
        };
        let request = vonage.request(&sample("+1234567890"));
        assert_eq!(request.url, "http://127.0.0.1:9/v1/messages");
        assert!(request.headers.contains(&("Authorization", "Basic YWJjZDEyMzQ6czNjcmV0".into())));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["to"], "1234567890");
        assert_eq!(body["from"], "447700900001");
        assert_eq!((body["channel"].as_str(), body["message_type"].as_str()), (Some("sms"), Some("text")));
        assert!(body["text"].as_str().unwrap().contains("123456"));
    }
}
