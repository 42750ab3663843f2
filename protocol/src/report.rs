//! Verifiable reports (message franking). A member who reports a message sends the facilitators
//! the envelope exactly as received, the decrypted body and the franking key, sealed to each
//! facilitator device. A facilitator checks the sender's signature over the envelope (which
//! covers the franking tag) and the franking tag over the body: together they prove that the
//! envelope's sender sent that body. The reporter cannot make up what was said, and the server
//! never sees the report's content.

use serde::{Deserialize, Serialize};

use crate::encoding::{b64, b64_array};
use crate::envelope::{Envelope, EnvelopeError};
use crate::identity::{DeviceIdentity, DeviceKeys};
use crate::ids::{DeviceId, EpochRef, MessageId, Seq, Timestamp};
use crate::seal::{self, SealError, SealKind, SealedPayload};

/// Longest reason text a report may carry, in bytes.
pub const MAX_REASON_LEN: usize = 2000;

/// The plaintext of a report (UTF-8 JSON), sealed with [`SealKind::Report`]. Its `Debug`
/// shows no content, no key and no reason.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportPayload {
    /// The group's sequence number of the reported message.
    pub seq: Seq,
    /// The reported envelope, exactly as the server delivered it.
    pub envelope: Envelope,
    /// The decrypted body of the reported message.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// The franking key from the reported message's plaintext.
    #[serde(with = "b64_array")]
    pub franking_key: [u8; 32],
    /// Why the reporter is reporting it (free text, seen only by facilitators).
    pub reason: String,
    /// When the reporter says it reported.
    pub reported_at: Timestamp,
}

/// A report whose franking checked out. Its `Debug` shows no content and no reason.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedReport {
    /// The device that sent the reported message (proven).
    pub offender: DeviceId,
    /// The device that reported it (the authenticated sealer).
    pub reporter: DeviceId,
    /// The reported message's id.
    pub message: MessageId,
    /// Its body (proven to be what `offender` sent).
    pub body: Vec<u8>,
    /// The reporter's reason.
    pub reason: String,
    /// The reported message's sequence number.
    pub seq: Seq,
    /// The reported message's epoch (the reader checks the offender was a member in it).
    pub epoch: EpochRef,
    /// When the reporter says it reported (`reported_at`: signed by the reporter with the
    /// rest of the sealed payload, so the server cannot change it, but the reporter's claim).
    pub reported_at: Timestamp,
}

impl std::fmt::Debug for ReportPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportPayload")
            .field("seq", &self.seq)
            .field("message", &self.envelope.message_id())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for VerifiedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedReport")
            .field("offender", &self.offender)
            .field("reporter", &self.reporter)
            .field("message", &self.message)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Why a report is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The sealed report could not be opened.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The report is not valid JSON of a [`ReportPayload`].
    #[error("malformed report: {0}")]
    Malformed(String),
    /// The sealed payload is not a report, or is for another group than its envelope.
    #[error("sealed payload is not a report for this group")]
    WrongContext,
    /// The reported envelope's signature does not verify.
    #[error("the reported envelope is not validly signed: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The body does not match the envelope's franking commitment: the report misquotes.
    #[error("the reported text does not match what was sent (franking check failed)")]
    FrankingMismatch,
    /// The reason is longer than [`MAX_REASON_LEN`].
    #[error("report reason is longer than {MAX_REASON_LEN} bytes")]
    ReasonTooLong,
}

/// The bytes a report is sealed as (its JSON), after checking the reason's length: what
/// [`seal_report`] seals to each facilitator device, for a caller that seals them itself.
pub fn report_bytes(report: &ReportPayload) -> Result<zeroize::Zeroizing<Vec<u8>>, ReportError> {
    if report.reason.len() > MAX_REASON_LEN {
        return Err(ReportError::ReasonTooLong);
    }
    Ok(zeroize::Zeroizing::new(
        serde_json::to_vec(report).map_err(|e| ReportError::Malformed(e.to_string()))?,
    ))
}

