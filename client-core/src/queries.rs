//! Reads for the application that change nothing: history, the groups and their members,
//! safety numbers, and message numbers.

use confide_protocol::{DeviceKeys, GroupId, Seq, UserId};

use crate::Network;
use crate::error::{ClientError, Missing, VerificationError};
use crate::events::ChatMessage;
use crate::group::{GroupCtx, look_alikes, private_peer};
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_MESSAGES, T_PARKED, key2};

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Up to `limit` messages before `before` (or the newest), oldest first.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know, and
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn history(
        &self,
        group: GroupId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        let start = key2(group.as_bytes(), &0u64.to_be_bytes());
        let end = key2(
            group.as_bytes(),
            &before.map_or(u64::MAX, |s| s.0).to_be_bytes(),
        );
        let mut page: Vec<ChatMessage> = self
            .db
            .scan_range_rev::<ChatMessage>(T_MESSAGES, &start, &end, limit)
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        page.reverse();
        for message in &mut page {
            self.mark_hidden(message).await;
        }
        Ok(page)
    }

    /// The seq of message `number` of `group` ([`ChatMessage::number`]), also for a message
    /// deleted since; `None` if no message had that number here.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know, and
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn seq_of_number(
        &self,
        group: GroupId,
        number: u64,
    ) -> Result<Option<Seq>, ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        self.seq_of(group, number).await
    }

    /// The groups this device knows.
    pub async fn groups(&self) -> Vec<crate::GroupInfo> {
        let me = self.device();
        let mut infos = Vec::with_capacity(self.groups.len());
        for (group, ctx) in &self.groups {
            let member = ctx.is_member(&me);
            let invited = member && !ctx.meta.accepted;
            let waiting = if invited {
                self.db
                    .count(T_PARKED, group.as_bytes())
                    .await
                    .map_or(0, |(n, _)| n)
            } else {
                0
            };
            let unread = if member && !invited {
                usize::try_from(ctx.meta.unread).unwrap_or(usize::MAX)
            } else {
                0
            };
            let members = ctx.state.members();
            let private_with = if member {
                private_peer(ctx, &self.profile.user)
                    .map(|peer| self.peer_among_groups(*group, peer))
            } else {
                None
            };
            infos.push(crate::GroupInfo {
                group: *group,
                member,
                role: ctx.state.member_of_device(&me).map(|(_, m)| m.role),
                members: members.len(),
                epoch: ctx.state.epoch(),
                tampered: ctx.meta.tampered.clone(),
                invited,
                waiting,
                unread,
                private_with,
                sync_refused: ctx
                    .meta
                    .sync_refused
                    .clone()
                    .map(|code| crate::SyncRefusal {
                        code,
                        since: ctx.meta.sync_refused_at,
                    }),
                post_quantum: members
                    .values()
                    .flat_map(|m| &m.entry.devices)
                    .all(|keys| keys.has_pq_key()),
            });
        }
        infos
    }

    /// What the user's other groups say of the other person of private conversation
    /// `private`: the groups (accepted, and this device still in them) where the same user is
    /// a member with the same device keys, and the members there, other people, whose names
    /// look like theirs. The same user id with other keys is not the same person: anyone (the
    /// server above all) can put any user id and name into a group of their own.
    fn peer_among_groups(&self, private: GroupId, mut peer: crate::Peer) -> crate::Peer {
        let me = self.device();
        let peer_devices: Option<&Vec<DeviceKeys>> = self
            .groups
            .get(&private)
            .and_then(|ctx| ctx.state.member(&peer.user))
            .map(|m| &m.entry.devices);
        // With device lists the person is their identity key (their devices differ legitimately
        // between list versions, §3.5).
        let peer_identity = self
            .groups
            .get(&private)
            .and_then(|ctx| ctx.state.identity_of(&peer.user));
        let mut groups: Vec<(&GroupId, &GroupCtx)> = self
            .groups
            .iter()
            .filter(|(g, ctx)| **g != private && ctx.meta.accepted && ctx.is_member(&me))
            .collect();
        groups.sort_by_key(|(g, _)| **g);
        for (group, ctx) in groups {
            let same = match peer_identity {
                Some(identity) => ctx.state.identity_of(&peer.user) == Some(identity),
                None => ctx
                    .state
                    .member(&peer.user)
                    .is_some_and(|m| Some(&m.entry.devices) == peer_devices),
            };
            if same {
                peer.shared_groups.push(*group);
            }
            let others = ctx
                .state
                .members()
                .iter()
                .filter(|(user, _)| **user != peer.user && **user != self.profile.user)
                .map(|(_, m)| m.entry.display_name.as_str());
            for name in confide_protocol::names::confusable_with(&peer.display_name, others) {
                peer.looks_like.push((name, *group));
            }
        }
        peer
    }

    /// A group's members, from its verified log.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know.
    pub fn members(&self, group: GroupId) -> Result<Vec<crate::MemberInfo>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        Ok(ctx
            .state
            .members()
            .iter()
            .map(|(user, m)| crate::MemberInfo {
                user: *user,
                display_name: m.entry.display_name.clone(),
                role: m.role,
                devices: m.entry.devices.iter().map(|d| d.device).collect(),
                muted_until: ctx.state.muted_until(user, self.host.now()),
                looks_like: look_alikes(&ctx.state, user, &m.entry.display_name),
            })
            .collect())
    }

    /// The safety number to compare with `user` out of band (PROTOCOL.md §3.5): one per device
    /// of theirs, one per line (one line while users have one device each).
    ///
    /// Their keys are taken only from groups the user accepted and this device is a member of:
    /// a group the server made up, or one someone added this device to that the user has not
    /// accepted, says nothing about whose keys are real. If those groups list different keys
    /// for them, there is no one number to compare: that is an error that names the groups,
    /// since in one of them someone is not who the name says.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] ([`Missing::SharedGroup`]) if no accepted group of this
    /// device has `user` in it; [`ClientError::Verification`]
    /// ([`VerificationError::KeysDiffer`]) if two of them list different keys for `user`.
    pub fn safety_number(&self, user: UserId) -> Result<String, ClientError> {
        let me = self.device();
        let mut groups: Vec<(&GroupId, &GroupCtx)> = self
            .groups
            .iter()
            .filter(|(_, ctx)| {
                ctx.meta.accepted && ctx.is_member(&me) && ctx.meta.tampered.is_none()
            })
            .collect();
        groups.sort_by_key(|(g, _)| **g);
        // What identifies the person in each group: their identity key when their entry has a
        // device list (its devices legitimately differ between versions, §3.9), else their
        // device keys.
        #[derive(PartialEq)]
        enum Keys<'a> {
            Identity(confide_protocol::device_list::IdentityKey),
            Devices(&'a Vec<DeviceKeys>),
        }
        let mut found: Option<(GroupId, Keys)> = None;
        for (group, ctx) in groups {
            let Some(member) = ctx.state.member(&user) else {
                continue;
            };
            let keys = match ctx.state.identity_of(&user) {
                Some(identity) => Keys::Identity(identity),
                None => Keys::Devices(&member.entry.devices),
            };
            match &found {
                None => found = Some((*group, keys)),
                Some((first, known)) if *known != keys => {
                    return Err(VerificationError::KeysDiffer {
                        user,
                        first: *first,
                        second: *group,
                    }
                    .into());
                }
                Some(_) => {}
            }
        }
        let mine = confide_protocol::identity::identity_fingerprint_digits(
            &self.profile.user,
            &self.own_list_parsed.identity,
        );
        match found.map(|(_, keys)| keys) {
            Some(Keys::Identity(identity)) => {
                Ok(confide_protocol::identity::safety_number_from_halves(
                    &mine,
                    &confide_protocol::identity::identity_fingerprint_digits(&user, &identity),
                ))
            }
            Some(Keys::Devices(devices)) if !devices.is_empty() => Ok(devices
                .iter()
                .map(|keys| {
                    confide_protocol::identity::safety_number_from_halves(
                        &mine,
                        &confide_protocol::identity::fingerprint_digits(&user, &keys.device),
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")),
            _ => Err(Missing::SharedGroup { user }.into()),
        }
    }
}
