use crate::domain::{Channel, Identifier, OtpCode};

/// A composed one-time-code message. Email providers use all three bodies, SMS providers only `text`.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub to: Identifier,
    /// The code itself, for providers that place it themselves (the console prints it).
    pub code: OtpCode,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Message {
    pub fn one_time_code(app_name: &str, to: &Identifier, code: &OtpCode, ttl_minutes: i64) -> Message {
        let digits = code.expose();
        let subject = format!("Your {app_name} verification code");
        match to.channel() {
            Channel::Sms => Message {
                to: to.clone(),
                code: code.clone(),
                subject,
                text: format!("Your {app_name} code is {digits}. It expires in {ttl_minutes} minutes."),
                html: String::new(),
            },
            Channel::Email => {
                let text = format!(
                    "Your {app_name} verification code is {digits}.\n\nIt expires in {ttl_minutes} minutes and can be \
                     used once. If you did not ask for it, you can ignore this email."
                );
                let app = escape_html(app_name);
                let html = format!(
                    "<p>Your {app} verification code is</p><p style=\"font-size:28px;font-weight:bold;\
                     letter-spacing:4px\">{digits}</p><p>It expires in {ttl_minutes} minutes and can be used once. \
                     If you did not ask for it, you can ignore this email.</p>"
                );
                Message { to: to.clone(), code: code.clone(), subject, text, html }
            }
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("to", &self.to.masked()).field("subject", &self.subject).finish()
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, PhoneNumber};

    #[test]
    fn an_email_carries_the_code_and_expiry_in_text_and_html() {
        let to = Identifier::Email(Email::parse("a@example.com").unwrap());
        let message = Message::one_time_code("CRM <Lifts>", &to, &OtpCode::parse("123456").unwrap(), 10);
        assert!(message.text.contains("123456") && message.text.contains("10 minutes"));
        assert!(message.html.contains("123456") && message.html.contains("CRM &lt;Lifts&gt;"));
        assert!(!format!("{message:?}").contains("123456"));
    }

    #[test]
    fn an_sms_fits_in_one_segment() {
        let to = Identifier::Phone(PhoneNumber::parse("+1234567890").unwrap());
        let message = Message::one_time_code("CRM", &to, &OtpCode::parse("123456").unwrap(), 10);
        assert!(message.text.contains("123456"));
        assert!(message.text.len() <= 160);
    }
}
