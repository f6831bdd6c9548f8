//! Small writers for the providers' request bodies and headers: JSON objects, string literals, Basic credentials,
//! and the sender's display name.

use base64::Engine;

/// A JSON object written field by field. Provider bodies are small; one non-generic builder compiles to much less
/// wasm than `serde_json::json!`, which expands a map insertion per field at every call site.
pub struct JsonObject(String);

impl JsonObject {
    pub fn new() -> JsonObject {
        JsonObject(String::from("{"))
    }

    /// Adds `key` with a string value.
    pub fn text(self, key: &str, value: &str) -> JsonObject {
        self.raw(key, &quote(value))
    }

    /// Adds `key` with `json`, which must already be valid JSON.
    pub fn raw(mut self, key: &str, json: &str) -> JsonObject {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&quote(key));
        self.0.push(':');
        self.0.push_str(json);
        self
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

impl Default for JsonObject {
    fn default() -> Self {
        JsonObject::new()
    }
}

/// `text` as a JSON string literal.
pub fn quote(text: &str) -> String {
    // Serialising a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// `Basic` credentials for an `Authorization` header.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Splits `CRM <login@example.com>` into its display name and address; a bare address has no name.
pub fn split_sender(from: &str) -> (Option<&str>, &str) {
    let from = from.trim();
    match (from.rfind('<'), from.strip_suffix('>')) {
        (Some(open), Some(inner)) => {
            let name = from[..open].trim().trim_matches('"').trim();
            ((!name.is_empty()).then_some(name), inner[open + 1..].trim())
        }
        _ => (None, from),
    }
}
