//! Options of the [`crate::Client`] methods that would otherwise take a row of booleans:
//! [`RemoveOptions`] here, and [`crate::InviteOptions`] from the client core.

/// How [`crate::Client::remove`] removes a member. The default removes only: no ban, no
/// reason.
///
/// ```
/// use confide_client::RemoveOptions;
///
/// let options = RemoveOptions::new().ban(true).reason("repeated harassment");
/// assert!(options.ban);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoveOptions {
    /// Also ban them: they and their devices cannot join again, with any invite, until
    /// [`crate::Client::unban`]. Default: no.
    pub ban: bool,
    /// Why, for the facilitators only (sealed to them, never shown to members or the server).
    /// Default: none.
    pub reason: Option<String>,
}

impl RemoveOptions {
    /// Remove only: no ban, no reason.
    pub fn new() -> RemoveOptions {
        RemoveOptions::default()
    }

    /// Whether to ban them too.
    #[must_use]
    pub fn ban(mut self, ban: bool) -> RemoveOptions {
        self.ban = ban;
        self
    }

    /// The reason the facilitators see.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> RemoveOptions {
        self.reason = Some(reason.into());
        self
    }
}
