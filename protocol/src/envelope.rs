//! The group-message envelope: a versioned header used as associated data, a padded
//! ChaCha20-Poly1305 ciphertext under a sender-key message key, a franking commitment, and the
//! sender's Ed25519 signature.

use serde::{Deserialize, Serialize};

use crate::encoding::{b64, b64_array};
use crate::identity::Signature;
use crate::ids::{DeviceId, Epoch, EpochRef, GroupId, OpHash};

/// An encrypted group message as it travels and as the server stores it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Envelope format version, 1.
    pub v: u8,
    /// The group.
    pub group: GroupId,
    /// The epoch whose sender key encrypted it.
    pub epoch: Epoch,
    /// Hash of the group-log op that started that epoch.
    pub epoch_hash: OpHash,
    /// The sending device.
    pub sender: DeviceId,
    /// The sender chain's iteration that produced the message key.
    pub iteration: u32,
    /// HMAC-SHA256 franking commitment to the plaintext.
    #[serde(with = "b64_array")]
    pub franking_tag: [u8; 32],
    /// The padded, encrypted plaintext.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
    /// The sender's signature over header, franking tag and ciphertext.
    pub signature: Signature,
}

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::identity::{DeviceIdentity, PublicKey};
use crate::ids::{MessageId, Timestamp};
use crate::primitives::{self, hash};
use crate::sender_key::{ReceiverChain, SenderChain, SenderKeyError};

/// The envelope format this crate writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// Length of the binary header: version (1) || group (16) || epoch (8) || epoch hash (32) ||
/// sender (32) || iteration (4).
pub const HEADER_LEN: usize = 93;
/// Label of the sender's signature over an envelope.
pub const LABEL_ENVELOPE_SIG: &str = "confide/v1/envelope";
/// Label of the franking commitment.
pub const LABEL_FRANKING: &str = "confide/v1/franking";
/// Label of the message id hash.
pub const LABEL_MESSAGE_ID: &str = "confide/v1/message-id";
/// Padded plaintext sizes. Plaintext (franking key, body and the padding marker) is padded to the
/// smallest bucket that fits, so the server learns only the bucket.
pub const PADDING_BUCKETS: [usize; 9] = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
/// Largest message body: the largest bucket less the franking key and the padding marker.
pub const MAX_BODY_LEN: usize = 65536 - 32 - 1;
/// Largest ciphertext a valid envelope can carry (largest bucket plus the AEAD tag).
pub const MAX_CIPHERTEXT_LEN: usize = 65536 + primitives::AEAD_TAG_LEN;

/// Why an envelope could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The envelope has a version this client does not understand.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The body is larger than [`MAX_BODY_LEN`].
    #[error("message body of {0} bytes exceeds the {MAX_BODY_LEN}-byte limit")]
    TooLarge(usize),
    /// The ciphertext length is not a padding bucket plus the tag.
    #[error("ciphertext length {0} is not a valid padded size")]
    BadLength(usize),
    /// The sender's signature does not verify: forged or altered in transit.
    #[error("envelope signature does not verify (forged or altered)")]
    BadSignature,
    /// The ciphertext does not decrypt under the sender's key for that iteration.
    #[error("envelope does not decrypt (altered, or sealed under another key)")]
    Decrypt,
    /// The decrypted plaintext has no valid padding.
    #[error("envelope plaintext is not correctly padded")]
    BadPadding,
    /// The franking commitment does not match the plaintext: the sender committed to something
    /// else, so the message could not be reported verifiably. Rejected.
    #[error("franking commitment does not match the message")]
    BadFranking,
    /// The sender-key chain refused the iteration (replay, too far ahead).
    #[error(transparent)]
    SenderKey(#[from] SenderKeyError),
}

/// An envelope whose version, ciphertext length and signature [`Envelope::verified`] checked.
/// Only that check makes one, so holding one proves it passed: a receiver verifies each
/// message once, before it touches any state, and then opens it with [`Verified::open`]
/// without paying for the signature again.
#[derive(Clone, Copy, Debug)]
pub struct Verified<'a>(&'a Envelope);

impl<'a> Verified<'a> {
    /// The proof for an envelope whose [`Envelope::verify_with`] check passed (a sync page's,
    /// [`crate::page_checks::PageChecks`]): only a caller that ran that check on `envelope`
    /// makes one.
    pub(crate) fn of_checked(envelope: &'a Envelope) -> Verified<'a> {
        Verified(envelope)
    }

    /// The envelope that was checked.
    pub fn envelope(&self) -> &'a Envelope {
        self.0
    }

