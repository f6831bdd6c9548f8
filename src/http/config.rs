//! The service's settings, read from vars and secrets (docs/CONFIGURATION.md).

use std::rc::Rc;

use worker::Env;

use crate::adapters::delivery::{provider_list, setting, EmailProvider, SmsProvider};
use crate::adapters::runtime::WorkerClock;
use crate::domain::{CodeHasher, Seconds};
use crate::login::{Clock, MessageSettings, Policy, TestLoginRules, TestLogins, NIST_MAX_CONSECUTIVE_FAILURES};

use super::cors::Cors;
use super::gateway::Gateway;
#[cfg(feature = "scim")]
use super::scim::ScimSettings;

pub struct Config {
    pub messages: MessageSettings,
    pub policy: Policy,
    pub hasher: CodeHasher,
    pub cors: Cors,
    /// Tried in this order until one accepts (`EMAIL_PROVIDER=resend,postmark`).
    pub email_providers: Vec<EmailProvider>,
    pub sms_providers: Vec<SmsProvider>,
    /// Identifiers with a fixed code that are never sent anything (`TEST_LOGINS`).
    pub test_logins: TestLogins,
    /// How long audit rows are kept.
    pub event_retention: Seconds,
    /// How long a session row is kept after it was revoked or expired.
    pub session_retention: Seconds,
    /// Gateway mode: set when `ORIGIN_URL` is.
    pub gateway: Option<Gateway>,
    /// Country calling codes accepted for phone numbers; empty accepts all.
    pub phone_calling_codes: Vec<String>,
    /// Whether answers carry `X-Storage-Ops` and the log gets a `storage-ops` line per request (`STORAGE_METRICS`,
    /// for the benchmark and the budget test). Never true in production.
    pub storage_metrics: bool,
    /// The SCIM endpoints: set when `SCIM_TOKEN` is.
    #[cfg(feature = "scim")]
    pub scim: Option<ScimSettings>,
}

/// A setting is missing or out of range: the deployment is broken, and every request says so in the log.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A duration setting: a whole number of `unit`s in `range`.
fn duration(
    env: &Env,
    name: &str,
    unit: Seconds,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Seconds, ConfigError> {
    let range = i64::from(*range.start())..=i64::from(*range.end());
    let count = number(env, name, i64::from(default), range)?;
    // Within the range's u32 bounds, so the conversion holds.
    Ok(unit.times(u32::try_from(count).unwrap_or(u32::MAX)))
}

fn number(env: &Env, name: &str, default: i64, range: std::ops::RangeInclusive<i64>) -> Result<i64, ConfigError> {
    let Some(raw) = setting(env, name) else { return Ok(default) };
    match raw.trim().parse::<i64>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(ConfigError(format!(
            "{name} must be a whole number from {} to {}, not {raw:?}",
            range.start(),
            range.end()
        ))),
    }
}

/// Only the exact value `development` turns on development conveniences (console delivery, `*` CORS, storage
/// metrics, test identifiers without an opt-in); anything else — unset, `prod`, `staging`, a typo, trailing
/// spaces — is production.
fn is_development(environment: Option<&str>) -> bool {
    environment == Some("development")
}

fn count(env: &Env, name: &str, default: u32, max: u32) -> Result<u32, ConfigError> {
    let value = number(env, name, default.into(), 1..=max.into())?;
    u32::try_from(value).map_err(|_| ConfigError(format!("{name} is out of range")))
}

thread_local! {
    static LOADED: std::cell::OnceCell<Rc<Config>> = const { std::cell::OnceCell::new() };
}

