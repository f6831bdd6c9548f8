//! OTP login for the CRM mobile app, as a Cloudflare Worker.
//!
//! - [`domain`]: validated types (email, phone, code, token, user); pure.
//! - [`login`]: the use cases and the ports they need; pure.
//! - [`adapters`]: D1, KV, the delivery providers and the runtime's clock and randomness.
//! - [`http`]: routing, request parsing, the error vocabulary, CORS, and the Worker entry point.
//! - [`admin_check`]: the identifier rules of the admin command, built for Node by `tools/admin-check/`.

// A Worker isolate is single-threaded; the ports' futures are deliberately not `Send`.
#![allow(async_fn_in_trait)]

pub mod adapters;
pub mod admin_check;
pub mod domain;
pub mod http;
pub mod login;
#[cfg(feature = "scim")]
pub mod scim;
#[cfg(test)]
mod test_support;
