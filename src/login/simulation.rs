//! A deterministic simulation of the edge: the login core, unchanged, against a model of Cloudflare's storage.
//!
//! The world: several locations, each with a Workers KV cache that serves a value — or a *miss* — for up to 60 s
//! after it read it (a write or delete is seen at once where it was made, elsewhere only once the cache entry
//! lapses); one D1 primary that runs each batch as one transaction, in some order, on the service's own SQL (the
//! in-process SQLite seam with every migration); clients that switch locations, run requests in parallel, lose
//! answers and retry; an attacker guessing codes; and a clock the simulation advances.
//!
//! One seed drives every choice: which request runs next at each storage call, where each client is, which answers
//! are lost, which writes fail, how long each cache entry lives and how far the clock moves. Over many seeds, the
//! rules are checked as properties of every schedule:
//!
//! 1. never more guesses evaluated than allowed (per code, and per account between logins);
//! 2. never two sessions from one code;
//! 3. a correct code is never counted wrong;
//! 4. once KV's propagation time has passed after a revocation, no access token of the session works anywhere;
//! 5. a lost refresh answer never logs the user out.
//!
//! A failure prints its seed; `SIM_SEED=<seed> cargo test --lib simulation` replays exactly that schedule.
//! `SIM_SCHEDULES=<n>` sets how many seeds a run explores.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use serde::Deserialize;

use super::fakes::{FakeClock, SeededRandom};
use super::*;
use crate::adapters::d1::{DeferredEvents, RequestOrigin, D1};
use crate::adapters::sql::{BatchResults, Database, Statement};
use crate::adapters::sqlite::{Sqlite, SqliteResults};
use crate::domain::{CodeHasher, Email, Identifier, OtpCode, PhoneNumber, Seconds, Token, TokenDigest};

/// How long a KV location may serve a value or a miss it read (Cloudflare's documented propagation bound).
const PROPAGATION: i64 = 60;
const LOCATIONS: usize = 4;
const ROUNDS: usize = 16;
const START: i64 = 1_800_000_000;

// ---- The seeded choices ----------------------------------------------------------------------------------------

/// SplitMix64: small, fast, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

// ---- The scheduler -------------------------------------------------------------------------------------------------

