//! Users and groups as SCIM resources: reading POST, PUT and patched bodies into the fields the service stores,
//! rendering stored rows, `attributes`/`excludedAttributes`, and paging.
//!
//! The mapping: `userName` is the login email (the service's `Email::parse`), the `mobile` entry of
//! `phoneNumbers` (or the only untyped one) the login phone (`PhoneNumber::parse_allowed`, E.164), `name.givenName`
//! and `name.familyName` the first and last name, `active` whether the user may log in, `title` the designation,
//! the enterprise extension's `department` the branch, `preferredLanguage` the language of their codes, and
//! `externalId` the client's own id. A group is its `displayName` and `members`; whether it is an employee group is
//! the administrator's decision and is never read from a request.

use serde_json::{json, Map, Value};

use super::filter::lookup;
use super::{ScimError, ENTERPRISE_USER, GROUP_SCHEMA, LIST_RESPONSE, USER_SCHEMA};
use crate::domain::{Email, Locale, PhoneNumber, UnixTime};

/// The longest name, title, branch or group name (the admin command's limit).
const MAX_TEXT: usize = 150;
/// The longest `externalId`.
const MAX_EXTERNAL_ID: usize = 255;
/// Default and largest page of a list.
pub const DEFAULT_COUNT: usize = 100;
pub const MAX_COUNT: usize = 1000;

/// A user's provisioned fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserFields {
    pub email: String,
    pub external_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// `None` when the body does not say: a new user is active, an existing one keeps their state.
    pub active: Option<bool>,
    pub phone: Option<String>,
    pub designation: String,
    pub branch: String,
    pub locale: Option<String>,
}

/// A user as stored, with the groups they belong to (id and name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub id: i64,
    pub fields: UserFields,
    pub created: i64,
    pub modified: i64,
    pub groups: Vec<(i64, String)>,
}

/// A group's provisioned fields; `members` are user ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupFields {
    pub name: String,
    pub external_id: Option<String>,
    pub members: Vec<i64>,
}

/// A group as stored, with its members (id and email).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub id: i64,
    pub name: String,
    pub external_id: Option<String>,
    pub created: i64,
    pub modified: i64,
    pub members: Vec<(i64, String)>,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidValue", detail)
}

fn field<'v>(body: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    body.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

/// Free text: trimmed, at most [`MAX_TEXT`] characters, no control characters; absent is empty.
fn text(value: Option<&Value>, name: &str) -> Result<String, ScimError> {
    let Some(value) = value else { return Ok(String::new()) };
    let Some(s) = value.as_str() else { return Err(invalid(format!("{name} must be a string."))) };
    let s = s.trim();
    if s.chars().count() > MAX_TEXT {
        return Err(invalid(format!("{name} is longer than {MAX_TEXT} characters.")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(format!("{name} contains a control character.")));
    }
    Ok(s.to_owned())
}

fn external_id(body: &Map<String, Value>) -> Result<Option<String>, ScimError> {
    match field(body, "externalId") {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_EXTERNAL_ID && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()).filter(|s| !s.is_empty()))
        }
        Some(_) => Err(invalid(format!("externalId must be a string of at most {MAX_EXTERNAL_ID} bytes."))),
    }
}

/// `true`, `false`, or Entra ID's strings `"True"` / `"False"`.
fn boolean(value: &Value, name: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid(format!("{name} must be true or false."))),
    }
}

