//! The attributes a SCIM list filter may name, and the stored column each one reads.

use crate::scim::filter::{Column, Kind};

pub(super) const ENTERPRISE_DEPARTMENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:department";

/// The user attributes a list filter may name (lower-cased), and the stored column each reads.
pub fn user_column(attr: &str) -> Option<Column> {
    let (expr, kind) = match attr {
        "id" => ("CAST(u.id AS TEXT)", Kind::Exact),
        "username" | "emails" | "emails.value" => ("u.email", Kind::Lower),
        "externalid" => ("u.external_id", Kind::Exact),
        "name.givenname" => ("u.first_name", Kind::Text),
        "name.familyname" => ("u.last_name", Kind::Text),
        "displayname" | "name.formatted" => ("trim(u.first_name || ' ' || u.last_name)", Kind::Text),
        "title" => ("p.designation", Kind::Text),
        "phonenumbers" | "phonenumbers.value" => ("p.phone_number", Kind::Exact),
        "preferredlanguage" => ("p.locale", Kind::Text),
        "active" => ("u.is_active", Kind::Boolean),
        "meta.created" => ("u.date_joined", Kind::Time),
        "meta.lastmodified" => ("COALESCE(u.updated_at, u.date_joined)", Kind::Time),
        ENTERPRISE_DEPARTMENT => ("p.branch", Kind::Text),
        _ => return None,
    };
    Some(Column { expr, kind })
}

/// The group attributes a list filter may name.
pub fn group_column(attr: &str) -> Option<Column> {
    let (expr, kind) = match attr {
        "id" => ("CAST(g.id AS TEXT)", Kind::Exact),
        "displayname" => ("g.name", Kind::Text),
        "externalid" => ("g.external_id", Kind::Exact),
        "members" | "members.value" => ("g.id", Kind::Member),
        "meta.created" => ("COALESCE(g.created_at, 0)", Kind::Time),
        "meta.lastmodified" => ("COALESCE(g.updated_at, g.created_at, 0)", Kind::Time),
        _ => return None,
    };
    Some(Column { expr, kind })
}
