//! `/scim/v2/`: the SCIM 2.0 service provider, on only when the secret `SCIM_TOKEN` is set.
//!
//! Every request is counted in its client's window (as the login routes count theirs) before the bearer token is
//! compared, in constant time, with `SCIM_TOKEN` (comma-separated tokens are all accepted, for rotation). Answers
//! and errors are `application/scim+json`; every change is one D1 batch that also ends the sessions of users who
//! may no longer log in, whose access tokens are then deleted from KV before the answer.

mod routing;
mod settings;
mod writes;

use serde_json::{Map, Value};
use worker::Env;

use super::answer::Answer;
use super::body;
use super::incoming::{BodyError, Incoming};
use crate::adapters::d1::D1Binding;
use crate::adapters::kv::Kv;
use crate::adapters::meter::Meter;
use crate::adapters::runtime::WorkerClock;
use crate::adapters::scim::{group_column, user_column, Audit, ScimStore, WriteError};
use crate::login::{AccessTokens, ClientIp, Clock};
use crate::scim::filter::{self, Column};
use crate::scim::resource::{self, GroupFields, StoredGroup, StoredUser, UserFields};
use crate::scim::{patch, ScimError, GROUP_SCHEMA, USER_SCHEMA};
use routing::{origin, query_pairs, target, Target};
pub use settings::ScimSettings;

/// The SCIM endpoints' base path.
pub const BASE: &str = "/scim/v2";
const MEDIA_TYPE: &str = "application/scim+json";
/// Largest request body: a group PATCH may list many members.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const DISCOVERY: &str = include_str!("../scim/discovery.json");

/// Whether `path` is under `/scim/v2`.
pub fn is_scim_path(path: &str) -> bool {
    path == BASE || path.starts_with("/scim/v2/")
}

fn answer(status: u16, body: &Value) -> Answer {
    Answer::json_as(status, body, MEDIA_TYPE)
}

fn error_answer(error: &ScimError) -> Answer {
    answer(error.status, &error.body())
}

fn internal(context: &str, cause: &dyn std::fmt::Display) -> ScimError {
    worker::console_error!("scim {context}: {cause}");
    ScimError::status(500, "Something went wrong on our side.")
}

fn write_error(error: WriteError) -> ScimError {
    match error {
        WriteError::Taken(attr) => ScimError::taken(format!("Another resource already has this {attr}.")),
        WriteError::Store(e) => internal("write", &e.0),
    }
}

/// One request's context.
struct Scim<'a> {
    req: &'a Incoming,
    env: &'a Env,
    store: ScimStore<D1Binding>,
    meter: &'a Meter,
    base: String,
    query: Vec<(String, String)>,
    ip: String,
    now: i64,
    calling_codes: &'a [String],
}

pub async fn handle(
    req: &Incoming,
    env: &Env,
    settings: &ScimSettings,
    calling_codes: &[String],
    meter: &Meter,
) -> Answer {
    let url = req.url();
    let base = format!("{}{BASE}", origin(&url));
    let query = query_pairs(&url);
    let store = match env.d1("DB") {
        Ok(db) => ScimStore::new(D1Binding::new(db, meter.clone())),
        Err(e) => return error_answer(&internal("D1 binding DB", &e)),
    };
    let ip = req.header("CF-Connecting-IP").unwrap_or_else(|| "unknown".into());
    let scim = Scim { req, env, store, meter, base, query, ip, now: WorkerClock.now().0, calling_codes };
    match scim.admit(settings).await {
        Ok(()) => scim.route().await.unwrap_or_else(|e| error_answer(&e)),
        Err(refusal) => refusal,
    }
}

