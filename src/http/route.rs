//! The API's routes: which path names which endpoint, its method, and what each route does before D1.

/// The API's routes, matched with or without the trailing slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    GenerateOtp,
    ResendOtp,
    VerifyOtp,
    Refresh,
    Logout,
    LogoutAll,
    Me,
    Sessions,
    /// `sessions/<id>/`: one of the user's sessions, to end with DELETE.
    Session(i64),
}

impl Route {
    pub(super) fn from_path(path: &str) -> Option<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        match path.strip_prefix("/auth/api/mobile/")? {
            "generate-otp" => Some(Route::GenerateOtp),
            "resend-otp" => Some(Route::ResendOtp),
            "verify-otp" => Some(Route::VerifyOtp),
            "refresh" => Some(Route::Refresh),
            "logout" => Some(Route::Logout),
            "logout-all" => Some(Route::LogoutAll),
            "me" => Some(Route::Me),
            "sessions" => Some(Route::Sessions),
            other => {
                let id = other.strip_prefix("sessions/")?;
                let digits = !id.is_empty() && id.len() <= 15 && id.bytes().all(|b| b.is_ascii_digit());
                digits.then(|| id.parse().ok().map(Route::Session)).flatten()
            }
        }
    }

    /// The path segment, as named in logs.
    pub(super) fn name(self) -> &'static str {
        match self {
            Route::GenerateOtp => "generate-otp",
            Route::ResendOtp => "resend-otp",
            Route::VerifyOtp => "verify-otp",
            Route::Refresh => "refresh",
            Route::Logout => "logout",
            Route::LogoutAll => "logout-all",
            Route::Me => "me",
            Route::Sessions => "sessions",
            Route::Session(_) => "session",
        }
    }

    pub(super) fn method(self) -> &'static str {
        match self {
            Route::Me | Route::Sessions => "GET",
            Route::Session(_) => "DELETE",
            _ => "POST",
        }
    }

    /// Whether the route accepts a code or a refresh token from a client that holds no session: the routes an
    /// attacker can call at will, counted per client network before they reach D1.
    pub(super) fn takes_a_secret_without_a_session(self) -> bool {
        matches!(self, Route::GenerateOtp | Route::ResendOtp | Route::VerifyOtp | Route::Refresh)
    }

    /// Whether the route writes audit events (after the answer). me/ and sessions/ only read.
    pub(super) fn records_events(self) -> bool {
        !matches!(self, Route::Me | Route::Sessions)
    }

    pub(super) fn allow(self) -> &'static str {
        match self {
            Route::Me | Route::Sessions => "GET, OPTIONS",
            Route::Session(_) => "DELETE, OPTIONS",
            _ => "POST, OPTIONS",
        }
    }
}

/// Whether a path belongs to this login service (the rest goes to the origin in gateway mode).
pub(super) fn is_auth_path(path: &str) -> bool {
    path == "/auth" || path.starts_with("/auth/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_with_and_without_the_trailing_slash() {
        assert_eq!(Route::from_path("/auth/api/mobile/generate-otp/"), Some(Route::GenerateOtp));
        assert_eq!(Route::from_path("/auth/api/mobile/generate-otp"), Some(Route::GenerateOtp));
        assert_eq!(Route::from_path("/auth/api/mobile/me/"), Some(Route::Me));
        assert_eq!(Route::from_path("/auth/api/mobile/"), None);
        assert_eq!(Route::from_path("/auth/api/mobile/verify-otp//"), None);
        assert_eq!(Route::from_path("/elsewhere"), None);
    }

    #[test]
    fn session_routes_take_a_numeric_id_only() {
        assert_eq!(Route::from_path("/auth/api/mobile/sessions/"), Some(Route::Sessions));
        assert_eq!(Route::from_path("/auth/api/mobile/sessions/12/"), Some(Route::Session(12)));
        assert_eq!(Route::from_path("/auth/api/mobile/sessions/12"), Some(Route::Session(12)));
        for bad in ["sessions/abc/", "sessions/-1/", "sessions/1.5", "sessions/", "sessions/9999999999999999"] {
            let path = format!("/auth/api/mobile/{bad}/");
            assert!(!matches!(Route::from_path(&path), Some(Route::Session(_))), "{bad}");
        }
        assert_eq!(Route::from_path("/auth/api/mobile/logout-all/"), Some(Route::LogoutAll));
        assert_eq!(Route::from_path("/auth/api/mobile/refresh"), Some(Route::Refresh));
    }

    #[test]
    fn only_paths_under_auth_belong_to_the_login_service() {
        assert!(is_auth_path("/auth/api/mobile/me/"));
        assert!(is_auth_path("/auth"));
        assert!(!is_auth_path("/authors/"));
        assert!(!is_auth_path("/api/leads/"));
        assert!(!is_auth_path("/"));
    }
}