thread_local! {
    /// The request being polled: the storage models attribute their calls to it.
    static CURRENT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Gives the scheduler a chance to run another request before this storage call takes effect.
struct Yield(bool);

impl Future for Yield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

// ---- The world -----------------------------------------------------------------------------------------------------

/// What the storage models saw, for the properties.
#[derive(Default)]
struct Observed {
    /// Guesses reserved (so evaluated), per challenge id.
    reserved: HashMap<String, u32>,
    /// The challenge each request's reservation took.
    reservation_of: HashMap<usize, String>,
    /// Redemptions that started a session that was not ended for want of an answer, per challenge id.
    sessions_started: HashMap<String, u32>,
    /// Requests that lost a D1 answer or had a KV write fail: their outcome is an error by design.
    faulted: HashSet<usize>,
    /// Requests that no fault may hit: an app's retry of a lost refresh, made within the grace period.
    immune: HashSet<usize>,
}

/// One location's KV cache: key → (the value, or a miss; served until).
type LocationCache = HashMap<String, (Option<String>, i64)>;

struct Edge {
    rng: RefCell<Rng>,
    clock: FakeClock,
    db: Sqlite,
    /// The KV namespace as stored centrally.
    central: RefCell<HashMap<String, String>>,
    /// Per location: key → (value or a miss, served until).
    caches: RefCell<Vec<LocationCache>>,
    observed: RefCell<Observed>,
    /// Messages sent, with the request that sent them.
    outbox: RefCell<Vec<(usize, Message)>>,
    /// Fault rates in percent.
    lose_d1_answer: u64,
    fail_kv_put: u64,
}

impl Edge {
    fn now(&self) -> i64 {
        self.clock.now().0
    }

    fn fault(&self, percent: u64) -> bool {
        let task = CURRENT.get();
        // At most one fault per request: a request that already failed is not failed again.
        let observed = self.observed.borrow();
        let spared = observed.faulted.contains(&task) || observed.immune.contains(&task);
        drop(observed);
        if spared || !self.rng.borrow_mut().percent(percent) {
            return false;
        }
        self.observed.borrow_mut().faulted.insert(task);
        true
    }

    /// Whether any location would serve `key` as a value now.
    fn servable(&self, key: &str) -> Vec<String> {
        let now = self.now();
        let mut found: Vec<String> = self.central.borrow().get(key).cloned().into_iter().collect();
        for cache in self.caches.borrow().iter() {
            if let Some((Some(value), until)) = cache.get(key) {
                if *until > now {
                    found.push(value.clone());
                }
            }
        }
        found
    }
}

#[derive(Deserialize)]
struct ChallengeRow {
    challenge_id: String,
}

#[derive(Deserialize)]
struct IdRow {
    #[allow(dead_code)]
    id: i64,
}

/// D1: one serial primary running the service's SQL. Each batch is one transaction; which request's batch runs
/// next is the scheduler's choice; an answer can be lost after its batch committed.
#[derive(Clone)]
struct SimD1(Rc<Edge>);

impl Database for SimD1 {
    type Results = SqliteResults;

    async fn batch(&self, statements: Vec<Statement>) -> Result<SqliteResults, StoreError> {
        Yield(false).await;
        let edge = &self.0;
        let task = CURRENT.get();
        let shapes: Vec<String> = statements.iter().map(|s| s.sql.to_string()).collect();
        let results = edge.db.batch(statements).await?;
        let mut observed = edge.observed.borrow_mut();
        for (i, sql) in shapes.iter().enumerate() {
            if sql.starts_with("UPDATE otp_challenges SET failed_attempts = failed_attempts + 1") {
                if let Some(row) = results.first::<ChallengeRow>(i)? {
                    *observed.reserved.entry(row.challenge_id.clone()).or_default() += 1;
                    observed.reservation_of.insert(task, row.challenge_id);
                }
            }
            // A session starts from the code this request's batch reserved, earlier in the same batch.
            if sql.starts_with("INSERT INTO sessions") && results.first::<IdRow>(i)?.is_some() {
                if let Some(challenge) = observed.reservation_of.get(&task).cloned() {
                    *observed.sessions_started.entry(challenge).or_default() += 1;
                }
            }
            // The same request ended it because its answer could not be given, and released the code: that
            // session never reached anyone.
            if sql.contains("revoked_reason = 'answer not delivered'") && results.changes(i)? > 0 {
                if let Some(challenge) = observed.reservation_of.get(&task).cloned() {
                    if let Some(n) = observed.sessions_started.get_mut(&challenge) {
                        *n -= 1;
                        if *n == 0 {
                            observed.sessions_started.remove(&challenge);
                        }
                    }
                }
            }
        }
        drop(observed);
        if edge.fault(edge.lose_d1_answer) {
            return Err(StoreError("D1: network connection lost".into()));
        }
        Ok(results)
    }
}

/// Workers KV as seen from one location.
#[derive(Clone)]
struct SimKv {
    edge: Rc<Edge>,
    location: usize,
}

fn kv_key(token: &TokenDigest) -> String {
    format!("session:{}", token.as_str())
}

impl AccessTokens for SimKv {
    async fn put(&self, token: &TokenDigest, session: &Session, _ttl: Seconds) -> Result<(), StoreError> {
        Yield(false).await;
        let edge = &self.edge;
        if edge.fault(edge.fail_kv_put) {
            return Err(StoreError("KV: 503".into()));
        }
        let (key, value) = (kv_key(token), session.encode());
        edge.central.borrow_mut().insert(key.clone(), value.clone());
        edge.caches.borrow_mut()[self.location].insert(key, (Some(value), edge.now() + PROPAGATION));
        Ok(())
    }

    async fn get(&self, token: &TokenDigest) -> Result<Option<Session>, StoreError> {
        Yield(false).await;
        let edge = &self.edge;
        let (key, now) = (kv_key(token), edge.now());
        let cached = edge.caches.borrow()[self.location].get(&key).filter(|(_, until)| *until > now).cloned();
        let value = match cached {
            Some((value, _)) => value,
            None => {
                let value = edge.central.borrow().get(&key).cloned();
                let until = now + edge.rng.borrow_mut().below(PROPAGATION as u64 + 1) as i64;
                edge.caches.borrow_mut()[self.location].insert(key, (value.clone(), until));
                value
            }
        };
        Ok(value.as_deref().and_then(Session::decode))
    }

    async fn delete(&self, token: &TokenDigest) -> Result<(), StoreError> {
        Yield(false).await;
        let edge = &self.edge;
        let key = kv_key(token);
        edge.central.borrow_mut().remove(&key);
        edge.caches.borrow_mut()[self.location].insert(key, (None, edge.now() + PROPAGATION));
        Ok(())
    }
}

/// The providers: every message is kept with the request that sent it.
#[derive(Clone)]
struct SimOutbox(Rc<Edge>);

impl Notifier for SimOutbox {
    async fn send(&self, message: &Message) -> DeliveryReport {
        self.0.outbox.borrow_mut().push((CURRENT.get(), message.clone()));
        DeliveryReport { delivered_by: Some("outbox"), failures: Vec::new() }
    }
}

/// The simulated edge's ports.
struct EdgePorts;

impl Ports for EdgePorts {
    type Store = D1<SimD1>;
    type Tokens = SimKv;
    type Notifier = SimOutbox;
    type Clock = FakeClock;
    type Random = SeededRandom;
    type Events = DeferredEvents<SimD1>;
}

type EdgeLogin = Login<EdgePorts>;

/// Employees 1 (by email on one device, by phone on another) and 4; 2 is in no employee group.
const USERS: &str = "
INSERT INTO groups (id, name, is_employee_group) VALUES (1, 'Employees', 1), (2, 'Contractors', 0);
INSERT INTO users (id, email, first_name, last_name, is_active) VALUES
    (1, 'mobile.test@example.com', 'Mobile', 'Tester', 1),
    (2, 'outsider@example.com', 'Out', 'Sider', 1),
    (4, 'field.worker@example.com', 'Field', 'Worker', 1);
INSERT INTO profiles (user_id, phone_number, branch, designation) VALUES
    (1, '+1234567890', 'Head Office', 'Tech'), (2, '+1234567891', 'Head Office', 'Tech'),
    (4, '+1234567894', 'Branch', 'Sales');
INSERT INTO user_groups (user_id, group_id) VALUES (1, 1), (2, 2), (4, 1);";

// ---- The clients ---------------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Held {
    session_id: i64,
    access: Token,
    refresh: Token,
}

