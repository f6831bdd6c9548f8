//! `/scim/v2/`: the SCIM 2.0 service provider, on only when the secret `SCIM_TOKEN` is set.
//!
//! Every request is counted in its client's window (as the login routes count theirs) before the bearer token is
//! compared, in constant time, with `SCIM_TOKEN` (comma-separated tokens are all accepted, for rotation). Answers
//! and errors are `application/scim+json`; every change is one D1 batch that also ends the sessions of users who
//! may no longer log in, whose access tokens are then deleted from KV before the answer.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use worker::Env;

use super::answer::Answer;
use super::body;
use super::config::ConfigError;
use super::incoming::{BodyError, Incoming};
use crate::adapters::d1::D1Binding;
use crate::adapters::delivery::setting;
use crate::adapters::kv::Kv;
use crate::adapters::meter::Meter;
use crate::adapters::runtime::WorkerClock;
use crate::adapters::scim::{group_column, user_column, Audit, ScimStore, WriteError};
use crate::login::{AccessTokens, ClientIp, Clock};
use crate::scim::filter::{self, Column};
use crate::scim::resource::{self, GroupFields, StoredGroup, StoredUser, UserFields};
use crate::scim::{patch, ScimError, GROUP_SCHEMA, USER_SCHEMA};

/// The SCIM endpoints' base path.
pub const BASE: &str = "/scim/v2";
const MEDIA_TYPE: &str = "application/scim+json";
/// Largest request body: a group PATCH may list many members.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Shortest token accepted in `SCIM_TOKEN`.
const MIN_TOKEN_LEN: usize = 32;
const DISCOVERY: &str = include_str!("../scim/discovery.json");

