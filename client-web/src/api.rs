//! The JavaScript API: [`ConfideCore`], the one object the web app's worker holds, and
//! [`sanitize_for_display`]. Every method takes one parameter object and returns a promise of a
//! [`crate::dto`] mirror; a failure rejects with [`ApiError`] `{ code, message, retryAfterMs? }`.
//! Ids are base64 text, times milliseconds since the epoch.
//!
//! The profile lives in one store named by `dbName` (see `WebStore`). `open` finds out whether
//! there is one; `createProfile` makes one (a new identity, registered with the server);
//! `unlock` opens it with its passphrase and starts the core; `lock` stops the core and drops
//! its keys; `forget` also deletes the store.

use std::cell::RefCell;
use std::rc::Rc;

use confide_client_core::linking::NewDeviceLink;
use confide_client_core::{Profile, profile};
use confide_protocol::{DeviceIdentity, UserId};
use futures_channel::oneshot;
use futures_util::future::{Either, select};
use serde::Serialize;
use tsify::{Ts, Tsify};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::{JsValue, wasm_bindgen};
use zeroize::Zeroizing;

use crate::dto::{self, ApiError, Me, ProfileState};
use crate::host;
use crate::link::{WsLink, WsNetwork};
use crate::session::Session;

/// The store the profile is kept in: IndexedDB, encrypted under the passphrase.
pub type WebStore = crate::store::IdbStore;

/// Opening, creating and deleting the profile's store, by database name.
mod store {
    use confide_client_core::StoreError;
    use confide_protocol::identity::KdfParams;

    use super::WebStore;

    /// Whether a profile is kept under `db_name`.
    pub(super) async fn exists(db_name: &str) -> Result<bool, StoreError> {
        WebStore::exists(db_name).await
    }

    /// A new, empty store under `db_name`, encrypted under `passphrase` with a key derived
    /// with the native client's Argon2id parameters.
    pub(super) async fn create(db_name: &str, passphrase: &[u8]) -> Result<WebStore, StoreError> {
        WebStore::create(db_name, passphrase, KdfParams::RECOMMENDED).await
    }

    /// The store under `db_name`, opened with `passphrase`.
    pub(super) async fn open(db_name: &str, passphrase: &[u8]) -> Result<WebStore, StoreError> {
        WebStore::open(db_name, passphrase).await
    }

    /// Deletes the store under `db_name` (nothing if there is none).
    pub(super) async fn delete(db_name: &str) -> Result<(), StoreError> {
        WebStore::delete_database(db_name).await
    }
}

#[wasm_bindgen(typescript_custom_section)]
const TS_PARAMS: &str = r#"
/** The parameters of `ConfideCore.createProfile`. The passphrase's bytes are zeroed once read. */
export interface CreateProfileParams {
    displayName: string;
    passphrase: Uint8Array;
}

/** The parameters of `ConfideCore.unlock`. The passphrase's bytes are zeroed once read. */
export interface UnlockParams {
    passphrase: Uint8Array;
}

/**
 * The parameters of `ConfideCore.newLinkOpen`: the passphrase the new profile will be encrypted
 * under. Its bytes are zeroed once read; the worker keeps a copy in wasm memory (zeroed when
 * the link ends) until `newLinkFinish` makes the profile.
 */
export interface NewLinkParams {
    passphrase: Uint8Array;
}

/** The parameters of `ConfideCore.unlinkDevice`: the device, and the passphrase again. */
export interface UnlinkParams {
    device: string;
    passphrase: Uint8Array;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// `{ displayName, passphrase }` (read by hand: the passphrase's bytes are zeroed in place).
    #[wasm_bindgen(typescript_type = "CreateProfileParams")]
    pub type CreateProfileParams;

    /// `{ passphrase }` (read by hand: the passphrase's bytes are zeroed in place).
    #[wasm_bindgen(typescript_type = "UnlockParams")]
    pub type UnlockParams;

    /// `{ passphrase }` (read by hand: the passphrase's bytes are zeroed in place).
    #[wasm_bindgen(typescript_type = "NewLinkParams")]
    pub type NewLinkParams;

    /// `{ device, passphrase }` (read by hand: the passphrase's bytes are zeroed in place).
    #[wasm_bindgen(typescript_type = "UnlinkParams")]
    pub type UnlinkParams;

    /// The function every event goes to.
    #[wasm_bindgen(typescript_type = "(event: CoreEvent) => void")]
    pub type EventCallback;
}

/// Reads the `passphrase` of a parameter object into memory that is zeroed when dropped, and
/// zeroes the caller's bytes.
fn take_passphrase(params: &JsValue) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let value = js_sys::Reflect::get(params, &JsValue::from_str("passphrase"))
        .map_err(|_| ApiError::invalid("the parameters are not an object"))?;
    let bytes = value
        .dyn_into::<js_sys::Uint8Array>()
        .map_err(|_| ApiError::invalid("passphrase must be a Uint8Array (UTF-8 of the text)"))?;
    let mut taken = Zeroizing::new(vec![0u8; bytes.length() as usize]);
    bytes.copy_to(&mut taken);
    bytes.fill(0, 0, bytes.length());
    if taken.is_empty() {
        return Err(ApiError::invalid("the passphrase is empty"));
    }
    Ok(taken)
}

/// A string member of a parameter object.
fn string_param(params: &JsValue, name: &str) -> Result<String, ApiError> {
    js_sys::Reflect::get(params, &JsValue::from_str(name))
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| ApiError::invalid(format!("{name} must be a string")))
}