#[derive(Clone)]
struct Device {
    identifier: Identifier,
    ip: ClientIp,
    location: usize,
    /// The last code received, with its challenge.
    code: Option<(String, String)>,
    session: Option<Held>,
    /// A refresh token whose exchange got no answer: the app presents it again.
    retry: Option<(i64, Token)>,
}

struct Sim {
    seed: u64,
    edge: Rc<Edge>,
    logins: Vec<Rc<EdgeLogin>>,
    devices: Vec<Rc<RefCell<Device>>>,
    violations: Rc<RefCell<Vec<String>>>,
    next_task: usize,
    /// Sessions whose revocation was seen, with the time it committed.
    revoked: HashMap<i64, i64>,
}

fn email(address: &str) -> Identifier {
    Identifier::Email(Email::parse(address).unwrap())
}

fn phone(number: &str) -> Identifier {
    Identifier::Phone(PhoneNumber::parse(number).unwrap())
}

fn digits_in(text: &str) -> String {
    let start = text.find(|c: char| c.is_ascii_digit()).unwrap();
    text[start..start + 6].to_owned()
}

impl Sim {
    fn new(seed: u64, policy: Policy) -> Sim {
        let db = Sqlite::migrated();
        db.execute(USERS);
        let mut rng = Rng(seed);
        let lose_d1_answer = rng.below(6);
        let fail_kv_put = rng.below(6);
        let edge = Rc::new(Edge {
            rng: RefCell::new(rng),
            clock: FakeClock::at(START),
            db,
            central: RefCell::default(),
            caches: RefCell::new(vec![HashMap::new(); LOCATIONS]),
            observed: RefCell::default(),
            outbox: RefCell::default(),
            lose_d1_answer,
            fail_kv_put,
        });
        let random = SeededRandom::new(seed ^ 0x5EED);
        let logins = (0..LOCATIONS)
            .map(|location| {
                let store = D1::new(SimD1(edge.clone()));
                Rc::new(Login {
                    store: store.clone(),
                    access: SimKv { edge: edge.clone(), location },
                    notifier: SimOutbox(edge.clone()),
                    clock: edge.clock.clone(),
                    random: random.clone(),
                    events: DeferredEvents::new(store, RequestOrigin::default()),
                    policy: policy.clone(),
                    hasher: CodeHasher::new(b"0123456789abcdef0123456789abcdef").unwrap(),
                    messages: MessageSettings { app_name: "CRM".into(), ..MessageSettings::default() },
                    test_logins: TestLogins::default(),
                })
            })
            .collect();
        let device = |identifier: Identifier, ip: &str| {
            Rc::new(RefCell::new(Device {
                identifier,
                ip: ClientIp(ip.into()),
                location: 0,
                code: None,
                session: None,
                retry: None,
            }))
        };
        let devices = vec![
            device(email("mobile.test@example.com"), "203.0.113.1"),
            device(phone("+1234567890"), "2001:db8:1::1"),
            device(email("field.worker@example.com"), "198.51.100.4"),
        ];
        Sim { seed, edge, logins, devices, violations: Rc::default(), next_task: 0, revoked: HashMap::new() }
    }

