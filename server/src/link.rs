//! Link channels (PROTOCOL.md §3.7, §9.4): a relay of a few opaque messages between a device
//! being linked (the opener, not yet authenticated) and an existing device of the user (the
//! joiner).
//!
//! A channel lives in the memory of the node its opener reached. With several nodes
//! ([`crate::cluster`]) the joiner may reach another node: that node asks the others over NATS
//! which one holds the channel, and the two nodes relay the channel's messages to each other
//! (PROTOCOL.md §10.6). A restart of the opener's node ends the channel; the devices start
//! linking again.
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
    /// The channel has relayed as many bytes as one may
    /// ([`crate::config::MAX_LINK_BYTES_PER_CHANNEL`]).
    Exhausted,
}

/// The other party of a channel, as one node sees it.
#[derive(Clone)]
pub enum Party {
    /// A connection on this node.
    Local(ConnHandle),
    /// A connection on another node of the cluster (its node id), reached through NATS.
    Remote(String),
}

impl Party {
    fn conn_id(&self) -> Option<u64> {
        match self {
            Party::Local(handle) => Some(handle.id),
            Party::Remote(_) => None,
        }
    }
}

struct Channel {
    /// Tells this channel apart from a later one with the same id (for its expiry timer).
    generation: u64,
    address: AddressKey,
    opener: ConnHandle,
    joiner: Option<Party>,
    /// Bytes of `data` relayed so far, both ways.
    relayed: usize,
    /// The expiry timer, stopped when the channel ends earlier (else a peer opening and
    /// dropping channels in a loop would leave a sleeping task per channel for `link_timeout`).
    expiry: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct Inner {
    channels: HashMap<ChannelId, Channel>,
    per_address: HashMap<AddressKey, usize>,
    /// The channels each connection is a party of, so that a closing connection finds its own.
    by_conn: HashMap<u64, Vec<ChannelId>>,
    next_generation: u64,
    /// Channels another node holds, joined by a connection here: the joiner, the node of the
    /// opener, and the bytes the joiner sent so far.
    joined_elsewhere: HashMap<ChannelId, (ConnHandle, String, usize)>,
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
        if let Some(expiry) = &channel.expiry {
            expiry.abort();
        }
        self.remove_party(channel.opener.id, id);
        if let Some(joiner) = channel.joiner.as_ref().and_then(Party::conn_id) {
            self.remove_party(joiner, id);
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
    /// The other nodes, if any: told when a channel one of them takes part in ends.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Tells `to` that `channel` ended: `link_closed` to a connection here, or its node.
fn tell_closed(
    to: &Party,
    channel: ChannelId,
    cluster: Option<&crate::cluster::Cluster>,
    metrics: &Metrics,
) {
    match to {
        Party::Local(handle) => closed(handle, channel, metrics),
        Party::Remote(node) => {
            if let Some(cluster) = cluster {
                cluster.hint(crate::cluster::Hint::LinkClosed {
                    node: node.clone(),
                    channel,
                });
            }
        }
    }
}

/// Sends `link_closed` for `channel` to `to`.
fn closed(to: &ConnHandle, channel: ChannelId, metrics: &Metrics) {
    if let Ok(text) = (ServerFrame::LinkClosed { channel }).to_json() {
        to.deliver(&outbound(text), metrics);
    }
}

impl Links {
    /// No channel open; channels may span the nodes of `cluster`.
    pub fn new(cluster: Option<Arc<crate::cluster::Cluster>>) -> Links {
        Links {
            inner: Arc::default(),
            cluster,
        }
    }

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
                    relayed: 0,
                    expiry: None,
                },
            );
            generation
        };
        let links = self.clone();
        let timer = tokio::spawn(async move {
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
                    tell_closed(joiner, channel, links.cluster.as_deref(), &metrics);
                }
            }
        });
        if let Ok(mut inner) = self.inner.lock() {
            match inner.channels.get_mut(&channel) {
                Some(c) if c.generation == generation => c.expiry = Some(timer.abort_handle()),
                // Already gone (the opener closed at once): the timer has nothing to do.
                _ => timer.abort(),
            }
        }
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
                c.joiner = Some(Party::Local(joiner.clone()));
                let opener = c.opener.clone();
                inner.add_party(joiner.id, *channel);
                Ok(opener)
            }
            _ => Err(LinkRefusal::Unknown),
        }
    }

    /// A connection on the node `node` joins `channel`, which this node holds; returns the
    /// opener, to be told that the peer arrived.
    pub fn join_from(&self, channel: &ChannelId, node: String) -> Result<ConnHandle, LinkRefusal> {
        let Ok(mut inner) = self.inner.lock() else {
            return Err(LinkRefusal::Unknown);
        };
        match inner.channels.get_mut(channel) {
            Some(c) if c.joiner.is_none() => {
                c.joiner = Some(Party::Remote(node));
                Ok(c.opener.clone())
            }
            _ => Err(LinkRefusal::Unknown),
        }
    }

    /// `joiner`, a connection here, joined `channel`, which the node `node` holds.
    pub fn joined_elsewhere(&self, channel: ChannelId, joiner: &ConnHandle, node: String) {
        if let Ok(mut inner) = self.inner.lock() {
            inner
                .joined_elsewhere
                .insert(channel, (joiner.clone(), node, 0));
            inner.add_party(joiner.id, channel);
        }
    }

    /// Forgets a channel `joined_elsewhere` recorded (the node holding it did not answer).
    pub fn forget_elsewhere(&self, channel: &ChannelId) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some((joiner, _, _)) = inner.joined_elsewhere.remove(channel)
        {
            inner.remove_party(joiner.id, channel);
        }
    }

    /// The other party of `channel` for the connection `from`, which sends `len` bytes over
    /// it, and whether `from` opened it. Counts the bytes against the channel's allowance.
    pub fn peer(
        &self,
        channel: &ChannelId,
        from: u64,
        len: usize,
    ) -> Result<(Party, bool), LinkRefusal> {
        let Ok(mut inner) = self.inner.lock() else {
            return Err(LinkRefusal::Unknown);
        };
        let within = |relayed: &mut usize| {
            let total = relayed.saturating_add(len);
            if total > crate::config::MAX_LINK_BYTES_PER_CHANNEL {
                return Err(LinkRefusal::Exhausted);
            }
            *relayed = total;
            Ok(())
        };
        if let Some((joiner, node, relayed)) = inner.joined_elsewhere.get_mut(channel) {
            if joiner.id != from {
                return Err(LinkRefusal::Unknown);
            }
            within(relayed)?;
            return Ok((Party::Remote(node.clone()), false));
        }
        let c = inner
            .channels
            .get_mut(channel)
            .ok_or(LinkRefusal::Unknown)?;
        let joiner = c.joiner.clone().ok_or(LinkRefusal::Unknown)?;
        let peer = if c.opener.id == from {
            (joiner, true)
        } else if joiner.conn_id() == Some(from) {
            (Party::Local(c.opener.clone()), false)
        } else {
            return Err(LinkRefusal::Unknown);
        };
        within(&mut c.relayed)?;
        Ok(peer)
    }

    /// Counts `len` bytes that another node relayed into `channel` (held here) against its
    /// allowance; false once it is used up (the bytes are dropped).
    pub fn relayed_from_elsewhere(&self, channel: &ChannelId, len: usize) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        match inner.channels.get_mut(channel) {
            Some(c) => {
                let total = c.relayed.saturating_add(len);
                c.relayed = total;
                total <= crate::config::MAX_LINK_BYTES_PER_CHANNEL
            }
            // Joined from here: the joiner's bytes were counted when it sent them.
            None => true,
        }
    }

    /// The connection here that a message for `channel` from another node is for — the opener,
    /// if the joiner is elsewhere, or the joiner, if the opener is — and whether it is the
    /// opener (the other side's messages from the opener are limited in size).
    pub fn local_party(&self, channel: &ChannelId) -> Option<(ConnHandle, bool)> {
        let inner = self.inner.lock().ok()?;
        if let Some((joiner, _, _)) = inner.joined_elsewhere.get(channel) {
            return Some((joiner.clone(), false));
        }
        let c = inner.channels.get(channel)?;
        matches!(c.joiner, Some(Party::Remote(_))).then(|| (c.opener.clone(), true))
    }

    /// The other node ended `channel` (its party left, or the channel expired there): ends it
    /// here and tells the party here.
    pub fn ended_elsewhere(&self, channel: &ChannelId, metrics: &Metrics) {
        let party = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            if let Some((joiner, _, _)) = inner.joined_elsewhere.remove(channel) {
                inner.remove_party(joiner.id, channel);
                Some(joiner)
            } else if inner
                .channels
                .get(channel)
                .is_some_and(|c| matches!(c.joiner, Some(Party::Remote(_))))
            {
                inner.remove(channel).map(|c| c.opener)
            } else {
                None
            }
        };
        if let Some(party) = party {
            closed(&party, *channel, metrics);
        }
    }

    /// The connection `conn` closed: ends every channel it is a party of and tells the other
    /// parties.
    pub fn connection_closed(&self, conn: u64, metrics: &Metrics) {
        // The channels held here that ended, and those joined elsewhere with their nodes.
        let (ended, elsewhere) = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            let ids = inner.by_conn.remove(&conn).unwrap_or_default();
            let mut elsewhere: Vec<(ChannelId, String)> = Vec::new();
            let mut ended: Vec<(ChannelId, Channel)> = Vec::new();
            for id in ids {
                if let Some((_, node, _)) = inner.joined_elsewhere.remove(&id) {
                    elsewhere.push((id, node));
                } else if let Some(c) = inner.remove(&id) {
                    ended.push((id, c));
                }
            }
            (ended, elsewhere)
        };
        let cluster = self.cluster.as_deref();
        for (id, c) in ended {
            let parties = std::iter::once(Party::Local(c.opener)).chain(c.joiner);
            for party in parties {
                if party.conn_id() != Some(conn) {
                    tell_closed(&party, id, cluster, metrics);
                }
            }
        }
        for (id, node) in elsewhere {
            tell_closed(&Party::Remote(node), id, cluster, metrics);
        }
    }

    /// How many channels are open here, held or joined (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map_or(0, |i| i.channels.len() + i.joined_elsewhere.len())
    }

    /// Whether no channel is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_channel_relays_a_bundle_but_not_an_endless_stream() {
        let links = Links::new(None);
        let (opener, _opener_rx) = ConnHandle::new(1, 16, 1 << 20);
        let (joiner, _joiner_rx) = ConnHandle::new(2, 16, 1 << 20);
        let channel = [7; 32];
        links
            .open(
                channel,
                &opener,
                std::net::IpAddr::from([127, 0, 0, 1]),
                4,
                Duration::from_secs(60),
                Arc::new(Metrics::default()),
            )
            .unwrap();
        links.join(&channel, &joiner).unwrap();
        // The largest bundle goes through.
        let bundle = confide_protocol::link::MAX_LINK_BUNDLE_BYTES * 2;
        assert!(links.peer(&channel, joiner.id, bundle).is_ok());
        // A stream does not.
        let mut refused = None;
        for _ in 0..64 {
            if let Err(e) = links.peer(&channel, joiner.id, 64 * 1024) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(LinkRefusal::Exhausted));
        // Nor the other way.
        assert_eq!(
            links.peer(&channel, opener.id, 1).err(),
            Some(LinkRefusal::Exhausted)
        );
    }
}
