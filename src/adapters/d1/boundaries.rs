//! The deciding statements at each boundary second, on a real SQLite with the clock bound as a parameter: the
//! per-client window, the hourly send window, the SMS day, the end of each lockout and the escalation step.

use crate::test_support::run;

use super::D1;
use crate::adapters::sqlite::Sqlite;
use crate::domain::{ChallengeId, Email, Identifier, UnixTime};
use crate::login::{Challenges, ClientIp, Opening, Policy, Refusal, Reservation};

/// Midnight UTC, so that day boundaries are easy to name.
const T0: i64 = 1_800_835_200;

fn store() -> D1<Sqlite> {
    D1::new(Sqlite::migrated())
}

fn email(n: u32) -> Identifier {
    Identifier::Email(Email::parse(&format!("person{n}@example.com")).unwrap())
}

fn open(db: &D1<Sqlite>, who: &Identifier, client: &str, at: i64, policy: &Policy) -> Opening {
    let challenge = ChallengeId(format!("c{at}{client}{}", who.value()));
    run(db.open(who, &challenge, &ClientIp(client.into()), UnixTime(at), policy)).unwrap()
}

fn guess(db: &D1<Sqlite>, who: &Identifier, at: i64, policy: &Policy) -> Reservation {
    let nonce = ChallengeId(format!("n{at}"));
    run(db.reserve_attempt(who, &nonce, &ClientIp("192.0.2.1".into()), UnixTime(at), policy)).unwrap()
}

#[test]
fn the_per_client_window_refuses_until_its_last_second_and_admits_at_its_end() {
    let (db, policy) = (store(), Policy { ip_send_limit: 2, ..Policy::default() });
    for n in 0..2 {
        assert!(matches!(open(&db, &email(n), "2001:db8::1", T0, &policy), Opening::Issued { .. }));
    }
    let refused = open(&db, &email(9), "2001:db8::2", T0 + 899, &policy);
    assert_eq!(refused, Opening::Refused(Refusal::TooManyRequests { retry_after: 1 }), "same /64, last second");
    assert!(matches!(open(&db, &email(9), "2001:db8::3", T0 + 900, &policy), Opening::Issued { .. }));
}

#[test]
fn the_hourly_send_window_ends_exactly_an_hour_after_it_began() {
    let (db, policy) = (store(), Policy { max_sends_per_hour: 2, resend_cooldown_seconds: 60, ..Policy::default() });
    let who = email(1);
    assert!(matches!(open(&db, &who, "192.0.2.1", T0, &policy), Opening::Issued { .. }));
    assert!(matches!(open(&db, &who, "192.0.2.1", T0 + 60, &policy), Opening::Issued { .. }));
    let refused = open(&db, &who, "192.0.2.1", T0 + 3599, &policy);
    assert_eq!(refused, Opening::Refused(Refusal::HourlyCap { retry_after: 1 }));
    assert!(matches!(open(&db, &who, "192.0.2.1", T0 + 3600, &policy), Opening::Issued { .. }));
}

#[test]
fn the_sms_cap_rolls_over_at_midnight_utc() {
    let db = store();
    assert!(run(db.claim_sms_slot(UnixTime(T0 - 2), 1)).unwrap());
    assert!(!run(db.claim_sms_slot(UnixTime(T0 - 1), 1)).unwrap(), "the last second of the day is still that day");
    assert!(run(db.claim_sms_slot(UnixTime(T0), 1)).unwrap(), "midnight starts a new day");
    assert!(!run(db.claim_sms_slot(UnixTime(T0 + 86_399), 1)).unwrap());
}

#[test]
fn each_lockout_ends_at_its_last_second_and_the_next_one_is_twice_as_long() {
    let (db, policy) = (store(), Policy { lockout_seconds: 900, ..Policy::default() });
    let who = email(1);
    let mut now = T0;
    for (k, length) in [(1, 900), (2, 1800), (3, 3600)] {
        assert!(matches!(open(&db, &who, "192.0.2.1", now, &policy), Opening::Issued { .. }), "lockout {k}");
        for _ in 0..2 {
            assert!(matches!(guess(&db, &who, now, &policy), Reservation::Reserved { .. }));
        }
        let Reservation::Reserved { counter, .. } = guess(&db, &who, now, &policy) else { panic!("third guess") };
        assert_eq!(counter.locked_until, UnixTime(now + length), "lockout {k} lasts {length} s");
        assert_eq!(
            open(&db, &who, "192.0.2.1", now + length - 1, &policy),
            Opening::Refused(Refusal::Locked { retry_after: 1 }),
            "lockout {k}, last second"
        );
        now += length;
    }
    assert!(matches!(open(&db, &who, "192.0.2.1", now, &policy), Opening::Issued { .. }));
}

#[test]
fn a_lockout_never_exceeds_a_day() {
    let (db, policy) =
        (store(), Policy { lockout_seconds: 6 * 3600, max_consecutive_failures: 100, ..Policy::default() });
    let who = email(1);
    let mut now = T0;
    let mut lengths = Vec::new();
    for _ in 0..4 {
        assert!(matches!(open(&db, &who, "192.0.2.1", now, &policy), Opening::Issued { .. }));
        let mut last = None;
        for _ in 0..3 {
            if let Reservation::Reserved { counter, .. } = guess(&db, &who, now, &policy) {
                last = Some(counter.locked_until);
            }
        }
        let until = last.unwrap();
        lengths.push(until.0 - now);
        now = until.0;
    }
    assert_eq!(lengths, [6 * 3600, 12 * 3600, 24 * 3600, 24 * 3600]);
}
