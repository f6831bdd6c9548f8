//! Creating, replacing, patching and deleting users and groups, and the audit detail of each change.

use serde_json::{json, Map, Value};

use super::*;

impl Scim<'_> {
    pub(super) async fn create_user(&self) -> Result<Answer, ScimError> {
        let fields = resource::user_fields(&self.body().await?, self.calling_codes)?;
        let audit = self.audit("create", user_changes(None, &fields), "");
        let user = self.store.create_user(&fields, &audit).await.map_err(write_error)?;
        Ok(self.created(user_json_of(&user, &self.base)))
    }

    /// PUT (replace) or PATCH.
    pub(super) async fn change_user(&self, id: i64, patching: bool) -> Result<Answer, ScimError> {
        let body = self.body().await?;
        let current = self.find_user(id).await?;
        let mut fields = if patching {
            let Value::Object(mut rendered) = user_json_of(&current, &self.base) else {
                return Err(internal("render", &id));
            };
            patch::apply(&mut rendered, &body)?;
            resource::user_fields(&rendered, self.calling_codes)?
        } else {
            resource::user_fields(&body, self.calling_codes)?
        };
        // Absent from a PUT: the state stays (a replace must not reactivate anyone), and so do the client's id and
        // the language an administrator may have set.
        fields.active = fields.active.or(current.fields.active);
        if !patching {
            fields.external_id = fields.external_id.or_else(|| current.fields.external_id.clone());
            fields.locale = fields.locale.or_else(|| current.fields.locale.clone());
        }
        let reason = if current.fields.active == Some(true) && fields.active == Some(false) {
            "scim: deactivated"
        } else {
            "scim: access removed"
        };
        let audit = self.audit(
            if patching { "update" } else { "replace" },
            user_changes(Some(&current.fields), &fields),
            reason,
        );
        let changed = self.store.update_user(id, &fields, &audit).await.map_err(write_error)?;
        self.end_sessions(&changed.ended).await;
        Ok(self.shown(200, user_json_of(&changed.resource, &self.base)))
    }

    pub(super) async fn delete_user(&self, id: i64) -> Result<Answer, ScimError> {
        let current = self.find_user(id).await?;
        let audit = self.audit("delete", json!({}), "scim: deleted");
        let ended = self.store.delete_user(id, &current.fields.email, &audit).await.map_err(write_error)?;
        let ended = ended.ok_or_else(|| ScimError::not_found("User"))?;
        self.end_sessions(&ended).await;
        Ok(Answer::empty(204))
    }

    pub(super) async fn create_group(&self) -> Result<Answer, ScimError> {
        let fields = resource::group_fields(&self.body().await?)?;
        let audit = self.audit("create", group_changes(None, &fields), "");
        let group = self.store.create_group(&fields, &audit).await.map_err(write_error)?;
        Ok(self.created(resource::group_json(&group, &self.base)))
    }

    pub(super) async fn change_group(&self, id: i64, patching: bool) -> Result<Answer, ScimError> {
        let body = self.body().await?;
        let (current, _) = self.find_group(id).await?;
        let mut fields = if patching {
            let Value::Object(mut rendered) = resource::group_json(&current, &self.base) else {
                return Err(internal("render", &id));
            };
            patch::apply(&mut rendered, &body)?;
            resource::group_fields(&rendered)?
        } else {
            resource::group_fields(&body)?
        };
        if !patching {
            fields.external_id = fields.external_id.or_else(|| current.external_id.clone());
        }
        let before: Vec<i64> = current.members.iter().map(|(id, _)| *id).collect();
        let previous = GroupFields {
            name: current.name.clone(),
            external_id: current.external_id.clone(),
            members: before.clone(),
        };
        let audit = self.audit(
            if patching { "update" } else { "replace" },
            group_changes(Some(&previous), &fields),
            "scim: removed from group",
        );
        let changed = self.store.update_group(id, &fields, &before, &audit).await.map_err(write_error)?;
        self.end_sessions(&changed.ended).await;
        // A PATCH answers 204, as Entra ID's and Okta's references show: a large group's members are not sent back
        // for every membership change. A PUT answers with the group.
        if patching {
            return Ok(Answer::empty(204));
        }
        Ok(self.shown(200, resource::group_json(&changed.resource, &self.base)))
    }

    pub(super) async fn delete_group(&self, id: i64) -> Result<Answer, ScimError> {
        let (current, employee) = self.find_group(id).await?;
        let refused = || {
            ScimError::bad(
                "mutability",
                "An employee group can only be deleted by an administrator: its members' access depends on it.",
            )
        };
        if employee {
            return Err(refused());
        }
        let audit = self.audit("delete", json!({ "members": current.members.len() }), "");
        if !self.store.delete_group(id, &current.name, &audit).await.map_err(write_error)? {
            return Err(refused());
        }
        Ok(Answer::empty(204))
    }
}

/// The fields a change sets, with their new values (all of them for a new user).
pub(super) fn user_changes(before: Option<&UserFields>, after: &UserFields) -> Value {
    let old = before.cloned().unwrap_or_default();
    let mut changed = Map::new();
    let mut note = |name: &str, was: Value, now: Value| {
        if before.is_none() || was != now {
            changed.insert(name.to_owned(), now);
        }
    };
    note("email", old.email.into(), after.email.clone().into());
    note("external_id", old.external_id.into(), after.external_id.clone().into());
    note("first_name", old.first_name.into(), after.first_name.clone().into());
    note("last_name", old.last_name.into(), after.last_name.clone().into());
    note("is_active", old.active.into(), after.active.into());
    note("phone_number", old.phone.into(), after.phone.clone().into());
    note("designation", old.designation.into(), after.designation.clone().into());
    note("branch", old.branch.into(), after.branch.clone().into());
    note("locale", old.locale.into(), after.locale.clone().into());
    Value::Object(changed)
}

/// A group's new name and the members it gained and lost.
pub(super) fn group_changes(before: Option<&GroupFields>, after: &GroupFields) -> Value {
    let old = before.cloned().unwrap_or_default();
    let added: Vec<i64> = after.members.iter().filter(|m| !old.members.contains(m)).copied().collect();
    let removed: Vec<i64> = old.members.iter().filter(|m| !after.members.contains(m)).copied().collect();
    let mut changed = json!({ "members_added": added, "members_removed": removed });
    if before.is_none() || old.name != after.name {
        changed["name"] = after.name.clone().into();
    }
    if before.is_none() || old.external_id != after.external_id {
        changed["external_id"] = after.external_id.clone().into();
    }
    changed
}