impl Config {
    /// The configuration, read from `env` once per isolate: vars and secrets cannot change while an isolate lives
    /// (a new deployment or secret starts new isolates). A broken configuration is not cached, so every request
    /// reports it.
    pub fn load(env: &Env) -> Result<Rc<Config>, ConfigError> {
        if let Some(config) = LOADED.with(|cell| cell.get().cloned()) {
            return Ok(config);
        }
        let config = Rc::new(Config::from_env(env)?);
        // A request that loaded it concurrently (across an await) may have set it first; either copy is the same.
        LOADED.with(|cell| cell.set(config.clone()).ok());
        Ok(config)
    }

    fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let production = !is_development(setting(env, "ENVIRONMENT").as_deref());
        let defaults = Policy::default();
        let policy = Policy {
            code_ttl: duration(env, "OTP_TTL_MINUTES", Seconds::MINUTE, 10, 1..=60)?,
            max_failed_attempts: count(env, "OTP_MAX_ATTEMPTS", defaults.max_failed_attempts, 10)?,
            lockout: duration(env, "OTP_LOCKOUT_MINUTES", Seconds::MINUTE, 15, 1..=24 * 60)?,
            max_consecutive_failures: count(
                env,
                "OTP_MAX_CONSECUTIVE_FAILURES",
                defaults.max_consecutive_failures,
                NIST_MAX_CONSECUTIVE_FAILURES,
            )?,
            resend_cooldown: duration(env, "OTP_RESEND_COOLDOWN_SECONDS", Seconds::new(1), 60, 1..=3600)?,
            max_sends_per_hour: count(env, "OTP_MAX_SENDS_PER_HOUR", defaults.max_sends_per_hour, 100)?,
            ip_window: duration(env, "RATE_LIMIT_WINDOW_SECONDS", Seconds::new(1), 900, 1..=86_400)?,
            ip_send_limit: count(env, "RATE_LIMIT_IP_SENDS", defaults.ip_send_limit, 1_000_000)?,
            ip_verify_limit: count(env, "RATE_LIMIT_IP_VERIFIES", defaults.ip_verify_limit, 1_000_000)?,
            ip_refresh_limit: count(env, "RATE_LIMIT_IP_REFRESHES", defaults.ip_refresh_limit, 1_000_000)?,
            access_ttl: duration(env, "ACCESS_TOKEN_TTL_SECONDS", Seconds::new(1), 900, 60..=86_400)?,
            refresh_ttl: duration(env, "TOKEN_TTL_DAYS", Seconds::DAY, 30, 1..=365)?,
            session_max: duration(env, "SESSION_MAX_DAYS", Seconds::DAY, 90, 1..=365)?,
            refresh_reuse_grace: duration(env, "REFRESH_REUSE_GRACE_SECONDS", Seconds::new(1), 30, 0..=300)?,
            sms_daily_cap: count(env, "SMS_DAILY_CAP", defaults.sms_daily_cap, 10_000_000)?,
        };

        let key = setting(env, "OTP_HASH_KEY").unwrap_or_default();
        let hasher = CodeHasher::new(key.as_bytes()).ok_or_else(|| {
            ConfigError(format!(
                "OTP_HASH_KEY must be a random secret of at least {} characters (wrangler secret put OTP_HASH_KEY)",
                CodeHasher::MIN_KEY_LEN
            ))
        })?;

