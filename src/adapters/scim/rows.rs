//! Reading the statements' rows: users, groups, digests, and the schema's uniqueness violations.

use serde::Deserialize;
use serde_json::Value;

use super::super::sql::{store_error, stored_digest, BatchResults};
use crate::domain::TokenDigest;
use crate::login::StoreError;
use crate::scim::resource::{StoredGroup, StoredUser, UserFields};

/// Every statement here answers one text column `v`: a JSON object, a digest, a count or an id.
#[derive(Deserialize)]
pub(super) struct Row {
    v: String,
}

pub(super) fn texts(results: &impl BatchResults, index: usize) -> Result<Vec<String>, StoreError> {
    Ok(results.rows::<Row>(index)?.into_iter().map(|r| r.v).collect())
}

pub(super) fn objects(results: &impl BatchResults, index: usize) -> Result<Vec<Value>, StoreError> {
    texts(results, index)?.iter().map(|t| serde_json::from_str(t).map_err(store_error)).collect()
}

pub(super) fn digests(results: &impl BatchResults, index: usize) -> Result<Vec<TokenDigest>, StoreError> {
    let listed = texts(results, index)?;
    listed.iter().flat_map(|v| v.split(',')).map(stored_digest).collect()
}

pub(super) fn string(row: &Value, key: &str) -> Option<String> {
    row[key].as_str().map(str::to_owned)
}

/// `[[id, name], ...]`.
pub(super) fn pairs(value: &Value) -> Vec<(i64, String)> {
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    items.iter().filter_map(|p| Some((p[0].as_i64()?, p[1].as_str()?.to_owned()))).collect()
}

pub(super) fn user_of(row: &Value) -> Result<StoredUser, StoreError> {
    Ok(StoredUser {
        id: row["id"].as_i64().ok_or_else(|| store_error("user row without id"))?,
        fields: UserFields {
            email: string(row, "email").unwrap_or_default(),
            external_id: string(row, "external_id"),
            first_name: string(row, "first_name").unwrap_or_default(),
            last_name: string(row, "last_name").unwrap_or_default(),
            active: Some(row["is_active"].as_i64() == Some(1)),
            phone: string(row, "phone_number"),
            designation: string(row, "designation").unwrap_or_default(),
            branch: string(row, "branch").unwrap_or_default(),
            locale: string(row, "locale"),
        },
        created: row["created"].as_i64().unwrap_or(0),
        modified: row["modified"].as_i64().unwrap_or(0),
        groups: pairs(&row["groups"]),
    })
}

/// A stored group and whether it is an employee group.
pub struct GroupWithFlag {
    pub group: StoredGroup,
    pub employee: bool,
}

pub(super) fn group_of(row: &Value) -> Result<GroupWithFlag, StoreError> {
    Ok(GroupWithFlag {
        employee: row["employee"].as_i64() == Some(1),
        group: StoredGroup {
            id: row["id"].as_i64().ok_or_else(|| store_error("group row without id"))?,
            name: string(row, "name").unwrap_or_default(),
            external_id: string(row, "external_id"),
            created: row["created"].as_i64().unwrap_or(0),
            modified: row["modified"].as_i64().unwrap_or(0),
            members: pairs(&row["members"]),
        },
    })
}

pub(super) fn one<T>(
    results: &impl BatchResults,
    index: usize,
    read: fn(&Value) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    objects(results, index)?.first().map(read).transpose()
}

/// The schema's uniqueness violations, by the attribute a SCIM client knows them as.
pub(super) fn taken(message: &str) -> Option<&'static str> {
    if !message.contains("UNIQUE") {
        return None;
    }
    [("users.email", "userName"), ("profiles.phone_number", "phoneNumbers"), ("groups.name", "displayName")]
        .into_iter()
        .find(|(column, _)| message.contains(column))
        .map(|(_, attr)| attr)
}
