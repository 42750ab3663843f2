//! Linking a new device to a user (PROTOCOL.md §3.7).
//!
//! The new device **N** shows a one-time [link code](LinkCode) (and a QR code of it); the
//! existing device **O** types or scans it. Both then talk through the server on a *link
//! channel* named by the code's hash, exchanging the [`LinkMessage`]s `hello`, `offer` and
//! `reveal`. N commits to its ephemeral key before it sees O's (the commitment-based short
//! authentication string of ZRTP and Matrix's SAS verification), so a server in the middle
//! gets one guess at a 39-bit [`Sas`] per attempt and cannot grind it. After the person
//! confirms that both screens show the same numbers, O seals the [`LinkBundle`] — the user
//! identity key, the new device list, the groups, pinned texts and recent history — to N's
//! sealing key ([`seal_bundle`]).
//!
//! Everything here is pure: the caller supplies randomness and carries the messages.

use serde::{Deserialize, Serialize};
use std::fmt;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use crate::device_list::{IdentityKey, SignedDeviceList};
use crate::encoding::{b64, b64_array};
use crate::envelope::{MessageContent, PinnedKind};
use crate::identity::{DeviceIdentity, DeviceKeys};
use crate::ids::{DeviceId, GroupId, MessageId, OpHash, Seq, UserId};
use crate::primitives::{hash, labelled};
use crate::seal::{SealError, open_signed, seal_signed};

/// Label naming a link channel: `SHA-256("confide/v1/link-channel" || 0x00 || code)`.
pub const LABEL_LINK_CHANNEL: &str = "confide/v1/link-channel";
/// Label of the new device's commitment to its ephemeral key.
pub const LABEL_LINK_COMMIT: &str = "confide/v1/link-commit";
/// Label of the link transcript hash.
pub const LABEL_LINK_TRANSCRIPT: &str = "confide/v1/link-transcript";
/// HKDF `info` of the short authentication string (the bare ASCII label, no `0x00`).
pub const LABEL_LINK_SAS: &str = "confide/v1/link-sas";
/// Prefix of the link bundle's HPKE `info`.
pub const LABEL_LINK_BUNDLE: &str = "confide/v1/link-bundle";
/// HKDF `info` of the bundle's HPKE psk (the bare ASCII label), and the psk's `psk_id`.
pub const LABEL_LINK_PSK: &str = "confide/v1/link-psk";
/// HKDF `info` of the key that authenticates N's confirmation (the bare ASCII label).
pub const LABEL_LINK_CONFIRM: &str = "confide/v1/link-confirm";
/// What the confirmation MAC is computed over.
pub const LINK_CONFIRMED: &[u8] = b"confide/v1/link-confirmed";
/// Label of the sending device's signature inside a link bundle.
pub const LABEL_LINK_BUNDLE_SIG: &str = "confide/v1/link-bundle-sig";
/// Characters in a link code (50 random bits).
pub const LINK_CODE_CHARS: usize = 10;
/// The Crockford base32 alphabet the code is written in.
pub const LINK_CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Prefix of the QR code's text.
pub const LINK_QR_PREFIX: &str = "confide-link:1:";
/// Largest link bundle payload, before the signature and the AEAD tag (512 KiB): base64 twice
/// over (the ciphertext in the `bundle` message, the message in `link_send.data`) it stays under
/// the server's 1 MiB frame limit.
pub const MAX_LINK_BUNDLE_BYTES: usize = 512 * 1024;
/// Most history messages per group in a link bundle.
pub const LINK_HISTORY_MESSAGES: usize = 200;
/// Oldest history in a link bundle: 30 days, in milliseconds.
pub const LINK_HISTORY_AGE_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Largest link message the new device sends (the server's limit for the channel's opener).
pub const MAX_LINK_MESSAGE_FROM_NEW: usize = 4096;
/// The link bundle format version.
pub const LINK_BUNDLE_FORMAT: u8 = 1;

