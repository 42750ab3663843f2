//! Dialling the server under test and the protocol set-up every scenario shares: registering
//! devices, authenticating, and building groups of members with real signed group-log ops.
//!
//! The harness speaks the wire protocol directly (not through `confide_client::Connection`)
//! because it must bind each socket to a chosen 127.0.0.x source address, size its receive
//! buffer, and read delivered frames without fully parsing them.

use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use confide_protocol::frames::{self, ClientFrame, PROTOCOL_VERSION, ServerFrame};
use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, Op, OpBody};
use confide_protocol::{DeviceIdentity, EpochRef, GroupId, RequestId, UserId};

/// The name the harness dials and signs authentication under (the server's default name).
pub const SERVER_NAME: &str = "localhost";
/// How long set-up waits for any one reply before the scenario fails.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Client-side websocket read buffer: small, because the memory scenario holds thousands of
/// client connections in the harness process too.
const CLIENT_READ_BUFFER: usize = 8 * 1024;

/// Cryptographic randomness from the OS.
pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// A TCP or TLS byte stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A client websocket to the server under test.
pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Where and how to dial.
#[derive(Clone)]
pub struct Target {
    /// The server's listening address.
    pub addr: SocketAddr,
    /// TLS client configuration pinning the server's certificate, or `None` for plain
    /// websockets (the bare relay).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// How to open one socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct DialOptions {
    /// Bind to this local address first (spreads connections over 127.0.0.x).
    pub source: Option<IpAddr>,
    /// Socket receive buffer (a small one makes a stalled reader back up quickly).
    pub recv_buffer: Option<u32>,
}

/// Opens a websocket to `target` at `path`.
pub async fn dial(target: &Target, path: &str, options: DialOptions) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = options.source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding a client socket to {ip}"))?;
    }
    if let Some(bytes) = options.recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let tcp = socket
        .connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    tcp.set_nodelay(true)?;
    let port = target.addr.port();
    let (stream, url): (Box<dyn Io>, String) = match &target.tls {
        Some(config) => {
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let name = rustls::pki_types::ServerName::try_from(SERVER_NAME)?;
            let tls = connector
                .connect(name, tcp)
                .await
                .context("TLS handshake")?;
            (Box::new(tls), format!("wss://{SERVER_NAME}:{port}{path}"))
        }
        None => (Box::new(tcp), format!("ws://{SERVER_NAME}:{port}{path}")),
    };
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("websocket handshake")?;
    Ok(ws)
}

/// The `n`-th source address of `count`: 127.0.0.2, 127.0.0.3, …
pub fn source_address(n: usize, count: usize) -> IpAddr {
    let i = (n % count.max(1)) as u8;
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2u8.saturating_add(i)))
}

/// One device: its keys, its user and its display name.
pub struct Device {
    /// The device's keys.
    pub identity: DeviceIdentity,
    /// The device's user.
    pub user: UserId,
    /// Display name (must pass the group log's member-entry rules).
    pub name: String,
}

impl Device {
    /// A fresh device of a fresh user.
    pub fn generate(name: &str) -> Device {
        Device {
            identity: DeviceIdentity::generate(&mut rng()),
            user: UserId::random(&mut rng()),
            name: name.to_string(),
        }
    }

    /// This device's member entry for group-log ops.
    pub fn entry(&self) -> MemberEntry {
        MemberEntry {
            user: self.user,
            display_name: self.name.clone(),
            devices: vec![self.identity.public_keys()],
            device_list: None,
        }
    }
}

/// Receives the next protocol frame, skipping websocket control messages.
pub async fn recv_frame(ws: &mut Ws) -> anyhow::Result<ServerFrame> {
    loop {
        let message = tokio::time::timeout(SETUP_TIMEOUT, ws.next())
            .await
            .map_err(|_| anyhow!("no frame from the server within {SETUP_TIMEOUT:?}"))?
            .ok_or_else(|| anyhow!("the server closed the connection"))??;
        match message {
            WsMessage::Text(text) => {
                return Ok(ServerFrame::from_json(
                    text.as_str(),
                    frames::DEFAULT_MAX_SERVER_FRAME_BYTES,
                )?);
            }
            WsMessage::Close(frame) => bail!("the server closed the connection: {frame:?}"),
            _ => continue,
        }
    }
}

/// Sends `frame` and waits for the reply to its request id, dropping live frames meanwhile.
pub async fn request(ws: &mut Ws, frame: &ClientFrame) -> anyhow::Result<ServerFrame> {
    let id = frame.request_id();
    ws.send(WsMessage::Text(frame.to_json()?.into())).await?;
    loop {
        let reply = recv_frame(ws).await?;
        if reply.request_id() == Some(id) {
            if let ServerFrame::Error { code, message, .. } = &reply {
                bail!(
                    "{} refused: {} ({message})",
                    frame.type_name(),
                    code.as_str()
                );
            }
            return Ok(reply);
        }
    }
}

