//! `SCIM_TOKEN` and `RATE_LIMIT_SCIM_REQUESTS`: the accepted bearer tokens (kept as digests) and the per-client
//! request limit.

use sha2::{Digest, Sha256};
use worker::Env;

use crate::adapters::delivery::setting;
use crate::domain::Seconds;
use crate::http::config::ConfigError;

/// Shortest token accepted in `SCIM_TOKEN`.
const MIN_TOKEN_LEN: usize = 32;

/// The SCIM settings, present when `SCIM_TOKEN` is set.
pub struct ScimSettings {
    /// SHA-256 of each accepted token: compared in constant time, never kept in the clear beyond loading.
    pub(super) tokens: Vec<[u8; 32]>,
    /// Requests per client per window (`RATE_LIMIT_SCIM_REQUESTS`).
    pub(super) limit: u32,
    pub(super) window: Seconds,
}

pub(super) fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl ScimSettings {
    /// `None` when `SCIM_TOKEN` is not set (SCIM is off); an error when a token is too short to be a secret.
    pub fn from_env(env: &Env, window: Seconds) -> Result<Option<ScimSettings>, ConfigError> {
        let Some(raw) = setting(env, "SCIM_TOKEN") else { return Ok(None) };
        let tokens: Vec<&str> = raw.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() || tokens.iter().any(|t| t.len() < MIN_TOKEN_LEN || t.contains(char::is_whitespace)) {
            return Err(ConfigError(format!(
                "SCIM_TOKEN must be one or more comma-separated random tokens of at least {MIN_TOKEN_LEN} characters \
                 (openssl rand -hex 32)"
            )));
        }
        let limit = match setting(env, "RATE_LIMIT_SCIM_REQUESTS") {
            None => 1200,
            Some(v) => v.trim().parse::<u32>().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or_else(|| {
                ConfigError(format!("RATE_LIMIT_SCIM_REQUESTS must be a whole number from 1 to 1000000, not {v:?}"))
            })?,
        };
        Ok(Some(ScimSettings { tokens: tokens.into_iter().map(sha256).collect(), limit, window }))
    }

    /// Whether the `Authorization` header carries one of the tokens. Every token is compared, each in constant
    /// time over its SHA-256, so the time taken says nothing about how much of a guess was right.
    pub(super) fn admits(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, token)) = authorization.map(str::trim).and_then(|h| h.split_once(' ')) else { return false };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let presented = sha256(token.trim());
        self.tokens.iter().fold(false, |found, known| {
            let difference = known.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (difference == 0)
        })
    }
}
