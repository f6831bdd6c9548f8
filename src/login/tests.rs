use crate::test_support::run;

use super::fakes::*;
use super::*;
use crate::adapters::d1::{DeferredEvents, RequestOrigin, D1};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::adapters::sql::{Database, Statement};
use crate::adapters::sqlite::{Sqlite, SqliteResults};
use crate::domain::{CodeHasher, Email, Identifier, Locale, OtpCode, PhoneNumber, Seconds, Token, UnixTime};

/// The SQLite seam as the tests see it: every batch's statements are recorded, and the next answer can be lost
/// after its batch committed (as a dropped connection to D1 would).
#[derive(Clone)]
struct TestDb {
    db: Sqlite,
    /// Loses the answer of the n-th next batch (1 = the next one; 0 = none).
    lose_answer_of: Rc<Cell<u32>>,
    batches: Rc<RefCell<Vec<Vec<String>>>>,
}

impl Database for TestDb {
    type Results = SqliteResults;

    async fn batch(&self, statements: Vec<Statement>) -> Result<SqliteResults, StoreError> {
        self.batches.borrow_mut().push(statements.iter().map(|s| s.sql.to_string()).collect());
        let results = self.db.batch(statements).await?;
        let countdown = self.lose_answer_of.get();
        self.lose_answer_of.set(countdown.saturating_sub(1));
        if countdown == 1 {
            return Err(StoreError("D1: network connection lost".into()));
        }
        Ok(results)
    }
}

type Store = D1<TestDb>;
type Journal = Recorder<DeferredEvents<TestDb>>;
/// The host's ports: the real SQL on SQLite, KV as a map, an outbox, a clock the test moves, seeded randomness.
struct TestPorts;

impl Ports for TestPorts {
    type Store = Store;
    type Tokens = MemoryKv;
    type Notifier = Outbox;
    type Clock = FakeClock;
    type Random = SeededRandom;
    type Events = Journal;
}

type TestLogin = Login<TestPorts>;

struct World {
    login: TestLogin,
    /// The D1 console of this world: the same in-process SQLite the login's statements run on.
    db: Sqlite,
    seam: TestDb,
    kv: MemoryKv,
    clock: FakeClock,
    outbox: Outbox,
    events: Journal,
}

const START: i64 = 1_800_000_000;

/// The test user (1), a user in no employee group (2) and a deactivated employee (3).
const USERS: &str = "
INSERT INTO groups (id, name, is_employee_group) VALUES (1, 'Employees', 1), (2, 'Contractors', 0);
INSERT INTO users (id, email, first_name, last_name, is_active) VALUES
    (1, 'mobile.test@example.com', 'Mobile', 'Tester', 1),
    (2, 'outsider@example.com', 'Mobile', 'Tester', 1),
    (3, 'former@example.com', 'Mobile', 'Tester', 0);
INSERT INTO profiles (user_id, phone_number, branch, designation) VALUES
    (1, '+1234567890', 'Head Office', 'Tech'), (2, '+1234567891', 'Head Office', 'Tech'),
    (3, '+1234567892', 'Head Office', 'Tech');
INSERT INTO user_groups (user_id, group_id) VALUES (1, 1), (2, 2), (3, 1);";

fn world() -> World {
    let db = Sqlite::migrated();
    db.execute(USERS);
    let seam = TestDb { db: db.clone(), lose_answer_of: Rc::default(), batches: Rc::default() };
    let store = D1::new(seam.clone());
    let kv = MemoryKv::default();
    let clock = FakeClock::at(START);
    let outbox = Outbox::default();
    let events = Recorder::new(DeferredEvents::new(store.clone(), RequestOrigin::default()));
    let login = Login {
        store: store.clone(),
        access: kv.clone(),
        notifier: outbox.clone(),
        clock: clock.clone(),
        random: SeededRandom::new(42),
        events: events.clone(),
        policy: Policy::default(),
        hasher: CodeHasher::new(b"0123456789abcdef0123456789abcdef").unwrap(),
        messages: MessageSettings { app_name: "CRM".into(), ..MessageSettings::default() },
        test_logins: TestLogins::default(),
    };
    World { login, db, seam, kv, clock, outbox, events }
}

impl World {
    /// Session rows not yet revoked.
    fn live_session_count(&self) -> i64 {
        self.db.number("SELECT count(*) FROM sessions WHERE revoked_at IS NULL")
    }
}

fn email(address: &str) -> Identifier {
    Identifier::Email(Email::parse(address).unwrap())
}

fn client() -> ClientIp {
    ClientIp("203.0.113.7".into())
}

impl World {
    /// Requests and delivers a code; returns the digits the user received, if any.
    fn send_code(&self, identifier: &Identifier) -> Result<Option<String>, LoginError> {
        self.send_code_in(identifier, None)
    }

    fn send_code_in(&self, identifier: &Identifier, locale: Option<&str>) -> Result<Option<String>, LoginError> {
        let before = self.outbox.sent.borrow().len();
        let locale = locale.map(|l| Locale::parse(l).unwrap());
        let pending = run(self.login.request_code(identifier.clone(), &client()))?.in_locale(locale);
        run(self.login.deliver_code(&pending)).unwrap();
        let sent = self.outbox.sent.borrow();
        Ok(sent.get(before).map(|m| digits_in(&m.text)))
    }

    fn verify(&self, identifier: &Identifier, code: &str) -> Result<LoginGrant, LoginError> {
        run(self.login.verify_code(identifier.clone(), OtpCode::parse(code).unwrap(), &client(), &device()))
    }

    /// Logs the test user in; returns the grant.
    fn log_in(&self) -> LoginGrant {
        let id = email("mobile.test@example.com");
        let code = self.send_code(&id).unwrap().unwrap();
        self.clock.advance(60);
        self.verify(&id, &code).unwrap()
    }

