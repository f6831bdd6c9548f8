use crate::test_support::run;
use std::cell::RefCell;

use super::reason::MAX_REASON;
use super::*;

#[test]
fn each_providers_error_body_yields_a_clear_reason() {
    let cases = [
            (r#"{"statusCode":422,"message":"Invalid `to` field","name":"validation_error"}"#, "Invalid `to` field"),
            (r#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#, "21211: Invalid 'To' Phone Number"),
            (
                r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#,
                "from: The from address does not match a verified Sender Identity.",
            ),
            (r#"{"message":"Domain not found: mg.example.com"}"#, "Domain not found: mg.example.com"),
            (r#"{"ErrorCode":300,"Message":"Invalid email request"}"#, "ErrorCode 300: Invalid email request"),
            (r#"{"message":"Email address is not verified."}"#, "Email address is not verified."),
            (
                r#"{"type":"https://developer.vonage.com/api-errors#unauthorized","title":"Unauthorized","detail":"You did not provide correct credentials.","instance":"x"}"#,
                "Unauthorized: You did not provide correct credentials.",
            ),
            (r#"{"api_id":"97ceeb52","error":"authentication_failed"}"#, "authentication_failed"),
            (
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>Invalid parameter: PhoneNumber</Message></Error></ErrorResponse>",
                "InvalidParameter: Invalid parameter: PhoneNumber",
            ),
            ("Forbidden", "Forbidden"),
        ];
    for (body, reason) in cases {
        assert_eq!(error_reason(body), reason, "{body}");
    }
    assert_eq!(error_reason(&"x".repeat(1000)).len(), MAX_REASON);
}

#[test]
fn provider_lists_are_ordered_distinct_known_names() {
    let list = provider_list(" Resend, postmark ,ses", &EmailProvider::ALL, EmailProvider::name).unwrap();
    assert_eq!(list, [EmailProvider::Resend, EmailProvider::Postmark, EmailProvider::Ses]);
    let sms = provider_list("plivo,twilio", &SmsProvider::ALL, SmsProvider::name).unwrap();
    assert_eq!(sms, [SmsProvider::Plivo, SmsProvider::Twilio]);
    assert!(provider_list("resend,resend", &EmailProvider::ALL, EmailProvider::name).unwrap_err().contains("twice"));
    let unknown = provider_list("resend,smtp", &EmailProvider::ALL, EmailProvider::name).unwrap_err();
    assert!(unknown.contains("\"smtp\"") && unknown.contains("sendgrid"), "{unknown}");
    assert!(provider_list("resend,", &EmailProvider::ALL, EmailProvider::name).is_err());
}

#[test]
fn failover_tries_each_provider_in_order_until_one_accepts() {
    let tried = RefCell::new(Vec::new());
    let report = run(failover(&SmsProvider::ALL[..3], SmsProvider::name, |p| {
        tried.borrow_mut().push(p);
        let outcome = match p {
            SmsProvider::Vonage => Ok(()),
            _ => Err(DeliveryError { provider: p.name(), reason: "HTTP 500: down".into() }),
        };
        async move { outcome }
    }));
    assert_eq!(*tried.borrow(), [SmsProvider::Twilio, SmsProvider::Vonage], "plivo is never tried");
    assert_eq!(report.delivered_by, Some("vonage"));
    assert_eq!(report.failures, [DeliveryError { provider: "twilio", reason: "HTTP 500: down".into() }]);

    let none = run(failover(&SmsProvider::ALL[..2], SmsProvider::name, |p| {
        let failure = DeliveryError { provider: p.name(), reason: "timeout".into() };
        async move { Err(failure) }
    }));
    assert_eq!((none.delivered_by, none.failures.len()), (None, 2));
}

#[test]
fn json_objects_are_written_with_escaped_keys_and_values() {
    let nested = JsonObject::new().text("a\"b", "line\n<tag> é").finish();
    let json = JsonObject::new().raw("n", &nested).text("s", "x").finish();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, serde_json::json!({ "n": { "a\"b": "line\n<tag> é" }, "s": "x" }));
    assert_eq!(JsonObject::new().finish(), "{}");
}

#[test]
fn a_sender_is_split_into_name_and_address() {
    assert_eq!(split_sender("CRM <login@example.com>"), (Some("CRM"), "login@example.com"));
    assert_eq!(split_sender("\"CRM Login\" <login@example.com>"), (Some("CRM Login"), "login@example.com"));
    assert_eq!(split_sender("login@example.com"), (None, "login@example.com"));
    assert_eq!(split_sender("<login@example.com>"), (None, "login@example.com"));
}
