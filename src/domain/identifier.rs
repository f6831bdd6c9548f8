use super::{Email, PhoneNumber};

/// How a code reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    /// The wire name used in API answers (`otp_type`) and in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// What a user logs in with: exactly one email address or phone number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    Email(Email),
    Phone(PhoneNumber),
}

impl Identifier {
    pub fn channel(&self) -> Channel {
        match self {
            Identifier::Email(_) => Channel::Email,
            Identifier::Phone(_) => Channel::Sms,
        }
    }

    /// The normalised address or number.
    pub fn value(&self) -> &str {
        match self {
            Identifier::Email(email) => email.as_str(),
            Identifier::Phone(phone) => phone.as_str(),
        }
    }

    /// A stable storage key, unique across both kinds: `email:a@b.example` or `sms:+1234567890`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.channel().as_str(), self.value())
    }

    /// The identifier with most of it hidden, for logs and audit rows.
    pub fn masked(&self) -> String {
        match self {
            Identifier::Email(email) => email.masked(),
            Identifier::Phone(phone) => phone.masked(),
        }
    }

    /// `text` with every occurrence of this identifier replaced by its masked form: for a phone number, with or
    /// without its `+`; for an email, in any letter case.
    pub fn scrub(&self, text: &str) -> String {
        let masked = self.masked();
        match self {
            Identifier::Phone(phone) => {
                let full = phone.as_str();
                text.replace(full, &masked).replace(&full[1..], &masked)
            }
            Identifier::Email(email) => {
                // Addresses are stored lower-case; a provider may echo them in any ASCII case.
                let needle = email.as_str().as_bytes();
                let bytes = text.as_bytes();
                let mut out = String::with_capacity(text.len());
                let (mut at, mut copied) = (0, 0);
                while at + needle.len() <= bytes.len() {
                    if bytes[at..at + needle.len()].eq_ignore_ascii_case(needle) {
                        out.push_str(&text[copied..at]);
                        out.push_str(&masked);
                        at += needle.len();
                        copied = at;
                    } else {
                        at += 1;
                    }
                }
                out.push_str(&text[copied..]);
                out
            }
        }
    }
}

#[cfg(test)]
mod scrub_tests {
    use super::Identifier;
    use crate::domain::{Email, PhoneNumber};

    #[test]
    fn a_providers_error_keeps_no_full_identifier() {
        let phone = Identifier::Phone(PhoneNumber::parse("+1234567890").unwrap());
        let twilio = "The 'To' number +1234567890 is not a valid phone number (1234567890).";
        let scrubbed = phone.scrub(twilio);
        assert!(!scrubbed.contains("1234567890"), "{scrubbed}");
        assert!(scrubbed.contains(&phone.masked()), "{scrubbed}");

        let email = Identifier::Email(Email::parse("mobile.test@example.com").unwrap());
        let scrubbed = email.scrub("recipient Mobile.Test@Example.com rejected; mobile.test@example.com bounced");
        assert!(!scrubbed.to_lowercase().contains("mobile.test@example.com"), "{scrubbed}");
        assert!(scrubbed.starts_with("recipient mo"), "{scrubbed}");
    }
}
