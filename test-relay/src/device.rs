//! One person's device on the relay ([`Device`]), and the driving a browser client's receive
//! loop would do ([`settle`]).

use std::collections::BTreeSet;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use confide_client_core::{
    ChatMessage, ClientCore, ClientStore, Invite, InviteOptions, JoinOutcome, Link, MemoryStore,
    Profile,
};
use confide_protocol::{DeviceIdentity, GroupId, UserId};
use rand_core::SeedableRng as _;

use crate::host::{Clock, Events, TestHost};
use crate::link::RelayNet;
use crate::relay::SharedRelay;

/// One person's device: a core over its own store (a [`MemoryStore`] unless a test puts it on
/// another backend), connected to the relay.
pub struct Device<S: ClientStore = MemoryStore> {
    /// The person's name (also their display name), for assertion messages.
    pub name: &'static str,
    /// Their user.
    pub user: UserId,
    /// The core.
    pub core: ClientCore<S, RelayNet>,
    /// A handle on the core's store, to look at or copy what it holds.
    pub store: S,
    /// The events the core handed the application.
    pub events: Events,
}

impl Device {
    /// A new device of a new user over a new [`MemoryStore`]; see [`Device::start_on`].
    pub async fn start(relay: &SharedRelay, seed: u8, name: &'static str) -> Device {
        Device::start_on(relay, MemoryStore::new(), seed, name).await
    }
}

impl<S: ClientStore + Clone> Device<S> {
    /// A new device of a new user over `store` (empty), registered with the relay and
    /// connected. Its identity is seeded with `[seed; 32]`, its user is `[seed; 16]` and its
    /// host's randomness is seeded with `[seed + 100; 32]`; it reads the relay's clock.
    pub async fn start_on(
        relay: &SharedRelay,
        store: S,
        seed: u8,
        name: &'static str,
    ) -> Device<S> {
        let identity = DeviceIdentity::generate(&mut ChaCha20Rng::from_seed([seed; 32]));
        let profile = Profile::new(UserId([seed; 16]), name);
        confide_client_core::profile::create(&store, &identity, &profile)
            .await
            .unwrap();
        Device::open(relay, store, name, seed.wrapping_add(100)).await
    }

    /// The device whose profile `store` holds (a copy of another device's store, say), started
    /// on it and connected to the relay, with its host's randomness seeded with
    /// `[rng_seed; 32]`; it reads the relay's clock.
    pub async fn open(
        relay: &SharedRelay,
        store: S,
        name: &'static str,
        rng_seed: u8,
    ) -> Device<S> {
        let (identity, profile) = confide_client_core::profile::load(&store).await.unwrap();
        let user = profile.user;
        let events = Events::default();
        let clock: Clock = relay.lock().clock.clone();
        let host = TestHost::new(clock, rng_seed, events.clone());
        let mut core = ClientCore::new(
            store.clone(),
            RelayNet(relay.clone()),
            Box::new(host),
            identity,
            profile,
            None,
        )
        .await
        .unwrap();
        core.connect().await.unwrap();
        core.after_connect().await;
        assert!(core.is_registered(), "{name} is not registered");
        Device {
            name,
            user,
            core,
            store,
            events,
        }
    }

    /// Joins a group with an invite link and checks it worked at once (no approval needed).
    pub async fn join(&mut self, link: &str) -> GroupId {
        let outcome = self
            .core
            .join(Invite::from_link(link).unwrap(), None)
            .await
            .unwrap();
        let JoinOutcome::Joined(group) = outcome else {
            panic!("{} did not join: {outcome:?}", self.name);
        };
        self.core.after_input().await;
        group
    }

    /// The messages the application was handed as new ([`confide_client_core::Event::Message`]).
    pub fn shown(&self) -> Vec<ChatMessage> {
        self.events.shown()
    }

    /// The texts of the group's history as the person scrolls back, oldest first.
    pub async fn history_texts(&self, group: GroupId) -> Vec<String> {
        let history = self.core.history(group, None, 100).await.unwrap();
        history.into_iter().map(|m| m.text).collect()
    }
}

/// A link to `group` that lets ten people join directly for an hour, made by `facilitator`
/// (what they would paste into another app).
pub async fn invite_link<S: ClientStore>(facilitator: &mut Device<S>, group: GroupId) -> String {
    let invite = facilitator
        .core
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(10)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    invite.to_link()
}

/// Hands every device the frames the relay queued for it, as a client's receive loop would,
/// until no frame waits anywhere.
pub async fn settle<S: ClientStore>(devices: &mut [Device<S>]) {
    loop {
        let mut moved = false;
        for device in devices.iter_mut() {
            while device.core.link_mut().is_some_and(|link| link.has_frames()) {
                let link = device.core.link_mut().unwrap();
                let frame = Link::recv(link, Duration::ZERO).await.unwrap().unwrap();
                device.core.receive(frame).await;
                device.core.after_input().await;
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

/// A relay on a ticking clock at [`crate::T0`] and `names.len()` connected devices (seeded
/// 1, 2, …); the first creates a group and makes an invite link, and every other one joins
/// with that link. Every device's view has settled, and everyone sees everyone as a member.
pub async fn group_of(names: &[&'static str]) -> (SharedRelay, Vec<Device>, GroupId) {
    let stores = names.iter().map(|_| MemoryStore::new()).collect();
    group_on(names, stores).await
}

/// [`group_of`] with each device over its store of `stores` (empty; one per name).
pub async fn group_on<S: ClientStore + Clone>(
    names: &[&'static str],
    stores: Vec<S>,
) -> (SharedRelay, Vec<Device<S>>, GroupId) {
    assert_eq!(names.len(), stores.len(), "one store per device");
    let relay = SharedRelay::new(Clock::ticking(crate::T0));
    let mut devices = Vec::new();
    for ((seed, name), store) in (1..).zip(names).zip(stores) {
        devices.push(Device::start_on(&relay, store, seed, name).await);
    }
    let group = devices[0].core.create_group().await.unwrap();
    let link = invite_link(&mut devices[0], group).await;
    settle(&mut devices).await;
    for i in 1..devices.len() {
        let joined = devices[i].join(&link).await;
        assert_eq!(joined, group, "{}", devices[i].name);
        settle(&mut devices).await;
    }
    let everyone: BTreeSet<UserId> = devices.iter().map(|d| d.user).collect();
    for device in &devices {
        let members: BTreeSet<UserId> = device
            .core
            .members(group)
            .unwrap()
            .into_iter()
            .map(|m| m.user)
            .collect();
        assert_eq!(members, everyone, "{} sees other members", device.name);
    }
    (relay, devices, group)
}
