//! PATCH (RFC 7644 §3.5.2) as Entra ID and Okta send it, applied to a resource's JSON.
//!
//! The operations change the resource as this service renders it; the result is then read back by the same
//! function that reads a POST or PUT body, so a PATCH can never store what a PUT would refuse. Accepted beside the
//! RFC, because real clients send them: operation names in any case (`Replace`), a path-less `add`/`replace`
//! whose value names attributes by path (`{"name.givenName": "Sam"}`, `{"urn:…:enterprise:2.0:User:department":
//! "East"}`), `remove` of `members` with a value listing the members to remove, and `add` or `replace` through a
//! filter that matches nothing (`phoneNumbers[type eq "mobile"].value`), which creates the element.

use serde_json::{Map, Value};

use super::filter::{self, Filter};
use super::{ScimError, ENTERPRISE_USER, GROUP_SCHEMA, USER_SCHEMA};

/// Most operations one request may carry.
const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Add,
    Replace,
    Remove,
}

/// A PATCH path: `[urn:…:]attr[filter][.sub]`.
#[derive(Debug, PartialEq)]
struct Path {
    /// The extension object the attribute lives in (only the enterprise user extension), or the resource itself.
    extension: Option<&'static str>,
    attr: String,
    filter: Option<Filter>,
    sub: Option<String>,
}

fn invalid_path(path: &str) -> ScimError {
    ScimError::bad("invalidPath", format!("The path {path:?} is not valid."))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

fn parse_path(raw: &str) -> Result<Path, ScimError> {
    let mut rest = raw.trim();
    let mut extension = None;
    for core in [USER_SCHEMA, GROUP_SCHEMA] {
        if let Some(tail) = strip_prefix_ignore_case(rest, core).and_then(|t| t.strip_prefix(':')) {
            rest = tail;
        }
    }
    if let Some(tail) = strip_prefix_ignore_case(rest, ENTERPRISE_USER) {
        extension = Some(ENTERPRISE_USER);
        rest = tail.strip_prefix(':').ok_or_else(|| invalid_path(raw))?;
    }
    let (head, filter, tail) = match rest.find('[') {
        Some(open) => {
            let close = rest.rfind(']').filter(|&c| c > open).ok_or_else(|| invalid_path(raw))?;
            let filter = filter::parse(&rest[open + 1..close]).map_err(|_| invalid_path(raw))?;
            (&rest[..open], Some(filter), &rest[close + 1..])
        }
        None => match rest.split_once('.') {
            Some((head, _)) => (head, None, &rest[head.len()..]),
            None => (rest, None, ""),
        },
    };
    let sub = match tail {
        "" => None,
        _ => Some(
            tail.strip_prefix('.').filter(|s| !s.is_empty() && !s.contains('.')).ok_or_else(|| invalid_path(raw))?,
        ),
    };
    let valid_name = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if !valid_name(head) || sub.is_some_and(|s| !valid_name(s)) {
        return Err(invalid_path(raw));
    }
    Ok(Path { extension, attr: head.to_owned(), filter, sub: sub.map(str::to_owned) })
}

/// The key of `object` equal to `name` ignoring case (SCIM attribute names are case-insensitive), or `name`.
fn key_of(object: &Map<String, Value>, name: &str) -> String {
    object.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned().unwrap_or_else(|| name.to_owned())
}

/// The object at `key`, created (or replaced, if it held something else) when `create`.
fn child<'m>(object: &'m mut Map<String, Value>, name: &str, create: bool) -> Option<&'m mut Map<String, Value>> {
    let key = key_of(object, name);
    if create && !object.get(&key).is_some_and(Value::is_object) {
        object.insert(key.clone(), Value::Object(Map::new()));
    }
    object.get_mut(&key)?.as_object_mut()
}