    fn refresh(&self, grant: &LoginGrant) -> Result<LoginGrant, AuthError> {
        run(self.login.refresh(&grant.tokens.refresh, &client(), &device()))
    }

    fn auth(&self, grant: &LoginGrant) -> Result<Authenticated, AuthError> {
        run(self.login.authenticate(Some(&format!("Token {}", grant.tokens.access.expose()))))
    }
}

fn device() -> Device {
    Device {
        user_agent: Some("CRM-Mobile/2.0".into()),
        ip: Some("203.0.113.7".into()),
        country: Some("GB".into()),
        city: None,
    }
}

fn digits_in(text: &str) -> String {
    let start = text.find(|c: char| c.is_ascii_digit()).unwrap();
    text[start..start + 6].to_owned()
}

/// A six-digit code that is not `code`.
fn wrong(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

#[test]
fn an_employee_receives_a_code_that_logs_them_in_once() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().expect("a code is sent");
    let grant = w.verify(&id, &code).unwrap();
    assert_eq!(grant.user.id, 1);
    assert_eq!(grant.tokens.access.expose().len(), 64);
    assert_eq!(grant.tokens.refresh.expose().len(), 64);
    assert_ne!(grant.tokens.access, grant.tokens.refresh);
    assert_eq!(w.verify(&id, &code).unwrap_err(), LoginError::InvalidCode { attempts_remaining: 3 });
    assert_eq!(w.kv.access_token_count(), 1);
    assert_eq!(w.live_session_count(), 1);
}

#[test]
fn a_code_is_valid_until_the_last_second_of_its_ten_minutes() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    w.clock.advance(599);
    assert!(w.verify(&id, &code).is_ok());
}

#[test]
fn a_code_is_dead_at_exactly_ten_minutes() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    w.clock.advance(600);
    assert_eq!(w.verify(&id, &code).unwrap_err(), LoginError::InvalidCode { attempts_remaining: 3 });
}

#[test]
fn the_third_wrong_guess_locks_out_even_the_right_code() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    assert_eq!(w.verify(&id, &wrong(&code)).unwrap_err(), LoginError::InvalidCode { attempts_remaining: 2 });
    assert_eq!(w.verify(&id, &wrong(&code)).unwrap_err(), LoginError::InvalidCode { attempts_remaining: 1 });
    assert_eq!(
        w.verify(&id, &wrong(&code)).unwrap_err(),
        LoginError::Refused(Refusal::Locked { retry_after: Seconds::new(900) })
    );
    assert!(matches!(w.verify(&id, &code), Err(LoginError::Refused(Refusal::Locked { .. }))));
    assert_eq!(
        w.events.kinds().iter().filter(|k| **k == EventKind::CodeFailed).count(),
        3,
        "a refused guess is never evaluated"
    );
    assert!(w.events.kinds().contains(&EventKind::LockedOut));
}

#[test]
fn a_resend_keeps_the_failure_count() {
    let w = world();
    let id = email("mobile.test@example.com");
    let first = w.send_code(&id).unwrap().unwrap();
    w.verify(&id, &wrong(&first)).unwrap_err();
    w.verify(&id, &wrong(&first)).unwrap_err();
    w.clock.advance(60);
    let second = w.send_code(&id).unwrap().unwrap();
    assert!(matches!(w.verify(&id, &wrong(&second)), Err(LoginError::Refused(Refusal::Locked { .. }))));
    assert!(matches!(w.verify(&id, &second), Err(LoginError::Refused(Refusal::Locked { .. }))));
}

#[test]
fn a_locked_identifier_cannot_ask_for_a_new_code_until_the_lockout_passes() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    for _ in 0..3 {
        w.verify(&id, &wrong(&code)).unwrap_err();
    }
    w.clock.advance(899);
    assert_eq!(w.send_code(&id).unwrap_err(), LoginError::Refused(Refusal::Locked { retry_after: Seconds::new(1) }));
    w.clock.advance(1);
    let fresh = w.send_code(&id).unwrap().unwrap();
    assert!(w.verify(&id, &fresh).is_ok());
}

#[test]
fn a_success_clears_the_failure_count() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    w.verify(&id, &wrong(&code)).unwrap_err();
    w.verify(&id, &wrong(&code)).unwrap_err();
    w.verify(&id, &code).unwrap();
    w.clock.advance(60);
    let next = w.send_code(&id).unwrap().unwrap();
    assert_eq!(w.verify(&id, &wrong(&next)).unwrap_err(), LoginError::InvalidCode { attempts_remaining: 2 });
}

#[test]
fn a_new_code_kills_the_previous_one() {
    let w = world();
    let id = email("mobile.test@example.com");
    let first = w.send_code(&id).unwrap().unwrap();
    w.clock.advance(60);
    let second = w.send_code(&id).unwrap().unwrap();
    if first != second {
        assert_eq!(w.verify(&id, &first).unwrap_err(), LoginError::InvalidCode { attempts_remaining: 2 });
    }
    assert!(w.verify(&id, &second).is_ok());
}

#[test]
fn a_second_request_within_the_cooldown_is_refused_with_the_wait() {
    let w = world();
    let id = email("mobile.test@example.com");
    w.send_code(&id).unwrap();
    w.clock.advance(45);
    assert_eq!(w.send_code(&id).unwrap_err(), LoginError::Refused(Refusal::Cooldown { retry_after: Seconds::new(15) }));
    assert_eq!(w.outbox.sent.borrow().len(), 1);
}

#[test]
fn an_identifier_is_sent_at_most_five_codes_an_hour() {
    let w = world();
    let id = email("mobile.test@example.com");
    for _ in 0..5 {
        w.send_code(&id).unwrap();
        w.clock.advance(60);
    }
    assert_eq!(
        w.send_code(&id).unwrap_err(),
        LoginError::Refused(Refusal::HourlyCap { retry_after: Seconds::new(3300) })
    );
    w.clock.advance(3300);
    assert!(w.send_code(&id).unwrap().is_some());
}

