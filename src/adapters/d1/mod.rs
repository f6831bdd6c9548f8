//! Users, groups, the exact counters, sessions and the audit trail in D1.
//!
//! Every operation that must be exact under concurrency is a single batch: D1 runs a batch as one transaction on
//! its single writer, so a conditional `UPDATE ... RETURNING` inside it decides each race exactly once. The SQL
//! reaches the database only through the [`Database`] seam: [`D1Binding`] in the Worker, an in-process SQLite in
//! the host tests, which therefore run these very statements.
//!
//! One module per concern: [`challenges`] (codes, lockouts, rate windows), [`guesses`] (one batch per guess),
//! [`sessions`] (refresh tokens
//! and revocation), [`audit`] (the login events), [`retention`] (the daily cleanup).

mod audit;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod boundaries;
mod challenges;
mod guesses;
mod retention;
mod rules;
mod sessions;

use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1Result};

pub use audit::{DeferredEvents, RequestOrigin};
pub use retention::Purged;

use super::meter::Meter;
use super::sql::{store_error, text, BatchResults, Database, Param, Statement};
use crate::domain::{Identifier, Profile, User};
use crate::login::StoreError;

/// The service's SQL over a database: the adapter behind the `Challenges` and `Sessions` ports.
#[derive(Clone)]
pub struct D1<X> {
    db: X,
}

impl<X: Database> D1<X> {
    pub fn new(db: X) -> D1<X> {
        D1 { db }
    }

    async fn batch(&self, statements: Vec<Statement>) -> Result<X::Results, StoreError> {
        self.db.batch(statements).await
    }

    /// Runs one statement in its own round trip and returns all its rows.
    async fn query_all<T: DeserializeOwned>(&self, statement: Statement) -> Result<Vec<T>, StoreError> {
        self.batch(vec![statement]).await?.rows::<T>(0)
    }
}

// ---- The Worker's database --------------------------------------------------------------------------------------

/// The D1 binding. It is private to this handle: every round trip goes through [`Database::batch`], which reports
/// it to the request's [`Meter`].
#[derive(Clone)]
pub struct D1Binding {
    db: Rc<D1Database>,
    meter: Meter,
}

impl D1Binding {
    pub fn new(db: D1Database, meter: Meter) -> D1Binding {
        D1Binding { db: Rc::new(db), meter }
    }
}

fn js(param: &Param) -> JsValue {
    match param {
        Param::Null => JsValue::NULL,
        // D1 binds JS numbers; every integer here (Unix seconds, counters, ids) is far below 2^53.
        Param::Int(v) => JsValue::from_f64(*v as f64),
        Param::Text(v) => JsValue::from_str(v),
    }
}

impl Database for D1Binding {
    type Results = Vec<D1Result>;

    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<D1Result>, StoreError> {
        let count = statements.len();
        let mut prepared = Vec::with_capacity(count);
        for statement in statements {
            let params: Vec<JsValue> = statement.params.iter().map(js).collect();
            prepared.push(self.db.prepare(statement.sql).bind(&params).map_err(store_error)?);
        }
        let results = self.db.batch(prepared).await.map_err(store_error)?;
        let (mut read, mut written) = (0, 0);
        if self.meter.counts_rows() {
            for meta in results.iter().filter_map(|r| r.meta().ok().flatten()) {
                read += meta.rows_read.unwrap_or(0);
                written += meta.rows_written.unwrap_or(0);
            }
        }
        self.meter.d1_round_trip(count, read, written);
        Ok(results)
    }
}

impl BatchResults for Vec<D1Result> {
    fn rows<T: DeserializeOwned>(&self, index: usize) -> Result<Vec<T>, StoreError> {
        let result = self.get(index).ok_or_else(|| store_error("batch returned too few results"))?;
        result.results::<T>().map_err(store_error)
    }

    fn changes(&self, index: usize) -> Result<usize, StoreError> {
        let result = self.get(index).ok_or_else(|| store_error("batch returned too few results"))?;
        Ok(result.meta().map_err(store_error)?.and_then(|m| m.changes).unwrap_or(0))
    }
}

// ---- Users ----------------------------------------------------------------------------------------------------

/// One row per user with profile, sorted group names (as a JSON array) and the employee flag: one round trip.
macro_rules! user_query {
    ($filter:literal) => {
        concat!(
            "SELECT u.id, u.email, u.first_name, u.last_name, u.is_active, ",
            "p.phone_number, p.branch, p.designation, p.locale, ",
            "(SELECT json_group_array(name) FROM (SELECT g.name FROM user_groups ug JOIN groups g ",
            "ON g.id = ug.group_id WHERE ug.user_id = u.id ORDER BY g.name)) AS groups, ",
            "EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id ",
            "WHERE ug.user_id = u.id AND g.is_employee_group = 1) AS is_employee ",
            "FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE ",
            $filter
        )
    };
}
pub(crate) use user_query;

const USER_BY_EMAIL: &str = user_query!("u.email = ?1");
const USER_BY_PHONE: &str = user_query!("p.phone_number = ?1");

#[derive(Deserialize)]
struct UserRow {
    id: i64,
    email: Option<String>,
    first_name: String,
    last_name: String,
    is_active: i64,
    phone_number: Option<String>,
    branch: Option<String>,
    designation: Option<String>,
    locale: Option<String>,
    groups: String,
    is_employee: i64,
}

impl UserRow {
    fn into_user(self) -> Result<User, StoreError> {
        let groups: Vec<String> = serde_json::from_str(&self.groups).map_err(store_error)?;
        Ok(User {
            id: self.id,
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            is_active: self.is_active != 0,
            profile: Profile {
                phone_number: self.phone_number,
                branch: self.branch.unwrap_or_default(),
                designation: self.designation.unwrap_or_default(),
                locale: self.locale,
            },
            groups,
            in_employee_group: self.is_employee != 0,
        })
    }
}

fn user_by_identifier(identifier: &Identifier) -> Statement {
    let sql = match identifier {
        Identifier::Email(_) => USER_BY_EMAIL,
        Identifier::Phone(_) => USER_BY_PHONE,
    };
    Statement::new(sql, vec![text(identifier.value())])
}

fn user_from(row: Option<UserRow>) -> Result<Option<User>, StoreError> {
    row.map(UserRow::into_user).transpose()
}
