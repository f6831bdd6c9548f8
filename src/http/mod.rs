//! The HTTP layer: the Worker entry point, routing, and the translation between JSON and the use cases.

mod body;
mod config;
mod cors;
mod error;
#[cfg(test)]
mod properties;

use serde_json::{json, Value};
use worker::{event, Context, Env, Method, Request, Response, ScheduleContext, ScheduledEvent};

use crate::adapters::d1::{DeferredEvents, RequestOrigin, D1};
use crate::adapters::delivery::Delivery;
use crate::adapters::kv::Kv;
use crate::adapters::meter::Meter;
use crate::adapters::runtime::{CryptoRandom, WorkerClock};
use crate::domain::User;
use crate::login::{ClientIp, Clock, Login, PendingCode};
use config::Config;
use error::ApiError;

type EdgeLogin = Login<D1, D1, Kv, Kv, Delivery, WorkerClock, CryptoRandom, DeferredEvents>;

/// The API's routes, matched with or without the trailing slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    GenerateOtp,
    ResendOtp,
    VerifyOtp,
    Logout,
    Me,
}

impl Route {
    fn from_path(path: &str) -> Option<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        match path.strip_prefix("/auth/api/mobile/")? {
            "generate-otp" => Some(Route::GenerateOtp),
            "resend-otp" => Some(Route::ResendOtp),
            "verify-otp" => Some(Route::VerifyOtp),
            "logout" => Some(Route::Logout),
            "me" => Some(Route::Me),
            _ => None,
        }
    }

    /// The path segment, as named in logs.
    fn name(self) -> &'static str {
        match self {
            Route::GenerateOtp => "generate-otp",
            Route::ResendOtp => "resend-otp",
            Route::VerifyOtp => "verify-otp",
            Route::Logout => "logout",
            Route::Me => "me",
        }
    }

    fn method(self) -> Method {
        match self {
            Route::Me => Method::Get,
            _ => Method::Post,
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Route::Me => "GET, OPTIONS",
            _ => "POST, OPTIONS",
        }
    }
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
        let db = D1::new(env.d1("DB").map_err(|e| e.to_string())?, Meter::new(false));
        db.purge(WorkerClock.now(), &config.policy, config.event_retention_seconds).await.map_err(|e| e.0)
    };
    match purged.await {
        Ok(p) => worker::console_log!(
            "cleanup: removed {} counters, {} challenges, {} audit rows",
            p.counters,
            p.challenges,
            p.events
        ),
        Err(e) => worker::console_error!("cleanup failed: {e}"),
    }
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let origin = header(&req, "Origin");
    let config = match Config::load(&env) {
        Ok(config) => config,
        Err(e) => return Ok(ApiError::internal("configuration", &e).response()),
    };
    let preflight = req.method() == Method::Options;
    let meter = Meter::new(config.storage_metrics);
    let response = match handle(&mut req, &env, &ctx, &config, &meter).await {
        Ok(response) => response,
        Err(error) => error.response(),
    };
    // Work deferred with `wait_until` has not started yet (it runs once this future yields), so this is exactly the
    // storage work on the response path; `after_response` reports the rest.
    if let Some(ops) = meter.take() {
        let _ = response.headers().set(STORAGE_OPS_HEADER, &ops.to_string());
    }
    Ok(config.cors.decorate(response, origin.as_deref(), preflight))
}

/// The storage work a request did before its answer (only with `STORAGE_METRICS`, never in production).
const STORAGE_OPS_HEADER: &str = "X-Storage-Ops";

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Serialises `body` with the headers every answer carries. Answers hold codes' metadata and tokens: never cached.
pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    let response = Response::from_bytes(body.to_string().into_bytes())
        .unwrap_or_else(|_| Response::empty().unwrap_or_else(|_| unreachable!()))
        .with_status(status);
    let headers = response.headers();
    let _ = headers.set("Content-Type", "application/json");
    let _ = headers.set("Cache-Control", "no-store");
    let _ = headers.set("X-Content-Type-Options", "nosniff");
    response
}

async fn handle(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
    meter: &Meter,
) -> Result<Response, ApiError> {
    let route = Route::from_path(&req.path()).ok_or(ApiError::NotFound)?;
    let method = req.method();
    if method == Method::Options {
        let response = Response::empty().map_err(|e| ApiError::internal("response", &e))?.with_status(204);
        let _ = response.headers().set("Allow", route.allow());
        return Ok(response);
    }
    if method != route.method() {
        return Err(ApiError::MethodNotAllowed { allow: route.allow() });
    }

    let client = ClientIp(header(req, "CF-Connecting-IP").unwrap_or_else(|| "unknown".into()));
    let login = edge_login(req, env, config, &client, meter)?;
    let meter = meter.clone();
    match route {
        Route::GenerateOtp | Route::ResendOtp => {
            let body = body::json_object(req).await?;
            let identifier = body::identifier(&body, &config.phone_calling_codes)?;
            let locale = body::locale(&body)?;
            let pending = login.request_code(identifier, &client).await?.in_locale(locale);
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
            let outcome = login.verify_code(identifier, code, &client).await;
            let answer = outcome.map(|grant| {
                json_response(
                    200,
                    &json!({
                        "message": "Login successful",
                        "user": user_json(&grant.user),
                        "token": grant.token.expose(),
                        "token_type": "Token",
                        "expires_in": grant.expires_in,
                    }),
                )
            });
            ctx.wait_until(async move { after_response(&login, &meter, route).await });
            Ok(answer?)
        }
        Route::Logout => {
            let auth = login.authenticate(header(req, "Authorization").as_deref()).await?;
            login.logout(&auth).await?;
            ctx.wait_until(async move { after_response(&login, &meter, route).await });
            Ok(json_response(200, &json!({ "message": "Logged out successfully." })))
        }
        Route::Me => {
            let auth = login.authenticate(header(req, "Authorization").as_deref()).await?;
            let user = login.current_user(&auth).await?;
            Ok(json_response(200, &json!({ "user": user_json(&user) })))
        }
    }
}

fn edge_login(
    req: &Request,
    env: &Env,
    config: &Config,
    client: &ClientIp,
    meter: &Meter,
) -> Result<EdgeLogin, ApiError> {
    let db = D1::new(env.d1("DB").map_err(|e| ApiError::internal("D1 binding DB", &e))?, meter.clone());
    let kv = Kv::new(env.kv("AUTH_KV").map_err(|e| ApiError::internal("KV binding AUTH_KV", &e))?, meter.clone());
    let origin = RequestOrigin {
        ip: Some(client.0.clone()),
        user_agent: header(req, "User-Agent").map(|ua| ua.chars().take(256).collect()),
        country: client_country(req),
    };
    Ok(Login {
        accounts: db.clone(),
        challenges: db.clone(),
        codes: kv.clone(),
        sessions: kv,
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
fn client_country(req: &Request) -> Option<String> {
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
fn code_requested(pending: &PendingCode, config: &Config) -> Response {
    json_response(
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

/// The seed's user shape.
fn user_json(user: &User) -> Value {
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
}
