//! Plivo: `POST /v1/Account/{auth_id}/Message/`, HTTP Basic auth with the Auth ID and token, a JSON body.
//! It answers 202 with `message_uuid`.

use super::{basic_auth, JsonObject, ProviderRequest, Setup};
use crate::login::Message;

pub const NAME: &str = "plivo";
pub const DEFAULT_API_BASE: &str = "https://api.plivo.com";

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "PLIVO_API_BASE",
    settings: &["PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN", "PLIVO_FROM_NUMBER"],
    optional: &[],
    default_api_base: |_| DEFAULT_API_BASE.into(),
    build: |api_base, values, message, _| {
        let [auth_id, auth_token, from] = values.try_into().ok()?;
        Some(Plivo { api_base, auth_id, auth_token, from }.request(message))
    },
};

pub struct Plivo {
    pub api_base: String,
    pub auth_id: String,
    pub auth_token: String,
    /// The sending number (E.164) or sender ID.
    pub from: String,
}

impl Plivo {
    pub fn request(&self, message: &Message) -> ProviderRequest {
        let body =
            JsonObject::new().text("src", &self.from).text("dst", message.to.value()).text("text", &message.text);
        let path = format!("/v1/Account/{}/Message/", self.auth_id);
        ProviderRequest::new(&self.api_base, &path, "application/json", body.finish())
            .header("Authorization", basic_auth(&self.auth_id, &self.auth_token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_plivos_message_call() {
        let plivo = Plivo {
            api_base: "http://127.0.0.1:9".into(),
            auth_id: "MAXXXXXXXXXXXXXXXXXX".into(),
            auth_token: "token".into(),
            from: "+14155550123".into(),
        };
        let request = plivo.request(&sample("+1234567890"));
        assert_eq!(request.url, "http://127.0.0.1:9/v1/Account/MAXXXXXXXXXXXXXXXXXX/Message/");
        assert!(request.headers.contains(&("Authorization", "Basic TUFYWFhYWFhYWFhYWFhYWFhYWFg6dG9rZW4=".into())));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!((body["src"].as_str(), body["dst"].as_str()), (Some("+14155550123"), Some("+1234567890")));
        assert!(body["text"].as_str().unwrap().contains("123456"));
    }
}
