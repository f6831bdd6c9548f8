//! The audit trail: every login event, written after the answer in one batch per request, with the check of the
//! access tokens the request issued.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;

use super::D1;
use crate::adapters::sql::{int, opt_int, opt_text, stored_digest, text, BatchResults, Database, Statement};
use crate::domain::{Identifier, TokenDigest};
use crate::login::{EventKind, EventLog, LoginEvent, StoreError};

/// ?1 time, ?2 event, ?3 user id, ?4 channel, ?5 masked identifier, ?6 ip, ?7 user agent, ?8 detail,
/// ?9 the plain identifier, used only to find the user when the use case did not know it, ?10 country.
const INSERT_EVENT: &str = "\
INSERT INTO login_events (occurred_at, event, user_id, channel, identifier, ip, user_agent, detail, country)
VALUES (?1, ?2, COALESCE(?3, CASE ?4
    WHEN 'email' THEN (SELECT id FROM users WHERE email = ?9)
    WHEN 'sms' THEN (SELECT user_id FROM profiles WHERE phone_number = ?9) END), ?4, ?5, ?6, ?7, ?8, ?10)";

const RECORD_LOGIN: &str = "UPDATE users SET last_login = ?2 WHERE id = ?1";

/// The access token ?1, if its session has ended: it was written to KV after the step that made it live, so a
/// revocation that committed in between may have deleted it from KV before it was there.
const ENDED_ACCESS: &str = "\
SELECT a.digest FROM access_tokens a JOIN sessions s ON s.id = a.session_id WHERE a.digest = ?1 AND s.revoked_at IS NOT NULL";

#[derive(Deserialize)]
struct DigestRow {
    digest: String,
}

/// Where a request came from, stamped on each of its audit rows.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// ISO 3166-1 alpha-2 code from Cloudflare's own geolocation (`request.cf.country`); `None` when the runtime
    /// gives none.
    pub country: Option<String>,
}

/// Buffers a request's audit events and issued tokens; [`EventLog::flush`] writes and checks them in one batch
/// after the response.
#[derive(Clone)]
pub struct DeferredEvents<X> {
    db: D1<X>,
    origin: Rc<RequestOrigin>,
    pending: Rc<RefCell<Vec<LoginEvent>>>,
    issued: Rc<RefCell<Vec<TokenDigest>>>,
}

impl<X: Database> DeferredEvents<X> {
    pub fn new(db: D1<X>, origin: RequestOrigin) -> DeferredEvents<X> {
        DeferredEvents { db, origin: Rc::new(origin), pending: Rc::default(), issued: Rc::default() }
    }
}

impl<X: Database> EventLog for DeferredEvents<X> {
    fn record(&self, event: LoginEvent) {
        self.pending.borrow_mut().push(event);
    }

    fn issued(&self, token: &TokenDigest) {
        self.issued.borrow_mut().push(token.clone());
    }

    async fn flush(&self) -> Result<Vec<TokenDigest>, StoreError> {
        // Events are taken once: a batch whose answer is lost may have written them. Issued tokens stay until
        // a check answers.
        let events: Vec<LoginEvent> = self.pending.borrow_mut().drain(..).collect();
        let issued: Vec<TokenDigest> = self.issued.borrow().clone();
        if events.is_empty() && issued.is_empty() {
            return Ok(Vec::new());
        }
        let mut statements = Vec::with_capacity(issued.len() + events.len() + 1);
        for token in &issued {
            statements.push(Statement::new(ENDED_ACCESS, vec![text(token.as_str())]));
        }
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
        let results = self.db.batch(statements).await?;
        self.issued.borrow_mut().clear();
        let mut ended = Vec::new();
        for index in 0..issued.len() {
            for row in results.rows::<DigestRow>(index)? {
                ended.push(stored_digest(&row.digest)?);
            }
        }
        Ok(ended)
    }
}
