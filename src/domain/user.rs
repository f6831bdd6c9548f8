/// An account as the login service sees it: the seed's user, profile and group names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub profile: Profile,
    /// Names of every group the user belongs to, sorted.
    pub groups: Vec<String>,
    /// Whether at least one of those groups is marked as an employee group.
    pub in_employee_group: bool,
}

/// The seed's user profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
