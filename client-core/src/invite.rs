//! Invite links. An invite carries what the joiner needs to find and verify the group — the
//! group id, the hash of its genesis op and the inviting facilitator's device — and the
//! invite's secret key, which signs the join. The server never sees the secret (only the
//! invite's public id, in the group log), so it cannot use the invite itself.
//!
//! Link format: `confide-invite:` followed by base64url (no padding) of the JSON
//! `{"v":1,"group":…,"genesis":…,"inviter":…,"secret":…,"requires_approval":…}`.
//!
//! The web form of the same link, `https://<server>/#invite=<link>`, opens the web app the
//! server serves and hands it the link. The invite sits in the URL's fragment, which browsers
//! never send to a server; the app strips it from the address bar as soon as it has read it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confide_protocol::encoding::b64_array;
use confide_protocol::group_log::InviteSecret;
use confide_protocol::{DeviceId, GroupId, InviteId, OpHash, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::ClientError;

/// The prefix of an invite link.
pub const INVITE_PREFIX: &str = "confide-invite:";

/// What precedes the link in the fragment of its web form (`https://…/#invite=…`).
pub const WEB_INVITE_FRAGMENT: &str = "#invite=";

/// An invite to a group. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Invite {
    /// The group.
    pub group: GroupId,
    /// Hash of the group's genesis op: the joiner checks the log it is shown starts there.
    pub genesis: OpHash,
    /// The facilitator device that made the invite: the joiner checks it is a facilitator.
    pub inviter: DeviceId,
    /// Whether a facilitator must approve the join.
    pub requires_approval: bool,
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("group", &self.group)
            .field("id", &self.id())
            .field("requires_approval", &self.requires_approval)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteJson {
    v: u8,
    group: GroupId,
    genesis: OpHash,
    inviter: DeviceId,
    #[serde(with = "b64_array")]
    secret: [u8; 32],
    requires_approval: bool,
}

impl Invite {
    /// A new invite for `group`.
    pub(crate) fn new(
        group: GroupId,
        genesis: OpHash,
        inviter: DeviceId,
        requires_approval: bool,
        secret: &InviteSecret,
    ) -> Self {
        Invite {
            group,
            genesis,
            inviter,
            requires_approval,
            secret: secret.to_bytes(),
        }
    }

    /// The invite's public id (as it appears in the group log).
    pub fn id(&self) -> InviteId {
        self.secret().id()
    }

    /// The invite's signing key.
    pub(crate) fn secret(&self) -> InviteSecret {
        InviteSecret::from_bytes(&self.secret)
    }

    /// The shareable link. Whoever holds it can join (or ask to join): share it privately.
    pub fn to_link(&self) -> String {
        let json = InviteJson {
            v: 1,
            group: self.group,
            genesis: self.genesis,
            inviter: self.inviter,
            secret: *self.secret,
            requires_approval: self.requires_approval,
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&json).unwrap_or_default());
        format!(
            "{INVITE_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes.as_slice())
        )
    }

    /// The link's web form for a server at `server_url` (`wss://host:port/…`, as profiles
    /// keep it): `https://host:port/#invite=<link>`, which opens the web app that server
    /// serves. `None` when the URL is not a `wss://` or `ws://` one.
    pub fn to_web_link(&self, server_url: &str) -> Option<String> {
        let (scheme, rest) = if let Some(rest) = server_url.strip_prefix("wss://") {
            ("https", rest)
        } else {
            ("http", server_url.strip_prefix("ws://")?)
        };
        let authority = rest
            .split(['/', '?', '#'])
            .next()
            .filter(|a| !a.is_empty())?;
        Some(format!(
            "{scheme}://{authority}/{WEB_INVITE_FRAGMENT}{}",
            self.to_link()
        ))
    }

    /// Parses a link made by [`Self::to_link`], or its web form made by [`Self::to_web_link`]
    /// (whatever precedes `#invite=` is ignored: the server a web link names is only where the
    /// app was opened, never trusted).
    ///
    /// # Errors
    /// [`ClientError::BadInvite`] saying what is wrong with the link.
    pub fn from_link(link: &str) -> Result<Invite, ClientError> {
        let bad = |why: &str| ClientError::BadInvite(why.to_string());
        let link = link.trim();
        let link = match link.split_once(WEB_INVITE_FRAGMENT) {
            Some((before, after))
                if before.starts_with("https://") || before.starts_with("http://") =>
            {
                after
            }
            _ => link,
        };
        let body = link
            .strip_prefix(INVITE_PREFIX)
            .ok_or_else(|| bad("not a confide invite link"))?;
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| bad("the link is damaged"))?,
        );
        let json: InviteJson =
            serde_json::from_slice(&bytes).map_err(|_| bad("the link is damaged"))?;
        if json.v != 1 {
            return Err(bad("the link is from a newer version of Confide"));
        }
        Ok(Invite {
            group: json.group,
            genesis: json.genesis,
            inviter: json.inviter,
            requires_approval: json.requires_approval,
            secret: Zeroizing::new(json.secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_and_never_debug_the_secret() {
        use rand_core::SeedableRng as _;
        let secret = InviteSecret::generate(&mut chacha20::ChaCha20Rng::from_seed([7; 32]));
        let invite = Invite::new(
            GroupId([1; 16]),
            OpHash([2; 32]),
            DeviceId([3; 32]),
            true,
            &secret,
        );
        let link = invite.to_link();
        let back = Invite::from_link(&link).unwrap();
        assert_eq!(back.id(), secret.id());
        assert!(back.requires_approval);
        let debug = format!("{back:?}");
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(*secret.to_bytes())));
        assert!(Invite::from_link("confide-invite:!!!").is_err());
        assert!(Invite::from_link("https://example.org").is_err());
    }

    #[test]
    fn the_web_form_opens_the_servers_app_and_parses_back_to_the_same_invite() {
        let secret = InviteSecret::from_bytes(&[0x32; 32]);
        let invite = Invite::new(
            GroupId([7; 16]),
            OpHash([8; 32]),
            DeviceId([9; 32]),
            false,
            &secret,
        );
        let web = invite.to_web_link("wss://chat.example.org:8443/").unwrap();
        assert_eq!(
            web,
            format!("https://chat.example.org:8443/#invite={}", invite.to_link())
        );
        let back = Invite::from_link(&web).unwrap();
        assert_eq!(back.id(), secret.id());
        assert!(!back.requires_approval);
        assert_eq!(
            invite.to_web_link("ws://127.0.0.1:9000").unwrap(),
            format!("http://127.0.0.1:9000/#invite={}", invite.to_link())
        );
        assert_eq!(invite.to_web_link("https://x"), None);
        assert_eq!(invite.to_web_link("wss://"), None);
        // Only an http(s) URL's fragment is read; anything else stays a damaged link.
        assert!(Invite::from_link(&format!("ftp://x/#invite={}", invite.to_link())).is_err());
        assert!(Invite::from_link("https://x/#invite=nonsense").is_err());
    }

    /// The link format of PROTOCOL.md §8.9 byte for byte, against
    /// `protocol/test-vectors/invite-link.json` (regenerate deliberately with
    /// `CONFIDE_REGENERATE_VECTORS=1`).
    #[test]
    fn the_link_format_matches_its_test_vector() {
        let secret = InviteSecret::from_bytes(&[0x32; 32]);
        let invite = Invite::new(
            GroupId([7; 16]),
            OpHash([8; 32]),
            DeviceId([9; 32]),
            true,
            &secret,
        );
        let link = invite.to_link();
        let payload = URL_SAFE_NO_PAD
            .decode(link.trim_start_matches(INVITE_PREFIX))
            .unwrap();
        let actual = serde_json::json!({
            "description": "An invite link (PROTOCOL.md §8.9): the prefix, then the unpadded URL-safe base64 of the JSON object shown as `json`.",
            "inputs": {
                "group": GroupId([7; 16]),
                "genesis": OpHash([8; 32]),
                "inviter": DeviceId([9; 32]),
                "secret": confide_protocol::encoding::b64_encode(&[0x32; 32]),
                "requires_approval": true,
            },
            "invite_id": secret.id(),
            "json": String::from_utf8(payload).unwrap(),
            "link": link,
        });
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../protocol/test-vectors/invite-link.json");
        let pretty = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        if std::env::var_os("CONFIDE_REGENERATE_VECTORS").is_some() {
            std::fs::write(&path, pretty).unwrap();
            return;
        }
        let stored: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(stored, actual, "the invite-link format changed");
        // And a link written by another implementation parses back to the same invite.
        let parsed = Invite::from_link(stored["link"].as_str().unwrap()).unwrap();
        assert_eq!(parsed.id(), secret.id());
        assert_eq!(parsed.group, GroupId([7; 16]));
        assert!(parsed.requires_approval);
        // Members in another order are the same link; an unknown member or version is refused.
        let reordered = format!(
            "{INVITE_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(
                serde_json::to_vec(
                    &serde_json::from_str::<serde_json::Value>(stored["json"].as_str().unwrap())
                        .unwrap()
                )
                .unwrap()
            )
        );
        assert_eq!(Invite::from_link(&reordered).unwrap().id(), secret.id());
        let with = |extra: &str| {
            let json = stored["json"].as_str().unwrap().replacen('{', extra, 1);
            format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
        };
        assert!(Invite::from_link(&with("{\"x\":1,")).is_err());
        let v2 = stored["json"]
            .as_str()
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        assert!(
            Invite::from_link(&format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(v2))).is_err()
        );
    }
}

