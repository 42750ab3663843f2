//! The client core's half of the wasm size probe: a [`ClientCore`] over a [`MemoryStore`],
//! exported through wasm-bindgen with the calls a browser client's interface makes (open,
//! connect, create and join groups, send, receive a frame, history, members, moderation,
//! reports, pinned texts), so that everything they reach is kept by the linker and measured by
//! `cargo xtask wasm-size` together with the protocol.
//!
//! Like [`crate::size_probe`] this is a measuring device, not the browser client: the link to
//! the server is three JavaScript functions (dial, send, receive, each returning a promise),
//! the clock is `Date.now()`, and randomness is a ChaCha generator seeded from JavaScript (a
//! real client seeds from `crypto.getRandomValues`, a few hundred bytes more). Results that
//! the core has no serialisation for are returned as their `Debug` text, about what a real
//! client's conversion would cost.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use confide_client_core::{
    ClientCore, ClientError, Event, Host, Invite, InviteOptions, Link, MemoryStore, Network,
    Profile, TransportError,
};
use confide_protocol::envelope::PinnedKind;
use confide_protocol::frames::{ClientFrame, DEFAULT_MAX_SERVER_FRAME_BYTES, ServerFrame};
use confide_protocol::group_log::OpBody;
use confide_protocol::{DeviceIdentity, GroupId, MessageId, Seq, Timestamp, UserId};
use js_sys::{Function, Promise};
use rand_core::{Rng as _, SeedableRng as _};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

/// A JavaScript failure, as the transport error the core expects.
fn js_failure(value: JsValue) -> TransportError {
    TransportError::Io(
        value
            .as_string()
            .unwrap_or_else(|| "JavaScript error".into()),
    )
}

/// Calls `f` with `args` and waits for the promise it returns.
async fn call(f: &Function, args: &[JsValue]) -> Result<JsValue, TransportError> {
    let returned = match args {
        [] => f.call0(&JsValue::NULL),
        [a] => f.call1(&JsValue::NULL, a),
        [a, b, ..] => f.call2(&JsValue::NULL, a, b),
    }
    .map_err(js_failure)?;
    JsFuture::from(Promise::resolve(&returned))
        .await
        .map_err(js_failure)
}

/// Dials through JavaScript: `dial()` resolves to the host name dialled.
struct JsNet {
    dial: Function,
    send: Function,
    recv: Function,
}

/// One connection, through JavaScript: `send(json)` sends a frame, `recv(ms)` resolves to the
/// next frame's JSON or `null` when none came in time.
struct JsLink {
    host: String,
    send: Function,
    recv: Function,
}

impl Network for JsNet {
    type Link = JsLink;

    async fn dial(&mut self) -> Result<JsLink, ClientError> {
        let host = call(&self.dial, &[]).await?;
        Ok(JsLink {
            host: host.as_string().unwrap_or_default(),
            send: self.send.clone(),
            recv: self.recv.clone(),
        })
    }
}

impl Link for JsLink {
    fn host(&self) -> &str {
        &self.host
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        let text = frame.to_json()?;
        call(&self.send, &[JsValue::from_str(&text)]).await?;
        Ok(())
    }

    async fn recv(&mut self, within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        let ms = JsValue::from_f64(within.as_millis() as f64);
        let text = call(&self.recv, &[ms]).await?;
        match text.as_string() {
            Some(text) => Ok(Some(ServerFrame::from_json(
                &text,
                DEFAULT_MAX_SERVER_FRAME_BYTES,
            )?)),
            None => Ok(None),
        }
    }

    async fn close(self) {}
}

/// The page's clock, a seeded generator, and the events waiting for [`Client::take_events`].
struct PageHost {
    rng: ChaCha20Rng,
    events: Rc<RefCell<Vec<Event>>>,
}

impl Host for PageHost {
    fn now(&self) -> Timestamp {
        Timestamp(js_sys::Date::now() as u64)
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        self.rng.fill_bytes(out);
    }

