use crate::test_support::run;

use super::*;
use crate::adapters::sqlite::Sqlite;
use crate::scim::filter;

const NOW: i64 = 1_800_000_000;

fn audit(action: &'static str, reason: &'static str) -> Audit<'static> {
    Audit { now: NOW, ip: "203.0.113.5", action, detail: "{}".into(), reason }
}

fn user(email: &str) -> UserFields {
    UserFields { email: email.into(), first_name: "Sam".into(), active: Some(true), ..UserFields::default() }
}

/// A database with the Employees group and Sam, a member with two live sessions.
fn world() -> (Sqlite, ScimStore<Sqlite>, i64) {
    let db = Sqlite::migrated();
    let store = ScimStore::new(db.clone());
    db.execute("INSERT INTO groups (name, is_employee_group) VALUES ('Employees', 1), ('Sales', 0)");
    let sam = run(store.create_user(&user("sam@example.com"), &audit("create", ""))).unwrap();
    db.execute(&format!(
        "INSERT INTO user_groups (user_id, group_id) SELECT {id}, id FROM groups WHERE name IN ('Employees', 'Sales');
             INSERT INTO sessions (user_id, created_at, last_used_at, expires_at, access_digest, access_expires_at)
             VALUES ({id}, 1, 1, {far}, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', {far}), ({id}, 1, 1, {far}, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', {far});",
        id = sam.id,
        far = NOW + 86_400
    ));
    (db, store, sam.id)
}

fn live_sessions(db: &Sqlite, id: i64) -> i64 {
    db.number(&format!("SELECT count(*) FROM sessions WHERE user_id = {id} AND revoked_at IS NULL"))
}

#[test]
fn a_created_user_reads_back_with_profile_and_an_audit_row() {
    let (db, store, id) = world();
    let sam = run(store.user(id)).unwrap().unwrap();
    assert_eq!(sam.fields.email, "sam@example.com");
    assert_eq!(sam.created, NOW);
    assert_eq!(sam.groups.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["Employees", "Sales"]);
    assert_eq!(db.number("SELECT count(*) FROM provisioning_events WHERE action = 'create' AND resource_id = 1"), 1);
    let taken = run(store.create_user(&user("sam@example.com"), &audit("create", "")));
    assert!(matches!(taken, Err(WriteError::Taken("userName"))));
}

#[test]
fn deactivating_ends_every_session_in_the_same_batch_and_returns_their_access_tokens() {
    let (db, store, id) = world();
    let renamed = UserFields { first_name: "Samuel".into(), ..user("sam@example.com") };
    let kept = run(store.update_user(id, &renamed, &audit("update", "scim: access removed"))).unwrap();
    assert!(kept.ended.is_empty(), "a change that keeps access keeps the sessions");
    assert_eq!(live_sessions(&db, id), 2);

    let inactive = UserFields { active: Some(false), ..renamed };
    let changed = run(store.update_user(id, &inactive, &audit("update", "scim: deactivated"))).unwrap();
    let mut ended: Vec<String> = changed.ended.iter().map(|d| d.as_str().to_owned()).collect();
    ended.sort();
    assert_eq!(ended, ["a".repeat(64), "b".repeat(64)]);
    assert_eq!(live_sessions(&db, id), 0);
    assert_eq!(
        db.number(
            "SELECT count(*) FROM login_events WHERE event = 'revoked' AND detail LIKE 'session %: scim: deactivated'"
        ),
        2
    );
}

#[test]
fn leaving_the_last_employee_group_ends_the_sessions_leaving_another_group_does_not() {
    let (db, store, id) = world();
    let employees = db.number("SELECT id FROM groups WHERE name = 'Employees'");
    let sales = db.number("SELECT id FROM groups WHERE name = 'Sales'");
    let fields = |name: &str| GroupFields { name: name.into(), external_id: None, members: vec![] };
    let left_sales =
        run(store.update_group(sales, &fields("Sales"), &[id], &audit("update", "scim: removed"))).unwrap();
    assert!(left_sales.ended.is_empty());
    assert_eq!(live_sessions(&db, id), 2);
    let left =
        run(store.update_group(employees, &fields("Employees"), &[id], &audit("update", "scim: removed"))).unwrap();
    assert_eq!(left.ended.len(), 2);
    assert!(left.resource.members.is_empty());
    assert_eq!(live_sessions(&db, id), 0);
}

