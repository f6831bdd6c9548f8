//! The one seam between the service's SQL and the database that runs it.
//!
//! Every statement the adapters send is a [`Statement`] (text and bound parameters) and every round trip is one
//! [`Database::batch`], run as one transaction. In the Worker the database is D1 ([`super::d1::D1Binding`]); in the
//! host tests it is an in-process SQLite with the same migrations applied ([`super::sqlite::Sqlite`]), so the
//! statements that decide every limit are tested as they run in production, not through a copy of the rules.

use std::borrow::Cow;

use serde::de::DeserializeOwned;

use crate::login::StoreError;

/// A bound parameter. Every value the service binds is an integer (Unix seconds, counters, ids), a text or NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Null,
    Int(i64),
    Text(String),
}

/// One SQL statement with its parameters, numbered `?1`, `?2`, ... in the order given.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: Cow<'static, str>,
    pub params: Vec<Param>,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>, params: Vec<Param>) -> Statement {
        Statement { sql: sql.into(), params }
    }
}

/// A duration, bound as its whole seconds.
pub fn secs(value: crate::domain::Seconds) -> Param {
    Param::Int(value.as_i64())
}

pub fn int(value: i64) -> Param {
    Param::Int(value)
}

pub fn text(value: &str) -> Param {
    Param::Text(value.to_owned())
}

pub fn opt_text(value: Option<&str>) -> Param {
    value.map_or(Param::Null, text)
}

pub fn opt_int(value: Option<i64>) -> Param {
    value.map_or(Param::Null, Param::Int)
}

/// The results of one batch, one entry per statement, in order.
pub trait BatchResults {
    /// The rows statement `index` returned, each deserialized by column name.
    fn rows<T: DeserializeOwned>(&self, index: usize) -> Result<Vec<T>, StoreError>;

    /// How many rows statement `index` inserted, updated or deleted.
    fn changes(&self, index: usize) -> Result<usize, StoreError>;

    /// The first row statement `index` returned, if any.
    fn first<T: DeserializeOwned>(&self, index: usize) -> Result<Option<T>, StoreError> {
        Ok(self.rows::<T>(index)?.into_iter().next())
    }
}

/// A database that runs a batch of statements in one round trip, as one transaction: either every statement's
/// effect is kept or none is.
#[allow(async_fn_in_trait)]
pub trait Database {
    type Results: BatchResults;

    async fn batch(&self, statements: Vec<Statement>) -> Result<Self::Results, StoreError>;
}

pub fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("D1: {e}"))
}

/// A token digest as a row holds it; anything else is a storage fault, not a token.
pub fn stored_digest(text: &str) -> Result<crate::domain::TokenDigest, StoreError> {
    crate::domain::TokenDigest::parse(text).ok_or_else(|| store_error("a stored token digest is malformed"))
}
