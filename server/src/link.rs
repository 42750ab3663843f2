//! Link channels (PROTOCOL.md §3.7, §9.4): a relay of a few opaque messages between a device
//! being linked (the opener, not yet authenticated) and an existing device of the user (the
//! joiner).
//!
//! Channels live in this process's memory only: a cluster of servers needs them on a shared bus
//! (the two devices may reach different servers), as it needs live deliveries there. A restart
//! ends every channel; the devices start linking again.
//!
//! A channel ends when either party's connection closes, or `link_timeout` after it opened; the
//! party still connected then gets `link_closed`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confide_protocol::frames::ServerFrame;

use crate::address::AddressKey;
use crate::hub::{ConnHandle, outbound};
use crate::metrics::Metrics;

/// A channel id: `SHA-256(labelled("confide/v1/link-channel", code))`, chosen by the opener.
pub type ChannelId = [u8; 32];

/// Why a link request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkRefusal {
    /// The channel is open already (or this connection has one open).
    Busy,
    /// The address has as many channels open as allowed.
    TooMany,
    /// No such channel that this connection may use.
    Unknown,
}

struct Channel {
    /// Tells this channel apart from a later one with the same id (for its expiry timer).
    generation: u64,
    address: AddressKey,
    opener: ConnHandle,
    joiner: Option<ConnHandle>,
}

#[derive(Default)]
struct Inner {
    channels: HashMap<ChannelId, Channel>,
    per_address: HashMap<AddressKey, usize>,
    /// The channels each connection is a party of, so that a closing connection finds its own.
    by_conn: HashMap<u64, Vec<ChannelId>>,
    next_generation: u64,
}

impl Inner {
    fn add_party(&mut self, conn: u64, id: ChannelId) {
        self.by_conn.entry(conn).or_default().push(id);
    }

    fn remove_party(&mut self, conn: u64, id: &ChannelId) {
        if let Some(ids) = self.by_conn.get_mut(&conn) {
            ids.retain(|c| c != id);
            if ids.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
    }

    /// Removes a channel and returns it (and frees its address's slot).
    fn remove(&mut self, id: &ChannelId) -> Option<Channel> {
        let channel = self.channels.remove(id)?;
        self.remove_party(channel.opener.id, id);
        if let Some(joiner) = &channel.joiner {
            self.remove_party(joiner.id, id);
        }
        if let Some(n) = self.per_address.get_mut(&channel.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_address.remove(&channel.address);
            }
        }
        Some(channel)
    }
}

/// Every open link channel.
#[derive(Clone, Default)]
pub struct Links {
    inner: Arc<Mutex<Inner>>,
}

/// Sends `link_closed` for `channel` to `to`.
fn closed(to: &ConnHandle, channel: ChannelId, metrics: &Metrics) {
    if let Ok(text) = (ServerFrame::LinkClosed { channel }).to_json() {
        to.deliver(&outbound(text), metrics);
    }
}

impl Links {
    /// Opens `channel` for the connection `opener` from `ip`; it expires after `timeout`
    /// (a timer task, so this must run on the tokio runtime).
    pub fn open(
        &self,
        channel: ChannelId,
        opener: &ConnHandle,
        ip: std::net::IpAddr,
        max_per_address: usize,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<(), LinkRefusal> {
        let address = AddressKey::of(ip);
        let generation = {
            let Ok(mut inner) = self.inner.lock() else {
                return Err(LinkRefusal::Busy);
            };
            if inner.channels.contains_key(&channel) {
                return Err(LinkRefusal::Busy);
            }
            let open = inner.per_address.get(&address).copied().unwrap_or(0);
            if open >= max_per_address {
                return Err(LinkRefusal::TooMany);
            }
            inner.per_address.insert(address, open + 1);
            inner.next_generation = inner.next_generation.wrapping_add(1);
            let generation = inner.next_generation;
            inner.add_party(opener.id, channel);
            inner.channels.insert(
                channel,
                Channel {
                    generation,
                    address,
                    opener: opener.clone(),
                    joiner: None,
                },
            );
            generation
        };
        let links = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let expired = {
                let Ok(mut inner) = links.inner.lock() else {
                    return;
                };
                if inner
                    .channels
                    .get(&channel)
                    .is_some_and(|c| c.generation == generation)
                {
                    inner.remove(&channel)
                } else {
                    None
                }
            };
            if let Some(c) = expired {
                closed(&c.opener, channel, &metrics);
                if let Some(joiner) = &c.joiner {
                    closed(joiner, channel, &metrics);
                }
            }
        });
        Ok(())
    }

    /// Joins `channel` as `joiner`; returns the opener, to be told that the peer arrived.
    pub fn join(
        &self,
        channel: &ChannelId,
        joiner: &ConnHandle,
    ) -> Result<ConnHandle, LinkRefusal> {
        let Ok(mut inner) = self.inner.lock() else {
            return Err(LinkRefusal::Unknown);
        };
        match inner.channels.get_mut(channel) {
            Some(c) if c.joiner.is_none() && c.opener.id != joiner.id => {
                c.joiner = Some(joiner.clone());
                let opener = c.opener.clone();
                inner.add_party(joiner.id, *channel);
                Ok(opener)
            }
            _ => Err(LinkRefusal::Unknown),
        }
    }

    /// The other party of `channel` for the connection `from`, and whether `from` opened it.
    pub fn peer(&self, channel: &ChannelId, from: u64) -> Result<(ConnHandle, bool), LinkRefusal> {
        let Ok(inner) = self.inner.lock() else {
            return Err(LinkRefusal::Unknown);
        };
        let c = inner.channels.get(channel).ok_or(LinkRefusal::Unknown)?;
        let joiner = c.joiner.as_ref().ok_or(LinkRefusal::Unknown)?;
        if c.opener.id == from {
            Ok((joiner.clone(), true))
        } else if joiner.id == from {
            Ok((c.opener.clone(), false))
        } else {
            Err(LinkRefusal::Unknown)
        }
    }

    /// The connection `conn` closed: ends every channel it is a party of and tells the other
    /// parties.
    pub fn connection_closed(&self, conn: u64, metrics: &Metrics) {
        let ended: Vec<(ChannelId, Channel)> = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            let ids = inner.by_conn.remove(&conn).unwrap_or_default();
            ids.into_iter()
                .filter_map(|id| inner.remove(&id).map(|c| (id, c)))
                .collect()
        };
        for (id, c) in ended {
            for party in std::iter::once(&c.opener).chain(c.joiner.as_ref()) {
                if party.id != conn {
                    closed(party, id, metrics);
                }
            }
        }
    }

    /// How many channels are open (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.channels.len())
    }

    /// Whether no channel is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
