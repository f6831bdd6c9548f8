/// An email address in the one form the service stores and compares: trimmed, lower-cased ASCII,
/// `local@domain` with a dotted domain. Internationalised (non-ASCII) addresses are refused so that look-alike
/// characters cannot name a second account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why a string is not an acceptable email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailError {
    Empty,
    TooLong,
    Malformed,
}

/// RFC 5321 limits.
const MAX_ADDRESS: usize = 254;
const MAX_LOCAL: usize = 64;
const MAX_LABEL: usize = 63;

impl Email {
    /// Normalises and validates `raw`.
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > MAX_ADDRESS {
            return Err(EmailError::TooLong);
        }
        let address = trimmed.to_ascii_lowercase();
        let (local, domain) = address.split_once('@').ok_or(EmailError::Malformed)?;
        if valid_local_part(local) && valid_domain(domain) {
            Ok(Email(address))
        } else {
            Err(EmailError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address with most of the local part hidden, for logs and audit rows: `mo*********@example.com`.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let shown = if local.len() > 4 { 2 } else { 1 };
        format!("{}{}@{}", &local[..shown], "*".repeat(local.len() - shown), domain)
    }
}

fn valid_local_part(local: &str) -> bool {
    const SPECIALS: &[u8] = b".!#$%&'*+/=?^_`{|}~-";
    !local.is_empty()
        && local.len() <= MAX_LOCAL
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && !tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Mobile.Test@Example.COM ").unwrap().as_str(), "mobile.test@example.com");
    }

    #[test]
    fn plus_tags_and_subdomains_are_accepted() {
        assert!(Email::parse("a.b+crm@mail.example.co.uk").is_ok());
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a@-example.com",
            "a@example..com",
            "a@example.1",
            "\"quoted\"@example.com",
            "jоhn@example.com", // Cyrillic 'о'
            "a@exämple.com",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Malformed), "{bad}");
        }
    }

    #[test]
    fn empty_and_overlong_addresses_have_their_own_errors() {
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Email::parse(&long_local), Err(EmailError::Malformed));
    }

    #[test]
    fn masking_keeps_the_domain_and_hides_the_local_part() {
        assert_eq!(Email::parse("mobile.test@example.com").unwrap().masked(), "mo*********@example.com");
        assert_eq!(Email::parse("ab@example.com").unwrap().masked(), "a*@example.com");
    }
}
