//! The runtime adapters compiled to wasm32 and run under Node by wasm-bindgen-test: the clock, the CSPRNG, and the
//! code and token digests as the Worker computes them. The expected digests were computed independently (Python's
//! `hmac` and `sha256sum`), so a wasm build that hashed differently from the host would fail here.
#![cfg(target_arch = "wasm32")]

use edge_otp_login::adapters::runtime::{CryptoRandom, WorkerClock};
use edge_otp_login::domain::{CodeHasher, Email, Identifier, OtpCode, Random, Token};
use edge_otp_login::login::Clock;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn the_clock_is_the_runtimes_in_whole_seconds() {
    let js_seconds = (worker::js_sys::Date::now() / 1000.0) as i64;
    let now = WorkerClock.now().0;
    assert!((now - js_seconds).abs() <= 1, "{now} vs {js_seconds}");
    assert!(now > 1_767_225_600, "after 2026-01-01: {now}");
}

#[wasm_bindgen_test]
fn the_csprng_fills_every_byte_and_never_repeats() {
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    CryptoRandom.fill(&mut a).unwrap();
    CryptoRandom.fill(&mut b).unwrap();
    assert_ne!(a, b);
    assert_ne!(a, [0u8; 32]);
}

#[wasm_bindgen_test]
fn codes_from_the_csprng_are_six_digits_spread_over_every_value() {
    let mut counts = [0u32; 10];
    for _ in 0..2_000 {
        let code = OtpCode::generate(&CryptoRandom).unwrap();
        assert_eq!(code.expose().len(), 6);
        for digit in code.expose().bytes() {
            counts[usize::from(digit - b'0')] += 1;
        }
    }
    // 12,000 digits: each value expected 1,200 times; 1,000..1,400 is more than 5 standard deviations wide.
    assert!(counts.iter().all(|&n| (1_000..=1_400).contains(&n)), "{counts:?}");
}

#[wasm_bindgen_test]
fn the_code_digest_is_hmac_sha256_of_identifier_and_code() {
    let hasher = CodeHasher::new(b"runtime-test-key-0123456789abcdef").unwrap();
    let who = Identifier::Email(Email::parse("mobile.test@example.com").unwrap());
    let code = OtpCode::parse("042917").unwrap();
    let digest = hasher.digest(&who, &code);
    assert_eq!(digest, "22a8fa1f1c36d70f5c283fa66ee7184d700a0870f1dacca69e18dcd0697bf765");
    assert_ne!(hasher.digest(&who, &OtpCode::parse("042918").unwrap()), digest);
}

#[wasm_bindgen_test]
fn tokens_carry_256_bits_and_are_stored_as_their_sha256() {
    let token = Token::generate(&CryptoRandom).unwrap();
    assert_eq!(token.expose().len(), 64);
    assert_ne!(token.expose(), Token::generate(&CryptoRandom).unwrap().expose());
    let known = Token::parse(&"ab".repeat(32)).unwrap();
    assert_eq!(known.digest().as_str(), "271a413bd339c5709fdceaec41f14f11e9fbfb5042d72d331c65f32b284cd09a");
}