    /// Decrypts with the sender's receiving chain for this envelope's epoch, as
    /// [`Envelope::open`] does, without checking the signature again. The chain advances only
    /// if the message decrypts and its franking commitment holds.
    pub fn open(self, chain: &mut ReceiverChain) -> Result<OpenedMessage, EnvelopeError> {
        self.0.open_verified(chain)
    }
}

/// Checks each envelope as [`Envelope::verified`] does, in order: the one result per envelope a
/// receiver needs before handling a page of messages. Pure, so a platform with several cores
/// may run it on parts of a page at once (the results are the same as one by one).
///
/// Each sender's key is decoded once for the whole call: a page mostly comes from a few
/// devices, and decoding a key costs about a sixth of checking a signature.
pub fn verify_each<'a>(envelopes: &[&'a Envelope]) -> Vec<Result<Verified<'a>, EnvelopeError>> {
    let mut keys: BTreeMap<DeviceId, Result<PublicKey, CryptoError>> = BTreeMap::new();
    envelopes
        .iter()
        .map(|envelope| {
            envelope.verify_with(|sender| {
                keys.entry(*sender)
                    .or_insert_with(|| PublicKey::decode(sender))
                    .clone()
            })?;
            Ok(Verified(envelope))
        })
        .collect()
}

/// What a recipient gets from a valid envelope.
pub struct OpenedMessage {
    /// The message body (UTF-8 JSON of [`MessageContent`] for Confide clients).
    pub body: Zeroizing<Vec<u8>>,
    /// The franking key, kept so the recipient can later report this message verifiably.
    pub franking_key: Zeroizing<[u8; 32]>,
    /// The message id.
    pub message_id: MessageId,
}

impl std::fmt::Debug for OpenedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedMessage")
            .field("message_id", &self.message_id)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

fn pad(franking_key: &[u8; 32], body: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let needed = 32 + body.len() + 1;
    let Some(bucket) = PADDING_BUCKETS.iter().copied().find(|b| *b >= needed) else {
        return Err(EnvelopeError::TooLarge(body.len()));
    };
    let mut out = Zeroizing::new(Vec::with_capacity(bucket));
    out.extend_from_slice(franking_key);
    out.extend_from_slice(body);
    out.push(0x80);
    out.resize(bucket, 0);
    Ok(out)
}

/// Removes ISO/IEC 7816-4 padding (`0x80` then zeros) and splits off the franking key.
fn unpad(padded: &[u8]) -> Result<(Zeroizing<[u8; 32]>, &[u8]), EnvelopeError> {
    let end = padded
        .iter()
        .rposition(|b| *b != 0)
        .ok_or(EnvelopeError::BadPadding)?;
    if padded[end] != 0x80 || end < 32 {
        return Err(EnvelopeError::BadPadding);
    }
    let mut fk = Zeroizing::new([0u8; 32]);
    fk.copy_from_slice(&padded[..32]);
    Ok((fk, &padded[32..end]))
}