#[test]
fn one_client_ip_may_request_only_so_many_codes_per_window() {
    let w = world();
    for n in 0..20 {
        w.send_code(&email(&format!("user{n}@example.com"))).unwrap();
    }
    let refused = w.send_code(&email("mobile.test@example.com")).unwrap_err();
    assert_eq!(refused, LoginError::Refused(Refusal::TooManyRequests { retry_after: Seconds::new(900) }));
}

#[test]
fn outsiders_inactive_users_and_unknown_addresses_are_admitted_alike_and_sent_nothing() {
    let w = world();
    for address in ["outsider@example.com", "former@example.com", "nobody@example.com"] {
        let id = email(address);
        assert_eq!(w.send_code(&id).unwrap(), None, "{address}");
        assert_eq!(w.verify(&id, "000000").unwrap_err(), LoginError::InvalidCode { attempts_remaining: 2 });
    }
    assert!(w.outbox.sent.borrow().is_empty());
    let requested = w.events.seen.borrow().iter().filter(|e| e.kind == EventKind::CodeRequested).count();
    assert_eq!(requested, 3);
}

#[test]
fn a_phone_number_gets_its_code_by_sms() {
    let w = world();
    let id = Identifier::Phone(PhoneNumber::parse("+1 234 567 890").unwrap());
    let code = w.send_code(&id).unwrap().unwrap();
    assert_eq!(w.outbox.sent.borrow()[0].to, id);
    assert_eq!(w.verify(&id, &code).unwrap().user.id, 1);
}

#[test]
fn codes_are_stored_only_as_keyed_digests() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    let digest: String = w.db.text("SELECT code_digest FROM otp_challenges");
    assert_eq!(digest.len(), 64);
    assert!(!digest.contains(&code));
    assert_eq!(w.db.number("SELECT expires_at FROM otp_challenges"), START + 600);
    assert_eq!(w.kv.access_token_count(), 0, "nothing about the code is in KV");
}

#[test]
fn a_failed_delivery_is_recorded_and_does_not_change_the_answer() {
    let w = world();
    w.outbox.failing.set(true);
    let id = email("mobile.test@example.com");
    assert_eq!(w.send_code(&id).unwrap(), None);
    let failed = w.events.seen.borrow().iter().find(|e| e.kind == EventKind::DeliveryFailed).cloned().unwrap();
    assert_eq!(failed.user_id, Some(1));
    assert!(failed.detail.unwrap().contains("is not a valid phone number"));
}

#[test]
fn a_user_deactivated_after_the_code_was_sent_cannot_redeem_it() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    w.db.execute("UPDATE users SET is_active = 0 WHERE id = 1");
    assert!(matches!(w.verify(&id, &code), Err(LoginError::InvalidCode { .. })));
    assert_eq!(w.kv.access_token_count(), 0);
    assert_eq!(w.live_session_count(), 0);
}

#[test]
fn a_token_authenticates_until_logout_and_not_after() {
    let w = world();
    let grant = w.log_in();
    let auth = w.auth(&grant).unwrap();
    assert_eq!(auth.session.user.id, 1);
    run(w.login.logout(&auth)).unwrap();
    assert_eq!(w.auth(&grant).unwrap_err(), AuthError::Invalid);
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid, "the refresh token dies with the session");
    assert_eq!(w.events.kinds().last(), Some(&EventKind::Logout));
}

#[test]
fn an_access_token_dies_at_its_expiry_and_carries_the_user_as_it_was_issued() {
    let w = world();
    let grant = w.log_in();
    assert_eq!(grant.tokens.access_expires_in, Seconds::new(900));
    w.db.execute("UPDATE users SET first_name = 'Renamed' WHERE id = 1");
    assert_eq!(w.auth(&grant).unwrap().session.user.first_name, "Mobile", "a snapshot: no account read");
    w.clock.advance(899);
    assert!(w.auth(&grant).is_ok());
    w.clock.advance(1);
    assert_eq!(w.auth(&grant).unwrap_err(), AuthError::Invalid);
}

#[test]
fn a_refresh_rotates_both_tokens_and_picks_up_changes_to_the_user() {
    let w = world();
    let grant = w.log_in();
    w.db.execute("UPDATE users SET first_name = 'Renamed' WHERE id = 1");
    w.clock.advance(300);
    let next = w.refresh(&grant).unwrap();
    assert_eq!(next.tokens.session_id, grant.tokens.session_id);
    assert_ne!(next.tokens.refresh, grant.tokens.refresh);
    assert_eq!(next.user.first_name, "Renamed");
    assert_eq!(w.auth(&grant).unwrap_err(), AuthError::Invalid, "the replaced access token is deleted");
    assert_eq!(w.auth(&next).unwrap().session.user.first_name, "Renamed");
    assert_eq!(w.events.kinds().last(), Some(&EventKind::Refresh));
}

#[test]
fn a_rotated_out_refresh_token_presented_again_revokes_the_whole_session() {
    let w = world();
    let grant = w.log_in();
    let next = w.refresh(&grant).unwrap();
    w.clock.advance(Policy::default().refresh_reuse_grace.as_i64() + 1);
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid);
    assert_eq!(w.events.kinds().last(), Some(&EventKind::RefreshReused));
    assert_eq!(w.auth(&next).unwrap_err(), AuthError::Invalid, "the thief's or the owner's copy: both die");
    assert_eq!(w.refresh(&next).unwrap_err(), AuthError::Invalid);
    assert_eq!(w.live_session_count(), 0);
}