/// The login phone: the `mobile` entry, or the only entry when it has no type.
fn mobile(value: Option<&Value>) -> Option<&Value> {
    let items = value?.as_array()?;
    let typed =
        |item: &&Value| lookup(item, "type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("mobile"));
    let chosen = items.iter().find(typed).or_else(|| match items.as_slice() {
        [only] if lookup(only, "type").is_none_or(Value::is_null) => Some(only),
        _ => None,
    })?;
    lookup(chosen, "value").filter(|v| !v.is_null() && *v != "")
}

/// Reads a user from a POST or PUT body, or from a patched resource, with the service's own rules.
pub fn user_fields(body: &Map<String, Value>, calling_codes: &[String]) -> Result<UserFields, ScimError> {
    let user_name = field(body, "userName").and_then(Value::as_str).ok_or_else(|| invalid("userName is required."))?;
    let email = Email::parse(user_name)
        .map_err(|_| invalid(format!("userName {user_name:?} is not an email address the service accepts.")))?;
    let name = field(body, "name").cloned().unwrap_or(Value::Null);
    let phone = match mobile(field(body, "phoneNumbers")) {
        None => None,
        Some(Value::String(raw)) => Some(
            PhoneNumber::parse_allowed(raw, calling_codes)
                .map_err(|_| {
                    invalid(format!(
                        "The mobile number {raw:?} is not an international (E.164) number the service accepts."
                    ))
                })?
                .as_str()
                .to_owned(),
        ),
        Some(_) => return Err(invalid("phoneNumbers values must be strings.")),
    };
    let locale = match field(body, "preferredLanguage") {
        None => None,
        Some(Value::String(tag)) if tag.trim().is_empty() => None,
        Some(Value::String(tag)) => Some(
            Locale::parse(tag)
                .map_err(|_| invalid(format!("preferredLanguage {tag:?} is not a language tag.")))?
                .as_str()
                .to_owned(),
        ),
        Some(_) => return Err(invalid("preferredLanguage must be a string.")),
    };
    let department = match field(body, ENTERPRISE_USER) {
        Some(Value::Object(extension)) => field(extension, "department"),
        _ => None,
    };
    Ok(UserFields {
        email: email.as_str().to_owned(),
        external_id: external_id(body)?,
        first_name: text(lookup(&name, "givenName").filter(|v| !v.is_null()), "name.givenName")?,
        last_name: text(lookup(&name, "familyName").filter(|v| !v.is_null()), "name.familyName")?,
        active: field(body, "active").map(|v| boolean(v, "active")).transpose()?,
        phone,
        designation: text(field(body, "title"), "title")?,
        branch: text(department, "department")?,
        locale,
    })
}

/// Reads a group from a POST or PUT body, or from a patched resource.
pub fn group_fields(body: &Map<String, Value>) -> Result<GroupFields, ScimError> {
    let name = text(field(body, "displayName"), "displayName")?;
    if name.is_empty() {
        return Err(invalid("displayName is required."));
    }
    let members = match field(body, "members") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                let id = lookup(item, "value")
                    .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|n| n.to_string())));
                id.and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| invalid("Each member's value must be the id of a user."))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("members must be an array.")),
    };
    Ok(GroupFields { name, external_id: external_id(body)?, members })
}

/// RFC 3339 in UTC, as `meta` carries times.
pub fn timestamp(unix: i64) -> String {
    let t = UnixTime(unix).civil();
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

fn meta(kind: &str, base: &str, id: i64, created: i64, modified: i64) -> Value {
    json!({
        "resourceType": kind,
        "created": timestamp(created),
        "lastModified": timestamp(modified),
        "location": format!("{base}/{kind}s/{id}"),
    })
}

/// A user as SCIM renders it; `base` is the URL of `/scim/v2`.
pub fn user_json(user: &StoredUser, base: &str) -> Value {
    let f = &user.fields;
    let formatted = format!("{} {}", f.first_name, f.last_name).trim().to_owned();
    let mut out = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER],
        "id": user.id.to_string(),
        "userName": f.email,
        "name": { "givenName": f.first_name, "familyName": f.last_name, "formatted": formatted },
        "displayName": formatted,
        "active": f.active.unwrap_or(true),
        "emails": [{ "value": f.email, "type": "work", "primary": true }],
        "title": f.designation,
        ENTERPRISE_USER: { "department": f.branch },
        "groups": user.groups.iter().map(|(id, name)| json!({
            "value": id.to_string(), "display": name, "$ref": format!("{base}/Groups/{id}"),
        })).collect::<Vec<_>>(),
        "meta": meta("User", base, user.id, user.created, user.modified),
    });
    if let Some(id) = &f.external_id {
        out["externalId"] = id.as_str().into();
    }
    if let Some(phone) = &f.phone {
        out["phoneNumbers"] = json!([{ "value": phone, "type": "mobile", "primary": true }]);
    }
    if let Some(locale) = &f.locale {
        out["preferredLanguage"] = locale.as_str().into();
    }
    out
}