impl Envelope {
    /// The binary header: the associated data of the AEAD and the start of every signed and
    /// MACed string.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.v;
        h[1..17].copy_from_slice(self.group.as_bytes());
        h[17..25].copy_from_slice(&self.epoch.0.to_be_bytes());
        h[25..57].copy_from_slice(self.epoch_hash.as_bytes());
        h[57..89].copy_from_slice(self.sender.as_bytes());
        h[89..93].copy_from_slice(&self.iteration.to_be_bytes());
        h
    }

    /// The epoch this envelope claims, by number and hash.
    pub fn epoch_ref(&self) -> EpochRef {
        EpochRef {
            epoch: self.epoch,
            hash: self.epoch_hash,
        }
    }

    /// The message id: the first 16 bytes of `SHA-256("confide/v1/message-id" || 0x00 || header)`.
    /// Unique per (group, epoch, epoch hash, sender, iteration); the server computes it without
    /// reading.
    pub fn message_id(&self) -> MessageId {
        let digest = hash(LABEL_MESSAGE_ID, &[&self.header()]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        MessageId(id)
    }

    /// Encrypts and signs `body` as the next message of `chain`.
    pub fn seal(
        identity: &DeviceIdentity,
        group: GroupId,
        epoch: EpochRef,
        chain: &mut SenderChain,
        body: &[u8],
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Envelope, EnvelopeError> {
        if body.len() > MAX_BODY_LEN {
            return Err(EnvelopeError::TooLarge(body.len()));
        }
        let mut franking_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(franking_key.as_mut());
        let (iteration, key) = chain.next_message_key()?;
        let mut envelope = Envelope {
            v: ENVELOPE_VERSION,
            group,
            epoch: epoch.epoch,
            epoch_hash: epoch.hash,
            sender: identity.device_id(),
            iteration,
            franking_tag: [0u8; 32],
            ciphertext: Vec::new(),
            signature: Signature([0u8; 64]),
        };
        let header = envelope.header();
        envelope.franking_tag =
            primitives::hmac_sha256(franking_key.as_ref(), &[&frank_input(&header, body)]);
        let padded = pad(&franking_key, body)?;
        let aad = [header.as_slice(), envelope.franking_tag.as_slice()].concat();
        envelope.ciphertext = primitives::aead_seal(&key.key, &key.nonce, &aad, &padded)
            .map_err(|_| EnvelopeError::Decrypt)?;
        envelope.signature = identity.sign(
            LABEL_ENVELOPE_SIG,
            &[&header, &envelope.franking_tag, &envelope.ciphertext],
        );
        Ok(envelope)
    }

    /// Checks the version and the ciphertext length (PROTOCOL.md §6.8 steps 1–2): what the
    /// server checks of a posted envelope. It does not check the signature: clients do
    /// (PROTOCOL.md §10.1, `post` step 2, says why the server need not).
    pub fn check_form(&self) -> Result<(), EnvelopeError> {
        if self.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(self.v));
        }
        let tag = primitives::AEAD_TAG_LEN;
        if !PADDING_BUCKETS
            .iter()
            .any(|b| b + tag == self.ciphertext.len())
        {
            return Err(EnvelopeError::BadLength(self.ciphertext.len()));
        }
        Ok(())
    }

    /// Checks the version, the ciphertext length and the sender's strict signature, as
    /// [`Self::verify`], and returns the proof of it: what [`Verified::open`] needs to decrypt
    /// without checking the signature a second time.
    pub fn verified(&self) -> Result<Verified<'_>, EnvelopeError> {
        self.verify()?;
        Ok(Verified(self))
    }

    /// Checks the version, the ciphertext length and the sender's strict signature
    /// (PROTOCOL.md §6.8 steps 1–3): all a client checks before touching a sender key.
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        self.verify_with(PublicKey::decode)
    }

    /// [`Self::verify`], with the sender's key from `key` (decoded once per sender of a page,
    /// [`verify_each`]); the key is asked for only once the version and length hold, as
    /// [`Self::verify`] decodes it only then.
    pub(crate) fn verify_with(
        &self,
        key: impl FnOnce(&DeviceId) -> Result<PublicKey, CryptoError>,
    ) -> Result<(), EnvelopeError> {
        self.check_form()?;
        key(&self.sender)
            .and_then(|key| {
                key.verify(
                    LABEL_ENVELOPE_SIG,
                    &[&self.header(), &self.franking_tag, &self.ciphertext],
                    &self.signature,
                )
            })
            .map_err(|_| EnvelopeError::BadSignature)
    }

    /// Verifies and decrypts with the sender's receiving chain for this envelope's epoch. The
    /// chain advances only if the message is genuine.
    pub fn open(&self, chain: &mut ReceiverChain) -> Result<OpenedMessage, EnvelopeError> {
        self.verified()?.open(chain)
    }

    /// Decrypts an envelope whose signature was checked (see [`Verified::open`]).
    fn open_verified(&self, chain: &mut ReceiverChain) -> Result<OpenedMessage, EnvelopeError> {
        let header = self.header();
        let aad = [header.as_slice(), self.franking_tag.as_slice()].concat();
        let opened = chain.with_message_key(self.iteration, |key| {
            let padded = primitives::aead_open(&key.key, &key.nonce, &aad, &self.ciphertext)
                .map_err(|_| EnvelopeError::Decrypt)?;
            let (franking_key, body) = unpad(&padded)?;
            if !primitives::hmac_sha256_verify(
                franking_key.as_ref(),
                &[&frank_input(&header, body)],
                &self.franking_tag,
            ) {
                return Err(EnvelopeError::BadFranking);
            }
            Ok(OpenedMessage {
                body: Zeroizing::new(body.to_vec()),
                franking_key,
                message_id: self.message_id(),
            })
        })??;
        Ok(opened)
    }

    /// Checks a franking opening: that `body` with `franking_key` is what this (signed) envelope
    /// committed to. With [`Self::verify`], this proves the sender sent `body`.
    pub fn check_franking(&self, body: &[u8], franking_key: &[u8; 32]) -> bool {
        primitives::hmac_sha256_verify(
            franking_key,
            &[&frank_input(&self.header(), body)],
            &self.franking_tag,
        )
    }
}

