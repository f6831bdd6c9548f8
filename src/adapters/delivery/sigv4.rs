//! AWS Signature Version 4 for the two AWS providers (SES and SNS): one POST with a body, no query string.
//! The date comes from the caller's clock (wasm has no `SystemTime`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::ProviderRequest;
use crate::domain::UnixTime;

/// An IAM access key allowed to call the service, and the region it is called in.
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // Invariant: HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

/// `host[:port]` and the path of an absolute `http(s)` URL.
fn host_and_path(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let host = host.strip_suffix(":443").unwrap_or(host);
    (!host.is_empty() && !path.contains(['?', '#'])).then_some((host, path))
}

/// Adds `X-Amz-Date` and the `Authorization` header to `request` for `service`, signing its `Content-Type`, host,
/// date and body. `None` when the URL is not an absolute http(s) URL without a query.
pub fn sign(request: &mut ProviderRequest, credentials: &AwsCredentials, service: &str, now: UnixTime) -> Option<()> {
    let (host, path) = host_and_path(&request.url)?;
    let t = now.civil();
    let date = format!("{:04}{:02}{:02}", t.year, t.month, t.day);
    let amz_date = format!("{date}T{:02}{:02}{:02}Z", t.hour, t.minute, t.second);
    let content_type = request.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("content-type"))?.1.trim();

    let signed_headers = "content-type;host;x-amz-date";
    let canonical_request = format!(
        "POST\n{path}\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{}",
        sha256_hex(&request.body)
    );
    let scope = format!("{date}/{}/{service}/aws4_request", credentials.region);
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(&canonical_request));
    let mut key = hmac(format!("AWS4{}", credentials.secret_access_key).as_bytes(), &date);
    for part in [credentials.region.as_str(), service, "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, &string_to_sign));
    request.headers.push(("X-Amz-Date", amz_date));
    request.headers.push((
        "Authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_test_suites_form_post_gets_its_published_signature() {
        // aws-sig-v4-test-suite, case post-x-www-form-urlencoded.
        let mut request = ProviderRequest {
            url: "https://example.amazonaws.com/".into(),
            headers: vec![("Content-Type", "application/x-www-form-urlencoded".into())],
            body: "Param1=value1".into(),
        };
        let credentials = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        };
        sign(&mut request, &credentials, "service", UnixTime(1_440_938_160)).unwrap();
        assert!(request.headers.contains(&("X-Amz-Date", "20150830T123600Z".into())));
        assert!(request.headers.contains(&(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
                .into()
        )));
    }

    #[test]
    fn the_host_keeps_a_non_default_port_and_urls_with_queries_are_refused() {
        assert_eq!(host_and_path("http://127.0.0.1:8900/v2/email"), Some(("127.0.0.1:8900", "/v2/email")));
        assert_eq!(host_and_path("https://sns.eu-west-1.amazonaws.com"), Some(("sns.eu-west-1.amazonaws.com", "/")));
        assert_eq!(
            host_and_path("https://sns.eu-west-1.amazonaws.com:443/"),
            Some(("sns.eu-west-1.amazonaws.com", "/"))
        );
        assert_eq!(host_and_path("https://example.com/?a=1"), None);
        assert_eq!(host_and_path("ftp://example.com/"), None);
    }
}
