//! In-memory ports for host tests: a clock you can advance, seeded randomness, stores that follow the same
//! policy functions as the D1 SQL, and a notifier that records what it was asked to send.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::policy::{Policy, HOUR};
use super::ports::*;
use super::{ClientIp, Message};
use crate::domain::{ChallengeId, Identifier, Random, RandomError, TokenDigest, UnixTime, User};

#[derive(Clone, Default)]
pub struct FakeClock(pub Rc<Cell<i64>>);

impl FakeClock {
    pub fn at(seconds: i64) -> FakeClock {
        FakeClock(Rc::new(Cell::new(seconds)))
    }
    pub fn advance(&self, seconds: i64) {
        self.0.set(self.0.get() + seconds);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.get())
    }
}

/// Deterministic, well-spread bytes (a 64-bit LCG's high byte).
#[derive(Clone)]
pub struct SeededRandom(pub Rc<Cell<u64>>);

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom(Rc::new(Cell::new(seed)))
    }
}

impl Random for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        for slot in buf.iter_mut() {
            let next = self.0.get().wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0.set(next);
            *slot = (next >> 56) as u8;
        }
        Ok(())
    }
}

#[derive(Default)]
struct MemoryState {
    users: Vec<User>,
    challenges: HashMap<String, ChallengeState>,
    counters: HashMap<String, WindowCounter>,
    codes: HashMap<String, StoredCode>,
    access_tokens: HashMap<String, Session>,
    session_rows: Vec<SessionRow>,
    /// Refresh-token digest → (session id, the digest that replaced it).
    refresh_tokens: HashMap<String, (i64, Option<String>)>,
}

/// The fake's copy of a `sessions` row.
#[derive(Clone)]
struct SessionRow {
    id: i64,
    user_id: i64,
    created_at: UnixTime,
    last_used_at: UnixTime,
    expires_at: UnixTime,
    access: String,
    revoked_at: Option<UnixTime>,
    device: Device,
}

/// Users, challenges, codes and sessions in memory.
#[derive(Clone, Default)]
pub struct Memory(Rc<RefCell<MemoryState>>);

impl Memory {
    pub fn with_users(users: Vec<User>) -> Memory {
        let memory = Memory::default();
        memory.0.borrow_mut().users = users;
        memory
    }
    pub fn update_user(&self, id: i64, change: impl FnOnce(&mut User)) {
        let mut state = self.0.borrow_mut();
        if let Some(user) = state.users.iter_mut().find(|u| u.id == id) {
            change(user);
        }
    }
    pub fn stored_codes(&self) -> Vec<StoredCode> {
        self.0.borrow().codes.values().cloned().collect()
    }
    /// Access tokens currently stored.
    pub fn access_token_count(&self) -> usize {
        self.0.borrow().access_tokens.len()
    }
    /// Session rows not yet revoked.
    pub fn live_session_count(&self) -> usize {
        self.0.borrow().session_rows.iter().filter(|r| r.revoked_at.is_none()).count()
    }
    fn user_may_log_in(&self, id: i64) -> Option<User> {
        self.user_by(|u| u.id == id).filter(User::may_log_in)
    }
    fn user_by(&self, matches: impl Fn(&User) -> bool) -> Option<User> {
        self.0.borrow().users.iter().find(|u| matches(u)).cloned()
    }
    fn count(&self, client: &ClientIp, purpose: &str, now: UnixTime, policy: &Policy) -> WindowCounter {
        let mut state = self.0.borrow_mut();
        let counter = state
            .counters
            .entry(format!("{}:{purpose}", client.0))
            .or_insert(WindowCounter { hits: 0, window_started_at: now });
        if counter.window_started_at.plus(policy.ip_window_seconds) <= now {
            *counter = WindowCounter { hits: 0, window_started_at: now };
        }
        counter.hits += 1;
        *counter
    }
}

fn matches_identifier(user: &User, identifier: &Identifier) -> bool {
    match identifier {
        Identifier::Email(email) => user.email.as_deref() == Some(email.as_str()),
        Identifier::Phone(phone) => user.profile.phone_number.as_deref() == Some(phone.as_str()),
    }
}