/// The Rust value of a parameter object, or an `invalid` rejection saying what is wrong.
fn parse_params<T>(p: Ts<T>) -> Result<T, JsValue>
where
    T: Tsify + serde::de::DeserializeOwned,
    <T as Tsify>::JsType: Clone,
{
    p.to_rust()
        .map_err(|e| ApiError::invalid(format!("bad parameters: {e}")).into_js())
}

/// A result as its JavaScript object.
fn ts<T: Tsify + Serialize>(value: &T) -> Result<Ts<T>, JsValue> {
    value
        .into_ts()
        .map_err(|e| ApiError::new("encode", e.to_string()).into_js())
}

/// A list of results as a JavaScript array. One item never fails the list: numbers are
/// clamped for JavaScript (`dto::js_number`), so no item is known to fail to encode, and one
/// that somehow did would be left out rather than hide the others (a hostile member's item
/// must not hide the rest of a history page or of the facilitator queue).
fn ts_list<T: Tsify + Serialize>(values: &[T]) -> Result<Vec<Ts<T>>, JsValue> {
    Ok(values.iter().filter_map(|v| v.into_ts().ok()).collect())
}

/// The lifecycle of the profile in this worker.
enum State {
    /// No profile in the store yet.
    NoProfile,
    /// A profile, locked.
    Locked,
    /// A `createProfile`, `unlock` or `lock` is under way; `was` is the state it started from.
    Busy { was: ProfileState },
    /// Unlocked: the core runs.
    Unlocked(Rc<Session<WebStore, WsNetwork>>),
}

impl State {
    fn profile_state(&self) -> ProfileState {
        match self {
            State::NoProfile => ProfileState::None,
            State::Locked => ProfileState::Locked,
            State::Busy { was } => *was,
            State::Unlocked(_) => ProfileState::Unlocked,
        }
    }
}

/// Confide's client core for one profile, in a browser worker. See the module documentation.
#[wasm_bindgen]
pub struct ConfideCore {
    /// The database the profile is kept in.
    db_name: String,
    /// The server, checked at `open`.
    net: WsNetwork,
    /// Where every event goes.
    on_event: js_sys::Function,
    /// Never borrowed across an `await`: each method takes what it needs and lets go.
    state: RefCell<State>,
    /// A link under way from this browser as the new device (no profile yet), if any.
    new_link: RefCell<Option<NewLink>>,
}

/// The new device's side of a link under way (`newLinkOpen` … `newLinkFinish`).
struct NewLink {
    /// The link, while no call is waiting on it (`newLinkWait` takes it while it waits).
    link: Option<NewDeviceLink<WsLink>>,
    /// The passphrase the profile will be made under.
    passphrase: Zeroizing<Vec<u8>>,
    /// Stops a `newLinkWait` under way.
    stop: Option<oneshot::Sender<()>>,
    /// Tells this link from a later one opened meanwhile.
    id: u64,
}

/// The error of a new-device link call when no link is under way.
fn no_link() -> ApiError {
    ApiError::new(
        "no_link",
        "no link is under way in this browser: start again",
    )
}

/// The error of a link stopped by the person on this device.
fn link_cancelled() -> ApiError {
    ApiError::new("link_cancelled", "linking was stopped")
}

impl ConfideCore {
    /// The running session, or why there is none.
    fn session(&self) -> Result<Rc<Session<WebStore, WsNetwork>>, JsValue> {
        match &*self.state.borrow() {
            State::Unlocked(session) => Ok(session.clone()),
            State::NoProfile => Err(ApiError::no_profile().into_js()),
            State::Locked | State::Busy { .. } => Err(ApiError::locked().into_js()),
        }
    }

    /// Marks a lifecycle change as under way if the profile is in one of `from`, returning the
    /// state it was in.
    fn begin(&self, from: &[ProfileState]) -> Result<ProfileState, ApiError> {
        let mut state = self.state.borrow_mut();
        let now = state.profile_state();
        if matches!(*state, State::Busy { .. }) {
            return Err(ApiError::new(
                "busy",
                "the profile is being created, unlocked or locked: wait for that first",
            ));
        }
        if !from.contains(&now) {
            return Err(match now {
                ProfileState::None => ApiError::no_profile(),
                ProfileState::Locked => ApiError::locked(),
                ProfileState::Unlocked => ApiError::new(
                    "profile_exists",
                    "a profile is already unlocked here: lock it first",
                ),
            });
        }
        *state = State::Busy { was: now };
        Ok(now)
    }

    /// Ends a lifecycle change in `state`.
    fn end(&self, state: State) {
        *self.state.borrow_mut() = state;
    }

    /// Ends the opening of a profile (made, unlocked or linked): unlocked with its session, or
    /// back in `failed` with the error.
    fn end_opening(
        &self,
        opened: Result<Rc<Session<WebStore, WsNetwork>>, ApiError>,
        failed: State,
    ) -> Result<Ts<Me>, JsValue> {
        match opened {
            Ok(session) => {
                let me = session.me().clone();
                self.end(State::Unlocked(session));
                ts(&me)
            }
            Err(e) => {
                self.end(failed);
                Err(e.into_js())
            }
        }
    }

    /// Starts the core for a profile whose store is open.
    async fn start(
        &self,
        store: WebStore,
        identity: DeviceIdentity,
        profile: Profile,
    ) -> Result<Rc<Session<WebStore, WsNetwork>>, ApiError> {
        let session = Session::start(
            store,
            self.net.clone(),
            identity,
            profile,
            self.on_event.clone(),
        )
        .await?;
        Ok(Rc::new(session))
    }

