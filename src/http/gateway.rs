//! Gateway mode: with `ORIGIN_URL` set, every request outside `/auth/` must carry a live access token and is
//! forwarded to the origin with the user's identity in signed headers.
//!
//! The origin verifies `X-Auth-Signature` = hex(HMAC-SHA-256(`GATEWAY_SIGNING_SECRET`, canonical)) where canonical is
//! the lines `v1`, method, path and query (as on the request line), `X-Auth-Timestamp`, `X-Auth-User-Id`,
//! `X-Auth-User-Email`, `X-Auth-User-Groups`, `X-Auth-Session-Id`, joined by `\n`; and rejects timestamps older
//! than its replay window. docs/GATEWAY.md shows the Django middleware.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use worker::js_sys::{self, Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys;

use super::answer::Answer;
use super::error::ApiError;
use super::incoming::Incoming;
use crate::domain::UnixTime;
use crate::login::Session;

/// Where and how to forward: the origin (scheme, host and port only) and the signing key.
pub struct Gateway {
    origin: String,
    key: Vec<u8>,
}

/// The identity headers, in the order they enter the signature. A client's own `X-Auth-*` headers never reach
/// the origin.
pub const IDENTITY_HEADERS: [&str; 6] = [
    "X-Auth-Timestamp",
    "X-Auth-User-Id",
    "X-Auth-User-Email",
    "X-Auth-User-Groups",
    "X-Auth-Session-Id",
    "X-Auth-Signature",
];

/// Headers the origin never receives from the client: the edge credential, and anything that could pass for the
/// gateway's own identity headers. `Host` is set by the forwarding fetch itself.
fn dropped(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization" || name == "host" || name.starts_with("x-auth-")
}

/// The minimum length of `GATEWAY_SIGNING_SECRET`.
pub const MIN_SECRET_LEN: usize = 32;

impl Gateway {
    /// Reads `ORIGIN_URL` (an `http(s)://host[:port]` origin, no path, query or fragment) and the signing secret.
    // Parsed by hand: the `url` crate's full parser (with IDNA tables) would add ~100 KB gzip to the Worker.
    pub fn parse(origin_url: &str, secret: &str) -> Result<Gateway, String> {
        let trimmed = origin_url.trim();
        let origin = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let authority = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        if !authority.is_some_and(valid_authority) {
            return Err(format!("ORIGIN_URL {origin_url:?} must be an origin like https://crm.internal.example.com"));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "GATEWAY_SIGNING_SECRET must be a random secret of at least {MIN_SECRET_LEN} characters when \
                 ORIGIN_URL is set"
            ));
        }
        Ok(Gateway { origin: origin.to_ascii_lowercase(), key: secret.as_bytes().to_vec() })
    }

    /// The identity header values for `session`, signed for `method` and `path_and_query` at `now`, in the order
    /// of [`IDENTITY_HEADERS`].
    pub fn identity(&self, method: &str, path_and_query: &str, session: &Session, now: UnixTime) -> [String; 6] {
        let user = &session.user;
        let groups: Vec<String> = user.groups.iter().map(|g| header_safe(g)).collect();
        let values = [
            now.0.to_string(),
            user.id.to_string(),
            header_safe(user.email.as_deref().unwrap_or_default()),
            groups.join(","),
            session.session_id.to_string(),
        ];
        let canonical = format!("v1\n{method}\n{path_and_query}\n{}", values.join("\n"));
        // HMAC accepts keys of any length; the secret's length is checked at configuration time.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(canonical.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let [timestamp, id, email, groups, session_id] = values;
        [timestamp, id, email, groups, session_id, signature]
    }

    /// Forwards the request (method, path, query, headers less the dropped ones, body as a stream) to the origin
    /// with the signed identity, and passes its answer back untouched, redirects included.
    pub async fn forward(&self, req: &Incoming, session: &Session, now: UnixTime) -> Result<Answer, ApiError> {
        let path_and_query = path_and_query(&req.url());
        let method = req.method();
        let failed = |what: &str, e: JsValue| ApiError::internal(what, &worker::Error::from(e));
        let headers = web_sys::Headers::new().map_err(|e| failed("gateway headers", e))?;
        for entry in req.headers().entries() {
            // Each entry of a `Headers` iterator is a `[name, value]` pair of strings.
            let pair: Array = entry.map_err(|e| failed("gateway header", e))?.unchecked_into();
            let (name, value) = (pair.get(0).as_string().unwrap_or_default(), pair.get(1).as_string());
            if !dropped(&name) {
                headers.append(&name, &value.unwrap_or_default()).map_err(|e| failed("gateway header", e))?;
            }
        }
        let identity = self.identity(method, &path_and_query, session, now);
        for (name, value) in IDENTITY_HEADERS.iter().zip(identity.iter()) {
            headers.set(name, value).map_err(|e| failed("gateway identity header", e))?;
        }
        let init = web_sys::RequestInit::new();
        init.set_method(method);
        init.set_headers(&headers);
        init.set_redirect(web_sys::RequestRedirect::Manual);
        if !matches!(method, "GET" | "HEAD") {
            if let Some(body) = req.body_stream() {
                init.set_body(&body);
            }
        }
        let forwarded = web_sys::Request::new_with_str_and_init(&format!("{}{path_and_query}", self.origin), &init)
            .map_err(|e| ApiError::internal("gateway request", &format!("{e:?}")))?;
        let runtime: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let sent = runtime.fetch_with_request(&forwarded);
        let response = JsFuture::from(sent).await.and_then(JsCast::dyn_into::<web_sys::Response>).map_err(|e| {
            worker::console_error!("gateway: origin did not answer: {}", worker::Error::from(e));
            ApiError::OriginUnavailable
        })?;
        Ok(Answer::forwarded(response))
    }
}

