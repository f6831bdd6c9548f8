//! Reading the request URL: the endpoint a path names, the base URL of resource locations, the query.

use super::BASE;

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target<'a> {
    ServiceProviderConfig,
    ResourceTypes(Option<&'a str>),
    Schemas(Option<&'a str>),
    Users(Option<i64>),
    Groups(Option<i64>),
}

pub(super) fn target(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix(BASE)?.trim_end_matches('/');
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (head, id) = match rest.split_once('/') {
        Some((head, id)) if !id.is_empty() && !id.contains('/') => (head, Some(id)),
        Some(_) => return None,
        None => (rest, None),
    };
    let number = |id: Option<&str>| -> Option<Option<i64>> {
        match id {
            None => Some(None),
            Some(id) if id.len() <= 15 && id.bytes().all(|b| b.is_ascii_digit()) => id.parse().ok().map(Some),
            // An id this service never issued: a 404 for the resource, not for the route.
            Some(_) => Some(Some(-1)),
        }
    };
    Some(match head {
        "ServiceProviderConfig" if id.is_none() => Target::ServiceProviderConfig,
        "ResourceTypes" => Target::ResourceTypes(id),
        "Schemas" => Target::Schemas(id),
        "Users" => Target::Users(number(id)?),
        "Groups" => Target::Groups(number(id)?),
        _ => return None,
    })
}

/// `scheme://host[:port]` of an absolute URL as the runtime serialises it.
pub(super) fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |j| start + j);
    &url[..end]
}

/// The query's name/value pairs, decoded as `application/x-www-form-urlencoded` (`+` is a space). A full URL
/// parser would bring its international domain name tables into the Worker; this is all SCIM needs.
pub(super) fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q.split('#').next().unwrap_or_default());
    let pairs = query.split('&').filter(|p| !p.is_empty());
    pairs.map(|pair| pair.split_once('=').unwrap_or((pair, ""))).map(|(k, v)| (decode(k), decode(v))).collect()
}

pub(super) fn decode(text: &str) -> String {
    let (bytes, mut out, mut i) = (text.as_bytes(), Vec::with_capacity(text.len()), 0);
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        let escaped =
            (bytes[i] == b'%').then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?)).flatten();
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte as u8);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
