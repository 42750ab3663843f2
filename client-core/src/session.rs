//! The session with the server: connecting and authenticating, requests and their replies
//! (handling every other frame that arrives meanwhile), sending frames only after the step
//! so far is committed, acknowledging inbox items, and noticing a lost connection.

use std::time::Duration;

use confide_protocol::RequestId;
use confide_protocol::frames::{self, ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame};

use crate::error::{ClientError, StoreError, unexpected_reply};
use crate::events::Event;
use crate::machine::{ClientCore, millis};
use crate::store::{ClientStore, T_PROFILE};
use crate::{Link, Network};

/// How long a request waits for its reply.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a group's sync failed for a reason that passes by itself (the server's disk, a
/// restart, a rate limit or a bug of its own, the connection, this device's own store): then
/// every sync that meets it fails, as the caller must not believe it has everything.
pub(crate) fn is_passing_failure(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, .. } => is_passing(*code) || *code == ErrorCode::Internal,
        ClientError::Transport(_)
        | ClientError::Timeout { .. }
        | ClientError::UnexpectedReply { .. }
        | ClientError::SyncStalled { .. }
        | ClientError::Closed
        | ClientError::Store(_) => true,
        _ => false,
    }
}

/// Whether the server refused a post for a passing reason, so that the identical envelope is
/// posted again later (PROTOCOL.md §9.8) rather than reported as failed.
///
/// The reference client's re-post policy, a subset of the codes the protocol says a client
/// may retry ([`ErrorCode::is_retryable`], §9.9): `muted` and `slow_mode` are told to the
/// user (or handled by the held-message path), and `inbox_full` and `too_many_connections`
/// never answer a post or a sync. The test below keeps it a subset.
pub(crate) fn is_passing(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Storage | ErrorCode::ShuttingDown | ErrorCode::RateLimited
    )
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    pub(crate) fn disconnected(&mut self, reason: String) {
        self.own_list_current = false;
        if self.conn.take().is_some() {
            self.emit(Event::Disconnected { reason });
        }
    }

    /// Dials the server, authenticates (registering on first use), resyncs every group and
    /// posts the outbox again. On success the application has had [`Event::Connected`] and
    /// [`Event::Synced`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] if the server cannot be reached or the connection fails;
    /// [`ClientError::Timeout`] if the server does not greet it or answer authentication in time;
    /// [`ClientError::IncompatibleServer`] for a server of another protocol version;
    /// [`ClientError::Server`] if the server refuses the device (`auth_failed`,
    /// `registration_closed`, …) or the list of groups; [`ClientError::UnexpectedReply`] for a
    /// reply of the wrong type; [`ClientError::Store`] if the registration or the sync cannot be
    /// stored (a store failure while syncing a group undoes the step and drops the connection:
    /// that fails the connection too). A group whose sync fails otherwise does not fail the
    /// connection: [`Self::sync`] reports it.
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        if self.unlinked {
            return Err(StoreError::Unlinked.into());
        }
        self.reverted = None;
        let mut conn = self.net.dial().await?;
        let challenge =
            Link::recv(&mut conn, REQUEST_TIMEOUT)
                .await?
                .ok_or(ClientError::Timeout {
                    waiting_for: "connect",
                    after: REQUEST_TIMEOUT,
                })?;
        let ServerFrame::Challenge { nonce, version, .. } = challenge else {
            return Err(unexpected_reply(challenge, "challenge"));
        };
        if version != PROTOCOL_VERSION {
            return Err(ClientError::IncompatibleServer { version });
        }
        let signature = frames::sign_auth(&self.identity, conn.host(), &nonce);
        self.conn = Some(conn);
        let reply = if self.profile.registered {
            let device = self.device();
            self.request(|id| ClientFrame::Authenticate {
                id,
                version: PROTOCOL_VERSION,
                device,
                signature,
            })
            .await
        } else {
            let frame_token = self.registration_token.clone();
            let keys = self.identity.public_keys();
            let (user, display_name) = (self.profile.user, self.profile.display_name.clone());
            let list = self.registration_list();
            self.request(|id| ClientFrame::Register {
                id,
                version: PROTOCOL_VERSION,
                user,
                display_name,
                keys,
                registration_token: frame_token,
                device_list: Some(list),
                signature,
            })
            .await
        };
        match reply {
            Ok(ServerFrame::Authenticated { .. }) => {}
            Ok(other) => {
                self.conn = None;
                return Err(unexpected_reply(other, "authenticated"));
            }
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        }
        if !self.profile.registered {
            self.profile.registered = true;
            self.db.put(T_PROFILE, b"profile", &self.profile)?;
            // The registration carried this user's list: the server has it on record.
            self.list_registered()?;
            self.commit().await?;
        }
        // Versions other devices published while this one was away (PROTOCOL.md §3.6): each
        // checked to succeed the one before.
        self.own_list_current = false;
        if self.own_list.published {
            match self.catch_up_own_list().await {
                Ok(()) => {
                    self.own_list_current = self.conn.is_some();
                    self.own_updates_due = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not follow this user's device list chain");
                    if self.conn.is_none() {
                        return Err(e);
                    }
                }
            }
        }
        if self.unlinked {
            return Err(StoreError::Unlinked.into());
        }
        // The list is current when the chain was followed, or when the server has just taken
        // it as this user's first.
        let first_list = !self.own_list.published;
        // A profile from before device lists publishes its first list now; a server that
        // refuses it leaves the device working as before, and it is tried again next time.
        if let Err(e) = self.publish_pending_list().await {
            tracing::warn!(error = %e, "could not publish this user's device list");
            if self.conn.is_none() {
                return Err(e);
            }
        }
        // A device that moved to protocol version 2 publishes its X-Wing key (PROTOCOL.md
        // §4.7), on the current list only; refused, it goes on sealing and being sealed to as
        // the list on record says.
        let current = self.own_list_current || (first_list && self.own_list.published);
        if current && let Err(e) = self.publish_own_keys().await {
            if self.conn.is_none() {
                tracing::warn!(error = %e, "could not publish this device's X-Wing key");
                return Err(e);
            }
            self.own_keys_refused(&e);
        }
        self.emit(Event::Connected);
        self.sync_all().await?;
        // A store failure during the sync undid its step and dropped the connection: the
        // connection failed, with that error, so that the caller backs off before dialling
        // again rather than reconnecting at once into the same failure.
        if self.conn.is_none() {
            let otherwise = self.sync_failure.take();
            return Err(self.lost_while_connecting(otherwise));
        }
        self.resend_outbox().await;
        // The same for the resend: a store failure (holding a message again, say) undid its
        // step, or the connection dropped (a passing failure the sync met is no reason for
        // that, and would turn a send that waits for the connection into a refused one).
        if self.conn.is_none() {
            return Err(self.lost_while_connecting(None));
        }
        // Boxed: both may append ops, and appending may connect.
        if let Err(e) = Box::pin(self.import_link_bundle()).await {
            tracing::warn!(error = %e, "could not import what the link bundle brought");
        }
        Box::pin(self.update_own_entries()).await;
        self.commit().await
    }

    /// Why the connection [`Self::connect`] made is gone already: the store failure that undid
    /// a step (and dropped it), else `otherwise` (a passing failure the sync met), else a
    /// closed connection.
    fn lost_while_connecting(&mut self, otherwise: Option<ClientError>) -> ClientError {
        match self.reverted.take() {
            Some(e) => ClientError::Store(e),
            None => {
                otherwise.unwrap_or(ClientError::Transport(crate::TransportError::Closed(None)))
            }
        }
    }

    pub(crate) async fn ensure_connected(&mut self) -> Result<(), ClientError> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        Ok(())
    }

    /// Sends a request and waits for its reply, handling every other frame that arrives
    /// meanwhile. A server error reply is returned as `Ok(ServerFrame::Error { .. })`; no
    /// reply within [`REQUEST_TIMEOUT`] is [`ClientError::Timeout`], and drops the connection.
    pub(crate) async fn request(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientFrame,
    ) -> Result<ServerFrame, ClientError> {
        self.request_committing(make, false).await
    }

    /// [`Self::request`] for a request that implies nothing stored — a read, such as a sync
    /// page's: it is sent before the step so far is committed, and **the caller commits that
    /// step** once the reply is here, before it handles the reply. In between it may start
    /// work on the reply that reads and changes no state (a sync page's signature checks, on
    /// the cores the host lends), so that the work runs while the step is stored. Nothing
    /// else is sent before that commit; a frame that arrives meanwhile is handled as a step of
    /// its own, after the step so far is committed. A crash before the commit loses the step
    /// as it would have lost it before the request (the server was only asked to read;
    /// PROTOCOL.md §11.12).
    ///
    /// An error reply is `Err`, as with [`Self::request_ok`].
    pub(crate) async fn request_ok_commit_after(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientFrame,
    ) -> Result<ServerFrame, ClientError> {
        refusal_as_err(self.request_committing(make, true).await?)
    }

    /// [`Self::request`], the step so far committed before the request is sent, or (`by_caller`)
    /// left to the caller, to commit once the reply is here.
    async fn request_committing(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientFrame,
        by_caller: bool,
    ) -> Result<ServerFrame, ClientError> {
        self.next_id += 1;
        let id = RequestId(self.next_id);
        let frame = make(id);
        let waiting_for = frame.type_name();
        if by_caller {
            self.send_uncommitted(&frame).await?;
        } else {
            self.send_frame(&frame).await?;
        }
        // By the host's wall clock: the core has no monotonic clock of its own.
        let deadline = self.host.now().0.saturating_add(millis(REQUEST_TIMEOUT));
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Err(ClientError::Transport(crate::TransportError::Closed(None)));
            };
            let left = Duration::from_millis(deadline.saturating_sub(self.host.now().0));
            let received = match left.is_zero() {
                true => Ok(None),
                false => Link::recv(conn, left).await,
            };
            match received {
                Ok(None) => {
                    self.disconnected("request timed out".into());
                    return Err(ClientError::Timeout {
                        waiting_for,
                        after: REQUEST_TIMEOUT,
                    });
                }
                Err(e) => {
                    self.disconnected(e.to_string());
                    return Err(e.into());
                }
                Ok(Some(reply)) if reply.request_id() == Some(id) => return Ok(reply),
                Ok(Some(other)) => {
                    // A frame that arrives meanwhile is a step of its own: stored, and shown,
                    // before the wait goes on. The step so far, which the caller was to commit
                    // (`by_caller`), is committed first, so that the two stay apart.
                    // Boxed: the request's own future stays small.
                    if by_caller {
                        self.commit().await?;
                    }
                    Box::pin(self.handle_frame(other)).await;
                    self.flush_acks().await;
                    self.commit().await?;
                }
            }
        }
    }

    /// Like [`Self::request`], turning an error reply into `Err`.
    pub(crate) async fn request_ok(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientFrame,
    ) -> Result<ServerFrame, ClientError> {
        refusal_as_err(self.request(make).await?)
    }

    /// Acknowledges processed inbox items (after the store is flushed, so nothing acknowledged
    /// can be lost locally). The `ok` reply is ignored when it arrives.
    pub(crate) async fn flush_acks(&mut self) {
        if self.pending_acks.is_empty() {
            return;
        }
        // Stored first: a failed commit reverts the step, acknowledgements included.
        if self.commit().await.is_err() {
            return;
        }
        let inbox_ids: Vec<u64> = std::mem::take(&mut self.pending_acks);
        for chunk in inbox_ids.chunks(frames::MAX_INBOX_ACKS_PER_FRAME) {
            self.next_id += 1;
            let ack = ClientFrame::AckInbox {
                id: RequestId(self.next_id),
                inbox_ids: chunk.to_vec(),
            };
            if self.conn.is_none() {
                return;
            }
            if self.send_frame(&ack).await.is_err() {
                return;
            }
        }
    }

    /// Sends one frame, after committing the step so far: nothing leaves before what it
    /// implies is stored (a sender key before it is sealed to anyone, a message in the
    /// outbox before it is posted, a received item before it is acknowledged).
    pub(crate) async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.commit().await?;
        self.send_uncommitted(frame).await
    }

    /// Sends one frame as it is, whatever the step so far holds: only for a frame that
    /// implies nothing stored ([`Self::request_ok_commit_after`]).
    async fn send_uncommitted(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(ClientError::Transport(crate::TransportError::Closed(None)));
        };
        if let Err(e) = conn.send(frame).await {
            let reason = match frame {
                ClientFrame::AckInbox { .. } => "connection lost while acknowledging".to_string(),
                _ => e.to_string(),
            };
            self.disconnected(reason);
            return Err(e.into());
        }
        Ok(())
    }
}

/// A server's error reply as [`ClientError::Server`]; any other reply as it is.
fn refusal_as_err(reply: ServerFrame) -> Result<ServerFrame, ClientError> {
    match reply {
        ServerFrame::Error {
            code,
            message,
            retry_after_ms,
            ..
        } => Err(ClientError::Server {
            code,
            message,
            retry_after_ms,
        }),
        reply => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client re-posts only what the protocol allows a client to retry (§9.9): a code
    /// added to `is_passing` but not retryable would make it post again against the rules.
    #[test]
    fn every_code_the_client_reposts_is_one_the_protocol_lets_it_retry() {
        for code in ErrorCode::ALL {
            assert!(
                !is_passing(code) || code.is_retryable(),
                "{} is re-posted but not retryable",
                code.as_str()
            );
        }
    }
}
