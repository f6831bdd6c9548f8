//! Amazon SNS: the `Publish` action to a phone number (`POST /`, a form body, `Version=2010-03-31`), signed with
//! SigV4 for `sns`, sent as a transactional SMS.

use super::sigv4::{self, AwsCredentials};
use super::{ProviderRequest, Setup};
use crate::domain::UnixTime;
use crate::login::Message;

pub const NAME: &str = "sns";

/// SNS's regional endpoint.
pub fn default_api_base(region: &str) -> String {
    format!("https://sns.{region}.amazonaws.com")
}

pub const SETUP: Setup = Setup {
    name: NAME,
    api_base_var: "SNS_API_BASE",
    settings: &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"],
    optional: &[],
    default_api_base: |values| default_api_base(&values[2]),
    build: |api_base, values, message, now| {
        let [access_key_id, secret_access_key, region] = values.try_into().ok()?;
        Sns { api_base, credentials: AwsCredentials { access_key_id, secret_access_key, region } }.request(message, now)
    },
};

pub struct Sns {
    pub api_base: String,
    pub credentials: AwsCredentials,
}

impl Sns {
    /// The signed request; `None` when the API root is not an absolute http(s) URL.
    pub fn request(&self, message: &Message, now: UnixTime) -> Option<ProviderRequest> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "Publish")
            .append_pair("Version", "2010-03-31")
            .append_pair("PhoneNumber", message.to.value())
            .append_pair("Message", &message.text)
            // Transactional: routed for reliability, as a one-time code needs, rather than for price.
            .append_pair("MessageAttributes.entry.1.Name", "AWS.SNS.SMS.SMSType")
            .append_pair("MessageAttributes.entry.1.Value.DataType", "String")
            .append_pair("MessageAttributes.entry.1.Value.StringValue", "Transactional")
            .finish();
        let mut request =
            ProviderRequest::new(&self.api_base, "/", "application/x-www-form-urlencoded; charset=utf-8", body);
        sigv4::sign(&mut request, &self.credentials, "sns", now)?;
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::delivery::sample;

    #[test]
    fn a_message_becomes_a_signed_sns_publish_call() {
        let sns = Sns {
            api_base: default_api_base("us-east-1"),
            credentials: AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "secret".into(),
                region: "us-east-1".into(),
            },
        };
        let request = sns.request(&sample("+1234567890"), UnixTime(1_795_996_800)).unwrap();
        assert_eq!(request.url, "https://sns.us-east-1.amazonaws.com/");
        let auth = &request.headers.iter().find(|(n, _)| *n == "Authorization").unwrap().1;
        assert!(auth.contains("/20261130/us-east-1/sns/aws4_request, SignedHeaders=content-type;host;x-amz-date, "));
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(request.body.as_bytes()).into_owned().collect();
        assert!(fields.contains(&("Action".into(), "Publish".into())));
        assert!(fields.contains(&("PhoneNumber".into(), "+1234567890".into())));
        assert!(fields.iter().any(|(k, v)| k == "Message" && v.contains("123456")));
    }
}
