use futures_util::future::join;

use super::message::{Language, Message, MessageSettings};
use super::policy::{Policy, Refusal};
use super::ports::{
    AccessTokens, Challenges, Clock, CodeVault, Device, EventKind, EventLog, LoginEvent, NewSession, Notifier, Opening,
    Redemption, Reservation, Revoked, Rotation, Scope, Session, SessionInfo, Sessions, StoreError, StoredCode,
};
use super::test_logins::TestLogins;
use super::ClientIp;
use crate::domain::{
    ChallengeId, Channel, CodeHasher, Identifier, Locale, OtpCode, Random, RandomError, Token, TokenDigest, TokenError,
    UnixTime, User,
};

/// The login use cases over their ports: `C`hallenges (which also read the account a code request names), code
/// `V`ault, access `T`okens (KV), `S`essions (D1), `N`otifier, `K` clock, `R`andom and `E`vent log.
pub struct Login<C, V, T, S, N, K, R, E> {
    pub challenges: C,
    pub codes: V,
    pub access: T,
    pub sessions: S,
    pub notifier: N,
    pub clock: K,
    pub random: R,
    pub events: E,
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

/// A code request that was admitted; the code is created and delivered after the response by
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
    /// Seconds until the access token expires.
    pub access_expires_in: i64,
    pub refresh: Token,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
}

/// A successful login or refresh.
#[derive(Debug, Clone)]
pub struct LoginGrant {
    pub user: User,
    pub tokens: TokenPair,
}

/// A request carrying a live token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token: TokenDigest,
    pub session: Session,
}

/// KV refuses expirations under a minute.
const MIN_STORE_TTL: u64 = 60;

