//! The PostgreSQL backend: several server nodes share one database (issue 19).
//!
//! Tables, keys and the conditional appends are in `postgres_schema.sql` (schema version 1),
//! applied by [`PostgresStorage::connect`]. Records are stored as the same JSON bytes the sled
//! backend stores: no second encoding to keep in step with the protocol's types, an operator
//! can read a record with `convert_from(record, 'UTF8')::jsonb`, and a migration from sled
//! copies the stored bytes as they are.
//!
//! # Several nodes, one database
//! Every append is conditional: an op or message is stored only at the next seq of its group
//! (`group_heads`), a genesis op only for a group that does not exist, and a message id only
//! once per group. Two nodes appending at once cannot both win: the second waits for the
//! first's row lock on `group_heads`, sees the new head, and its whole batch is rolled back
//! with [`StorageError::Conflict`]. Inbox ids come from a sequence, a block at a time.
//!
//! # Group commit in one round trip
//! [`Storage::commit`] runs a batch as one transaction: `BEGIN`, one statement per write and
//! `COMMIT` are sent together (pipelined) and answered together. If any statement fails, the
//! transaction is aborted, PostgreSQL turns the `COMMIT` into a rollback, and nothing of the
//! batch is stored. A connection's first use of a statement adds one round trip to prepare it.
//! [`PostgresStorage::round_trips`] counts them.
//!
//! # A synchronous trait on an async client
//! [`Storage`] is synchronous: the relay calls it from tokio worker threads (a connection's
//! task reads a device record in place) and from the writer's own thread. A tokio worker must
//! not call `Runtime::block_on` (it panics), and the server's runtime must not be asked to
//! drive the database's sockets while one of its workers waits for them. So the backend owns a
//! small runtime of its own ([`RUNTIME_THREADS`] threads named `confide-pg`): each call spawns
//! its query there and waits for the answer on a channel, blocking the calling thread as a
//! sled read blocks it on the disk.
//!
//! # A database that is down
//! Calls fail fast with [`StorageError::Backend`] rather than hang: connecting, waiting for a
//! pooled connection and each statement have their own time limits ([`CONNECT_TIMEOUT`],
//! [`POOL_WAIT_TIMEOUT`], [`STATEMENT_TIMEOUT`]), and every call has an overall one. The pool
//! replaces broken connections by itself, so once PostgreSQL is back (a restart, a failover)
//! the next calls succeed; the server answers meanwhile with error code `storage` and clients
//! retry. [`StorageError::NeedsRestart`] is never returned.
//!
//! # Security
//! The connection is not encrypted (`NoTls`): keep the database on a private network or reach
//! it over a unix socket (`postgres://user@%2Frun%2Fpostgresql/confide`). It holds only
//! ciphertext, public keys and metadata, but the metadata (who is in which group, when) is
//! worth protecting. URLs are logged only without their password ([`redacted_url`]).

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use confide_protocol::device_list::{IdentityKey, SignedDeviceList};
use confide_protocol::frames::{InboxItem, StoredMessage};
use confide_protocol::group_log::SignedOp;
use confide_protocol::{DeviceId, GroupId, MessageId, Seq, UserId};
use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::migrate::{Record, RecordCounts};
use super::{DeviceRecord, Storage, StorageError, Write};

/// Connections in the pool, unless [`PostgresOptions::pool_size`] says otherwise: the writer
/// holds one at a time, and reads are short. Several nodes multiply it: keep nodes × pool size
/// under the database's `max_connections` (100 by default).
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How long opening a connection may take before the attempt fails: long enough for a
/// database on another machine of the same network, short enough that a down database is
/// reported at once rather than after the operating system's TCP timeout (minutes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a call waits for a free connection when all are busy, before it fails.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest one statement may run (PostgreSQL's `statement_timeout`, set per connection),
/// including waiting for another node's lock on a group: far above what any of ours needs,
/// and short enough that a stuck database turns into an error the client retries.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a session may sit inside a transaction doing nothing before PostgreSQL ends it
/// (`idle_in_transaction_session_timeout`): a node that vanished mid-transaction must not keep
/// its groups locked. Ours send a whole transaction at once and never idle in one.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15);

/// Added to [`STATEMENT_TIMEOUT`] for the network, to bound one call's work on a connection
/// on this side too: a database that stopped answering altogether (a dead host) never reports
/// its statement timeout. The connection is then discarded, not reused.
pub const NETWORK_MARGIN: Duration = Duration::from_secs(2);

/// How long a connection may leave data unacknowledged before the operating system drops it
/// (`TCP_USER_TIMEOUT`), and how long it may be idle before TCP keepalives probe it: a dead
/// database host is noticed on pooled connections too.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`PostgresStorage::healthy`] waits for `SELECT 1`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// How long applying the schema at [`PostgresStorage::connect`] may take (waiting for another
/// node that is applying it included).
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Threads of the backend's own runtime (see the module documentation). They only drive
/// sockets; two keep one slow answer from delaying the others.
pub const RUNTIME_THREADS: usize = 2;

/// Inbox ids taken from the database's sequence at a time (its `INCREMENT BY`) and handed out
/// from memory: one round trip per this many sealed items, and a restart of a node wastes at
/// most this many ids.
pub const INBOX_ID_BLOCK: u64 = 1024;

/// The schema versions this server knows, in order: (version, SQL). Each is applied once, in
/// a transaction, and recorded in `schema_migrations`.
const SCHEMA: &[(i32, &str)] = &[(1, include_str!("postgres_schema.sql"))];

/// The advisory lock key under which the schema is applied, so that nodes starting together
/// apply it once ("confide" in ASCII).
const SCHEMA_LOCK: i64 = 0x0063_6f6e_6669_6465;

/// The SQLSTATE the schema's functions raise for a conflicting append.
const CONFLICT_STATE: &str = "CF001";

/// Tunables of [`PostgresStorage::connect_with`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections in the pool ([`DEFAULT_POOL_SIZE`]).
    pub pool_size: usize,
    /// See [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`POOL_WAIT_TIMEOUT`].
    pub pool_wait_timeout: Duration,
    /// See [`STATEMENT_TIMEOUT`].
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: CONNECT_TIMEOUT,
            pool_wait_timeout: POOL_WAIT_TIMEOUT,
            statement_timeout: STATEMENT_TIMEOUT,
        }
    }
}

/// [`Storage`] on PostgreSQL; see the module documentation.
pub struct PostgresStorage {
    /// Drives the pool's connections. An `Option` only so that `Drop` can shut it down without
    /// waiting: a runtime dropped the usual way inside another runtime's worker panics.
    runtime: Option<tokio::runtime::Runtime>,
    /// Where calls spawn their queries.
    handle: tokio::runtime::Handle,
    /// The connections; it replaces broken ones by itself.
    pool: Pool,
    /// The counters and the inbox-id blocks, shared with the tasks that prefetch blocks.
    shared: Arc<Shared>,
    /// The longest one call's work on one connection may take (statement timeout plus
    /// [`NETWORK_MARGIN`]).
    work_timeout: Duration,
    /// The longest a call may take in all: waiting for a connection, and two attempts' work (a
    /// read whose connection turned out broken is tried again on another, and such failures
    /// come back at once; this bounds all of it).
    call_timeout: Duration,
    /// The database's URL without its password, for error messages.
    name: Arc<str>,
}

/// What the backend's calls and its background tasks share.
struct Shared {
    /// Network round trips made (see [`PostgresStorage::round_trips`]).
    round_trips: AtomicU64,
    /// The inbox ids to hand out.
    ids: Mutex<IdBlocks>,
    /// Whether a task is fetching the next block of ids already.
    prefetching: AtomicBool,
}

