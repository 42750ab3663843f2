//! For tests: a fresh PostgreSQL database per test, dropped when the test ends.
//!
//! The tests of this crate and of others (the end-to-end tests start servers on a fresh
//! database too) call [`fresh_database`]. It connects to the server named by the environment
//! variable [`TEST_POSTGRES_VAR`] (by default [`DEFAULT_TEST_POSTGRES`]: the local server with
//! trust authentication), creates a database `confide_test_<random hex>` there and returns its
//! URL with a guard that drops it (`DROP DATABASE … WITH (FORCE)`, which ends the connections
//! still open to it). A test never skips: without a reachable server it fails, naming the
//! variable.
//!
//! Plain code rather than test-only code, so that other crates' tests can use it; nothing in
//! the server calls it.

use super::StorageError;
use super::postgres::{CONNECT_TIMEOUT, parse_url, redacted_url};

/// The environment variable naming a PostgreSQL server the tests may create databases on: the
/// URL of a database they can connect to as a user allowed to `CREATE DATABASE`.
pub const TEST_POSTGRES_VAR: &str = "CONFIDE_TEST_POSTGRES";

/// What the tests use when [`TEST_POSTGRES_VAR`] is unset: the local server's `postgres`
/// database as user `postgres` (trust authentication, as on the development machines and in
/// CI).
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The prefix of every test database's name (followed by random hex), so that leftovers of an
/// interrupted run are easy to find and drop.
pub const TEST_DATABASE_PREFIX: &str = "confide_test_";

/// A test database; dropped (with every connection still open to it) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to connect to it.
    url: String,
    /// Its name.
    name: String,
    /// The URL of the server's database it was created from.
    admin: String,
}

impl TestDatabase {
    /// The URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` (one or more statements) as the admin user on the server's admin database:
    /// for tests that act on the server, such as ending the connections of a database
    /// (`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '…'`).
    pub fn admin(&self, sql: &str) -> Result<(), StorageError> {
        admin(&self.admin, sql.to_string())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let drop_it = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = admin(&self.admin, drop_it) {
            // Nothing else to do from a destructor; the name's prefix finds it later.
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The URL of the PostgreSQL server the tests use ([`TEST_POSTGRES_VAR`], or
/// [`DEFAULT_TEST_POSTGRES`]).
pub fn test_postgres_url() -> String {
    std::env::var(TEST_POSTGRES_VAR).unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_string())
}

/// Creates a fresh database on the tests' PostgreSQL server; its URL, and the guard that drops
/// it.
///
/// # Panics
/// If the server cannot be reached or refuses to create the database: the message names
/// [`TEST_POSTGRES_VAR`]. For tests, where a panic is the test failing.
#[allow(clippy::panic)]
pub fn fresh_database() -> (String, TestDatabase) {
    match try_fresh_database() {
        Ok(db) => (db.url().to_string(), db),
        Err(e) => panic!(
            "cannot create a test database on PostgreSQL at {} ({e}). The tests need a \
             PostgreSQL server: start one, or set {TEST_POSTGRES_VAR} to the URL of a database \
             on one, as a user that may create databases (default: {DEFAULT_TEST_POSTGRES})",
            redacted_url(&test_postgres_url())
        ),
    }
}

/// Like [`fresh_database`], with an error instead of a panic.
pub fn try_fresh_database() -> Result<TestDatabase, StorageError> {
    let admin_url = test_postgres_url();
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|e| StorageError::Backend(format!("no randomness for a name: {e}")))?;
    let name = format!("{TEST_DATABASE_PREFIX}{}", hex::encode(random));
    admin(&admin_url, format!("CREATE DATABASE \"{name}\""))?;
    Ok(TestDatabase {
        url: with_database(&admin_url, &name)?,
        name,
        admin: admin_url,
    })
}

/// `url` naming database `name` instead of its own (its query parameters kept).
fn with_database(url: &str, name: &str) -> Result<String, StorageError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(StorageError::Backend(format!(
            "{TEST_POSTGRES_VAR} is not a postgres:// URL"
        )));
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// Runs `sql` on the database at `url`, on a thread of its own (with a runtime of its own), so
/// that it works from any thread: a test's, or an async runtime's worker.
fn admin(url: &str, sql: String) -> Result<(), StorageError> {
    let mut config = parse_url(url)?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let work = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        runtime.block_on(async move {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| StorageError::Backend(e.to_string()))?;
            let connection = tokio::spawn(connection);
            let result = client
                .batch_execute(&sql)
                .await
                .map_err(|e| StorageError::Backend(describe(&e)));
            drop(client);
            let _ = connection.await;
            result
        })
    });
    work.join()
        .unwrap_or_else(|_| Err(StorageError::Backend("the admin thread panicked".into())))
}

/// A PostgreSQL error with the server's message.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr as _;

    #[test]
    fn a_test_database_url_keeps_the_server_and_its_parameters() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
        assert!(
            tokio_postgres::Config::from_str(&with_database("postgres://h", "x").unwrap()).is_ok()
        );
    }
}