#[test]
fn a_refresh_token_dies_at_its_expiry_and_with_its_users_access() {
    let w = world();
    let grant = w.log_in();
    w.clock.advance(Policy::default().refresh_ttl.as_i64());
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid);

    let w = world();
    let grant = w.log_in();
    w.db.execute("DELETE FROM user_groups WHERE user_id = 1");
    assert!(w.auth(&grant).is_ok(), "the access token carries the user as it was");
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid);
    assert_eq!(w.auth(&grant).unwrap_err(), AuthError::Invalid, "a refresh that finds the access lost ends it");
    assert_eq!(w.live_session_count(), 0);
    let revoked = w.events.seen.borrow().last().cloned().unwrap();
    assert_eq!(revoked.kind, EventKind::Revoked);
    w.db.execute("INSERT INTO user_groups (user_id, group_id) VALUES (1, 1)");
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid, "the session stays ended");
}

#[test]
fn logout_all_ends_every_device_and_revoking_one_ends_only_that_one() {
    let w = world();
    let phone = w.log_in();
    let tablet = w.log_in();
    let laptop = w.log_in();
    let auth = w.auth(&phone).unwrap();
    let listed = run(w.login.list_sessions(&auth)).unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].user_agent.as_deref(), Some("CRM-Mobile/2.0"));

    assert!(run(w.login.revoke_session(&auth, tablet.tokens.session_id)).unwrap());
    assert!(!run(w.login.revoke_session(&auth, tablet.tokens.session_id)).unwrap(), "already ended");
    assert_eq!(w.auth(&tablet).unwrap_err(), AuthError::Invalid);
    assert!(w.auth(&laptop).is_ok());

    assert_eq!(run(w.login.logout_all(&auth)).unwrap(), 2);
    for grant in [&phone, &laptop] {
        assert_eq!(w.auth(grant).unwrap_err(), AuthError::Invalid);
        assert_eq!(w.refresh(grant).unwrap_err(), AuthError::Invalid);
    }
    let last = w.events.seen.borrow().last().cloned().unwrap();
    assert_eq!((last.kind, last.detail.as_deref()), (EventKind::Logout, Some("all")));
}

#[test]
fn a_user_cannot_revoke_someone_elses_session() {
    let w = world();
    let mine = w.log_in();
    w.db.execute("INSERT INTO user_groups (user_id, group_id) VALUES (2, 1)");
    let other = email("outsider@example.com");
    let code = w.send_code(&other).unwrap().unwrap();
    let theirs = w.verify(&other, &code).unwrap();
    let auth = w.auth(&mine).unwrap();
    assert!(!run(w.login.revoke_session(&auth, theirs.tokens.session_id)).unwrap());
    assert!(w.auth(&theirs).is_ok());
}

#[test]
fn requests_without_a_token_are_told_apart_from_dead_tokens() {
    let w = world();
    assert_eq!(run(w.login.authenticate(None)).unwrap_err(), AuthError::Missing);
    let unknown = format!("Token {}", "ab".repeat(32));
    assert_eq!(run(w.login.authenticate(Some(&unknown))).unwrap_err(), AuthError::Invalid);
}

#[test]
fn the_daily_sms_cap_stops_sending_without_changing_the_answer() {
    let mut w = world();
    w.login.policy.sms_daily_cap = 1;
    let first = Identifier::Phone(PhoneNumber::parse("+1234567890").unwrap());
    assert!(w.send_code(&first).unwrap().is_some());
    w.db.execute("INSERT INTO user_groups (user_id, group_id) VALUES (2, 1)");
    let second = Identifier::Phone(PhoneNumber::parse("+1234567891").unwrap());
    assert_eq!(w.send_code(&second).unwrap(), None, "admitted, but nothing sent");
    let capped = w.events.seen.borrow().iter().rev().find(|e| e.kind == EventKind::DeliveryFailed).cloned().unwrap();
    assert!(capped.detail.unwrap().contains("daily SMS cap"));
    assert!(w.send_code(&email("mobile.test@example.com")).unwrap().is_some(), "email is not capped");
    w.clock.advance(86_400);
    assert!(w.send_code(&second).unwrap().is_some(), "the cap resets the next day");
}

#[test]
fn every_failed_provider_is_recorded_and_the_one_that_accepted_is_named() {
    let w = world();
    w.outbox.failing_first.borrow_mut().extend(["resend", "postmark"]);
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().expect("the third provider delivers");
    let events = w.events.seen.borrow().clone();
    let failed: Vec<String> =
        events.iter().filter(|e| e.kind == EventKind::DeliveryFailed).filter_map(|e| e.detail.clone()).collect();
    assert_eq!(failed, ["resend: HTTP 503: unavailable", "postmark: HTTP 503: unavailable"]);
    let sent = events.iter().find(|e| e.kind == EventKind::CodeSent).unwrap();
    assert_eq!((sent.detail.as_deref(), sent.user_id), (Some("outbox"), Some(1)));
    assert!(w.verify(&id, &code).is_ok());
}

#[test]
fn when_every_provider_fails_each_attempt_is_recorded_and_nothing_claims_success() {
    let w = world();
    w.outbox.failing_first.borrow_mut().push("twilio");
    w.outbox.failing.set(true);
    let id = Identifier::Phone(PhoneNumber::parse("+1234567890").unwrap());
    assert_eq!(w.send_code(&id).unwrap(), None);
    assert_eq!(w.events.kinds(), [EventKind::CodeRequested, EventKind::DeliveryFailed, EventKind::DeliveryFailed]);
    let details: Vec<String> = w.events.seen.borrow().iter().filter_map(|e| e.detail.clone()).collect();
    assert!(details.iter().all(|d| !d.contains("234567890")), "no full number in the audit trail: {details:?}");
    assert!(details.iter().any(|d| d.contains(&id.masked())), "{details:?}");
}

#[test]
fn the_message_is_written_in_the_requested_language_then_the_profiles() {
    let w = world();
    let id = email("mobile.test@example.com");
    w.send_code_in(&id, Some("es-MX")).unwrap();
    assert_eq!(w.outbox.sent.borrow()[0].language, Language::Spanish);
    w.db.execute("UPDATE profiles SET locale = 'fr' WHERE user_id = 1");
    w.clock.advance(60);
    w.send_code_in(&id, None).unwrap();
    assert_eq!(w.outbox.sent.borrow()[1].language, Language::French);
    w.clock.advance(60);
    w.send_code_in(&id, Some("de")).unwrap();
    assert_eq!(
        w.outbox.sent.borrow()[2].language,
        Language::French,
        "an unsupported request falls back to the profile"
    );
}

