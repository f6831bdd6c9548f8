use super::message::{Language, Message, MessageSettings};
use super::policy::{Policy, Refusal};
use super::ports::{
    AccessTokens, Attempt, Challenges, Clock, Device, EventKind, EventLog, Guess, Guesses, LoginEvent, NewCode,
    NewSession, Notifier, Opening, Session, Sessions, StoreError, SESSION_FORMAT,
};
use super::test_logins::TestLogins;
use super::ClientIp;
use crate::domain::{
    ChallengeId, Channel, CodeHasher, Identifier, Locale, OtpCode, Random, RandomError, Seconds, Token, UnixTime, User,
};

/// The outside world the login use cases need, named once per deployment (the Worker, the host tests, the edge
/// simulation): each adapter behind its port.
pub trait Ports {
    /// The strongly consistent store (D1): codes, guesses, sessions and refresh tokens. Each call is one atomic
    /// step.
    type Store: Challenges + Guesses + Sessions;
    /// Access tokens with a snapshot of their user (KV).
    type Tokens: AccessTokens;
    /// The email and SMS providers.
    type Notifier: Notifier;
    type Clock: Clock;
    type Random: Random;
    /// The audit trail and what a request leaves for after its answer.
    type Events: EventLog;
}

/// The login use cases over their ports.
pub struct Login<P: Ports> {
    pub store: P::Store,
    pub access: P::Tokens,
    pub notifier: P::Notifier,
    pub clock: P::Clock,
    pub random: P::Random,
    pub events: P::Events,
    pub policy: Policy,
    pub hasher: CodeHasher,
    pub messages: MessageSettings,
    /// Identifiers whose code is fixed and never sent (app-store review, QA).
    pub test_logins: TestLogins,
}

/// A failure inside the service, never caused by the client: logged, answered with an opaque 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalError {
    Store(StoreError),
    Random(RandomError),
}

impl std::fmt::Display for InternalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InternalError::Store(e) => write!(f, "storage failed: {}", e.0),
            InternalError::Random(e) => write!(f, "{e}"),
        }
    }
}

/// Why a code request or a verification did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// A rate limit, cooldown or lockout applies.
    Refused(Refusal),
    /// Wrong, expired, already used or never issued: the client cannot tell which.
    InvalidCode {
        attempts_remaining: u32,
    },
    Internal(InternalError),
}

/// Why a request's token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Token|Bearer` header.
    Missing,
    /// A token that is malformed, expired, logged out, or whose user may no longer log in.
    Invalid,
    /// The client is over its limit for presenting refresh tokens.
    Refused(Refusal),
    Internal(InternalError),
}

macro_rules! internal_from {
    ($($error:ty),*) => {$(
        impl From<StoreError> for $error {
            fn from(e: StoreError) -> Self { Self::Internal(InternalError::Store(e)) }
        }
        impl From<RandomError> for $error {
            fn from(e: RandomError) -> Self { Self::Internal(InternalError::Random(e)) }
        }
    )*};
}
internal_from!(LoginError, AuthError);

/// A code request that was admitted: its code's digest is stored; the code is delivered after the response by
/// [`Login::deliver_code`], so that every admitted request is answered the same way and as fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCode {
    pub identifier: Identifier,
    pub challenge: ChallengeId,
    pub expires_at: UnixTime,
    /// The language the request asked for; the profile's or English otherwise.
    pub locale: Option<Locale>,
    /// The account the identifier names, if any, as read with the challenge. Looked at only after the answer.
    pub account: Option<User>,
    /// The code, made for every request (so that every request does the same work) and sent only to an account
    /// that may log in.
    code: OtpCode,
    /// A test identifier's fixed code: never sent.
    fixed: bool,
    /// Whether one of today's SMS slots was taken for it.
    sms_slot: bool,
}

impl PendingCode {
    /// The same request, asking for its message in `locale`.
    pub fn in_locale(self, locale: Option<Locale>) -> PendingCode {
        PendingCode { locale, ..self }
    }
}

/// A freshly issued access token and refresh token, as handed to the client once.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub session_id: i64,
    pub access: Token,
    /// How long until the access token expires.
    pub access_expires_in: Seconds,
    pub refresh: Token,
    /// How long until the refresh token expires.
    pub refresh_expires_in: Seconds,
}

/// A successful login or refresh.
#[derive(Debug, Clone)]
pub struct LoginGrant {
    pub user: User,
    pub tokens: TokenPair,
}

/// KV refuses expirations under a minute.
const MIN_STORE_TTL: Seconds = Seconds::MINUTE;

/// Session ids are chosen at random below 2^48 (at most 15 digits, exact as a JS number), so that the session is
/// known before the statement that starts it commits.
const SESSION_ID_BITS: u32 = 48;

