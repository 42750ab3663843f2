//! Front-end data kept on this device only: the labels a person gives groups and private
//! conversations, and whatever small settings a front end wants to remember. Everything is in
//! the encrypted store, like messages, so a front end needs no plaintext file of its own
//! beside it; nothing here is ever sent to the server or to other members.
//!
//! These calls read and write the local store directly, without waiting for the background
//! task or the network; they fail with [`ClientError::Closed`] after [`Client::shutdown`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use confide_protocol::GroupId;

use crate::store::Store;
use crate::{Client, ClientError};

use confide_client_core::labels::{T_LABELS, check_label};
/// Tree of front-end settings: name → JSON value (encrypted).
const T_SETTINGS: &str = "front_end_settings";
pub use confide_client_core::labels::MAX_LABEL_CHARS;
/// The longest setting name, in bytes.
pub const MAX_SETTING_NAME_BYTES: usize = 128;

impl Client {
    fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        // A panic elsewhere while holding the lock leaves the handle itself intact.
        let guard = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let store = guard.as_ref().ok_or(ClientError::Closed)?;
        f(store)
    }

    /// The label this device gave `group`, if any.
    pub async fn label(&self, group: GroupId) -> Result<Option<String>, ClientError> {
        self.with_store(|s| Ok(s.get(T_LABELS, &group.0)?))
    }

    /// Every labelled group with its label.
    pub async fn labels(&self) -> Result<BTreeMap<GroupId, String>, ClientError> {
        self.with_store(|s| {
            let mut out = BTreeMap::new();
            for (key, label) in s.scan::<String>(T_LABELS, b"", usize::MAX)? {
                // Keys are written only by `set_label`, always a whole group id.
                let Ok(id) = <[u8; 16]>::try_from(key.as_slice()) else {
                    continue;
                };
                out.insert(GroupId(id), label);
            }
            Ok(out)
        })
    }

    /// Gives `group` a label on this device (`None` removes it), encrypted in the store and
    /// written to disk before this returns. Labels are not checked for uniqueness: a front end
    /// that looks groups up by label keeps them unique itself.
    pub async fn set_label(&self, group: GroupId, label: Option<&str>) -> Result<(), ClientError> {
        if let Some(label) = label {
            check_label(label)?;
        }
        self.with_store(|s| {
            match label {
                Some(label) => s.put(T_LABELS, &group.0, &label)?,
                None => s.remove(T_LABELS, &group.0)?,
            }
            Ok(s.flush()?)
        })
    }

    /// A front-end setting saved with [`Self::set_setting`], if there is one.
    ///
    /// Setting names are stored in the clear (like group ids); only values are encrypted, so a
    /// name must not itself say anything private.
    pub async fn setting<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ClientError> {
        check_name(name)?;
        self.with_store(|s| Ok(s.get(T_SETTINGS, name.as_bytes())?))
    }

    /// Saves a front-end setting (`None` removes it), encrypted in the store and written to
    /// disk before this returns. See [`Self::setting`] about names.
    pub async fn set_setting<T: Serialize>(
        &self,
        name: &str,
        value: Option<&T>,
    ) -> Result<(), ClientError> {
        check_name(name)?;
        self.with_store(|s| {
            match value {
                Some(value) => s.put(T_SETTINGS, name.as_bytes(), value)?,
                None => s.remove(T_SETTINGS, name.as_bytes())?,
            }
            Ok(s.flush()?)
        })
    }
}

fn check_name(name: &str) -> Result<(), ClientError> {
    if name.is_empty() || name.len() > MAX_SETTING_NAME_BYTES {
        return Err(ClientError::Invalid(format!(
            "a setting name has 1 to {MAX_SETTING_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}
