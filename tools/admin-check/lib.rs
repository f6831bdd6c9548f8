//! `scripts/lib/admin-check.wasm`: the service's identifier parsers for the admin command in Node.
//!
//! The module imports nothing and exports four functions. The caller writes `field \0 value \0 allowed country
//! codes` (UTF-8) into the buffer returned by `input(len)`, calls `check(len)`, and reads that many bytes at
//! `output()`: `ok\t<normalised value>` or `error\t<field>\t<code>\t<message>`. `sources_digest()` points at the
//! 16 hex characters of the digest that `build.rs` computed over the sources.

#[path = "../../src/domain/email.rs"]
pub mod email;
#[path = "../../src/domain/locale.rs"]
pub mod locale;
#[path = "../../src/domain/phone.rs"]
pub mod phone;

/// The names `src/admin_check.rs` uses, as the service's crate has them.
mod domain {
    pub use super::email::{Email, EmailError};
    pub use super::locale::Locale;
    pub use super::phone::{PhoneNumber, PhoneNumberError};
}

#[path = "../../src/admin_check.rs"]
pub mod admin_check;

use std::cell::RefCell;

thread_local! {
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

const DIGEST: &str = env!("ADMIN_CHECK_SOURCES_DIGEST");

/// The answer to one `field \0 value \0 codes` request.
pub fn answer(request: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(request) else { return "error\tvalue\tinvalid_request\tnot UTF-8".into() };
    let mut parts = text.splitn(3, '\0');
    let (field, value, codes) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match admin_check::check(field, value, codes) {
        Ok(normalised) => format!("ok\t{normalised}"),
        // A value may hold a tab or a newline; the message quotes it with escapes ({:?}), so the fields stay apart.
        Err(refusal) => format!("error\t{}\t{}\t{}", refusal.field, refusal.code, refusal.message),
    }
}

/// A buffer of `len` bytes for the next request.
#[no_mangle]
pub extern "C" fn input(len: usize) -> *mut u8 {
    INPUT.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        buf.resize(len, 0);
        buf.as_mut_ptr()
    })
}

/// Answers the request in the input buffer; returns the answer's length in bytes.
#[no_mangle]
pub extern "C" fn check(len: usize) -> usize {
    let text = INPUT.with(|buf| answer(&buf.borrow()[..len.min(buf.borrow().len())]));
    OUTPUT.with(|out| {
        let mut out = out.borrow_mut();
        *out = text.into_bytes();
        out.len()
    })
}

/// Where the last answer is.
#[no_mangle]
pub extern "C" fn output() -> *const u8 {
    OUTPUT.with(|out| out.borrow().as_ptr())
}

/// Where the 16 hex characters of the sources' digest are.
#[no_mangle]
pub extern "C" fn sources_digest() -> *const u8 {
    DIGEST.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn answers_are_tab_separated_and_refusals_keep_their_fields_apart() {
        assert_eq!(answer(b"email\0 Sam.Lee@Example.com\0"), "ok\tsam.lee@example.com");
        assert_eq!(answer(b"phone_number\0+33 6 12 34 56 78\01,44").split('\t').nth(2), Some("invalid_phone_number"));
        let refused = answer(b"email\0a\tb@x\0");
        assert_eq!(refused.split('\t').count(), 4, "{refused}");
    }
}
