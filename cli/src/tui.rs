//! The interactive terminal chat (`confide chat`). Placeholder: replaced by the full TUI.

use confide_client::{Client, Events};
use confide_protocol::GroupId;

use crate::profile::Profile;

/// Runs the chat until the user quits.
pub async fn run(
    _profile: Profile,
    _client: Client,
    _events: Events,
    _group: Option<GroupId>,
) -> anyhow::Result<()> {
    anyhow::bail!("the interactive chat is not available yet")
}