/// Why a link step failed. Each has a stable code ([`LinkError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The typed or scanned code is not a link code.
    #[error("that is not a link code: it has 10 letters and digits, like 7K3QD-9XW2M")]
    BadCode,
    /// The other device's message is not what this step expects, or does not match what it
    /// committed to or what the QR code said: someone may be in the middle.
    #[error("the other device's answer does not match: {0}")]
    Mismatch(&'static str),
    /// The key agreement gave an all-zero secret (a hostile ephemeral key).
    #[error("the other device sent an unusable key")]
    BadKey,
    /// The bundle is larger than [`MAX_LINK_BUNDLE_BYTES`].
    #[error("the link bundle of {0} bytes exceeds the {MAX_LINK_BUNDLE_BYTES}-byte limit")]
    TooLarge(usize),
    /// The bundle does not open, is not signed by its sender, or does not parse.
    #[error("the link bundle does not open: {0}")]
    Bundle(String),
}

impl LinkError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::BadCode => "link_bad_code",
            LinkError::Mismatch(_) => "link_mismatch",
            LinkError::BadKey => "link_mismatch",
            LinkError::TooLarge(_) => "too_large",
            LinkError::Bundle(_) => "link_bad_bundle",
        }
    }
}

impl From<SealError> for LinkError {
    fn from(e: SealError) -> Self {
        LinkError::Bundle(e.to_string())
    }
}

/// A one-time link code: 10 characters of Crockford base32, canonical (upper case, no
/// separators). Shown as `XXXXX-XXXXX`.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkCode(String);

impl fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The code is a short-lived secret between the person's two devices.
        f.write_str("LinkCode(…)")
    }
}

impl LinkCode {
    /// A fresh code from the caller's randomness (50 bits, uniformly).
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut bytes = [0u8; LINK_CODE_CHARS];
        rng.fill_bytes(&mut bytes);
        // 32 divides 256, so taking the low five bits of each byte is uniform.
        LinkCode(
            bytes
                .iter()
                .map(|b| char::from(LINK_CODE_ALPHABET[usize::from(b & 31)]))
                .collect(),
        )
    }

    /// Reads a typed code: ignores `-` and white space, takes lower case as upper case, and
    /// reads `O` as `0` and `I`, `L` as `1` (Crockford's rule).
    pub fn parse(input: &str) -> Result<Self, LinkError> {
        let mut out = String::with_capacity(LINK_CODE_CHARS);
        for c in input.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            };
            if !c.is_ascii() || !LINK_CODE_ALPHABET.contains(&(c as u8)) {
                return Err(LinkError::BadCode);
            }
            out.push(c);
            if out.len() > LINK_CODE_CHARS {
                return Err(LinkError::BadCode);
            }
        }
        if out.len() != LINK_CODE_CHARS {
            return Err(LinkError::BadCode);
        }
        Ok(LinkCode(out))
    }

    /// The canonical 10 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code as people read it: `XXXXX-XXXXX`.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..5], &self.0[5..])
    }

    /// The channel the server relays on: `SHA-256("confide/v1/link-channel" || 0x00 || code)`.
    pub fn channel(&self) -> [u8; 32] {
        hash(LABEL_LINK_CHANNEL, &[self.0.as_bytes()])
    }

    /// The QR code's text: `confide-link:1:<code>:<base64url of the device id, no padding>`.
    pub fn qr_text(&self, device: &DeviceId) -> String {
        use base64::Engine as _;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(device.as_bytes());
        format!("{LINK_QR_PREFIX}{}:{id}", self.0)
    }

    /// Reads a QR code's text (or a typed code): the code, and the device id the QR code named.
    pub fn parse_qr_or_code(input: &str) -> Result<(Self, Option<DeviceId>), LinkError> {
        use base64::Engine as _;
        let input = input.trim();
        let Some(rest) = input.strip_prefix(LINK_QR_PREFIX) else {
            return Ok((Self::parse(input)?, None));
        };
        let (code, id) = rest.split_once(':').ok_or(LinkError::BadCode)?;
        let code = Self::parse(code)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id)
            .map_err(|_| LinkError::BadCode)?;
        let id: [u8; 32] = bytes.try_into().map_err(|_| LinkError::BadCode)?;
        Ok((code, Some(DeviceId(id))))
    }
}

