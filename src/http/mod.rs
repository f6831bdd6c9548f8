//! The HTTP layer: the Worker entry point, routing, and the translation between JSON and the use cases.

mod answer;
mod body;
mod config;
mod cors;
mod error;
mod flood_gate;
mod gateway;
mod incoming;
#[cfg(test)]
mod properties;
#[cfg(feature = "scim")]
mod scim;

use serde::Serialize;
use serde_json::{json, Value};
use worker::{event, web_sys, Context, Env, ScheduleContext, ScheduledEvent};

use crate::adapters::d1::{D1Binding, DeferredEvents, RequestOrigin, D1};
use crate::adapters::delivery::Delivery;
use crate::adapters::kv::Kv;
use crate::adapters::meter::Meter;
use crate::adapters::runtime::{CryptoRandom, WorkerClock};
use crate::domain::User;
use crate::login::{
    Authenticated, ClientIp, Clock, Device, EventKind, EventLog, Login, LoginEvent, LoginGrant, PendingCode,
    SessionInfo,
};
use answer::Answer;
use config::Config;
use error::ApiError;
use incoming::Incoming;

type Db = D1<D1Binding>;
type EdgeLogin = Login<Db, Kv, Db, Delivery, WorkerClock, CryptoRandom, DeferredEvents<D1Binding>>;

/// The API's routes, matched with or without the trailing slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
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
    fn from_path(path: &str) -> Option<Route> {
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
    fn name(self) -> &'static str {
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

    fn method(self) -> &'static str {
        match self {
            Route::Me | Route::Sessions => "GET",
            Route::Session(_) => "DELETE",
            _ => "POST",
        }
    }

    /// Whether the route accepts a code or a refresh token from a client that holds no session: the routes an
    /// attacker can call at will, counted per client network before they reach D1.
    fn takes_a_secret_without_a_session(self) -> bool {
        matches!(self, Route::GenerateOtp | Route::ResendOtp | Route::VerifyOtp | Route::Refresh)
    }

    /// Whether the route writes audit events (after the answer). me/ and sessions/ only read.
    fn records_events(self) -> bool {
        !matches!(self, Route::Me | Route::Sessions)
    }

    fn allow(self) -> &'static str {
        match self {
            Route::Me | Route::Sessions => "GET, OPTIONS",
            Route::Session(_) => "DELETE, OPTIONS",
            _ => "POST, OPTIONS",
        }
    }
}

/// Whether a path belongs to this login service (the rest goes to the origin in gateway mode).
fn is_auth_path(path: &str) -> bool {
    path == "/auth" || path.starts_with("/auth/")
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The daily cleanup (Cron Trigger in wrangler.toml): expired counters and challenges, and audit rows past
/// `EVENT_RETENTION_DAYS`.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let purged = async {
        let config = Config::load(&env).map_err(|e| e.to_string())?;
        let db = D1::new(D1Binding::new(env.d1("DB").map_err(|e| e.to_string())?, Meter::new(false)));
        let (events, sessions) = (config.event_retention_seconds, config.session_retention_seconds);
        db.purge(WorkerClock.now(), &config.policy, events, sessions).await.map_err(|e| e.0)
    };
    match purged.await {
        Ok(p) => worker::console_log!(
            "cleanup: removed {} counters, {} challenges, {} audit rows, {} sessions",
            p.counters,
            p.challenges,
            p.events,
            p.sessions
        ),
        Err(e) => worker::console_error!("cleanup failed: {e}"),
    }
}

/// What a request is answered with: the service's own answer, or the origin's (gateway mode), passed on as it came.
enum Reply {
    Own(Answer),
    Forwarded(worker::Response),
}

