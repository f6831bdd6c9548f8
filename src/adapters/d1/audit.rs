//! The audit trail: every login event, written after the answer in one batch per request.

use std::cell::RefCell;
use std::rc::Rc;

use super::D1;
use crate::adapters::sql::{int, opt_int, opt_text, text, Database, Statement};
use crate::domain::Identifier;
use crate::login::{EventKind, EventLog, LoginEvent, StoreError};

/// ?1 time, ?2 event, ?3 user id, ?4 channel, ?5 masked identifier, ?6 ip, ?7 user agent, ?8 detail,
/// ?9 the plain identifier, used only to find the user when the use case did not know it, ?10 country.
const INSERT_EVENT: &str = "\
INSERT INTO login_events (occurred_at, event, user_id, channel, identifier, ip, user_agent, detail, country)
VALUES (?1, ?2, COALESCE(?3, CASE ?4
    WHEN 'email' THEN (SELECT id FROM users WHERE email = ?9)
    WHEN 'sms' THEN (SELECT user_id FROM profiles WHERE phone_number = ?9) END), ?4, ?5, ?6, ?7, ?8, ?10)";

const RECORD_LOGIN: &str = "UPDATE users SET last_login = ?2 WHERE id = ?1";

/// Where a request came from, stamped on each of its audit rows.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// ISO 3166-1 alpha-2 code from Cloudflare's own geolocation (`request.cf.country`); `None` when the runtime
    /// gives none.
    pub country: Option<String>,
}

/// Buffers a request's audit events; [`DeferredEvents::flush`] writes them in one batch after the response.
#[derive(Clone)]
pub struct DeferredEvents<X> {
    db: D1<X>,
    origin: Rc<RequestOrigin>,
    pending: Rc<RefCell<Vec<LoginEvent>>>,
}

impl<X: Database> DeferredEvents<X> {
    pub fn new(db: D1<X>, origin: RequestOrigin) -> DeferredEvents<X> {
        DeferredEvents { db, origin: Rc::new(origin), pending: Rc::default() }
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        let events: Vec<LoginEvent> = self.pending.borrow_mut().drain(..).collect();
        if events.is_empty() {
            return Ok(());
        }
        let mut statements = Vec::with_capacity(events.len() + 1);
        for event in &events {
            let identifier = event.identifier.as_ref();
            statements.push(Statement::new(
                INSERT_EVENT,
                vec![
                    int(event.at.0),
                    text(event.kind.as_str()),
                    opt_int(event.user_id),
                    opt_text(identifier.map(|i| i.channel().as_str())),
                    opt_text(identifier.map(Identifier::masked).as_deref()),
                    opt_text(self.origin.ip.as_deref()),
                    opt_text(self.origin.user_agent.as_deref()),
                    opt_text(event.detail.as_deref()),
                    opt_text(identifier.map(Identifier::value)),
                    opt_text(self.origin.country.as_deref()),
                ],
            ));
            if let (EventKind::Login, Some(user_id)) = (event.kind, event.user_id) {
                statements.push(Statement::new(RECORD_LOGIN, vec![int(user_id), int(event.at.0)]));
            }
        }
        self.db.batch(statements).await.map(drop)
    }
}

impl<X> EventLog for DeferredEvents<X> {
    fn record(&self, event: LoginEvent) {
        self.pending.borrow_mut().push(event);
    }
}