    fn event(&mut self, event: Event) {
        self.events.borrow_mut().push(event);
    }
}

type Core = ClientCore<MemoryStore, JsNet>;

/// One device's client core, for JavaScript. Every method returns a promise; calls must not
/// overlap (a second call while one runs is refused).
#[wasm_bindgen]
pub struct Client {
    /// `None` while a call runs. Never borrowed across an await: taken, then put back.
    core: Rc<RefCell<Option<Core>>>,
    events: Rc<RefCell<Vec<Event>>>,
}

fn group_id(bytes: &[u8]) -> Result<GroupId, JsError> {
    Ok(GroupId(
        bytes
            .try_into()
            .map_err(|_| JsError::new("a group id is 16 bytes"))?,
    ))
}

fn user_id(bytes: &[u8]) -> Result<UserId, JsError> {
    Ok(UserId(
        bytes
            .try_into()
            .map_err(|_| JsError::new("a user id is 16 bytes"))?,
    ))
}

fn debug(value: &impl std::fmt::Debug) -> JsValue {
    JsValue::from_str(&format!("{value:?}"))
}

/// Runs `$body` with `$core` taken out of `$client` for the call and put back after it, as a
/// promise. A call made while another runs finds no core and is refused.
macro_rules! with_core {
    ($client:expr, |$core:ident| $body:expr) => {{
        let cell = $client.core.clone();
        future_to_promise(async move {
            let mut taken = cell
                .borrow_mut()
                .take()
                .ok_or_else(|| JsError::new("the client is busy with another call"))?;
            let $core: &mut Core = &mut taken;
            let result: Result<JsValue, JsError> = async { $body }.await;
            *cell.borrow_mut() = Some(taken);
            result.map_err(JsValue::from)
        })
    }};
}

/// A new device of a new user (random ids from `seed`, 32 bytes), reaching the server through
/// `dial`, `send` and `recv` (see [`JsLink`]). Not connected yet.
#[wasm_bindgen]
pub async fn client_open(
    seed: Vec<u8>,
    display_name: String,
    dial: Function,
    send: Function,
    recv: Function,
) -> Result<Client, JsError> {
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| JsError::new("the random seed must be 32 bytes"))?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    let identity = DeviceIdentity::generate(&mut rng);
    let mut user = [0u8; 16];
    rng.fill_bytes(&mut user);
    let store = MemoryStore::new();
    let profile = Profile::new(UserId(user), display_name);
    confide_client_core::profile::create(&store, &identity, &profile).await?;
    let events = Rc::new(RefCell::new(Vec::new()));
    let host = PageHost {
        rng,
        events: events.clone(),
    };
    let net = JsNet { dial, send, recv };
    let core = ClientCore::new(store, net, Box::new(host), identity, profile, None).await?;
    Ok(Client {
        core: Rc::new(RefCell::new(Some(core))),
        events,
    })
}

#[wasm_bindgen]
impl Client {
    /// Connects, authenticates (registering the first time) and resyncs.
    pub fn connect(&self) -> Promise {
        with_core!(self, |core| {
            match core.connect().await {
                Ok(()) => core.after_connect().await,
                Err(e) => {
                    core.connect_failed(e.to_string()).await;
                    return Err(e.into());
                }
            }
            Ok(JsValue::TRUE)
        })
    }

    /// A frame the server pushed (JSON), handled as one step.
    pub fn receive(&self, frame: String) -> Promise {
        with_core!(self, |core| {
            let frame = ServerFrame::from_json(&frame, DEFAULT_MAX_SERVER_FRAME_BYTES)?;
            core.receive(frame).await;
            core.after_input().await;
            Ok(JsValue::TRUE)
        })
    }

    /// The connection dropped.
    pub fn connection_lost(&self, reason: String) -> Promise {
        with_core!(self, |core| {
            core.connection_lost(reason).await;
            Ok(JsValue::TRUE)
        })
    }