    /// `createProfile` once begun: see there.
    async fn create(&self, params: &JsValue) -> Result<Rc<Session<WebStore, WsNetwork>>, ApiError> {
        // The passphrase first: its bytes are zeroed whatever else is wrong with the call.
        let passphrase = take_passphrase(params)?;
        let display_name = string_param(params, "displayName")?;
        if !host::randomness_available() {
            return Err(ApiError::new(
                "no_crypto",
                "this browser gives no cryptographic randomness (crypto.getRandomValues)",
            ));
        }
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let identity = DeviceIdentity::generate(&mut rng);
        let profile = Profile::new(UserId::random(&mut rng), display_name);
        let store = store::create(&self.db_name, &passphrase)
            .await
            .map_err(confide_client_core::ClientError::from)?;
        drop(passphrase);
        let stored = profile::create(&store, &identity, &profile).await;
        self.register_new(store, stored.map(|()| (identity, profile)))
            .await
    }

    /// Starts the core on a profile just made (`stored`: its keys and profile, or why it could
    /// not be stored) and registers the device. Registration must reach the server: its error
    /// goes to the caller. Once the server has registered the identity, the profile is kept even
    /// if the first sync fails (the driver retries it): it holds an identity the server knows.
    /// Nothing of a profile the server never registered is kept, so that making it again
    /// starts afresh.
    async fn register_new(
        &self,
        store: WebStore,
        stored: Result<(DeviceIdentity, Profile), confide_client_core::StoreError>,
    ) -> Result<Rc<Session<WebStore, WsNetwork>>, ApiError> {
        let started = async {
            let (identity, profile) = stored.map_err(confide_client_core::ClientError::from)?;
            let session = self.start(store, identity, profile).await?;
            if let Err(e) = session.sync().await
                && !session.is_registered().await.unwrap_or(false)
            {
                session.stop().await;
                return Err(e);
            }
            Ok(session)
        };
        match started.await {
            Ok(session) => Ok(session),
            Err(e) => {
                let _ = store::delete(&self.db_name).await;
                Err(e)
            }
        }
    }

    /// `unlock` once begun: see there.
    async fn open_profile(
        &self,
        params: &JsValue,
    ) -> Result<Rc<Session<WebStore, WsNetwork>>, ApiError> {
        let passphrase = take_passphrase(params)?;
        if !host::randomness_available() {
            return Err(ApiError::new(
                "no_crypto",
                "this browser gives no cryptographic randomness (crypto.getRandomValues)",
            ));
        }
        let store = store::open(&self.db_name, &passphrase)
            .await
            .map_err(confide_client_core::ClientError::from)?;
        drop(passphrase);
        // A profile another device unlinked (while this page was closed) fails here with
        // `unlinked` (StoreError::Unlinked), so that the app deletes it.
        let (identity, profile) = profile::load(&store)
            .await
            .map_err(confide_client_core::ClientError::from)?;
        self.start(store, identity, profile).await
    }
}