/// The SCIM settings, present when `SCIM_TOKEN` is set.
pub struct ScimSettings {
    /// SHA-256 of each accepted token: compared in constant time, never kept in the clear beyond loading.
    tokens: Vec<[u8; 32]>,
    /// Requests per client per window (`RATE_LIMIT_SCIM_REQUESTS`).
    limit: u32,
    window: i64,
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl ScimSettings {
    /// `None` when `SCIM_TOKEN` is not set (SCIM is off); an error when a token is too short to be a secret.
    pub fn from_env(env: &Env, window: i64) -> Result<Option<ScimSettings>, ConfigError> {
        let Some(raw) = setting(env, "SCIM_TOKEN") else { return Ok(None) };
        let tokens: Vec<&str> = raw.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() || tokens.iter().any(|t| t.len() < MIN_TOKEN_LEN || t.contains(char::is_whitespace)) {
            return Err(ConfigError(format!(
                "SCIM_TOKEN must be one or more comma-separated random tokens of at least {MIN_TOKEN_LEN} characters \
                 (openssl rand -hex 32)"
            )));
        }
        let limit = match setting(env, "RATE_LIMIT_SCIM_REQUESTS") {
            None => 1200,
            Some(v) => v.trim().parse::<u32>().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or_else(|| {
                ConfigError(format!("RATE_LIMIT_SCIM_REQUESTS must be a whole number from 1 to 1000000, not {v:?}"))
            })?,
        };
        Ok(Some(ScimSettings { tokens: tokens.into_iter().map(sha256).collect(), limit, window }))
    }

    /// Whether the `Authorization` header carries one of the tokens. Every token is compared, each in constant
    /// time over its SHA-256, so the time taken says nothing about how much of a guess was right.
    fn admits(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, token)) = authorization.map(str::trim).and_then(|h| h.split_once(' ')) else { return false };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let presented = sha256(token.trim());
        self.tokens.iter().fold(false, |found, known| {
            let difference = known.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (difference == 0)
        })
    }
}

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

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    ServiceProviderConfig,
    ResourceTypes(Option<&'a str>),
    Schemas(Option<&'a str>),
    Users(Option<i64>),
    Groups(Option<i64>),
}

fn target(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix(BASE)?.trim_end_matches('/');
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (head, id) = match rest.split_once('/') {
        Some((head, id)) if !id.is_empty() && !id.contains('/') => (head, Some(id)),
        Some(_) => return None,
        None => (rest, None),
    };
    let number = |id: Option<&str>| -> Option<Option<i64>> {
        match id {
            None => Some(None),
            Some(id) if id.len() <= 15 && id.bytes().all(|b| b.is_ascii_digit()) => id.parse().ok().map(Some),
            // An id this service never issued: a 404 for the resource, not for the route.
            Some(_) => Some(Some(-1)),
        }
    };
    Some(match head {
        "ServiceProviderConfig" if id.is_none() => Target::ServiceProviderConfig,
        "ResourceTypes" => Target::ResourceTypes(id),
        "Schemas" => Target::Schemas(id),
        "Users" => Target::Users(number(id)?),
        "Groups" => Target::Groups(number(id)?),
        _ => return None,
    })
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
            let retry = (started + settings.window - self.now).max(1);
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

    async fn create_user(&self) -> Result<Answer, ScimError> {
        let fields = resource::user_fields(&self.body().await?, self.calling_codes)?;
        let audit = self.audit("create", user_changes(None, &fields), "");
        let user = self.store.create_user(&fields, &audit).await.map_err(write_error)?;
        Ok(self.created(user_json_of(&user, &self.base)))
    }

    /// PUT (replace) or PATCH.
    async fn change_user(&self, id: i64, patching: bool) -> Result<Answer, ScimError> {
        let body = self.body().await?;
        let current = self.find_user(id).await?;
        let mut fields = if patching {
            let Value::Object(mut rendered) = user_json_of(&current, &self.base) else {
                return Err(internal("render", &id));
            };
            patch::apply(&mut rendered, &body)?;
            resource::user_fields(&rendered, self.calling_codes)?
        } else {
            resource::user_fields(&body, self.calling_codes)?
        };
        // Absent from a PUT: the state stays (a replace must not reactivate anyone), and so do the client's id and
        // the language an administrator may have set.
        fields.active = fields.active.or(current.fields.active);
        if !patching {
            fields.external_id = fields.external_id.or_else(|| current.fields.external_id.clone());
            fields.locale = fields.locale.or_else(|| current.fields.locale.clone());
        }
        let reason = if current.fields.active == Some(true) && fields.active == Some(false) {
            "scim: deactivated"
        } else {
            "scim: access removed"
        };
        let audit = self.audit(
            if patching { "update" } else { "replace" },
            user_changes(Some(&current.fields), &fields),
            reason,
        );
        let changed = self.store.update_user(id, &fields, &audit).await.map_err(write_error)?;
        self.end_sessions(&changed.ended).await;
        Ok(self.shown(200, user_json_of(&changed.resource, &self.base)))
    }

    async fn delete_user(&self, id: i64) -> Result<Answer, ScimError> {
        let current = self.find_user(id).await?;
        let audit = self.audit("delete", json!({}), "scim: deleted");
        let ended = self.store.delete_user(id, &current.fields.email, &audit).await.map_err(write_error)?;
        let ended = ended.ok_or_else(|| ScimError::not_found("User"))?;
        self.end_sessions(&ended).await;
        Ok(Answer::empty(204))
    }

    async fn create_group(&self) -> Result<Answer, ScimError> {
        let fields = resource::group_fields(&self.body().await?)?;
        let audit = self.audit("create", group_changes(None, &fields), "");
        let group = self.store.create_group(&fields, &audit).await.map_err(write_error)?;
        Ok(self.created(resource::group_json(&group, &self.base)))
    }

    async fn change_group(&self, id: i64, patching: bool) -> Result<Answer, ScimError> {
        let body = self.body().await?;
        let (current, _) = self.find_group(id).await?;
        let mut fields = if patching {
            let Value::Object(mut rendered) = resource::group_json(&current, &self.base) else {
                return Err(internal("render", &id));
            };
            patch::apply(&mut rendered, &body)?;
            resource::group_fields(&rendered)?
        } else {
            resource::group_fields(&body)?
        };
        if !patching {
            fields.external_id = fields.external_id.or_else(|| current.external_id.clone());
        }
        let before: Vec<i64> = current.members.iter().map(|(id, _)| *id).collect();
        let previous = GroupFields {
            name: current.name.clone(),
            external_id: current.external_id.clone(),
            members: before.clone(),
        };
        let audit = self.audit(
            if patching { "update" } else { "replace" },
            group_changes(Some(&previous), &fields),
            "scim: removed from group",
        );
        let changed = self.store.update_group(id, &fields, &before, &audit).await.map_err(write_error)?;
        self.end_sessions(&changed.ended).await;
        // A PATCH answers 204, as Entra ID's and Okta's references show: a large group's members are not sent back
        // for every membership change. A PUT answers with the group.
        if patching {
            return Ok(Answer::empty(204));
        }
        Ok(self.shown(200, resource::group_json(&changed.resource, &self.base)))
    }

    async fn delete_group(&self, id: i64) -> Result<Answer, ScimError> {
        let (current, employee) = self.find_group(id).await?;
        let refused = || {
            ScimError::bad(
                "mutability",
                "An employee group can only be deleted by an administrator: its members' access depends on it.",
            )
        };
        if employee {
            return Err(refused());
        }
        let audit = self.audit("delete", json!({ "members": current.members.len() }), "");
        if !self.store.delete_group(id, &current.name, &audit).await.map_err(write_error)? {
            return Err(refused());
        }
        Ok(Answer::empty(204))
    }
}

/// `scheme://host[:port]` of an absolute URL as the runtime serialises it.
fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |j| start + j);
    &url[..end]
}

