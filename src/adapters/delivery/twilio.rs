//! Twilio: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth, a form-encoded body.

use super::{basic_auth, ProviderRequest, Setup};
use crate::login::Message;

pub const NAME: &str = "twilio";
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "TWILIO_API_BASE",
    settings: &["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"],
    optional: &[],
    default_api_base: |_| DEFAULT_API_BASE.into(),
    build: |api_base, values, message, _| {
        let [account_sid, auth_token, from_number] = values.try_into().ok()?;
        Some(Twilio { api_base, account_sid, auth_token, from_number }.request(message))
    },
};

pub struct Twilio {
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: String,
    /// The sending number in E.164.
    pub from_number: String,
}

impl Twilio {
    pub fn request(&self, message: &Message) -> ProviderRequest {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("To", message.to.value())
            .append_pair("From", &self.from_number)
            .append_pair("Body", &message.text)
            .finish();
        let path = format!("/2010-04-01/Accounts/{}/Messages.json", self.account_sid);
        ProviderRequest::new(&self.api_base, &path, "application/x-www-form-urlencoded", body)
            .header("Authorization", basic_auth(&self.account_sid, &self.auth_token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_twilios_messages_call() {
        let twilio = Twilio {
            api_base: "http://127.0.0.1:9".into(),
            account_sid: "AC123".into(),
            auth_token: "secret".into(),
            from_number: "+15005550006".into(),
        };
        let request = twilio.request(&sample("+1234567890"));
        assert_eq!(request.url, "http://127.0.0.1:9/2010-04-01/Accounts/AC123/Messages.json");
        assert!(request.headers.contains(&("Authorization", "Basic QUMxMjM6c2VjcmV0".into())));
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(request.body.as_bytes()).into_owned().collect();
        assert!(fields.contains(&("To".into(), "+1234567890".into())));
        assert!(fields.contains(&("From".into(), "+15005550006".into())));
        assert!(fields.iter().any(|(k, v)| k == "Body" && v.contains("123456")));
    }
}
