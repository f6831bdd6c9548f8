//! Codes and access tokens in Workers KV. Values carry their own expiry, which the use cases check; the KV TTL only
//! cleans up. Nothing here needs to be exact under concurrency: the counters and one-time flags live in D1.

use worker::kv::KvStore;

use crate::domain::{Identifier, TokenDigest};
use crate::login::{AccessTokens, CodeVault, Session, StoreError, StoredCode};

#[derive(Clone)]
pub struct Kv(pub KvStore);

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
    async fn put_json<T: serde::Serialize>(&self, key: &str, value: &T, ttl_seconds: u64) -> Result<(), StoreError> {
        let json = serde_json::to_string(value).map_err(store_error)?;
        self.0.put(key, json).map_err(store_error)?.expiration_ttl(ttl_seconds).execute().await.map_err(store_error)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.0.get(key).json::<T>().await.map_err(store_error)
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
        self.0.delete(&session_key(token)).await.map_err(store_error)
    }
}
