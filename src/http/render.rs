//! The JSON of the API's successful answers: a login or refresh, the user, a session, a code request.

use serde_json::{json, Value};

use super::answer::Answer;
use super::config::Config;
use crate::domain::User;
use crate::login::{LoginGrant, PendingCode, SessionInfo};

/// The answer to a login or a refresh. `token` is the access token (the field every app version reads); the rest
/// was added for clients that refresh.
pub(super) fn granted(message: &str, grant: &LoginGrant) -> Answer {
    let tokens = &grant.tokens;
    Answer::json(
        200,
        &json!({
            "message": message,
            "user": user_json(&grant.user),
            "token": tokens.access.expose(),
            "token_type": "Token",
            "expires_in": tokens.access_expires_in,
            "refresh_token": tokens.refresh.expose(),
            "refresh_expires_in": tokens.refresh_expires_in,
            "session_id": tokens.session_id,
        }),
    )
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
            "expires_in_minutes": config.policy.code_ttl_seconds / 60,
            "resend_available_in_seconds": config.policy.resend_cooldown_seconds,
        }),
    )
}

/// The user as every answer shows it (the shape docs/API.md documents).
pub(super) fn user_json(user: &User) -> Value {
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