/// The query's name/value pairs, decoded as `application/x-www-form-urlencoded` (`+` is a space). A full URL
/// parser would bring its international domain name tables into the Worker; this is all SCIM needs.
fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q.split('#').next().unwrap_or_default());
    let pairs = query.split('&').filter(|p| !p.is_empty());
    pairs.map(|pair| pair.split_once('=').unwrap_or((pair, ""))).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn decode(text: &str) -> String {
    let (bytes, mut out, mut i) = (text.as_bytes(), Vec::with_capacity(text.len()), 0);
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        let escaped =
            (bytes[i] == b'%').then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?)).flatten();
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte as u8);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// The fields a change sets, with their new values (all of them for a new user).
fn user_changes(before: Option<&UserFields>, after: &UserFields) -> Value {
    let old = before.cloned().unwrap_or_default();
    let mut changed = Map::new();
    let mut note = |name: &str, was: Value, now: Value| {
        if before.is_none() || was != now {
            changed.insert(name.to_owned(), now);
        }
    };
    note("email", old.email.into(), after.email.clone().into());
    note("external_id", old.external_id.into(), after.external_id.clone().into());
    note("first_name", old.first_name.into(), after.first_name.clone().into());
    note("last_name", old.last_name.into(), after.last_name.clone().into());
    note("is_active", old.active.into(), after.active.into());
    note("phone_number", old.phone.into(), after.phone.clone().into());
    note("designation", old.designation.into(), after.designation.clone().into());
    note("branch", old.branch.into(), after.branch.clone().into());
    note("locale", old.locale.into(), after.locale.clone().into());
    Value::Object(changed)
}