/// Every method below is one command or read of the running core (see `crate::session`),
/// rejecting with `{ code: "profile_locked" }` or `{ code: "no_profile" }` while there is none.
macro_rules! forward {
    ($(#[$doc:meta])* $js:literal, $name:ident($params:ty) -> list $out:ty) => {
        #[wasm_bindgen]
        impl ConfideCore {
            $(#[$doc])*
            #[wasm_bindgen(js_name = $js)]
            pub async fn $name(&self, params: Ts<$params>) -> Result<Vec<Ts<$out>>, JsValue> {
                let p = parse_params(params)?;
                let session = self.session()?;
                ts_list(&session.$name(p).await?)
            }
        }
    };
    ($(#[$doc:meta])* $js:literal, $name:ident($params:ty) -> option $out:ty) => {
        #[wasm_bindgen]
        impl ConfideCore {
            $(#[$doc])*
            #[wasm_bindgen(js_name = $js)]
            pub async fn $name(
                &self,
                params: Ts<$params>,
            ) -> Result<Option<Ts<$out>>, JsValue> {
                let p = parse_params(params)?;
                let session = self.session()?;
                session.$name(p).await?.as_ref().map(ts).transpose()
            }
        }
    };
    ($(#[$doc:meta])* $js:literal, $name:ident($params:ty) -> object $out:ty) => {
        #[wasm_bindgen]
        impl ConfideCore {
            $(#[$doc])*
            #[wasm_bindgen(js_name = $js)]
            pub async fn $name(&self, params: Ts<$params>) -> Result<Ts<$out>, JsValue> {
                let p = parse_params(params)?;
                let session = self.session()?;
                ts(&session.$name(p).await?)
            }
        }
    };
    ($(#[$doc:meta])* $js:literal, $name:ident($params:ty) -> $out:ty) => {
        #[wasm_bindgen]
        impl ConfideCore {
            $(#[$doc])*
            #[wasm_bindgen(js_name = $js)]
            pub async fn $name(&self, params: Ts<$params>) -> Result<$out, JsValue> {
                let p = parse_params(params)?;
                let session = self.session()?;
                Ok(session.$name(p).await?)
            }
        }
    };
}

#[wasm_bindgen]
impl ConfideCore {
    /// Opens (does not unlock) the profile kept in the database `dbName`; the server is
    /// `serverUrl` (`wss://host[:port]/`, or `ws://` on loopback). `onEvent` receives every
    /// `CoreEvent`, from any method's work or the server, in order.
    pub async fn open(
        options: Ts<dto::OpenOptions>,
        #[wasm_bindgen(js_name = onEvent)] on_event: EventCallback,
    ) -> Result<ConfideCore, JsValue> {
        let options = parse_params(options)?;
        let on_event: JsValue = on_event.into();
        let on_event = on_event
            .dyn_into::<js_sys::Function>()
            .map_err(|_| ApiError::invalid("onEvent must be a function").into_js())?;
        let net = WsNetwork::new(&options.server_url)
            .map_err(|e| ApiError::from(confide_client_core::ClientError::from(e)).into_js())?;
        let exists = store::exists(&options.db_name)
            .await
            .map_err(|e| ApiError::from(confide_client_core::ClientError::from(e)).into_js())?;
        Ok(ConfideCore {
            db_name: options.db_name,
            net,
            on_event,
            state: RefCell::new(if exists {
                State::Locked
            } else {
                State::NoProfile
            }),
            new_link: RefCell::new(None),
        })
    }

    /// `"none"`, `"locked"` or `"unlocked"`.
    #[wasm_bindgen(js_name = profileState)]
    pub fn profile_state(&self) -> Result<Ts<ProfileState>, JsValue> {
        ts(&self.state.borrow().profile_state())
    }

    /// Creates a new identity and profile (its store encrypted under the passphrase, whose
    /// bytes are zeroed) and registers it with the server, which must be reachable; then the
    /// profile is unlocked. If registering fails, nothing is kept.
    #[wasm_bindgen(js_name = createProfile)]
    pub async fn create_profile(&self, params: CreateProfileParams) -> Result<Ts<Me>, JsValue> {
        let params: JsValue = params.into();
        self.begin(&[ProfileState::None])?;
        let opened = self.create(&params).await;
        self.end_opening(opened, State::NoProfile)
    }

    /// Opens the profile with its passphrase (whose bytes are zeroed) and starts the core,
    /// which connects in the background. Rejects with `wrong_passphrase` for a wrong one.
    pub async fn unlock(&self, params: UnlockParams) -> Result<Ts<Me>, JsValue> {
        let params: JsValue = params.into();
        self.begin(&[ProfileState::Locked])?;
        let opened = self.open_profile(&params).await;
        self.end_opening(opened, State::Locked)
    }

    /// Stops the core (storing what is pending, closing the connection) and drops it and its
    /// keys; `profileState()` is then `"locked"`. Nothing to do if it is not unlocked.
    pub async fn lock(&self) -> Result<(), JsValue> {
        let session = {
            let mut state = self.state.borrow_mut();
            match &*state {
                State::Unlocked(session) => {
                    let session = session.clone();
                    *state = State::Busy {
                        was: ProfileState::Locked,
                    };
                    session
                }
                State::Busy { .. } => {
                    return Err(ApiError::new(
                        "busy",
                        "the profile is being created, unlocked or locked: wait for that first",
                    )
                    .into_js());
                }
                State::NoProfile | State::Locked => return Ok(()),
            }
        };
        session.stop().await;
        drop(session);
        self.end(State::Locked);
        Ok(())
    }

    /// Locks, then deletes the profile's store: this browser forgets the profile.
    pub async fn forget(&self) -> Result<(), JsValue> {
        self.lock().await?;
        self.begin(&[ProfileState::Locked, ProfileState::None])?;
        let deleted = store::delete(&self.db_name).await;
        match deleted {
            Ok(()) => {
                self.end(State::NoProfile);
                Ok(())
            }
            Err(e) => {
                self.end(State::Locked);
                Err(ApiError::from(confide_client_core::ClientError::from(e)).into_js())
            }
        }
    }

    /// Who this device is, while unlocked.
    pub fn me(&self) -> Result<Option<Ts<Me>>, JsValue> {
        match &*self.state.borrow() {
            State::Unlocked(session) => ts(session.me()).map(Some),
            _ => Ok(None),
        }
    }

    /// The groups this device knows.
    pub async fn groups(&self) -> Result<Vec<Ts<dto::GroupInfo>>, JsValue> {
        let session = self.session()?;
        ts_list(&session.groups().await?)
    }

    /// Creates a group with this user as its facilitator; resolves to its id.
    #[wasm_bindgen(js_name = createGroup)]
    pub async fn create_group(&self) -> Result<String, JsValue> {
        let session = self.session()?;
        Ok(session.create_group().await?)
    }

    /// Connects if needed and fetches everything new in every group.
    pub async fn sync(&self) -> Result<(), JsValue> {
        let session = self.session()?;
        Ok(session.sync().await?)
    }
}

forward!(
    /// Up to `limit` messages before `before` (a `seq`; absent: the newest), oldest first.
    "history", history(dto::HistoryParams) -> object dto::HistoryPage
);
forward!(
    /// Sends a text; resolves to the message once the server has it. Rejects with `pending`
    /// or `held` when it is kept to be sent later (a `sent` or `sendFailed` event follows, or
    /// `heldNeedsConfirm` if people join the group first; `held` lists it meanwhile).
    "sendText", send_text(dto::SendTextParams) -> object dto::ChatMessage
);
forward!(
    /// Creates an invite (facilitators).
    "createInvite", create_invite(dto::CreateInviteParams) -> object dto::InviteCreated
);
forward!(
    /// Joins with an invite: its text, or an https link with `#invite=<text>`.
    "join", join(dto::JoinParams) -> object dto::JoinOutcome
);
forward!(
    /// Approves a pending join request (facilitators).
    "approve", approve(dto::GroupUserParams) -> ()
);
forward!(
    /// Declines a pending join request (facilitators).
    "decline", decline(dto::GroupUserParams) -> ()
);
forward!(
    /// Pending join requests (facilitators).
    "joinRequests", join_requests(dto::GroupParams) -> list dto::JoinRequest
);
forward!(
    /// A group's members, from its verified log.
    "members", members(dto::GroupParams) -> list dto::MemberInfo
);
forward!(
    /// The safety number to compare with `user` out of band.
    "safetyNumber", safety_number(dto::UserParams) -> String
);
forward!(
    /// Leaves a group.
    "leave", leave(dto::GroupParams) -> ()
);
forward!(
    /// Gives a group a label on this device only (kept encrypted, never sent); no `label`
    /// removes it. `groups()` returns it with each group.
    "setLabel", set_label(dto::SetLabelParams) -> ()
);
forward!(
    /// The draft kept for a group (`null` if none): what the person started writing.
    "draft", draft(dto::GroupParams) -> Option<String>
);
forward!(
    /// Keeps a group's draft in the encrypted store (an empty or blank `text` removes it).
    "setDraft", set_draft(dto::SetDraftParams) -> ()
);
forward!(
    /// Marks a group read up to message `number` (the newest one shown: its `number`, not its
    /// `seq`); never moves back. Every tab gets a `read` event; `groups()` counts what came
    /// after as `unread`.
    "markRead", mark_read(dto::MarkReadParams) -> ()
);
forward!(
    /// Removes a member (facilitators), banning them with `ban`, with an optional reason.
    "remove", remove(dto::RemoveParams) -> ()
);
forward!(
    /// Lifts a ban (facilitators).
    "unban", unban(dto::GroupUserParams) -> ()
);
forward!(
    /// Mutes a member for `durationSecs`, with an optional reason.
    "mute", mute(dto::MuteParams) -> ()
);
forward!(
    /// Lifts a mute.
    "unmute", unmute(dto::GroupUserParams) -> ()
);
forward!(
    /// Gives a member a role (facilitators).
    "setRole", set_role(dto::SetRoleParams) -> ()
);
forward!(
    /// Locks the chat (only facilitators post) or unlocks it.
    "setLocked", set_locked(dto::SetLockedParams) -> ()
);
forward!(
    /// Sets (or with no schedule clears) the weekly open hours.
    "setOpenHours", set_open_hours(dto::SetOpenHoursParams) -> ()
);
forward!(
    /// Slow mode: one message per `seconds` per member (0: off).
    "setSlowMode", set_slow_mode(dto::SetSlowModeParams) -> ()
);
forward!(
    /// Deletes messages for everyone.
    "deleteForEveryone", delete_for_everyone(dto::DeleteForEveryoneParams) -> ()
);
forward!(
    /// Deletes for everyone the latest `count` messages of a member; resolves to how many.
    "deleteRecentOf", delete_recent_of(dto::DeleteRecentOfParams) -> u32
);
forward!(
    /// Sets how long messages are kept (no `keepForSecs`: kept).
    "setRetention", set_retention(dto::SetRetentionParams) -> ()
);
forward!(
    /// Changes the group settings.
    "setSettings", set_settings(dto::SetSettingsParams) -> ()
);
forward!(
    /// Pins a new version of the group agreement (facilitators).
    "setAgreement", set_agreement(dto::GroupTextParams) -> ()
);
forward!(
    /// Accepts the agreement `version` whose `text` was shown (from `pinned`).
    "acceptAgreement", accept_agreement(dto::AcceptAgreementParams) -> ()
);
forward!(
    /// Pins "if you are in crisis" resources (facilitators).
    "setCrisisResources", set_crisis_resources(dto::GroupTextParams) -> ()
);
forward!(
    /// The group's pinned texts.
    "pinned", pinned(dto::GroupParams) -> object dto::PinnedInfo
);
forward!(
    /// What this user may do in the group right now.
    "status", status(dto::GroupParams) -> object dto::Status
);
forward!(
    /// Reports a received message (its `seq`) to the facilitators, with a reason.
    "report", report(dto::ReportParams) -> ()
);
forward!(
    /// "I need a facilitator": `text` only the facilitators can read.
    "requestFacilitator", request_facilitator(dto::GroupTextParams) -> ()
);
forward!(
    /// Reports and urgent requests waiting for a facilitator, oldest first.
    "facilitatorQueue", facilitator_queue(dto::GroupParams) -> list dto::QueueItem
);
forward!(
    /// Marks a queued item as handled.
    "resolve", resolve(dto::ResolveParams) -> ()
);
forward!(
    /// The moderation log (reasons only for facilitators).
    "moderationLog", moderation_log(dto::GroupParams) -> list dto::ModerationEntry
);
forward!(
    /// Every invite of the group, as its log records them.
    "invites", invites(dto::GroupParams) -> list dto::InviteInfo
);
forward!(
    /// Revokes an invite.
    "revokeInvite", revoke_invite(dto::RevokeInviteParams) -> ()
);
forward!(
    /// The invite a member joined with, if any (to revoke it when removing them).
    "inviteOf", invite_of(dto::GroupUserParams) -> Option<String>
);
forward!(
    /// Opens a private conversation with a member; resolves to the new group.
    "openPrivate", open_private(dto::OpenPrivateParams) -> String
);
forward!(
    /// Accepts being in a group someone added this device to (`invited` event).
    "acceptGroup", accept_group(dto::GroupParams) -> ()
);
forward!(
    /// What members see among the messages: removals, departures, deletions.
    "notices", notices(dto::GroupParams) -> list dto::GroupNotice
);
forward!(
    /// How this device's membership of the group ended, if it did.
    "departure", departure(dto::GroupParams) -> option dto::Departure
);
forward!(
    /// Where a message (by id) is on this device, if it reached it.
    "messagePlace", message_place(dto::MessagePlaceParams) -> option dto::MessagePlace
);
forward!(
    /// The `seq` of the message this device showed with `number`, if any.
    "seqOfNumber", seq_of_number(dto::SeqOfNumberParams) -> Option<f64>
);

/// Someone else's text made inert for display, by the same rule the CLI uses
/// (`confide_protocol::display`): bidirectional overrides and isolates, C0 and C1 controls and
/// invisible characters become U+FFFD; line breaks become `\n` and tabs spaces.
#[wasm_bindgen(js_name = sanitizeForDisplay)]
pub fn sanitize_for_display(text: &str) -> String {
    confide_protocol::display::sanitize_for_display(text).into_owned()
}

// Invite preview and group settings (appended; self-contained).

#[wasm_bindgen]
impl ConfideCore {
    /// What can be known about an invite before joining with it: `{ group, requiresApproval,
    /// checked? }`. With `check: true` and the profile unlocked, the group's log is fetched with
    /// the invite (the server then knows this device looked at it: do it when the person asks)
    /// and verified from the genesis the link names, as `join` verifies it, and `checked` says who
    /// invited (`inviter.displayName`, their role), how many people the group has, until when
    /// the invite is valid and whether this device is in the group already (as of the history
    /// the server showed). Without `check`, without a profile (or locked), or offline, there is
    /// no `checked`: only what the link says, which joining checks, and nothing is sent. The
    /// group has no verifiable name, so none is given.
    ///
    /// Rejects with `bad_invite` for a damaged link or a log that does not match it, and
    /// `invite_unknown`, `invite_revoked`, `invite_used_up` or `invite_expired` for an invite
    /// that cannot be used.
    #[wasm_bindgen(js_name = previewInvite)]
    pub async fn preview_invite(
        &self,
        params: Ts<dto::PreviewInviteParams>,
    ) -> Result<Ts<dto::InvitePreview>, JsValue> {
        let p = parse_params(params)?;
        let session = match &*self.state.borrow() {
            State::Unlocked(session) if p.check => Some(session.clone()),
            _ => None,
        };
        match session {
            Some(session) => ts(&session.preview_invite(p).await?),
            None => {
                let invite = confide_client_core::Invite::from_link(&p.invite)
                    .map_err(|e| ApiError::from(e).into_js())?;
                ts(&dto::InvitePreview::from(invite.unchecked_preview()))
            }
        }
    }
}

forward!(
    /// A group's current settings, from its verified log: `locked`, `openHours?`, `openNow`,
    /// `slowModeSeconds`, `retentionSeconds?`, `membersMayMessagePrivately`,
    /// `agreementVersion?`, `crisisResources`.
    "settings", settings(dto::GroupParams) -> object dto::SettingsInfo
);

forward!(
    /// This user's messages to the group that are not sent yet (written offline, say), in the
    /// order they go; a `heldChanged` event says when to read them again.
    "held", held(dto::GroupParams) -> list dto::HeldMessage
);
forward!(
    /// Sends a held message that waits because people joined the group after it was written
    /// (`heldNeedsConfirm`): everyone in the group now reads it.
    "sendHeldAnyway", send_held_anyway(dto::SendHeldParams) -> ()
);
forward!(
    /// Discards a held message: it is never sent.
    "discardHeld", discard_held(dto::HeldParams) -> ()
);

// Linked devices (PROTOCOL.md §3.6–3.8). The new device's side runs before there is a profile:
// `newLinkOpen` (a passphrase chosen) → `newLinkWait` (the numbers) → `newLinkFinish` (the
// person confirmed: the profile is made and the core starts) or `newLinkCancel`. The existing
// device's side runs on the unlocked core: `linkStart` → `linkConfirm` or `linkCancel`.

static NEXT_LINK_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl ConfideCore {
    /// Stops a new-device link under way, if any: tells the other device.
    async fn stop_new_link(&self) {
        let taken = self.new_link.borrow_mut().take();
        if let Some(mut state) = taken {
            if let Some(stop) = state.stop.take() {
                let _ = stop.send(());
            }
            if let Some(link) = state.link.take() {
                link.cancel().await;
            }
        }
    }

    /// `newLinkFinish` once begun: see there.
    async fn finish_new_link(&self) -> Result<Rc<Session<WebStore, WsNetwork>>, ApiError> {
        let taken = {
            let mut slot = self.new_link.borrow_mut();
            match slot.as_mut().and_then(|s| s.link.take()) {
                Some(link) => slot.take().map(|s| (link, s.passphrase)),
                None => None,
            }
        };
        let Some((link, passphrase)) = taken else {
            return Err(no_link());
        };
        let linked = link.confirm().await?;
        let store = store::create(&self.db_name, &passphrase)
            .await
            .map_err(confide_client_core::ClientError::from)?;
        drop(passphrase);
        // As for a new profile: the first connection registers the device.
        let stored = profile::create_linked(&store, &linked).await;
        self.register_new(
            store,
            stored.map(|profile| (linked.into_identity(), profile)),
        )
        .await
    }
}

#[wasm_bindgen]
impl ConfideCore {
    /// This browser as a NEW device of a person who uses Confide elsewhere: keeps `passphrase`
    /// (its bytes are zeroed) for the profile to be made, dials the server and opens a link
    /// channel. Resolves to the one-time code and the QR text to show. Only without a profile;
    /// a link already under way here is stopped first.
    #[wasm_bindgen(js_name = newLinkOpen)]
    pub async fn new_link_open(
        &self,
        params: NewLinkParams,
    ) -> Result<Ts<dto::NewLinkOpened>, JsValue> {
        let params: JsValue = params.into();
        let passphrase = take_passphrase(&params)?;
        if self.state.borrow().profile_state() != ProfileState::None
            || matches!(*self.state.borrow(), State::Busy { .. })
        {
            return Err(ApiError::new(
                "profile_exists",
                "this browser holds a profile already: a device is linked only without one",
            )
            .into_js());
        }
        if !host::randomness_available() {
            return Err(ApiError::new(
                "no_crypto",
                "this browser gives no cryptographic randomness (crypto.getRandomValues)",
            )
            .into_js());
        }
        self.stop_new_link().await;
        let mut net = self.net.clone();
        // Nothing reads the events of a device without a profile: the queue is dropped.
        let (out, _unread) = futures_channel::mpsc::unbounded();
        let mut host = host::WebHost::new(out);
        let link = NewDeviceLink::open(&mut net, &mut host)
            .await
            .map_err(|e| ApiError::from(e).into_js())?;
        let opened = dto::NewLinkOpened {
            code: link.code(),
            qr_text: link.qr_text(),
            device: link.device().to_string(),
        };
        let id = NEXT_LINK_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Another open may have finished meanwhile: the later one wins, the earlier is stopped.
        let earlier = self.new_link.borrow_mut().replace(NewLink {
            link: Some(link),
            passphrase,
            stop: None,
            id,
        });
        if let Some(mut earlier) = earlier {
            if let Some(stop) = earlier.stop.take() {
                let _ = stop.send(());
            }
            if let Some(link) = earlier.link.take() {
                link.cancel().await;
            }
        }
        ts(&opened)
    }

    /// Waits (up to ten minutes) for the person's other device to take the code, exchanges
    /// keys, and resolves to the numbers to compare and the account's name. Rejects with
    /// `link_cancelled` if either side stopped, `link_mismatch` if the other device's answer
    /// does not fit, `timeout` if nobody came.
    #[wasm_bindgen(js_name = newLinkWait)]
    pub async fn new_link_wait(&self) -> Result<Ts<dto::LinkOffer>, JsValue> {
        let (stop_rx, link, id) = {
            let mut slot = self.new_link.borrow_mut();
            let Some(state) = slot.as_mut() else {
                return Err(no_link().into_js());
            };
            let Some(link) = state.link.take() else {
                return Err(ApiError::new("busy", "the link is already waiting").into_js());
            };
            let (stop, stop_rx) = oneshot::channel();
            state.stop = Some(stop);
            (stop_rx, link, state.id)
        };
        let mut link = link;
        let outcome = {
            let waiting = Box::pin(link.wait_for_offer());
            match select(waiting, stop_rx).await {
                Either::Left((result, _)) => Some(result),
                Either::Right(_) => None,
            }
        };
        let still_ours = self.new_link.borrow().as_ref().is_some_and(|s| s.id == id);
        match outcome {
            Some(Ok(offer)) if still_ours => {
                if let Some(state) = self.new_link.borrow_mut().as_mut() {
                    state.stop = None;
                    state.link = Some(link);
                }
                ts(&dto::LinkOffer::from(offer))
            }
            Some(Err(e)) => {
                if still_ours {
                    *self.new_link.borrow_mut() = None;
                }
                link.cancel().await;
                Err(ApiError::from(e).into_js())
            }
            _ => {
                if still_ours {
                    *self.new_link.borrow_mut() = None;
                }
                link.cancel().await;
                Err(link_cancelled().into_js())
            }
        }
    }

    /// The person confirmed both screens show the same numbers: receives the account from the
    /// other device (once its person confirmed too), makes the profile in this browser under
    /// the passphrase given to `newLinkOpen`, registers this device and starts the core, as
    /// `createProfile` does. If that fails, nothing is kept.
    #[wasm_bindgen(js_name = newLinkFinish)]
    pub async fn new_link_finish(&self) -> Result<Ts<Me>, JsValue> {
        self.begin(&[ProfileState::None])?;
        let opened = self.finish_new_link().await;
        self.end_opening(opened, State::NoProfile)
    }

    /// Stops the new-device link under way, if any, and tells the other device.
    #[wasm_bindgen(js_name = newLinkCancel)]
    pub async fn new_link_cancel(&self) -> Result<(), JsValue> {
        self.stop_new_link().await;
        Ok(())
    }

    /// On this (existing) device: starts linking a new one. `code` is what the new device
    /// shows, typed, or its QR text. Resolves to the numbers to compare with the new device's
    /// screen and its id; then `linkConfirm` or `linkCancel`.
    #[wasm_bindgen(js_name = linkStart)]
    pub async fn link_start(
        &self,
        params: Ts<dto::LinkStartParams>,
    ) -> Result<Ts<dto::LinkCheck>, JsValue> {
        let p = parse_params(params)?;
        let session = self.session()?;
        ts(&session.link_start(p).await?)
    }

    /// The person confirmed the numbers match: once the new device's person confirmed too,
    /// adds it to this account and hands it the groups. Resolves to its id.
    #[wasm_bindgen(js_name = linkConfirm)]
    pub async fn link_confirm(&self) -> Result<String, JsValue> {
        let session = self.session()?;
        Ok(session.link_confirm().await?)
    }

    /// Stops the link under way on this device (the numbers differ, or the person changed
    /// their mind), and tells the new device.
    #[wasm_bindgen(js_name = linkCancel)]
    pub async fn link_cancel(&self) -> Result<(), JsValue> {
        let session = self.session()?;
        Ok(session.link_cancel().await?)
    }

    /// This account's devices as this device knows them, and its fingerprint.
    #[wasm_bindgen(js_name = ownDevices)]
    pub async fn own_devices(&self) -> Result<Ts<dto::OwnDevices>, JsValue> {
        let session = self.session()?;
        ts(&session.own_devices().await?)
    }

    /// Unlinks another device of this account, once `passphrase` (its bytes are zeroed) opens
    /// this profile: the person says it again for this. Rejects with `wrong_passphrase`, or
    /// `last_device` / `unknown_device`.
    #[wasm_bindgen(js_name = unlinkDevice)]
    pub async fn unlink_device(&self, params: UnlinkParams) -> Result<(), JsValue> {
        let params: JsValue = params.into();
        let passphrase = take_passphrase(&params)?;
        let device = string_param(&params, "device")?;
        let session = self.session()?;
        let check = store::open(&self.db_name, &passphrase)
            .await
            .map_err(|e| ApiError::from(confide_client_core::ClientError::from(e)).into_js())?;
        check.close();
        drop(passphrase);
        Ok(session.unlink_device(&device).await?)
    }
}

// The group-work tools (issue 17, PROTOCOL.md §6.9): the meeting schedule, content warnings,
// the resource library and check-in rounds (their documents and ops are the facilitators'; a
// member's refusal rejects as the other moderator commands do), and the person's own safety
// plan, which never leaves their devices.

forward!(
    /// Publishes the group's meeting schedule (facilitators and co-facilitators): the whole
    /// schedule, checked first (`invalid` for a bad one: a time zone, a date, an `https://`
    /// link). Members get a `pinned` event with `kind: "meetings"`.
    "setMeetings", set_meetings(crate::group_work::SetMeetingsParams) -> ()
);
forward!(
    /// The meeting in progress or the next one to start, by this device's clock (`null` when
    /// there is no schedule or no meeting ahead). Show it in the person's own time zone.
    "nextMeeting", next_meeting(dto::GroupParams) -> option crate::group_work::NextMeeting
);
forward!(
    /// Publishes the group's content-warning topics (facilitators and co-facilitators). Keep a
    /// topic's `id` when its label changes: messages and hidden topics name the id.
    "setWarningTopics", set_warning_topics(crate::group_work::SetWarningTopicsParams) -> ()
);
forward!(
    /// Adds content warnings to someone's message (facilitators and co-facilitators): everyone
    /// gets a `warningAdded` event. Warnings are only ever added, never taken away.
    "addWarning", add_warning(crate::group_work::AddWarningParams) -> ()
);
forward!(
    /// The topics this device hides in the group (a local setting, never sent).
    "hiddenTopics", hidden_topics(dto::GroupParams) -> Vec<u16>
);
forward!(
    /// Sets the topics this device hides in the group: messages with one of them are `hidden`
    /// (kept on this device and the person's own new devices, never sent to the group).
    "setHiddenTopics", set_hidden_topics(crate::group_work::SetHiddenTopicsParams) -> ()
);
forward!(
    /// Publishes the group's resource library (facilitators and co-facilitators): the whole
    /// library, checked first (every link `https://`).
    "setResources", set_resources(crate::group_work::SetResourcesParams) -> ()
);
forward!(
    /// Opens a check-in round with its prompt, an optional turn order and an optional closing
    /// time (facilitators and co-facilitators; one round open at a time). Resolves to its id.
    "openRound", open_round(crate::group_work::OpenRoundParams) -> String
);
forward!(
    /// Closes a round (facilitators and co-facilitators).
    "closeRound", close_round(crate::group_work::RoundParams) -> ()
);
forward!(
    /// Answers an open round; resolves to the message. A later answer (or pass) replaces it.
    "answerRound", answer_round(crate::group_work::AnswerRoundParams) -> object dto::ChatMessage
);
forward!(
    /// Passes in an open round; resolves to the message (shown as "passed").
    "passRound", pass_round(crate::group_work::RoundParams) -> object dto::ChatMessage
);
forward!(
    /// The group's check-in rounds, oldest first, each with its prompt and answers.
    "rounds", rounds(dto::GroupParams) -> list crate::group_work::RoundView
);

#[wasm_bindgen]
impl ConfideCore {
    /// The person's own safety plan (six sections, empty until they write one). It is kept
    /// only in this profile's encrypted store and on their own linked devices.
    #[wasm_bindgen(js_name = safetyPlan)]
    pub async fn safety_plan(&self) -> Result<Ts<crate::group_work::SafetyPlan>, JsValue> {
        let session = self.session()?;
        ts(&session.safety_plan().await?)
    }
}

forward!(
    /// Keeps the person's whole safety plan (`invalid` past 20 entries in a section or 500
    /// characters in an entry). Never sent to any group or readable by the server.
    "setSafetyPlan", set_safety_plan(crate::group_work::SetSafetyPlanParams) -> ()
);