impl Shared {
    /// Counts one round trip.
    fn trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// The id blocks. The lock is never held across an await or a call that can panic, so a
    /// poisoned lock still holds consistent data.
    fn ids(&self) -> std::sync::MutexGuard<'_, IdBlocks> {
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The blocks of inbox ids a node hands out, always in increasing order.
#[derive(Debug, Default)]
struct IdBlocks {
    /// The next id of the current block.
    next: u64,
    /// The end (exclusive) of the current block.
    end: u64,
    /// The next block, fetched before the current one runs out.
    spare: Option<u64>,
    /// Blocks starting below this are dropped: set when a copy moved the sequence past ids
    /// that another database had handed out ([`Import::finish`]).
    floor: u64,
}

impl IdBlocks {
    /// The next id, if a block has one left.
    fn take(&mut self) -> Option<u64> {
        if self.next >= self.end {
            let start = self.spare.take()?;
            self.next = start;
            self.end = start.saturating_add(INBOX_ID_BLOCK);
        }
        let id = self.next;
        self.next += 1;
        Some(id)
    }

    /// Adds the block starting at `start`. A block below the current one (fetched by a
    /// prefetch that lost a race with a refill) is dropped, so that ids only go up; its ids
    /// are simply never used.
    fn add(&mut self, start: u64) {
        if start < self.end || start < self.floor {
            return;
        }
        if self.next >= self.end && self.spare.is_none() {
            self.next = start;
            self.end = start.saturating_add(INBOX_ID_BLOCK);
        } else {
            self.spare = Some(self.spare.map_or(start, |spare| spare.min(start)));
        }
    }

    /// Drops every block below `floor`, now and when it arrives later.
    fn raise_floor(&mut self, floor: u64) {
        *self = IdBlocks {
            floor,
            ..IdBlocks::default()
        };
    }

    /// Whether the next block should be fetched now: half of the current one is used and no
    /// spare is waiting.
    fn running_low(&self) -> bool {
        self.spare.is_none() && self.end.saturating_sub(self.next) <= INBOX_ID_BLOCK / 2
    }
}

/// A statement parameter.
type Param = Box<dyn ToSql + Sync + Send>;

/// One statement of a batch, before it is sent.
struct Planned {
    sql: &'static str,
    params: Vec<Param>,
}

fn bytes(b: &[u8]) -> Param {
    Box::new(b.to_vec())
}

fn int(v: i64) -> Param {
    Box::new(v)
}

/// A u64 as a bigint; none of ours comes near 2^63 (seqs and versions count up by one,
/// inbox ids come from a bigint sequence).
fn bigint(what: &str, v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Backend(format!("{what} {v} is out of range")))
}

/// A stored bigint as a u64.
fn unsigned(tree: &'static str, v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt {
        tree,
        reason: format!("negative number {v}"),
    })
}

/// A read's parameter for "after" or "from" bounds: `None` when the bound is past every value
/// a bigint can hold, so that nothing can match.
fn bound(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

/// A `LIMIT`.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|e| StorageError::Backend(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

/// Column `i` of `row`.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    tree: &'static str,
    row: &'a Row,
    i: usize,
) -> Result<T, StorageError> {
    row.try_get(i).map_err(|e| StorageError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

/// A stored id of `N` bytes.
fn id<const N: usize>(tree: &'static str, bytes: &[u8]) -> Result<[u8; N], StorageError> {
    bytes.try_into().map_err(|_| StorageError::Corrupt {
        tree,
        reason: format!("expected a {N}-byte id, found {} bytes", bytes.len()),
    })
}

/// What a failed statement means for the caller.
fn classify(e: &tokio_postgres::Error) -> StorageError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            if code == CONFLICT_STATE {
                StorageError::Conflict(db.message().to_string())
            } else if code == "23505" {
                // A unique key another node stored first (a seq or message id), should the
                // conditions in the schema's functions ever let one through.
                StorageError::Conflict(format!(
                    "{} ({})",
                    db.message(),
                    db.constraint().unwrap_or("a unique key")
                ))
            } else if code == "40P01" || code == "40001" {
                // Two nodes' batches locked the same groups in opposite orders: one of them is
                // rolled back, and retrying its requests one at a time succeeds.
                StorageError::Conflict(format!("{} (with another server node)", db.message()))
            } else {
                StorageError::Backend(format!(
                    "PostgreSQL: {}: {}",
                    db.code().code(),
                    db.message()
                ))
            }
        }
        None => StorageError::Backend(format!("PostgreSQL: {e}")),
    }
}

// The statements of a commit, one per kind of write.
const SQL_DEVICE: &str = "INSERT INTO devices (device, user_id, record) VALUES ($1, $2, $3) \
     ON CONFLICT (device) DO UPDATE SET user_id = excluded.user_id, record = excluded.record";
const SQL_OP: &str = "SELECT confide_append_op($1, $2, $3)";
const SQL_MESSAGE: &str = "SELECT confide_append_message($1, $2, $3, $4)";
const SQL_DELETE_MESSAGE: &str = "DELETE FROM messages WHERE group_id = $1 AND message_id = $2";
// Both seq and id: the sweep read them together, and if that message has been deleted since
// and its envelope posted again (a new seq), the new copy is not the one past retention.
const SQL_EXPIRE_MESSAGE: &str =
    "DELETE FROM messages WHERE group_id = $1 AND seq = $2 AND message_id = $3";
// Not stored for a device a list dropped, also by an unlink earlier in the same batch. An id
// already stored is refused (a conflict), never overwritten: an id is never used twice.
const SQL_INBOX: &str = "WITH item AS ( \
       INSERT INTO inbox (device, inbox_id, record) \
       SELECT $1::bytea, $2::bigint, $3::bytea \
       WHERE NOT EXISTS (SELECT 1 FROM unlinked WHERE device = $1::bytea) \
       RETURNING device, inbox_id) \
     INSERT INTO inbox_shares (device, share, inbox_id) \
     SELECT item.device, s.share, item.inbox_id FROM item, unnest($4::bytea[]) AS s(share) \
     ON CONFLICT DO NOTHING";
const SQL_ACK: &str = "DELETE FROM inbox WHERE device = $1 AND inbox_id = $2";
const SQL_DEVICE_LIST: &str = "SELECT confide_put_device_list($1, $2, $3, $4)";
const SQL_UNLINK: &str = "WITH mark AS ( \
       INSERT INTO unlinked (device, user_id) VALUES ($1, $2) \
       ON CONFLICT (device) DO UPDATE SET user_id = excluded.user_id), \
     unregister AS (DELETE FROM devices WHERE device = $1) \
     DELETE FROM inbox WHERE device = $1";

// Reads.
const SQL_GET_DEVICE: &str = "SELECT record FROM devices WHERE device = $1";
const SQL_DEVICES_OF_USER: &str = "SELECT record FROM devices WHERE user_id = $1 ORDER BY device";
const SQL_GET_DEVICE_LIST: &str = "SELECT list FROM device_lists WHERE user_id = $1";
const SQL_DEVICE_LIST_CHAIN: &str = "SELECT list FROM device_list_history \
     WHERE user_id = $1 AND version > $2 ORDER BY version LIMIT $3";