/// An ephemeral X25519 key pair for one link. Zeroized on drop.
pub struct LinkEphemeral(StaticSecret);

impl fmt::Debug for LinkEphemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkEphemeral(…)")
    }
}

impl LinkEphemeral {
    /// A fresh key pair.
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        LinkEphemeral(StaticSecret::from(*secret))
    }

    /// The public key sent to the other device.
    pub fn public(&self) -> [u8; 32] {
        X25519Public::from(&self.0).to_bytes()
    }

    /// The new device's commitment to this key: `SHA-256("confide/v1/link-commit" || 0x00 || E_N)`.
    pub fn commitment(&self) -> [u8; 32] {
        commitment(&self.public())
    }

    /// The key agreement with the other device's public key, bound to the transcript: the
    /// short authentication string both devices show, and the psk the bundle is sealed with. An
    /// all-zero shared secret is refused.
    pub fn agree(&self, peer: &[u8; 32], transcript: &[u8; 32]) -> Result<LinkSecrets, LinkError> {
        let shared = Zeroizing::new(self.0.diffie_hellman(&X25519Public::from(*peer)).to_bytes());
        if shared.iter().all(|b| *b == 0) {
            return Err(LinkError::BadKey);
        }
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(transcript), shared.as_ref());
        let mut okm = [0u8; 5];
        let mut psk = Zeroizing::new([0u8; 32]);
        let mut confirm = Zeroizing::new([0u8; 32]);
        // 5 and 32 bytes are far below HKDF-SHA256's limit of 255 * 32: `expand` cannot fail.
        if hk.expand(LABEL_LINK_SAS.as_bytes(), &mut okm).is_err()
            || hk.expand(LABEL_LINK_PSK.as_bytes(), psk.as_mut()).is_err()
            || hk
                .expand(LABEL_LINK_CONFIRM.as_bytes(), confirm.as_mut())
                .is_err()
        {
            return Err(LinkError::BadKey);
        }
        Ok(LinkSecrets {
            sas: Sas::from_bytes(&okm),
            psk,
            confirm,
        })
    }
}

/// What a link's key agreement gives both devices.
pub struct LinkSecrets {
    /// The numbers both devices show.
    pub sas: Sas,
    /// The HPKE psk the bundle is sealed with (zeroized on drop).
    pub psk: Zeroizing<[u8; 32]>,
    /// The key of N's confirmation MAC (zeroized on drop).
    confirm: Zeroizing<[u8; 32]>,
}

impl LinkSecrets {
    /// The MAC N's `confirmed` message carries.
    pub fn confirm_mac(&self) -> [u8; 32] {
        crate::primitives::hmac_sha256(self.confirm.as_ref(), &[LINK_CONFIRMED])
    }

    /// Whether `mac` is N's confirmation (constant time).
    pub fn confirm_mac_valid(&self, mac: &[u8; 32]) -> bool {
        crate::primitives::hmac_sha256_verify(self.confirm.as_ref(), &[LINK_CONFIRMED], mac)
    }
}

impl fmt::Debug for LinkSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSecrets")
            .field("sas", &self.sas)
            .finish_non_exhaustive()
    }
}

/// `SHA-256("confide/v1/link-commit" || 0x00 || E_N)`.
pub fn commitment(public: &[u8; 32]) -> [u8; 32] {
    hash(LABEL_LINK_COMMIT, &[public])
}

/// The transcript both devices bind the SAS and the bundle to:
/// `SHA-256("confide/v1/link-transcript" || 0x00 || channel || u32 len || hello || u32 len ||
/// offer || E_N)`, over the exact bytes of the `hello` and `offer` messages.
pub fn transcript(
    channel: &[u8; 32],
    hello: &[u8],
    offer: &[u8],
    new_ephemeral: &[u8; 32],
) -> [u8; 32] {
    let hello_len = u32::try_from(hello.len()).unwrap_or(u32::MAX).to_be_bytes();
    let offer_len = u32::try_from(offer.len()).unwrap_or(u32::MAX).to_be_bytes();
    hash(
        LABEL_LINK_TRANSCRIPT,
        &[channel, &hello_len, hello, &offer_len, offer, new_ephemeral],
    )
}

