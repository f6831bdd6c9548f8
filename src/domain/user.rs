use serde::{Deserialize, Serialize};

/// An account as the login service sees it: the CRM's user, profile and group names. It is also the snapshot an
/// access token carries in KV, so that authenticated calls need no D1 read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    #[serde(default)]
    pub profile: Profile,
    /// Names of every group the user belongs to, sorted.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether at least one of those groups is marked as an employee group (a snapshot without it may not log in).
    #[serde(default)]
    pub in_employee_group: bool,
}

/// The user's profile: login phone number, branch, designation, message language.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub phone_number: Option<String>,
    pub branch: String,
    pub designation: String,
    /// The language the user's codes are written in when a request names none (`profiles.locale`).
    pub locale: Option<String>,
}

impl User {
    /// Only active members of an employee group may log in (or keep using a token).
    pub fn may_log_in(&self) -> bool {
        self.is_active && self.in_employee_group
    }

    /// Why this account may not log in, for the audit trail; `None` when it may.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        match (self.is_active, self.in_employee_group) {
            (true, true) => None,
            (false, _) => Some("inactive account"),
            (true, false) => Some("not in an employee group"),
        }
    }
}