impl Scim<'_> {
    /// The client's window, then the token.
    async fn admit(&self, settings: &ScimSettings) -> Result<(), Answer> {
        // Per IPv4 address or IPv6 /64, as the login routes count their clients.
        let bucket = format!("ip:{}:scim", ClientIp(self.ip.clone()).network());
        let (hits, started) = self
            .store
            .count_request(&bucket, self.now, settings.window)
            .await
            .map_err(|e| error_answer(&internal("rate limit", &e.0)))?;
        if hits > settings.limit {
            let retry = (started + settings.window.as_i64() - self.now).max(1);
            let mut refused =
                error_answer(&ScimError::status(429, format!("Too many requests. Try again in {retry} seconds.")));
            refused.header("Retry-After", retry.to_string());
            return Err(refused);
        }
        if !settings.admits(self.req.header("Authorization").as_deref()) {
            worker::console_warn!("scim: refused a request without a valid bearer token from {}", self.ip);
            let mut refused = error_answer(&ScimError::status(401, "A valid bearer token is required."));
            refused.header("WWW-Authenticate", "Bearer realm=\"scim\"");
            return Err(refused);
        }
        Ok(())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    async fn route(&self) -> Result<Answer, ScimError> {
        let method = self.req.method();
        let target = target(self.req.path()).ok_or_else(|| ScimError::not_found("Endpoint"))?;
        let allow = match target {
            Target::Users(None) | Target::Groups(None) => "GET, POST",
            Target::Users(Some(_)) | Target::Groups(Some(_)) => "GET, PUT, PATCH, DELETE",
            _ => "GET",
        };
        if !allow.split(", ").any(|m| m == method) {
            let mut refused = error_answer(&ScimError::status(405, format!("Method not allowed; use {allow}.")));
            refused.header("Allow", allow);
            return Ok(refused);
        }
        match (target, method) {
            (Target::ServiceProviderConfig, _) => Ok(answer(200, &discovery("ServiceProviderConfig"))),
            (Target::ResourceTypes(id), _) => self.discovered("ResourceTypes", id),
            (Target::Schemas(id), _) => self.discovered("Schemas", id),
            (Target::Users(None), "GET") => self.list_users().await,
            (Target::Users(None), _) => self.create_user().await,
            (Target::Users(Some(id)), "GET") => {
                Ok(self.shown(200, user_json_of(&self.find_user(id).await?, &self.base)))
            }
            (Target::Users(Some(id)), "DELETE") => self.delete_user(id).await,
            (Target::Users(Some(id)), _) => self.change_user(id, method == "PATCH").await,
            (Target::Groups(None), "GET") => self.list_groups().await,
            (Target::Groups(None), _) => self.create_group().await,
            (Target::Groups(Some(id)), "GET") => {
                Ok(self.shown(200, resource::group_json(&self.find_group(id).await?.0, &self.base)))
            }
            (Target::Groups(Some(id)), "DELETE") => self.delete_group(id).await,
            (Target::Groups(Some(id)), _) => self.change_group(id, method == "PATCH").await,
        }
    }

    /// `ResourceTypes` and `Schemas`: the list, or one by id.
    fn discovered(&self, kind: &str, id: Option<&str>) -> Result<Answer, ScimError> {
        let Value::Array(items) = discovery(kind) else { return Err(internal("discovery", &kind)) };
        match id {
            None => Ok(answer(200, &resource::list(items.len() as u64, 1, items))),
            Some(id) => items
                .into_iter()
                .find(|item| item["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(id)))
                .map(|item| answer(200, &item))
                .ok_or_else(|| ScimError::not_found(kind.trim_end_matches('s'))),
        }
    }

    /// A resource, with `attributes` / `excludedAttributes` applied.
    fn shown(&self, status: u16, mut resource: Value) -> Answer {
        resource::project(&mut resource, self.param("attributes"), self.param("excludedAttributes"));
        answer(status, &resource)
    }

    fn created(&self, resource: Value) -> Answer {
        let location = resource["meta"]["location"].as_str().unwrap_or_default().to_owned();
        let mut created = self.shown(201, resource);
        created.header("Location", location);
        created
    }

    async fn body(&self) -> Result<Map<String, Value>, ScimError> {
        let content_type = self.req.header("Content-Type").unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if media != MEDIA_TYPE && media != "application/json" {
            return Err(ScimError::status(415, "Send the body as application/scim+json."));
        }
        let bytes = self.req.body(MAX_BODY_BYTES).await.map_err(|e| match e {
            BodyError::TooLarge => ScimError::status(413, "The request body is too large."),
            BodyError::Unreadable => ScimError::bad("invalidSyntax", "The request body could not be read."),
        })?;
        body::parse_object(&bytes).map_err(|e| ScimError::bad("invalidSyntax", e.message()))
    }

    fn audit(&self, action: &'static str, detail: Value, reason: &'static str) -> Audit<'_> {
        Audit { now: self.now, ip: &self.ip, action, detail: detail.to_string(), reason }
    }

    /// Deletes the access tokens of the sessions a change ended, so they stop working now.
    async fn end_sessions(&self, ended: &[crate::domain::TokenDigest]) {
        if ended.is_empty() {
            return;
        }
        match self.env.kv("AUTH_KV") {
            Ok(store) => {
                let kv = Kv::new(store, self.meter.clone());
                for digest in ended {
                    if let Err(e) = kv.delete(digest).await {
                        worker::console_error!("scim: could not delete an ended session's access token: {}", e.0);
                    }
                }
            }
            Err(e) => worker::console_error!("scim: KV binding AUTH_KV: {e}"),
        }
    }

    fn filter(&self, column: fn(&str) -> Option<Column>) -> Result<(String, Vec<Value>), ScimError> {
        let mut params = Vec::new();
        let sql = match self.param("filter").filter(|f| !f.trim().is_empty()) {
            None => "1".to_owned(),
            Some(text) => filter::parse(text)?.to_sql(&|attr| column(strip_core_urn(attr)), &mut params)?,
        };
        Ok((sql, params))
    }

    async fn list_users(&self) -> Result<Answer, ScimError> {
        let (sql, params) = self.filter(user_column)?;
        let (start, count) = resource::page(self.param("startIndex"), self.param("count"))?;
        let (total, users) =
            self.store.users(&sql, &params, start - 1, count).await.map_err(|e| internal("list", &e.0))?;
        let items = users.iter().map(|u| self.projected(user_json_of(u, &self.base))).collect();
        Ok(answer(200, &resource::list(total, start, items)))
    }

    async fn list_groups(&self) -> Result<Answer, ScimError> {
        let (sql, params) = self.filter(group_column)?;
        let (start, count) = resource::page(self.param("startIndex"), self.param("count"))?;
        let excluded = self
            .param("excludedAttributes")
            .unwrap_or_default()
            .split(',')
            .any(|a| a.trim().eq_ignore_ascii_case("members"));
        let listed = self
            .param("attributes")
            .is_some_and(|a| !a.split(',').any(|a| a.trim().to_ascii_lowercase().starts_with("members")));
        let (total, groups) = self
            .store
            .groups(&sql, &params, start - 1, count, !(excluded || listed))
            .await
            .map_err(|e| internal("list", &e.0))?;
        let items = groups.iter().map(|g| self.projected(resource::group_json(g, &self.base))).collect();
        Ok(answer(200, &resource::list(total, start, items)))
    }

    fn projected(&self, mut resource: Value) -> Value {
        resource::project(&mut resource, self.param("attributes"), self.param("excludedAttributes"));
        resource
    }

    async fn find_user(&self, id: i64) -> Result<StoredUser, ScimError> {
        self.store.user(id).await.map_err(|e| internal("read", &e.0))?.ok_or_else(|| ScimError::not_found("User"))
    }

    async fn find_group(&self, id: i64) -> Result<(StoredGroup, bool), ScimError> {
        let found = self
            .store
            .group(id)
            .await
            .map_err(|e| internal("read", &e.0))?
            .ok_or_else(|| ScimError::not_found("Group"))?;
        Ok((found.group, found.employee))
    }
}

fn discovery(kind: &str) -> Value {
    serde_json::from_str::<Value>(DISCOVERY).map(|mut all| all[kind].take()).unwrap_or(Value::Null)
}

fn user_json_of(user: &StoredUser, base: &str) -> Value {
    resource::user_json(user, base)
}

/// An attribute path with the core schema's URN in front is the same attribute.
fn strip_core_urn(attr: &str) -> &str {
    for urn in [USER_SCHEMA, GROUP_SCHEMA] {
        if attr.len() > urn.len() + 1
            && attr[..urn.len()].eq_ignore_ascii_case(urn)
            && attr.as_bytes()[urn.len()] == b':'
        {
            return &attr[urn.len() + 1..];
        }
    }
    attr
}

#[cfg(test)]
mod tests;
