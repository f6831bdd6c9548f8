//! Test doubles for the parts that cannot run on the host: a clock you can advance, seeded randomness, Workers KV
//! as a map, and a notifier that records what it was asked to send. D1 is not doubled: host tests run its SQL on a
//! real SQLite (`crate::adapters::sqlite`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::ports::*;
use super::Message;
use crate::domain::{Random, RandomError, Seconds, TokenDigest, UnixTime};

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

/// Workers KV in memory, as one strongly consistent map of encoded values (the edge simulation has the
/// eventually consistent model). Values are stored encoded, as KV stores them, so that decoding is exercised; the
/// next puts or deletes can be made to fail.
#[derive(Clone, Default)]
pub struct MemoryKv {
    values: Rc<RefCell<HashMap<String, String>>>,
    /// How many of the next puts fail.
    pub failing_puts: Rc<Cell<u32>>,
    /// How many of the next deletes fail.
    pub failing_deletes: Rc<Cell<u32>>,
}

fn take_failure(counter: &Cell<u32>) -> Result<(), StoreError> {
    match counter.get() {
        0 => Ok(()),
        n => {
            counter.set(n - 1);
            Err(StoreError("KV: 503 service unavailable".into()))
        }
    }
}

impl MemoryKv {
    /// Access tokens currently stored.
    pub fn access_token_count(&self) -> usize {
        self.values.borrow().len()
    }
    /// Replaces the stored value of every access token (as another version of the code might have written it).
    pub fn rewrite_values(&self, rewrite: impl Fn(&str) -> String) {
        for value in self.values.borrow_mut().values_mut() {
            *value = rewrite(value);
        }
    }
}

impl AccessTokens for MemoryKv {
    async fn put(&self, token: &TokenDigest, session: &Session, _ttl: Seconds) -> Result<(), StoreError> {
        take_failure(&self.failing_puts)?;
        self.values.borrow_mut().insert(token.as_str().to_owned(), session.encode());
        Ok(())
    }
    async fn get(&self, token: &TokenDigest) -> Result<Option<Session>, StoreError> {
        Ok(self.values.borrow().get(token.as_str()).and_then(|text| Session::decode(text)))
    }
    async fn delete(&self, token: &TokenDigest) -> Result<(), StoreError> {
        take_failure(&self.failing_deletes)?;
        self.values.borrow_mut().remove(token.as_str());
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

/// Keeps every event a test's login core records, and hands everything on to the real journal `J` (the audit
/// trail's SQL, run on SQLite), which writes the events and checks the issued tokens.
#[derive(Clone, Default)]
pub struct Recorder<J = ()> {
    pub seen: Rc<RefCell<Vec<LoginEvent>>>,
    pub journal: J,
}

impl<J> Recorder<J> {
    pub fn new(journal: J) -> Recorder<J> {
        Recorder { seen: Rc::default(), journal }
    }

    pub fn kinds(&self) -> Vec<EventKind> {
        self.seen.borrow().iter().map(|e| e.kind).collect()
    }
}

impl<J: EventLog> EventLog for Recorder<J> {
    fn record(&self, event: LoginEvent) {
        self.seen.borrow_mut().push(event.clone());
        self.journal.record(event);
    }

    fn issued(&self, token: &TokenDigest) {
        self.journal.issued(token);
    }

    async fn flush(&self) -> Result<Vec<TokenDigest>, StoreError> {
        self.journal.flush().await
    }
}
