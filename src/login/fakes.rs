//! Test doubles for the parts that cannot run on the host: a clock you can advance, seeded randomness, Workers KV
//! as a map, and a notifier that records what it was asked to send. D1 is not doubled: host tests run its SQL on a
//! real SQLite (`crate::adapters::sqlite`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::ports::*;
use super::Message;
use crate::domain::{Identifier, Random, RandomError, TokenDigest, UnixTime};

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

/// Workers KV in memory: the code vault and the access tokens. KV has no rule of its own to copy (every limit
/// lives in the SQL), so a map is a faithful stand-in on the host.
#[derive(Clone, Default)]
pub struct MemoryKv(Rc<RefCell<KvState>>);

#[derive(Default)]
struct KvState {
    codes: HashMap<String, StoredCode>,
    access_tokens: HashMap<String, Session>,
}

impl MemoryKv {
    pub fn stored_codes(&self) -> Vec<StoredCode> {
        self.0.borrow().codes.values().cloned().collect()
    }
    /// Access tokens currently stored.
    pub fn access_token_count(&self) -> usize {
        self.0.borrow().access_tokens.len()
    }
}

impl CodeVault for MemoryKv {
    async fn put(&self, identifier: &Identifier, code: &StoredCode, _ttl: u64) -> Result<(), StoreError> {
        self.0.borrow_mut().codes.insert(identifier.key(), code.clone());
        Ok(())
    }
    async fn get(&self, identifier: &Identifier) -> Result<Option<StoredCode>, StoreError> {
        Ok(self.0.borrow().codes.get(&identifier.key()).cloned())
    }
}

impl AccessTokens for MemoryKv {
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
            // As Twilio's errors do, the reason echoes the recipient.
            let reason = format!("HTTP 400: The 'To' number {} is not a valid phone number.", message.to.value());
            failures.push(DeliveryError { provider: "outbox", reason });
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