/// The short authentication string: three numbers from 1000 to 9191 (Matrix's decimal SAS).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sas(pub [u16; 3]);

impl Sas {
    /// The first 39 bits of `bytes` as three 13-bit big-endian numbers, each plus 1000.
    pub fn from_bytes(bytes: &[u8; 5]) -> Self {
        let bits = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        // 40 bits; the first 39 are used: shift out the last one.
        let bits = bits >> 1;
        let part = |i: u32| u16::try_from((bits >> (26 - 13 * i)) & 0x1fff).unwrap_or(0) + 1000;
        Sas([part(0), part(1), part(2)])
    }
}

impl fmt::Display for Sas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.0[0], self.0[1], self.0[2])
    }
}

/// The messages on a link channel (UTF-8 JSON, parsed strictly).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum LinkMessage {
    /// N → O: its device keys and its commitment to its ephemeral key.
    Hello {
        /// The new device's public keys.
        keys: DeviceKeys,
        /// [`commitment`] of N's ephemeral public key.
        #[serde(with = "b64_array")]
        commit: [u8; 32],
    },
    /// O → N: whose device N becomes, the user's current list, and O's ephemeral key.
    Offer {
        /// The user.
        user: UserId,
        /// The name N will show.
        display_name: String,
        /// The user's current device list; the bundle's list must succeed it.
        list: SignedDeviceList,
        /// O's ephemeral X25519 public key.
        #[serde(with = "b64_array")]
        eph: [u8; 32],
    },
    /// N → O: the ephemeral key N committed to, and N's consent to its place in the user's
    /// list (its `link_sig` over the offered user and identity key, PROTOCOL.md §3.6).
    Reveal {
        /// N's ephemeral X25519 public key.
        #[serde(with = "b64_array")]
        eph: [u8; 32],
        /// N's device signature over `"confide/v1/device-link" || 0x00 || user || identity`.
        link_sig: crate::identity::Signature,
    },
    /// N → O: N's person confirmed that both devices show the same numbers. `mac` proves it
    /// comes from the device that took part in the key agreement (the server cannot make it).
    Confirmed {
        /// `HMAC-SHA256(confirm key, "confide/v1/link-confirmed")` ([`LinkSecrets::confirm_mac`]).
        #[serde(with = "b64_array")]
        mac: [u8; 32],
    },
    /// O → N: the sealed bundle, after both people-facing ends confirmed the numbers match.
    Bundle {
        /// The bundle.
        sealed: SealedLinkBundle,
    },
    /// N → O: the bundle is stored and N is registered.
    Done {},
    /// Either way: stop (the numbers differ, the person cancelled, a check failed).
    Cancel {},
}

impl LinkMessage {
    /// The message's bytes as sent (the transcript covers these exact bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing these plain structs to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a received message strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, LinkError> {
        serde_json::from_slice(bytes).map_err(|_| LinkError::Mismatch("not a link message"))
    }
}

/// The link bundle as sent: HPKE-sealed to the new device (PROTOCOL.md §3.7).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedLinkBundle {
    /// The sending (existing) device.
    pub sender: DeviceId,
    /// The HPKE encapsulated key (X-Wing: a new device always has an X-Wing key).
    pub enc: crate::seal::Encapsulation,
    /// The HPKE ciphertext of `signature (64) || payload`.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

/// The bundle's HPKE `info`: `"confide/v1/link-bundle" || 0x00 || channel || transcript ||
/// recipient`.
pub fn bundle_info(channel: &[u8; 32], transcript: &[u8; 32], recipient: &DeviceId) -> Vec<u8> {
    labelled(
        LABEL_LINK_BUNDLE,
        &[channel, transcript, recipient.as_bytes()],
    )
}