/// How a new invite behaves ([`crate::ClientCore::create_invite`]). The default is what a
/// facilitator inviting one person expects, and what `confide invite create` does without
/// options: one use, no approval, valid for [`InviteOptions::DEFAULT_VALID_FOR`] (7 days).
///
/// ```
/// use std::time::Duration;
/// use confide_client_core::InviteOptions;
///
/// // A link for a whole intake session: up to 12 people, each screened, for two hours.
/// let options = InviteOptions::new()
///     .requires_approval(true)
///     .max_uses(12)
///     .valid_for(Duration::from_secs(2 * 3600));
/// assert_eq!(options.max_uses, 12);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InviteOptions {
    /// Whether a facilitator must approve each join (screening). Default: no.
    pub requires_approval: bool,
    /// How many people may join (or be approved) with it. Default: 1.
    pub max_uses: u32,
    /// How long it accepts joins, from now. Default: [`InviteOptions::DEFAULT_VALID_FOR`].
    pub valid_for: std::time::Duration,
}

impl InviteOptions {
    /// How long an invite is valid unless told otherwise: 7 days.
    pub const DEFAULT_VALID_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

    /// The defaults: one use, no approval, valid for 7 days.
    pub fn new() -> InviteOptions {
        InviteOptions {
            requires_approval: false,
            max_uses: 1,
            valid_for: Self::DEFAULT_VALID_FOR,
        }
    }

