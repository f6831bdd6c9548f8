//! The deciding statements at each boundary second, on a real SQLite with the clock bound as a parameter: the
//! per-client window, the hourly send window, the SMS day, the end of each lockout and the escalation step.

use crate::test_support::run;

use super::D1;
use crate::adapters::sqlite::Sqlite;
use crate::domain::{ChallengeId, Email, Identifier, PhoneNumber, Seconds, TokenDigest, UnixTime};
use crate::login::{Attempt, Challenges, ClientIp, Guess, Guesses, NewCode, NewSession, Opening, Policy, Refusal};

/// Midnight UTC, so that day boundaries are easy to name.
const T0: i64 = 1_800_835_200;

fn store() -> D1<Sqlite> {
    D1::new(Sqlite::migrated())
}

fn email(n: u32) -> Identifier {
    Identifier::Email(Email::parse(&format!("person{n}@example.com")).unwrap())
}

/// A well-formed hex value of `len` characters, distinct for each `seed`.
fn hex_of(seed: &str, len: usize) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(seed.as_bytes()))[..len].to_owned()
}

fn open_code(db: &D1<Sqlite>, who: &Identifier, client: &str, at: i64, policy: &Policy, sms: bool) -> Opening {
    let challenge = ChallengeId::parse(&hex_of(&format!("c{at}{client}{}", who.value()), 32)).unwrap();
    let code = NewCode { challenge: &challenge, digest: "code-digest", claim_sms_slot: sms };
    run(db.open(who, &code, &ClientIp(client.into()), UnixTime(at), policy)).unwrap()
}

fn open(db: &D1<Sqlite>, who: &Identifier, client: &str, at: i64, policy: &Policy) -> Opening {
    open_code(db, who, client, at, policy, false)
}

/// A wrong guess.
fn guess(db: &D1<Sqlite>, who: &Identifier, at: i64, policy: &Policy) -> Attempt {
    let nonce = ChallengeId::parse(&hex_of(&format!("n{at}"), 32)).unwrap();
    let digest = |s: &str| TokenDigest::parse(&hex_of(&format!("{s}{at}"), 64)).unwrap();
    let start = NewSession {
        access: digest("a"),
        access_expires_at: UnixTime(at + 900),
        refresh: digest("r"),
        refresh_expires_at: UnixTime(at + 86_400),
        device: Default::default(),
    };
    let guess = Guess { nonce: &nonce, digest: "wrong-digest", session_id: at, start: &start };
    run(db.attempt(who, &guess, &ClientIp("192.0.2.1".into()), UnixTime(at), policy)).unwrap()
}

#[test]
fn the_per_client_window_refuses_until_its_last_second_and_admits_at_its_end() {
    let (db, policy) = (store(), Policy { ip_send_limit: 2, ..Policy::default() });
    for n in 0..2 {
        assert!(matches!(open(&db, &email(n), "2001:db8::1", T0, &policy), Opening::Issued { .. }));
    }
    let refused = open(&db, &email(9), "2001:db8::2", T0 + 899, &policy);
    assert_eq!(
        refused,
        Opening::Refused(Refusal::TooManyRequests { retry_after: Seconds::new(1) }),
        "same /64, last second"
    );
    assert!(matches!(open(&db, &email(9), "2001:db8::3", T0 + 900, &policy), Opening::Issued { .. }));
}

#[test]
fn the_hourly_send_window_ends_exactly_an_hour_after_it_began() {
    let (db, policy) =
        (store(), Policy { max_sends_per_hour: 2, resend_cooldown: Seconds::MINUTE, ..Policy::default() });
    let who = email(1);
    assert!(matches!(open(&db, &who, "192.0.2.1", T0, &policy), Opening::Issued { .. }));
    assert!(matches!(open(&db, &who, "192.0.2.1", T0 + 60, &policy), Opening::Issued { .. }));
    let refused = open(&db, &who, "192.0.2.1", T0 + 3599, &policy);
    assert_eq!(refused, Opening::Refused(Refusal::HourlyCap { retry_after: Seconds::new(1) }));
    assert!(matches!(open(&db, &who, "192.0.2.1", T0 + 3600, &policy), Opening::Issued { .. }));
}