const SQL_IDENTITY_USER: &str = "SELECT user_id FROM identities WHERE identity = $1";
const SQL_UNLINKED: &str = "SELECT user_id FROM unlinked WHERE device = $1";
const SQL_MESSAGE_SEQ: &str = "SELECT seq FROM messages WHERE group_id = $1 AND message_id = $2";
const SQL_GROUPS: &str = "SELECT group_id FROM group_heads ORDER BY group_id";
const SQL_OPS: &str = "SELECT op FROM ops WHERE group_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3";
const SQL_MESSAGES: &str =
    "SELECT record FROM messages WHERE group_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const SQL_LAST_SEQ: &str = "SELECT last_msg_seq FROM group_heads WHERE group_id = $1";
const SQL_HEADS: &str =
    "SELECT group_id, last_op_seq, last_msg_seq FROM group_heads WHERE group_id = ANY($1)";
const SQL_ALL_HEADS: &str = "SELECT group_id, last_op_seq, last_msg_seq FROM group_heads";
const SQL_INBOX_PAGE: &str = "SELECT record FROM inbox \
     WHERE device = $1 AND inbox_id > $2 ORDER BY inbox_id LIMIT $3";
const SQL_INBOX_HAS: &str = "SELECT 1 FROM inbox WHERE device = $1 AND inbox_id = $2";
const SQL_INBOX_LEN: &str = "SELECT count(*) FROM inbox WHERE device = $1";
const SQL_INBOX_LEN_FROM: &str =
    "SELECT count(*) FROM inbox_shares WHERE device = $1 AND share = $2";
const SQL_NEXT_ID_BLOCK: &str = "SELECT nextval('inbox_ids')";

/// A `group_heads` row as a [`super::GroupHead`].
fn group_head(row: &Row) -> Result<super::GroupHead, StorageError> {
    let table = "group_heads";
    Ok(super::GroupHead {
        group: GroupId(id(table, column::<&[u8]>(table, row, 0)?)?),
        op_seq: unsigned(table, column::<i64>(table, row, 1)?)?,
        last_seq: Seq(unsigned(table, column::<i64>(table, row, 2)?)?),
    })
}

/// The statements of a batch, in order.
fn plan(batch: &[Write]) -> Result<Vec<Planned>, StorageError> {
    let mut out = Vec::with_capacity(batch.len());
    for write in batch {
        let planned = match write {
            Write::Device(record) => Planned {
                sql: SQL_DEVICE,
                params: vec![
                    bytes(record.keys.device.as_bytes()),
                    bytes(record.user.as_bytes()),
                    Box::new(encode(record)?),
                ],
            },
            Write::Op { group, seq, op } => Planned {
                sql: SQL_OP,
                params: vec![
                    bytes(group.as_bytes()),
                    // A seq past any a group can reach is not the next one of its log.
                    int(i64::try_from(*seq).map_err(|_| {
                        StorageError::Conflict(format!("op seq {seq} is out of range"))
                    })?),
                    Box::new(encode(op)?),
                ],
            },
            Write::Message { group, message } => Planned {
                sql: SQL_MESSAGE,
                params: vec![
                    bytes(group.as_bytes()),
                    int(i64::try_from(message.seq.0).map_err(|_| {
                        StorageError::Conflict(format!(
                            "message seq {} is out of range",
                            message.seq.0
                        ))
                    })?),
                    bytes(message.envelope.message_id().as_bytes()),
                    Box::new(encode(message)?),
                ],
            },
            Write::DeleteMessage { group, message } => Planned {
                sql: SQL_DELETE_MESSAGE,
                params: vec![bytes(group.as_bytes()), bytes(message.as_bytes())],
            },
            Write::ExpireMessage {
                group,
                seq,
                message,
            } => Planned {
                sql: SQL_EXPIRE_MESSAGE,
                params: vec![
                    bytes(group.as_bytes()),
                    int(bigint("seq", seq.0)?),
                    bytes(message.as_bytes()),
                ],
            },
            Write::Inbox { device, item } => Planned {
                sql: SQL_INBOX,
                params: vec![
                    bytes(device.as_bytes()),
                    int(bigint("inbox id", item.inbox_id)?),
                    Box::new(encode(item)?),
                    Box::new(
                        super::inbox_shares(&item.payload)
                            .iter()
                            .map(|share| share.as_bytes().to_vec())
                            .collect::<Vec<Vec<u8>>>(),
                    ),
                ],
            },
            Write::AckInbox { device, inbox_id } => match bound(*inbox_id) {
                Some(inbox_id) => Planned {
                    sql: SQL_ACK,
                    params: vec![bytes(device.as_bytes()), int(inbox_id)],
                },
                // No such item can exist.
                None => continue,
            },
            Write::DeviceList {
                user,
                identity,
                list,
            } => {
                // Verified before it was written: its version parses.
                let version =
                    serde_json::from_slice::<confide_protocol::device_list::DeviceList>(&list.list)
                        .map_err(|e| StorageError::Corrupt {
                            tree: "device_list_history",
                            reason: e.to_string(),
                        })?
                        .version;
                Planned {
                    sql: SQL_DEVICE_LIST,
                    params: vec![
                        bytes(user.as_bytes()),
                        Box::new(encode(list)?),
                        int(bigint("device list version", version)?),
                        bytes(identity.as_bytes()),
                    ],
                }
            }
            Write::Unlink { user, device } => Planned {
                sql: SQL_UNLINK,
                params: vec![bytes(device.as_bytes()), bytes(user.as_bytes())],
            },
        };
        out.push(planned);
    }
    Ok(out)
}

/// A boxed statement future, as [`pipeline`] takes them.
type StatementFuture<'a> =
    Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// Runs `futures` pipelined, in order: each is polled once in turn, which sends its request
