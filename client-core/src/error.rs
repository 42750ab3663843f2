//! Errors of the store seam, shared by every backend.

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The passphrase does not open this store.
    #[error("wrong passphrase for this store")]
    WrongPassphrase,
    /// The database could not be opened, read or written.
    #[error("local store error: {0}")]
    Db(String),
    /// A stored value could not be decrypted or decoded: the store is damaged or was altered.
    #[error("local store value {tree}/{key} is damaged or was altered")]
    Corrupt {
        /// Tree.
        tree: String,
        /// Key, hex.
        key: String,
    },
    /// The store does not exist yet, or exists when it should not.
    #[error("{0}")]
    State(String),
    /// Another process has this store open (its database is locked): only one may use it.
    #[error("the store in {0} is open in another process")]
    InUse(String),
}
