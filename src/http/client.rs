//! What the request says about its client, for sessions and audit rows: device, origin, country.

use super::incoming::Incoming;
use crate::adapters::d1::RequestOrigin;
use crate::login::{ClientIp, Device};

/// The device a login or refresh comes from: user agent, IP, and Cloudflare's coarse geolocation.
pub(super) fn device(req: &Incoming, client: &ClientIp) -> Device {
    Device {
        user_agent: req.header("User-Agent").map(|ua| ua.chars().take(256).collect()),
        ip: Some(client.0.clone()),
        country: client_country(req),
        city: req.cf().and_then(|cf| cf.city()),
    }
}

/// The request's origin as its audit rows record it.
pub(super) fn request_origin(req: &Incoming, client: &ClientIp) -> RequestOrigin {
    RequestOrigin {
        ip: Some(client.0.clone()),
        user_agent: req.header("User-Agent").map(|ua| ua.chars().take(256).collect()),
        country: client_country(req),
    }
}

/// The client's country as Cloudflare's edge geolocated it. Only `request.cf` is trusted: a `CF-IPCountry` header
/// can be sent by anyone when the zone's IP geolocation is off, and is not needed when `cf` is there. Anything that
/// is not a short upper-case code (Cloudflare also uses `XX` for unknown and `T1` for Tor) is dropped.
pub(super) fn client_country(req: &Incoming) -> Option<String> {
    req.cf()
        .and_then(|cf| cf.country())
        .filter(|c| (2..=3).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
}