#[event(fetch)]
async fn fetch(raw: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let req = Incoming::new(raw);
    let origin = req.header("Origin");
    let preflight = req.method() == "OPTIONS";
    let reply = match Config::load(&env) {
        Ok(config) => {
            let meter = Meter::new(config.storage_metrics);
            let mut reply =
                handle(&req, &env, &ctx, &config, &meter).await.unwrap_or_else(|error| Reply::Own(error.response()));
            let mut extra = config.cors.headers(origin.as_deref(), preflight);
            // Work deferred with `wait_until` has not started yet (it runs once this future yields), so this is
            // exactly the storage work on the response path; `after_response` reports the rest.
            if let Some(ops) = meter.take() {
                extra.push((STORAGE_OPS_HEADER, ops.to_string()));
            }
            match &mut reply {
                Reply::Own(answer) => extra.into_iter().for_each(|(name, value)| answer.header(name, value)),
                Reply::Forwarded(response) => {
                    // Header names and values are ASCII we control or an origin the client sent; a failure only
                    // drops a header. The origin's own CORS headers are replaced, its Vary extended.
                    let headers = response.headers();
                    for (name, value) in extra {
                        let _ = if name == "Vary" { headers.append(name, &value) } else { headers.set(name, &value) };
                    }
                }
            }
            reply
        }
        Err(e) => Reply::Own(ApiError::internal("configuration", &e).response()),
    };
    match reply {
        Reply::Own(answer) => Ok(answer.into_web()?),
        Reply::Forwarded(response) => Ok(response.into()),
    }
}

/// The storage work a request did before its answer (only with `STORAGE_METRICS`, never in production).
const STORAGE_OPS_HEADER: &str = "X-Storage-Ops";

async fn handle(req: &Incoming, env: &Env, ctx: &Context, config: &Config, meter: &Meter) -> Result<Reply, ApiError> {
    let path = req.path();
    #[cfg(feature = "scim")]
    if let (true, Some(settings)) = (scim::is_scim_path(path), &config.scim) {
        // Boxed: the SCIM state machine stays out of every login request's future.
        let scim: std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + '_>> =
            Box::pin(scim::handle(req, env, settings, &config.phone_calling_codes, meter));
        return Ok(Reply::Own(scim.await));
    }
    if !is_auth_path(path) {
        let Some(gateway) = &config.gateway else { return Err(ApiError::NotFound) };
        // Authenticating records no event: the request's origin is never written.
        let login = edge_login(env, config, RequestOrigin::default(), meter)?;
        let auth = login.authenticate(req.header("Authorization").as_deref()).await?;
        let forwarded = gateway.forward(&req.to_worker_request(), &auth.session, login.clock.now()).await?;
        return Ok(Reply::Forwarded(forwarded));
    }
    let route = Route::from_path(path).ok_or(ApiError::NotFound)?;
    let method = req.method();
    if method == "OPTIONS" {
        let mut answer = Answer::empty(204);
        answer.header("Allow", route.allow());
        return Ok(Reply::Own(answer));
    }
    if method != route.method() {
        return Err(ApiError::MethodNotAllowed { allow: route.allow() });
    }

    let client = ClientIp(req.header("CF-Connecting-IP").unwrap_or_else(|| "unknown".into()));
    // The origin stamped on audit rows; reading `cf` costs a copy, so only for routes that record events.
    let origin = if route.records_events() { request_origin(req, &client) } else { RequestOrigin::default() };
    let login = edge_login(env, config, origin, meter)?;
    let meter = meter.clone();
    if route.takes_a_secret_without_a_session() && !flood_gate::admits(env, &client).await {
        if flood_gate::first_refusal_this_minute(&client, login.clock.now()) {
            login.events.record(LoginEvent {
                kind: EventKind::Refused,
                at: login.clock.now(),
                user_id: None,
                identifier: None,
                detail: Some(format!("{} refused: client over the edge rate limit", route.name())),
            });
            after_later(ctx, login, meter, route);
        }
        return Err(ApiError::RateLimited { retry_after: flood_gate::PERIOD_SECONDS });
    }
    match route {
        Route::GenerateOtp | Route::ResendOtp => {
            let body = body::json_object(req).await?;
            let identifier = body::identifier(&body, &config.phone_calling_codes)?;
            let locale = body::locale(&body)?;
            let pending = match login.request_code(identifier, &client).await {
                Ok(pending) => pending.in_locale(locale),
                Err(refused) => {
                    // The refusal's audit row goes out after the answer, like every other event.
                    after_later(ctx, login, meter, route);
                    return Err(refused.into());
                }
            };
            let answer = code_requested(&pending, config);
            ctx.wait_until(async move {
                if let Err(e) = login.deliver_code(&pending).await {
                    worker::console_error!("delivery: {e}");
                }
                after_response(&login, &meter, route).await;
            });
            Ok(Reply::Own(answer))
        }
        Route::VerifyOtp => {
            let body = body::json_object(req).await?;
            let identifier = body::identifier(&body, &config.phone_calling_codes)?;
            let code = body::otp_code(&body)?;
            let outcome = login.verify_code(identifier, code, &client, &device(req, &client)).await;
            after_later(ctx, login, meter, route);
            Ok(Reply::Own(granted("Login successful", &outcome?)))
        }
        Route::Refresh => {
            let body = body::json_object(req).await?;
            let presented = body::refresh_token(&body)?.ok_or(ApiError::InvalidToken)?;
            let outcome = login.refresh(&presented, &client, &device(req, &client)).await;
            after_later(ctx, login, meter, route);
            Ok(Reply::Own(granted("Token refreshed", &outcome?)))
        }
        Route::Logout if req.header("Authorization").is_none() => {
            // An app whose access token has expired logs out with its refresh token alone; with neither, the
            // request carries no credentials.
            let json = req
                .header("Content-Type")
                .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json"));
            if !json {
                return Err(ApiError::NotAuthenticated);
            }
            let body = body::json_object(req).await?;
            if !body.contains_key("refresh_token") {
                return Err(ApiError::NotAuthenticated);
            }
            let presented = body::refresh_token(&body)?.ok_or(ApiError::InvalidToken)?;
            if !flood_gate::admits(env, &client).await {
                return Err(ApiError::RateLimited { retry_after: flood_gate::PERIOD_SECONDS });
            }
            let outcome = login.logout_by_refresh(&presented, &client).await;
            after_later(ctx, login, meter, route);
            outcome?;
            Ok(Reply::Own(Answer::json(200, &json!({ "message": "Logged out successfully." }))))
        }
        _ => {
            let auth = login.authenticate(req.header("Authorization").as_deref()).await?;
            let outcome = authenticated(route, &login, &auth).await;
            if route.records_events() {
                after_later(ctx, login, meter, route);
            }
            outcome.map(Reply::Own)
        }
    }
}

