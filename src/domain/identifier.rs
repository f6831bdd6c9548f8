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
}