    fn pick(&self, n: usize) -> usize {
        self.edge.rng.borrow_mut().below(n as u64) as usize
    }

    fn chance(&self, percent: u64) -> bool {
        self.edge.rng.borrow_mut().percent(percent)
    }

    /// Runs the requests of one round to completion, interleaved at every storage call as the seed decides.
    fn run(&mut self, tasks: Vec<(usize, Task)>) {
        let mut tasks: Vec<Option<(usize, Task)>> = tasks.into_iter().map(Some).collect();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let live: Vec<usize> = (0..tasks.len()).filter(|&i| tasks[i].is_some()).collect();
            if live.is_empty() {
                break;
            }
            let i = live[self.pick(live.len())];
            let (id, task) = tasks[i].as_mut().unwrap();
            CURRENT.set(*id);
            if task.as_mut().poll(&mut cx).is_ready() {
                tasks[i] = None;
            }
        }
        CURRENT.set(usize::MAX);
    }

    fn task_id(&mut self) -> usize {
        self.next_task += 1;
        self.next_task
    }

    fn violation(violations: &RefCell<Vec<String>>, text: String) {
        violations.borrow_mut().push(text);
    }

    /// One request of a device, chosen by its state.
    fn device_request(&mut self, d: usize) -> (usize, Task) {
        let id = self.task_id();
        if self.chance(50) {
            let location = self.pick(LOCATIONS);
            self.devices[d].borrow_mut().location = location;
        }
        let device = self.devices[d].clone();
        let state = device.borrow().clone();
        let login = self.logins[state.location].clone();
        let edge = self.edge.clone();
        let violations = self.violations.clone();
        let lose = self.chance(20);
        let roll = self.pick(100);

        if let Some((session_id, presented)) = state.retry.clone() {
            // The property is about one lost answer retried within the grace period: the retry itself gets through.
            edge.observed.borrow_mut().immune.insert(id);
            return (id, Box::pin(refresh(login, device, edge, violations, session_id, presented, false, id)));
        }
        match (&state.session, &state.code) {
            (Some(held), _) => {
                let held = held.clone();
                match roll {
                    0..=54 => (
                        id,
                        Box::pin(refresh(login, device, edge, violations, held.session_id, held.refresh, lose, id)),
                    ),
                    55..=74 => (
                        id,
                        Box::pin(async move {
                            let _ = login.authenticate(Some(&format!("Token {}", held.access.expose()))).await;
                        }),
                    ),
                    75..=84 => (
                        id,
                        Box::pin(async move {
                            // Logout with the access token, or the refresh token alone; retried until answered.
                            for _ in 0..4 {
                                let done =
                                    match login.authenticate(Some(&format!("Token {}", held.access.expose()))).await {
                                        Ok(auth) if roll.is_multiple_of(2) => login.logout(&auth).await.is_ok(),
                                        _ => login.logout_by_refresh(&held.refresh, &state.ip).await.is_ok(),
                                    };
                                if done {
                                    break;
                                }
                            }
                            device.borrow_mut().session = None;
                        }),
                    ),
                    85..=92 => (
                        id,
                        Box::pin(async move {
                            for _ in 0..4 {
                                let Ok(auth) =
                                    login.authenticate(Some(&format!("Token {}", held.access.expose()))).await
                                else {
                                    break;
                                };
                                if login.logout_all(&auth).await.is_ok() {
                                    break;
                                }
                            }
                            device.borrow_mut().session = None;
                        }),
                    ),
                    _ => (
                        id,
                        Box::pin(async move {
                            // Ends another of the user's sessions from this one (a lost phone).
                            let Ok(auth) = login.authenticate(Some(&format!("Token {}", held.access.expose()))).await
                            else {
                                return;
                            };
                            if let Ok(listed) = login.list_sessions(&auth).await {
                                if let Some(other) = listed.iter().find(|s| s.id != held.session_id) {
                                    for _ in 0..4 {
                                        if login.revoke_session(&auth, other.id).await.is_ok() {
                                            break;
                                        }
                                    }
                                }
                            }
                        }),
                    ),
                }
            }
            (None, Some((digits, challenge))) if roll < 80 => {
                let (digits, challenge) = (digits.clone(), challenge.clone());
                (id, Box::pin(verify(login, device, edge, violations, digits, challenge, lose, id)))
            }
            _ => (id, Box::pin(request_code(login, device, edge, id))),
        }
    }

    /// The attacker: asks for codes and guesses wrong ones, for an employee and for others, from many addresses.
    fn attacker_request(&mut self) -> (usize, Task) {
        let id = self.task_id();
        let targets =
            [email("mobile.test@example.com"), phone("+1234567891"), email("nobody@example.com"), phone("+1234567890")];
        let target = targets[self.pick(targets.len())].clone();
        let login = self.logins[self.pick(LOCATIONS)].clone();
        let ip = ClientIp(format!("192.0.2.{}", self.pick(250)));
        let guess = format!("{:06}", self.pick(1_000_000));
        let ask = self.chance(30);
        (
            id,
            Box::pin(async move {
                if ask {
                    if let Ok(pending) = login.request_code(target.clone(), &ip).await {
                        let _ = login.deliver_code(&pending).await;
                    }
                } else {
                    let _ = login.verify_code(target, OtpCode::parse(&guess).unwrap(), &ip, &Default::default()).await;
                }
                let _ = login.settle().await;
            }),
        )
    }

    fn round(&mut self) {
        let waiting = self.devices.iter().any(|d| d.borrow().retry.is_some());
        // A client retries a lost refresh within seconds; the clock jumps further only when none is waiting.
        let advance = match self.pick(10) {
            _ if waiting => self.pick(12) as i64,
            0 => 600 + self.pick(1200) as i64,
            _ => self.pick(45) as i64,
        };
        self.edge.clock.advance(advance);
        let mut tasks = Vec::new();
        for d in 0..self.devices.len() {
            let must = self.devices[d].borrow().retry.is_some();
            if must || self.chance(55) {
                tasks.push(self.device_request(d));
            }
            if self.chance(15) {
                tasks.push(self.device_request(d)); // the same app, a second request in parallel
            }
        }
        for _ in 0..self.pick(3) {
            tasks.push(self.attacker_request());
        }
        self.run(tasks);
        self.check();
    }

    /// The properties that hold of the whole world at any time.
    fn check(&mut self) {
        let policy = &self.logins[0].policy;
        let observed = self.edge.observed.borrow();
        for (challenge, n) in &observed.reserved {
            if *n > policy.max_failed_attempts {
                Self::violation(&self.violations, format!("{n} guesses evaluated on code {challenge}"));
            }
        }
        for (challenge, n) in &observed.sessions_started {
            if *n > 1 {
                Self::violation(&self.violations, format!("{n} sessions started from code {challenge}"));
            }
        }
        drop(observed);
        let most = self.edge.db.number("SELECT COALESCE(max(failures), 0) FROM guess_counters");
        if most > i64::from(policy.max_consecutive_failures) {
            Self::violation(&self.violations, format!("{most} consecutive failures counted for one account"));
        }

        let now = self.edge.now();
        for (session, at) in self.edge.db.pairs("SELECT id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL") {
            self.revoked.entry(session).or_insert(at);
        }
        for (&session, &at) in &self.revoked {
            if now <= at + PROPAGATION {
                continue;
            }
            let sql = format!("SELECT digest FROM access_tokens WHERE session_id = {session}");
            for digest in self.edge.db.texts(&sql) {
                for value in self.edge.servable(&kv_key(&TokenDigest::parse(&digest).unwrap())) {
                    if Session::decode(&value).is_some_and(|s| s.expires_at.0 > now) {
                        Self::violation(
                            &self.violations,
                            format!(
                                "session {session} revoked at {} still has a working access token at {}",
                                at - START,
                                now - START
                            ),
                        );
                    }
                }
            }
        }
    }

    fn simulate(mut self) -> Result<usize, String> {
        for _ in 0..ROUNDS {
            self.round();
            if !self.violations.borrow().is_empty() {
                break;
            }
        }
        // Let every cache lapse, then look again.
        self.edge.clock.advance(PROPAGATION + 1);
        self.check();
        let violations = self.violations.borrow();
        match violations.first() {
            None => Ok(self.next_task),
            Some(first) => Err(format!(
                "seed {}: {first} ({} violation(s)); replay with SIM_SEED={}",
                self.seed,
                violations.len(),
                self.seed
            )),
        }
    }
}

