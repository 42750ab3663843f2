//! The compact binary record of a stored message in the sled backend.
//!
//! Messages are most of what the server writes, and JSON with base64 ciphertext made every post
//! cost a JSON encoding and a third more bytes than the ciphertext. The record is instead the
//! fields at fixed offsets, then the ciphertext as it is (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | [`MESSAGE_RECORD_V1`] |
//! | 8 | seq |
//! | 8 | received at (ms) |
//! | 1 | envelope version |
//! | 16 | group |
//! | 8 | epoch |
//! | 32 | epoch hash |
//! | 32 | sender |
//! | 4 | iteration |
//! | 32 | franking tag |
//! | 64 | signature |
//! | rest | ciphertext |
//!
//! A record written by an older server is JSON, which always starts with `{`: the first byte
//! tells the two apart, so both can be read side by side and nothing needs rewriting. Records
//! are untrusted on read (the disk may have been tampered with): a record of the wrong length or
//! with an unknown first byte is a [`StorageError::Corrupt`], never a panic.

use confide_protocol::envelope::Envelope;
use confide_protocol::frames::StoredMessage;
use confide_protocol::identity::Signature;
use confide_protocol::{DeviceId, Epoch, GroupId, OpHash, Seq, Timestamp};

use super::StorageError;

/// The first byte of a binary message record (JSON starts with `{`, 0x7B).
pub(super) const MESSAGE_RECORD_V1: u8 = 1;

/// Bytes of a binary message record before its ciphertext.
const FIXED_LEN: usize = 1 + 8 + 8 + 1 + 16 + 8 + 32 + 32 + 4 + 32 + 64;

/// The tree named in decoding errors.
const TREE: &str = "messages";

/// The binary record of `message`.
pub(super) fn encode_message(message: &StoredMessage) -> Vec<u8> {
    let e = &message.envelope;
    let mut out = Vec::with_capacity(FIXED_LEN + e.ciphertext.len());
    out.push(MESSAGE_RECORD_V1);
    out.extend_from_slice(&message.seq.0.to_be_bytes());
    out.extend_from_slice(&message.received_at.0.to_be_bytes());
    out.push(e.v);
    out.extend_from_slice(e.group.as_bytes());
    out.extend_from_slice(&e.epoch.0.to_be_bytes());
    out.extend_from_slice(e.epoch_hash.as_bytes());
    out.extend_from_slice(e.sender.as_bytes());
    out.extend_from_slice(&e.iteration.to_be_bytes());
    out.extend_from_slice(&e.franking_tag);
    out.extend_from_slice(&e.signature.0);
    out.extend_from_slice(&e.ciphertext);
    out
}

/// Reads the fields of a binary record in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        // Only called after the length was checked against `FIXED_LEN`, the sum of every
        // `take`; a short read would still give zeros, never a panic.
        let mut out = [0u8; N];
        if let Some((head, rest)) = self.rest.split_first_chunk::<N>() {
            out = *head;
            self.rest = rest;
        }
        out
    }
}

/// A stored message from its record: binary ([`encode_message`]) or the JSON of older servers.
pub(super) fn decode_message(bytes: &[u8]) -> Result<StoredMessage, StorageError> {
    match bytes.first() {
        Some(&MESSAGE_RECORD_V1) => {}
        Some(b'{') => {
            return serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
                tree: TREE,
                reason: e.to_string(),
            });
        }
        Some(other) => {
            return Err(StorageError::Corrupt {
                tree: TREE,
                reason: format!("unknown record format {other:#04x}"),
            });
        }
        None => {
            return Err(StorageError::Corrupt {
                tree: TREE,
                reason: "empty record".into(),
            });
        }
    }
    if bytes.len() < FIXED_LEN {
        return Err(StorageError::Corrupt {
            tree: TREE,
            reason: format!(
                "a message record needs at least {FIXED_LEN} bytes, found {}",
                bytes.len()
            ),
        });
    }
    let mut r = Reader { rest: bytes };
    let [_format] = r.take::<1>();
    let seq = Seq(u64::from_be_bytes(r.take()));
    let received_at = Timestamp(u64::from_be_bytes(r.take()));
    let [v] = r.take::<1>();
    let group = GroupId(r.take());
    let epoch = Epoch(u64::from_be_bytes(r.take()));
    let epoch_hash = OpHash(r.take());
    let sender = DeviceId(r.take());
    let iteration = u32::from_be_bytes(r.take());
    let franking_tag = r.take();
    let signature = Signature(r.take());
    Ok(StoredMessage {
        seq,
        received_at,
        envelope: Envelope {
            v,
            group,
            epoch,
            epoch_hash,
            sender,
            iteration,
            franking_tag,
            ciphertext: r.rest.to_vec(),
            signature,
        },
    })
}

