//! Server configuration: every limit is a named constant with a documented default, and can be
//! changed in the TOML config file (see [`FileConfig`]) or, for the common ones, by a flag.

use serde::Deserialize;
use std::time::Duration;

use crate::writer::{DEFAULT_MAX_BATCH, DEFAULT_MAX_BATCH_BYTES, DEFAULT_WRITE_QUEUE};

/// Largest websocket message accepted from a client (the protocol's default client frame limit;
/// a maximal envelope or op is ~88 KiB of base64, and a `send_sealed` carries up to 256 sender
/// keys or several reports — clients split larger ones, `frames::sealed_frames`). Sealed with
/// X-Wing, each sealed payload carries a 1,120-byte encapsulation (~1.5 KB of base64): 256
/// sender keys take about 480 KiB, and a report of a maximal message about 87 KiB, so the
/// limit still holds a full frame of sender keys. Messages up to 64 KiB larger are answered
/// `frame_too_large`; larger still close the connection.
pub const DEFAULT_MAX_FRAME_BYTES: usize = confide_protocol::frames::DEFAULT_MAX_CLIENT_FRAME_BYTES;
/// Frames queued for one connection before it counts as a slow consumer and is disconnected.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Bytes queued for one connection before it counts as a slow consumer.
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// A single websocket send that takes longer than this means the peer has stopped reading; the
/// connection is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound on graceful shutdown as a whole: closing connections, then finishing the
/// writes already queued, share this one deadline (see [`crate::server::run`]). Long enough for
/// a healthy disk to finish a full write queue, short enough that a stalled disk cannot keep a
/// stopping server alive until a supervisor kills it.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the server sends a close frame, how long it keeps reading (and discarding) what the
/// peer still sends while it waits for the peer's close frame, before it drops the connection:
/// dropping a socket with unread data resets the connection, and a client still sending would
/// see the reset instead of the `going_away` frame and the close code. Long enough for a peer
/// on a slow link to answer, short enough that a peer that never answers holds nothing for long.
pub const DEFAULT_CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Default time one durable write (one batch and its flush) may take before the disk is deemed
/// stuck: healthy flushes take milliseconds, a busy disk seconds; two minutes without an answer
/// means the storage will not recover in this process.
pub const DEFAULT_STUCK_WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// The least `stuck_write_timeout_ms` the config file may set: below it an ordinary busy flush
/// would shut the server down (0 would stop it at the first write caught in progress).
pub const MIN_STUCK_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The least `shutdown_timeout_ms` the config file may set: below it every shutdown would
/// abandon the write queue instead of letting a healthy disk finish it.
pub const MIN_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
/// Simultaneous connections from one address (an IPv4 address, or an IPv6 /64: see
/// [`crate::address`]) that have not authenticated yet. Each lasts at most the authentication
/// timeout (which bounds the TLS and websocket handshakes and the HTTP requests for the web app
/// too; an HTTP response under way may take one write timeout more) plus its close: the larger
/// of the close linger and twice the write timeout. Cheap to open, so limited tightly.
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_IP: usize = 1_000;
/// Simultaneous authenticated connections from one address (an IPv4 address, or an IPv6 /64),
/// so that one host cannot take every connection slot ([`DEFAULT_MAX_CONNECTIONS`]) — devices
/// are free to register, so the per-device limit alone does not stop it. Far above what one
/// person needs, because many people can share one address (a workplace, or a mobile carrier's
/// NAT): 2,000 is 250 people with all 8 connections open, or 1,000 with two each, and a tenth of
/// the default total, so it takes ten addresses to fill the server. Behind a TLS-terminating
/// proxy every client has the proxy's address: raise it there to `max_connections`.
pub const DEFAULT_MAX_AUTHENTICATED_PER_IP: usize = 2_000;
/// Simultaneous connections the server accepts; more wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Simultaneous authenticated connections of one device (two terminals, a phone and a laptop).
pub const DEFAULT_MAX_CONNECTIONS_PER_DEVICE: usize = 8;
/// Sustained requests per second per device (posts, ops, sealed payloads, syncs).
pub const DEFAULT_RATE_PER_SECOND: u32 = 50;
/// Inbox ids one device may acknowledge per second, sustained (`ack_inbox` is not counted as a
/// request, since one acknowledges a whole page of the backlog; it is counted by ids instead:
/// each id is a lookup, and a removal by the shared writer). A client clearing its backlog
/// receives 100 items per round trip, far below this.
pub const DEFAULT_INBOX_ACKS_PER_SECOND: u32 = 1_000;
/// Inbox ids one device may acknowledge at once: four full `ack_inbox` frames. Never below
/// `MAX_INBOX_ACKS_PER_FRAME` (1,024), so that a full frame can always pass.
pub const DEFAULT_INBOX_ACK_BURST: u32 = 4_096;
/// Burst allowance above the sustained rate.
pub const DEFAULT_RATE_BURST: u32 = 200;
/// New devices one IP address may register per hour (sustained), beyond a burst of
/// [`DEFAULT_REGISTRATION_BURST`].
pub const DEFAULT_REGISTRATIONS_PER_HOUR: u32 = 60;
/// Registrations one IP address may make at once.
pub const DEFAULT_REGISTRATION_BURST: u32 = 20;
/// Groups one device may create (each lives in the server's memory).
pub const DEFAULT_MAX_GROUPS_CREATED_PER_DEVICE: usize = 1_000;
/// Frames the server cannot use (not valid JSON or not a valid frame, of an unknown type, too
/// large, or binary) a connection may send in a burst; then it is closed (1008). Parsing such
/// frames costs the server CPU (a megabyte each, at worst) and they are never part of a working
/// client's traffic, so a few are answered — a client bug should be visible, not fatal — and a
/// stream of them is not.
pub const DEFAULT_BAD_FRAME_BURST: u32 = 16;
/// Frames the server cannot use that a connection may send per minute, sustained, beyond
/// [`DEFAULT_BAD_FRAME_BURST`].
pub const DEFAULT_BAD_FRAMES_PER_MINUTE: u32 = 6;
/// Frames a connection may send before it has authenticated.
pub const DEFAULT_MAX_PREAUTH_FRAMES: u32 = 16;
/// Bytes a connection may send before it has authenticated: the TLS handshake, the websocket
/// upgrade and the frames up to `register` or `authenticate` take a few kilobytes, and up to
/// about 38 KB for a device linked to a person with a full device list (see
/// [`crate::preauth::MIN_BUDGET`]; a browser's requests for the web app's files on the same
/// connection, under a kilobyte each, count too: see [`crate::http`]); more is refused (see
/// [`crate::preauth`]), so that nobody can make the server hold large buffers without an
/// account.
pub const DEFAULT_MAX_PREAUTH_BYTES: usize = 64 * 1024;
/// Bytes of HTTP responses (the web app's files, [`crate::http`]) one connection may be sent
/// before it authenticates. A first load of the app takes a few MiB (the wasm twice at most,
/// in its plain and a compressed form), and a browser spreads it over a few connections; 64 MiB
/// is far above that and bounds what a request of a few dozen bytes can make the server queue
/// (a connection that would pass it is closed instead of answered). Each connection is also
/// bounded in time: its whole HTTP phase ends at the authentication deadline plus at most one
/// write timeout.
pub const DEFAULT_MAX_PREAUTH_SEND_BYTES: u64 = 64 * 1024 * 1024;
/// Time a new connection has to authenticate. A connection that only fetches the web app's
/// files (see [`crate::http`]) is closed then too; the browser opens a new one.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of websocket pings to detect half-open connections.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// A connection that sends nothing (not even a pong) for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// After an epoch change, posts in the previous epoch are still accepted for this long, so that
/// messages already in flight when a member joined are not lost.
pub const DEFAULT_EPOCH_GRACE: Duration = Duration::from_secs(60);
/// Largest number of ops, and of messages, in one sync page (each list separately; at most the
/// protocol's `MAX_SYNC_LIMIT`).
pub const DEFAULT_SYNC_PAGE_LIMIT: u32 = 500;
/// Largest total ciphertext in one `sync_page` or `inbox` frame (for an `inbox` frame, with
/// each item's encapsulation: [`crate::storage::inbox_item_bytes`]), well under the 8 MiB a
/// client accepts by default (base64 adds a third).
pub const DEFAULT_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// How often messages past a group's retention period are deleted.
pub const DEFAULT_RETENTION_SWEEP: Duration = Duration::from_secs(60);
/// Items one sender may have waiting in one device's inbox before it gets `inbox_full`: a tenth
/// of the inbox, so that one disruptive member cannot fill a facilitator's inbox and block
/// everyone else's reports and urgent requests.
pub const DEFAULT_MAX_INBOX_ITEMS_PER_SENDER: usize = 1_000;
/// Items of any kind, join requests included, a sender may have waiting in one device's inbox
/// for its join request to be accepted: a few, so that it takes many strangers to use up the
/// allowance all join requests to a device share.
pub const DEFAULT_MAX_JOIN_REQUESTS_PER_SENDER: usize = 5;
/// Items one device's inbox may hold before senders get `inbox_full`.
pub const DEFAULT_MAX_INBOX_ITEMS: usize = 10_000;
/// Sealed payloads in one `send_sealed` frame (at most the protocol's own per-frame cap).
pub const DEFAULT_MAX_SEALED_PER_FRAME: usize = confide_protocol::frames::MAX_SEALED_PER_FRAME;
/// Websocket read buffer per connection: small, because most connections are idle and rustls
/// already buffers whole TLS records beneath it (a larger frame grows the buffer as it arrives).
/// 4 KiB cost 3 KiB more per idle connection (BENCHMARKS.md).
pub const DEFAULT_WS_READ_BUFFER: usize = 1024;
/// Websocket write buffer per connection: frames queued for one connection are gathered up to
/// this size before they are handed to TLS, so that several deliveries share a TLS write and a
/// system call (4 KiB wrote every 4 KiB message on its own; 16 KiB cut the server's CPU per
/// delivered 4 KiB message by about an eighth, and 64 KiB did no better, BENCHMARKS.md). The
/// buffer grows only when a connection receives that much at once; idle connections never do.
pub const DEFAULT_WS_WRITE_BUFFER: usize = 16 * 1024;
/// Device lists one user may publish in any 24 hours (`publish_devices`, PROTOCOL.md §10.1):
/// linking and unlinking are rare, and every list costs each of the user's groups a new epoch.
pub const DEFAULT_MAX_DEVICE_LISTS_PER_DAY: u32 = 10;
/// The window of [`DEFAULT_MAX_DEVICE_LISTS_PER_DAY`] (fixed).
pub const DEVICE_LISTS_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// `update_devices` ops one member may append to one group in any hour: each starts a new
/// epoch, so a member churning them would make everyone rekey.
pub const DEFAULT_MAX_DEVICE_UPDATES_PER_HOUR: u32 = 4;
/// The window of [`DEFAULT_MAX_DEVICE_UPDATES_PER_HOUR`] (fixed).
pub const DEVICE_UPDATES_WINDOW: Duration = Duration::from_secs(3600);
/// How long (in ms), on the server's own clock, after it applied the op that started a group's
/// current epoch, the server refuses a `rekey` of that group (`rekey_too_soon`, PROTOCOL.md
/// §10.1): one minute, like the log's own bound on claimed times
/// (`confide_protocol::group_log::MIN_REKEY_INTERVAL_MS`), but measured where a member cannot
/// choose the time. Each `rekey` makes every device seal a new sender key to every other
/// device. The time is kept in memory: after a restart the interval starts again from when the
/// group was loaded.
pub const DEFAULT_MIN_REKEY_INTERVAL_MS: u64 = 60_000;
/// How long a link channel lives, and the authentication deadline of a connection in link mode
/// (from its `link_open`): time for two people to compare the numbers and confirm.
pub const DEFAULT_LINK_TIMEOUT: Duration = Duration::from_secs(600);
/// Frames a connection in link mode may send before it authenticates (instead of
/// [`DEFAULT_MAX_PREAUTH_FRAMES`]); a link takes about ten. Its byte budget stays
/// [`DEFAULT_MAX_PREAUTH_BYTES`].
pub const DEFAULT_MAX_LINK_FRAMES: u32 = 64;
/// Link channels open at once per address (an IPv4 address or an IPv6 /64): a channel costs
/// memory and a timer, and anyone may open one without an account.
pub const DEFAULT_MAX_LINK_CHANNELS_PER_IP: usize = 4;
/// Largest `data` (decoded) of a `link_send` from the device that opened the channel, which is
/// not authenticated (fixed by PROTOCOL.md §9.4; the joiner, which sends the bundle, is bound
/// only by the frame size).
pub const MAX_LINK_DATA_FROM_OPENER: usize = 4096;
/// Most bytes of `data` one link channel relays in all, both ways: a link is a few short
/// messages and one bundle of at most `MAX_LINK_BUNDLE_BYTES` (512 KiB, sealed and encoded),
/// and without a bound one channel could stream without end (between nodes too).
pub const MAX_LINK_BYTES_PER_CHANNEL: usize = 2 * 1024 * 1024;
/// The name bound into authentication signatures, so a signature for one server cannot be
/// replayed to another.
pub const DEFAULT_SERVER_NAME: &str = "localhost";
/// Other names accepted by default: the loopback addresses a local client dials.
pub const DEFAULT_SERVER_ALIASES: [&str; 2] = ["127.0.0.1", "::1"];

