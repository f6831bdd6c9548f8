use super::columns::ENTERPRISE_DEPARTMENT;
use super::*;
use crate::scim::filter::Kind;

#[test]
fn uniqueness_violations_name_the_scim_attribute() {
    assert_eq!(taken("D1_ERROR: UNIQUE constraint failed: users.email: SQLITE_CONSTRAINT"), Some("userName"));
    assert_eq!(taken("UNIQUE constraint failed: profiles.phone_number"), Some("phoneNumbers"));
    assert_eq!(taken("UNIQUE constraint failed: groups.name"), Some("displayName"));
    assert_eq!(taken("no such table: users"), None);
}

#[test]
fn only_listed_attributes_are_filterable_and_none_reads_a_secret() {
    assert_eq!(user_column("username").map(|c| c.expr), Some("u.email"));
    assert_eq!(user_column(ENTERPRISE_DEPARTMENT).map(|c| c.expr), Some("p.branch"));
    assert!(user_column("password").is_none() && user_column("u.email").is_none());
    assert_eq!(group_column("members").map(|c| c.kind), Some(Kind::Member));
}