fn with_test_logins(w: &mut World, spec: &str) {
    let rules = TestLoginRules { production: true, allowed_in_production: true, now: UnixTime(START) };
    w.login.test_logins = TestLogins::parse(spec, Some("2027-02-01"), rules).unwrap();
}

#[test]
fn a_test_identifier_logs_in_once_with_its_fixed_code_and_nothing_is_sent() {
    let mut w = world();
    with_test_logins(&mut w, "mobile.test@example.com=246810,outsider@example.com=135790");
    let id = email("mobile.test@example.com");
    assert_eq!(w.send_code(&id).unwrap(), None, "nothing is sent");
    assert!(w.outbox.sent.borrow().is_empty());
    let digest = w.db.text("SELECT code_digest FROM otp_challenges");
    assert!(digest.len() == 64 && !digest.contains("246810"), "only the keyed digest is stored");
    assert_eq!(w.verify(&id, "246810").unwrap().user.id, 1);
    assert!(matches!(w.verify(&id, "246810"), Err(LoginError::InvalidCode { .. })), "used once");
    let requested = w.events.seen.borrow().iter().find(|e| e.kind == EventKind::CodeRequested).cloned().unwrap();
    assert!(requested.detail.unwrap().contains("test identifier"));
    assert!(!w.events.kinds().contains(&EventKind::CodeSent));
}

#[test]
fn a_test_identifier_still_obeys_the_account_rules_and_the_lockout() {
    let mut w = world();
    with_test_logins(&mut w, "outsider@example.com=135790,mobile.test@example.com=246810");
    let outsider = email("outsider@example.com");
    w.send_code(&outsider).unwrap();
    assert!(matches!(w.verify(&outsider, "135790"), Err(LoginError::InvalidCode { .. })), "not an employee");

    let id = email("mobile.test@example.com");
    w.send_code(&id).unwrap();
    for _ in 0..3 {
        w.verify(&id, "000000").unwrap_err();
    }
    assert!(matches!(w.verify(&id, "246810"), Err(LoginError::Refused(Refusal::Locked { .. }))));
}

#[test]
fn after_the_expiry_date_a_test_identifier_is_an_ordinary_one() {
    let mut w = world();
    with_test_logins(&mut w, "mobile.test@example.com=246810");
    w.clock.0.set(UnixTime::parse_date("2027-02-01").unwrap().0);
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().expect("a real code is sent");
    if code != "246810" {
        assert!(matches!(w.verify(&id, "246810"), Err(LoginError::InvalidCode { .. })));
    }
    assert!(w.verify(&id, &code).is_ok());
}

// ---- Guessing, capped per account -------------------------------------------------------------------------------

fn phone(number: &str) -> Identifier {
    Identifier::Phone(PhoneNumber::parse(number).unwrap())
}

impl World {
    /// Guesses evaluated so far: every guess that was checked against a code is recorded as `code_failed` (or led
    /// to a login); a refused request never reaches a code.
    fn guesses_evaluated(&self) -> usize {
        self.events.kinds().iter().filter(|k| matches!(k, EventKind::CodeFailed | EventKind::Login)).count()
    }

    fn counter(&self) -> (i64, i64, i64) {
        let failures = self.db.number("SELECT COALESCE(max(failures), 0) FROM guess_counters WHERE subject = 'user:1'");
        let locked =
            self.db.number("SELECT COALESCE(max(locked_until), 0) FROM guess_counters WHERE subject = 'user:1'");
        let held = self.db.number("SELECT COALESCE(max(held), 0) FROM guess_counters WHERE subject = 'user:1'");
        (failures, locked, held)
    }

    fn verify_from(&self, identifier: &Identifier, code: &str, client: &ClientIp) -> Result<LoginGrant, LoginError> {
        run(self.login.verify_code(identifier.clone(), OtpCode::parse(code).unwrap(), client, &device()))
    }

    fn send_code_from(&self, identifier: &Identifier, client: &ClientIp) -> Result<Option<String>, LoginError> {
        let before = self.outbox.sent.borrow().len();
        let pending = run(self.login.request_code(identifier.clone(), client))?;
        run(self.login.deliver_code(&pending)).unwrap();
        let sent = self.outbox.sent.borrow();
        Ok(sent.get(before).map(|m| digits_in(&m.text)))
    }
}

