//! The in-process SQLite behind the SQL seam in host tests: a fresh database with every migration of `migrations/`
//! applied, as `wrangler d1 migrations apply` does, running each batch as one transaction as D1 does.

use std::cell::RefCell;
use std::rc::Rc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::sql::{store_error, BatchResults, Database, Param, Statement};
use crate::login::StoreError;

/// A shared connection to one in-memory database; clones are handles to the same database.
#[derive(Clone)]
pub struct Sqlite(Rc<RefCell<Connection>>);

/// Each statement's rows (by column name) and changed-row count.
pub struct SqliteResults(Vec<(Vec<Map<String, Value>>, usize)>);

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Param::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

fn column_value(value: ValueRef<'_>) -> Result<Value, StoreError> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::from(v),
        ValueRef::Real(v) => Value::from(v),
        ValueRef::Text(v) => Value::from(std::str::from_utf8(v).map_err(store_error)?),
        ValueRef::Blob(_) => return Err(store_error("the service never stores blobs")),
    })
}

impl Sqlite {
    /// A new database with the schema of every migration, in file-name order, and D1's foreign-key enforcement.
    /// The migrations run once per thread; each database is a copy of that one.
    pub fn migrated() -> Sqlite {
        thread_local! {
            static TEMPLATE: Connection = Sqlite::migrate();
        }
        let mut conn = Connection::open_in_memory().expect("in-memory SQLite");
        TEMPLATE.with(|template| {
            let backup = rusqlite::backup::Backup::new(template, &mut conn).expect("copy of the migrated schema");
            backup.run_to_completion(1 << 20, std::time::Duration::ZERO, None).expect("copy of the migrated schema");
        });
        conn.execute_batch("PRAGMA foreign_keys = ON;").expect("foreign keys");
        conn.set_prepared_statement_cache_capacity(128);
        Sqlite(Rc::new(RefCell::new(conn)))
    }

    fn migrate() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory SQLite");
        conn.execute_batch("PRAGMA foreign_keys = ON;").expect("foreign keys");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("migrations/")
            .map(|entry| entry.expect("migration entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        for file in files {
            let sql = std::fs::read_to_string(&file).expect("readable migration");
            conn.execute_batch(&sql).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
        conn
    }

    /// Runs setup or inspection SQL outside the service's statements (the tests' D1 console).
    pub fn execute(&self, sql: &str) {
        self.0.borrow().execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The single text a query returns.
    pub fn text(&self, sql: &str) -> String {
        self.0.borrow().query_row(sql, [], |row| row.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of every row a query returns, as text.
    pub fn texts(&self, sql: &str) -> Vec<String> {
        let conn = self.0.borrow();
        let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rows = statement.query_map([], |row| row.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.map(|row| row.unwrap_or_else(|e| panic!("{sql}: {e}"))).collect()
    }

    /// The first two columns of every row a query returns, as integers.
    pub fn pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        let conn = self.0.borrow();
        let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rows =
            statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.map(|row| row.unwrap_or_else(|e| panic!("{sql}: {e}"))).collect()
    }

    /// The single integer a query returns.
    pub fn number(&self, sql: &str) -> i64 {
        self.0.borrow().query_row(sql, [], |row| row.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn run(conn: &Connection, statement: &Statement) -> Result<(Vec<Map<String, Value>>, usize), StoreError> {
        let mut prepared = conn.prepare_cached(&statement.sql).map_err(store_error)?;
        let writes = !prepared.readonly();
        let names: Vec<String> = prepared.column_names().map(str::to_owned).collect();
        let params = rusqlite::params_from_iter(statement.params.iter());
        let mut rows = prepared.query(params).map_err(store_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(store_error)? {
            let mut map = Map::new();
            for (i, name) in names.iter().enumerate() {
                map.insert(name.clone(), column_value(row.get_ref(i).map_err(store_error)?)?);
            }
            out.push(map);
        }
        drop(rows);
        Ok((out, if writes { conn.changes() as usize } else { 0 }))
    }
}

impl Database for Sqlite {
    type Results = SqliteResults;

    async fn batch(&self, statements: Vec<Statement>) -> Result<SqliteResults, StoreError> {
        let mut conn = self.0.borrow_mut();
        let tx = conn.transaction().map_err(store_error)?;
        let mut results = Vec::with_capacity(statements.len());
        for statement in &statements {
            // A failing statement drops `tx` unfinished, which rolls the whole batch back, as D1 does.
            results.push(Self::run(&tx, statement)?);
        }
        tx.commit().map_err(store_error)?;
        Ok(SqliteResults(results))
    }
}

impl BatchResults for SqliteResults {
    fn rows<T: DeserializeOwned>(&self, index: usize) -> Result<Vec<T>, StoreError> {
        let (rows, _) = self.0.get(index).ok_or_else(|| store_error("batch returned too few results"))?;
        rows.iter().map(|row| serde_json::from_value(Value::Object(row.clone())).map_err(store_error)).collect()
    }

    fn changes(&self, index: usize) -> Result<usize, StoreError> {
        self.0.get(index).map(|(_, changes)| *changes).ok_or_else(|| store_error("batch returned too few results"))
    }
}