/// The routes that need a live access token.
async fn authenticated(route: Route, login: &EdgeLogin, auth: &Authenticated) -> Result<Answer, ApiError> {
    match route {
        Route::Logout => {
            login.logout(auth).await?;
            Ok(Answer::json(200, &json!({ "message": "Logged out successfully." })))
        }
        Route::LogoutAll => {
            let ended = login.logout_all(auth).await?;
            Ok(Answer::json(200, &json!({ "message": "Logged out on every device.", "sessions_ended": ended })))
        }
        Route::Me => {
            let session = &auth.session;
            Ok(typed_json(&MeBody { session_id: session.session_id, user: UserBody::of(&session.user) }))
        }
        Route::Sessions => {
            let sessions = login.list_sessions(auth).await?;
            let current = auth.session.session_id;
            let listed: Vec<Value> = sessions.iter().map(|s| session_json(s, current)).collect();
            Ok(Answer::json(200, &json!({ "sessions": listed })))
        }
        Route::Session(id) => match login.revoke_session(auth, id).await? {
            true => Ok(Answer::json(200, &json!({ "message": "Session ended.", "session_id": id }))),
            false => Err(ApiError::NotFound),
        },
        // Answered by `handle` without a token; never routed here.
        Route::GenerateOtp | Route::ResendOtp | Route::VerifyOtp | Route::Refresh => Err(ApiError::NotFound),
    }
}

/// Runs [`after_response`] once the answer has gone out.
fn after_later(ctx: &Context, login: EdgeLogin, meter: Meter, route: Route) {
    ctx.wait_until(async move { after_response(&login, &meter, route).await });
}

