//! Linking this computer as a new device of an existing person: the new device's side of
//! PROTOCOL.md §3.7, before it has a profile. The existing device's side is
//! [`crate::Client::link_start`] and [`crate::Client::link_confirm`].

use confide_client_core::linking::{LinkOffer, NewDeviceLink};
use confide_client_core::{ClientError, Host};

use crate::native::{NativeHost, QueueGuardedLink, WsNetwork};
use crate::{Client, ClientConfig, Events, queue, store};

/// A link under way on the new device: show [`Self::code`] (and [`Self::qr_text`] as a QR
/// code), wait for the other device with [`Self::wait_for_offer`], let the person compare the
/// numbers, then [`Self::finish`] (or [`Self::cancel`]).
pub struct NewLink {
    link: NewDeviceLink<QueueGuardedLink>,
    config: ClientConfig,
}

impl std::fmt::Debug for NewLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewLink")
            .field("device", &self.link.device())
            .finish_non_exhaustive()
    }
}

impl NewLink {
    pub(crate) async fn open(config: ClientConfig) -> Result<NewLink, ClientError> {
        // Nothing reads events before the profile exists; the queue only satisfies the dialler.
        let (events, _unread) = queue::channel(16, 16);
        let mut net = WsNetwork {
            url: config.server_url.clone(),
            trust: config.trust.clone(),
            events: events.clone(),
        };
        let mut host = NativeHost {
            events,
            #[cfg(feature = "test-hooks")]
            ahead_ms: Default::default(),
        };
        let link = NewDeviceLink::open(&mut net, &mut host as &mut dyn Host).await?;
        Ok(NewLink { link, config })
    }

    /// The one-time code to show, as `XXXXX-XXXXX`.
    pub fn code(&self) -> String {
        self.link.code()
    }

    /// The text to draw as a QR code (the code and this device's id).
    pub fn qr_text(&self) -> String {
        self.link.qr_text()
    }

    /// Waits (up to 10 minutes) for the other device, exchanges keys, and returns the numbers
    /// and name to show.
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`], [`ClientError::LinkFailed`] (`link_mismatch`,
    /// `link_cancelled`), or the connection's.
    pub async fn wait_for_offer(&mut self) -> Result<LinkOffer, ClientError> {
        self.link.wait_for_offer().await
    }

    /// The person confirmed that both screens show the same numbers: receives and checks the
    /// bundle, makes the encrypted profile (at the configured store path, under `passphrase`),
    /// registers this device and connects. What the bundle brought for each group is imported
    /// as the groups' logs reach this device.
    ///
    /// # Errors
    ///
    /// [`ClientError::LinkFailed`] (`link_mismatch`, `link_bad_bundle`, `link_cancelled`),
    /// [`ClientError::Store`] if the store cannot be created, and the errors of registering.
    pub async fn finish(self, passphrase: &[u8]) -> Result<(Client, Events), ClientError> {
        let NewLink { link, config } = self;
        let linked = link.confirm().await?;
        let store = store::Store::create(
            &config.store_path,
            passphrase,
            config.kdf,
            &mut crate::os_rng(),
        )?;
        let profile = confide_client_core::profile::create_linked(&store, &linked).await?;
        Client::start(config, store, linked.into_identity(), profile, true).await
    }

    /// Stops linking and tells the other device.
    pub async fn cancel(self) {
        self.link.cancel().await;
    }
}