#[test]
fn the_sms_cap_rolls_over_at_midnight_utc() {
    let db = Sqlite::migrated();
    db.execute(
        "INSERT INTO groups (id, name, is_employee_group) VALUES (1, 'Employees', 1);
         INSERT INTO users (id, email, first_name, last_name, is_active) VALUES
             (1, 'a@example.com', 'A', 'A', 1), (2, 'b@example.com', 'B', 'B', 1),
             (3, 'c@example.com', 'C', 'C', 1), (4, 'd@example.com', 'D', 'D', 1);
         INSERT INTO profiles (user_id, phone_number, branch, designation) VALUES
             (1, '+1234567801', '', ''), (2, '+1234567802', '', ''), (3, '+1234567803', '', ''),
             (4, '+1234567804', '', '');
         INSERT INTO user_groups (user_id, group_id) VALUES (1, 1), (2, 1), (3, 1), (4, 1);",
    );
    let (db, policy) = (D1::new(db), Policy { sms_daily_cap: 1, ..Policy::default() });
    let slot = |n: u32, at: i64| {
        let who = Identifier::Phone(PhoneNumber::parse(&format!("+12345678{n:02}")).unwrap());
        match open_code(&db, &who, "192.0.2.1", at, &policy, true) {
            Opening::Issued { sms_slot, .. } => sms_slot,
            refused => panic!("{refused:?}"),
        }
    };
    assert!(slot(1, T0 - 2));
    assert!(!slot(2, T0 - 1), "the last second of the day is still that day");
    assert!(slot(3, T0), "midnight starts a new day");
    assert!(!slot(4, T0 + 86_399));
}

#[test]
fn each_lockout_ends_at_its_last_second_and_the_next_one_is_twice_as_long() {
    let (db, policy) = (store(), Policy { lockout: Seconds::new(900), ..Policy::default() });
    let who = email(1);
    let mut now = T0;
    for (k, length) in [(1, 900), (2, 1800), (3, 3600)] {
        assert!(matches!(open(&db, &who, "192.0.2.1", now, &policy), Opening::Issued { .. }), "lockout {k}");
        for _ in 0..2 {
            assert!(matches!(guess(&db, &who, now, &policy), Attempt::Wrong { .. }));
        }
        let Attempt::Wrong { lock, .. } = guess(&db, &who, now, &policy) else { panic!("third guess") };
        assert_eq!(
            lock,
            Some(Refusal::Locked { retry_after: Seconds::new(length as u32) }),
            "lockout {k} lasts {length} s"
        );
        assert_eq!(
            open(&db, &who, "192.0.2.1", now + length - 1, &policy),
            Opening::Refused(Refusal::Locked { retry_after: Seconds::new(1) }),
            "lockout {k}, last second"
        );
        now += length;
    }
    assert!(matches!(open(&db, &who, "192.0.2.1", now, &policy), Opening::Issued { .. }));
}

#[test]
fn a_lockout_never_exceeds_a_day() {
    let (db, policy) =
        (store(), Policy { lockout: Seconds::HOUR.times(6), max_consecutive_failures: 100, ..Policy::default() });
    let who = email(1);
    let mut now = T0;
    let mut lengths = Vec::new();
    for _ in 0..4 {
        assert!(matches!(open(&db, &who, "192.0.2.1", now, &policy), Opening::Issued { .. }));
        let mut last = None;
        for _ in 0..3 {
            if let Attempt::Wrong { lock: Some(Refusal::Locked { retry_after }), .. } = guess(&db, &who, now, &policy) {
                last = Some(retry_after.as_i64());
            }
        }
        let length = last.unwrap();
        lengths.push(length);
        now += length;
    }
    assert_eq!(lengths, [6 * 3600, 12 * 3600, 24 * 3600, 24 * 3600]);
}
