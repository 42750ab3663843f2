//! Where each message number of a group points (number → seq, PROTOCOL.md §11.11), kept
//! [`NUMBERS_PER_VALUE`] numbers to a store value ([`T_NUMBERS`]).
//!
//! A catch-up numbers every message it stores, and every store key costs the native store
//! several microseconds to write whatever its size (BENCHMARKS.md, "Issue 20, an eighth
//! round"): one key per 64 numbers instead of one per number. Numbers are given in order and
//! never taken back (a deleted message keeps its number), so a value only ever fills up.
//!
//! Stores written before kept one key per number in [`T_NUMBER_SEQ`](crate::store::T_NUMBER_SEQ); those are read as
//! they are and never written again.

use confide_protocol::{GroupId, Seq};

use crate::store::key2;

/// Per group, message numbers to seqs, [`NUMBERS_PER_VALUE`] consecutive numbers to a value:
/// key group ‖ number / 64 (u64, big-endian); value [`NumberRun`]'s bytes. Replaces
/// [`T_NUMBER_SEQ`](crate::store::T_NUMBER_SEQ) for numbers given since.
pub(crate) const T_NUMBERS: &str = "numbers";

/// How many consecutive numbers share one store value.
pub(crate) const NUMBERS_PER_VALUE: u64 = 64;

/// Bytes of the mask of the numbers a value holds (one bit per number, lowest number in the
/// lowest bit).
const MASK_LEN: usize = 8;

/// Bytes of one number's seq (u64, big-endian).
const SEQ_LEN: usize = 8;

/// Bytes of a stored [`NumberRun`]: the mask, then every slot's seq (0 for a slot not set).
const RUN_LEN: usize = MASK_LEN + NUMBERS_PER_VALUE as usize * SEQ_LEN;

/// The store key of the value that holds `number` of `group`.
pub(crate) fn run_key(group: GroupId, number: u64) -> Vec<u8> {
    key2(
        group.as_bytes(),
        &(number / NUMBERS_PER_VALUE).to_be_bytes(),
    )
}

/// The first key after the value that holds `number` of `group`: the end of a key range
/// that includes it.
pub(crate) fn keys_through(group: GroupId, number: u64) -> Vec<u8> {
    // At most u64::MAX / 64 + 1: no overflow.
    key2(
        group.as_bytes(),
        &(number / NUMBERS_PER_VALUE + 1).to_be_bytes(),
    )
}

/// The key in [`T_NUMBER_SEQ`](crate::store::T_NUMBER_SEQ) of `number` of `group`, as stores written before kept it.
pub(crate) fn legacy_key(group: GroupId, number: u64) -> Vec<u8> {
    key2(group.as_bytes(), &number.to_be_bytes())
}

/// The first number the value at `key` (a [`run_key`]) holds; `None` for a key that is not
/// one.
pub(crate) fn first_number(key: &[u8]) -> Option<u64> {
    let index = key.get(GroupId::LEN..)?;
    let index = u64::from_be_bytes(index.try_into().ok()?);
    index.checked_mul(NUMBERS_PER_VALUE)
}

/// [`NUMBERS_PER_VALUE`] consecutive numbers of a group, each set to the seq it names or not
/// set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NumberRun {
    /// Bit `i` set: slot `i` holds a seq.
    mask: u64,
    /// Per slot, the seq (0 where the mask says none).
    seqs: [u64; NUMBERS_PER_VALUE as usize],
}

impl NumberRun {
    /// A run with no number set.
    pub(crate) fn empty() -> NumberRun {
        NumberRun {
            mask: 0,
            seqs: [0; NUMBERS_PER_VALUE as usize],
        }
    }

    /// Reads a stored run; `None` for bytes that are not one.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<NumberRun> {
        if bytes.len() != RUN_LEN {
            return None;
        }
        let (mask, slots) = bytes.split_first_chunk::<MASK_LEN>()?;
        let mut run = NumberRun::empty();
        run.mask = u64::from_be_bytes(*mask);
        for (seq, slot) in run.seqs.iter_mut().zip(slots.chunks_exact(SEQ_LEN)) {
            *seq = u64::from_be_bytes(slot.try_into().ok()?);
        }
        Some(run)
    }

    /// The stored form: the mask, then each slot's seq, all big-endian.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(RUN_LEN);
        bytes.extend_from_slice(&self.mask.to_be_bytes());
        for seq in &self.seqs {
            bytes.extend_from_slice(&seq.to_be_bytes());
        }
        bytes
    }

    /// The seq `number` names, if this run (the one [`run_key`] gives for it) holds it.
    pub(crate) fn get(&self, number: u64) -> Option<Seq> {
        let slot = slot(number);
        (self.mask & (1 << slot) != 0).then(|| Seq(self.seqs[slot]))
    }

    /// Sets `number` (one this run holds, by [`run_key`]) to `seq`.
    pub(crate) fn set(&mut self, number: u64, seq: Seq) {
        let slot = slot(number);
        self.mask |= 1 << slot;
        self.seqs[slot] = seq.0;
    }

    /// Every number set, with its seq, in order; `first` is the run's first number
    /// ([`first_number`]).
    pub(crate) fn entries(&self, first: u64) -> impl Iterator<Item = (u64, Seq)> + '_ {
        (0..NUMBERS_PER_VALUE).filter_map(move |slot| {
            let number = first.checked_add(slot)?;
            self.get(number).map(|seq| (number, seq))
        })
    }
}

/// Where `number` sits in its run.
fn slot(number: u64) -> usize {
    // Below 64, so the conversion is exact on every target.
    (number % NUMBERS_PER_VALUE) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_keeps_each_number_it_is_given_and_reads_back_from_its_bytes() {
        let group = GroupId([7; 16]);
        let mut run = NumberRun::empty();
        // Numbers 128..192 share a value; 191 is its last.
        for (number, seq) in [(128, 1000), (130, 1002), (191, 2000)] {
            assert_eq!(run_key(group, number), run_key(group, 128));
            run.set(number, Seq(seq));
        }
        assert_ne!(run_key(group, 192), run_key(group, 191));
        let read = NumberRun::from_bytes(&run.to_bytes()).unwrap();
        assert_eq!(read, run);
        assert_eq!(read.get(130), Some(Seq(1002)));
        assert_eq!(read.get(129), None);
        assert_eq!(first_number(&run_key(group, 150)), Some(128));
        assert_eq!(
            read.entries(128).collect::<Vec<_>>(),
            [(128, Seq(1000)), (130, Seq(1002)), (191, Seq(2000))]
        );
        // A seq of 0 is still a number set.
        run.set(129, Seq(0));
        assert_eq!(run.get(129), Some(Seq(0)));
    }

    #[test]
    fn bytes_of_another_length_are_not_a_run() {
        let bytes = NumberRun::empty().to_bytes();
        assert!(NumberRun::from_bytes(&bytes[1..]).is_none());
        assert!(NumberRun::from_bytes(&[bytes.clone(), vec![0]].concat()).is_none());
        assert!(NumberRun::from_bytes(&bytes).is_some());
    }
}
