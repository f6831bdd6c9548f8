//! The HTTP layer: the Worker entry point, routing, and the translation between JSON and the use cases.

mod answer;
mod body;
mod client;
mod config;
mod cors;
mod error;
mod flood_gate;
mod gateway;
mod incoming;
#[cfg(test)]
mod properties;
mod render;
mod route;
#[cfg(feature = "scim")]
mod scim;

use serde_json::{json, Value};
use worker::{event, web_sys, Context, Env, ScheduleContext, ScheduledEvent};

use crate::adapters::d1::{D1Binding, DeferredEvents, RequestOrigin, D1};
use crate::adapters::delivery::Delivery;
use crate::adapters::kv::Kv;
use crate::adapters::meter::Meter;
use crate::adapters::runtime::{CryptoRandom, WorkerClock};
use crate::login::{Authenticated, ClientIp, Clock, EventKind, EventLog, Login, LoginEvent, Ports};
use answer::Answer;
use client::{device, request_origin};
use config::Config;
use error::ApiError;
use incoming::Incoming;
use render::{code_requested, granted, session_json};
use route::{is_auth_path, Route};

type Db = D1<D1Binding>;
/// The Worker's ports: D1 and KV through their bindings, the providers' HTTP APIs, the runtime's clock and CSPRNG.
struct WorkerPorts;

impl Ports for WorkerPorts {
    type Store = Db;
    type Tokens = Kv;
    type Notifier = Delivery;
    type Clock = WorkerClock;
    type Random = CryptoRandom;
    type Events = DeferredEvents<D1Binding>;
}

type EdgeLogin = Login<WorkerPorts>;

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
        let (events, sessions) = (config.event_retention, config.session_retention);
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

#[event(fetch)]
async fn fetch(raw: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let started = worker::Date::now().as_millis();
    let req = Incoming::new(raw);
    let origin = req.header("Origin");
    let preflight = req.method() == "OPTIONS";
    let mut error = None;
    // The route's name for the log line, as far as `handle` got.
    let mut route = "other";
    let answer = match Config::load(&env) {
        Ok(config) => {
            let meter = Meter::new(config.storage_metrics);
            let mut answer = handle(&req, &env, &ctx, &config, &meter, &mut route).await.unwrap_or_else(|e| {
                error = Some(e.code());
                e.response()
            });
            // On the origin's answer (gateway mode) these replace its own CORS headers and extend its Vary.
            config.cors.headers(origin.as_deref(), preflight).into_iter().for_each(|(n, v)| answer.header(n, v));
            // Work deferred with `wait_until` has not started yet (it runs once this future yields), so this is
            // exactly the storage work on the response path; `after_response` reports the rest.
            if let Some(ops) = meter.take() {
                answer.header(STORAGE_OPS_HEADER, ops.to_string());
            }
            answer
        }
        Err(e) => {
            error = Some(ApiError::Internal.code());
            ApiError::internal("configuration", &e).response()
        }
    };
    log_outcome(route, answer.status(), error, started);
    Ok(answer.into_web()?)
}

