//! A throwaway PostgreSQL database per benchmark run (issue 19), and the CPU its server
//! processes spend.
//!
//! Every PostgreSQL run of the harness starts on an empty database of its own, created on the
//! server named by [`POSTGRES_ENV`] and dropped when the run ends (also when it fails: the
//! guard drops it), so that no run measures another's tables, indexes or cache. The names start
//! with [`DATABASE_PREFIX`], so that leftovers of an interrupted run are easy to find.
//!
//! The tests' `confide_server::storage::test_database` does the same for the test suites from
//! `CONFIDE_TEST_POSTGRES`; the harness has a variable of its own so that benchmarks can be
//! pointed at another server than the tests.
//!
//! PostgreSQL does a server's storage work in processes of its own (one backend per pooled
//! connection), which sled does inside the server's process; [`FreshDatabase::backend_cpu`]
//! reads their CPU time from `/proc`, so that the harness can charge it to the server when the
//! database runs on the same machine.

use anyhow::{Context as _, anyhow, bail};
use std::collections::HashMap;
use std::time::Duration;

/// The environment variable naming the PostgreSQL server benchmarks create databases on: the
/// URL of a database there, as a user allowed to `CREATE DATABASE`.
pub const POSTGRES_ENV: &str = "CONFIDE_BENCH_POSTGRES";
/// What [`POSTGRES_ENV`] defaults to: the local server's `postgres` database as user
/// `postgres` (trust authentication, as on the development machines).
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The environment variable naming the NATS server of the cluster scenario.
pub const NATS_ENV: &str = "CONFIDE_BENCH_NATS";
/// What [`NATS_ENV`] defaults to: the local NATS server.
pub const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";
/// The prefix of every benchmark database's name (followed by random hex).
pub const DATABASE_PREFIX: &str = "confide_bench_";
/// How long creating, dropping or inspecting a database may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL server benchmarks use ([`POSTGRES_ENV`], or [`DEFAULT_POSTGRES`]).
pub fn postgres_url() -> String {
    std::env::var(POSTGRES_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES.to_string())
}

/// The NATS server the cluster scenario uses ([`NATS_ENV`], or [`DEFAULT_NATS`]).
pub fn nats_url() -> String {
    std::env::var(NATS_ENV).unwrap_or_else(|_| DEFAULT_NATS.to_string())
}

/// `len` random bytes as hex, for names no other run uses.
pub fn random_hex(len: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// A database of this run's own; dropped (with every connection still open to it) when this is
/// dropped.
#[derive(Debug)]
pub struct FreshDatabase {
    /// The URL the server under test connects to.
    url: String,
    /// Its name (a [`DATABASE_PREFIX`] and random hex: safe to quote in SQL).
    name: String,
    /// The URL of the database it was created from, where it is dropped from.
    admin: String,
}

impl FreshDatabase {
    /// Creates an empty database on [`postgres_url`]'s server.
    pub async fn create() -> anyhow::Result<FreshDatabase> {
        let admin = postgres_url();
        let name = format!("{DATABASE_PREFIX}{}", random_hex(8)?);
        let url = with_database(&admin, &name)?;
        admin_execute(&admin, &format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| {
                format!(
                    "cannot create a benchmark database on PostgreSQL ({}); start PostgreSQL or \
                     set {POSTGRES_ENV} to the URL of a database there, as a user that may \
                     create databases (default {DEFAULT_POSTGRES})",
                    redacted(&admin)
                )
            })?;
        Ok(FreshDatabase { url, name, admin })
    }

    /// The URL to connect to it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// CPU seconds (user + system) each backend process serving this database has used so far,
    /// by process id. Needs the database on this machine (its processes in `/proc`); a backend
    /// that ends before it is read is left out.
    pub async fn backend_cpu(&self) -> anyhow::Result<HashMap<u32, f64>> {
        let (client, connection) = connect(&self.admin).await?;
        let connection = tokio::spawn(connection);
        let rows = tokio::time::timeout(
            ADMIN_TIMEOUT,
            client.query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1",
                &[&self.name],
            ),
        )
        .await
        .context("PostgreSQL did not list its backends in time")??;
        drop(client);
        let _ = connection.await;
        let mut out = HashMap::new();
        for row in rows {
            let pid: i32 = row.try_get(0)?;
            let pid = u32::try_from(pid)?;
            if let Ok(cpu) = crate::proc::cpu_seconds(Some(pid)) {
                out.insert(pid, cpu);
            }
        }
        Ok(out)
    }
}

/// CPU seconds the backends in `after` used since `before` (a backend started in between counts
/// from zero).
pub fn cpu_between(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, cpu)| (cpu - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // A destructor may run on a runtime's worker, which must not block on another runtime:
        // the drop gets a thread and a runtime of its own.
        let work = std::thread::spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(admin_execute(&admin, &sql))
        });
        match work.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop benchmark database {}: {e:#}", self.name),
            Err(_) => eprintln!("could not drop benchmark database {}", self.name),
        }
    }
}

async fn connect(
    url: &str,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
)> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("{} is not a PostgreSQL URL", redacted(url)))?;
    let connected = tokio::time::timeout(ADMIN_TIMEOUT, config.connect(tokio_postgres::NoTls))
        .await
        .context("PostgreSQL did not answer in time")??;
    Ok(connected)
}

/// Runs `sql` on the database at `url`.
async fn admin_execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, connection) = connect(url).await?;
    let connection = tokio::spawn(connection);
    let result = tokio::time::timeout(ADMIN_TIMEOUT, client.batch_execute(sql))
        .await
        .context("PostgreSQL did not answer in time");
    drop(client);
    let _ = connection.await;
    result??;
    Ok(())
}

/// `url` naming database `name` instead of its own (its query parameters kept).
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("{POSTGRES_ENV} is not a postgres:// URL");
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

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    confide_server::storage::postgres::redacted_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_benchmark_database_url_keeps_the_server_and_its_parameters() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert!(with_database("h/db", "x").is_err());
    }

    #[test]
    fn backends_started_mid_run_count_from_zero() {
        let before = HashMap::from([(1, 2.0), (2, 5.0)]);
        let after = HashMap::from([(1, 3.5), (3, 0.25)]);
        assert_eq!(cpu_between(&before, &after), 1.75);
    }
}