impl Limits {
    /// Every name an authentication signature may be made under.
    pub fn accepted_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.server_name.as_str())
            .chain(self.server_aliases.iter().map(String::as_str))
    }
}

/// The relay's limits and policies.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The name announced in every challenge. Clients sign the name they dialled; the server
    /// accepts a signature under this name or any of [`Self::server_aliases`].
    pub server_name: String,
    /// Other names clients may dial this server by.
    pub server_aliases: Vec<String>,
    /// If set, registering a new device requires this token.
    pub registration_token: Option<String>,
    /// See [`DEFAULT_MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// See [`DEFAULT_OUTBOUND_QUEUE`].
    pub outbound_queue: usize,
    /// See [`DEFAULT_MAX_UNAUTHENTICATED_PER_IP`].
    pub max_unauthenticated_per_ip: usize,
    /// See [`DEFAULT_MAX_AUTHENTICATED_PER_IP`].
    pub max_authenticated_per_ip: usize,
    /// See [`DEFAULT_OUTBOUND_QUEUE_BYTES`].
    pub outbound_queue_bytes: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS_PER_DEVICE`].
    pub max_connections_per_device: usize,
    /// See [`DEFAULT_RATE_PER_SECOND`].
    pub rate_per_second: u32,
    /// See [`DEFAULT_RATE_BURST`].
    pub rate_burst: u32,
    /// See [`DEFAULT_INBOX_ACKS_PER_SECOND`].
    pub inbox_acks_per_second: u32,
    /// See [`DEFAULT_INBOX_ACK_BURST`].
    pub inbox_ack_burst: u32,
    /// See [`DEFAULT_AUTH_TIMEOUT`].
    pub auth_timeout: Duration,
    /// See [`DEFAULT_REGISTRATIONS_PER_HOUR`].
    pub registrations_per_hour: u32,
    /// See [`DEFAULT_REGISTRATION_BURST`].
    pub registration_burst: u32,
    /// See [`DEFAULT_MAX_PREAUTH_FRAMES`].
    pub max_preauth_frames: u32,
    /// See [`DEFAULT_BAD_FRAME_BURST`].
    pub bad_frame_burst: u32,
    /// See [`DEFAULT_BAD_FRAMES_PER_MINUTE`].
    pub bad_frames_per_minute: u32,
    /// See [`DEFAULT_MAX_PREAUTH_BYTES`].
    pub max_preauth_bytes: usize,
    /// See [`DEFAULT_MAX_PREAUTH_SEND_BYTES`].
    pub max_preauth_send_bytes: u64,
    /// See [`DEFAULT_MAX_GROUPS_CREATED_PER_DEVICE`].
    pub max_groups_created_per_device: usize,
    /// See [`DEFAULT_PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// See [`DEFAULT_CLOSE_LINGER`].
    pub close_linger: Duration,
    /// See [`DEFAULT_RETENTION_SWEEP`].
    pub retention_sweep: Duration,
    /// See [`DEFAULT_EPOCH_GRACE`].
    pub epoch_grace: Duration,
    /// See [`DEFAULT_SYNC_PAGE_LIMIT`].
    pub sync_page_limit: u32,
    /// See [`DEFAULT_MAX_INBOX_ITEMS`].
    pub max_inbox_items: usize,
    /// See [`DEFAULT_MAX_INBOX_ITEMS_PER_SENDER`].
    pub max_inbox_items_per_sender: usize,
    /// See [`DEFAULT_MAX_JOIN_REQUESTS_PER_SENDER`].
    pub max_join_requests_per_sender: usize,
    /// See [`DEFAULT_PAGE_BYTES`].
    pub page_bytes: usize,
    /// See [`DEFAULT_MAX_SEALED_PER_FRAME`].
    pub max_sealed_per_frame: usize,
    /// See [`DEFAULT_WS_READ_BUFFER`].
    pub ws_read_buffer: usize,
    /// See [`DEFAULT_WS_WRITE_BUFFER`].
    pub ws_write_buffer: usize,
    /// See [`crate::writer::DEFAULT_WRITE_QUEUE`].
    pub write_queue: usize,
    /// See [`crate::writer::DEFAULT_MAX_BATCH`].
    pub max_batch: usize,
    /// See [`crate::writer::DEFAULT_MAX_BATCH_BYTES`].
    pub max_batch_bytes: usize,
    /// See [`DEFAULT_MAX_DEVICE_LISTS_PER_DAY`].
    pub max_device_lists_per_day: u32,
    /// See [`DEFAULT_MAX_DEVICE_UPDATES_PER_HOUR`].
    pub max_device_updates_per_hour: u32,
    /// See [`DEFAULT_MIN_REKEY_INTERVAL_MS`] (0 turns the server's own bound off; the log's
    /// bound on claimed times stays).
    pub min_rekey_interval: Duration,
    /// See [`DEFAULT_LINK_TIMEOUT`].
    pub link_timeout: Duration,
    /// See [`DEFAULT_MAX_LINK_FRAMES`].
    pub max_link_frames: u32,
    /// See [`DEFAULT_MAX_LINK_CHANNELS_PER_IP`].
    pub max_link_channels_per_ip: usize,
    /// The one deadline of graceful shutdown: closing connections, then letting the writer
    /// finish the writes already queued, all within it; then it completes anyway (nothing
    /// unfinished was acknowledged). Bounds shutdown when the disk stalls. See
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
    /// How long one durable write may take before the server decides the disk has stopped
    /// answering and shuts down (gracefully, within `shutdown_timeout`) so that a supervisor
    /// restarts it; see [`DEFAULT_STUCK_WRITE_TIMEOUT`].
    pub stuck_write_timeout: Duration,
    /// The web app served on the websocket's port: its files (none by default, and every path
    /// then answers that the app is not installed), the Content-Security-Policy and whether to
    /// send HSTS. See [`crate::web`].
    pub web: crate::web::WebSettings,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            server_name: DEFAULT_SERVER_NAME.to_string(),
            server_aliases: DEFAULT_SERVER_ALIASES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            registration_token: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            max_unauthenticated_per_ip: DEFAULT_MAX_UNAUTHENTICATED_PER_IP,
            max_authenticated_per_ip: DEFAULT_MAX_AUTHENTICATED_PER_IP,
            outbound_queue_bytes: DEFAULT_OUTBOUND_QUEUE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_device: DEFAULT_MAX_CONNECTIONS_PER_DEVICE,
            rate_per_second: DEFAULT_RATE_PER_SECOND,
            rate_burst: DEFAULT_RATE_BURST,
            inbox_acks_per_second: DEFAULT_INBOX_ACKS_PER_SECOND,
            inbox_ack_burst: DEFAULT_INBOX_ACK_BURST,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            registrations_per_hour: DEFAULT_REGISTRATIONS_PER_HOUR,
            registration_burst: DEFAULT_REGISTRATION_BURST,
            max_preauth_frames: DEFAULT_MAX_PREAUTH_FRAMES,
            bad_frame_burst: DEFAULT_BAD_FRAME_BURST,
            bad_frames_per_minute: DEFAULT_BAD_FRAMES_PER_MINUTE,
            max_preauth_bytes: DEFAULT_MAX_PREAUTH_BYTES,
            max_preauth_send_bytes: DEFAULT_MAX_PREAUTH_SEND_BYTES,
            max_groups_created_per_device: DEFAULT_MAX_GROUPS_CREATED_PER_DEVICE,
            ping_interval: DEFAULT_PING_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            close_linger: DEFAULT_CLOSE_LINGER,
            retention_sweep: DEFAULT_RETENTION_SWEEP,
            epoch_grace: DEFAULT_EPOCH_GRACE,
            sync_page_limit: DEFAULT_SYNC_PAGE_LIMIT,
            max_inbox_items: DEFAULT_MAX_INBOX_ITEMS,
            max_inbox_items_per_sender: DEFAULT_MAX_INBOX_ITEMS_PER_SENDER,
            max_join_requests_per_sender: DEFAULT_MAX_JOIN_REQUESTS_PER_SENDER,
            page_bytes: DEFAULT_PAGE_BYTES,
            max_sealed_per_frame: DEFAULT_MAX_SEALED_PER_FRAME,
            ws_read_buffer: DEFAULT_WS_READ_BUFFER,
            ws_write_buffer: DEFAULT_WS_WRITE_BUFFER,
            write_queue: DEFAULT_WRITE_QUEUE,
            max_batch: DEFAULT_MAX_BATCH,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_device_lists_per_day: DEFAULT_MAX_DEVICE_LISTS_PER_DAY,
            max_device_updates_per_hour: DEFAULT_MAX_DEVICE_UPDATES_PER_HOUR,
            min_rekey_interval: Duration::from_millis(DEFAULT_MIN_REKEY_INTERVAL_MS),
            link_timeout: DEFAULT_LINK_TIMEOUT,
            max_link_frames: DEFAULT_MAX_LINK_FRAMES,
            max_link_channels_per_ip: DEFAULT_MAX_LINK_CHANNELS_PER_IP,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            stuck_write_timeout: DEFAULT_STUCK_WRITE_TIMEOUT,
            web: crate::web::WebSettings::default(),
        }
    }
}