/// Reads the challenge and answers it with `register` (new device) or `authenticate`.
async fn answer_challenge(ws: &mut Ws, device: &Device, register: bool) -> anyhow::Result<()> {
    let nonce = loop {
        if let ServerFrame::Challenge { nonce, .. } = recv_frame(ws).await? {
            break nonce;
        }
    };
    let signature = frames::sign_auth(&device.identity, SERVER_NAME, &nonce);
    let id = RequestId(1);
    let frame = if register {
        ClientFrame::Register {
            id,
            version: PROTOCOL_VERSION,
            user: device.user,
            display_name: device.name.clone(),
            keys: device.identity.public_keys(),
            registration_token: None,
            device_list: None,
            signature,
        }
    } else {
        ClientFrame::Authenticate {
            id,
            version: PROTOCOL_VERSION,
            device: device.identity.device_id(),
            signature,
        }
    };
    match request(ws, &frame).await? {
        ServerFrame::Authenticated { .. } => Ok(()),
        other => bail!("expected authenticated, got {}", other.type_name()),
    }
}

/// Dials and registers `device`; the connection is authenticated as it.
pub async fn connect_new(
    target: &Target,
    device: &Device,
    options: DialOptions,
) -> anyhow::Result<Ws> {
    let mut ws = dial(target, "/", options).await?;
    answer_challenge(&mut ws, device, true).await?;
    Ok(ws)
}

/// Dials and authenticates an already registered `device`.
pub async fn connect_existing(
    target: &Target,
    device: &Device,
    options: DialOptions,
) -> anyhow::Result<Ws> {
    let mut ws = dial(target, "/", options).await?;
    answer_challenge(&mut ws, device, false).await?;
    Ok(ws)
}

/// A group as the harness holds it: its id, current epoch and each member's connection.
pub struct Group {
    /// The group.
    pub id: GroupId,
    /// The epoch every envelope must name (after the last `add`).
    pub epoch: EpochRef,
    /// Members in order; member 0 is the facilitator who created the group.
    pub members: Vec<Device>,
    /// Each member's authenticated connection, in the same order.
    pub conns: Vec<Ws>,
    /// The server node each member is connected to, in the same order (all 0 with one server).
    pub nodes: Vec<u8>,
}

/// Registers `size` new devices (member `i` dialling with `options[i]`) and makes them one
/// group: member 0 signs the genesis op and adds every other member with a signed `add` op,
/// exactly as a facilitator's client would.
pub async fn confide_group(
    target: &Target,
    size: usize,
    label: &str,
    options: &[DialOptions],
) -> anyhow::Result<Group> {
    confide_group_across(std::slice::from_ref(target), 0, size, label, options).await
}

/// Like [`confide_group`], with the members spread round-robin over the server nodes
/// `targets` (of one deployment), member `i` on node `(first + i) % targets.len()`: the
/// facilitator creates the group and adds the others through its own node.
pub async fn confide_group_across(
    targets: &[Target],
    first: usize,
    size: usize,
    label: &str,
    options: &[DialOptions],
) -> anyhow::Result<Group> {
    if targets.is_empty() || targets.len() > usize::from(u8::MAX) {
        bail!("a group needs 1 to 255 server nodes, not {}", targets.len());
    }
    let members: Vec<Device> = (0..size)
        .map(|i| Device::generate(&format!("{label} {i}")))
        .collect();
    let nodes: Vec<u8> = (0..size)
        .map(|i| u8::try_from((first + i) % targets.len()))
        .collect::<Result<_, _>>()?;
    let mut conns = Vec::with_capacity(size);
    for (i, device) in members.iter().enumerate() {
        let options = options.get(i).copied().unwrap_or_default();
        let target = &targets[usize::from(nodes[i])];
        conns.push(connect_new(target, device, options).await?);
    }
    let facilitator = &members[0];
    let genesis = Op::genesis(
        GroupId::random(&mut rng()),
        facilitator.identity.device_id(),
        confide_server::server::now(),
        facilitator.entry(),
        GroupSettings::default(),
    )
    .sign(&facilitator.identity)?;
    let mut state = GroupState::from_genesis(&genesis)?;
    let group = state.group();
    let ws = &mut conns[0];
    request(
        ws,
        &ClientFrame::CreateGroup {
            id: RequestId(2),
            genesis,
        },
    )
    .await?;
    for (i, member) in members.iter().enumerate().skip(1) {
        let op = state
            .next_op(
                facilitator.identity.device_id(),
                confide_server::server::now(),
                OpBody::Add {
                    member: member.entry(),
                    invite: None,
                    invite_sig: None,
                    invite_device: None,
                },
            )
            .sign(&facilitator.identity)?;
        let frame = ClientFrame::AppendOp {
            id: RequestId(2 + i as u64),
            group,
            op: op.clone(),
        };
        request(ws, &frame).await?;
        state.apply(&op)?;
    }
    Ok(Group {
        id: group,
        epoch: state.epoch_ref(),
        members,
        conns,
        nodes,
    })
}

/// Connects `size` members of group number `index` to the bare relay. The relay has no
/// accounts: the group is the URL path. Devices are still generated so that both servers carry
/// byte-for-byte the same posts.
pub async fn relay_group(
    target: &Target,
    index: usize,
    size: usize,
    options: &[DialOptions],
) -> anyhow::Result<Group> {
    let members: Vec<Device> = (0..size)
        .map(|i| Device::generate(&format!("Relay {index} {i}")))
        .collect();
    let mut conns = Vec::with_capacity(size);
    for i in 0..size {
        let options = options.get(i).copied().unwrap_or_default();
        conns.push(dial(target, &format!("/g/{index}"), options).await?);
    }
    Ok(Group {
        id: GroupId::random(&mut rng()),
        epoch: EpochRef {
            epoch: confide_protocol::Epoch(0),
            hash: confide_protocol::OpHash::ZERO,
        },
        nodes: vec![0; size],
        members,
        conns,
    })
}
