//! Every answer the service gives: its own, built in Rust and handed to the runtime in one step, or the origin's
//! (gateway mode), passed on with the edge's headers added.
//!
//! Every call from wasm into the runtime's JavaScript costs a boundary crossing and a string copy. Building a
//! `worker::Response` costs one crossing per header, and again to turn it into the runtime's `Response`, which
//! made answering the largest part of an authenticated call's CPU time. An [`Answer`] collects status, headers and
//! body in Rust, and [`Answer::into_web`] creates the runtime's `Response` with two crossings.

use serde_json::Value;
use worker::js_sys;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::web_sys;
use worker::worker_sys::ext::{ResponseExt, ResponseInitExt};

/// A status, headers (in order; a name may repeat) and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    None,
    Text(String),
    /// The origin's response: its status, headers and body (a stream, never read here) come first; the answer's
    /// headers are added to them.
    Origin(web_sys::Response),
}

impl Answer {
    /// `body` as JSON, with the headers every JSON answer carries. Answers hold codes' metadata and tokens: never
    /// cached.
    pub fn json(status: u16, body: &Value) -> Answer {
        Answer::json_as(status, body, "application/json")
    }

    /// Like [`Answer::json`], with another JSON media type (`application/scim+json`).
    pub fn json_as(status: u16, body: &Value, content_type: &'static str) -> Answer {
        Answer::json_text(status, body.to_string(), content_type)
    }

    /// A body already serialised as JSON, with the headers every JSON answer carries.
    pub fn json_text(status: u16, body: String, content_type: &'static str) -> Answer {
        Answer {
            status,
            headers: vec![
                ("Content-Type", content_type.into()),
                ("Cache-Control", "no-store".into()),
                ("X-Content-Type-Options", "nosniff".into()),
            ],
            body: Body::Text(body),
        }
    }

    /// No body (a preflight's 204).
    pub fn empty(status: u16) -> Answer {
        Answer { status, headers: Vec::new(), body: Body::None }
    }

    /// The origin's response as it came (gateway mode), redirects included.
    pub fn forwarded(origin: web_sys::Response) -> Answer {
        Answer { status: origin.status(), headers: Vec::new(), body: Body::Origin(origin) }
    }

    /// Adds a header; an earlier one of the same name stays (as `Headers.append` does). On a forwarded answer it
    /// replaces the origin's headers of that name, except `Vary`, which it extends.
    pub fn header(&mut self, name: &'static str, value: impl Into<String>) {
        self.headers.push((name, value.into()));
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    #[cfg(test)]
    pub fn body(&self) -> Option<&str> {
        match &self.body {
            Body::Text(text) => Some(text),
            Body::None | Body::Origin(_) => None,
        }
    }

    /// The `ResponseInit` as JSON: `{"status":200,"headers":[["Content-Type","application/json"],...]}`.
    fn init_json(&self) -> String {
        let headers: Vec<[&str; 2]> = self.headers.iter().map(|(n, v)| [*n, v.as_str()]).collect();
        serde_json::json!({ "status": self.status, "headers": headers }).to_string()
    }

    /// The runtime's `Response`: for the service's own answers, the init parsed by `JSON.parse`, then the
    /// constructor.
    pub fn into_web(self) -> Result<web_sys::Response, JsValue> {
        let text = match &self.body {
            Body::Origin(origin) => return pass_on(origin, &self.headers),
            Body::Text(text) => Some(text.as_str()),
            Body::None => None,
        };
        let init: web_sys::ResponseInit = js_sys::JSON::parse(&self.init_json())?.unchecked_into();
        web_sys::Response::new_with_opt_str_and_init(text, &init)
    }
}

/// A new `Response` with the origin's status, body and WebSocket, and a copy of its headers (a fetched response's
/// own are immutable) with `added` in place of the origin's of the same names, `Vary` appended to.
fn pass_on(origin: &web_sys::Response, added: &[(&'static str, String)]) -> Result<web_sys::Response, JsValue> {
    let headers = web_sys::Headers::new_with_headers(&origin.headers())?;
    for (name, _) in added.iter().filter(|(name, _)| *name != "Vary") {
        headers.delete(name)?;
    }
    for (name, value) in added {
        headers.append(name, value)?;
    }
    let mut init = web_sys::ResponseInit::new();
    init.set_status(origin.status());
    init.set_headers(&headers);
    if let Some(websocket) = origin.websocket() {
        init.websocket(&websocket)?;
    }
    web_sys::Response::new_with_opt_readable_stream_and_init(origin.body().as_ref(), &init)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_carry_the_no_store_headers_and_keep_repeated_names_in_order() {
        let mut answer = Answer::json(429, &serde_json::json!({ "ok": false }));
        answer.header("Vary", "Origin");
        answer.header("Vary", "Accept-Encoding");
        assert_eq!(answer.status(), 429);
        assert_eq!(answer.body(), Some(r#"{"ok":false}"#));
        let init: Value = serde_json::from_str(&answer.init_json()).unwrap();
        assert_eq!(
            init,
            serde_json::json!({
                "status": 429,
                "headers": [
                    ["Content-Type", "application/json"],
                    ["Cache-Control", "no-store"],
                    ["X-Content-Type-Options", "nosniff"],
                    ["Vary", "Origin"],
                    ["Vary", "Accept-Encoding"],
                ],
            })
        );
    }

    #[test]
    fn header_values_are_escaped_as_json_strings() {
        let mut answer = Answer::empty(204);
        answer.header("WWW-Authenticate", "Token realm=\"api\", error=\"invalid_token\"");
        let init: Value = serde_json::from_str(&answer.init_json()).unwrap();
        assert_eq!(init["headers"][0][1], "Token realm=\"api\", error=\"invalid_token\"");
        assert_eq!(answer.body(), None);
    }
}
