use super::*;

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn okta_user() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": "Sam.Lee@Example.com",
        "name": { "givenName": "Sam", "familyName": "Lee" },
        "emails": [{ "primary": true, "value": "Sam.Lee@Example.com", "type": "work" }],
        "phoneNumbers": [{ "value": "+44 7700 900123", "type": "work" }, { "value": "+1 (555) 555-0123", "type": "mobile" }],
        "title": "Technician",
        "active": true,
        "externalId": "00u1abcd",
        "preferredLanguage": "es_MX",
        ENTERPRISE_USER: { "department": "East", "manager": { "value": "7" } },
        "password": "ignored",
    })
}

#[test]
fn a_user_maps_onto_the_services_fields_with_its_own_normalisation() {
    let fields = user_fields(&object(okta_user()), &[]).unwrap();
    assert_eq!(
        fields,
        UserFields {
            email: "sam.lee@example.com".into(),
            external_id: Some("00u1abcd".into()),
            first_name: "Sam".into(),
            last_name: "Lee".into(),
            active: Some(true),
            phone: Some("+15555550123".into()),
            designation: "Technician".into(),
            branch: "East".into(),
            locale: Some("es-MX".into()),
        }
    );
}

#[test]
fn what_the_service_would_refuse_is_an_invalid_value() {
    let cases = [
        json!({ "name": {} }),
        json!({ "userName": "not an email" }),
        json!({ "userName": "a@example.com", "phoneNumbers": [{ "value": "07700 900123", "type": "mobile" }] }),
        json!({ "userName": "a@example.com", "active": "maybe" }),
        json!({ "userName": "a@example.com", "title": "x".repeat(151) }),
        json!({ "userName": "a@example.com", "name": { "givenName": "a\u{0}b" } }),
        json!({ "userName": "a@example.com", "externalId": 5 }),
    ];
    for body in cases {
        let err = user_fields(&object(body.clone()), &[]).unwrap_err();
        assert_eq!((err.status, err.scim_type), (400, Some("invalidValue")), "{body}");
    }
    let allowed = vec!["44".to_owned()];
    assert!(user_fields(&object(okta_user()), &allowed).is_err(), "a +1 number outside the allow-list");
}

#[test]
fn entra_ids_string_booleans_and_a_single_untyped_number_are_understood() {
    let body = json!({ "userName": "a@example.com", "active": "False", "phoneNumbers": [{ "value": "+1234567890" }] });
    let fields = user_fields(&object(body), &[]).unwrap();
    assert_eq!((fields.active, fields.phone.as_deref()), (Some(false), Some("+1234567890")));
    let work_only =
        json!({ "userName": "a@example.com", "phoneNumbers": [{ "value": "+1234567890", "type": "work" }] });
    assert_eq!(user_fields(&object(work_only), &[]).unwrap().phone, None);
}

#[test]
fn a_rendered_user_reads_back_as_the_same_fields() {
    let fields = user_fields(&object(okta_user()), &[]).unwrap();
    let stored = StoredUser {
        id: 7,
        fields: fields.clone(),
        created: 0,
        modified: 86_400,
        groups: vec![(2, "Employees".into())],
    };
    let rendered = user_json(&stored, "https://login.example.com/scim/v2");
    assert_eq!(user_fields(rendered.as_object().unwrap(), &[]).unwrap(), fields);
    assert_eq!(rendered["meta"]["lastModified"], "1970-01-02T00:00:00Z");
    assert_eq!(rendered["meta"]["location"], "https://login.example.com/scim/v2/Users/7");
    assert_eq!(rendered["groups"][0]["value"], "2");
}

#[test]
fn groups_take_a_name_and_user_ids() {
    let body = json!({ "displayName": " Sales ", "members": [{ "value": "3" }, { "value": 4 }] });
    assert_eq!(
        group_fields(&object(body)).unwrap(),
        GroupFields { name: "Sales".into(), external_id: None, members: vec![3, 4] }
    );
    assert!(group_fields(&object(json!({ "displayName": "" }))).is_err());
    assert!(group_fields(&object(json!({ "displayName": "A", "members": [{ "value": "x" }] }))).is_err());
}

#[test]
fn attributes_keep_only_what_is_asked_and_excluded_attributes_drop_it() {
    let fields = user_fields(&object(okta_user()), &[]).unwrap();
    let stored = StoredUser { id: 7, fields, created: 0, modified: 0, groups: vec![] };
    let mut only = user_json(&stored, "");
    project(
        &mut only,
        Some("userName,name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
        None,
    );
    assert_eq!(
        only,
        json!({ "schemas": [USER_SCHEMA, ENTERPRISE_USER], "id": "7", "userName": "sam.lee@example.com",
                    "name": { "givenName": "Sam" }, ENTERPRISE_USER: { "department": "East" } })
    );
    let mut without = user_json(&stored, "");
    project(&mut without, None, Some("groups,meta,name.formatted,id"));
    assert!(without.get("groups").is_none() && without.get("meta").is_none());
    assert!(without["name"].get("formatted").is_none() && without["name"].get("givenName").is_some());
    assert_eq!(without["id"], "7");
}

#[test]
fn paging_reads_the_rfcs_bounds() {
    assert_eq!(page(None, None).unwrap(), (1, DEFAULT_COUNT));
    assert_eq!(page(Some("0"), Some("-3")).unwrap(), (1, 0));
    assert_eq!(page(Some("11"), Some("5000")).unwrap(), (11, MAX_COUNT));
    assert_eq!(page(Some("x"), None).unwrap_err().scim_type, Some("invalidValue"));
}