/// The franking MAC input: `"confide/v1/franking" || 0x00 || header || body`.
fn frank_input(header: &[u8; HEADER_LEN], body: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(primitives::labelled(LABEL_FRANKING, &[header, body]))
}

/// The plaintext of a Confide group message (the envelope body, as UTF-8 JSON). Its `Debug`
/// shows only the kind of content, never the text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageContent {
    /// When the sender says it sent the message.
    pub sent_at: Timestamp,
    /// The highest message seq of the group the sender had received when it wrote this, if
    /// any: the server must store the message after it, so a receiver that finds it stored at
    /// or before that seq knows the server's order is wrong (PROTOCOL.md §6.7, §11.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_seq: Option<crate::Seq>,
    /// What the message is.
    pub body: ContentBody,
}

impl std::fmt::Debug for MessageContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.body {
            ContentBody::Text { .. } => "text",
            ContentBody::Pinned { .. } => "pinned",
            ContentBody::AddWarning { .. } => "add_warning",
        };
        f.debug_struct("MessageContent")
            .field("sent_at", &self.sent_at)
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// The kinds of message content. No `Debug`: it is plaintext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentBody {
    /// A text message, optionally replying to an earlier message.
    Text {
        /// The text.
        text: String,
        /// The message replied to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MessageId>,
        /// Content warnings the sender put on it: ids of the group's warning topics
        /// ([`crate::group_work::WarningTopics`]), checked by
        /// [`crate::group_work::validate_warnings`]. Empty when none (then omitted).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<u16>,
        /// The check-in round this message is the prompt of, an answer to, or a pass in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        round: Option<crate::group_work::RoundTag>,
    },
    /// A moderator puts content warnings on someone else's message. Readers add them to the
    /// author's own (never remove any); from anyone but a current moderator it is ignored.
    AddWarning {
        /// The message warned about.
        message: MessageId,
        /// Ids of the group's warning topics ([`crate::group_work::validate_warnings`]).
        warnings: Vec<u16>,
    },
    /// A text pinned to the group (the group agreement, or crisis resources), sent by a
    /// facilitator. The group log holds only its keyed commitment ([`pinned_commitment`]), so
    /// the server can neither read nor confirm a guess of the text; members check the text
    /// they receive against the log.
    Pinned {
        /// What is pinned.
        kind: PinnedKind,
        /// The agreement version (0 for crisis resources).
        version: u32,
        /// The text.
        text: String,
        /// The commitment key.
        #[serde(with = "b64_array")]
        key: [u8; 32],
    },
}

/// What a [`ContentBody::Pinned`] text is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinnedKind {
    /// The group agreement members accept before posting (`set_agreement`).
    Agreement,
    /// "If you are in crisis" resources (`set_crisis_resources`).
    CrisisResources,
    /// The meeting schedule, a [`crate::group_work::MeetingSchedule`] as JSON (`set_pinned`).
    Meetings,
    /// The warning topics, [`crate::group_work::WarningTopics`] as JSON (`set_pinned`).
    WarningTopics,
    /// The resource library, [`crate::group_work::ResourceLibrary`] as JSON (`set_pinned`).
    Resources,
}

impl PinnedKind {
    /// Every kind, in code order.
    pub const ALL: [PinnedKind; 5] = [
        PinnedKind::Agreement,
        PinnedKind::CrisisResources,
        PinnedKind::Meetings,
        PinnedKind::WarningTopics,
        PinnedKind::Resources,
    ];

    /// The kind's code in the commitment (PROTOCOL.md §6.7).
    pub fn code(self) -> u8 {
        match self {
            PinnedKind::Agreement => 1,
            PinnedKind::CrisisResources => 2,
            PinnedKind::Meetings => 3,
            PinnedKind::WarningTopics => 4,
            PinnedKind::Resources => 5,
        }
    }