/// Asks for a code at the device's location; the delivery runs after the answer, as `wait_until` does.
async fn request_code(login: Rc<EdgeLogin>, device: Rc<RefCell<Device>>, edge: Rc<Edge>, id: usize) {
    let (identifier, ip) = {
        let d = device.borrow();
        (d.identifier.clone(), d.ip.clone())
    };
    let Ok(pending) = login.request_code(identifier, &ip).await else { return };
    let delivered = login.deliver_code(&pending).await;
    let _ = login.settle().await;
    if delivered.is_err() {
        return;
    }
    let sent = edge.outbox.borrow().iter().rev().find(|(task, _)| *task == id).map(|(_, m)| digits_in(&m.text));
    if let Some(digits) = sent {
        device.borrow_mut().code = Some((digits, pending.challenge.as_str().to_owned()));
    }
}

/// Submits the code the device received. A correct code whose guess was reserved must log in, unless another
/// request redeemed it first or this request met an injected fault.
#[allow(clippy::too_many_arguments)]
async fn verify(
    login: Rc<EdgeLogin>,
    device: Rc<RefCell<Device>>,
    edge: Rc<Edge>,
    violations: Rc<RefCell<Vec<String>>>,
    digits: String,
    challenge: String,
    lose: bool,
    id: usize,
) {
    let (identifier, ip) = {
        let d = device.borrow();
        (d.identifier.clone(), d.ip.clone())
    };
    let outcome =
        login.verify_code(identifier.clone(), OtpCode::parse(&digits).unwrap(), &ip, &Default::default()).await;
    // The work after the answer, as the Worker's `wait_until` runs it.
    let _ = login.settle().await;
    let observed = edge.observed.borrow();
    // A newer code for the identifier (asked for in parallel) kills this one: then it is no longer correct.
    let current =
        edge.db.texts(&format!("SELECT challenge_id FROM otp_challenges WHERE identifier = '{}'", identifier.key()));
    let reserved_this = observed.reservation_of.get(&id) == Some(&challenge) && current.first() == Some(&challenge);
    match outcome {
        Ok(grant) => {
            let mut d = device.borrow_mut();
            d.code = None;
            if !lose {
                let t = grant.tokens;
                d.session = Some(Held { session_id: t.session_id, access: t.access, refresh: t.refresh });
            }
        }
        Err(error @ (LoginError::InvalidCode { .. } | LoginError::Refused(_)))
            if reserved_this
                && !observed.faulted.contains(&id)
                && !observed.sessions_started.contains_key(&challenge) =>
        {
            Sim::violation(
                &violations,
                format!("the correct code of challenge {challenge} was counted wrong: {error:?}"),
            );
        }
        Err(_) => {
            if observed.sessions_started.contains_key(&challenge) || !reserved_this {
                device.borrow_mut().code = None;
            }
        }
    }
}