/// Seals a report to every facilitator device.
pub fn seal_report(
    reporter: &DeviceIdentity,
    facilitators: &[DeviceKeys],
    epoch: EpochRef,
    report: &ReportPayload,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Vec<SealedPayload>, ReportError> {
    let bytes = report_bytes(report)?;
    facilitators
        .iter()
        .map(|f| {
            seal::seal(
                reporter,
                f,
                SealKind::Report,
                report.envelope.group,
                epoch,
                &bytes,
                rng,
            )
            .map_err(ReportError::from)
        })
        .collect()
}

/// Opens a sealed report and verifies it.
pub fn open_report(
    facilitator: &DeviceIdentity,
    sealed: &SealedPayload,
) -> Result<VerifiedReport, ReportError> {
    if sealed.kind != SealKind::Report {
        return Err(ReportError::WrongContext);
    }
    let bytes = seal::open(facilitator, sealed)?;
    let report: ReportPayload =
        serde_json::from_slice(&bytes).map_err(|e| ReportError::Malformed(e.to_string()))?;
    if report.envelope.group != sealed.group {
        return Err(ReportError::WrongContext);
    }
    verify_report(&report, sealed.sender)
}

/// Verifies an opened report: signature of the envelope, then the franking commitment.
pub fn verify_report(
    report: &ReportPayload,
    reporter: DeviceId,
) -> Result<VerifiedReport, ReportError> {
    if report.reason.len() > MAX_REASON_LEN {
        return Err(ReportError::ReasonTooLong);
    }
    report.envelope.verify()?;
    if !report
        .envelope
        .check_franking(&report.body, &report.franking_key)
    {
        return Err(ReportError::FrankingMismatch);
    }
    Ok(VerifiedReport {
        offender: report.envelope.sender,
        reporter,
        message: report.envelope.message_id(),
        body: report.body.clone(),
        reason: report.reason.clone(),
        seq: report.seq,
        epoch: report.envelope.epoch_ref(),
        reported_at: report.reported_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, GroupId, OpHash};
    use crate::sender_key::{ReceiverChain, SenderChain};
    use crate::test_rng;

    #[test]
    fn facilitator_verifies_who_said_what_and_misquotes_fail() {
        let ep0 = EpochRef {
            epoch: Epoch(0),
            hash: OpHash([0; 32]),
        };
        let offender = DeviceIdentity::generate(&mut test_rng(1));
        let reporter = DeviceIdentity::generate(&mut test_rng(2));
        let facilitator = DeviceIdentity::generate(&mut test_rng(3));
        let mut chain = SenderChain::generate(&mut test_rng(4));
        let mut reporter_copy = ReceiverChain::from_distribution(&chain.distribution()).unwrap();
        let group = GroupId([1; 16]);
        let env = Envelope::seal(
            &offender,
            group,
            ep0,
            &mut chain,
            b"hurtful words",
            &mut test_rng(5),
        )
        .unwrap();
        let opened = env.open(&mut reporter_copy).unwrap();
        let mut report = ReportPayload {
            seq: Seq(7),
            envelope: env,
            body: opened.body.to_vec(),
            franking_key: *opened.franking_key,
            reason: "personal attack".into(),
            reported_at: Timestamp(1),
        };
        let sealed = seal_report(
            &reporter,
            &[facilitator.public_keys()],
            ep0,
            &report,
            &mut test_rng(6),
        )
        .unwrap();
        assert_eq!(sealed.len(), 1);
        let verified = open_report(&facilitator, &sealed[0]).unwrap();
        assert_eq!(verified.offender, offender.device_id());
        assert_eq!(verified.reporter, reporter.device_id());
        assert_eq!(verified.body, b"hurtful words");

        report.body = b"something worse".to_vec();
        assert_eq!(
            verify_report(&report, reporter.device_id()),
            Err(ReportError::FrankingMismatch)
        );
        // A reporter cannot open someone else's report.
        assert!(open_report(&reporter, &sealed[0]).is_err());
    }
}
