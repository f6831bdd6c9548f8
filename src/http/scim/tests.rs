use super::settings::sha256;
use super::writes::{group_changes, user_changes};
use super::*;
use serde_json::json;

#[test]
fn paths_name_the_endpoints_with_or_without_a_trailing_slash() {
    assert_eq!(target("/scim/v2/Users"), Some(Target::Users(None)));
    assert_eq!(target("/scim/v2/Users/"), Some(Target::Users(None)));
    assert_eq!(target("/scim/v2/Users/12"), Some(Target::Users(Some(12))));
    assert_eq!(target("/scim/v2/Users/abc"), Some(Target::Users(Some(-1))));
    assert_eq!(target("/scim/v2/Groups/3/"), Some(Target::Groups(Some(3))));
    assert_eq!(target("/scim/v2/ServiceProviderConfig"), Some(Target::ServiceProviderConfig));
    assert_eq!(
        target("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"),
        Some(Target::Schemas(Some(USER_SCHEMA)))
    );
    assert_eq!(target("/scim/v2/Users/1/2"), None);
    assert_eq!(target("/scim/v2/Bulk"), None);
    assert!(is_scim_path("/scim/v2") && is_scim_path("/scim/v2/Users") && !is_scim_path("/scim/v2x"));
}

#[test]
fn the_query_is_decoded_as_a_form_and_the_origin_kept() {
    let url = "https://login.example.com:8443/scim/v2/Users?filter=userName%20eq%20%22a%2Bb%40x.com%22&count=2&x=%E2%9C%93+y&bad=%zz#f";
    assert_eq!(
        query_pairs(url),
        [("filter", "userName eq \"a+b@x.com\""), ("count", "2"), ("x", "\u{2713} y"), ("bad", "%zz")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(origin(url), "https://login.example.com:8443");
    assert!(query_pairs("http://h/scim/v2/Users").is_empty());
}

#[test]
fn only_a_configured_token_is_admitted_and_only_as_a_bearer_token() {
    let a = "a".repeat(40);
    let settings = ScimSettings {
        tokens: vec![sha256(&a), sha256(&"b".repeat(32))],
        limit: 1,
        window: crate::domain::Seconds::new(1),
    };
    assert!(settings.admits(Some(&format!("Bearer {a}"))));
    assert!(settings.admits(Some(&format!("bearer  {}", "b".repeat(32)))));
    assert!(!settings.admits(Some(&format!("Token {a}"))));
    assert!(!settings.admits(Some(&format!("Bearer {}", &a[1..]))));
    assert!(!settings.admits(Some("Bearer ")));
    assert!(!settings.admits(None));
}

#[test]
fn a_change_records_only_what_changed() {
    let before = UserFields {
        email: "a@example.com".into(),
        active: Some(true),
        branch: "East".into(),
        ..UserFields::default()
    };
    let after = UserFields { active: Some(false), ..before.clone() };
    assert_eq!(user_changes(Some(&before), &after), json!({ "is_active": false }));
    let created = user_changes(None, &before);
    assert_eq!(created["email"], "a@example.com");
    assert_eq!(created["branch"], "East");
    let group = GroupFields { name: "Sales".into(), external_id: None, members: vec![1, 2] };
    let next = GroupFields { members: vec![2, 3], ..group.clone() };
    assert_eq!(group_changes(Some(&group), &next), json!({ "members_added": [3], "members_removed": [1] }));
}

#[test]
fn the_discovery_document_lists_the_endpoints_schemas() {
    let types = discovery("ResourceTypes");
    assert_eq!(types[0]["endpoint"], "/Users");
    let schemas = discovery("Schemas");
    let ids: Vec<&str> = schemas.as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, [USER_SCHEMA, crate::scim::ENTERPRISE_USER, GROUP_SCHEMA]);
    assert_eq!(discovery("ServiceProviderConfig")["patch"]["supported"], true);
}