/// [`decode_message`] for the record under `key` (group ‖ seq): a record naming another seq is
/// damaged, as the retention sweep deletes a message by the seq its record names.
pub(super) fn decode_message_at(key: &[u8], bytes: &[u8]) -> Result<StoredMessage, StorageError> {
    let message = decode_message(bytes)?;
    let stored_at = key
        .get(16..)
        .and_then(|seq| <[u8; 8]>::try_from(seq).ok())
        .map(u64::from_be_bytes);
    if stored_at != Some(message.seq.0) {
        return Err(StorageError::Corrupt {
            tree: TREE,
            reason: format!("a record naming seq {} under another key", message.seq.0),
        });
    }
    Ok(message)
}

/// The JSON of a stored message record, whichever format it is stored in: what
/// [`super::migrate`] copies into PostgreSQL.
pub(super) fn message_json(
    key: &[u8],
    bytes: &[u8],
) -> Result<(StoredMessage, Vec<u8>), StorageError> {
    let message = decode_message_at(key, bytes)?;
    let json = if bytes.first() == Some(&b'{') {
        bytes.to_vec()
    } else {
        serde_json::to_vec(&message).map_err(|e| StorageError::Backend(e.to_string()))?
    };
    Ok((message, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ciphertext: Vec<u8>) -> StoredMessage {
        StoredMessage {
            seq: Seq(7),
            received_at: Timestamp(1_700_000_000_123),
            envelope: Envelope {
                v: 1,
                group: GroupId([1; 16]),
                epoch: Epoch(3),
                epoch_hash: OpHash([2; 32]),
                sender: DeviceId([3; 32]),
                iteration: 42,
                franking_tag: [4; 32],
                ciphertext,
                signature: Signature([5; 64]),
            },
        }
    }

    /// A disk attacker moving a record under another seq does not steer retention (which
    /// deletes by the seq a record names): the record is damaged for whoever reads it.
    #[test]
    fn a_record_under_another_seq_is_damaged() {
        let m = message(vec![9; 10]);
        let binary = encode_message(&m);
        let mut key = m.envelope.group.as_bytes().to_vec();
        key.extend_from_slice(&(m.seq.0 + 1).to_be_bytes());
        for bytes in [binary, serde_json::to_vec(&m).unwrap()] {
            assert!(matches!(
                decode_message_at(&key, &bytes),
                Err(StorageError::Corrupt { .. })
            ));
            assert!(message_json(&key, &bytes).is_err());
        }
        key.truncate(16);
        key.extend_from_slice(&m.seq.0.to_be_bytes());
        assert_eq!(decode_message_at(&key, &encode_message(&m)).unwrap(), m);
    }

    #[test]
    fn a_message_reads_back_as_written_in_either_format() {
        for ciphertext in [Vec::new(), vec![9; 700]] {
            let m = message(ciphertext);
            let binary = encode_message(&m);
            assert_eq!(decode_message(&binary).unwrap(), m);
            let json = serde_json::to_vec(&m).unwrap();
            assert!(binary.len() < json.len());
            assert_eq!(decode_message(&json).unwrap(), m);
            let mut key = m.envelope.group.as_bytes().to_vec();
            key.extend_from_slice(&m.seq.0.to_be_bytes());
            let (read, exported) = message_json(&key, &binary).unwrap();
            assert_eq!(read, m);
            assert_eq!(
                serde_json::from_slice::<StoredMessage>(&exported).unwrap(),
                m
            );
        }
    }

    #[test]
    fn a_damaged_message_record_is_a_storage_error_not_a_panic() {
        let good = encode_message(&message(vec![9; 40]));
        let mut cases: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![2; 300], b"{nope".to_vec()];
        cases.extend((0..FIXED_LEN).map(|n| good[..n].to_vec()));
        for bytes in cases {
            let err = decode_message(&bytes).unwrap_err();
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        }
    }
}