/// An attacker who knows the test user's email and phone plays for `days` simulated days: every resend on both
/// channels, a guess whenever one is allowed, every lockout waited out, each request from another address of one
/// IPv6 /64. Returns the guesses evaluated.
fn attack(w: &World, days: i64) -> usize {
    let identifiers = [email("mobile.test@example.com"), phone("+1234567890")];
    let end = START + days * 86_400;
    let mut request = 0u64;
    let mut next_client = || {
        request += 1;
        ClientIp(format!("2001:db8:77:1:{:x}:{:x}::1", request >> 16, request & 0xffff))
    };
    let mut step = 0usize;
    while w.clock.now().0 < end {
        step += 1;
        assert!(step < 100_000, "the attack loop must end");
        let target = &identifiers[step % 2];
        let wait = match w.send_code_from(target, &next_client()) {
            Ok(_) => Seconds::ZERO,
            Err(LoginError::Refused(refusal)) => refusal.retry_after(),
            Err(e) => panic!("{e:?}"),
        };
        // Guess on both channels while guesses are allowed (the codes are never the attacker's to read).
        for id in &identifiers {
            for _ in 0..3 {
                match w.verify_from(id, "000000", &next_client()) {
                    Err(LoginError::InvalidCode { .. }) => {}
                    Err(LoginError::Refused(_)) => break,
                    Ok(_) => return w.guesses_evaluated(), // 000000 was the code: the attack won
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        w.clock.advance(wait.max(Seconds::MINUTE).as_i64());
    }
    w.guesses_evaluated()
}

#[test]
fn an_attacker_with_every_resend_both_channels_and_a_whole_64_gets_at_most_30_guesses_in_30_days() {
    let w = world();
    let evaluated = attack(&w, 30);
    assert!(evaluated <= 30, "{evaluated} guesses evaluated");
    assert_eq!(evaluated, 30, "the attacker reaches the cap, and not one guess more");
    assert_eq!(w.counter().2, 1, "the account is held for an administrator");
    assert_eq!(w.send_code(&email("mobile.test@example.com")).unwrap_err(), LoginError::Refused(Refusal::Held));
}

#[test]
fn the_cap_follows_the_configured_maximum_up_to_nists_100() {
    let mut w = world();
    w.login.policy.max_consecutive_failures = NIST_MAX_CONSECUTIVE_FAILURES;
    let evaluated = attack(&w, 60);
    assert_eq!(evaluated, 100, "{evaluated} guesses evaluated in 60 days");
}

#[test]
fn failures_are_counted_per_account_so_locking_the_email_also_stops_the_phone() {
    let w = world();
    let (by_email, by_phone) = (email("mobile.test@example.com"), phone("+1234567890"));
    let sms_code = w.send_code(&by_phone).unwrap().unwrap();
    let email_code = w.send_code(&by_email).unwrap().unwrap();
    for _ in 0..3 {
        w.verify(&by_email, &wrong(&email_code)).unwrap_err();
    }
    assert_eq!(
        w.verify(&by_phone, &sms_code).unwrap_err(),
        LoginError::Refused(Refusal::Locked { retry_after: Seconds::new(900) })
    );
    assert_eq!(w.counter().0, 3, "one count for the account");
}

#[test]
fn time_never_resets_the_count_each_lockout_doubles_and_the_thirtieth_failure_holds_the_account() {
    let w = world();
    let id = email("mobile.test@example.com");
    let mut lockouts = Vec::new();
    for _ in 0..10 {
        let code = w.send_code(&id).unwrap().unwrap();
        let locked = loop {
            match w.verify(&id, &wrong(&code)) {
                Err(LoginError::InvalidCode { .. }) => {}
                Err(LoginError::Refused(refusal)) => break refusal,
                other => panic!("{other:?}"),
            }
        };
        lockouts.push(locked);
        if let Refusal::Locked { retry_after } = locked {
            w.clock.advance(retry_after.as_i64());
        }
    }
    let minutes = |m: u32| Refusal::Locked { retry_after: Seconds::MINUTE.times(m) };
    assert_eq!(
        lockouts,
        [
            minutes(15),
            minutes(30),
            minutes(60),
            minutes(120),
            minutes(240),
            minutes(480),
            minutes(960),
            minutes(1440),
            minutes(1440),
            Refusal::Held
        ]
    );
    assert_eq!(w.counter(), (30, w.counter().1, 1));
    w.clock.advance(365 * 86_400);
    assert_eq!(w.send_code(&id).unwrap_err(), LoginError::Refused(Refusal::Held), "a year later, still held");
}

#[test]
fn only_a_successful_login_or_an_unlock_resets_the_count() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    for _ in 0..3 {
        w.verify(&id, &wrong(&code)).unwrap_err();
    }
    w.clock.advance(900);
    let code = w.send_code(&id).unwrap().unwrap();
    assert_eq!(w.verify(&id, &wrong(&code)).unwrap_err(), LoginError::InvalidCode { attempts_remaining: 2 });
    w.verify(&id, &code).unwrap();
    assert_eq!(w.counter().0, 0, "a login clears the count");

    w.db.execute("UPDATE guess_counters SET failures = 30, held = 1 WHERE subject = 'user:1'");
    w.clock.advance(60);
    assert_eq!(w.send_code(&id).unwrap_err(), LoginError::Refused(Refusal::Held));
    w.db.execute("INSERT INTO admin_unlocks (identifier) VALUES ('+1234567890')");
    assert_eq!(w.counter(), (0, 0, 0), "the unlock, by phone, clears the account");
    let unlocked = w.db.number("SELECT count(*) FROM login_events WHERE event = 'unlocked' AND user_id = 1");
    assert_eq!(unlocked, 1, "the unlock is audited");
    assert!(w.send_code(&id).unwrap().is_some());
}

#[test]
fn an_unknown_address_is_counted_locked_and_answered_exactly_like_an_account() {
    let play = |address: &str| {
        let w = world();
        let id = email(address);
        let mut answers = Vec::new();
        for round in 0..4 {
            answers.push(format!("{:?}", w.send_code(&id).map(|_| ())));
            for _ in 0..4 {
                answers.push(format!("{:?}", w.verify(&id, "000000").map(|_| ())));
            }
            w.clock.advance(if round % 2 == 0 { 900 } else { 1800 });
        }
        answers
    };
    let employee = play("mobile.test@example.com");
    assert_eq!(play("nobody@example.com"), employee);
    assert_eq!(play("outsider@example.com"), employee);
    assert_eq!(play("former@example.com"), employee);
    assert!(employee.iter().any(|a| a.contains("Locked")), "{employee:?}");
}

#[test]
fn every_refusal_leaves_an_audit_row() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    w.send_code(&id).unwrap_err();
    for _ in 0..3 {
        w.verify(&id, &wrong(&code)).unwrap_err();
    }
    w.verify(&id, &code).unwrap_err();
    let refused: Vec<String> = w
        .events
        .seen
        .borrow()
        .iter()
        .filter(|e| e.kind == EventKind::Refused)
        .map(|e| e.detail.clone().unwrap_or_default())
        .collect();
    assert_eq!(refused, ["code request refused: resend cooldown", "guess refused: locked for 900 s"]);
    assert!(w.events.kinds().contains(&EventKind::LockedOut));
}

#[test]
fn refreshing_is_limited_per_client_network() {
    let mut w = world();
    w.login.policy.ip_refresh_limit = 3;
    let mut grant = w.log_in();
    let from = |host: u32| ClientIp(format!("2001:db8:5:6::{host:x}"));
    for host in 1..=3 {
        grant = run(w.login.refresh(&grant.tokens.refresh, &from(host), &device())).unwrap();
    }
    let refused = run(w.login.refresh(&grant.tokens.refresh, &from(4), &device())).unwrap_err();
    assert_eq!(refused, AuthError::Refused(Refusal::TooManyRequests { retry_after: Seconds::new(900) }));
    assert!(run(w.login.refresh(&grant.tokens.refresh, &ClientIp("2001:db8:5:7::1".into()), &device())).is_ok());
}

// ---- Sessions on real networks: retries, lost answers, half-done work, evolving values ---------------------------

#[test]
fn a_refresh_retried_within_the_grace_period_works_and_so_do_both_pairs() {
    let w = world();
    let grant = w.log_in();
    let first = w.refresh(&grant).unwrap(); // its answer is lost on the way to the app
    w.clock.advance(29);
    let retried = w.refresh(&grant).unwrap();
    assert_eq!(retried.tokens.session_id, grant.tokens.session_id, "the same session");
    assert_ne!(retried.tokens.refresh, first.tokens.refresh);
    assert!(w.auth(&first).is_ok() && w.auth(&retried).is_ok());
    w.clock.advance(600);
    let later = w.refresh(&retried).expect("the retried pair's refresh token works");
    assert!(w.refresh(&first).is_ok(), "so does the lost one, if it ever arrives");
    assert_eq!(w.live_session_count(), 1);
    assert!(w.auth(&later).is_ok());
    assert!(!w.events.kinds().contains(&EventKind::RefreshReused));
}

#[test]
fn two_parallel_refreshes_of_one_token_both_get_a_working_pair() {
    let w = world();
    let grant = w.log_in();
    let (a, b) = run(futures_util::future::join(
        w.login.refresh(&grant.tokens.refresh, &client(), &device()),
        w.login.refresh(&grant.tokens.refresh, &client(), &device()),
    ));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.tokens.session_id, b.tokens.session_id);
    for pair in [&a, &b] {
        assert!(w.auth(pair).is_ok());
    }
    w.clock.advance(3600);
    assert!(w.refresh(&a).is_ok() && w.refresh(&b).is_ok());
}