/// Seals `payload` (a [`LinkBundle`]'s JSON) from the existing device to the new one, in HPKE
/// mode_psk with the psk of the confirmed key agreement ([`LinkEphemeral::agree`]).
pub fn seal_bundle(
    sender: &DeviceIdentity,
    recipient: &DeviceKeys,
    channel: &[u8; 32],
    transcript: &[u8; 32],
    psk: &[u8; 32],
    payload: &[u8],
    rng: &mut impl rand_core::CryptoRng,
) -> Result<SealedLinkBundle, LinkError> {
    if payload.len() > MAX_LINK_BUNDLE_BYTES {
        return Err(LinkError::TooLarge(payload.len()));
    }
    if !recipient.has_pq_key() {
        // A new device is always made by version 2 with an X-Wing key; a bundle never falls back.
        return Err(LinkError::Mismatch("the new device has no X-Wing key"));
    }
    let info = bundle_info(channel, transcript, &recipient.device);
    let (enc, ciphertext) = seal_signed(
        sender,
        recipient,
        &info,
        LABEL_LINK_BUNDLE_SIG,
        payload,
        Some((psk, LABEL_LINK_PSK.as_bytes())),
        rng,
    )?;
    Ok(SealedLinkBundle {
        sender: sender.device_id(),
        enc,
        ciphertext,
    })
}

/// Opens a bundle sealed to `recipient` on this channel and transcript and checks the sender's
/// signature. The caller then checks the bundle's contents ([`LinkBundle::check`]).
pub fn open_bundle(
    recipient: &DeviceIdentity,
    channel: &[u8; 32],
    transcript: &[u8; 32],
    psk: &[u8; 32],
    sealed: &SealedLinkBundle,
) -> Result<Zeroizing<Vec<u8>>, LinkError> {
    if sealed.ciphertext.len() > MAX_LINK_BUNDLE_BYTES + 64 + 16 {
        return Err(LinkError::TooLarge(sealed.ciphertext.len()));
    }
    if !sealed.enc.is_pq() {
        return Err(LinkError::Mismatch("the bundle is not sealed with X-Wing"));
    }
    let info = bundle_info(channel, transcript, &recipient.device_id());
    Ok(open_signed(
        recipient,
        &info,
        LABEL_LINK_BUNDLE_SIG,
        &sealed.sender,
        &sealed.enc,
        &sealed.ciphertext,
        Some((psk, LABEL_LINK_PSK.as_bytes())),
    )?)
}

/// The user identity key's secret inside a bundle. Zeroized on drop; never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentitySecret(#[serde(with = "b64_array")] pub [u8; 32]);

impl Drop for IdentitySecret {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

impl fmt::Debug for IdentitySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentitySecret(…)")
    }
}

/// A pinned text of a group, as the existing device shows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePinned {
    /// What is pinned.
    pub kind: PinnedKind,
    /// The agreement version (0 for crisis resources).
    pub version: u32,
    /// The commitment key (checked against the log's commitment, §6.7).
    #[serde(with = "b64_array")]
    pub key: [u8; 32],
    /// The text.
    pub text: String,
}

/// One message of recent history.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryItem {
    /// The message id.
    pub id: MessageId,
    /// The server's sequence number of the message in its group.
    pub seq: Seq,
    /// The sender's user.
    pub sender_user: UserId,
    /// The sending device.
    pub sender_device: DeviceId,
    /// What the message says.
    pub content: MessageContent,
}

/// One group in a bundle.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleGroup {
    /// The group.
    pub group: GroupId,
    /// The hash of its genesis op, which the new device verifies the log from.
    pub genesis: OpHash,
    /// Its pinned texts.
    pub pinned: Vec<BundlePinned>,
    /// Its recent history, oldest first.
    pub history: Vec<HistoryItem>,
}

/// A user the existing device has seen, with the identity key and the newest list seen (the
/// high-water mark of PROTOCOL.md §11.14).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownIdentity {
    /// The user.
    pub user: UserId,
    /// The identity key seen.
    pub identity: IdentityKey,
    /// The newest list version seen for it.
    pub version: u64,
    /// That list's hash.
    pub list_hash: crate::device_list::DeviceListHash,
    /// The devices it names.
    pub devices: Vec<DeviceId>,
}