    /// Posts the outbox again if its retry is due: when the next one is (ms), or `null`.
    pub fn retry(&self) -> Promise {
        with_core!(self, |core| {
            let now = js_sys::Date::now() as u64;
            if core.retry_due_at().is_some_and(|at| at.0 <= now) {
                core.retry_now().await;
            }
            Ok(core
                .retry_due_at()
                .map_or(JsValue::NULL, |at| JsValue::from_f64(at.0 as f64)))
        })
    }

    /// Resyncs every group.
    pub fn sync(&self) -> Promise {
        with_core!(self, |core| {
            core.sync().await?;
            Ok(JsValue::TRUE)
        })
    }

    /// Creates a group: its id.
    pub fn create_group(&self) -> Promise {
        with_core!(self, |core| {
            let group = core.create_group().await?;
            Ok(js_sys::Uint8Array::from(group.as_bytes().as_slice()).into())
        })
    }

    /// Makes an invite: the link to share.
    pub fn create_invite(
        &self,
        group: Vec<u8>,
        requires_approval: bool,
        max_uses: u32,
        valid_for_secs: u32,
    ) -> Promise {
        with_core!(self, |core| {
            let valid_for = Duration::from_secs(u64::from(valid_for_secs));
            let invite = core
                .create_invite(
                    group_id(&group)?,
                    InviteOptions::new()
                        .requires_approval(requires_approval)
                        .max_uses(max_uses)
                        .valid_for(valid_for),
                )
                .await?;
            Ok(JsValue::from_str(&invite.to_link()))
        })
    }

    /// Joins with an invite link (or asks to, with `note`).
    pub fn join(&self, link: String, note: Option<String>) -> Promise {
        with_core!(self, |core| {
            let outcome = core.join(Invite::from_link(&link)?, note).await?;
            Ok(debug(&outcome))
        })
    }

    /// Accepts a group someone added this device to.
    pub fn accept_group(&self, group: Vec<u8>) -> Promise {
        with_core!(self, |core| {
            core.accept_group(group_id(&group)?).await?;
            Ok(JsValue::TRUE)
        })
    }

    /// Approves a join request (facilitators).
    pub fn approve(&self, group: Vec<u8>, user: Vec<u8>) -> Promise {
        with_core!(self, |core| {
            core.approve(group_id(&group)?, user_id(&user)?).await?;
            Ok(JsValue::TRUE)
        })
    }

    /// Appends an op (JSON of an `OpBody`: mute, remove, lock, settings, leave, …).
    pub fn append(&self, group: Vec<u8>, body: String) -> Promise {
        with_core!(self, |core| {
            let body: OpBody = serde_json::from_str(&body)?;
            let seq = core.append(group_id(&group)?, body).await?;
            Ok(JsValue::from_f64(seq as f64))
        })
    }

    /// Sends a text: the message as stored (JSON).
    pub fn send_text(&self, group: Vec<u8>, text: String, reply_to: Option<String>) -> Promise {
        with_core!(self, |core| {
            let reply_to: Option<MessageId> = match reply_to {
                Some(id) => Some(serde_json::from_value(serde_json::Value::String(id))?),
                None => None,
            };
            let message = core.send_text(group_id(&group)?, text, reply_to).await?;
            Ok(JsValue::from_str(&serde_json::to_string(&message)?))
        })
    }

    /// Up to `limit` messages before `before` (0: the newest), as JSON.
    pub fn history(&self, group: Vec<u8>, before: u32, limit: u32) -> Promise {
        with_core!(self, |core| {
            let before = (before > 0).then_some(Seq(u64::from(before)));
            let page = core
                .history(group_id(&group)?, before, limit as usize)
                .await?;
            Ok(JsValue::from_str(&serde_json::to_string(&page)?))
        })
    }