impl Challenges for Memory {
    async fn open(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Opening, StoreError> {
        let counter = self.count(client, "send", now, policy);
        if let Some(refusal) = policy.ip_refusal(&counter, policy.ip_send_limit, now) {
            return Ok(Opening::Refused(refusal));
        }
        let account = self.user_by(|u| matches_identifier(u, identifier));
        let mut state = self.0.borrow_mut();
        let previous = state.challenges.get(&identifier.key()).cloned();
        if let Some(refusal) = previous.as_ref().and_then(|p| policy.send_refusal(p, now)) {
            return Ok(Opening::Refused(refusal));
        }
        let failures = previous.as_ref().map_or(0, |p| policy.live_failures(p, now));
        let (window_started_at, sends_in_window) = match &previous {
            Some(p) if p.window_started_at.plus(HOUR) > now => (p.window_started_at, p.sends_in_window + 1),
            _ => (now, 1),
        };
        state.challenges.insert(
            identifier.key(),
            ChallengeState {
                challenge_id: challenge.clone(),
                issued_at: now,
                expires_at: now.plus(policy.code_ttl_seconds),
                consumed_at: None,
                failed_attempts: failures,
                last_failed_at: previous.and_then(|p| p.last_failed_at).filter(|_| failures > 0),
                window_started_at,
                sends_in_window,
            },
        );
        Ok(Opening::Issued { account })
    }

    async fn reserve_attempt(
        &self,
        identifier: &Identifier,
        client: &ClientIp,
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Reservation, StoreError> {
        let counter = self.count(client, "verify", now, policy);
        if let Some(refusal) = policy.ip_refusal(&counter, policy.ip_verify_limit, now) {
            return Ok(Reservation::Refused(refusal));
        }
        let mut state = self.0.borrow_mut();
        let Some(challenge) = state.challenges.get_mut(&identifier.key()) else {
            return Ok(Reservation::NoActiveCode { attempts_remaining: policy.max_failed_attempts });
        };
        if let Some(refusal) = policy.lock_refusal(challenge, now) {
            return Ok(Reservation::Refused(refusal));
        }
        if challenge.consumed_at.is_some() || challenge.expires_at <= now {
            let attempts_remaining = policy.attempts_remaining(Some(challenge), now);
            return Ok(Reservation::NoActiveCode { attempts_remaining });
        }
        challenge.failed_attempts = policy.live_failures(challenge, now) + 1;
        challenge.last_failed_at = Some(now);
        Ok(Reservation::Reserved {
            challenge_id: challenge.challenge_id.clone(),
            failed_attempts: challenge.failed_attempts,
        })
    }

    async fn claim_sms_slot(&self, now: UnixTime, cap: u32) -> Result<bool, StoreError> {
        let mut state = self.0.borrow_mut();
        let day = format!("sms:{}", now.0.div_euclid(86_400));
        let counter = state.counters.entry(day).or_insert(WindowCounter { hits: 0, window_started_at: now });
        counter.hits += 1;
        Ok(counter.hits <= cap)
    }

    async fn redeem(
        &self,
        identifier: &Identifier,
        challenge: &ChallengeId,
        now: UnixTime,
        start: &NewSession,
    ) -> Result<Redemption, StoreError> {
        {
            let mut state = self.0.borrow_mut();
            let Some(live) = state.challenges.get_mut(&identifier.key()) else {
                return Ok(Redemption::AlreadyUsed);
            };
            if &live.challenge_id != challenge || live.consumed_at.is_some() || live.expires_at <= now {
                return Ok(Redemption::AlreadyUsed);
            }
            live.consumed_at = Some(now);
            live.failed_attempts = 0;
            live.last_failed_at = None;
        }
        let user = self.user_by(|u| matches_identifier(u, identifier));
        let session_id = match &user {
            Some(user) if user.may_log_in() => {
                let mut state = self.0.borrow_mut();
                let id = state.session_rows.len() as i64 + 1;
                state.session_rows.push(SessionRow {
                    id,
                    user_id: user.id,
                    created_at: now,
                    last_used_at: now,
                    expires_at: start.refresh_expires_at,
                    access: start.access.0.clone(),
                    revoked_at: None,
                    device: start.device.clone(),
                });
                state.refresh_tokens.insert(start.refresh.0.clone(), (id, None));
                Some(id)
            }
            _ => None,
        };
        Ok(Redemption::Redeemed { user: user.map(Box::new), session_id })
    }
}

impl CodeVault for Memory {
    async fn put(&self, identifier: &Identifier, code: &StoredCode, _ttl: u64) -> Result<(), StoreError> {
        self.0.borrow_mut().codes.insert(identifier.key(), code.clone());
        Ok(())
    }
    async fn get(&self, identifier: &Identifier) -> Result<Option<StoredCode>, StoreError> {
        Ok(self.0.borrow().codes.get(&identifier.key()).cloned())
    }
}

impl AccessTokens for Memory {
    async fn put(&self, token: &TokenDigest, session: &Session, _ttl: u64) -> Result<(), StoreError> {
        self.0.borrow_mut().access_tokens.insert(token.0.clone(), session.clone());
        Ok(())
    }
    async fn get(&self, token: &TokenDigest) -> Result<Option<Session>, StoreError> {
        Ok(self.0.borrow().access_tokens.get(&token.0).cloned())
    }
    async fn delete(&self, token: &TokenDigest) -> Result<(), StoreError> {
        self.0.borrow_mut().access_tokens.remove(&token.0);
        Ok(())
    }
}

impl Sessions for Memory {
    async fn rotate(&self, refresh: &TokenDigest, next: &NewSession, now: UnixTime) -> Result<Rotation, StoreError> {
        let Some((session_id, replaced_by)) = self.0.borrow().refresh_tokens.get(&refresh.0).cloned() else {
            return Ok(Rotation::Invalid);
        };
        let Some(row) = self.0.borrow().session_rows.iter().find(|r| r.id == session_id).cloned() else {
            return Ok(Rotation::Invalid);
        };
        if row.revoked_at.is_some() {
            return Ok(Rotation::Invalid);
        }
        if replaced_by.is_some() {
            let mut state = self.0.borrow_mut();
            if let Some(r) = state.session_rows.iter_mut().find(|r| r.id == session_id) {
                r.revoked_at = Some(now);
            }
            return Ok(Rotation::Reused { session_id, user_id: row.user_id, access: TokenDigest(row.access) });
        }
        if row.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        let Some(user) = self.user_may_log_in(row.user_id) else {
            let mut state = self.0.borrow_mut();
            if let Some(r) = state.session_rows.iter_mut().find(|r| r.id == session_id) {
                r.revoked_at = Some(now);
            }
            return Ok(Rotation::AccessLost { session_id, user_id: row.user_id, access: TokenDigest(row.access) });
        };
        let mut state = self.0.borrow_mut();
        state.refresh_tokens.insert(refresh.0.clone(), (session_id, Some(next.refresh.0.clone())));
        state.refresh_tokens.insert(next.refresh.0.clone(), (session_id, None));
        if let Some(r) = state.session_rows.iter_mut().find(|r| r.id == session_id) {
            r.access = next.access.0.clone();
            r.last_used_at = now;
            r.expires_at = next.refresh_expires_at;
            r.device = next.device.clone();
        }
        Ok(Rotation::Rotated { session_id, user, previous_access: TokenDigest(row.access) })
    }

    async fn revoke(
        &self,
        user_id: i64,
        scope: Scope,
        now: UnixTime,
        _reason: &str,
    ) -> Result<Vec<Revoked>, StoreError> {
        let mut state = self.0.borrow_mut();
        let mut ended = Vec::new();
        for row in state.session_rows.iter_mut() {
            let in_scope = match scope {
                Scope::One(id) => row.id == id,
                Scope::All => true,
            };
            if row.user_id == user_id && in_scope && row.revoked_at.is_none() {
                row.revoked_at = Some(now);
                ended.push(Revoked { session_id: row.id, access: TokenDigest(row.access.clone()) });
            }
        }
        Ok(ended)
    }

    async fn list(&self, user_id: i64, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        let state = self.0.borrow();
        let mut live: Vec<SessionInfo> = state
            .session_rows
            .iter()
            .filter(|r| r.user_id == user_id && r.revoked_at.is_none() && r.expires_at > now)
            .map(|r| SessionInfo {
                id: r.id,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                expires_at: r.expires_at,
                user_agent: r.device.user_agent.clone(),
                country: r.device.country.clone(),
                city: r.device.city.clone(),
            })
            .collect();
        live.sort_by_key(|s| std::cmp::Reverse(s.last_used_at));
        Ok(live)
    }
}

/// Records every message. The providers named in `failing_first` fail before the outbox accepts, as in a failover;
/// while `failing` is set the outbox fails too and nothing is delivered.
#[derive(Clone, Default)]
pub struct Outbox {
    pub sent: Rc<RefCell<Vec<Message>>>,
    pub failing: Rc<Cell<bool>>,
    pub failing_first: Rc<RefCell<Vec<&'static str>>>,
}

impl Notifier for Outbox {
    async fn send(&self, message: &Message) -> DeliveryReport {
        let mut failures: Vec<DeliveryError> = self
            .failing_first
            .borrow()
            .iter()
            .map(|provider| DeliveryError { provider, reason: "HTTP 503: unavailable".into() })
            .collect();
        if self.failing.get() {
            failures.push(DeliveryError { provider: "outbox", reason: "HTTP 500: provider down".into() });
            return DeliveryReport { delivered_by: None, failures };
        }
        self.sent.borrow_mut().push(message.clone());
        DeliveryReport { delivered_by: Some("outbox"), failures }
    }
}

#[derive(Clone, Default)]
pub struct Recorder(pub Rc<RefCell<Vec<LoginEvent>>>);

impl Recorder {
    pub fn kinds(&self) -> Vec<EventKind> {
        self.0.borrow().iter().map(|e| e.kind).collect()
    }
}

impl EventLog for Recorder {
    fn record(&self, event: LoginEvent) {
        self.0.borrow_mut().push(event);
    }
}
