//! The service's own answers, built in Rust and handed to the runtime in one step.
//!
//! Every call from wasm into the runtime's JavaScript costs a boundary crossing and a string copy. Building a
//! `worker::Response` costs one crossing per header, and again to turn it into the runtime's `Response`, which
//! made answering the largest part of an authenticated call's CPU time. An [`Answer`] collects status, headers and
//! body in Rust, and [`Answer::into_web`] creates the runtime's `Response` with two crossings.

use serde_json::Value;
use worker::js_sys;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::web_sys;

/// A status, headers (in order; a name may repeat) and an optional body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
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
            body: Some(body),
        }
    }

    /// No body (a preflight's 204).
    pub fn empty(status: u16) -> Answer {
        Answer { status, headers: Vec::new(), body: None }
    }

    /// Adds a header; an earlier one of the same name stays (as `Headers.append` does).
    pub fn header(&mut self, name: &'static str, value: impl Into<String>) {
        self.headers.push((name, value.into()));
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    #[cfg(test)]
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// The `ResponseInit` as JSON: `{"status":200,"headers":[["Content-Type","application/json"],...]}`.
    fn init_json(&self) -> String {
        let headers: Vec<[&str; 2]> = self.headers.iter().map(|(n, v)| [*n, v.as_str()]).collect();
        serde_json::json!({ "status": self.status, "headers": headers }).to_string()
    }

    /// The runtime's `Response`: the init parsed by `JSON.parse`, then the constructor.
    pub fn into_web(self) -> Result<web_sys::Response, JsValue> {
        let init: web_sys::ResponseInit = js_sys::JSON::parse(&self.init_json())?.unchecked_into();
        web_sys::Response::new_with_opt_str_and_init(self.body.as_deref(), &init)
    }
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
