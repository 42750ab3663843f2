//! The labels a person gives groups and private conversations on their own devices ("Tuesday
//! group"). The server gives groups no names, and members never see each other's labels: a
//! label is kept encrypted in this device's store and never sent anywhere. The native shell
//! keeps them in the same tree, in the same format, so a store keeps its labels whichever
//! front end opens it.

use std::collections::BTreeMap;

use confide_protocol::GroupId;

use crate::ClientError;
use crate::link::Network;
use crate::machine::ClientCore;
use crate::store::ClientStore;

/// Tree of labels: group id → label (a JSON string, encrypted like every value).
pub const T_LABELS: &str = "front_end_labels";

/// The longest label, in characters (a label names a group on one line of a list).
pub const MAX_LABEL_CHARS: usize = 64;

/// Refuses a label that is blank or longer than [`MAX_LABEL_CHARS`].
///
/// # Errors
/// [`ClientError::Invalid`] saying what a label may be.
pub fn check_label(label: &str) -> Result<(), ClientError> {
    let chars = label.chars().count();
    if chars == 0 || chars > MAX_LABEL_CHARS || label.trim().is_empty() {
        return Err(ClientError::Invalid(format!(
            "a label has 1 to {MAX_LABEL_CHARS} characters and is not blank; choose another"
        )));
    }
    Ok(())
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// The label this device gave `group`, if any.
    ///
    /// # Errors
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn label(&self, group: GroupId) -> Result<Option<String>, ClientError> {
        Ok(self.db.get(T_LABELS, &group.0).await?)
    }

    /// Every labelled group with its label.
    ///
    /// # Errors
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn labels(&self) -> Result<BTreeMap<GroupId, String>, ClientError> {
        let mut out = BTreeMap::new();
        for (key, label) in self.db.scan::<String>(T_LABELS, b"", usize::MAX).await? {
            // Keys are written only by `set_label`, always a whole group id.
            if let Ok(id) = <[u8; 16]>::try_from(key.as_slice()) {
                out.insert(GroupId(id), label);
            }
        }
        Ok(out)
    }

    /// Gives `group` a label on this device (`None` removes it), stored before this returns.
    /// Labels are not checked for uniqueness.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for a blank or too long label ([`check_label`]);
    /// [`ClientError::Store`] if it cannot be stored.
    pub async fn set_label(
        &mut self,
        group: GroupId,
        label: Option<&str>,
    ) -> Result<(), ClientError> {
        let r = match label {
            Some(label) => check_label(label).and_then(|()| {
                self.db
                    .put(T_LABELS, &group.0, &label)
                    .map_err(ClientError::from)
            }),
            None => {
                self.db.remove(T_LABELS, &group.0);
                Ok(())
            }
        };
        self.end_step(r).await
    }
}

#[cfg(test)]
mod tests {
    use super::check_label;

    #[test]
    fn a_label_is_one_to_sixty_four_characters_and_not_blank() {
        assert!(check_label("Tuesday group").is_ok());
        assert!(check_label(&"é".repeat(64)).is_ok());
        assert!(check_label(&"é".repeat(65)).is_err());
        assert!(check_label("").is_err());
        assert!(check_label("   ").is_err());
    }
}
