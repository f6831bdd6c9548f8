//! The reason a provider gives for refusing a message, read from its error body for the log and the audit row.

/// Longest provider reason kept for the log and the audit row.
pub(super) const MAX_REASON: usize = 300;

/// The reason in a provider's error body: `errors[0].message` (SendGrid), `ErrorCode` and `Message` (Postmark),
/// `title` and `detail` (Vonage), `code` and `message` (Twilio, Resend, Mailgun, SES), `error` (Plivo), or
/// `<Code>` and `<Message>` (SNS's XML); otherwise a bounded excerpt of the body.
pub fn error_reason(body: &str) -> String {
    let reason = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(json) => json_reason(&json),
        Err(_) => xml_reason(body),
    };
    reason.unwrap_or_else(|| body.trim().to_owned()).chars().take(MAX_REASON).collect()
}

fn json_reason(json: &serde_json::Value) -> Option<String> {
    let text = |value: &serde_json::Value, key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let labelled = |code: Option<String>, message: Option<String>| match (code, message) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (None, Some(message)) => Some(message),
        (Some(code), None) => Some(code),
        (None, None) => None,
    };
    if let Some(first) = json.get("errors").and_then(|e| e.get(0)) {
        let message = text(first, "message").or_else(|| text(first, "description"));
        return labelled(text(first, "field"), message);
    }
    if let Some(code) = json.get("ErrorCode") {
        return labelled(Some(format!("ErrorCode {code}")), text(json, "Message"));
    }
    if json.get("title").is_some() {
        return labelled(text(json, "title"), text(json, "detail"));
    }
    let code = json.get("code").filter(|c| c.is_number() || c.is_string()).map(|c| c.to_string().replace('"', ""));
    labelled(code, text(json, "message").or_else(|| text(json, "Message")).or_else(|| text(json, "error")))
}

fn xml_reason(body: &str) -> Option<String> {
    let element = |name: &str| {
        let start = body.find(&format!("<{name}>"))? + name.len() + 2;
        let end = start + body[start..].find(&format!("</{name}>"))?;
        Some(body[start..end].trim().to_owned())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (code, message) => message.or(code),
    }
}