/// (tokio-postgres sends a request on a future's first poll), so all of them leave in this
/// order before the first answer is awaited; then each answer is awaited in turn. (A join of
/// futures does not promise the order of first polls, and the order is the transaction.)
///
/// An answer is `None` only if a future's output went missing, which `MaybeDone` rules out;
/// the caller treats it as a failure all the same.
async fn pipeline(
    futures: Vec<StatementFuture<'_>>,
) -> Vec<Option<Result<u64, tokio_postgres::Error>>> {
    let mut futures: Vec<_> = futures
        .into_iter()
        .map(futures_util::future::maybe_done)
        .collect();
    std::future::poll_fn(|cx| {
        for future in futures.iter_mut() {
            // Pending is expected: the answer comes later.
            let _ = Pin::new(future).poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    let mut out = Vec::with_capacity(futures.len());
    for mut future in futures {
        (&mut future).await;
        out.push(Pin::new(&mut future).take_output());
    }
    out
}

/// Prepared statements for `sqls` on `client`, from its cache; the missing ones are prepared
/// together, in one round trip.
async fn prepare(
    client: &ClientWrapper,
    shared: &Shared,
    sqls: &[&'static str],
) -> Result<Vec<tokio_postgres::Statement>, tokio_postgres::Error> {
    let cached = client.statement_cache.size();
    let mut futures: Vec<_> = sqls
        .iter()
        .map(|sql| Box::pin(futures_util::future::maybe_done(client.prepare_cached(sql))))
        .collect();
    std::future::poll_fn(|cx| {
        for future in futures.iter_mut() {
            let _ = future.as_mut().poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    let mut out = Vec::with_capacity(futures.len());
    for mut future in futures {
        future.as_mut().await;
        match future.as_mut().take_output() {
            Some(statement) => out.push(statement?),
            // Awaited to completion just above: the output is there.
            None => continue,
        }
    }
    if client.statement_cache.size() > cached {
        shared.trip();
    }
    Ok(out)
}

/// Takes a connection from the pool (bounded by the pool's timeouts).
async fn checkout(pool: &Pool, name: &str) -> Result<Object, StorageError> {
    pool.get()
        .await
        .map_err(|e| StorageError::Backend(format!("cannot reach PostgreSQL at {name}: {e}")))
}

/// The outcome of work on `client` that ran for at most `limit`. A connection whose work
/// timed out is discarded rather than returned to the pool: a database host that stopped
/// answering would make every later call on it wait as long. So is one the server ended
/// ([`connection_lost`]), which the pool's own check may not have noticed yet.
fn settle<T>(
    client: Object,
    outcome: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
    limit: Duration,
) -> Result<T, StorageError> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            if connection_lost(&e) {
                drop(Object::take(client));
            }
            Err(classify(&e))
        }
        Err(_) => {
            drop(Object::take(client));
            Err(StorageError::Backend(format!(
                "PostgreSQL did not answer within {limit:?}"
            )))
        }
    }
}

/// Whether `e` says the connection itself is gone rather than the statement failed: closed,
/// or ended by the server (a restart or `pg_terminate_backend`: `admin_shutdown`,
/// `crash_shutdown`). The error can arrive before the client has noticed the socket close, so
/// `is_closed` alone misses it. (`cannot_connect_now` comes only while connecting, from the
/// pool's checkout, never from work on a connection.)
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.is_closed()
        || e.code()
            .is_some_and(|code| [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN].contains(code))
}

/// Runs `sql` and returns its rows; a read, so it is tried again on another connection if its
/// connection turned out broken (PostgreSQL restarted since it was last used). Each broken
/// connection is dropped from the pool, and every pooled one may be broken after a restart,
/// so it tries up to the pool's size and once more on a fresh connection.
async fn query(
    pool: Pool,
    shared: Arc<Shared>,
    name: Arc<str>,
    work_timeout: Duration,
    sql: &'static str,
    params: Vec<Param>,
) -> Result<Vec<Row>, StorageError> {
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let most_attempts = pool.status().max_size.saturating_add(1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let client = checkout(&pool, &name).await?;
        let outcome = tokio::time::timeout(work_timeout, async {
            let statement = prepare(&client, &shared, &[sql]).await?;
            let Some(statement) = statement.first() else {
                // `prepare` returns one statement per query, or an error.
                return Ok(Err(StorageError::Backend(
                    "the statement was not prepared".into(),
                )));
            };
            let rows = client.query(statement, &refs).await;
            shared.trip();
            rows.map(Ok)
        })
        .await;
        let broken = match &outcome {
            Ok(Err(e)) => connection_lost(e) || client.is_closed(),
            _ => false,
        };
        if broken && attempts < most_attempts {
            // Not back into the pool: the next checkout gets another connection.
            drop(Object::take(client));
            continue;
        }
        return settle(client, outcome, work_timeout)?;
    }
}

/// Runs `statements` as one transaction, pipelined (see the module documentation).
async fn transact(
    pool: Pool,
    shared: Arc<Shared>,
    name: Arc<str>,
    work_timeout: Duration,
    statements: Vec<Planned>,
) -> Result<(), StorageError> {
    let client = checkout(&pool, &name).await?;
    let outcome = tokio::time::timeout(work_timeout, async {
        let mut sqls: Vec<&'static str> = statements.iter().map(|s| s.sql).collect();
        sqls.sort_unstable();
        sqls.dedup();
        let prepared = prepare(&client, &shared, &sqls).await?;
        if prepared.len() != sqls.len() {
            // `prepare` answers each query in order; a statement must never meet another's SQL.
            return Ok(Err(StorageError::Backend(
                "a statement was not prepared".into(),
            )));
        }
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = statements
            .iter()
            .map(|s| {
                s.params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let mut futures: Vec<StatementFuture<'_>> = Vec::with_capacity(statements.len() + 2);
        futures.push(Box::pin(async {
            client.batch_execute("BEGIN").await.map(|()| 0)
        }));
        for (planned, params) in statements.iter().zip(&refs) {
            let Some(statement) = sqls
                .binary_search(&planned.sql)
                .ok()
                .and_then(|i| prepared.get(i))
            else {
                // Every statement's SQL was prepared just above; never skip a write.
                return Ok(Err(StorageError::Backend(format!(
                    "a statement was not prepared: {}",
                    planned.sql
                ))));
            };
            futures.push(Box::pin(client.execute(statement, params)));
        }
        // After a failed statement the transaction is aborted, and PostgreSQL answers this
        // COMMIT by rolling back: nothing of the batch is stored.
        futures.push(Box::pin(async {
            client.batch_execute("COMMIT").await.map(|()| 0)
        }));
        let results = pipeline(futures).await;
        shared.trip();
        // The first error is the cause; the statements after it only report the abort.
        for result in results {
            match result {
                Some(result) => result?,
                None => {
                    return Ok(Err(StorageError::Backend(
                        "a statement's answer went missing; the batch's outcome is unknown".into(),
                    )));
                }
            };
        }
        Ok(Ok(()))
    })
    .await;
    settle(client, outcome, work_timeout)?
}

/// Takes the next block of inbox ids from the database's sequence.
async fn fetch_block(
    pool: Pool,
    shared: Arc<Shared>,
    name: Arc<str>,
    work_timeout: Duration,
) -> Result<u64, StorageError> {
    let rows = query(pool, shared, name, work_timeout, SQL_NEXT_ID_BLOCK, vec![]).await?;
    let Some(row) = rows.first() else {
        return Err(StorageError::Backend("nextval answered no row".to_string()));
    };
    unsigned("inbox_ids", column("inbox_ids", row, 0)?)
}

/// Applies the schema versions the database lacks, in one transaction, under an advisory lock
/// (so that nodes starting together apply each once).
async fn apply_schema(pool: Pool, name: Arc<str>) -> Result<(), StorageError> {
    let mut client = checkout(&pool, &name).await?;
    let known = SCHEMA.last().map_or(0, |(v, _)| *v);
    let outcome = tokio::time::timeout(MIGRATION_TIMEOUT, async {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            MIGRATION_TIMEOUT.as_millis()
        ))
        .await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ( \
               version integer PRIMARY KEY, \
               applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let applied: Vec<i32> = tx
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        if let Some(newer) = applied.iter().find(|v| **v > known) {
            // Rolled back as the transaction is dropped.
            return Ok(Some(*newer));
        }
        for (version, sql) in SCHEMA {
            if !applied.contains(version) {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
                tracing::info!(version = *version, "applied PostgreSQL schema version");
            }
        }
        tx.commit().await?;
        Ok(None)
    })
    .await;
    match settle(client, outcome, MIGRATION_TIMEOUT)? {
        Some(newer) => Err(StorageError::Backend(format!(
            "the database at {name} has schema version {newer}, made by a newer \
             confide-server; this one knows versions up to {known}: upgrade it"
        ))),
        None => Ok(()),
    }
}

impl PostgresStorage {
    /// Connects to the database at `url` (`postgres://user@host:port/db` or `postgresql://…`)
    /// with [`PostgresOptions::default`], and applies the schema it lacks.
    pub fn connect(url: &str) -> Result<PostgresStorage, StorageError> {
        Self::connect_with(url, PostgresOptions::default())
    }

    /// Connects to the database at `url` with `options`, and applies the schema it lacks.
    /// Fails with [`StorageError::Backend`] if the database cannot be reached within the
    /// options' timeouts.
    pub fn connect_with(
        url: &str,
        options: PostgresOptions,
    ) -> Result<PostgresStorage, StorageError> {
        let mut config = parse_url(url)?;
        let name: Arc<str> = redacted_url(url).into();
        // `synchronous_commit` on whatever the server's default: an acknowledgement promises
        // the commit is on disk. (It also makes inbox id blocks safe: a block's `nextval` is
        // in the write-ahead log before any item with one of its ids, so the flush that makes
        // such an item durable makes the block durable too; ids of a block no item used may
        // come back after a crash, harmlessly.)
        let mut settings = format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={} \
             -c synchronous_commit=on",
            options.statement_timeout.as_millis(),
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        );
        if let Some(given) = config.get_options() {
            // Ours after the URL's: the later setting wins.
            settings = format!("{given} {settings}");
        }
        config
            .options(settings)
            .application_name("confide-server")
            .connect_timeout(options.connect_timeout)
            .tcp_user_timeout(TCP_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(TCP_TIMEOUT);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("confide-pg")
            .enable_all()
            .build()
            .map_err(|e| {
                StorageError::Backend(format!("cannot start the PostgreSQL client: {e}"))
            })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A closed connection is replaced; a live one is used without a test query
                // (which would cost a round trip per call). A read on a connection that broke
                // since is tried again on another ([`query`]).
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.pool_wait_timeout))
            .create_timeout(Some(options.connect_timeout.saturating_add(NETWORK_MARGIN)))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| {
                StorageError::Backend(format!("cannot set up the connection pool: {e}"))
            })?;
        let work_timeout = options.statement_timeout.saturating_add(NETWORK_MARGIN);
        let storage = PostgresStorage {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            pool,
            shared: Arc::new(Shared {
                round_trips: AtomicU64::new(0),
                ids: Mutex::new(IdBlocks::default()),
                prefetching: AtomicBool::new(false),
            }),
            work_timeout,
            call_timeout: options
                .pool_wait_timeout
                .saturating_add(options.connect_timeout)
                .saturating_add(work_timeout.saturating_mul(2)),
            name,
        };
        storage.run(
            MIGRATION_TIMEOUT.saturating_add(storage.call_timeout),
            apply_schema(storage.pool.clone(), storage.name.clone()),
        )?;
        let first = storage.run(storage.call_timeout, storage.fetch_block())?;
        storage.shared.ids().add(first);
        tracing::info!(database = %storage.name, "connected to PostgreSQL");
        Ok(storage)
    }

    /// Whether the database answers `SELECT 1` within [`HEALTH_TIMEOUT`] (for health checks).
    pub fn healthy(&self) -> bool {
        self.check_health().is_ok()
    }

    /// `SELECT 1` within [`HEALTH_TIMEOUT`], or why not.
    fn check_health(&self) -> Result<(), StorageError> {
        let pool = self.pool.clone();
        let name: Arc<str> = self.name.clone();
        self.run(HEALTH_TIMEOUT, async move {
            let client = checkout(&pool, &name).await?;
            let outcome =
                tokio::time::timeout(HEALTH_TIMEOUT, client.simple_query("SELECT 1")).await;
            settle(client, outcome, HEALTH_TIMEOUT).map(|_| ())
        })
    }

    /// Network round trips made so far by queries and commits (a pipelined commit is one;
    /// preparing a connection's statements is one more the first time). Connecting is not
    /// counted. For measurement.
    pub fn round_trips(&self) -> u64 {
        self.shared.round_trips.load(Ordering::Relaxed)
    }

    /// The database's URL without its password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `work` on the backend's runtime and waits for it on this thread, for at most
    /// `limit` (see the module documentation).
    fn run<T, F>(&self, limit: Duration, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = match tokio::time::timeout(limit, work).await {
                Ok(result) => result,
                Err(_) => Err(StorageError::Backend(format!(
                    "PostgreSQL did not answer within {limit:?}"
                ))),
            };
            // The caller waits for this, unless it is gone (its thread panicked).
            let _ = tx.send(result);
        });
        // The task is dropped unfinished (and `tx` with it) only when the runtime shuts down.
        rx.recv().unwrap_or_else(|_| {
            Err(StorageError::Backend(
                "the PostgreSQL client has shut down".to_string(),
            ))
        })
    }

    /// Runs a read.
    fn rows(&self, sql: &'static str, params: Vec<Param>) -> Result<Vec<Row>, StorageError> {
        self.run(
            self.call_timeout,
            query(
                self.pool.clone(),
                self.shared.clone(),
                self.name.clone(),
                self.work_timeout,
                sql,
                params,
            ),
        )
    }

    /// The first column of a read's only row, if any.
    fn single<T>(
        &self,
        tree: &'static str,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Option<T>, StorageError>
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        self.rows(sql, params)?
            .first()
            .map(|row| column(tree, row, 0))
            .transpose()
    }

    /// A future that takes the next block of inbox ids.
    fn fetch_block(&self) -> impl Future<Output = Result<u64, StorageError>> + Send + 'static {
        fetch_block(
            self.pool.clone(),
            self.shared.clone(),
            self.name.clone(),
            self.work_timeout,
        )
    }

    /// Starts fetching the next block of ids in the background, unless a fetch is under way.
    fn prefetch(&self) {
        if self.shared.prefetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.shared.clone();
        let fetch = self.fetch_block();
        let limit = self.call_timeout;
        self.handle.spawn(async move {
            match tokio::time::timeout(limit, fetch).await {
                Ok(Ok(start)) => shared.ids().add(start),
                // The next call that runs out fetches a block itself, and reports the error.
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot fetch inbox ids ahead"),
                Err(_) => tracing::warn!("fetching inbox ids ahead timed out"),
            }
            shared.prefetching.store(false, Ordering::Release);
        });
    }

    /// Starts a copy into this database, which must be empty ([`super::migrate`]).
    pub(crate) fn import(&self) -> Result<Import<'_>, StorageError> {
        let (steps, receiver) = tokio::sync::mpsc::unbounded_channel();
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let pool = self.pool.clone();
        let name: Arc<str> = self.name.clone();
        self.handle
            .spawn(import_task(pool, name, self.work_timeout, receiver, ready));
        let import = Import {
            storage: self,
            steps,
        };
        import.answer(started)?;
        Ok(import)
    }

    /// How many records of each kind the database holds.
    pub fn counts(&self) -> Result<RecordCounts, StorageError> {
        let rows = self.rows(
            "SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM group_heads), \
               (SELECT count(*) FROM ops), (SELECT count(*) FROM messages), \
               (SELECT count(*) FROM inbox), (SELECT count(*) FROM inbox_shares), \
               (SELECT count(*) FROM device_lists), (SELECT count(*) FROM device_list_history), \
               (SELECT count(*) FROM identities), (SELECT count(*) FROM unlinked)",
            vec![],
        )?;
        let Some(row) = rows.first() else {
            return Err(StorageError::Backend("the counts came back empty".into()));
        };
        let n = |i| column::<i64>("counts", row, i).and_then(|v| unsigned("counts", v));
        Ok(RecordCounts {
            devices: n(0)?,
            groups: n(1)?,
            ops: n(2)?,
            messages: n(3)?,
            inbox_items: n(4)?,
            inbox_shares: n(5)?,
            device_lists: n(6)?,
            device_list_versions: n(7)?,
            identities: n(8)?,
            unlinked: n(9)?,
        })
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        // Without waiting: the storage may be dropped on another runtime's worker thread,
        // where a blocking shutdown panics. Connections are closed as their tasks end.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Storage for PostgresStorage {
    /// A transaction is visible only once committed, and committed is durable
    /// (`synchronous_commit` on).
    fn reads_only_durable(&self) -> bool {
        true
    }

    fn heads(&self, groups: &[GroupId]) -> Result<Vec<super::GroupHead>, StorageError> {
        let ids: Vec<Vec<u8>> = groups.iter().map(|g| g.as_bytes().to_vec()).collect();
        let rows = self.rows(SQL_HEADS, vec![Box::new(ids)])?;
        rows.iter().map(group_head).collect()
    }

    fn all_heads(&self) -> Result<Vec<super::GroupHead>, StorageError> {
        let rows = self.rows(SQL_ALL_HEADS, vec![])?;
        rows.iter().map(group_head).collect()
    }

    fn health(&self) -> Result<String, StorageError> {
        self.check_health()?;
        Ok(format!("PostgreSQL at {}", self.name))
    }

    fn commit(&self, batch: &[Write]) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let statements = plan(batch)?;
        if statements.is_empty() {
            return Ok(());
        }
        self.run(
            self.call_timeout,
            transact(
                self.pool.clone(),
                self.shared.clone(),
                self.name.clone(),
                self.work_timeout,
                statements,
            ),
        )
    }

    fn device(&self, device: &DeviceId) -> Result<Option<DeviceRecord>, StorageError> {
        self.single::<Vec<u8>>("devices", SQL_GET_DEVICE, vec![bytes(device.as_bytes())])?
            .map(|v| decode("devices", &v))
            .transpose()
    }

    fn devices_of_user(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StorageError> {
        self.rows(SQL_DEVICES_OF_USER, vec![bytes(user.as_bytes())])?
            .iter()
            .map(|row| decode("devices", column::<&[u8]>("devices", row, 0)?))
            .collect()
    }

    fn device_list(&self, user: &UserId) -> Result<Option<SignedDeviceList>, StorageError> {
        self.single::<Vec<u8>>(
            "device_lists",
            SQL_GET_DEVICE_LIST,
            vec![bytes(user.as_bytes())],
        )?
        .map(|v| decode("device_lists", &v))
        .transpose()
    }

    fn device_list_chain(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SignedDeviceList>, StorageError> {
        let Some(after) = bound(after) else {
            return Ok(Vec::new());
        };
        self.rows(
            SQL_DEVICE_LIST_CHAIN,
            vec![bytes(user.as_bytes()), int(after), int(self::limit(limit))],
        )?
        .iter()
        .map(|row| {
            decode(
                "device_list_history",
                column::<&[u8]>("device_list_history", row, 0)?,
            )
        })
        .collect()
    }

    fn identity_user(&self, identity: &IdentityKey) -> Result<Option<UserId>, StorageError> {
        self.single::<Vec<u8>>(
            "identities",
            SQL_IDENTITY_USER,
            vec![bytes(identity.as_bytes())],
        )?
        .map(|v| id("identities", &v).map(UserId))
        .transpose()
    }

    fn unlinked(&self, device: &DeviceId) -> Result<Option<UserId>, StorageError> {
        self.single::<Vec<u8>>("unlinked", SQL_UNLINKED, vec![bytes(device.as_bytes())])?
            .map(|v| id("unlinked", &v).map(UserId))
            .transpose()
    }

    fn message_seq(
        &self,
        group: &GroupId,
        message: &MessageId,
    ) -> Result<Option<Seq>, StorageError> {
        self.single::<i64>(
            "messages",
            SQL_MESSAGE_SEQ,
            vec![bytes(group.as_bytes()), bytes(message.as_bytes())],
        )?
        .map(|v| unsigned("messages", v).map(Seq))
        .transpose()
    }

    fn groups(&self) -> Result<Vec<GroupId>, StorageError> {
        self.rows(SQL_GROUPS, vec![])?
            .iter()
            .map(|row| id("group_heads", column::<&[u8]>("group_heads", row, 0)?).map(GroupId))
            .collect()
    }

    fn ops(&self, group: &GroupId, from: u64, limit: usize) -> Result<Vec<SignedOp>, StorageError> {
        let Some(from) = bound(from) else {
            return Ok(Vec::new());
        };
        self.rows(
            SQL_OPS,
            vec![bytes(group.as_bytes()), int(from), int(self::limit(limit))],
        )?
        .iter()
        .map(|row| decode("ops", column::<&[u8]>("ops", row, 0)?))
        .collect()
    }

    fn messages(
        &self,
        group: &GroupId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        let Some(after) = bound(after.0) else {
            return Ok(Vec::new());
        };
        self.rows(
            SQL_MESSAGES,
            vec![bytes(group.as_bytes()), int(after), int(self::limit(limit))],
        )?
        .iter()
        .map(|row| decode("messages", column::<&[u8]>("messages", row, 0)?))
        .collect()
    }

    fn last_seq(&self, group: &GroupId) -> Result<Seq, StorageError> {
        match self.single::<i64>("group_heads", SQL_LAST_SEQ, vec![bytes(group.as_bytes())])? {
            Some(v) => Ok(Seq(unsigned("group_heads", v)?)),
            None => Ok(Seq(0)),
        }
    }

    fn inbox(
        &self,
        device: &DeviceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StorageError> {
        let Some(after) = bound(after) else {
            return Ok(Vec::new());
        };
        self.rows(
            SQL_INBOX_PAGE,
            vec![
                bytes(device.as_bytes()),
                int(after),
                int(self::limit(limit)),
            ],
        )?
        .iter()
        .map(|row| decode("inbox", column::<&[u8]>("inbox", row, 0)?))
        .collect()
    }

    fn inbox_has(&self, device: &DeviceId, inbox_id: u64) -> Result<bool, StorageError> {
        let Some(inbox_id) = bound(inbox_id) else {
            return Ok(false);
        };
        Ok(!self
            .rows(SQL_INBOX_HAS, vec![bytes(device.as_bytes()), int(inbox_id)])?
            .is_empty())
    }

    fn inbox_len(&self, device: &DeviceId) -> Result<usize, StorageError> {
        let n = self
            .single::<i64>("inbox", SQL_INBOX_LEN, vec![bytes(device.as_bytes())])?
            .unwrap_or(0);
        Ok(usize::try_from(unsigned("inbox", n)?).unwrap_or(usize::MAX))
    }

    fn inbox_len_from(&self, device: &DeviceId, share: &DeviceId) -> Result<usize, StorageError> {
        let n = self
            .single::<i64>(
                "inbox_shares",
                SQL_INBOX_LEN_FROM,
                vec![bytes(device.as_bytes()), bytes(share.as_bytes())],
            )?
            .unwrap_or(0);
        Ok(usize::try_from(unsigned("inbox_shares", n)?).unwrap_or(usize::MAX))
    }

    fn next_inbox_id(&self) -> Result<u64, StorageError> {
        loop {
            {
                let mut ids = self.shared.ids();
                if let Some(id) = ids.take() {
                    let low = ids.running_low();
                    drop(ids);
                    if low {
                        self.prefetch();
                    }
                    return Ok(id);
                }
            }
            // Used up, and no block came ahead of time: one round trip on this thread (the
            // lock is not held meanwhile, so a prefetch can still land).
            let start = self.run(self.call_timeout, self.fetch_block())?;
            self.shared.ids().add(start);
        }
    }
}

/// A copy into an empty database in one transaction, driven from a synchronous caller
/// ([`super::migrate::sled_to_postgres`]): batches go to a task that holds the transaction.
pub(crate) struct Import<'a> {
    storage: &'a PostgresStorage,
    steps: tokio::sync::mpsc::UnboundedSender<ImportStep>,
}

/// What the import task is asked to do, with where to answer.
enum ImportStep {
    Insert(
        Vec<Record>,
        std::sync::mpsc::SyncSender<Result<u64, StorageError>>,
    ),
    Finish(u64, std::sync::mpsc::SyncSender<Result<u64, StorageError>>),
}

impl Import<'_> {
    /// Waits for the task's answer.
    fn answer(
        &self,
        answers: std::sync::mpsc::Receiver<Result<u64, StorageError>>,
    ) -> Result<u64, StorageError> {
        match answers.recv_timeout(self.storage.call_timeout) {
            Ok(answer) => answer,
            Err(_) => Err(StorageError::Backend(format!(
                "PostgreSQL did not answer within {:?}",
                self.storage.call_timeout
            ))),
        }
    }

    /// Sends one step and waits for its answer.
    fn step(
        &self,
        step: impl FnOnce(std::sync::mpsc::SyncSender<Result<u64, StorageError>>) -> ImportStep,
    ) -> Result<u64, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.steps
            .send(step(tx))
            .map_err(|_| StorageError::Backend("the copy has stopped".into()))?;
        self.answer(rx)
    }

    /// Inserts `records`.
    pub(crate) fn insert(&self, records: Vec<Record>) -> Result<(), StorageError> {
        self.step(|tx| ImportStep::Insert(records, tx)).map(|_| ())
    }

    /// Sets the inbox-id sequence to hand out `next_inbox_id` or above from now on, and commits
    /// the copy. Returns the lowest id it will hand out.
    pub(crate) fn finish(self, next_inbox_id: u64) -> Result<u64, StorageError> {
        let next = self.step(|tx| ImportStep::Finish(next_inbox_id, tx))?;
        // The block this storage took when it connected lies below the copied ids.
        self.storage.shared.ids().raise_floor(next);
        Ok(next)
    }
}

