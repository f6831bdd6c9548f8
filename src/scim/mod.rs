//! SCIM 2.0 (RFC 7643, RFC 7644) for provisioning: identity providers (Microsoft Entra ID, Okta) and the CRM
//! create, change, deactivate and group users. Pure: the JSON shapes, filters, PATCH operations and the mapping to
//! the service's users and groups; storage is `adapters::scim`, the HTTP side `http::scim`.

pub mod filter;
pub mod patch;
pub mod resource;

/// The URNs this service speaks.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM error answer (RFC 7644 §3.12): the status, the `scimType` for a 400 or 409, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    /// 400 with a `scimType`: `invalidFilter`, `invalidSyntax`, `invalidPath`, `invalidValue`, `noTarget`,
    /// `mutability`, `tooMany`.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError { status: 400, scim_type: Some(scim_type), detail: detail.into() }
    }

    /// 409 `uniqueness`: another resource already has this value.
    pub fn taken(detail: impl Into<String>) -> ScimError {
        ScimError { status: 409, scim_type: Some("uniqueness"), detail: detail.into() }
    }

    pub fn status(status: u16, detail: impl Into<String>) -> ScimError {
        ScimError { status, scim_type: None, detail: detail.into() }
    }

    pub fn not_found(what: &str) -> ScimError {
        ScimError::status(404, format!("{what} not found."))
    }

    /// The error body; `status` is a string, as RFC 7644 writes it.
    pub fn body(&self) -> serde_json::Value {
        let mut body =
            serde_json::json!({ "schemas": [ERROR], "status": self.status.to_string(), "detail": self.detail });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = scim_type.into();
        }
        body
    }
}