    /// Whether a facilitator must approve each join.
    #[must_use]
    pub fn requires_approval(mut self, requires_approval: bool) -> InviteOptions {
        self.requires_approval = requires_approval;
        self
    }

    /// How many people may use it.
    #[must_use]
    pub fn max_uses(mut self, max_uses: u32) -> InviteOptions {
        self.max_uses = max_uses;
        self
    }

    /// How long it is valid, from now.
    #[must_use]
    pub fn valid_for(mut self, valid_for: std::time::Duration) -> InviteOptions {
        self.valid_for = valid_for;
        self
    }
}

impl Default for InviteOptions {
    fn default() -> InviteOptions {
        InviteOptions::new()
    }
}

/// An invite as the group's verified log records it, for facilitators to review and revoke
/// ([`crate::ClientCore::invites`]). Holds no secret: only the invite's public id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InviteInfo {
    /// The invite's public id (what an `OpBody::RevokeInvite` names).
    pub id: InviteId,
    /// Who created it.
    pub created_by: UserId,
    /// Their pseudonym, if this device knows it.
    pub created_by_name: Option<String>,
    /// When it was created (the author's claim in the log).
    pub created_at: Timestamp,
    /// Whether joining needs a facilitator's approval.
    pub requires_approval: bool,
    /// How many people joined (or were approved) with it.
    pub uses: u32,
    /// How many may.
    pub max_uses: u32,
    /// When it stops accepting joins.
    pub expires_at: Timestamp,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Who joined with it (or was approved through it), oldest first, with their pseudonyms.
    pub joined: Vec<(UserId, String)>,
}

/// What a person may be told about an invite before they join with it
/// ([`crate::ClientCore::preview_invite`]), as group-link previews in other messengers show it,
/// but only what can be known **verifiably**.
///
/// The group has no name anyone could check: the server gives groups none, and the names
/// people give groups are labels on their own devices ([`crate::labels`]). So a preview names
/// no group; it names the facilitator who made the invite, from the group's log verified from
/// the genesis the link names, exactly as joining verifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvitePreview {
    /// The group the link names.
    pub group: GroupId,
    /// Whether a facilitator must approve the join: from the verified log when
    /// [`Self::checked`] is there, otherwise what the link says.
    pub requires_approval: bool,
    /// What the group's verified log says; `None` when the log could not be fetched (offline,
    /// or before this device has a profile): then only the link was read, and joining checks
    /// the rest.
    pub checked: Option<CheckedInvite>,
}

/// What the group's verified log says about an invite ([`InvitePreview::checked`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckedInvite {
    /// The user of the facilitator device that made the invite (a facilitator or
    /// co-facilitator of the group, as its verified log has it).
    pub inviter: UserId,
    /// Their pseudonym, as the log records it: someone else's words, to show as text only.
    pub inviter_name: String,
    /// Their role in the group.
    pub inviter_role: confide_protocol::group_log::Role,
    /// How many people the group has now.
    pub members: usize,
    /// When the invite stops accepting joins (the facilitator's claim in the log); `None` only
    /// when this device is a member already and the log it holds has no such invite.
    pub expires_at: Option<Timestamp>,
    /// Whether this device is in the group already (joining again changes nothing).
    pub already_member: bool,
}

impl Invite {
    /// The preview of this invite from the link alone, before anything is fetched: the group
    /// and whether the link says approval is needed ([`InvitePreview::checked`] is `None`).
    pub fn unchecked_preview(&self) -> InvitePreview {
        InvitePreview {
            group: self.group,
            requires_approval: self.requires_approval,
            checked: None,
        }
    }
}