/// The tables a copy fills, which must all be empty when it starts.
const IMPORT_TABLES: &str = "devices, group_heads, ops, messages, inbox, inbox_shares, \
     device_lists, device_list_history, identities, unlinked";

/// The import's transaction: refuses a database that holds anything, then inserts each batch
/// it is sent, and commits when told to finish (or rolls back when the sender goes away).
async fn import_task(
    pool: Pool,
    name: Arc<str>,
    work_timeout: Duration,
    mut steps: tokio::sync::mpsc::UnboundedReceiver<ImportStep>,
    ready: std::sync::mpsc::SyncSender<Result<u64, StorageError>>,
) {
    let mut client = match checkout(&pool, &name).await {
        Ok(client) => client,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let started = tokio::time::timeout(work_timeout, async {
        let tx = client.transaction().await?;
        // The copy reads the sled database between batches: no idle limit here. And no
        // server node writes meanwhile (it waits, then fails its statement).
        tx.batch_execute(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = 0; \
             LOCK TABLE {IMPORT_TABLES} IN EXCLUSIVE MODE"
        ))
        .await?;
        let row = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM devices) OR EXISTS (SELECT 1 FROM group_heads) \
                   OR EXISTS (SELECT 1 FROM ops) OR EXISTS (SELECT 1 FROM messages) \
                   OR EXISTS (SELECT 1 FROM inbox) OR EXISTS (SELECT 1 FROM device_lists) \
                   OR EXISTS (SELECT 1 FROM device_list_history) \
                   OR EXISTS (SELECT 1 FROM identities) OR EXISTS (SELECT 1 FROM unlinked)",
                &[],
            )
            .await?;
        let taken: bool = row.try_get(0)?;
        Ok::<_, tokio_postgres::Error>((tx, taken))
    })
    .await;
    let tx = match started {
        Ok(Ok((_, true))) => {
            let _ = ready.send(Err(StorageError::Backend(format!(
                "the database at {name} is not empty: a copy goes into an empty database only \
                 (create a new one, or drop this one's tables)"
            ))));
            return;
        }
        Ok(Ok((tx, false))) => tx,
        Ok(Err(e)) => {
            let _ = ready.send(Err(classify(&e)));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(StorageError::Backend(format!(
                "PostgreSQL did not answer within {work_timeout:?}"
            ))));
            return;
        }
    };
    let _ = ready.send(Ok(0));
    while let Some(step) = steps.recv().await {
        match step {
            ImportStep::Insert(records, answer) => {
                let result = match tokio::time::timeout(work_timeout, insert(&tx, records)).await {
                    Ok(result) => result.map(|()| 0),
                    Err(_) => Err(StorageError::Backend(format!(
                        "PostgreSQL did not answer within {work_timeout:?}"
                    ))),
                };
                let failed = result.is_err();
                let _ = answer.send(result);
                if failed {
                    // Rolled back as the transaction is dropped.
                    return;
                }
            }
            ImportStep::Finish(next_inbox_id, answer) => {
                let result = tokio::time::timeout(work_timeout, async {
                    let floor = i64::try_from(next_inbox_id.max(1)).unwrap_or(i64::MAX);
                    // Never back: above anything a node may have taken meanwhile.
                    let row = tx
                        .query_one(
                            "SELECT setval('inbox_ids', GREATEST($1, CASE WHEN is_called \
                               THEN last_value + $2 ELSE last_value END), false) FROM inbox_ids",
                            &[&floor, &(INBOX_ID_BLOCK as i64)],
                        )
                        .await?;
                    let next: i64 = row.try_get(0)?;
                    tx.commit().await?;
                    Ok::<_, tokio_postgres::Error>(next)
                })
                .await;
                let result = match result {
                    Ok(Ok(next)) => unsigned("inbox_ids", next),
                    Ok(Err(e)) => Err(classify(&e)),
                    Err(_) => Err(StorageError::Backend(format!(
                        "PostgreSQL did not answer within {work_timeout:?}"
                    ))),
                };
                let _ = answer.send(result);
                return;
            }
        }
    }
}