#[test]
fn deleting_a_user_ends_the_sessions_and_removes_every_row_that_hangs_on_them() {
    let (db, store, id) = world();
    let ended = run(store.delete_user(id, "sam@example.com", &audit("delete", "scim: deleted"))).unwrap();
    assert_eq!(ended.map(|e| e.len()), Some(2));
    for table in ["users WHERE id", "profiles WHERE user_id", "user_groups WHERE user_id", "sessions WHERE user_id"] {
        assert_eq!(db.number(&format!("SELECT count(*) FROM {table} = {id}")), 0, "{table}");
    }
    assert_eq!(
        db.number("SELECT count(*) FROM provisioning_events WHERE action = 'delete' AND name = 'sam@example.com'"),
        1
    );
    assert_eq!(run(store.delete_user(id, "sam@example.com", &audit("delete", ""))).unwrap(), None);
}

#[test]
fn an_employee_group_is_never_deleted_through_scim_and_a_new_group_is_never_an_employee_group() {
    let (db, store, id) = world();
    let employees = db.number("SELECT id FROM groups WHERE name = 'Employees'");
    assert!(!run(store.delete_group(employees, "Employees", &audit("delete", ""))).unwrap());
    assert_eq!(live_sessions(&db, id), 2);
    let group = GroupFields { name: "Field".into(), external_id: Some("okta-1".into()), members: vec![id, 999] };
    let created = run(store.create_group(&group, &audit("create", ""))).unwrap();
    assert_eq!(created.members, vec![(id, "sam@example.com".to_owned())], "unknown ids are ignored");
    assert_eq!(db.number("SELECT is_employee_group FROM groups WHERE name = 'Field'"), 0);
    assert!(run(store.delete_group(created.id, "Field", &audit("delete", ""))).unwrap());
}

#[test]
fn the_daily_cleanup_deletes_provisioning_rows_past_the_retention_period() {
    let (db, _store, _) = world();
    db.execute("UPDATE provisioning_events SET occurred_at = 1000");
    run(crate::adapters::scim::ScimStore::new(db.clone()).create_user(&user("new@example.com"), &audit("create", "")))
        .unwrap();
    let d1 = crate::adapters::d1::D1::new(db.clone());
    let purged = run(d1.purge(
        crate::domain::UnixTime(NOW),
        &crate::login::Policy::default(),
        crate::domain::Seconds::DAY,
        crate::domain::Seconds::DAY,
    ))
    .unwrap();
    assert!(purged.events >= 1);
    assert_eq!(db.number("SELECT count(*) FROM provisioning_events"), 1, "the recent row stays");
}

#[test]
fn list_filters_run_as_bound_sql_with_paging() {
    let (_db, store, _) = world();
    for n in 1..=4 {
        run(store.create_user(&user(&format!("page.{n}@example.com")), &audit("create", ""))).unwrap();
    }
    let mut params = Vec::new();
    let column = |attr: &str| user_column(attr);
    let sql = filter::parse(r#"userName sw "PAGE." and active eq true"#).unwrap().to_sql(&column, &mut params).unwrap();
    let (total, page) = run(store.users(&sql, &params, 1, 2)).unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        page.iter().map(|u| u.fields.email.as_str()).collect::<Vec<_>>(),
        ["page.2@example.com", "page.3@example.com"]
    );
    let mut params = Vec::new();
    let sql = filter::parse(r#"displayName eq "employees""#)
        .unwrap()
        .to_sql(&|a: &str| group_column(a), &mut params)
        .unwrap();
    let (total, groups) = run(store.groups(&sql, &params, 0, 10, false)).unwrap();
    assert_eq!((total, groups[0].members.len()), (1, 0));
}

#[test]
fn an_import_row_makes_the_user_look_like_the_row_and_records_the_lost_access() {
    let (db, _store, id) = world();
    db.execute(
        "INSERT INTO admin_imports (email, first_name, last_name, phone_number, branch, designation, groups)
             VALUES ('sam@example.com', 'Sam', 'Lee', '+15555550123', 'East', 'Tech', '[\"Sales\"]'),
                    ('new@example.com', 'New', 'Hire', '', '', '', '[\"Employees\"]')",
    );
    assert_eq!(db.number(&format!("SELECT may_log_in FROM user_directory WHERE id = {id}")), 0);
    assert_eq!(db.number("SELECT may_log_in FROM user_directory WHERE email = 'new@example.com'"), 1);
    assert_eq!(
        db.number("SELECT count(*) FROM login_events WHERE event = 'revoked' AND detail LIKE 'admin: import%'"),
        1
    );
    assert_eq!(
        db.number("SELECT count(*) FROM provisioning_events WHERE source = 'import' AND resource_id IS NOT NULL"),
        2
    );
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        db.execute("INSERT INTO admin_imports (email, phone_number, groups) VALUES ('x@example.com', '', '[\"Nope\"]')")
    }));
    assert!(refused.is_err(), "an unknown group refuses the row");
    assert_eq!(db.number("SELECT count(*) FROM users WHERE email = 'x@example.com'"), 0);
}