/// Exchanges the device's refresh token. An honest app's refresh fails only if its session was ended by a logout
/// or revocation: never because an answer was lost or two refreshes raced.
#[allow(clippy::too_many_arguments)]
async fn refresh(
    login: Rc<EdgeLogin>,
    device: Rc<RefCell<Device>>,
    edge: Rc<Edge>,
    violations: Rc<RefCell<Vec<String>>>,
    session_id: i64,
    presented: Token,
    lose: bool,
    id: usize,
) {
    let ip = device.borrow().ip.clone();
    let outcome = login.refresh(&presented, &ip, &Default::default()).await;
    let _ = login.settle().await;
    let faulted = edge.observed.borrow().faulted.contains(&id);
    let mut d = device.borrow_mut();
    match outcome {
        Ok(grant) if !lose => {
            let t = grant.tokens;
            d.session = Some(Held { session_id: t.session_id, access: t.access, refresh: t.refresh });
            d.retry = None;
        }
        // The answer is lost (or the request failed): the app still holds the token and presents it again.
        Ok(_) => d.retry = Some((session_id, presented)),
        Err(AuthError::Internal(_)) if faulted => d.retry = Some((session_id, presented)),
        Err(error) => {
            let reason = edge
                .db
                .texts(&format!("SELECT COALESCE(revoked_reason, 'live') FROM sessions WHERE id = {session_id}"));
            let reason = reason.first().map(String::as_str).unwrap_or("gone");
            if matches!(reason, "live" | "refresh token reused") {
                Sim::violation(
                    &violations,
                    format!("an app's refresh of session {session_id} failed ({error:?}); session: {reason}"),
                );
            }
            d.session = None;
            d.retry = None;
        }
    }
}