        let email_spec = setting(env, "EMAIL_PROVIDER").unwrap_or_else(|| "resend".into());
        let email_providers = provider_list(&email_spec, &EmailProvider::ALL, EmailProvider::name)
            .map_err(|e| ConfigError(format!("EMAIL_PROVIDER: {e}")))?;
        let sms_spec = setting(env, "SMS_PROVIDER").unwrap_or_else(|| "twilio".into());
        let sms_providers = provider_list(&sms_spec, &SmsProvider::ALL, SmsProvider::name)
            .map_err(|e| ConfigError(format!("SMS_PROVIDER: {e}")))?;
        // The console provider writes codes to the log: never acceptable where real users log in.
        if production
            && (email_providers.contains(&EmailProvider::Console) || sms_providers.contains(&SmsProvider::Console))
        {
            return Err(ConfigError("the console provider is refused unless ENVIRONMENT is development".into()));
        }
        let messages = MessageSettings {
            app_name: setting(env, "APP_NAME").unwrap_or_else(|| "CRM".into()),
            sms_origin: setting(env, "SMS_ORIGIN_DOMAIN").map(|d| d.trim().to_ascii_lowercase()),
            sms_app_hash: setting(env, "SMS_APP_HASH").map(|h| h.trim().to_owned()),
        };
        messages.check().map_err(ConfigError)?;
        let rules = TestLoginRules {
            production,
            allowed_in_production: setting(env, "TEST_LOGINS_IN_PRODUCTION").is_some_and(|v| v.trim() == "allow"),
            now: WorkerClock.now(),
        };
        let test_logins = TestLogins::parse(
            &setting(env, "TEST_LOGINS").unwrap_or_default(),
            setting(env, "TEST_LOGINS_EXPIRE").as_deref(),
            rules,
        )
        .map_err(ConfigError)?;
        if let Some((count, until)) = test_logins.summary() {
            let day = until.civil();
            worker::console_warn!(
                "test logins: {count} identifier(s) with a fixed code, nothing sent to them, until {:04}-{:02}-{:02}",
                day.year,
                day.month,
                day.day
            );
        }

        let storage_metrics = match setting(env, "STORAGE_METRICS").as_deref().map(str::trim) {
            None | Some("0" | "false" | "off") => false,
            Some("1" | "true" | "on") => true,
            Some(other) => return Err(ConfigError(format!("STORAGE_METRICS {other:?} is not one of: 1, 0"))),
        };
        // The figures describe the service's storage layout: for local measurement, not for clients.
        if production && storage_metrics {
            return Err(ConfigError("STORAGE_METRICS is refused unless ENVIRONMENT is development".into()));
        }

        let cors =
            Cors::parse(&setting(env, "CORS_ALLOWED_ORIGINS").unwrap_or_default(), production).map_err(ConfigError)?;

        let codes = setting(env, "PHONE_ALLOWED_COUNTRY_CODES").unwrap_or_default();
        let phone_calling_codes: Vec<String> =
            codes.split(',').map(|c| c.trim().trim_start_matches('+').to_owned()).filter(|c| !c.is_empty()).collect();
        if let Some(bad) = phone_calling_codes
            .iter()
            .find(|c| c.len() > 3 || c.starts_with('0') || !c.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ConfigError(format!(
                "PHONE_ALLOWED_COUNTRY_CODES entry {bad:?} is not a calling code like 44"
            )));
        }

        let gateway = match setting(env, "ORIGIN_URL") {
            Some(origin) => Some(
                Gateway::parse(&origin, &setting(env, "GATEWAY_SIGNING_SECRET").unwrap_or_default())
                    .map_err(ConfigError)?,
            ),
            None => None,
        };

        #[cfg(feature = "scim")]
        let scim = ScimSettings::from_env(env, policy.ip_window)?;

        Ok(Config {
            #[cfg(feature = "scim")]
            scim,
            event_retention: duration(env, "EVENT_RETENTION_DAYS", Seconds::DAY, 90, 1..=3650)?,
            session_retention: duration(env, "SESSION_RETENTION_DAYS", Seconds::DAY, 30, 1..=3650)?,
            gateway,
            phone_calling_codes,
            storage_metrics,
            messages,
            policy,
            hasher,
            cors,
            email_providers,
            sms_providers,
            test_logins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_development;

    #[test]
    fn only_the_exact_word_development_is_not_production() {
        assert!(is_development(Some("development")));
        for value in [
            None,
            Some("production"),
            Some("prod"),
            Some("staging"),
            Some("Development"),
            Some("development "),
            Some(" development"),
            Some("developmnet"),
            Some(""),
        ] {
            assert!(!is_development(value), "{value:?}");
        }
    }
}
