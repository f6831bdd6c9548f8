//! The incoming request, read from the runtime's `Request` only as far as a route needs it.
//!
//! `worker::Request` reads the method, the URL, the headers object and a deep copy of `request.cf` up front, for
//! every request; an authenticated call needs only the path, the method and one header. Here each part is read when
//! it is first asked for, and `cf` (which the runtime copies on every read) at most once.

use std::cell::OnceCell;

use worker::js_sys::{self, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::ext::RequestExt;
use worker::{web_sys, Cf};

pub struct Incoming {
    raw: web_sys::Request,
    headers: web_sys::Headers,
    method: String,
    path: String,
    cf: OnceCell<Option<Cf>>,
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// More than the cap arrived (the rest is not read).
    TooLarge,
    /// The stream failed or did not yield bytes.
    Unreadable,
}

impl Incoming {
    pub fn new(raw: web_sys::Request) -> Incoming {
        let headers = raw.headers();
        let method = raw.method();
        let path = path_of(&raw.url()).to_owned();
        Incoming { raw, headers, method, path, cf: OnceCell::new() }
    }

    /// The method as the runtime normalised it (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL's path, as sent (not percent-decoded), without query or fragment.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The whole URL, query included (the SCIM routes read their query from it, the gateway forwards it).
    pub fn url(&self) -> String {
        self.raw.url()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).ok().flatten()
    }

    /// Cloudflare's properties of the request (geolocation among them), read once.
    pub fn cf(&self) -> Option<&Cf> {
        self.cf.get_or_init(|| self.raw.cf().map(Cf::from)).as_ref()
    }

    /// Every header, for the gateway, which forwards them.
    pub fn headers(&self) -> &web_sys::Headers {
        &self.headers
    }

    /// The body as the runtime's stream, unread (the gateway forwards it); `None` without a body.
    pub fn body_stream(&self) -> Option<web_sys::ReadableStream> {
        self.raw.body()
    }

    /// The whole body, refusing it as soon as more than `max` bytes have arrived. No body is an empty one.
    pub async fn body(&self, max: usize) -> Result<Vec<u8>, BodyError> {
        let Some(stream) = self.raw.body() else { return Ok(Vec::new()) };
        let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let mut body = Vec::new();
        loop {
            let step = JsFuture::from(reader.read()).await.map_err(|_| BodyError::Unreadable)?;
            if field(&step, "done").as_bool().unwrap_or(true) {
                return Ok(body);
            }
            let chunk: Uint8Array = field(&step, "value").dyn_into().map_err(|_| BodyError::Unreadable)?;
            let len = chunk.length() as usize;
            if body.len() + len > max {
                // The rest of the stream is never read; the runtime discards it with the request.
                let _ = reader.cancel();
                return Err(BodyError::TooLarge);
            }
            let start = body.len();
            body.resize(start + len, 0);
            chunk.copy_to(&mut body[start..]);
        }
    }
}

fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &js_sys::JsString::from(name)).unwrap_or(JsValue::UNDEFINED)
}

/// The path of an absolute URL as the runtime serialises it (`https://host/path?query#fragment`).
fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let Some(slash) = after_scheme.find('/') else { return "/" };
    let path = &after_scheme[slash..];
    path.find(['?', '#']).map_or(path, |end| &path[..end])
}

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn the_path_is_what_lies_between_the_host_and_the_query() {
        assert_eq!(path_of("https://login.example.com/auth/api/mobile/me/"), "/auth/api/mobile/me/");
        assert_eq!(path_of("http://127.0.0.1:8787/auth/api/mobile/me?x=1/2#f"), "/auth/api/mobile/me");
        assert_eq!(path_of("https://login.example.com/a%2Fb/#top"), "/a%2Fb/");
        assert_eq!(path_of("https://login.example.com"), "/");
        assert_eq!(path_of("https://login.example.com/"), "/");
    }
}
