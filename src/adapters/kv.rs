//! Codes and access tokens in Workers KV. Values carry their own expiry, which the use cases check; the KV TTL only
//! cleans up. Nothing here needs to be exact under concurrency: the counters and one-time flags live in D1.

use worker::kv::KvStore;

use super::meter::Meter;
use crate::domain::{Identifier, TokenDigest};
use crate::login::{AccessTokens, CodeVault, Session, StoreError, StoredCode};

/// The `AUTH_KV` namespace. The binding is private: every KV call goes through the methods below, which report it
/// to the request's [`Meter`].
#[derive(Clone)]
pub struct Kv {
    store: KvStore,
    meter: Meter,
}

fn code_key(identifier: &Identifier) -> String {
    format!("otp:{}", identifier.key())
}

/// The access token's key; `scripts/lib/revoke.mjs` deletes these by the digests D1 returns.
fn session_key(token: &TokenDigest) -> String {
    format!("session:{}", token.0)
}

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("KV: {e}"))
}

impl Kv {
    pub fn new(store: KvStore, meter: Meter) -> Kv {
        Kv { store, meter }
    }

    async fn put_json<T: serde::Serialize>(&self, key: &str, value: &T, ttl_seconds: u64) -> Result<(), StoreError> {
        let json = serde_json::to_string(value).map_err(store_error)?;
        self.meter.kv_write();
        self.store.put(key, json).map_err(store_error)?.expiration_ttl(ttl_seconds).execute().await.map_err(store_error)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.meter.kv_read();
        match self.store.get(key).text().await.map_err(store_error)? {
            Some(text) => serde_json::from_str(&text).map(Some).map_err(store_error),
            None => Ok(None),
        }
    }
}

impl CodeVault for Kv {
    async fn put(&self, identifier: &Identifier, code: &StoredCode, ttl_seconds: u64) -> Result<(), StoreError> {
        self.put_json(&code_key(identifier), code, ttl_seconds).await
    }

    async fn get(&self, identifier: &Identifier) -> Result<Option<StoredCode>, StoreError> {
        self.get_json(&code_key(identifier)).await
    }
}

impl AccessTokens for Kv {
    async fn put(&self, token: &TokenDigest, session: &Session, ttl_seconds: u64) -> Result<(), StoreError> {
        self.put_json(&session_key(token), session, ttl_seconds).await
    }

    async fn get(&self, token: &TokenDigest) -> Result<Option<Session>, StoreError> {
        self.get_json(&session_key(token)).await
    }

    async fn delete(&self, token: &TokenDigest) -> Result<(), StoreError> {
        self.meter.kv_delete();
        self.store.delete(&session_key(token)).await.map_err(store_error)
    }
}