/// What the existing device gives the new one (PROTOCOL.md §3.7).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBundle {
    /// [`LINK_BUNDLE_FORMAT`].
    pub v: u8,
    /// Whose device the new one becomes.
    pub user: UserId,
    /// The user's display name.
    pub display_name: String,
    /// The user identity key's secret.
    pub identity_secret: IdentitySecret,
    /// The list that adds the new device.
    pub device_list: SignedDeviceList,
    /// The groups the user accepted.
    pub groups: Vec<BundleGroup>,
    /// Identity keys seen for other users.
    pub known_identities: Vec<KnownIdentity>,
    /// The person's own safety plan, if they wrote one: it is theirs, so it goes to their new
    /// device (and nowhere else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_plan: Option<crate::group_work::SafetyPlan>,
    /// When the safety plan was last changed ([`crate::own_devices`]), so that the new device
    /// orders later updates as the others do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_plan_updated_at: Option<crate::ids::Timestamp>,
    /// The content-warning topics the person hides, per group (a local setting of theirs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_topics: Vec<BundleHiddenTopics>,
}

/// The warning topics a person hides in one group ([`LinkBundle::hidden_topics`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHiddenTopics {
    /// The group.
    pub group: GroupId,
    /// The ids of its warning topics hidden: at most
    /// [`crate::group_work::MAX_WARNING_TOPICS`], distinct.
    pub topics: Vec<u16>,
    /// When the person last changed them ([`crate::own_devices`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<crate::ids::Timestamp>,
}

/// Most groups a bundle's [`LinkBundle::hidden_topics`] may name.
pub const MAX_BUNDLE_HIDDEN_GROUPS: usize = 10_000;

