//! The JSON of the API's successful answers: a login or refresh, the user, a session, a code request.

use serde::Serialize;
use serde_json::{json, Value};

use super::answer::Answer;
use super::config::Config;
use crate::domain::User;
use crate::login::{LoginGrant, PendingCode, Session, SessionInfo};

/// The answer to a login or a refresh. `token` is the access token (the field every app version reads); the rest
/// was added for clients that refresh.
pub(super) fn granted(message: &str, grant: &LoginGrant) -> Answer {
    let tokens = &grant.tokens;
    typed_json(&GrantBody {
        expires_in: tokens.access_expires_in.get(),
        message,
        refresh_expires_in: tokens.refresh_expires_in.get(),
        refresh_token: tokens.refresh.expose(),
        session_id: tokens.session_id,
        token: tokens.access.expose(),
        token_type: "Token",
        user: UserBody::of(&grant.user),
    })
}

/// The answer to `me/`: the user the token was issued to, as its KV value holds it.
pub(super) fn me(session: &Session) -> Answer {
    typed_json(&MeBody { session_id: session.session_id, user: UserBody::of(&session.user) })
}

pub(super) fn session_json(session: &SessionInfo, current: i64) -> Value {
    json!({
        "id": session.id,
        "created_at": session.created_at.0,
        "last_used_at": session.last_used_at.0,
        "expires_at": session.expires_at.0,
        "user_agent": session.user_agent,
        "country": session.country,
        "city": session.city,
        "current": session.id == current,
    })
}

/// The same answer for every admitted request, whoever the identifier belongs to (no enumeration).
pub(super) fn code_requested(pending: &PendingCode, config: &Config) -> Answer {
    Answer::json(
        200,
        &json!({
            "message": "If this account may sign in, a verification code has been sent.",
            "otp_type": pending.identifier.channel().as_str(),
            "contact_info": pending.identifier.value(),
            "expires_in_minutes": config.policy.code_ttl.get() / 60,
            "resend_available_in_seconds": config.policy.resend_cooldown.get(),
        }),
    )
}

// The bodies of the answers that carry a user (verify-otp, refresh, me/), serialised straight from borrowed
// fields: building a `json!` tree copied every string into a map, serialised it and dropped it again, per request.
// Fields are declared in alphabetical order, the order `json!`'s maps (serde_json without `preserve_order`) wrote
// them in, so the bytes sent are the same (`typed_bodies_are_the_bytes_json_trees_were` checks it).

/// A 200 JSON answer from a typed body. Serialising strings, numbers and lists of strings cannot fail.
fn typed_json<T: Serialize>(body: &T) -> Answer {
    Answer::json_text(200, serde_json::to_string(body).unwrap_or_default(), "application/json")
}

#[derive(Serialize)]
struct GrantBody<'a> {
    expires_in: u32,
    message: &'a str,
    refresh_expires_in: u32,
    refresh_token: &'a str,
    session_id: i64,
    token: &'a str,
    token_type: &'a str,
    user: UserBody<'a>,
}

#[derive(Serialize)]
struct MeBody<'a> {
    session_id: i64,
    user: UserBody<'a>,
}

/// The user as every answer shows it (the shape docs/API.md documents).
#[derive(Serialize)]
struct UserBody<'a> {
    email: &'a str,
    first_name: &'a str,
    groups: &'a [String],
    id: i64,
    is_active: bool,
    last_name: &'a str,
    phone_number: Option<&'a str>,
    profile: ProfileBody<'a>,
}

#[derive(Serialize)]
struct ProfileBody<'a> {
    branch: &'a str,
    designation: &'a str,
    phone_number: Option<&'a str>,
}

impl<'a> UserBody<'a> {
    fn of(user: &'a User) -> UserBody<'a> {
        let phone_number = user.profile.phone_number.as_deref();
        UserBody {
            email: user.email.as_deref().unwrap_or_default(),
            first_name: &user.first_name,
            groups: &user.groups,
            id: user.id,
            is_active: user.is_active,
            last_name: &user.last_name,
            phone_number,
            profile: ProfileBody { branch: &user.profile.branch, designation: &user.profile.designation, phone_number },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The user shape as `json!` built it before the typed bodies.
    fn user_tree(user: &User) -> Value {
        json!({
            "id": user.id,
            "email": user.email.clone().unwrap_or_default(),
            "first_name": user.first_name,
            "last_name": user.last_name,
            "phone_number": user.profile.phone_number,
            "is_active": user.is_active,
            "profile": {
                "phone_number": user.profile.phone_number,
                "branch": user.profile.branch,
                "designation": user.profile.designation,
            },
            "groups": user.groups,
        })
    }

    #[test]
    fn typed_bodies_are_the_bytes_json_trees_were() {
        let full = User {
            id: 42,
            email: Some("ana.o'brien@example.com".into()),
            first_name: "Ana \"Nina\" é".into(),
            last_name: "O'Brien\n".into(),
            is_active: true,
            profile: crate::domain::Profile {
                phone_number: Some("+14155550100".into()),
                branch: "Head Office".into(),
                designation: "Field <Technician>".into(),
                locale: Some("es-MX".into()),
            },
            groups: vec!["Employees".into(), "Sales & Ops".into()],
            in_employee_group: true,
        };
        let bare = User {
            email: None,
            profile: crate::domain::Profile::default(),
            groups: Vec::new(),
            is_active: false,
            ..full.clone()
        };
        for user in [&full, &bare] {
            let me = typed_json(&MeBody { session_id: 7, user: UserBody::of(user) });
            let tree = Answer::json(200, &json!({ "user": user_tree(user), "session_id": 7 }));
            assert_eq!(me, tree);
            let grant = typed_json(&GrantBody {
                expires_in: 900,
                message: "Login successful",
                refresh_expires_in: 2_592_000,
                refresh_token: "r".repeat(64).as_str(),
                session_id: 7,
                token: "a".repeat(64).as_str(),
                token_type: "Token",
                user: UserBody::of(user),
            });
            let tree = Answer::json(
                200,
                &json!({
                    "message": "Login successful",
                    "user": user_tree(user),
                    "token": "a".repeat(64),
                    "token_type": "Token",
                    "expires_in": 900,
                    "refresh_token": "r".repeat(64),
                    "refresh_expires_in": 2_592_000,
                    "session_id": 7,
                }),
            );
            assert_eq!(grant, tree);
        }
    }
}
