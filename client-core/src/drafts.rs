//! Drafts: what a person has started writing in a group and not sent, kept in this device's
//! encrypted store so that it survives a reload, a crash or a locked screen (as Signal and
//! Element keep theirs). A draft is never sent anywhere; the server never sees it.

use confide_protocol::GroupId;
use confide_protocol::envelope::MAX_BODY_LEN;

use crate::ClientError;
use crate::link::Network;
use crate::machine::ClientCore;
use crate::store::ClientStore;

/// Tree of drafts: group id → the text (a JSON string, encrypted like every value).
pub const T_DRAFTS: &str = "drafts";

/// The longest draft, in bytes of UTF-8: no longer than a message can be.
pub const MAX_DRAFT_BYTES: usize = MAX_BODY_LEN;

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// The draft kept for `group`, if any.
    ///
    /// # Errors
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn draft(&self, group: GroupId) -> Result<Option<String>, ClientError> {
        Ok(self.db.get(T_DRAFTS, &group.0).await?)
    }

    /// Keeps `text` as the draft of `group`, stored before this returns; an empty (or blank)
    /// text removes it. Works for any group id: a draft of a group this device has left is
    /// simply never shown.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for a draft longer than [`MAX_DRAFT_BYTES`];
    /// [`ClientError::Store`] if it cannot be stored.
    pub async fn set_draft(&mut self, group: GroupId, text: &str) -> Result<(), ClientError> {
        let r = if text.len() > MAX_DRAFT_BYTES {
            Err(ClientError::Invalid(format!(
                "a draft is at most {MAX_DRAFT_BYTES} bytes, as long as a message can be"
            )))
        } else if text.trim().is_empty() {
            self.db.remove(T_DRAFTS, &group.0);
            Ok(())
        } else {
            self.db
                .put(T_DRAFTS, &group.0, &text)
                .map_err(ClientError::from)
        };
        self.end_step(r).await
    }
}