impl LinkBundle {
    /// The checks the new device makes (PROTOCOL.md §3.7): the list is valid, names the user
    /// and identity key of the offered list, succeeds it, lists this device with exactly these
    /// keys and lists the sender; the secret is that identity key's.
    pub fn check(
        &self,
        me: &DeviceKeys,
        sender: &DeviceId,
        offered: &SignedDeviceList,
    ) -> Result<crate::device_list::DeviceList, LinkError> {
        let offered_list = offered
            .verify()
            .map_err(|e| LinkError::Bundle(format!("offered device list: {}", e.code())))?;
        let offered_user = &offered_list.user;
        let offered_identity = &offered_list.identity;
        if self.v != LINK_BUNDLE_FORMAT {
            return Err(LinkError::Bundle("unknown bundle format".into()));
        }
        let list = self
            .device_list
            .verify()
            .map_err(|e| LinkError::Bundle(format!("device list: {}", e.code())))?;
        if !crate::group_log::valid_display_name(&self.display_name) {
            return Err(LinkError::Mismatch("the bundle's name is not a valid name"));
        }
        if list.user != *offered_user || self.user != *offered_user {
            return Err(LinkError::Mismatch("the bundle is for another user"));
        }
        if list.identity != *offered_identity {
            return Err(LinkError::Mismatch(
                "the bundle's identity key is not the one offered",
            ));
        }
        if !list.devices.iter().any(|d| d.keys == *me) {
            return Err(LinkError::Mismatch(
                "the device list does not list this device",
            ));
        }
        if !list.lists(sender) {
            return Err(LinkError::Mismatch(
                "the device list does not list the sender",
            ));
        }
        if !list.succeeds(&offered_list, &offered.hash()) {
            return Err(LinkError::Mismatch(
                "the device list does not succeed the offered one",
            ));
        }
        if let Some(plan) = &self.safety_plan {
            plan.validate()
                .map_err(|e| LinkError::Bundle(format!("safety plan: {}", e.0)))?;
        }
        if self.hidden_topics.len() > MAX_BUNDLE_HIDDEN_GROUPS {
            return Err(LinkError::Bundle("too many groups' hidden topics".into()));
        }
        let mut groups = std::collections::BTreeSet::new();
        for h in &self.hidden_topics {
            let distinct: std::collections::BTreeSet<_> = h.topics.iter().collect();
            if !groups.insert(h.group)
                || h.topics.len() > crate::group_work::MAX_WARNING_TOPICS
                || distinct.len() != h.topics.len()
            {
                return Err(LinkError::Bundle("hidden topics are not valid".into()));
            }
        }
        let secret = crate::device_list::UserIdentity::from_secret_bytes(&self.identity_secret.0);
        if secret.public() != *offered_identity {
            return Err(LinkError::Mismatch(
                "the identity secret is not the identity's",
            ));
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_list::{DeviceList, ListedDevice, UserIdentity};
    use crate::test_rng;

    #[test]
    fn codes_parse_as_people_type_them() {
        let code = LinkCode::generate(&mut test_rng(1));
        assert_eq!(code.as_str().len(), LINK_CODE_CHARS);
        let shown = code.display();
        assert_eq!(LinkCode::parse(&shown).unwrap(), code);
        assert_eq!(LinkCode::parse(&shown.to_lowercase()).unwrap(), code);
        assert_eq!(
            LinkCode::parse("ol1i0-ABCDE").unwrap().as_str(),
            "01110ABCDE"
        );
        assert_eq!(LinkCode::parse("ABCDE-FGHJ"), Err(LinkError::BadCode));
        assert_eq!(LinkCode::parse("ABCDE-FGHJKM"), Err(LinkError::BadCode));
        assert_eq!(LinkCode::parse("ABCDE-FGHJU"), Err(LinkError::BadCode));
        assert_eq!(LinkCode::parse("ABCDE-FGHJé"), Err(LinkError::BadCode));
        let device = DeviceIdentity::generate(&mut test_rng(2)).device_id();
        let (back, id) = LinkCode::parse_qr_or_code(&code.qr_text(&device)).unwrap();
        assert_eq!((back, id), (code.clone(), Some(device)));
        assert_eq!(LinkCode::parse_qr_or_code(&shown).unwrap(), (code, None));
    }

    #[test]
    fn sas_splits_39_bits_into_three_numbers() {
        assert_eq!(Sas::from_bytes(&[0; 5]), Sas([1000, 1000, 1000]));
        assert_eq!(Sas::from_bytes(&[0xff; 5]), Sas([9191, 9191, 9191]));
        // 0x80.. sets only the first bit: the first number's top bit.
        assert_eq!(
            Sas::from_bytes(&[0x80, 0, 0, 0, 0]),
            Sas([1000 + 4096, 1000, 1000])
        );
        // The 40th bit is not used.
        assert_eq!(Sas::from_bytes(&[0, 0, 0, 0, 1]), Sas([1000, 1000, 1000]));
        assert_eq!(Sas::from_bytes(&[0, 0, 0, 0, 2]), Sas([1000, 1000, 1001]));
    }

    /// The whole exchange as two honest devices run it, and what a server in the middle gets.
    #[test]
    fn both_devices_see_the_same_numbers_and_the_bundle_opens_only_for_the_new_device() {
        let mut rng = test_rng(3);
        let old = DeviceIdentity::generate(&mut rng);
        let new = DeviceIdentity::generate(&mut rng);
        let user = UserId([5; 16]);
        let id = UserIdentity::generate(&mut rng);
        let code = LinkCode::generate(&mut rng);
        let channel = code.channel();

        let e_n = LinkEphemeral::generate(&mut rng);
        let hello = LinkMessage::Hello {
            keys: new.public_keys(),
            commit: e_n.commitment(),
        }
        .to_bytes();
        let first = DeviceList::first(user, &id, &old, crate::ids::Timestamp(1));
        let first_signed = id.sign_list(&first, &old).unwrap();
        let e_o = LinkEphemeral::generate(&mut rng);
        let offer = LinkMessage::Offer {
            user,
            display_name: "Noor".into(),
            list: first_signed.clone(),
            eph: e_o.public(),
        }
        .to_bytes();
        let reveal = LinkMessage::parse(
            &LinkMessage::Reveal {
                eph: e_n.public(),
                link_sig: ListedDevice::new(&new, &user, &id.public()).link_sig,
            }
            .to_bytes(),
        )
        .unwrap();
        let LinkMessage::Reveal { eph, .. } = reveal else {
            panic!("reveal")
        };
        assert_eq!(commitment(&eph), e_n.commitment());
        let t = transcript(&channel, &hello, &offer, &eph);
        let old_side = e_o.agree(&eph, &t).unwrap();
        let new_side = e_n.agree(&e_o.public(), &t).unwrap();
        assert_eq!(old_side.sas, new_side.sas);
        assert_eq!(*old_side.psk, *new_side.psk);

        // A server that swaps N's ephemeral key for its own sees different numbers on O.
        let mallory = LinkEphemeral::generate(&mut rng);
        let t_mitm = transcript(&channel, &hello, &offer, &mallory.public());
        let mitm_side = e_o.agree(&mallory.public(), &t_mitm).unwrap();
        assert_ne!(mitm_side.sas, new_side.sas);
        // An all-zero ephemeral key is refused.
        assert!(matches!(e_o.agree(&[0; 32], &t), Err(LinkError::BadKey)));

        let mut devices = first.devices.clone();
        devices.push(ListedDevice::new(&new, &user, &id.public()));
        let list = first.successor(
            first_signed.hash(),
            old.device_id(),
            crate::ids::Timestamp(2),
            devices,
        );
        let bundle = LinkBundle {
            v: LINK_BUNDLE_FORMAT,
            user,
            display_name: "Noor".into(),
            identity_secret: IdentitySecret(*id.to_secret_bytes()),
            device_list: id.sign_list(&list, &old).unwrap(),
            groups: vec![],
            known_identities: vec![],
            safety_plan: None,
            safety_plan_updated_at: None,
            hidden_topics: vec![],
        };
        let payload = serde_json::to_vec(&bundle).unwrap();
        let sealed = seal_bundle(
            &old,
            &new.public_keys(),
            &channel,
            &t,
            &old_side.psk,
            &payload,
            &mut rng,
        )
        .unwrap();
        let opened = open_bundle(&new, &channel, &t, &new_side.psk, &sealed).unwrap();
        let parsed: LinkBundle = serde_json::from_slice(&opened).unwrap();
        assert!(
            parsed
                .check(&new.public_keys(), &old.device_id(), &first_signed)
                .is_ok()
        );
        // Another transcript (another link), or another psk, does not open it.
        assert!(open_bundle(&new, &channel, &t_mitm, &new_side.psk, &sealed).is_err());
        assert!(open_bundle(&new, &channel, &t, &mitm_side.psk, &sealed).is_err());
        // Nobody else opens it.
        assert!(open_bundle(&old, &channel, &t, &new_side.psk, &sealed).is_err());
        // A bundle whose list does not succeed the offered one is refused: here the offer
        // showed another identity's list.
        let other_id = UserIdentity::generate(&mut rng);
        let other_first = other_id
            .sign_list(
                &DeviceList::first(user, &other_id, &old, crate::ids::Timestamp(1)),
                &old,
            )
            .unwrap();
        assert!(matches!(
            parsed.check(&new.public_keys(), &old.device_id(), &other_first),
            Err(LinkError::Mismatch(_))
        ));
        // A bundle whose list does not name this device is refused.
        let stranger = DeviceIdentity::generate(&mut rng);
        assert!(matches!(
            parsed.check(&stranger.public_keys(), &old.device_id(), &first_signed),
            Err(LinkError::Mismatch(_))
        ));
        // Too large is refused before sealing.
        let big = vec![b' '; MAX_LINK_BUNDLE_BYTES + 1];
        assert_eq!(
            seal_bundle(
                &old,
                &new.public_keys(),
                &channel,
                &t,
                &old_side.psk,
                &big,
                &mut rng
            ),
            Err(LinkError::TooLarge(MAX_LINK_BUNDLE_BYTES + 1))
        );
    }

    #[test]
    fn messages_are_parsed_strictly() {
        assert!(LinkMessage::parse(br#"{"t":"done"}"#).is_ok());
        assert!(LinkMessage::parse(br#"{"t":"confirmed"}"#).is_err());
        assert!(LinkMessage::parse(br#"{"t":"done","x":1}"#).is_err());
        assert!(LinkMessage::parse(br#"{"t":"reveal","eph":"AAAA","link_sig":"AAAA"}"#).is_err());
        assert!(LinkMessage::parse(b"not json").is_err());
    }
}
