//! Adapters: the ports of [`crate::login`] implemented on Cloudflare's runtime. Key names and SQL live here and
//! nowhere else.

pub mod d1;
pub mod delivery;
pub mod kv;
pub mod meter;
pub mod runtime;
#[cfg(feature = "scim")]
pub mod scim;
pub mod sql;
#[cfg(all(test, not(target_arch = "wasm32")))]
pub mod sqlite;
