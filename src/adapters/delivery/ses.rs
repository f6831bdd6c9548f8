//! Amazon SES v2: `POST /v2/email/outbound-emails` (SendEmail) with a JSON body, signed with SigV4 for `ses`.

use super::sigv4::{self, AwsCredentials};
use super::{quote, JsonObject, ProviderRequest, Setup};
use crate::domain::UnixTime;
use crate::login::Message;

pub const NAME: &str = "ses";

/// SES's regional endpoint.
pub fn default_api_base(region: &str) -> String {
    format!("https://email.{region}.amazonaws.com")
}

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "SES_API_BASE",
    settings: &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "EMAIL_FROM"],
    optional: &[],
    default_api_base: |values| default_api_base(&values[2]),
    build: |api_base, values, message, now| {
        let [access_key_id, secret_access_key, region, from] = values.try_into().ok()?;
        let credentials = AwsCredentials { access_key_id, secret_access_key, region };
        Ses { api_base, credentials, from }.request(message, now)
    },
};

pub struct Ses {
    pub api_base: String,
    pub credentials: AwsCredentials,
    pub from: String,
}

impl Ses {
    /// The signed request; `None` when the API root is not an absolute http(s) URL.
    pub fn request(&self, message: &Message, now: UnixTime) -> Option<ProviderRequest> {
        let part = |data: &str| JsonObject::new().text("Data", data).text("Charset", "UTF-8").finish();
        let bodies = JsonObject::new().raw("Text", &part(&message.text)).raw("Html", &part(&message.html)).finish();
        let simple = JsonObject::new().raw("Subject", &part(&message.subject)).raw("Body", &bodies).finish();
        let body = JsonObject::new()
            .text("FromEmailAddress", &self.from)
            .raw("Destination", &format!("{{\"ToAddresses\":[{}]}}", quote(message.to.value())))
            .raw("Content", &format!("{{\"Simple\":{simple}}}"));
        let mut request =
            ProviderRequest::new(&self.api_base, "/v2/email/outbound-emails", "application/json", body.finish());
        sigv4::sign(&mut request, &self.credentials, "ses", now)?;
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_a_signed_ses_send_email_call() {
        let ses = Ses {
            api_base: default_api_base("eu-west-1"),
            credentials: AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "secret".into(),
                region: "eu-west-1".into(),
            },
            from: "CRM <login@example.com>".into(),
        };
        let request = ses.request(&sample("a@example.com"), UnixTime(1_795_996_800)).unwrap();
        assert_eq!(request.url, "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails");
        let auth = &request.headers.iter().find(|(n, _)| *n == "Authorization").unwrap().1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/eu-west-1/ses/aws4_request, "));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["Destination"]["ToAddresses"], serde_json::json!(["a@example.com"]));
        assert!(body["Content"]["Simple"]["Body"]["Html"]["Data"].as_str().unwrap().contains("123456"));
    }
}