/// The optional TOML config file: every key is optional and overrides the default; flags
/// override the file. Durations are in milliseconds.
///
/// ```toml
/// listen = "0.0.0.0:7443"
/// data_dir = "/var/lib/confide"
/// tls_cert = "/etc/confide/cert.pem"
/// tls_key = "/etc/confide/key.pem"
/// metrics_listen = "127.0.0.1:9100"
/// web_dir = "/srv/confide/web"
/// web_relay = "wss://relay.example.org/"
/// server_name = "confide.example.org"
/// server_aliases = ["chat.example.org"]
/// registration_token = "let-me-in"
/// max_frame_bytes = 262144
/// rate_per_second = 50
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<std::path::PathBuf>,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub metrics_listen: Option<String>,
    pub server_name: Option<String>,
    pub server_aliases: Option<Vec<String>>,
    pub registration_token: Option<String>,
    pub max_frame_bytes: Option<usize>,
    pub outbound_queue: Option<usize>,
    /// Also accepted under its older name `max_connections_per_ip` (which counted every
    /// connection; now unauthenticated ones are counted apart, against this limit).
    #[serde(alias = "max_connections_per_ip")]
    pub max_unauthenticated_per_ip: Option<usize>,
    pub max_authenticated_per_ip: Option<usize>,
    pub outbound_queue_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_device: Option<usize>,
    pub rate_per_second: Option<u32>,
    pub rate_burst: Option<u32>,
    pub inbox_acks_per_second: Option<u32>,
    pub inbox_ack_burst: Option<u32>,
    pub auth_timeout_ms: Option<u64>,
    pub registrations_per_hour: Option<u32>,
    pub registration_burst: Option<u32>,
    pub max_preauth_frames: Option<u32>,
    pub bad_frame_burst: Option<u32>,
    pub bad_frames_per_minute: Option<u32>,
    pub max_preauth_bytes: Option<usize>,
    pub max_preauth_send_bytes: Option<u64>,
    pub max_groups_created_per_device: Option<usize>,
    pub ping_interval_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub close_linger_ms: Option<u64>,
    pub retention_sweep_ms: Option<u64>,
    pub epoch_grace_ms: Option<u64>,
    pub sync_page_limit: Option<u32>,
    pub max_inbox_items: Option<usize>,
    pub max_inbox_items_per_sender: Option<usize>,
    pub max_join_requests_per_sender: Option<usize>,
    pub page_bytes: Option<usize>,
    pub max_sealed_per_frame: Option<usize>,
    pub ws_read_buffer: Option<usize>,
    pub ws_write_buffer: Option<usize>,
    pub write_queue: Option<usize>,
    pub max_batch: Option<usize>,
    pub max_batch_bytes: Option<usize>,
    pub shutdown_timeout_ms: Option<u64>,
    pub stuck_write_timeout_ms: Option<u64>,
    pub max_device_lists_per_day: Option<u32>,
    pub max_device_updates_per_hour: Option<u32>,
    pub min_rekey_interval_ms: Option<u64>,
    pub link_timeout_ms: Option<u64>,
    pub max_link_frames: Option<u32>,
    pub max_link_channels_per_ip: Option<usize>,
    /// Where data is stored: a PostgreSQL URL (`postgres://user@host:5432/confide` or
    /// `postgresql://…`) for several server nodes sharing one database
    /// ([`crate::storage::PostgresStorage`]). Without it, sled in `data_dir`. The `--storage`
    /// flag wins.
    pub storage: Option<String>,
    /// The NATS server of a deployment of several nodes ([`crate::cluster`]); needs `storage`.
    /// The `--nats` flag wins.
    pub nats: Option<String>,
    /// The deployment's NATS subject prefix (default `confide`). The `--nats-prefix` flag wins.
    pub nats_prefix: Option<String>,
    /// sled's page cache in bytes (default [`crate::storage::DEFAULT_CACHE_BYTES`]).
    pub storage_cache_bytes: Option<u64>,
    /// Bytes that must stay free on the database's disk for writes to go ahead (default
    /// [`crate::storage::DEFAULT_MIN_FREE_BYTES`]).
    pub storage_min_free_bytes: Option<u64>,
    /// Message ids the embedded store keeps in memory (default
    /// [`crate::storage::DEFAULT_IDS_IN_MEMORY`]).
    pub storage_ids_in_memory: Option<usize>,
    /// The web app's directory (a build's output with its `asset-manifest.json`), served on
    /// the websocket's port; see [`crate::web`]. The `--web-dir` flag wins.
    pub web_dir: Option<std::path::PathBuf>,
    /// Sources added to the web app's `connect-src` after `'self'`, space-separated (for an
    /// app hosted on another origin that talks to this relay). The `--web-connect-src` flag
    /// wins.
    pub web_connect_src: Option<String>,
    /// The relay the web app served here connects to instead of this server
    /// (`wss://relay.example.org/`), added to its `connect-src` and served at
    /// `/web-config.json` (see [`crate::web::WebSettings::with_relay`]). The `--web-relay` flag
    /// wins.
    pub web_relay: Option<String>,
    /// Bytes the web app may hold in memory, all files and their compressed forms (default
    /// [`crate::web::DEFAULT_WEB_MAX_BYTES`]).
    pub web_max_bytes: Option<usize>,
}