/// A group's new name and the members it gained and lost.
fn group_changes(before: Option<&GroupFields>, after: &GroupFields) -> Value {
    let old = before.cloned().unwrap_or_default();
    let added: Vec<i64> = after.members.iter().filter(|m| !old.members.contains(m)).copied().collect();
    let removed: Vec<i64> = old.members.iter().filter(|m| !after.members.contains(m)).copied().collect();
    let mut changed = json!({ "members_added": added, "members_removed": removed });
    if before.is_none() || old.name != after.name {
        changed["name"] = after.name.clone().into();
    }
    if before.is_none() || old.external_id != after.external_id {
        changed["external_id"] = after.external_id.clone().into();
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_endpoints_with_or_without_a_trailing_slash() {
        assert_eq!(target("/scim/v2/Users"), Some(Target::Users(None)));
        assert_eq!(target("/scim/v2/Users/"), Some(Target::Users(None)));
        assert_eq!(target("/scim/v2/Users/12"), Some(Target::Users(Some(12))));
        assert_eq!(target("/scim/v2/Users/abc"), Some(Target::Users(Some(-1))));
        assert_eq!(target("/scim/v2/Groups/3/"), Some(Target::Groups(Some(3))));
        assert_eq!(target("/scim/v2/ServiceProviderConfig"), Some(Target::ServiceProviderConfig));
        assert_eq!(
            target("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"),
            Some(Target::Schemas(Some(USER_SCHEMA)))
        );
        assert_eq!(target("/scim/v2/Users/1/2"), None);
        assert_eq!(target("/scim/v2/Bulk"), None);
        assert!(is_scim_path("/scim/v2") && is_scim_path("/scim/v2/Users") && !is_scim_path("/scim/v2x"));
    }

    #[test]
    fn the_query_is_decoded_as_a_form_and_the_origin_kept() {
        let url = "https://login.example.com:8443/scim/v2/Users?filter=userName%20eq%20%22a%2Bb%40x.com%22&count=2&x=%E2%9C%93+y&bad=%zz#f";
        assert_eq!(
            query_pairs(url),
            [("filter", "userName eq \"a+b@x.com\""), ("count", "2"), ("x", "\u{2713} y"), ("bad", "%zz")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(origin(url), "https://login.example.com:8443");
        assert!(query_pairs("http://h/scim/v2/Users").is_empty());
    }

    #[test]
    fn only_a_configured_token_is_admitted_and_only_as_a_bearer_token() {
        let a = "a".repeat(40);
        let settings = ScimSettings { tokens: vec![sha256(&a), sha256(&"b".repeat(32))], limit: 1, window: 1 };
        assert!(settings.admits(Some(&format!("Bearer {a}"))));
        assert!(settings.admits(Some(&format!("bearer  {}", "b".repeat(32)))));
        assert!(!settings.admits(Some(&format!("Token {a}"))));
        assert!(!settings.admits(Some(&format!("Bearer {}", &a[1..]))));
        assert!(!settings.admits(Some("Bearer ")));
        assert!(!settings.admits(None));
    }

    #[test]
    fn a_change_records_only_what_changed() {
        let before = UserFields {
            email: "a@example.com".into(),
            active: Some(true),
            branch: "East".into(),
            ..UserFields::default()
        };
        let after = UserFields { active: Some(false), ..before.clone() };
        assert_eq!(user_changes(Some(&before), &after), json!({ "is_active": false }));
        let created = user_changes(None, &before);
        assert_eq!(created["email"], "a@example.com");
        assert_eq!(created["branch"], "East");
        let group = GroupFields { name: "Sales".into(), external_id: None, members: vec![1, 2] };
        let next = GroupFields { members: vec![2, 3], ..group.clone() };
        assert_eq!(group_changes(Some(&group), &next), json!({ "members_added": [3], "members_removed": [1] }));
    }

    #[test]
    fn the_discovery_document_lists_the_endpoints_schemas() {
        let types = discovery("ResourceTypes");
        assert_eq!(types[0]["endpoint"], "/Users");
        let schemas = discovery("Schemas");
        let ids: Vec<&str> = schemas.as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
        assert_eq!(ids, [USER_SCHEMA, crate::scim::ENTERPRISE_USER, GROUP_SCHEMA]);
        assert_eq!(discovery("ServiceProviderConfig")["patch"]["supported"], true);
    }
}
