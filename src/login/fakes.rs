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
    sessions: HashMap<String, Session>,
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
    pub fn session_count(&self) -> usize {
        self.0.borrow().sessions.len()
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

impl Accounts for Memory {
    async fn find_by_identifier(&self, identifier: &Identifier) -> Result<Option<User>, StoreError> {
        Ok(self.user_by(|u| matches_identifier(u, identifier)))
    }
    async fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        Ok(self.user_by(|u| u.id == id))
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
        Ok(Opening::Issued)
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
        Ok(Redemption::Redeemed(self.user_by(|u| matches_identifier(u, identifier)).map(Box::new)))
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

impl Sessions for Memory {
    async fn put(&self, token: &TokenDigest, session: &Session, _ttl: u64) -> Result<(), StoreError> {
        self.0.borrow_mut().sessions.insert(token.0.clone(), session.clone());
        Ok(())
    }
    async fn get(&self, token: &TokenDigest) -> Result<Option<Session>, StoreError> {
        Ok(self.0.borrow().sessions.get(&token.0).cloned())
    }
    async fn delete(&self, token: &TokenDigest) -> Result<(), StoreError> {
        self.0.borrow_mut().sessions.remove(&token.0);
        Ok(())
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