#[test]
fn a_rotated_token_presented_after_the_grace_period_revokes_every_token_of_the_session() {
    let w = world();
    let grant = w.log_in();
    let first = w.refresh(&grant).unwrap();
    let second = w.refresh(&grant).unwrap(); // within the grace period: a second pair
    w.clock.advance(31);
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid);
    assert_eq!(w.events.kinds().last(), Some(&EventKind::RefreshReused));
    for pair in [&first, &second] {
        assert_eq!(w.auth(pair).unwrap_err(), AuthError::Invalid, "every access token of the session is deleted");
        assert_eq!(w.refresh(pair).unwrap_err(), AuthError::Invalid);
    }
    assert_eq!(w.kv.access_token_count(), 0);
}

#[test]
fn a_grace_period_of_zero_turns_the_grace_off() {
    let mut w = world();
    w.login.policy.refresh_reuse_grace = Seconds::ZERO;
    let grant = w.log_in();
    let next = w.refresh(&grant).unwrap();
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid);
    assert_eq!(w.auth(&next).unwrap_err(), AuthError::Invalid);
    assert_eq!(w.live_session_count(), 0);
}

#[test]
fn an_app_logs_out_with_its_refresh_token_alone_once_its_access_token_expired() {
    let w = world();
    let grant = w.log_in();
    let other = w.log_in();
    w.clock.advance(901);
    assert_eq!(w.auth(&grant).unwrap_err(), AuthError::Invalid, "the access token has expired");
    run(w.login.logout_by_refresh(&grant.tokens.refresh, &client())).unwrap();
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid, "the refresh token is dead on the server");
    assert_eq!(w.live_session_count(), 1, "only that session ended");
    assert!(w.refresh(&other).is_ok());
    run(w.login.logout_by_refresh(&grant.tokens.refresh, &client())).expect("a retried logout answers the same");
    assert_eq!(w.events.kinds().iter().filter(|k| **k == EventKind::Logout).count(), 1);
    let unknown = Token::parse(&"ab".repeat(32)).unwrap();
    assert_eq!(run(w.login.logout_by_refresh(&unknown, &client())).unwrap_err(), AuthError::Invalid);
}

#[test]
fn logging_out_with_the_refresh_token_kills_the_live_access_tokens_too() {
    let w = world();
    let grant = w.log_in();
    let next = w.refresh(&grant).unwrap();
    run(w.login.logout_by_refresh(&grant.tokens.refresh, &client())).expect("a rotated-out token of the session");
    assert_eq!(w.auth(&next).unwrap_err(), AuthError::Invalid);
    assert_eq!(w.kv.access_token_count(), 0);
}

#[test]
fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let w = world();
    let mut grant = w.log_in();
    let day = 86_400;
    for _ in 0..3 {
        w.clock.advance(29 * day);
        grant = w.refresh(&grant).unwrap();
    }
    // 87 days after the login: the refresh token lives 3 more days, not 30.
    assert_eq!(grant.tokens.refresh_expires_in.as_i64(), 3 * day);
    w.clock.advance(3 * day);
    assert_eq!(w.refresh(&grant).unwrap_err(), AuthError::Invalid);
    let (created, ends) =
        (w.db.number("SELECT created_at FROM sessions"), w.db.number("SELECT expires_at FROM sessions"));
    assert_eq!(ends - created, 90 * day);
}

