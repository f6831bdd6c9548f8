use futures_util::future::join;

use super::message::{Language, Message, MessageSettings};
use super::policy::{Policy, Refusal};
use super::ports::{
    Accounts, Challenges, Clock, CodeVault, EventKind, EventLog, LoginEvent, Notifier, Opening, Redemption,
    Reservation, Session, Sessions, StoreError, StoredCode,
};
use super::test_logins::TestLogins;
use super::ClientIp;
use crate::domain::{
    ChallengeId, Channel, CodeHasher, Identifier, Locale, OtpCode, Random, RandomError, Token, TokenDigest, TokenError,
    UnixTime, User,
};

/// The login use cases over their ports: `A`ccounts, `C`hallenges, code `V`ault, `S`essions, `N`otifier,
/// `K` clock, `R`andom and `E`vent log.
pub struct Login<A, C, V, S, N, K, R, E> {
    pub accounts: A,
    pub challenges: C,
    pub codes: V,
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
}

impl PendingCode {
    /// The same request, asking for its message in `locale`.
    pub fn in_locale(self, locale: Option<Locale>) -> PendingCode {
        PendingCode { locale, ..self }
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoginGrant {
    pub user: User,
    pub token: Token,
    pub expires_in: i64,
}

/// A request carrying a live token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token: TokenDigest,
    pub session: Session,
}

/// KV refuses expirations under a minute.
const MIN_STORE_TTL: u64 = 60;

impl<A, C, V, S, N, K, R, E> Login<A, C, V, S, N, K, R, E>
where
    A: Accounts,
    C: Challenges,
    V: CodeVault,
    S: Sessions,
    N: Notifier,
    K: Clock,
    R: Random,
    E: EventLog,
{
    fn record(&self, kind: EventKind, user_id: Option<i64>, identifier: Option<&Identifier>, detail: Option<String>) {
        self.events.record(LoginEvent { kind, at: self.clock.now(), user_id, identifier: identifier.cloned(), detail });
    }

    /// Admits a request for a new code (generate or resend) for `identifier`, whoever it belongs to. Nothing about
    /// the account is looked at here: the answer depends only on the identifier's and the client's limits.
    pub async fn request_code(&self, identifier: Identifier, client: &ClientIp) -> Result<PendingCode, LoginError> {
        let now = self.clock.now();
        let challenge = ChallengeId::generate(&self.random)?;
        match self.challenges.open(&identifier, &challenge, client, now, &self.policy).await? {
            Opening::Issued => Ok(PendingCode {
                identifier,
                challenge,
                expires_at: now.plus(self.policy.code_ttl_seconds),
                locale: None,
            }),
            Opening::Refused(refusal) => Err(LoginError::Refused(refusal)),
        }
    }

    /// Creates, stores and sends the code for an admitted request, if the identifier belongs to an account that may
    /// log in; otherwise only records the request. A test identifier's code is its fixed one and nothing is sent.
    /// Runs after the response; failures are recorded, not returned.
    pub async fn deliver_code(&self, pending: &PendingCode) -> Result<(), InternalError> {
        let identifier = &pending.identifier;
        let account = self.accounts.find_by_identifier(identifier).await.map_err(InternalError::Store)?;
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
            let detail = format!("{}: {}", failure.provider, failure.reason);
            self.record(EventKind::DeliveryFailed, user_id, Some(identifier), Some(detail));
        }
        if let Some(provider) = report.delivered_by {
            self.record(EventKind::CodeSent, user_id, Some(identifier), Some(provider.to_owned()));
        }
        Ok(())
    }

    /// Checks one guess. At most `max_failed_attempts` guesses are ever evaluated per identifier between
    /// successes, and a code yields at most one token, however many requests race.
    pub async fn verify_code(
        &self,
        identifier: Identifier,
        code: OtpCode,
        client: &ClientIp,
    ) -> Result<LoginGrant, LoginError> {
        let now = self.clock.now();
        let (reservation, stored) =
            join(self.challenges.reserve_attempt(&identifier, client, now, &self.policy), self.codes.get(&identifier))
                .await;
        let (challenge, failed_attempts) = match reservation? {
            Reservation::Reserved { challenge_id, failed_attempts } => (challenge_id, failed_attempts),
            Reservation::NoActiveCode { attempts_remaining } => {
                return Err(LoginError::InvalidCode { attempts_remaining })
            }
            Reservation::Refused(refusal) => return Err(LoginError::Refused(refusal)),
        };

        let correct = stored?.is_some_and(|stored| {
            stored.challenge_id == challenge.0
                && now < UnixTime(stored.expires_at)
                && self.hasher.matches(&challenge, &code, &stored.digest)
        });
        if !correct {
            self.record(EventKind::CodeFailed, None, Some(&identifier), None);
            let attempts_remaining = self.policy.max_failed_attempts.saturating_sub(failed_attempts);
            if attempts_remaining == 0 {
                self.record(EventKind::LockedOut, None, Some(&identifier), None);
                let retry_after = u64::try_from(self.policy.lockout_seconds).unwrap_or(0);
                return Err(LoginError::Refused(Refusal::Locked { retry_after }));
            }
            return Err(LoginError::InvalidCode { attempts_remaining });
        }

        let fresh = LoginError::InvalidCode { attempts_remaining: self.policy.max_failed_attempts };
        let user = match self.challenges.redeem(&identifier, &challenge, now).await? {
            Redemption::AlreadyUsed => return Err(fresh),
            Redemption::Redeemed(Some(user)) if user.may_log_in() => *user,
            Redemption::Redeemed(other) => {
                let reason = other.as_deref().and_then(User::refusal_reason).unwrap_or("no such account");
                let user_id = other.map(|u| u.id);
                self.record(EventKind::CodeFailed, user_id, Some(&identifier), Some(reason.to_owned()));
                return Err(fresh);
            }
        };

        let token = Token::generate(&self.random)?;
        let session =
            Session { user_id: user.id, issued_at: now.0, expires_at: now.plus(self.policy.token_ttl_seconds).0 };
        let ttl = u64::try_from(self.policy.token_ttl_seconds).unwrap_or(0).max(MIN_STORE_TTL);
        self.sessions.put(&token.digest(), &session, ttl).await?;
        self.record(EventKind::Login, Some(user.id), Some(&identifier), None);
        Ok(LoginGrant { user, token, expires_in: self.policy.token_ttl_seconds })
    }

    /// Resolves the `Authorization` header to a live session.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, AuthError> {
        let token = Token::from_authorization(authorization).map_err(|e| match e {
            TokenError::Missing => AuthError::Missing,
            TokenError::Malformed => AuthError::Invalid,
        })?;
        let digest = token.digest();
        let now = self.clock.now();
        let session = self.sessions.get(&digest).await?.filter(|s| now < UnixTime(s.expires_at));
        match session {
            Some(session) => Ok(Authenticated { token: digest, session }),
            None => Err(AuthError::Invalid),
        }
    }

    /// The account behind a session, as long as it may still log in.
    pub async fn current_user(&self, auth: &Authenticated) -> Result<User, AuthError> {
        match self.accounts.find_by_id(auth.session.user_id).await? {
            Some(user) if user.may_log_in() => Ok(user),
            _ => Err(AuthError::Invalid),
        }
    }

    /// Kills the session's token at once.
    pub async fn logout(&self, auth: &Authenticated) -> Result<(), AuthError> {
        self.sessions.delete(&auth.token).await?;
        self.record(EventKind::Logout, Some(auth.session.user_id), None, None);
        Ok(())
    }
}
