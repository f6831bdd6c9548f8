//! The cheap first line in front of D1: Cloudflare's Rate Limiting binding `LOGIN_RATE_LIMITER`, counted per client
//! network on every route that takes a secret without a session.
//!
//! It is per location and approximate by design, so it only turns a flood away before it reaches the single D1
//! writer; D1's exact windows and failure counts stay the authority. Without the binding, or when it fails, every
//! request is admitted (fail open): correctness never depends on it.

use std::cell::RefCell;

use worker::Env;

use crate::domain::{Seconds, UnixTime};
use crate::login::ClientIp;

/// The binding's period (`simple.period` in wrangler.toml): how long a refused client waits at most.
pub const PERIOD: Seconds = Seconds::MINUTE;

/// The most client networks one isolate remembers for sampling its audit rows.
const REMEMBERED_NETWORKS: usize = 256;

thread_local! {
    /// The client networks refused in the current minute, per isolate, and that minute.
    static REFUSED_THIS_MINUTE: RefCell<(i64, Vec<String>)> = const { RefCell::new((0, Vec::new())) };
}

/// Whether the binding lets this client's request through (true when there is no binding or it fails).
pub async fn admits(env: &Env, client: &ClientIp) -> bool {
    let Ok(limiter) = env.rate_limiter("LOGIN_RATE_LIMITER") else { return true };
    match limiter.limit(client.network()).await {
        Ok(outcome) => outcome.success,
        Err(e) => {
            worker::console_error!("rate limiting binding failed, admitting: {e}");
            true
        }
    }
}

/// Whether this refusal is the first of its client network in this minute at this isolate: those are audited, so a
/// flood shows in the failure views without writing a D1 row for every request the gate turns away.
pub fn first_refusal_this_minute(client: &ClientIp, now: UnixTime) -> bool {
    let minute = now.0.div_euclid(60);
    let network = client.network();
    REFUSED_THIS_MINUTE.with(|refused| {
        let mut refused = refused.borrow_mut();
        if refused.0 != minute || refused.1.len() >= REMEMBERED_NETWORKS {
            *refused = (minute, Vec::new());
        }
        if refused.1.contains(&network) {
            return false;
        }
        refused.1.push(network);
        true
    })
}