/// The one line per request that Workers Logs keeps, as JSON: `{"route":"verify-otp","status":400,
/// "error":"otp_invalid","ms":12}`. Only the route's name, never its path (a session id) nor anything from the
/// request: no code, token or identifier. `ms` is wall time to the answer (the Workers clock advances across I/O).
fn log_outcome(route: &str, status: u16, error: Option<&str>, started: u64) {
    let ms = worker::Date::now().as_millis().saturating_sub(started);
    let (quote, code) = match error {
        Some(code) => ("\"", code),
        None => ("", "null"),
    };
    worker::console_log!(r#"{{"route":"{route}","status":{status},"error":{quote}{code}{quote},"ms":{ms}}}"#);
}

/// The storage work a request did before its answer (only with `STORAGE_METRICS`, never in production).
const STORAGE_OPS_HEADER: &str = "X-Storage-Ops";

/// Answers one request; `logged` is set to the route's name for the log line: `scim`, `not-found` for an unknown path
/// under /auth/, and left as it is outside /auth/.
async fn handle(
    req: &Incoming,
    env: &Env,
    ctx: &Context,
    config: &Config,
    meter: &Meter,
    logged: &mut &'static str,
) -> Result<Answer, ApiError> {
    let path = req.path();
    #[cfg(feature = "scim")]
    if let (true, Some(settings)) = (scim::is_scim_path(path), &config.scim) {
        *logged = "scim";
        // Boxed: the SCIM state machine stays out of every login request's future.
        let scim: std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + '_>> =
            Box::pin(scim::handle(req, env, settings, &config.phone_calling_codes, meter));
        return Ok(scim.await);
    }
    if !is_auth_path(path) {
        let Some(gateway) = &config.gateway else { return Err(ApiError::NotFound) };
        // Authenticating records no event: the request's origin is never written.
        let login = edge_login(env, config, RequestOrigin::default(), meter)?;
        let auth = login.authenticate(req.header("Authorization").as_deref()).await?;
        return gateway.forward(req, &auth.session, login.clock.now()).await;
    }
    *logged = "not-found";
    let route = Route::from_path(path).ok_or(ApiError::NotFound)?;
    *logged = route.name();
    let method = req.method();
    if method == "OPTIONS" {
        let mut answer = Answer::empty(204);
        answer.header("Allow", route.allow());
        return Ok(answer);
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
        return Err(ApiError::RateLimited { retry_after: flood_gate::PERIOD });
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
            Ok(answer)
        }
        Route::VerifyOtp => {
            let body = body::json_object(req).await?;
            let identifier = body::identifier(&body, &config.phone_calling_codes)?;
            let code = body::otp_code(&body)?;
            let outcome = login.verify_code(identifier, code, &client, &device(req, &client)).await;
            after_later(ctx, login, meter, route);
            Ok(granted("Login successful", &outcome?))
        }
        Route::Refresh => {
            let body = body::json_object(req).await?;
            let presented = body::refresh_token(&body)?.ok_or(ApiError::InvalidToken)?;
            let outcome = login.refresh(&presented, &client, &device(req, &client)).await;
            after_later(ctx, login, meter, route);
            Ok(granted("Token refreshed", &outcome?))
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
                return Err(ApiError::RateLimited { retry_after: flood_gate::PERIOD });
            }
            let outcome = login.logout_by_refresh(&presented, &client).await;
            after_later(ctx, login, meter, route);
            outcome?;
            Ok(Answer::json(200, &json!({ "message": "Logged out successfully." })))
        }
        _ => {
            let auth = login.authenticate(req.header("Authorization").as_deref()).await?;
            let outcome = authenticated(route, &login, &auth).await;
            if route.records_events() {
                after_later(ctx, login, meter, route);
            }
            outcome
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
        Route::Me => Ok(render::me(&auth.session)),
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

fn edge_login(env: &Env, config: &Config, origin: RequestOrigin, meter: &Meter) -> Result<EdgeLogin, ApiError> {
    let binding = env.d1("DB").map_err(|e| ApiError::internal("D1 binding DB", &e))?;
    let db = D1::new(D1Binding::new(binding, meter.clone()));
    let kv = Kv::new(env.kv("AUTH_KV").map_err(|e| ApiError::internal("KV binding AUTH_KV", &e))?, meter.clone());
    Ok(Login {
        store: db.clone(),
        access: kv,
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

/// The work after the answer: the audit events and the check of the tokens issued (`Login::settle`), then (with
/// `STORAGE_METRICS`) the storage work done since the answer.
async fn after_response(login: &EdgeLogin, meter: &Meter, route: Route) {
    if let Err(e) = login.settle().await {
        worker::console_error!("after the answer: {e}");
    }
    if let Some(ops) = meter.take() {
        worker::console_log!("storage-ops after-response route={} {ops}", route.name());
    }
}