/// `host[:port]` with a DNS name or IPv4 address, or `[IPv6][:port]`; no user info, path, query or fragment.
fn valid_authority(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, rest)) => match rest.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_ok =
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok && (authority.starts_with('[') || !host.contains(':'))
}

/// The path and query of an absolute URL, as on the request line (a fragment never reaches a server).
fn path_and_query(url: &str) -> String {
    let without_fragment = url.split('#').next().unwrap_or_default();
    let after_scheme = without_fragment.split_once("://").map_or(without_fragment, |(_, rest)| rest);
    match after_scheme.find(['/', '?']) {
        Some(i) if after_scheme[i..].starts_with('/') => after_scheme[i..].to_owned(),
        Some(i) => format!("/{}", &after_scheme[i..]),
        None => "/".to_owned(),
    }
}

/// A header value the origin can decode with a plain URL-unquote: `%`, `,`, and every byte outside printable
/// ASCII (including spaces and non-ASCII group names) are percent-encoded; everything else is kept as is.
pub fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' && byte != b',' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Profile, User};

    fn session() -> Session {
        Session {
            format: crate::login::SESSION_FORMAT,
            session_id: 7,
            user: User {
                id: 42,
                email: Some("jane.doe@example.com".into()),
                first_name: "Jane".into(),
                last_name: "Doe".into(),
                is_active: true,
                profile: Profile::default(),
                groups: vec!["Employees".into(), "Field Ops, North".into()],
                in_employee_group: true,
            },
            issued_at: crate::domain::UnixTime(1_800_000_000),
            expires_at: crate::domain::UnixTime(1_800_000_900),
        }
    }

    #[test]
    fn only_a_bare_origin_and_a_long_secret_configure_the_gateway() {
        let secret = "s".repeat(32);
        assert_eq!(Gateway::parse("https://crm.example.com/", &secret).unwrap().origin, "https://crm.example.com");
        assert_eq!(Gateway::parse("http://127.0.0.1:9000", &secret).unwrap().origin, "http://127.0.0.1:9000");
        assert_eq!(
            Gateway::parse("https://CRM.example.com:8443", &secret).unwrap().origin,
            "https://crm.example.com:8443"
        );
        assert_eq!(Gateway::parse("http://[::1]:8080/", &secret).unwrap().origin, "http://[::1]:8080");
        for bad in [
            "crm.example.com",
            "ftp://crm.example.com",
            "https://crm.example.com/api",
            "https://a.b/?x=1",
            "https://user:pw@a.b",
            "https://a.b:port",
            "https://",
            "http://[::1",
            "http://a.b:1:2",
        ] {
            assert!(Gateway::parse(bad, &secret).is_err(), "{bad}");
        }
        assert!(Gateway::parse("https://crm.example.com", "short").is_err());
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_the_documented_canonical_string() {
        let gateway = Gateway::parse("https://crm.example.com", "k".repeat(32).as_str()).unwrap();
        let values = gateway.identity("POST", "/api/leads/?page=2", &session(), UnixTime(1_800_000_100));
        assert_eq!(values[..5], ["1800000100", "42", "jane.doe@example.com", "Employees,Field%20Ops%2C%20North", "7"]);
        let canonical = "v1\nPOST\n/api/leads/?page=2\n1800000100\n42\njane.doe@example.com\n\
                         Employees,Field%20Ops%2C%20North\n7";
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice("k".repeat(32).as_bytes()).unwrap();
        mac.update(canonical.as_bytes());
        assert_eq!(values[5], hex::encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn the_signature_binds_method_path_time_and_identity() {
        let gateway = Gateway::parse("https://crm.example.com", "k".repeat(32).as_str()).unwrap();
        let base = gateway.identity("GET", "/api/a", &session(), UnixTime(1))[5].clone();
        assert_ne!(base, gateway.identity("POST", "/api/a", &session(), UnixTime(1))[5]);
        assert_ne!(base, gateway.identity("GET", "/api/b", &session(), UnixTime(1))[5]);
        assert_ne!(base, gateway.identity("GET", "/api/a", &session(), UnixTime(2))[5]);
        let mut other = session();
        other.user.id = 43;
        assert_ne!(base, gateway.identity("GET", "/api/a", &other, UnixTime(1))[5]);
    }

    #[test]
    fn the_signed_path_is_the_request_lines_path_and_query() {
        assert_eq!(path_and_query("https://edge.example.com/api/leads/?page=2"), "/api/leads/?page=2");
        assert_eq!(path_and_query("https://edge.example.com:8443/a%2Fb?x=1#frag"), "/a%2Fb?x=1");
        assert_eq!(path_and_query("https://edge.example.com?x=1"), "/?x=1");
        assert_eq!(path_and_query("https://edge.example.com"), "/");
    }

    #[test]
    fn client_sent_credentials_and_identity_headers_are_dropped() {
        for name in ["Authorization", "host", "X-Auth-User-Id", "x-auth-signature", "X-AUTH-anything"] {
            assert!(dropped(name), "{name}");
        }
        for name in ["Content-Type", "Accept", "X-Authorization-Hint", "Cookie"] {
            assert!(!dropped(name), "{name}");
        }
    }

    #[test]
    fn header_values_percent_encode_separators_and_non_ascii() {
        assert_eq!(header_safe("Employés"), "Employ%C3%A9s");
        assert_eq!(header_safe("a,b %"), "a%2Cb%20%25");
        assert_eq!(header_safe("jane+crm@example.com"), "jane+crm@example.com");
    }
}