impl<P: Ports> Login<P> {
    pub(super) fn record(
        &self,
        kind: EventKind,
        user_id: Option<i64>,
        identifier: Option<&Identifier>,
        detail: Option<String>,
    ) {
        self.events.record(LoginEvent { kind, at: self.clock.now(), user_id, identifier: identifier.cloned(), detail });
    }

    /// Admits a request for a new code (generate or resend) for `identifier`, whoever it belongs to, in one round
    /// trip: the code is made and its digest stored with the challenge (only for an account that may log in), and
    /// the account is read with it but not looked at here: the answer depends only on the identifier's and the
    /// client's limits.
    pub async fn request_code(&self, identifier: Identifier, client: &ClientIp) -> Result<PendingCode, LoginError> {
        let now = self.clock.now();
        let challenge = ChallengeId::generate(&self.random)?;
        let fixed = self.test_logins.code_for(&identifier, now).cloned();
        let code = match &fixed {
            Some(code) => code.clone(),
            None => OtpCode::generate(&self.random)?,
        };
        let digest = self.hasher.digest(&identifier, &code);
        let claim_sms_slot = identifier.channel() == Channel::Sms && fixed.is_none();
        let new_code = NewCode { challenge: &challenge, digest: &digest, claim_sms_slot };
        match self.store.open(&identifier, &new_code, client, now, &self.policy).await? {
            Opening::Issued { account, sms_slot } => Ok(PendingCode {
                identifier,
                challenge,
                expires_at: now.plus(self.policy.code_ttl),
                locale: None,
                account: account.map(|user| *user),
                code,
                fixed: fixed.is_some(),
                sms_slot,
            }),
            Opening::Refused(refusal) => {
                self.record(EventKind::Refused, None, Some(&identifier), Some(refusal.describe("code request")));
                Err(LoginError::Refused(refusal))
            }
        }
    }

    /// Sends the code of an admitted request, if the identifier belongs to an account that may log in; otherwise
    /// only records the request. A test identifier's code is its fixed one and nothing is sent. Runs after the
    /// response; failures are recorded, not returned.
    pub async fn deliver_code(&self, pending: &PendingCode) -> Result<(), InternalError> {
        let identifier = &pending.identifier;
        let refusal = match &pending.account {
            None => Some("no such account"),
            Some(user) => user.refusal_reason(),
        };
        let user_id = pending.account.as_ref().map(|u| u.id);
        let fixed = pending.fixed && refusal.is_none();
        let detail = refusal.or(fixed.then_some("test identifier: fixed code, nothing sent"));
        self.record(EventKind::CodeRequested, user_id, Some(identifier), detail.map(str::to_owned));
        let Some(user) = pending.account.as_ref().filter(|_| refusal.is_none() && !fixed) else {
            return Ok(());
        };

        if identifier.channel() == Channel::Sms && !pending.sms_slot {
            let detail = format!("daily SMS cap of {} reached", self.policy.sms_daily_cap);
            self.record(EventKind::DeliveryFailed, user_id, Some(identifier), Some(detail));
            return Ok(());
        }

        let language = Language::choose(pending.locale.as_ref(), user.profile.locale.as_deref());
        let ttl_minutes = i64::from(self.policy.code_ttl.get() / 60);
        let message = Message::one_time_code(&self.messages, identifier, &pending.code, ttl_minutes, language);
        let report = self.notifier.send(&message).await;
        for failure in report.failures {
            // Providers echo the recipient in their errors (Twilio's do); the audit trail keeps only the masked form.
            let detail = format!("{}: {}", failure.provider, identifier.scrub(&failure.reason));
            self.record(EventKind::DeliveryFailed, user_id, Some(identifier), Some(detail));
        }
        if let Some(provider) = report.delivered_by {
            self.record(EventKind::CodeSent, user_id, Some(identifier), Some(provider.to_owned()));
        }
        Ok(())
    }