    /// The groups, members, status, pinned texts, notices and join requests of a group, and
    /// the moderation log: what a group's screens show.
    pub fn group_view(&self, group: Vec<u8>) -> Promise {
        with_core!(self, |core| {
            let group = group_id(&group)?;
            let view = (
                core.groups().await,
                core.members(group)?,
                core.status(group)?,
                core.pinned(group).await?,
                core.notices(group).await?,
                core.join_requests(group).await?,
                core.moderation_log(group).await?,
                core.invites(group).await?,
                core.departure(group).await?,
            );
            Ok(debug(&view))
        })
    }

    /// The facilitators' queue of reports and requests.
    pub fn facilitator_queue(&self, group: Vec<u8>) -> Promise {
        with_core!(self, |core| {
            Ok(debug(&core.facilitator_queue(group_id(&group)?).await?))
        })
    }

    /// The safety number to compare with another member.
    pub fn safety_number(&self, user: Vec<u8>) -> Promise {
        with_core!(self, |core| {
            Ok(JsValue::from_str(&core.safety_number(user_id(&user)?)?))
        })
    }

    /// Reports message `seq` to the facilitators.
    pub fn report(&self, group: Vec<u8>, seq: u32, reason: String) -> Promise {
        with_core!(self, |core| {
            core.report(group_id(&group)?, Seq(u64::from(seq)), reason)
                .await?;
            Ok(JsValue::TRUE)
        })
    }

    /// Asks the facilitators for help, privately.
    pub fn request_facilitator(&self, group: Vec<u8>, text: String) -> Promise {
        with_core!(self, |core| {
            core.request_facilitator(group_id(&group)?, text).await?;
            Ok(JsValue::TRUE)
        })
    }

    /// Marks a facilitator-queue item resolved.
    pub fn resolve(&self, id: String) -> Promise {
        with_core!(self, |core| {
            core.resolve(&id).await?;
            Ok(JsValue::TRUE)
        })
    }

    /// Pins the agreement (`"agreement"`) or crisis resources (`"crisis_resources"`).
    pub fn pin(&self, group: Vec<u8>, kind: String, text: String) -> Promise {
        with_core!(self, |core| {
            let kind: PinnedKind = serde_json::from_value(serde_json::Value::String(kind))?;
            core.pin(group_id(&group)?, kind, text).await?;
            Ok(JsValue::TRUE)
        })
    }

    /// Accepts the agreement `version` as shown.
    pub fn accept_agreement(&self, group: Vec<u8>, version: u32, shown: String) -> Promise {
        with_core!(self, |core| {
            core.accept_agreement(group_id(&group)?, version, &shown)
                .await?;
            Ok(JsValue::TRUE)
        })
    }

    /// Opens a private conversation with a member of `group`.
    pub fn open_private(&self, group: Vec<u8>, with: Vec<u8>) -> Promise {
        with_core!(self, |core| {
            let private = core
                .open_private(group_id(&group)?, user_id(&with)?)
                .await?;
            Ok(js_sys::Uint8Array::from(private.as_bytes().as_slice()).into())
        })
    }

    /// Deletes a member's `count` latest messages for everyone (facilitators).
    pub fn delete_recent_of(&self, group: Vec<u8>, user: Vec<u8>, count: u32) -> Promise {
        with_core!(self, |core| {
            let n = core
                .delete_recent_of(group_id(&group)?, user_id(&user)?, count as usize)
                .await?;
            Ok(JsValue::from_f64(n as f64))
        })
    }

    /// Stores what is pending and closes the connection.
    pub fn shutdown(&self) -> Promise {
        with_core!(self, |core| {
            core.shutdown().await;
            Ok(JsValue::TRUE)
        })
    }

    /// The events since the last call, oldest first, as text.
    pub fn take_events(&self) -> Vec<String> {
        // Not borrowed elsewhere now: the host borrows it only inside `Host::event`, which
        // never awaits, and JavaScript cannot call in while that runs.
        let events = std::mem::take(&mut *self.events.borrow_mut());
        events
            .iter()
            .map(|event| match event {
                Event::Message(m) | Event::Sent(m) => serde_json::to_string(m).unwrap_or_default(),
                other => format!("{other:?}"),
            })
            .collect()
    }
}
