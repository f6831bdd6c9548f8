use sha2::{Digest, Sha256};

use super::{Random, RandomError};

/// An API token: 256 bits from the CSPRNG, written as 64 lower-case hex characters.
///
/// Only its digest is ever stored; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

/// The SHA-256 of a token, hex-encoded: the storage key for its session. A fast hash is enough here because the
/// token itself carries 256 bits of entropy. Made only by [`Token::digest`], or read back from storage by
/// [`TokenDigest::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenDigest(String);

impl TokenDigest {
    /// A digest as storage gives it back: exactly 64 lower-case hex characters.
    pub fn parse(text: &str) -> Option<TokenDigest> {
        is_lower_hex(text, 64).then(|| TokenDigest(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `text` is exactly `len` lower-case hex characters.
pub(super) fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why an `Authorization` header does not carry a usable token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No `Authorization` header, or another scheme (e.g. Basic).
    Missing,
    /// `Token`/`Bearer` with something that cannot be one of our tokens.
    Malformed,
}

const TOKEN_BYTES: usize = 32;

impl Token {
    pub fn generate(random: &impl Random) -> Result<Token, RandomError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        random.fill(&mut bytes)?;
        Ok(Token(hex::encode(bytes)))
    }

    /// Reads `Token <t>` (Django REST Framework's form) or `Bearer <t>`; the scheme is case-insensitive.
    pub fn from_authorization(header: Option<&str>) -> Result<Token, TokenError> {
        let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(TokenError::Missing)?;
        let (scheme, credentials) = header.split_once(' ').ok_or(TokenError::Missing)?;
        if !scheme.eq_ignore_ascii_case("token") && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Missing);
        }
        Token::parse(credentials.trim())
    }

    /// Reads a token as the client sends it in a body (the refresh token): exactly 64 lower-case hex characters.
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        if is_lower_hex(text, TOKEN_BYTES * 2) {
            Ok(Token(text.to_owned()))
        } else {
            Err(TokenError::Malformed)
        }
    }

    /// The token as handed to the client, once, in the login answer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 under which the token is stored; the token itself is never stored.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u8);
    impl Random for Fixed {
        fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
            buf.fill(self.0);
            Ok(())
        }
    }

    #[test]
    fn a_token_carries_256_bits_as_64_hex_characters() {
        let token = Token::generate(&Fixed(0xab)).unwrap();
        assert_eq!(token.expose(), "ab".repeat(32));
    }

    #[test]
    fn both_token_and_bearer_schemes_are_read() {
        let t = "0f".repeat(32);
        for header in [format!("Token {t}"), format!("Bearer {t}"), format!("bearer   {t} "), format!("TOKEN {t}")] {
            assert_eq!(Token::from_authorization(Some(&header)).unwrap().expose(), t, "{header}");
        }
    }

    #[test]
    fn other_schemes_and_absent_headers_count_as_missing() {
        assert_eq!(Token::from_authorization(None), Err(TokenError::Missing));
        assert_eq!(Token::from_authorization(Some("")), Err(TokenError::Missing));
        assert_eq!(Token::from_authorization(Some("Basic dXNlcjpwYXNz")), Err(TokenError::Missing));
    }

    #[test]
    fn garbage_credentials_are_malformed() {
        for bad in ["Token abc", "Bearer ", "Token ZZ", &format!("Token {}", "A".repeat(64))] {
            assert!(Token::from_authorization(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_digest_is_not_the_token() {
        let token = Token::generate(&Fixed(1)).unwrap();
        assert_ne!(token.digest().0, token.expose());
        assert_eq!(token.digest().0.len(), 64);
        assert!(!format!("{token:?}").contains("0101"));
    }
}
