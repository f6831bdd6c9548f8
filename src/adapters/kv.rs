//! Access tokens in Workers KV. Values carry a format version and their own expiry, which the use cases check; the
//! KV TTL only cleans up. Nothing here needs to be exact or fresh: KV may serve a value (or a miss) cached for up to
//! 60 s at a location, so every rule that needs the current state reads D1 instead.

use worker::kv::KvStore;

use super::meter::Meter;
use crate::domain::{Seconds, TokenDigest};
use crate::login::{AccessTokens, Session, StoreError};

/// The `AUTH_KV` namespace. The binding is private: every KV call goes through the methods below, which report it
/// to the request's [`Meter`].
#[derive(Clone)]
pub struct Kv {
    store: KvStore,
    meter: Meter,
}

/// The access token's key; `scripts/lib/revoke.mjs` deletes these by the digests D1 returns.
fn session_key(token: &TokenDigest) -> String {
    format!("session:{}", token.as_str())
}

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("KV: {e}"))
}

impl Kv {
    pub fn new(store: KvStore, meter: Meter) -> Kv {
        Kv { store, meter }
    }
}

impl AccessTokens for Kv {
    async fn put(&self, token: &TokenDigest, session: &Session, ttl: Seconds) -> Result<(), StoreError> {
        self.meter.kv_write();
        // As bytes: `put` with a `String` goes through serde and would link float formatting into the wasm for a
        // case (a number) that never happens here. KV stores bytes either way; `get(...).text()` reads them back.
        let put = self.store.put_bytes(&session_key(token), session.encode().as_bytes()).map_err(store_error)?;
        put.expiration_ttl(u64::from(ttl.get())).execute().await.map_err(store_error)
    }

    /// A value this code cannot use (corrupt, or of a shape it does not know) is no token: the client gets a 401.
    async fn get(&self, token: &TokenDigest) -> Result<Option<Session>, StoreError> {
        self.meter.kv_read();
        let text = self.store.get(&session_key(token)).text().await.map_err(store_error)?;
        Ok(text.as_deref().and_then(Session::decode))
    }

    async fn delete(&self, token: &TokenDigest) -> Result<(), StoreError> {
        self.meter.kv_delete();
        self.store.delete(&session_key(token)).await.map_err(store_error)
    }
}
