use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{Identifier, Random, RandomError};

/// Number of digits in a one-time code.
pub const CODE_DIGITS: usize = 6;

/// A one-time code: exactly six ASCII decimal digits.
///
/// `Debug` hides the digits so a code never reaches a log by accident; `expose` is the one way to read it,
/// for composing the message that delivers it.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode([u8; CODE_DIGITS]);

/// The submitted code is not six decimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpCodeError;

impl OtpCode {
    /// Draws six uniformly distributed digits. Bytes of 250 and above are rejected so that `byte % 10` has no bias.
    pub fn generate(random: &impl Random) -> Result<OtpCode, RandomError> {
        let mut digits = [0u8; CODE_DIGITS];
        let mut filled = 0;
        let mut pool = [0u8; 16];
        while filled < CODE_DIGITS {
            random.fill(&mut pool)?;
            for byte in pool.iter().copied().filter(|b| *b < 250) {
                if filled == CODE_DIGITS {
                    break;
                }
                digits[filled] = b'0' + byte % 10;
                filled += 1;
            }
        }
        Ok(OtpCode(digits))
    }

    /// Accepts exactly six ASCII digits, nothing else (no spaces, no Unicode digits).
    pub fn parse(raw: &str) -> Result<OtpCode, OtpCodeError> {
        let bytes: [u8; CODE_DIGITS] = raw.as_bytes().try_into().map_err(|_| OtpCodeError)?;
        if bytes.iter().all(u8::is_ascii_digit) {
            Ok(OtpCode(bytes))
        } else {
            Err(OtpCodeError)
        }
    }

    /// The digits, for the delivery message only.
    pub fn expose(&self) -> &str {
        // Invariant: only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpCode(******)")
    }
}

/// Identifies one issued code (or one guess, as its nonce): 128 random bits, hex-encoded. A new code for the same
/// identifier gets a new id, which is how the previous code dies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChallengeId(String);

impl ChallengeId {
    pub fn generate(random: &impl Random) -> Result<ChallengeId, RandomError> {
        let mut bytes = [0u8; 16];
        random.fill(&mut bytes)?;
        Ok(ChallengeId(hex::encode(bytes)))
    }

    /// An id as storage gives it back: exactly 32 lower-case hex characters.
    pub fn parse(text: &str) -> Option<ChallengeId> {
        super::token::is_lower_hex(text, 32).then(|| ChallengeId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keyed hashing of codes. A plain hash of a six-digit code falls to a million guesses, so codes are stored as
/// HMAC-SHA-256 under a server secret, bound to their identifier: reading the store without the key reveals nothing.
/// A guess is hashed the same way and compared with the stored digest by the database step that decides it.
#[derive(Clone)]
pub struct CodeHasher {
    key: Vec<u8>,
}

impl CodeHasher {
    /// Shortest key accepted: 256 bits written as 32 characters or more.
    pub const MIN_KEY_LEN: usize = 32;

    /// `None` when the key is too short to be a real secret.
    pub fn new(key: &[u8]) -> Option<CodeHasher> {
        (key.len() >= Self::MIN_KEY_LEN).then(|| CodeHasher { key: key.to_vec() })
    }

    /// The hex digest of `code` sent to, or guessed for, `identifier`: HMAC-SHA-256 of `<key>:<digits>`, where
    /// `<key>` is the identifier's key (`email:…` or `sms:…`).
    pub fn digest(&self, identifier: &Identifier, code: &OtpCode) -> String {
        // Invariant: HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(identifier.key().as_bytes());
        mac.update(b":");
        mac.update(&code.0);
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Hands out the scripted bytes in order, then zeros.
    struct Scripted(RefCell<Vec<u8>>);

    impl Random for Scripted {
        fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
            let mut bytes = self.0.borrow_mut();
            for slot in buf.iter_mut() {
                *slot = if bytes.is_empty() { 0 } else { bytes.remove(0) };
            }
            Ok(())
        }
    }

    #[test]
    fn bytes_at_or_above_250_are_skipped_so_digits_stay_unbiased() {
        let mut script = vec![250, 255, 251, 9, 19, 249, 100, 0, 57];
        script.resize(16, 253);
        let code = OtpCode::generate(&Scripted(RefCell::new(script))).unwrap();
        assert_eq!(code.expose(), "999007");
    }

    #[test]
    fn every_digit_value_is_reachable_and_equally_likely_per_byte() {
        let mut counts = [0usize; 10];
        for byte in 0u8..250 {
            counts[usize::from(byte % 10)] += 1;
        }
        assert!(counts.iter().all(|c| *c == 25));
    }

    #[test]
    fn generated_codes_over_many_draws_are_six_uniform_digits() {
        struct Counter(RefCell<u64>);
        impl Random for Counter {
            fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
                for slot in buf.iter_mut() {
                    let mut state = self.0.borrow_mut();
                    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    *slot = (*state >> 56) as u8;
                }
                Ok(())
            }
        }
        let rng = Counter(RefCell::new(7));
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            let code = OtpCode::generate(&rng).unwrap();
            assert_eq!(code.expose().len(), 6);
            for digit in code.expose().bytes() {
                counts[usize::from(digit - b'0')] += 1;
            }
        }
        // 60,000 digits: each value expected 6,000 times; a 5% band is far outside sampling noise (sd ~ 73).
        assert!(counts.iter().all(|c| (5_700..=6_300).contains(c)), "{counts:?}");
    }

    #[test]
    fn only_six_ascii_digits_parse() {
        assert!(OtpCode::parse("012345").is_ok());
        for bad in ["12345", "1234567", "12345a", " 12345", "١٢٣٤٥٦", ""] {
            assert_eq!(OtpCode::parse(bad), Err(OtpCodeError), "{bad}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_digits() {
        let code = OtpCode::parse("424242").unwrap();
        assert!(!format!("{code:?}").contains("4242"));
    }

    #[test]
    fn a_digest_depends_on_the_key_the_identifier_and_the_code() {
        let hasher = CodeHasher::new(&[7u8; 32]).unwrap();
        let who = Identifier::Email(crate::domain::Email::parse("a@example.com").unwrap());
        let other = Identifier::Email(crate::domain::Email::parse("b@example.com").unwrap());
        let code = OtpCode::parse("123456").unwrap();
        let digest = hasher.digest(&who, &code);
        assert!(!digest.contains("123456"));
        assert_eq!(digest.len(), 64);
        assert_eq!(hasher.digest(&who, &code), digest);
        assert_ne!(hasher.digest(&who, &OtpCode::parse("123457").unwrap()), digest);
        assert_ne!(hasher.digest(&other, &code), digest);
        assert_ne!(CodeHasher::new(&[1u8; 32]).unwrap().digest(&who, &code), digest);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(CodeHasher::new(b"short").is_none());
    }
}
