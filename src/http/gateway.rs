//! Gateway mode: with `ORIGIN_URL` set, every request outside `/auth/` must carry a live access token and is
//! forwarded to the origin with the user's identity in signed headers.
//!
//! The origin verifies `X-Auth-Signature` = hex(HMAC-SHA-256(`GATEWAY_SIGNING_SECRET`, canonical)) where canonical is
//! the lines `v1`, method, path and query (as on the request line), `X-Auth-Timestamp`, `X-Auth-User-Id`,
//! `X-Auth-User-Email`, `X-Auth-User-Groups`, `X-Auth-Session-Id`, joined by `\n`; and rejects timestamps older
//! than its replay window. README.md shows the Django middleware.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use worker::wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response};

use super::error::ApiError;
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
    pub fn parse(origin_url: &str, secret: &str) -> Result<Gateway, String> {
        let url = url::Url::parse(origin_url.trim()).map_err(|e| format!("ORIGIN_URL {origin_url:?}: {e}"))?;
        let bare = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !bare {
            return Err(format!("ORIGIN_URL {origin_url:?} must be an origin like https://crm.internal.example.com"));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "GATEWAY_SIGNING_SECRET must be a random secret of at least {MIN_SECRET_LEN} characters when \
                 ORIGIN_URL is set"
            ));
        }
        Ok(Gateway { origin: url.origin().ascii_serialization(), key: secret.as_bytes().to_vec() })
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
    pub async fn forward(&self, req: &Request, session: &Session, now: UnixTime) -> Result<Response, ApiError> {
        let url = req.url().map_err(|e| ApiError::internal("gateway url", &e))?;
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let method = req.method();
        let headers = Headers::new();
        for (name, value) in req.headers().entries() {
            if !dropped(&name) {
                headers.append(&name, &value).map_err(|e| ApiError::internal("gateway header", &e))?;
            }
        }
        let identity = self.identity(method.as_ref(), &path_and_query, session, now);
        for (name, value) in IDENTITY_HEADERS.iter().zip(identity.iter()) {
            headers.set(name, value).map_err(|e| ApiError::internal("gateway identity header", &e))?;
        }
        let body = match method {
            Method::Get | Method::Head => None,
            _ => req.inner().body().map(JsValue::from),
        };
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers).with_redirect(RequestRedirect::Manual).with_body(body);
        let forwarded = Request::new_with_init(&format!("{}{path_and_query}", self.origin), &init)
            .map_err(|e| ApiError::internal("gateway request", &e))?;
        Fetch::Request(forwarded).send().await.map_err(|e| {
            worker::console_error!("gateway: origin did not answer: {e}");
            ApiError::OriginUnavailable
        })
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
            issued_at: 1_800_000_000,
            expires_at: 1_800_000_900,
        }
    }

    #[test]
    fn only_a_bare_origin_and_a_long_secret_configure_the_gateway() {
        let secret = "s".repeat(32);
        assert_eq!(Gateway::parse("https://crm.example.com/", &secret).unwrap().origin, "https://crm.example.com");
        assert_eq!(Gateway::parse("http://127.0.0.1:9000", &secret).unwrap().origin, "http://127.0.0.1:9000");
        for bad in ["crm.example.com", "ftp://crm.example.com", "https://crm.example.com/api", "https://a.b/?x=1"] {
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