impl<C, V, T, S, N, K, R, E> Login<C, V, T, S, N, K, R, E>
where
    C: Challenges,
    V: CodeVault,
    T: AccessTokens,
    S: Sessions,
    N: Notifier,
    K: Clock,
    R: Random,
    E: EventLog,
{
    fn record(&self, kind: EventKind, user_id: Option<i64>, identifier: Option<&Identifier>, detail: Option<String>) {
        self.events.record(LoginEvent { kind, at: self.clock.now(), user_id, identifier: identifier.cloned(), detail });
    }

    /// Admits a request for a new code (generate or resend) for `identifier`, whoever it belongs to. The account is
    /// read with the challenge (the same round trip, whether or not it exists) but not looked at here: the answer
    /// depends only on the identifier's and the client's limits.
    pub async fn request_code(&self, identifier: Identifier, client: &ClientIp) -> Result<PendingCode, LoginError> {
        let now = self.clock.now();
        let challenge = ChallengeId::generate(&self.random)?;
        match self.challenges.open(&identifier, &challenge, client, now, &self.policy).await? {
            Opening::Issued { account } => Ok(PendingCode {
                identifier,
                challenge,
                expires_at: now.plus(self.policy.code_ttl_seconds),
                locale: None,
                account,
            }),
            Opening::Refused(refusal) => {
                self.record(EventKind::Refused, None, Some(&identifier), Some(refusal.describe("code request")));
                Err(LoginError::Refused(refusal))
            }
        }
    }

    /// Creates, stores and sends the code for an admitted request, if the identifier belongs to an account that may
    /// log in; otherwise only records the request. A test identifier's code is its fixed one and nothing is sent.
    /// Runs after the response; failures are recorded, not returned.
    pub async fn deliver_code(&self, pending: &PendingCode) -> Result<(), InternalError> {
        let identifier = &pending.identifier;
        let account = pending.account.clone();
        let refusal = match &account {
            None => Some("no such account"),
            Some(user) => user.refusal_reason(),
        };
        let user_id = account.as_ref().map(|u| u.id);
        let now = self.clock.now();
        let fixed = self.test_logins.code_for(identifier, now).filter(|_| refusal.is_none());
        let detail = refusal.or(fixed.map(|_| "test identifier: fixed code, nothing sent"));
        self.record(EventKind::CodeRequested, user_id, Some(identifier), detail.map(str::to_owned));
        let Some(user) = account.filter(|_| refusal.is_none()) else {
            return Ok(());
        };

        let code = match fixed {
            Some(code) => code.clone(),
            None => OtpCode::generate(&self.random).map_err(InternalError::Random)?,
        };
        let stored = StoredCode {
            challenge_id: pending.challenge.0.clone(),
            digest: self.hasher.digest(&pending.challenge, &code),
            expires_at: pending.expires_at.0,
        };
        let ttl = now.seconds_until(pending.expires_at).max(MIN_STORE_TTL);
        self.codes.put(identifier, &stored, ttl).await.map_err(InternalError::Store)?;
        if fixed.is_some() {
            return Ok(());
        }

        if identifier.channel() == Channel::Sms
            && !self.challenges.claim_sms_slot(now, self.policy.sms_daily_cap).await.map_err(InternalError::Store)?
        {
            let detail = format!("daily SMS cap of {} reached", self.policy.sms_daily_cap);
            self.record(EventKind::DeliveryFailed, user_id, Some(identifier), Some(detail));
            return Ok(());
        }

        let language = Language::choose(pending.locale.as_ref(), user.profile.locale.as_deref());
        let ttl_minutes = self.policy.code_ttl_seconds / 60;
        let message = Message::one_time_code(&self.messages, identifier, &code, ttl_minutes, language);
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

    /// Checks one guess. Between two successful logins at most `max_consecutive_failures` guesses are ever
    /// evaluated for an account (all its identifiers and codes together), and a code yields at most one token,
    /// however many requests race.
    pub async fn verify_code(
        &self,
        identifier: Identifier,
        code: OtpCode,
        client: &ClientIp,
        device: &Device,
    ) -> Result<LoginGrant, LoginError> {
        let now = self.clock.now();
        let nonce = ChallengeId::generate(&self.random)?;
        let (reservation, stored) = join(
            self.challenges.reserve_attempt(&identifier, &nonce, client, now, &self.policy),
            self.codes.get(&identifier),
        )
        .await;
        let (challenge, code_failures, counter) = match reservation? {
            Reservation::Reserved { challenge_id, code_failures, counter } => (challenge_id, code_failures, counter),
            Reservation::NoActiveCode { attempts_remaining } => {
                return Err(LoginError::InvalidCode { attempts_remaining })
            }
            Reservation::Refused(refusal) => {
                self.record(EventKind::Refused, None, Some(&identifier), Some(refusal.describe("guess")));
                return Err(LoginError::Refused(refusal));
            }
        };

        let correct = stored?.is_some_and(|stored| {
            stored.challenge_id == challenge.0
                && now < UnixTime(stored.expires_at)
                && self.hasher.matches(&challenge, &code, &stored.digest)
        });
        if !correct {
            self.record(EventKind::CodeFailed, None, Some(&identifier), None);
            // The subject's count already includes this guess: the reservation counted it, and may have locked it.
            if let Some(refusal) = self.policy.lock_refusal(&counter, now) {
                let detail = format!("{} consecutive failures; {}", counter.failures, refusal.describe("login"));
                self.record(EventKind::LockedOut, None, Some(&identifier), Some(detail));
                return Err(LoginError::Refused(refusal));
            }
            let attempts_remaining = self.policy.attempts_remaining(&counter, code_failures);
            return Err(LoginError::InvalidCode { attempts_remaining });
        }

        let fresh = LoginError::InvalidCode { attempts_remaining: self.policy.max_failed_attempts };
        let (access, refresh, start) = self.new_tokens(now, device)?;
        let (user, session_id) = match self.challenges.redeem(&identifier, &challenge, now, &start).await? {
            Redemption::AlreadyUsed => return Err(fresh),
            Redemption::Redeemed { user: Some(user), session_id: Some(id) } if user.may_log_in() => (*user, id),
            Redemption::Redeemed { user, .. } => {
                let reason = match user.as_deref() {
                    None => "no such account",
                    Some(user) => user.refusal_reason().unwrap_or("no session was started"),
                };
                let user_id = user.map(|u| u.id);
                self.record(EventKind::CodeFailed, user_id, Some(&identifier), Some(reason.to_owned()));
                return Err(fresh);
            }
        };

        let tokens = self.grant(session_id, &user, access, refresh, &start, now).await?;
        self.record(EventKind::Login, Some(user.id), Some(&identifier), None);
        Ok(LoginGrant { user, tokens })
    }

    /// Generates an access and a refresh token (256 bits each) and the record of them that storage keeps.
    fn new_tokens(&self, now: UnixTime, device: &Device) -> Result<(Token, Token, NewSession), RandomError> {
        let access = Token::generate(&self.random)?;
        let refresh = Token::generate(&self.random)?;
        let start = NewSession {
            access: access.digest(),
            access_expires_at: now.plus(self.policy.access_ttl_seconds),
            refresh: refresh.digest(),
            refresh_expires_at: now.plus(self.policy.refresh_ttl_seconds),
            device: device.clone(),
        };
        Ok((access, refresh, start))
    }

    /// Stores the access token with its user snapshot (one KV write) and hands the pair out.
    async fn grant(
        &self,
        session_id: i64,
        user: &User,
        access: Token,
        refresh: Token,
        start: &NewSession,
        now: UnixTime,
    ) -> Result<TokenPair, StoreError> {
        let session =
            Session { session_id, user: user.clone(), issued_at: now.0, expires_at: start.access_expires_at.0 };
        let ttl = u64::try_from(self.policy.access_ttl_seconds).unwrap_or(0).max(MIN_STORE_TTL);
        self.access.put(&start.access, &session, ttl).await?;
        Ok(TokenPair {
            session_id,
            access,
            access_expires_in: self.policy.access_ttl_seconds,
            refresh,
            refresh_expires_in: self.policy.refresh_ttl_seconds,
        })
    }

    /// Exchanges a refresh token for a new pair. The presented token dies (rotation); presenting a token that was
    /// already rotated out revokes its whole session, since either its owner or a thief holds a copy.
    pub async fn refresh(
        &self,
        presented: &Token,
        client: &ClientIp,
        device: &Device,
    ) -> Result<LoginGrant, AuthError> {
        let now = self.clock.now();
        let (access, refresh, next) = self.new_tokens(now, device)?;
        match self.sessions.rotate(&presented.digest(), &next, client, now, &self.policy).await? {
            Rotation::Rotated { session_id, user, previous_access } => {
                let (granted, deleted) = join(
                    self.grant(session_id, &user, access, refresh, &next, now),
                    self.access.delete(&previous_access),
                )
                .await;
                let tokens = granted?;
                deleted?;
                self.record(EventKind::Refresh, Some(user.id), None, Some(format!("session {session_id}")));
                Ok(LoginGrant { user, tokens })
            }
            Rotation::Reused { session_id, user_id, access } => {
                self.access.delete(&access).await?;
                let detail = format!("session {session_id} revoked");
                self.record(EventKind::RefreshReused, Some(user_id), None, Some(detail));
                Err(AuthError::Invalid)
            }
            Rotation::AccessLost { session_id, user_id, access } => {
                self.access.delete(&access).await?;
                let detail = format!("session {session_id}: account may no longer log in");
                self.record(EventKind::Revoked, Some(user_id), None, Some(detail));
                Err(AuthError::Invalid)
            }
            Rotation::Invalid => Err(AuthError::Invalid),
            Rotation::Refused(refusal) => {
                self.record(EventKind::Refused, None, None, Some(refusal.describe("refresh")));
                Err(AuthError::Refused(refusal))
            }
        }
    }

    /// Resolves the `Authorization` header to a live session: exactly one KV read, no D1.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, AuthError> {
        let token = Token::from_authorization(authorization).map_err(|e| match e {
            TokenError::Missing => AuthError::Missing,
            TokenError::Malformed => AuthError::Invalid,
        })?;
        let digest = token.digest();
        let now = self.clock.now();
        let session = self.access.get(&digest).await?.filter(|s| now < UnixTime(s.expires_at) && s.user.may_log_in());
        match session {
            Some(session) => Ok(Authenticated { token: digest, session }),
            None => Err(AuthError::Invalid),
        }
    }

    /// Ends sessions of the authenticated user: their access tokens leave KV and their rows are revoked in D1, so
    /// their refresh tokens die too. Returns the sessions this call ended.
    async fn end_sessions(
        &self,
        auth: &Authenticated,
        scope: Scope,
        detail: Option<String>,
    ) -> Result<Vec<Revoked>, AuthError> {
        let user_id = auth.session.user.id;
        let ended = self.sessions.revoke(user_id, scope, self.clock.now(), "logout").await?;
        for session in &ended {
            self.access.delete(&session.access).await?;
        }
        if !ended.is_empty() {
            self.record(EventKind::Logout, Some(user_id), None, detail);
        }
        Ok(ended)
    }

    /// Kills the session's access token at once and its refresh token with it.
    pub async fn logout(&self, auth: &Authenticated) -> Result<(), AuthError> {
        let ended = self.end_sessions(auth, Scope::One(auth.session.session_id), None).await?;
        // The presented token goes even if its row was already revoked (e.g. a race with logout-all).
        if !ended.iter().any(|session| session.access == auth.token) {
            self.access.delete(&auth.token).await?;
        }
        Ok(())
    }

    /// Ends every session of the user, on every device; returns how many.
    pub async fn logout_all(&self, auth: &Authenticated) -> Result<usize, AuthError> {
        Ok(self.end_sessions(auth, Scope::All, Some("all".into())).await?.len())
    }

    /// Ends one of the user's own sessions (e.g. a lost phone); `false` when the user has no such live session.
    pub async fn revoke_session(&self, auth: &Authenticated, session_id: i64) -> Result<bool, AuthError> {
        let detail = Some(format!("session {session_id}"));
        Ok(!self.end_sessions(auth, Scope::One(session_id), detail).await?.is_empty())
    }

    /// The user's live sessions (devices).
    pub async fn list_sessions(&self, auth: &Authenticated) -> Result<Vec<SessionInfo>, AuthError> {
        Ok(self.sessions.list(auth.session.user.id, self.clock.now()).await?)
    }
}
