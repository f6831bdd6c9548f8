//! The login use cases and the ports they reach the world through. No `worker` import: storage, delivery,
//! the clock and randomness are traits, implemented by `crate::adapters` on the edge and by fakes in tests.

mod message;
mod policy;
mod ports;
mod service;
mod test_logins;
mod tokens;

use std::net::IpAddr;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

pub use message::{Language, Message, MessageSettings};
pub use policy::{Policy, Refusal, NIST_MAX_CONSECUTIVE_FAILURES};
pub use ports::{
    AccessTokens, Attempt, Challenges, Clock, DeliveryError, DeliveryReport, Device, EventKind, EventLog, Guess,
    Guesses, LoginEvent, NewCode, NewSession, Notifier, Opening, RefreshLogout, Revocation, Rotation, Scope, Session,
    SessionInfo, Sessions, StoreError, SESSION_FORMAT,
};
pub use service::{AuthError, InternalError, Login, LoginError, LoginGrant, PendingCode, Ports, TokenPair};
pub use test_logins::{TestLoginRules, TestLogins};
pub use tokens::Authenticated;

/// The client's address as Cloudflare saw it (`CF-Connecting-IP`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIp(pub String);

impl ClientIp {
    /// The network a client is counted by: an IPv4 address, or the /64 an IPv6 address lies in, since one
    /// subscriber line or one cloud server holds a whole /64. An IPv4-mapped IPv6 address counts as its IPv4
    /// address; anything that is not an address shares one bucket.
    pub fn network(&self) -> String {
        match self.0.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.to_string(),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            Err(_) => "unparsed".to_owned(),
        }
    }
}

#[cfg(test)]
mod client_ip_tests {
    use super::ClientIp;

    fn network(ip: &str) -> String {
        ClientIp(ip.into()).network()
    }

    #[test]
    fn ipv4_clients_are_counted_per_address_and_ipv6_clients_per_64() {
        assert_eq!(network("203.0.113.7"), "203.0.113.7");
        assert_ne!(network("203.0.113.7"), network("203.0.113.8"));
        assert_eq!(network("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(network("2001:db8:1:2:ffff:ffff:ffff:ffff"), network("2001:0db8:0001:0002::"));
        assert_ne!(network("2001:db8:1:2::1"), network("2001:db8:1:3::1"));
        assert_eq!(network("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(network("not an address"), network("unknown"));
    }
}