/// Two elements of a multi-valued attribute are the same when their `value`s are.
fn same_value(a: &Value, b: &Value) -> bool {
    match (filter::lookup(a, "value"), filter::lookup(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Applies a PatchOp body to `resource`.
pub fn apply(resource: &mut Map<String, Value>, body: &Map<String, Value>) -> Result<(), ScimError> {
    let operations = body
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ScimError::bad("invalidSyntax", "A PATCH body needs an Operations array."))?;
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        return Err(ScimError::bad("invalidSyntax", format!("Send 1 to {MAX_OPERATIONS} operations.")));
    }
    for operation in operations {
        let field = |name: &str| filter::lookup(operation, name);
        let verb = match field("op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            Some("add") => Verb::Add,
            Some("replace") => Verb::Replace,
            Some("remove") => Verb::Remove,
            _ => return Err(ScimError::bad("invalidSyntax", "Each operation's op must be add, replace or remove.")),
        };
        let value = field("value").filter(|v| !v.is_null());
        match field("path").and_then(Value::as_str).filter(|p| !p.trim().is_empty()) {
            Some(path) => at_path(resource, verb, &parse_path(path)?, value)?,
            None if verb == Verb::Remove => {
                return Err(ScimError::bad("noTarget", "A remove operation needs a path."));
            }
            None => {
                let Some(Value::Object(values)) = value else {
                    return Err(ScimError::bad("invalidValue", "An operation without a path needs an object value."));
                };
                for (name, value) in values {
                    if name.eq_ignore_ascii_case(ENTERPRISE_USER) {
                        let Value::Object(inner) = value else { return Err(invalid_path(name)) };
                        for (sub, value) in inner {
                            let path = Path { extension: Some(ENTERPRISE_USER), ..parse_path(sub)? };
                            at_path(resource, verb, &path, Some(value))?;
                        }
                    } else {
                        at_path(resource, verb, &parse_path(name)?, Some(value))?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn at_path(resource: &mut Map<String, Value>, verb: Verb, path: &Path, value: Option<&Value>) -> Result<(), ScimError> {
    if verb != Verb::Remove && value.is_none() {
        return Err(ScimError::bad("invalidValue", format!("The {} operation needs a value.", path.attr)));
    }
    let container = match path.extension {
        Some(urn) => match child(resource, urn, verb != Verb::Remove) {
            Some(object) => object,
            None => return Ok(()),
        },
        None => resource,
    };
    let key = key_of(container, &path.attr);
    match (&path.filter, &path.sub) {
        (None, None) => set(container, key, verb, value),
        (None, Some(sub)) => {
            if let Some(Value::Array(items)) = container.get_mut(&key) {
                // `emails.value`: every element's sub-attribute.
                items.iter_mut().filter_map(Value::as_object_mut).for_each(|item| set_sub(item, sub, verb, value));
            } else if let Some(object) = child(container, &key, verb != Verb::Remove) {
                set_sub(object, sub, verb, value);
            }
        }
        (Some(filter), sub) => {
            let items = match container.get_mut(&key) {
                Some(Value::Array(items)) => items,
                _ if verb == Verb::Remove => return Ok(()),
                _ => {
                    container.insert(key.clone(), Value::Array(Vec::new()));
                    container.get_mut(&key).and_then(Value::as_array_mut).ok_or_else(|| invalid_path(&key))?
                }
            };
            let matched: Vec<usize> = (0..items.len()).filter(|&i| filter.matches(&items[i])).collect();
            match (verb, sub) {
                (Verb::Remove, None) => {
                    let mut index = 0;
                    items.retain(|_| {
                        index += 1;
                        !matched.contains(&(index - 1))
                    });
                }
                (_, sub) => {
                    if matched.is_empty() && verb != Verb::Remove {
                        // Entra ID adds `phoneNumbers[type eq "mobile"].value` for a number that is not there yet.
                        let mut element = Map::new();
                        for (attr, value) in filter.equalities() {
                            element.insert(attr, value);
                        }
                        items.push(Value::Object(element));
                        let last = items.len() - 1;
                        return at_path_matched(items, &[last], sub, verb, value);
                    }
                    return at_path_matched(items, &matched, sub, verb, value);
                }
            }
        }
    }
    Ok(())
}

fn at_path_matched(
    items: &mut [Value],
    matched: &[usize],
    sub: &Option<String>,
    verb: Verb,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    for &i in matched {
        match (sub, &mut items[i]) {
            (Some(sub), Value::Object(item)) => set_sub(item, sub, verb, value),
            (None, item) => match value {
                Some(Value::Object(fields)) if item.is_object() => {
                    let object = item.as_object_mut().ok_or_else(|| invalid_path("element"))?;
                    for (k, v) in fields {
                        object.insert(key_of(object, k), v.clone());
                    }
                }
                Some(v) => *item = v.clone(),
                None => {}
            },
            _ => {}
        }
    }
    Ok(())
}

fn set_sub(object: &mut Map<String, Value>, sub: &str, verb: Verb, value: Option<&Value>) {
    let key = key_of(object, sub);
    set(object, key, verb, value);
}

fn set(container: &mut Map<String, Value>, key: String, verb: Verb, value: Option<&Value>) {
    match (verb, value, container.get_mut(&key)) {
        (Verb::Remove, Some(Value::Array(gone)), Some(Value::Array(items))) => {
            items.retain(|item| !gone.iter().any(|g| same_value(item, g)));
        }
        // Null is what an absent attribute reads as; inserting it spares the Worker a map's removal code.
        (Verb::Remove, _, _) => {
            container.insert(key, Value::Null);
        }
        (Verb::Add, Some(Value::Array(more)), Some(Value::Array(items))) => {
            for item in more {
                if !items.iter().any(|have| same_value(have, item)) {
                    items.push(item.clone());
                }
            }
        }
        (Verb::Add, Some(Value::Object(more)), Some(Value::Object(object))) => {
            for (k, v) in more {
                object.insert(key_of(object, k), v.clone());
            }
        }
        (_, Some(value), _) => {
            container.insert(key, value.clone());
        }
        (_, None, _) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(resource: Value, operations: Value) -> Value {
        let mut resource = resource.as_object().unwrap().clone();
        let body = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations });
        apply(&mut resource, body.as_object().unwrap()).unwrap();
        Value::Object(resource)
    }

    fn error(operations: Value) -> ScimError {
        let body = json!({ "Operations": operations });
        apply(&mut Map::new(), body.as_object().unwrap()).unwrap_err()
    }

    #[test]
    fn entra_id_replaces_with_capitalised_ops_paths_and_string_booleans() {
        let user = json!({ "userName": "sam@example.com", "active": true, "name": { "givenName": "Sam" } });
        let out = patched(
            user,
            json!([
                { "op": "Replace", "path": "active", "value": "False" },
                { "op": "Replace", "path": "name.familyName", "value": "Lee" },
                { "op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 555 0123" },
                { "op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "East" },
                { "op": "Replace", "path": "title", "value": "Technician" }
            ]),
        );
        assert_eq!(out["active"], "False");
        assert_eq!(out["name"], json!({ "givenName": "Sam", "familyName": "Lee" }));
        assert_eq!(out["phoneNumbers"], json!([{ "type": "mobile", "value": "+1 555 555 0123" }]));
        assert_eq!(out[ENTERPRISE_USER]["department"], "East");
        assert_eq!(out["title"], "Technician");
    }

    #[test]
    fn okta_deactivates_with_a_path_less_replace_and_entra_sends_dotted_keys_in_one() {
        let out =
            patched(json!({ "active": true, "name": {} }), json!([{ "op": "replace", "value": { "active": false } }]));
        assert_eq!(out["active"], false);
        let out = patched(
            json!({ "name": { "givenName": "A" } }),
            json!([{ "op": "replace", "value": {
                "name.givenName": "Sam",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": "West" }
            } }]),
        );
        assert_eq!(out["name"]["givenName"], "Sam");
        assert_eq!(out[ENTERPRISE_USER]["department"], "West");
    }

    #[test]
    fn members_are_added_once_and_removed_by_filter_path_or_by_value_list() {
        let group = json!({ "displayName": "Sales", "members": [{ "value": "1" }, { "value": "2" }] });
        let out = patched(
            group.clone(),
            json!([{ "op": "add", "path": "members", "value": [{ "value": "2" }, { "value": "3" }] }]),
        );
        assert_eq!(out["members"], json!([{ "value": "1" }, { "value": "2" }, { "value": "3" }]));
        // Okta: a filter in the path.
        let out = patched(group.clone(), json!([{ "op": "remove", "path": "members[value eq \"1\"]" }]));
        assert_eq!(out["members"], json!([{ "value": "2" }]));
        // Entra ID: the members to remove as the value.
        let out = patched(group.clone(), json!([{ "op": "Remove", "path": "members", "value": [{ "value": "2" }] }]));
        assert_eq!(out["members"], json!([{ "value": "1" }]));
        let out = patched(group.clone(), json!([{ "op": "remove", "path": "members" }]));
        assert!(out["members"].is_null());
        let out = patched(group, json!([{ "op": "replace", "path": "members", "value": [{ "value": "9" }] }]));
        assert_eq!(out["members"], json!([{ "value": "9" }]));
    }

    #[test]
    fn okta_renames_a_group_with_a_path_less_replace() {
        let out = patched(
            json!({ "id": "4", "displayName": "Old" }),
            json!([{ "op": "replace", "value": { "id": "4", "displayName": "New" } }]),
        );
        assert_eq!(out["displayName"], "New");
    }

    #[test]
    fn attribute_names_are_case_insensitive() {
        let out =
            patched(json!({ "displayName": "A" }), json!([{ "op": "replace", "path": "DISPLAYNAME", "value": "B" }]));
        assert_eq!(out, json!({ "displayName": "B" }));
    }

    #[test]
    fn bad_operations_are_refused_with_their_scim_type() {
        assert_eq!(error(json!([{ "op": "move", "path": "x", "value": 1 }])).scim_type, Some("invalidSyntax"));
        assert_eq!(error(json!([{ "op": "remove" }])).scim_type, Some("noTarget"));
        assert_eq!(error(json!([{ "op": "replace", "value": "x" }])).scim_type, Some("invalidValue"));
        assert_eq!(
            error(json!([{ "op": "add", "path": "members[value eq ", "value": [] }])).scim_type,
            Some("invalidPath")
        );
        assert_eq!(error(json!([{ "op": "add", "path": "a b", "value": 1 }])).scim_type, Some("invalidPath"));
        assert_eq!(error(json!([])).scim_type, Some("invalidSyntax"));
        let body = json!({ "schemas": [] });
        assert_eq!(apply(&mut Map::new(), body.as_object().unwrap()).unwrap_err().scim_type, Some("invalidSyntax"));
    }
}