impl FileConfig {
    /// Parses a TOML config file's text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The runtime configuration: defaults overridden by this file's values.
    pub fn apply_to(&self, mut c: Limits) -> Limits {
        let ms = Duration::from_millis;
        if let Some(v) = &self.server_name {
            c.server_name = v.clone()
        }
        if let Some(v) = &self.server_aliases {
            c.server_aliases = v.clone()
        }
        if let Some(v) = &self.registration_token {
            c.registration_token = Some(v.clone())
        }
        if let Some(v) = self.max_frame_bytes {
            c.max_frame_bytes = v
        }
        if let Some(v) = self.outbound_queue_bytes {
            c.outbound_queue_bytes = v
        }
        if let Some(v) = self.max_unauthenticated_per_ip {
            c.max_unauthenticated_per_ip = v
        }
        if let Some(v) = self.max_authenticated_per_ip {
            c.max_authenticated_per_ip = v
        }
        if let Some(v) = self.outbound_queue {
            c.outbound_queue = v
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v
        }
        if let Some(v) = self.max_connections_per_device {
            c.max_connections_per_device = v
        }
        if let Some(v) = self.rate_per_second {
            c.rate_per_second = v
        }
        if let Some(v) = self.rate_burst {
            c.rate_burst = v
        }
        if let Some(v) = self.inbox_acks_per_second {
            c.inbox_acks_per_second = v
        }
        if let Some(v) = self.inbox_ack_burst {
            c.inbox_ack_burst = v
        }
        if let Some(v) = self.registrations_per_hour {
            c.registrations_per_hour = v
        }
        if let Some(v) = self.registration_burst {
            c.registration_burst = v
        }
        if let Some(v) = self.max_preauth_frames {
            c.max_preauth_frames = v
        }
        if let Some(v) = self.bad_frame_burst {
            c.bad_frame_burst = v
        }
        if let Some(v) = self.bad_frames_per_minute {
            c.bad_frames_per_minute = v
        }
        if let Some(v) = self.max_preauth_bytes {
            c.max_preauth_bytes = v
        }
        if let Some(v) = self.max_preauth_send_bytes {
            c.max_preauth_send_bytes = v
        }
        if let Some(v) = self.max_groups_created_per_device {
            c.max_groups_created_per_device = v
        }
        if let Some(v) = self.auth_timeout_ms {
            c.auth_timeout = ms(v)
        }
        if let Some(v) = self.ping_interval_ms {
            c.ping_interval = ms(v)
        }
        if let Some(v) = self.retention_sweep_ms {
            c.retention_sweep = ms(v)
        }
        if let Some(v) = self.write_timeout_ms {
            c.write_timeout = ms(v)
        }
        if let Some(v) = self.close_linger_ms {
            c.close_linger = ms(v)
        }
        if let Some(v) = self.idle_timeout_ms {
            c.idle_timeout = ms(v)
        }
        if let Some(v) = self.epoch_grace_ms {
            c.epoch_grace = ms(v)
        }
        if let Some(v) = self.sync_page_limit {
            c.sync_page_limit = v
        }
        if let Some(v) = self.page_bytes {
            c.page_bytes = v
        }
        if let Some(v) = self.max_inbox_items {
            c.max_inbox_items = v
        }
        if let Some(v) = self.max_inbox_items_per_sender {
            c.max_inbox_items_per_sender = v
        }
        if let Some(v) = self.max_join_requests_per_sender {
            c.max_join_requests_per_sender = v
        }
        if let Some(v) = self.max_sealed_per_frame {
            c.max_sealed_per_frame = v
        }
        if let Some(v) = self.ws_read_buffer {
            c.ws_read_buffer = v
        }
        if let Some(v) = self.ws_write_buffer {
            c.ws_write_buffer = v
        }
        if let Some(v) = self.write_queue {
            c.write_queue = v
        }
        if let Some(v) = self.shutdown_timeout_ms {
            c.shutdown_timeout = Duration::from_millis(v).max(MIN_SHUTDOWN_TIMEOUT)
        }
        if let Some(v) = self.stuck_write_timeout_ms {
            c.stuck_write_timeout = Duration::from_millis(v).max(MIN_STUCK_WRITE_TIMEOUT)
        }
        if let Some(v) = self.max_batch {
            c.max_batch = v
        }
        if let Some(v) = self.max_batch_bytes {
            c.max_batch_bytes = v
        }
        if let Some(v) = self.max_device_lists_per_day {
            c.max_device_lists_per_day = v
        }
        if let Some(v) = self.max_device_updates_per_hour {
            c.max_device_updates_per_hour = v
        }
        if let Some(v) = self.min_rekey_interval_ms {
            c.min_rekey_interval = ms(v)
        }
        if let Some(v) = self.link_timeout_ms {
            c.link_timeout = ms(v)
        }
        if let Some(v) = self.max_link_frames {
            c.max_link_frames = v
        }
        if let Some(v) = self.max_link_channels_per_ip {
            c.max_link_channels_per_ip = v
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let file = FileConfig::parse("rate_per_second = 5\nidle_timeout_ms = 1000\n").unwrap();
        let c = file.apply_to(Limits::default());
        assert_eq!(c.rate_per_second, 5);
        assert_eq!(c.idle_timeout, Duration::from_millis(1000));
        assert_eq!(c.max_frame_bytes, DEFAULT_MAX_FRAME_BYTES);
        assert_eq!(
            c.min_rekey_interval,
            Duration::from_millis(DEFAULT_MIN_REKEY_INTERVAL_MS)
        );
        let file = FileConfig::parse("min_rekey_interval_ms = 600000\n").unwrap();
        let c = file.apply_to(Limits::default());
        assert_eq!(c.min_rekey_interval, Duration::from_secs(600));
        assert!(FileConfig::parse("rate_per_secnd = 5").is_err());
    }

    #[test]
    fn a_config_file_can_name_a_postgresql_database() {
        let file = FileConfig::parse("storage = \"postgres://confide@db/confide\"\n").unwrap();
        assert_eq!(
            file.storage.as_deref(),
            Some("postgres://confide@db/confide")
        );
    }

    #[test]
    fn the_per_address_limit_keeps_its_older_name_in_config_files() {
        for key in ["max_unauthenticated_per_ip", "max_connections_per_ip"] {
            let file = FileConfig::parse(&format!("{key} = 7")).unwrap();
            assert_eq!(
                file.apply_to(Limits::default()).max_unauthenticated_per_ip,
                7
            );
        }
    }

    #[test]
    fn timeouts_that_would_stop_the_server_at_once_are_raised_to_their_floor() {
        let file = FileConfig::parse(
            "stuck_write_timeout_ms = 0
shutdown_timeout_ms = 0
",
        )
        .unwrap();
        let c = file.apply_to(Limits::default());
        assert_eq!(c.stuck_write_timeout, MIN_STUCK_WRITE_TIMEOUT);
        assert_eq!(c.shutdown_timeout, MIN_SHUTDOWN_TIMEOUT);
    }
}