/// Inserts `records`: one multi-row insert per kind (arrays unnested into rows).
async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    records: Vec<Record>,
) -> Result<(), StorageError> {
    fn b(bytes: &[u8]) -> Vec<u8> {
        bytes.to_vec()
    }
    // Values are below 2^63 (see `bigint`); a larger one, which sled could hold, fails the
    // copy rather than wrap.
    fn i(v: u64) -> Result<i64, StorageError> {
        bigint("a seq, version or inbox id", v)
    }
    #[derive(Default)]
    struct Columns {
        a: Vec<Vec<u8>>,
        b: Vec<Vec<u8>>,
        c: Vec<Vec<u8>>,
        n: Vec<i64>,
        m: Vec<i64>,
    }
    let mut devices = Columns::default();
    let mut heads = Columns::default();
    let mut ops = Columns::default();
    let mut messages = Columns::default();
    let mut inbox = Columns::default();
    let mut shares = Columns::default();
    let mut lists = Columns::default();
    let mut history = Columns::default();
    let mut identities = Columns::default();
    let mut unlinked = Columns::default();
    for record in records {
        match record {
            Record::Device {
                device,
                user,
                record,
            } => {
                devices.a.push(b(device.as_bytes()));
                devices.b.push(b(user.as_bytes()));
                devices.c.push(record);
            }
            Record::GroupHead {
                group,
                last_op_seq,
                last_msg_seq,
            } => {
                heads.a.push(b(group.as_bytes()));
                heads.n.push(i(last_op_seq)?);
                heads.m.push(i(last_msg_seq)?);
            }
            Record::Op { group, seq, op } => {
                ops.a.push(b(group.as_bytes()));
                ops.n.push(i(seq)?);
                ops.c.push(op);
            }
            Record::Message {
                group,
                seq,
                message_id,
                record,
            } => {
                messages.a.push(b(group.as_bytes()));
                messages.n.push(i(seq)?);
                messages.b.push(b(message_id.as_bytes()));
                messages.c.push(record);
            }
            Record::Inbox {
                device,
                inbox_id,
                shares: item_shares,
                record,
            } => {
                inbox.a.push(b(device.as_bytes()));
                inbox.n.push(i(inbox_id)?);
                inbox.c.push(record);
                for share in item_shares {
                    shares.a.push(b(device.as_bytes()));
                    shares.b.push(b(share.as_bytes()));
                    shares.n.push(i(inbox_id)?);
                }
            }
            Record::DeviceList { user, list } => {
                lists.a.push(b(user.as_bytes()));
                lists.c.push(list);
            }
            Record::DeviceListVersion {
                user,
                version,
                list,
            } => {
                history.a.push(b(user.as_bytes()));
                history.n.push(i(version)?);
                history.c.push(list);
            }
            Record::Identity { identity, user } => {
                identities.a.push(b(identity.as_bytes()));
                identities.b.push(b(user.as_bytes()));
            }
            Record::Unlinked { device, user } => {
                unlinked.a.push(b(device.as_bytes()));
                unlinked.b.push(b(user.as_bytes()));
            }
        }
    }
    if !devices.a.is_empty() {
        tx.execute(
            "INSERT INTO devices (device, user_id, record) \
             SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[])",
            &[&devices.a, &devices.b, &devices.c],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !heads.a.is_empty() {
        tx.execute(
            "INSERT INTO group_heads (group_id, last_op_seq, last_msg_seq) \
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[])",
            &[&heads.a, &heads.n, &heads.m],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !ops.a.is_empty() {
        tx.execute(
            "INSERT INTO ops (group_id, seq, op) \
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[])",
            &[&ops.a, &ops.n, &ops.c],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !messages.a.is_empty() {
        tx.execute(
            "INSERT INTO messages (group_id, seq, message_id, record) \
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[], $4::bytea[])",
            &[&messages.a, &messages.n, &messages.b, &messages.c],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !inbox.a.is_empty() {
        tx.execute(
            "INSERT INTO inbox (device, inbox_id, record) \
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[])",
            &[&inbox.a, &inbox.n, &inbox.c],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !shares.a.is_empty() {
        tx.execute(
            "INSERT INTO inbox_shares (device, share, inbox_id) \
             SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[])",
            &[&shares.a, &shares.b, &shares.n],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !lists.a.is_empty() {
        tx.execute(
            "INSERT INTO device_lists (user_id, list) \
             SELECT * FROM unnest($1::bytea[], $2::bytea[])",
            &[&lists.a, &lists.c],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !history.a.is_empty() {
        tx.execute(
            "INSERT INTO device_list_history (user_id, version, list) \
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[])",
            &[&history.a, &history.n, &history.c],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !identities.a.is_empty() {
        tx.execute(
            "INSERT INTO identities (identity, user_id) \
             SELECT * FROM unnest($1::bytea[], $2::bytea[])",
            &[&identities.a, &identities.b],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    if !unlinked.a.is_empty() {
        tx.execute(
            "INSERT INTO unlinked (device, user_id) \
             SELECT * FROM unnest($1::bytea[], $2::bytea[])",
            &[&unlinked.a, &unlinked.b],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    Ok(())
}

/// Parses a PostgreSQL URL; only `postgres://` and `postgresql://` URLs are accepted (the
/// error never repeats the URL, which may hold a password).
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, StorageError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StorageError::Backend(
            "a PostgreSQL database is named by a URL starting with postgres:// or \
             postgresql:// (postgres://user@host:5432/database)"
                .into(),
        ));
    }
    tokio_postgres::Config::from_str(url).map_err(|e| {
        StorageError::Backend(format!("invalid PostgreSQL URL {}: {e}", redacted_url(url)))
    })
}

/// `url` without its password (and without its query parameters, which may hold one): what
/// may be logged.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_string();
    };
    // The user information ends at the last '@': a password may hold '/', '?', '#' or ':'
    // (and an '@' only percent-encoded), so nothing before that '@' is cut by those first.
    let (user, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            (format!("{user}@"), rest)
        }
        None => (String::new(), rest),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{user}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_with_reserved_characters_never_appears_in_what_is_logged() {
        for (url, password) in [
            ("postgres://confide:pa/ss@db.internal:5432/confide", "pa/ss"),
            ("postgres://confide:pa?ss@db.internal:5432/confide", "ss@"),
            ("postgres://confide:pa#ss@db.internal:5432/confide", "ss@"),
            ("postgres://confide:a:b/c?d#e@db.internal/confide", "b/c"),
        ] {
            let shown = redacted_url(url);
            assert!(!shown.contains(password), "{url} shown as {shown}");
            assert!(!shown.contains("pa"), "{url} shown as {shown}");
            assert!(
                shown.starts_with("postgres://confide@db.internal"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_password_never_appears_in_what_is_logged() {
        assert_eq!(
            redacted_url("postgres://alice:s3cret@db.internal:5432/confide?password=other"),
            "postgres://alice@db.internal:5432/confide"
        );
        assert_eq!(
            redacted_url("postgresql://db.internal/confide"),
            "postgresql://db.internal/confide"
        );
        assert_eq!(
            redacted_url("postgres://bob:pw@%2Frun%2Fpostgresql/confide"),
            "postgres://bob@%2Frun%2Fpostgresql/confide"
        );
        let err = parse_url("mysql://root:hunter2@localhost/x").expect_err("refused");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("postgres://"), "{err}");
    }

    #[test]
    fn the_schema_takes_inbox_ids_in_blocks_of_the_size_handed_out() {
        let schema = SCHEMA.iter().map(|(_, sql)| *sql).collect::<String>();
        assert!(
            schema.contains(&format!("INCREMENT BY {INBOX_ID_BLOCK} ")),
            "the sequence's increment and INBOX_ID_BLOCK differ"
        );
    }

    #[test]
    fn inbox_ids_only_go_up_whichever_block_arrives_first() {
        let block = INBOX_ID_BLOCK;
        let mut ids = IdBlocks::default();
        assert_eq!(ids.take(), None);
        ids.add(1);
        let mut last = 0;
        let drain = |ids: &mut IdBlocks, last: &mut u64| {
            while let Some(id) = ids.take() {
                assert!(id > *last, "{id} after {last}");
                *last = id;
            }
        };
        drain(&mut ids, &mut last);
        assert_eq!(last, block);
        // Used up: a refill lands first, then a prefetch of a lower block arrives late.
        ids.add(3 * block + 1);
        ids.add(2 * block + 1);
        // A spare fetched ahead while ids are left waits for its turn.
        assert_eq!(ids.take(), Some(3 * block + 1));
        ids.add(5 * block + 1);
        drain(&mut ids, &mut last);
        assert_eq!(last, 6 * block, "the spare block follows the current one");
        // After a copy: what is held, and what arrives from before, is dropped.
        ids.add(7 * block + 1);
        ids.raise_floor(100 * block);
        ids.add(8 * block + 1);
        assert_eq!(ids.take(), None);
        ids.add(100 * block);
        assert_eq!(ids.take(), Some(100 * block));
    }
}