/// A group as SCIM renders it.
pub fn group_json(group: &StoredGroup, base: &str) -> Value {
    let mut out = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id.to_string(),
        "displayName": group.name,
        "members": group.members.iter().map(|(id, email)| json!({
            "value": id.to_string(), "display": email, "$ref": format!("{base}/Users/{id}"),
        })).collect::<Vec<_>>(),
        "meta": meta("Group", base, group.id, group.created, group.modified),
    });
    if let Some(id) = &group.external_id {
        out["externalId"] = id.as_str().into();
    }
    out
}

/// One entry of `attributes` or `excludedAttributes`: a top-level attribute (the extension's URN for its
/// attributes), and optionally one of its sub-attributes.
fn split_attribute(raw: &str) -> (String, Option<String>) {
    let raw = raw.trim();
    for core in [USER_SCHEMA, GROUP_SCHEMA] {
        if raw.len() > core.len() && raw[..core.len()].eq_ignore_ascii_case(core) && raw.as_bytes()[core.len()] == b':'
        {
            return split_attribute(&raw[core.len() + 1..]);
        }
    }
    if raw.len() >= ENTERPRISE_USER.len() && raw[..ENTERPRISE_USER.len()].eq_ignore_ascii_case(ENTERPRISE_USER) {
        let sub = raw[ENTERPRISE_USER.len()..].strip_prefix(':').map(str::to_owned);
        return (ENTERPRISE_USER.to_owned(), sub);
    }
    match raw.split_once('.') {
        Some((top, sub)) => (top.to_owned(), Some(sub.to_owned())),
        None => (raw.to_owned(), None),
    }
}

/// Applies `attributes` (only these, plus `id` and `schemas`) or `excludedAttributes` (all but these) to a
/// rendered resource (RFC 7644 §3.4.2.5).
pub fn project(resource: &mut Value, attributes: Option<&str>, excluded: Option<&str>) {
    let Some(object) = resource.as_object_mut() else { return };
    let list = |text: &str| text.split(',').filter(|a| !a.trim().is_empty()).map(split_attribute).collect::<Vec<_>>();
    let wanted = attributes.map(list).filter(|w| !w.is_empty());
    let excluded = excluded.map(list).unwrap_or_default();
    // Whether `list` names `key` as a whole (sub None) or names its sub-attribute `sub`.
    let names = |list: &[(String, Option<String>)], key: &str, sub: Option<&str>| {
        list.iter().any(|(top, s)| {
            top.eq_ignore_ascii_case(key)
                && match (s.as_deref(), sub) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => false,
                }
        })
    };
    // Rebuilt rather than pruned in place: what is kept is inserted into a new object.
    let mut kept = Map::new();
    for (key, value) in std::mem::take(object) {
        let always = key == "id" || key == "schemas";
        let asked = wanted.as_ref().is_none_or(|w| w.iter().any(|(top, _)| top.eq_ignore_ascii_case(&key)));
        if !always && (!asked || names(&excluded, &key, None)) {
            continue;
        }
        let whole = wanted.as_ref().is_none_or(|w| names(w, &key, None));
        let value = match value {
            Value::Object(inner) if !always => {
                let mut sub_kept = Map::new();
                for (sub, v) in inner {
                    let asked = whole || wanted.as_ref().is_some_and(|w| names(w, &key, Some(&sub)));
                    if asked && !names(&excluded, &key, Some(&sub)) {
                        sub_kept.insert(sub, v);
                    }
                }
                Value::Object(sub_kept)
            }
            other => other,
        };
        kept.insert(key, value);
    }
    *object = kept;
}

/// `startIndex` (1-based; below 1 reads as 1) and `count` (at most [`MAX_COUNT`]; negative reads as 0).
pub fn page(start_index: Option<&str>, count: Option<&str>) -> Result<(usize, usize), ScimError> {
    let number = |raw: Option<&str>, name: &str, default: i64| -> Result<i64, ScimError> {
        raw.map_or(Ok(default), |s| s.trim().parse::<i64>().map_err(|_| invalid(format!("{name} must be an integer."))))
    };
    let start = number(start_index, "startIndex", 1)?.max(1);
    let count = number(count, "count", DEFAULT_COUNT as i64)?.clamp(0, MAX_COUNT as i64);
    Ok((usize::try_from(start).unwrap_or(1), usize::try_from(count).unwrap_or(0)))
}

/// A `ListResponse`.
pub fn list(total: u64, start: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests;