    /// Checks one guess, in one round trip. Between two successful logins at most `max_consecutive_failures`
    /// guesses are ever evaluated for an account (all its identifiers and codes together), and a code yields at most
    /// one session, however many requests race.
    pub async fn verify_code(
        &self,
        identifier: Identifier,
        code: OtpCode,
        client: &ClientIp,
        device: &Device,
    ) -> Result<LoginGrant, LoginError> {
        let now = self.clock.now();
        let nonce = ChallengeId::generate(&self.random)?;
        // The same work for every guess, whoever the identifier belongs to: the digest compared by the database.
        let digest = self.hasher.digest(&identifier, &code);
        let (access, refresh, start) = self.new_tokens(now, device)?;
        let session_id = self.new_session_id()?;
        let guess = Guess { nonce: &nonce, digest: &digest, session_id, start: &start };
        let attempt = match self.store.attempt(&identifier, &guess, client, now, &self.policy).await {
            Ok(attempt) => attempt,
            Err(e) => {
                // The batch may have committed with its answer lost: the session it may have started is ended, so
                // no session is left that nobody holds, and its code can be entered again.
                let _ = self.store.release(&identifier, &nonce, &start.access, now).await;
                return Err(e.into());
            }
        };
        let fresh = LoginError::InvalidCode { attempts_remaining: self.policy.max_failed_attempts };
        match attempt {
            Attempt::LoggedIn { user, session_id } => {
                let snapshot = self.snapshot(session_id, &user, &start, now);
                if let Err(e) = self.access.put(&start.access, &snapshot, self.access_ttl()).await {
                    let _ = self.store.release(&identifier, &nonce, &start.access, now).await;
                    return Err(e.into());
                }
                // Written after the step that made it live: checked again after the answer (see `settle`).
                self.events.issued(&start.access);
                let tokens = self.pair(session_id, access, refresh, &start, now);
                self.record(EventKind::Login, Some(user.id), Some(&identifier), None);
                Ok(LoginGrant { user: *user, tokens })
            }
            Attempt::Consumed { account } => {
                let reason = match account.as_deref() {
                    None => "no such account",
                    Some(user) => user.refusal_reason().unwrap_or("no session was started"),
                };
                let user_id = account.map(|u| u.id);
                self.record(EventKind::CodeFailed, user_id, Some(&identifier), Some(reason.to_owned()));
                Err(fresh)
            }
            Attempt::Wrong { code_failures, failures, lock } => {
                self.record(EventKind::CodeFailed, None, Some(&identifier), None);
                // The subject's count already includes this guess, and may have locked it.
                if let Some(refusal) = lock {
                    let detail = format!("{failures} consecutive failures; {}", refusal.describe("login"));
                    self.record(EventKind::LockedOut, None, Some(&identifier), Some(detail));
                    return Err(LoginError::Refused(refusal));
                }
                let attempts_remaining = self.policy.attempts_remaining(failures, code_failures);
                Err(LoginError::InvalidCode { attempts_remaining })
            }
            Attempt::NoActiveCode { attempts_remaining } => Err(LoginError::InvalidCode { attempts_remaining }),
            Attempt::Refused(refusal) => {
                self.record(EventKind::Refused, None, Some(&identifier), Some(refusal.describe("guess")));
                Err(LoginError::Refused(refusal))
            }
        }
    }

    /// The work after the answer: writes the request's audit events and checks again the sessions of the access
    /// tokens it wrote to KV after the step that made them live. A revocation that committed in between may have
    /// deleted such a token from KV before it was written; this deletes it. The check is retried while its answer
    /// is lost (at most three times in all).
    pub async fn settle(&self) -> Result<(), InternalError> {
        let mut outcome = self.events.flush().await;
        for _ in 1..3 {
            if outcome.is_ok() {
                break;
            }
            outcome = self.events.flush().await;
        }
        let ended = outcome.map_err(InternalError::Store)?;
        self.forget(&ended).await.map_err(InternalError::Store)
    }

    /// A new session id: random, below 2^48, never 0.
    pub(super) fn new_session_id(&self) -> Result<i64, RandomError> {
        let mut bytes = [0u8; 8];
        self.random.fill(&mut bytes)?;
        let id = (u64::from_le_bytes(bytes) >> (64 - SESSION_ID_BITS)) as i64;
        Ok(id.max(1))
    }

    /// How long KV keeps an access token (its value carries its own expiry; KV refuses less than a minute).
    pub(super) fn access_ttl(&self) -> Seconds {
        self.policy.access_ttl.max(MIN_STORE_TTL)
    }

    /// The value an access token is stored with.
    pub(super) fn snapshot(&self, session_id: i64, user: &User, next: &NewSession, now: UnixTime) -> Session {
        Session {
            format: SESSION_FORMAT,
            session_id,
            user: user.clone(),
            issued_at: now,
            expires_at: next.access_expires_at,
        }
    }

    /// Generates an access and a refresh token (256 bits each) and the record of them that storage keeps.
    pub(super) fn new_tokens(&self, now: UnixTime, device: &Device) -> Result<(Token, Token, NewSession), RandomError> {
        let access = Token::generate(&self.random)?;
        let refresh = Token::generate(&self.random)?;
        let start = NewSession {
            access: access.digest(),
            access_expires_at: now.plus(self.policy.access_ttl),
            refresh: refresh.digest(),
            refresh_expires_at: now.plus(self.policy.refresh_ttl.min(self.policy.session_max)),
            device: device.clone(),
        };
        Ok((access, refresh, start))
    }

    /// The pair as handed out; the access token is already in KV.
    pub(super) fn pair(
        &self,
        session_id: i64,
        access: Token,
        refresh: Token,
        start: &NewSession,
        now: UnixTime,
    ) -> TokenPair {
        TokenPair {
            session_id,
            access,
            access_expires_in: self.policy.access_ttl,
            refresh,
            refresh_expires_in: now.seconds_until(start.refresh_expires_at),
        }
    }
}