    /// Whether the kind is published with the generic `set_pinned` op (the group-work
    /// documents) rather than an op of its own (`set_agreement`, `set_crisis_resources`).
    pub fn is_document(self) -> bool {
        matches!(
            self,
            PinnedKind::Meetings | PinnedKind::WarningTopics | PinnedKind::Resources
        )
    }

    /// Checks that `text` is a valid document of this kind (any text is a valid agreement or
    /// crisis-resources text).
    pub fn validate_text(self, text: &str) -> Result<(), crate::group_work::InvalidDocument> {
        use crate::group_work::{
            MeetingSchedule, ResourceLibrary, WarningTopics, parse_document as parse,
        };
        match self {
            PinnedKind::Agreement | PinnedKind::CrisisResources => Ok(()),
            PinnedKind::Meetings => parse::<MeetingSchedule>(text)?.validate(),
            PinnedKind::WarningTopics => parse::<WarningTopics>(text)?.validate(),
            PinnedKind::Resources => parse::<ResourceLibrary>(text)?.validate(),
        }
    }
}

/// Label of a pinned text's commitment.
pub const LABEL_PINNED: &str = "confide/v1/pinned";

/// The keyed commitment to a pinned text that goes into the group log:
/// `HMAC-SHA256(key, "confide/v1/pinned" || 0x00 || kind ([`PinnedKind::code`]) ||
/// version (4, BE) || text)`.
pub fn pinned_commitment(key: &[u8; 32], kind: PinnedKind, version: u32, text: &str) -> [u8; 32] {
    let code = kind.code();
    primitives::hmac_sha256(
        key,
        &[&primitives::labelled(
            LABEL_PINNED,
            &[&[code], &version.to_be_bytes(), text.as_bytes()],
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng;

    fn ep(n: u64) -> EpochRef {
        EpochRef {
            epoch: Epoch(n),
            hash: OpHash([n as u8; 32]),
        }
    }

    struct Fixture {
        alice: DeviceIdentity,
        alice_chain: SenderChain,
        bob_copy: ReceiverChain,
    }

    fn fixture() -> Fixture {
        let alice = DeviceIdentity::generate(&mut test_rng(1));
        let alice_chain = SenderChain::generate(&mut test_rng(2));
        let bob_copy = ReceiverChain::from_distribution(&alice_chain.distribution()).unwrap();
        Fixture {
            alice,
            alice_chain,
            bob_copy,
        }
    }

    fn send(f: &mut Fixture, body: &[u8]) -> Envelope {
        Envelope::seal(
            &f.alice,
            GroupId([5; 16]),
            ep(1),
            &mut f.alice_chain,
            body,
            &mut test_rng(3),
        )
        .unwrap()
    }

    #[test]
    fn a_page_checked_together_gets_the_same_verdicts_as_one_by_one() {
        let mut f = fixture();
        let mut page: Vec<Envelope> = (0..6).map(|_| send(&mut f, b"hi")).collect();
        page[1].signature.0[3] ^= 1;
        page[2].ciphertext.pop();
        page[3].v = ENVELOPE_VERSION + 1;
        // A sender whose key is not a valid point (the key is only decoded once per page).
        page[4].sender = DeviceId([0xff; 32]);
        let refs: Vec<&Envelope> = page.iter().collect();
        let together = verify_each(&refs);
        assert_eq!(together.len(), page.len());
        for (envelope, verdict) in page.iter().zip(&together) {
            match (envelope.verify(), verdict) {
                (Ok(()), Ok(verified)) => assert!(std::ptr::eq(verified.envelope(), envelope)),
                (Err(alone), Err(together)) => assert_eq!(&alone, together),
                (alone, together) => panic!("{alone:?} alone, {together:?} together"),
            }
        }
        let verdicts: Vec<bool> = together.iter().map(Result::is_ok).collect();
        assert_eq!(verdicts, [true, false, false, false, false, true]);
        // Checked once, opened without checking again.
        let verified = *together[0].as_ref().unwrap();
        let opened = verified.open(&mut f.bob_copy).unwrap();
        assert_eq!(&*opened.body, b"hi");
    }

    #[test]
    fn round_trip_with_padding_to_buckets() {
        let mut f = fixture();
        for len in [0usize, 1, 200, 223, 224, 1000, 5000] {
            let body = vec![b'x'; len];
            let env = send(&mut f, &body);
            assert!(
                PADDING_BUCKETS
                    .iter()
                    .any(|b| b + 16 == env.ciphertext.len())
            );
            let opened = env.open(&mut f.bob_copy).unwrap();
            assert_eq!(&*opened.body, &body);
            assert!(env.check_franking(&opened.body, &opened.franking_key));
            assert_eq!(opened.message_id, env.message_id());
        }
        // Short messages all look alike on the wire.
        assert_eq!(
            send(&mut f, b"hi").ciphertext.len(),
            send(&mut f, &[b'y'; 200]).ciphertext.len()
        );
    }

    #[test]
    fn tampering_is_rejected_without_advancing_the_chain() {
        let mut f = fixture();
        let env = send(&mut f, b"hello");
        let mut bad_ct = env.clone();
        bad_ct.ciphertext[0] ^= 1;
        assert_eq!(
            bad_ct.open(&mut f.bob_copy).unwrap_err(),
            EnvelopeError::BadSignature
        );
        let mut bad_header = env.clone();
        bad_header.epoch = Epoch(2);
        assert_eq!(
            bad_header.open(&mut f.bob_copy).unwrap_err(),
            EnvelopeError::BadSignature
        );
        // The same epoch number on another branch of a forked log is another header.
        let mut other_branch = env.clone();
        other_branch.epoch_hash = OpHash([9; 32]);
        assert_eq!(
            other_branch.open(&mut f.bob_copy).unwrap_err(),
            EnvelopeError::BadSignature
        );
        let mut bad_sig = env.clone();
        bad_sig.signature.0[10] ^= 1;
        assert_eq!(
            bad_sig.open(&mut f.bob_copy).unwrap_err(),
            EnvelopeError::BadSignature
        );
        let mut bad_tag = env.clone();
        bad_tag.franking_tag[0] ^= 1;
        assert_eq!(
            bad_tag.open(&mut f.bob_copy).unwrap_err(),
            EnvelopeError::BadSignature
        );
        // The genuine envelope still opens: nothing above moved the chain.
        assert_eq!(&*env.open(&mut f.bob_copy).unwrap().body, b"hello");
    }

    #[test]
    fn replay_is_rejected() {
        let mut f = fixture();
        let env = send(&mut f, b"once");
        env.open(&mut f.bob_copy).unwrap();
        assert_eq!(
            env.open(&mut f.bob_copy).unwrap_err(),
            EnvelopeError::SenderKey(SenderKeyError::Replay(0))
        );
    }

    #[test]
    fn wrong_epoch_key_cannot_decrypt() {
        // A member holding the previous epoch's chain of the same sender cannot read the new one.
        let mut f = fixture();
        let old_epoch_copy =
            ReceiverChain::from_distribution(&f.alice_chain.distribution()).unwrap();
        let mut new_chain = SenderChain::generate(&mut test_rng(9));
        let env = Envelope::seal(
            &f.alice,
            GroupId([5; 16]),
            ep(2),
            &mut new_chain,
            b"secret",
            &mut test_rng(4),
        )
        .unwrap();
        let mut stale = old_epoch_copy;
        assert_eq!(env.open(&mut stale).unwrap_err(), EnvelopeError::Decrypt);
        let _ = &mut f;
    }

    #[test]
    fn franking_opening_binds_body() {
        let mut f = fixture();
        let env = send(&mut f, b"you are worthless");
        let opened = env.open(&mut f.bob_copy).unwrap();
        assert!(env.check_franking(b"you are worthless", &opened.franking_key));
        assert!(!env.check_franking(b"you are wonderful", &opened.franking_key));
        assert!(!env.check_franking(b"you are worthless", &[0u8; 32]));
    }

    #[test]
    fn oversized_body_is_refused() {
        let mut f = fixture();
        let err = Envelope::seal(
            &f.alice,
            GroupId([5; 16]),
            ep(1),
            &mut f.alice_chain,
            &vec![0; MAX_BODY_LEN + 1],
            &mut test_rng(3),
        );
        assert_eq!(err.unwrap_err(), EnvelopeError::TooLarge(MAX_BODY_LEN + 1));
        assert!(
            Envelope::seal(
                &f.alice,
                GroupId([5; 16]),
                ep(1),
                &mut f.alice_chain,
                &vec![0; MAX_BODY_LEN],
                &mut test_rng(3)
            )
            .is_ok()
        );
    }
}
