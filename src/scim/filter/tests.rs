use super::*;
use serde_json::json;

fn columns(attr: &str) -> Option<Column> {
    match attr {
        "username" => Some(Column { expr: "u.email", kind: Kind::Lower }),
        "externalid" => Some(Column { expr: "u.external_id", kind: Kind::Exact }),
        "displayname" => Some(Column { expr: "d.name", kind: Kind::Text }),
        "active" => Some(Column { expr: "u.is_active", kind: Kind::Boolean }),
        "meta.lastmodified" => Some(Column { expr: "u.updated_at", kind: Kind::Time }),
        _ => None,
    }
}

fn sql(filter: &str) -> Result<(String, Vec<Value>), ScimError> {
    let mut params = Vec::new();
    let sql = parse(filter)?.to_sql(&columns, &mut params)?;
    Ok((sql, params))
}

#[test]
fn the_filters_identity_providers_send_become_bound_sql() {
    assert_eq!(
        sql(r#"userName eq "Sam.Lee@Example.com""#).unwrap(),
        ("u.email = lower(?)".into(), vec![json!("Sam.Lee@Example.com")])
    );
    assert_eq!(
        sql(r#"externalId eq "a1" and userName eq "x@example.com""#).unwrap().0,
        "(u.external_id = ? AND u.email = lower(?))"
    );
    assert_eq!(sql("DISPLAYNAME EQ \"Sales\"").unwrap().0, "lower(d.name) = lower(?)");
    assert_eq!(sql("active eq false").unwrap(), ("u.is_active = ?".into(), vec![json!(0)]));
}

#[test]
fn precedence_parentheses_not_and_present_follow_the_rfc() {
    let (text, params) = sql(r#"userName sw "a" or not (externalId pr) and displayName co "b""#).unwrap();
    assert_eq!(
        text,
        "(substr(u.email, 1, length(?)) = lower(?) OR ((NOT (u.external_id IS NOT NULL AND u.external_id <> '')) \
             AND instr(lower(d.name), lower(?)) > 0))"
    );
    assert_eq!(params, vec![json!("a"), json!("a"), json!("b")]);
    assert!(sql(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#).unwrap().0.contains("unixepoch(?)"));
}

#[test]
fn strings_keep_their_escapes_and_hostile_text_stays_a_value() {
    let (text, params) = sql(r#"userName eq "a\"b' OR 1=1 --@x.com""#).unwrap();
    assert_eq!(text, "u.email = lower(?)");
    assert_eq!(params, vec![json!("a\"b' OR 1=1 --@x.com")]);
}

#[test]
fn malformed_or_unsupported_filters_are_invalid_filter_errors() {
    for bad in [
        "userName",
        "userName eq",
        r#"userName eq "open"#,
        r#"userName xx "a""#,
        r#"(userName eq "a""#,
        r#"userName eq "a" junk"#,
        r#"password eq "a""#,
        r#"emails[type eq "work"] pr"#,
        "active eq \"yes\"",
        "userName eq [1]",
        &"(".repeat(40),
        &format!("userName eq \"{}\"", "a".repeat(3000)),
    ] {
        let err = sql(bad).unwrap_err();
        assert_eq!((err.status, err.scim_type), (400, Some("invalidFilter")), "{bad}");
    }
}

#[test]
fn value_filters_match_elements_case_insensitively_and_name_their_equalities() {
    let filter = parse(r#"type eq "Mobile" and primary eq true"#).unwrap();
    assert!(filter.matches(&json!({ "type": "mobile", "primary": true, "value": "+1" })));
    assert!(!filter.matches(&json!({ "type": "work", "primary": true })));
    assert_eq!(filter.equalities(), vec![("type".into(), json!("Mobile")), ("primary".into(), json!(true))]);
    assert!(parse(r#"value eq "12""#).unwrap().matches(&json!({ "value": "12", "display": "x" })));
}