/// The seeds one of the `parts` parts of the exploration runs: `SIM_SEED` alone if it is set (in part 0), else its
/// share of `0..SIM_SCHEDULES` (2000 by default), so that the parts run in parallel.
fn schedules(part: u64, parts: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        let seed = seed.trim().parse().expect("SIM_SEED is a number");
        return if part == 0 { vec![seed] } else { Vec::new() };
    }
    let n: u64 = std::env::var("SIM_SCHEDULES").ok().and_then(|n| n.trim().parse().ok()).unwrap_or(2000);
    (0..n).filter(|seed| seed % parts == part).collect()
}

/// Runs the schedules of one part; panics with the first failure's seed.
fn explore(part: u64, policy: &Policy) {
    let (mut requests, seeds) = (0, schedules(part, 4));
    for &seed in &seeds {
        match Sim::new(seed, policy.clone()).simulate() {
            Ok(n) => requests += n,
            Err(failure) => panic!("{failure}"),
        }
    }
    eprintln!("simulation part {part}: {} schedules, {requests} requests, no violation", seeds.len());
}

#[test]
fn the_rules_hold_on_a_simulated_edge_in_every_schedule_part_0() {
    explore(0, &Policy::default());
}

#[test]
fn the_rules_hold_on_a_simulated_edge_in_every_schedule_part_1() {
    explore(1, &Policy::default());
}

#[test]
fn the_rules_hold_on_a_simulated_edge_in_every_schedule_part_2() {
    explore(2, &Policy::default());
}

#[test]
fn the_rules_hold_on_a_simulated_edge_in_every_schedule_part_3() {
    explore(3, &Policy::default());
}

#[test]
fn the_same_seed_replays_the_same_schedule() {
    let run = |seed| {
        let sim = Sim::new(seed, Policy::default());
        let edge = sim.edge.clone();
        sim.simulate().unwrap();
        let digests = edge.db.texts("SELECT digest FROM access_tokens ORDER BY digest");
        let stored = edge.central.borrow().len();
        (edge.now(), digests, stored)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}