#[test]
fn a_session_cannot_be_longer_than_its_maximum_even_at_login() {
    let mut w = world();
    w.login.policy.session_max = Seconds::DAY;
    let grant = w.log_in();
    assert_eq!(grant.tokens.refresh_expires_in, Seconds::new(86_400));
}

#[test]
fn a_verify_whose_token_cannot_be_written_starts_no_session_and_spends_no_code() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    w.kv.failing_puts.set(1);
    assert!(matches!(w.verify(&id, &code), Err(LoginError::Internal(_))));
    assert_eq!(w.live_session_count(), 0, "no phantom session");
    assert!(w.verify(&id, &code).is_ok(), "the code was not spent");
}

#[test]
fn a_verify_whose_d1_answer_is_lost_leaves_no_session_listed() {
    let w = world();
    let id = email("mobile.test@example.com");
    let code = w.send_code(&id).unwrap().unwrap();
    // The guess's batch commits and its answer is lost.
    w.seam.lose_answer_of.set(1);
    assert!(matches!(w.verify(&id, &code), Err(LoginError::Internal(_))));
    assert_eq!(w.db.number("SELECT count(*) FROM sessions"), 1, "the redemption did commit");
    assert_eq!(w.live_session_count(), 0, "but the session nobody holds is ended");
    assert_eq!(w.kv.access_token_count(), 0);
    assert!(w.verify(&id, &code).is_ok(), "and the code can be entered again");
}

#[test]
fn a_refresh_whose_d1_answer_is_lost_can_be_retried_even_without_a_grace_period() {
    let mut w = world();
    w.login.policy.refresh_reuse_grace = Seconds::ZERO;
    let grant = w.log_in();
    // The rotation commits and its answer is lost.
    w.seam.lose_answer_of.set(1);
    assert!(matches!(w.refresh(&grant), Err(AuthError::Internal(_))));
    let retried = w.refresh(&grant).expect("the rotation was undone: no reuse");
    assert!(w.auth(&retried).is_ok());
    assert_eq!(w.live_session_count(), 1);
}

#[test]
fn a_refresh_whose_token_cannot_be_written_leaves_the_old_refresh_token_current() {
    let mut w = world();
    w.login.policy.refresh_reuse_grace = Seconds::ZERO;
    let grant = w.log_in();
    w.kv.failing_puts.set(1);
    assert!(matches!(w.refresh(&grant), Err(AuthError::Internal(_))));
    assert!(w.refresh(&grant).is_ok(), "nothing was rotated");
}

#[test]
fn logout_all_attempts_every_deletion_and_a_retry_completes_it() {
    let w = world();
    let grants: Vec<LoginGrant> = (0..4).map(|_| w.log_in()).collect();
    let auth = w.auth(&grants[0]).unwrap();
    // Every first attempt fails, and the first retry too: one token stays, the others are still deleted.
    w.kv.failing_deletes.set(5);
    assert!(matches!(run(w.login.logout_all(&auth)), Err(AuthError::Internal(_))));
    assert_eq!(w.kv.access_token_count(), 1, "every other token was deleted");
    assert_eq!(w.live_session_count(), 0);
    let survivor = grants.iter().find(|g| w.auth(g).is_ok()).unwrap();
    let auth = w.auth(survivor).unwrap();
    assert_eq!(run(w.login.logout_all(&auth)).unwrap(), 0, "nothing left to end...");
    assert_eq!(w.kv.access_token_count(), 0, "...but the deletion completes");
}

#[test]
fn stored_values_carry_a_version_and_decode_tolerantly() {
    let w = world();
    let grant = w.log_in();
    let stored = |w: &World| {
        let auth = w.auth(&grant).unwrap();
        (auth.session.format, auth.session.session_id)
    };
    assert_eq!(stored(&w), (SESSION_FORMAT, grant.tokens.session_id));

    // A newer writer adds fields, at the top and in the user: still a live token.
    w.kv.rewrite_values(|v| {
        v.replacen('{', r#"{"device_class":"phone","#, 1).replace(r#""is_active""#, r#""nickname":"M","is_active""#)
    });
    assert!(w.auth(&grant).is_ok());
    // A value from before versions existed.
    w.kv.rewrite_values(|v| {
        let mut value: serde_json::Value = serde_json::from_str(v).unwrap();
        value.as_object_mut().unwrap().remove("v");
        value.to_string()
    });
    assert_eq!(stored(&w).0, 1);
    // Unusable values are no token: 401, never 500.
    for broken in [r#"{"v":2}"#, "not json", r#"{"v":2,"session_id":"x"}"#] {
        w.kv.rewrite_values(|_| broken.to_owned());
        assert_eq!(w.auth(&grant).unwrap_err(), AuthError::Invalid, "{broken}");
    }
}

#[test]
fn a_snapshot_without_the_employee_flag_may_not_be_used() {
    let w = world();
    let grant = w.log_in();
    w.kv.rewrite_values(|v| v.replace(r#","in_employee_group":true"#, ""));
    assert_eq!(w.auth(&grant).unwrap_err(), AuthError::Invalid);
}

#[test]
fn verify_does_the_same_storage_work_for_an_employee_and_anyone_else() {
    let w = world();
    let mut work = Vec::new();
    for address in ["mobile.test@example.com", "outsider@example.com", "former@example.com", "nobody@example.com"] {
        let id = email(address);
        w.send_code(&id).unwrap();
        let before = w.seam.batches.borrow().len();
        let (puts, kv) = (w.kv.access_token_count(), w.kv.clone());
        let _ = w.verify(&id, "000000");
        let batches: Vec<Vec<String>> = w.seam.batches.borrow()[before..].to_vec();
        assert_eq!(kv.access_token_count(), puts);
        work.push(batches);
    }
    assert_eq!(work[0].len(), 1, "one D1 round trip and no KV read");
    assert!(work.iter().all(|w| *w == work[0]), "the same statements for every identifier");
}