/// The device a login or refresh comes from: user agent, IP, and Cloudflare's coarse geolocation.
fn device(req: &Incoming, client: &ClientIp) -> Device {
    Device {
        user_agent: req.header("User-Agent").map(|ua| ua.chars().take(256).collect()),
        ip: Some(client.0.clone()),
        country: client_country(req),
        city: req.cf().and_then(|cf| cf.city()),
    }
}

/// The answer to a login or a refresh. `token` is the access token (the seed's field); the rest was added for
/// clients that refresh.
fn granted(message: &str, grant: &LoginGrant) -> Answer {
    let tokens = &grant.tokens;
    typed_json(&GrantBody {
        expires_in: tokens.access_expires_in,
        message,
        refresh_expires_in: tokens.refresh_expires_in,
        refresh_token: tokens.refresh.expose(),
        session_id: tokens.session_id,
        token: tokens.access.expose(),
        token_type: "Token",
        user: UserBody::of(&grant.user),
    })
}

fn session_json(session: &SessionInfo, current: i64) -> Value {
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

/// The request's origin as its audit rows record it.
fn request_origin(req: &Incoming, client: &ClientIp) -> RequestOrigin {
    RequestOrigin {
        ip: Some(client.0.clone()),
        user_agent: req.header("User-Agent").map(|ua| ua.chars().take(256).collect()),
        country: client_country(req),
    }
}

fn edge_login(env: &Env, config: &Config, origin: RequestOrigin, meter: &Meter) -> Result<EdgeLogin, ApiError> {
    let binding = env.d1("DB").map_err(|e| ApiError::internal("D1 binding DB", &e))?;
    let db = D1::new(D1Binding::new(binding, meter.clone()));
    let kv = Kv::new(env.kv("AUTH_KV").map_err(|e| ApiError::internal("KV binding AUTH_KV", &e))?, meter.clone());
    Ok(Login {
        challenges: db.clone(),
        access: kv,
        sessions: db.clone(),
        notifier: Delivery {
            email: config.email_providers.clone(),
            sms: config.sms_providers.clone(),
            env: env.clone(),
        },
        clock: WorkerClock,
        random: CryptoRandom,
        events: DeferredEvents::new(db, origin),
        policy: config.policy.clone(),
        hasher: config.hasher.clone(),
        messages: config.messages.clone(),
        test_logins: config.test_logins.clone(),
    })
}

/// The client's country as Cloudflare's edge geolocated it. Only `request.cf` is trusted: a `CF-IPCountry` header
/// can be sent by anyone when the zone's IP geolocation is off, and is not needed when `cf` is there. Anything that
/// is not a short upper-case code (Cloudflare also uses `XX` for unknown and `T1` for Tor) is dropped.
fn client_country(req: &Incoming) -> Option<String> {
    req.cf()
        .and_then(|cf| cf.country())
        .filter(|c| (2..=3).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
}

/// The work after the answer: the audit events, then (with `STORAGE_METRICS`) the storage work done since the answer.
async fn after_response(login: &EdgeLogin, meter: &Meter, route: Route) {
    if let Err(e) = login.events.flush().await {
        worker::console_error!("audit trail: {}", e.0);
    }
    if let Some(ops) = meter.take() {
        worker::console_log!("storage-ops after-response route={} {ops}", route.name());
    }
}

/// The same answer for every admitted request, whoever the identifier belongs to (no enumeration).
fn code_requested(pending: &PendingCode, config: &Config) -> Answer {
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
    expires_in: i64,
    message: &'a str,
    refresh_expires_in: i64,
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

/// The seed's user shape.
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

    #[test]
    fn only_paths_under_auth_belong_to_the_login_service() {
        assert!(is_auth_path("/auth/api/mobile/me/"));
        assert!(is_auth_path("/auth"));
        assert!(!is_auth_path("/authors/"));
        assert!(!is_auth_path("/api/leads/"));
        assert!(!is_auth_path("/"));
    }
}
